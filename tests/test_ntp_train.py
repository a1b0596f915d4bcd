"""The next-token objective (log-space gradients against closed forms and autodiff) and training on it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit, log_expit

from attnsvm.ntp import NTPProblem, finite_component, generate_ntp
from attnsvm.ntp_objective import NextToken, naive_loss
from attnsvm.ntp_train import ntp_records, train_ntp
from attnsvm.svm import solve_graph_svm


def _two_token(delta: float) -> tuple[NTPProblem, np.ndarray]:
    """One sequence [0, 1] with label 0 and logits a = (Δ, 0)."""
    E = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    return NTPProblem(E=E, tokens=np.array([[0, 1]]), next=np.array([0])), np.array([[delta, 0.0]])


@pytest.mark.parametrize("classifier,loss", [("identity", "log"), ("fixed", "log"), ("fixed", "squared")])
def test_gradient_matches_autodiff_at_moderate_logits(classifier, loss):
    p = generate_ntp(n=5, T=5, K=6, d=4, graphs="any", min_length=2, seed=2)
    ob = NextToken(classifier, loss)
    with jax.enable_x64(True):
        data = ob.data(p)
        a = jnp.asarray(np.random.default_rng(1).standard_normal((p.n, p.T)))
        L, g, m = jax.jit(ob.loss_and_grad)(a, data)
        L2, g2 = jax.jit(jax.value_and_grad(naive_loss), static_argnums=(2, 3))(a, data, classifier, loss)
        g = np.exp(m) * np.asarray(g)
    # the naive identity loss carries the authors' +2.2e-16 inside the log
    assert float(L) == pytest.approx(float(L2), rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(np.where(p.mask, g, 0.0), np.where(p.mask, np.asarray(g2), 0.0), rtol=1e-9, atol=1e-14)


def test_identity_loss_and_gradient_saturated():
    for delta in (5.0, 60.0, 700.0):
        p, a = _two_token(delta)
        ob = NextToken()
        with jax.enable_x64(True):
            L, g, m = ob.loss_and_grad(jnp.asarray(a), ob.data(p))
        # L = log(1 + e^{−Δ}), ∂L/∂a = (−s₂, s₂) with s₂ = σ(−Δ)
        assert float(L) == pytest.approx(-log_expit(delta), rel=1e-13)
        log_g = float(m) + np.log(np.abs(np.asarray(g)))
        np.testing.assert_allclose(log_g[0], [log_expit(-delta)] * 2, rtol=1e-13)
        assert np.sign(np.asarray(g)).tolist() == [[-1.0, 1.0]]


def _output_loss_grad(o: np.ndarray, loss: str) -> np.ndarray:
    """∂ℓ/∂o for label 0: softmax(o) − e₀ (log loss) or −2(1 − p₀) ∂p₀/∂o (squared loss)."""
    p = np.exp(o - o.max())
    p /= p.sum()
    e0 = np.eye(o.size)[0]
    return p - e0 if loss == "log" else -2.0 * (1.0 - p[0]) * p[0] * (e0 - p)


def test_fixed_gradient_saturated_is_exact():
    # two tokens, s = (σ(Δ), σ(−Δ)); ∂L/∂a₂ = s₁ s₂ ⟨q, c₂ − c₁⟩, ∂L/∂a₁ = −∂L/∂a₂, q = ∂ℓ/∂o at o = s₁c₁ + s₂c₂
    for loss in ("log", "squared"):
        ob = NextToken("fixed", loss)
        fn = jax.jit(ob.loss_and_grad)
        for delta in (3.0, 45.0, 400.0):
            p, a = _two_token(delta)
            with jax.enable_x64(True):
                data = ob.data(p)
                L, g, m = fn(jnp.asarray(a), data)
            c = p.E @ p.E[[0, 1]].T  # c_t = C x_t with C = E, (K', 2)
            o = expit(delta) * c[:, 0] + expit(-delta) * c[:, 1]
            dq = float(_output_loss_grad(o, loss) @ (c[:, 1] - c[:, 0]))
            if delta < 300:
                g2 = expit(delta) * expit(-delta) * dq
                np.testing.assert_allclose(np.exp(float(m)) * np.asarray(g)[0], [-g2, g2], rtol=1e-10)
            # in log space even where exp underflows: log|g| = log s₁ + log s₂ + log|⟨q, c₂ − c₁⟩|
            log_g = float(m) + np.log(np.abs(np.asarray(g)[0, 1]))
            ref = log_expit(delta) + log_expit(-delta) + np.log(abs(dq))
            assert log_g == pytest.approx(ref, rel=1e-12)


def test_gd_step_and_factored_pullback():
    p = generate_ntp(n=4, T=3, K=5, d=3, graphs="any", seed=4)
    rng = np.random.default_rng(0)
    W0, K0, Q0 = rng.standard_normal((3, 3, 3)) * 0.3
    ob = NextToken()

    def grad_W(W):
        with jax.enable_x64(True):
            data = ob.data(p)
            f = jax.jit(jax.grad(lambda W: naive_loss(jnp.einsum("ntd,de,ne->nt", data.X, W, data.z), data,
                                                      "identity", "log")))
            return np.asarray(f(jnp.asarray(W)))

    r = train_ntp(p, optimizer="gd", lr=0.5, steps=1, every=1, given={"W": W0})
    np.testing.assert_allclose(r.W[0, 1], W0 - 0.5 * grad_W(W0), rtol=1e-9)
    r = train_ntp(p, parameterization="KQ", optimizer="ngd", lr=0.1, steps=1, every=1, given={"K": K0, "Q": Q0})
    G = grad_W(K0 @ Q0.T)
    gK, gQ = G @ Q0, G.T @ K0  # ∂L/∂K = G Q, ∂L/∂Q = Gᵀ K
    K1 = K0 - 0.1 * gK / np.linalg.norm(gK)
    Q1 = Q0 - 0.1 * gQ / np.linalg.norm(gQ)
    np.testing.assert_allclose(r.W[0, 1], K1 @ Q1.T, rtol=1e-9)
    np.testing.assert_allclose(r.params["K"][0], K1, rtol=1e-9)


def test_per_trial_problems_equal_separate_runs():
    ps = [generate_ntp(seed=s) for s in range(3)]
    together = train_ntp(ps, steps=200, every=50, seed=7)
    for j, p in enumerate(ps):
        alone = train_ntp(p, steps=200, every=50, seed=7, given={"W": together.W[j, 0]})
        np.testing.assert_allclose(alone.W[0], together.W[j], rtol=1e-12, atol=1e-14)


def test_records_on_the_predicted_form():
    p = generate_ntp(seed=0)
    g, f = solve_graph_svm(p), finite_component(p)
    W = np.stack([f.W + R * g.W for R in (1.0, 10.0, 100.0)])
    rec = ntp_records(p, W, g.W, f)
    np.testing.assert_allclose(rec["fin_distance"], 0.0, atol=1e-12)
    np.testing.assert_allclose(rec["proj_corr"], 1.0, atol=1e-12)
    np.testing.assert_allclose(rec["R"], [1.0, 10.0, 100.0], rtol=1e-12)
    np.testing.assert_allclose(rec["corr_fin_dir"], 1.0, atol=1e-12)
    assert np.all(np.diff(rec["top_mass"]) > 0) and rec["top_mass"][-1] > 0.999


def test_global_convergence_notebook_setting():
    """NGD, lr 0.01, 4000 steps (the global notebook): direction, finite part and retrieval."""
    ps = [generate_ntp(seed=s) for s in range(3)]
    r = train_ntp(ps, lr=0.01, steps=4000, every=100)
    assert np.all(r.status == "ok")
    for j, p in enumerate(ps):
        rec = ntp_records(p, r.W[j], solve_graph_svm(p).W, finite_component(p))
        assert rec["corr_dir"][-1] >= 0.975 and rec["corr_dir"][-1] > rec["corr_dir"][10]
        assert rec["proj_corr"][-1] >= 0.975
        # NGD moves 0.01 per step: Π_S W oscillates around W^fin within lr/2
        assert rec["fin_distance"][-1] <= 0.006
        assert rec["top_mass"][-1] >= 0.998


def test_local_convergence_fixed_classifier():
    """Fixed classifier C = E, squared loss, NGD lr 0.1, 2000 steps (the local notebook): W follows the graph
    SVM of the tokens it selected, not the global one; the naive gradient loses that direction."""
    ps = [generate_ntp(seed=s) for s in (0, 1, 7)]
    for stable in (True, False):
        r = train_ntp(ps, objective=NextToken("fixed", "squared", stable=stable), lr=0.1, steps=2000, every=100)
        local, glob = [], []
        for j, p in enumerate(ps):
            W = r.W[j, -1]
            sel, und = p.selected_tokens(W)
            local.append(ntp_records(p, W, solve_graph_svm(p.with_labels(sel)).W, finite_component(p))["corr_dir"])
            glob.append(ntp_records(p, W, solve_graph_svm(p).W, finite_component(p))["corr_dir"])
        if stable:
            assert min(local) >= 0.999 and max(glob) <= 0.9
        else:
            assert min(local) <= 0.95  # rounding noise steers the normalized step once s saturates


def test_regularization_path_through_the_engine():
    """The next-token objective through train() with the regularization path (W): the constrained minimizers'
    direction → W^dir and their finite part → W^fin as the radius grows."""
    from attnsvm.models import Model
    from attnsvm.training import RegularizationPath, train

    ps = [generate_ntp(seed=s) for s in range(2)]
    path = train(ps, Model("combined", objective=NextToken()), RegularizationPath(radii=(1.0, 4.0, 16.0)))
    assert np.all(path.status == "ok")
    for j, p in enumerate(ps):
        rp = ntp_records(p, path.path[j], solve_graph_svm(p).W, finite_component(p))
        assert np.all(np.diff(rp["corr_dir"]) > 0) and rp["corr_dir"][-1] >= 0.97
        assert rp["fin_distance"][-1] < 0.1 * rp["fin_distance"][0]


@pytest.mark.slow
def test_gradient_flow_through_the_engine():
    """Gradient flow of W and (K, Q) on the next-token objective, stopped at a radius."""
    from attnsvm.models import Model
    from attnsvm.training import Flow, Radius, Save, train

    ps = [generate_ntp(seed=s) for s in range(2)]
    flow = train(ps, Model("combined", objective=NextToken()), Flow(rtol=1e-6, atol=1e-8), stop=Radius(12.0),
                 save=Save(records=8, path=True))
    assert list(flow.stop_reason) == ["radius", "radius"] and np.all(flow.status == "ok")
    for j, p in enumerate(ps):
        rf = ntp_records(p, flow.path[j], solve_graph_svm(p).W, finite_component(p))
        assert rf["corr_dir"][-1] >= 0.9 and rf["corr_dir"][-1] > rf["corr_dir"][len(rf["corr_dir"]) // 2]
        assert rf["W_norm"][-1] == pytest.approx(12.0, rel=1e-3)
    kq = train(ps, Model("factored", objective=NextToken()), Flow(rtol=1e-6, atol=1e-8), stop=Radius(8.0),
               save=Save(records=4, path=True))
    assert np.all(kq.status == "ok") and list(kq.stop_reason) == ["radius", "radius"]

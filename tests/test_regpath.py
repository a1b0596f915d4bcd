"""Regularization path (regpath.py): θ̄(R)/R → p^mm on P1 toys, stationarity, the only-stationary flag,
the exact excess in log space, and W vs (K, Q) against the Frobenius and nuclear SVMs."""

from __future__ import annotations

import numpy as np
import pytest

import attnsvm  # noqa: F401  (float64)
from attnsvm.models import Model, model_data
from attnsvm.problem import p1_single, unit_gaussian
from attnsvm.regpath import log_excess_terms
from attnsvm.training import Init, RegularizationPath, train

P_MM = np.array([-0.1, 1.0, 0.0]) / 1.01  # P1-single global: p^mm(opt), computed independently
P_LOCAL = np.array([1.0, 0.0, 0.0])  # P1-single local: p^mm at token (1, 0)
RADII = [0.5, 1, 2, 4, 8, 16, 32, 64, 128]


@pytest.fixture(scope="module")
def p1_path():
    return train(p1_single("global"), Model("prompt"), RegularizationPath(RADII), init=Init("zero"),
                 references={"pmm": P_MM})


def test_path_direction_approaches_pmm(p1_path):
    corr = p1_path.correlations["pmm"][0]
    gap = 1 - corr
    assert np.all(np.diff(gap) < 0)  # monotone approach along the grid
    assert gap[0] > 0.05 and gap[-1] < 1e-9
    direction = p1_path.info["W_over_R"][0, -1]
    np.testing.assert_allclose(direction, P_MM / np.linalg.norm(P_MM), atol=1e-5)
    # the constraint is active at every radius and θ̄(R) is a KKT point to the stated tolerance
    np.testing.assert_allclose(p1_path.metrics["theta_norm"][0], RADII, rtol=1e-10)
    assert np.all(p1_path.metrics["stationarity"] <= 1e-6)
    assert np.all(p1_path.info["status"] == "stationary")
    np.testing.assert_allclose(p1_path.metrics["outward"][0], 1.0, atol=1e-10)
    assert np.all(p1_path.selection[0, :, 0] == 0)


def test_only_stationary_flag_on_the_local_branch():
    """Started on the locally optimal token, the path stays there (→ p^mm at (1, 0)); random restarts
    find the global branch with a lower loss, so every radius is flagged only stationary."""
    prob = p1_single("local")
    res = train(prob, Model("prompt"), RegularizationPath((20, 40, 80), restarts=6),
                init=Init(given={"p": np.array([20.0, 0, 0])}), references={"local": P_LOCAL, "global": P_MM})
    assert np.all(res.selection[0, :, 0] == 1)
    assert 1 - res.correlations["local"][0, -1] < 1e-5
    assert np.all(res.metrics["only_stationary"][0] == 1.0)
    assert np.all(res.info["status"] == "stationary")
    glob = train(prob, Model("prompt"), RegularizationPath((20, 40, 80), restarts=6),
                 init=Init(given={"p": np.array([0.0, 20.0, 0])}), references={"local": P_LOCAL, "global": P_MM})
    assert np.all(glob.selection[0, :, 0] == 0)
    assert np.all(glob.metrics["only_stationary"][0] == 0.0)
    assert np.all(glob.metrics["loss"][0] < res.metrics["loss"][0])


@pytest.mark.parametrize("loss", ["logistic", "exponential", "correlation"])
def test_log_excess_terms_match_direct_evaluation(loss):
    """At moderate ‖W‖ the direct float64 difference ℓ(Y f) − ℓ(γ_α) is accurate: the log-space terms agree."""
    import jax.numpy as jnp

    from attnsvm.losses import loss_value

    prob = unit_gaussian(n=4, T=5, d=3, seed=3)
    model = Model("combined", loss=loss)
    data = model_data(prob, model)
    W = np.random.default_rng(1).standard_normal((3, 3))
    alpha = np.array([0, 2, 4, 1])
    import jax

    sgn, lt = jax.jit(lambda w, a: log_excess_terms(model, {"W": w}, data, a))(jnp.asarray(W), jnp.asarray(alpha))
    a = np.einsum("itd,de,ie->it", prob.X, W, prob.queries)
    s = np.exp(a - a.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    gamma = prob.scores()
    direct = (loss_value(loss, (s * gamma).sum(1)) - loss_value(loss, gamma[np.arange(4), alpha])) / 4
    np.testing.assert_allclose(np.asarray(sgn) * np.exp(np.asarray(lt)), direct, rtol=1e-10, atol=1e-15)


@pytest.mark.slow  # two compilations and SCS; run_p3_local_path measures the same on P3-local data
def test_w_goes_frobenius_and_kq_goes_nuclear():
    """P3: the W path → W^mm (Frobenius) and the (K, Q) path → W^mm_★ (nuclear) at the reached selection."""
    from attnsvm.svm import correlation, solve_svm

    probs = [unit_gaussian(n=4, T=5, d=6, seed=s) for s in range(3)]
    radii = [1, 3, 10, 30, 100]
    w = train(probs, Model("combined"), RegularizationPath(tuple(radii)), init=Init("zero"))
    kq = train(probs, Model("factored"), RegularizationPath(tuple(radii)), init=Init("gaussian", 0.1))
    for res, own, other in ((w, "fro", "nuclear"), (kq, "nuclear", "fro")):
        assert np.all(res.info["status"] == "stationary")
        for b, prob in enumerate(probs):
            sel = res.selection[b, -1]
            W = res.path[b, -1]
            c_own = correlation(W, solve_svm(prob, sel, own).solution)
            c_other = correlation(W, solve_svm(prob, sel, other).solution)
            assert c_own > 0.98, (own, b, c_own)
            assert c_own > c_other, (own, b, c_own, c_other)
    # the (K, Q) ball is the nuclear ball: ‖K Qᵀ‖_* = R at the solution
    np.testing.assert_allclose(kq.metrics["W_nuc"][:, -1], 100.0, rtol=1e-6)


def test_validation():
    with pytest.raises(ValueError, match="radii"):
        RegularizationPath(radii=(2.0, 1.0))
    with pytest.raises(ValueError, match="radii"):
        RegularizationPath(radii=())
    with pytest.raises(ValueError, match="tol"):
        RegularizationPath(radii=(1.0,), tol=0.0)
    prob = unit_gaussian(n=2, T=3, d=2, seed=0)
    with pytest.raises(ValueError, match="init"):
        train(prob, Model("factored"), RegularizationPath((1.0,)), init=Init("zero"))
    with pytest.raises(ValueError, match="linear head"):
        train(prob, Model("combined", head="relu"), RegularizationPath((1.0,)), head_V=np.eye(2))

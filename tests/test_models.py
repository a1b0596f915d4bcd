import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attnsvm as A
from attnsvm.models import (
    PARAMETERIZATIONS,
    Model,
    excess_loss,
    gradient,
    log_grad_norm,
    loss,
    model_data,
    pairwise,
    stable_grad,
)

CASES = [(P, l, h, tv) for P in PARAMETERIZATIONS for l in ("logistic", "exponential", "correlation")
         for h in ("linear", "relu") for tv in (False, True) if not (tv and h == "relu")]


def _setup(P, head, train_v, seed=0, n=4, T=5, d=3, reduction="mean", loss_name="logistic"):
    rng = np.random.default_rng(seed)
    prob = A.unit_gaussian(n, T, d, seed=seed, attention="prompt" if P == "prompt" else "cross")
    m = Model(P, loss_name, reduction, head, train_v, hidden=2 if P == "factored" else None)
    V = rng.standard_normal((d, 4)) if head == "relu" else None
    data = model_data(prob, m, V=V)
    params = {k: jnp.asarray(rng.standard_normal(s)) for k, s in m.param_shapes(d).items()}
    return m, data, params


@pytest.mark.parametrize("P, loss_name, head, train_v", CASES)
def test_gradient_matches_central_differences(P, loss_name, head, train_v):
    m, data, params = _setup(P, head, train_v, loss_name=loss_name)
    g = gradient(m, params, data)
    h = 1e-6
    for b, val in params.items():
        flat = np.asarray(val).ravel()
        fd = np.zeros_like(flat)
        for j in range(flat.size):
            e = np.zeros_like(flat)
            e[j] = h
            plus = {**params, b: jnp.asarray((flat + e).reshape(val.shape))}
            minus = {**params, b: jnp.asarray((flat - e).reshape(val.shape))}
            fd[j] = (float(loss(m, plus, data)) - float(loss(m, minus, data))) / (2 * h)
        gb = np.asarray(g[b]).ravel()
        assert np.linalg.norm(gb - fd) <= 1e-6 * max(np.linalg.norm(fd), 1e-8), (b, gb, fd)


@pytest.mark.parametrize("P, loss_name, head, train_v", CASES)
def test_stable_gradient_equals_autodiff(P, loss_name, head, train_v):
    m, data, params = _setup(P, head, train_v, seed=3, reduction="sum", loss_name=loss_name)
    g = gradient(m, params, data)
    ga = jax.grad(lambda p: loss(m, p, data))(params)
    for b in g:
        np.testing.assert_allclose(g[b], ga[b], rtol=1e-11, atol=1e-13 * float(jnp.max(jnp.abs(ga[b]))))


def test_factored_equals_combined():
    prob = A.unit_gaussian(5, 6, 4, seed=1)
    rng = np.random.default_rng(0)
    K, Q = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    mf, mc = Model("factored", hidden=3), Model("combined")
    lf = loss(mf, {"K": jnp.asarray(K), "Q": jnp.asarray(Q)}, model_data(prob, mf))
    lc = loss(mc, {"W": jnp.asarray(K @ Q.T)}, model_data(prob, mc))
    assert float(lf) == pytest.approx(float(lc), rel=1e-14)
    # diagonal k ⊙ q is the combined model at W = diag(k ⊙ q)
    k, q = rng.standard_normal(4), rng.standard_normal(4)
    md = Model("diagonal")
    ld = loss(md, {"k": jnp.asarray(k), "q": jnp.asarray(q)}, model_data(prob, md))
    assert float(ld) == pytest.approx(float(loss(mc, {"W": jnp.asarray(np.diag(k * q))}, model_data(prob, mc))),
                                      rel=1e-14)


def test_pairwise_sum_is_exact_where_naive_cancels():
    # s = (1 − 2ε, ε, ε) with ε = 1e−20: Σ_u s_u (g_0 − g_u) = ε(1 + 2) exactly; naive g_0 − Σ s g gives 0.
    eps = 1e-20
    log_s = jnp.log(jnp.array([[1 - 2 * eps, eps, eps]]))
    g = jnp.array([[1.0, 0.0, -1.0]])
    D, offset = pairwise(log_s, g, jnp.ones((1, 3), bool))
    assert float(D[0, 0]) > 0.0
    assert float(D[0, 0] * jnp.exp(offset[0, 0])) == pytest.approx(3e-20, rel=1e-12)
    naive = float(g[0, 0] - jnp.sum(jnp.exp(log_s) * g))
    assert naive == 0.0  # the cancellation this module avoids


def test_gradient_direction_survives_underflow():
    # At ‖W‖ ~ 1e4 every non-top softmax weight underflows to 0 in float64; the scaled gradient still
    # points along the constraint of the least-saturated token, with a finite log-norm.
    prob = A.p1_single("global")
    m = Model("prompt")
    data = model_data(prob, m)
    p = jnp.array([-0.1, 1.0, 0.0]) * 1e4
    sg = stable_grad(m, {"p": p}, data)
    assert np.isfinite(float(log_grad_norm(sg))) and float(log_grad_norm(sg)) < -700
    assert float(jnp.max(jnp.abs(gradient(m, {"p": p}, data)["p"]))) == 0.0  # plain form underflows
    direction = np.asarray(-sg.g["p"]) / np.linalg.norm(np.asarray(sg.g["p"]))
    # the least-saturated token is token 2 = (0, 0): the descent direction is x_0 − x_2 = (−0.1, 1, 0)
    np.testing.assert_allclose(direction, np.array([-0.1, 1.0, 0.0]) / np.sqrt(1.01), atol=1e-12)


def test_excess_loss_is_accurate_when_tiny():
    prob = A.p1_single("global")
    m = Model("prompt", "exponential")
    data = model_data(prob, m)
    p = jnp.array([-0.1, 1.0, 0.0]) * 50.0
    ex = float(excess_loss(m, {"p": p}, data))
    # closed form: e^{−1}(e^{G} − 1) with G = Σ_u s_u (γ_0 − γ_u)
    a = np.array([(-0.1 * -0.1 + 1.0) * 50, (1.0 * -0.1) * 50, 0.0])
    s = np.exp(a - a.max()) / np.exp(a - a.max()).sum()
    G = s[1] * 0.1 + s[2] * 0.1
    assert ex == pytest.approx(np.exp(-1.0) * np.expm1(G), rel=1e-10)
    assert ex > 0


def test_model_validation():
    with pytest.raises(ValueError, match="parameterization"):
        Model("full")
    with pytest.raises(ValueError, match="loss"):
        Model("combined", loss="hinge")
    with pytest.raises(ValueError, match="train_v"):
        Model("combined", head="relu", train_v=True)


@pytest.mark.parametrize("scale", [0.3, 3.0, 30.0, 300.0, 3000.0])
def test_pairwise_matches_mpmath(scale):
    # D_t = Σ_u s_u (g_t − g_u), s = softmax(a), at every saturation of the logits a, against 50-digit
    # arithmetic: each entry within a few ulps of its condition Σ_u s_u |g_t − g_u| (1 + |log s_u|) (the
    # error of any summation of D from float64 log s), including the most attended token, whose D is the
    # tiny sum the plain form g_t − Σ s g loses entirely. (Both the pairwise summation this replaced and
    # the centred form measure ≤ 2.2 ulps of it on these cases.)
    import mpmath as mp

    rng = np.random.default_rng(int(scale * 10))
    n, T = 20, 7
    mask = np.ones((n, T), bool)
    mask[1, -2:] = False  # padded tokens (logit −inf)
    a = np.where(mask, rng.standard_normal((n, T)) * scale, -np.inf)
    log_s = jax.nn.log_softmax(jnp.asarray(a), axis=1)
    g = rng.standard_normal((n, T))
    g[0, 3] = g[0, int(np.argmax(a[0]))]  # a token tied in g with the most attended one
    Dt, offset = pairwise(log_s, jnp.asarray(g), jnp.asarray(mask))
    Dt, offset, log_s = np.asarray(Dt), np.asarray(offset), np.asarray(log_s)
    mp.mp.dps = 50
    for i in range(n):
        toks = np.flatnonzero(mask[i])
        am = [mp.mpf(float(a[i, u])) for u in toks]
        Z = mp.fsum(mp.exp(x - max(am)) for x in am)
        s = [mp.exp(x - max(am)) / Z for x in am]
        for t in toks:
            gap = [mp.mpf(float(g[i, t])) - mp.mpf(float(g[i, u])) for u in toks]
            D = mp.fsum(su * du for su, du in zip(s, gap, strict=True))
            cond = mp.fsum(su * abs(du) * (1 + abs(float(log_s[i, u]))) for su, du, u in zip(s, gap, toks, strict=True))
            if D == 0:
                assert Dt[i, t] == 0
                continue
            got = mp.mpf(float(Dt[i, t])) * mp.exp(mp.mpf(float(offset[i, t])))
            assert abs(got - D) <= 8 * 2.0**-52 * cond

"""ℓp mirror descent as an optax transformation: the mirror-step identity, p = 2 equals normalized GD,
no underflow to a zero step, per-block normalization, the authors' eps, the directional Bregman divergence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from attnsvm.svm import directional_bregman
from attnsvm.training.mirror import inverse_mirror_map, mirror_descent, mirror_map

jax.config.update("jax_enable_x64", True)


def _tree(seed: int, scale: float = 1.0) -> dict:
    rng = np.random.default_rng(seed)
    return {"K": jnp.asarray(scale * rng.normal(size=(4, 3))), "Q": jnp.asarray(scale * rng.normal(size=(4, 3)))}


def _step(tx, g, th):
    upd, _ = tx.update(g, tx.init(th), th)
    return optax.apply_updates(th, upd)


def _lp(x, p):
    return float(np.sum(np.abs(np.asarray(x)) ** p) ** (1 / p))


@pytest.mark.parametrize("p", [1.5, 1.75, 3.0])
def test_mirror_step_identity(p):
    """∇ψ(θ⁺) = ∇ψ(θ) − η g/‖g‖_q over all blocks (q = p/(p−1)), and ∇ψ* inverts ∇ψ."""
    th, g = _tree(0), _tree(1)
    q = p / (p - 1)
    new = _step(mirror_descent(0.1, p), g, th)
    gq = _lp(np.concatenate([np.ravel(g[b]) for b in g]), q)
    for b in th:
        lhs = np.asarray(mirror_map(new[b], p))
        rhs = np.asarray(mirror_map(th[b], p)) - 0.1 * np.asarray(g[b]) / gq
        np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(inverse_mirror_map(mirror_map(th[b], p), p)), np.asarray(th[b]),
                                   rtol=1e-13)


def test_p2_is_normalized_gd_and_per_block():
    th, g = _tree(2), _tree(3)
    new = _step(mirror_descent(0.1, 2.0), g, th)
    nrm = np.sqrt(sum(float(jnp.sum(g[b] ** 2)) for b in g))
    for b in th:
        np.testing.assert_allclose(np.asarray(new[b]), np.asarray(th[b] - 0.1 * g[b] / nrm), rtol=0, atol=1e-15)
    new = _step(mirror_descent(0.1, 2.0, per_block=True), g, th)
    for b in th:
        np.testing.assert_allclose(np.asarray(new[b]), np.asarray(th[b] - 0.1 * g[b] / jnp.linalg.norm(g[b])),
                                   rtol=0, atol=1e-15)
    # unnormalized: ∇ψ(θ⁺) = ∇ψ(θ) − η g
    new = _step(mirror_descent(0.1, 3.0, normalize=False), g, th)
    for b in th:
        np.testing.assert_allclose(np.asarray(mirror_map(new[b], 3.0)),
                                   np.asarray(mirror_map(th[b], 3.0) - 0.1 * g[b]), rtol=1e-12, atol=1e-14)


def test_no_underflow_to_a_zero_step_and_zero_gradient():
    """A gradient of size 1e−300 gives the same normalized step as one of size 1; g = 0 gives no step; the
    authors' g/(‖g‖ + eps) stalls on the tiny gradient (what the eps option emulates)."""
    th = _tree(4, scale=50.0)
    g = _tree(5)
    tiny = jax.tree.map(lambda x: x * 1e-300, g)
    for p in (1.75, 3.0):
        a, b = _step(mirror_descent(0.1, p), g, th), _step(mirror_descent(0.1, p), tiny, th)
        for k in th:
            np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-13)
            assert not np.allclose(np.asarray(a[k]), np.asarray(th[k]))
        zero = jax.tree.map(jnp.zeros_like, g)
        c = _step(mirror_descent(0.1, p), zero, th)
        for k in th:
            np.testing.assert_array_equal(np.asarray(c[k]), np.asarray(th[k]))
        d = _step(mirror_descent(0.1, p, eps=2.2e-16), tiny, th)
        for k in th:
            np.testing.assert_allclose(np.asarray(d[k]), np.asarray(th[k]), rtol=1e-13)


def test_errors():
    for bad in (1.0, 0.5, float("inf")):
        with pytest.raises(ValueError, match="1 < p"):
            mirror_descent(0.1, bad)
    with pytest.raises(ValueError, match="lr"):
        mirror_descent(0.0, 2.0)
    tx = mirror_descent(0.1, 2.0)
    with pytest.raises(ValueError, match="params"):
        tx.update(_tree(0), tx.init(_tree(0)))


def test_directional_bregman():
    R = np.random.default_rng(0).normal(size=(3, 3))
    for p in (1.75, 2.0, 3.0):
        D = directional_bregman(R, np.stack([2.5 * R, -R, np.eye(3)]), p)
        assert abs(D[0]) < 1e-14 and D[1] == pytest.approx(2.0) and D[2] > 0
    # p = 2: D = 1 − cos on unit spheres, i.e. ½‖R̄ − W̄‖²
    W = np.random.default_rng(1).normal(size=(3, 3))
    Rb, Wb = R / np.linalg.norm(R), W / np.linalg.norm(W)
    assert directional_bregman(R, W, 2.0) == pytest.approx(0.5 * np.sum((Rb - Wb) ** 2), rel=1e-12)

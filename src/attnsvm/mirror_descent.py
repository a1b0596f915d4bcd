"""ℓp mirror descent as an optax gradient transformation.

Mirror map ψ(θ) = (1/p) Σ_j |θ_j|^p (entrywise, every trained block), so ∇ψ(θ) = sign(θ)|θ|^{p−1} and its
inverse is ∇ψ*(φ) = sign(φ)|φ|^{1/(p−1)}. One step with gradient g is

    ∇ψ(θ⁺) = ∇ψ(θ) − η g                          (unnormalized), or
    ∇ψ(θ⁺) = ∇ψ(θ) − η g / ‖g‖_q,  q = p/(p−1)      (normalized ℓp-AttGD, the AttentionMD paper's variant),

the dual norm ‖g‖_q taken over all trained blocks at once (``per_block=False``) or per block, as the
authors' optimizer does (it normalizes each parameter tensor by its own norm). p = 2 is gradient descent,
normalized GD when normalized. The transformation needs ``params`` and returns θ⁺ − θ (optax's
``apply_updates`` adds it back).

Accuracy at saturation. The normalized step depends on g only through g/‖g‖_q, computed after dividing g
by max|g_j| (no overflow or underflow of |g|^q), so a gradient that is tiny but nonzero (or one given in a
rescaled, "stable" form) still gives a full step; only g = 0 exactly gives a zero step. ``eps`` > 0 uses
the authors' g/(‖g‖_q + eps) instead (their code: eps = float64 machine epsilon), which emulates their
arithmetic on purpose and *does* stall once ‖g‖_q ≪ eps.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


def lp_norm_jax(x: jax.Array, p: float) -> jax.Array:
    """Entrywise ‖x‖_p with a max-scaling (exact at any magnitude); 0 for x = 0."""
    a = jnp.abs(x)
    m = jnp.max(a) if a.size else jnp.zeros((), x.dtype)
    ms = jnp.where(m > 0, m, 1.0)
    if p == float("inf"):
        return m
    return m * jnp.sum((a / ms) ** p) ** (1.0 / p)


def _tree_lp_norm(tree, p: float) -> jax.Array:
    """‖·‖_p of all leaves concatenated (max-scaled)."""
    leaves = [jnp.ravel(x) for x in jax.tree.leaves(tree)]
    if not leaves:
        return jnp.zeros(())
    return lp_norm_jax(jnp.concatenate(leaves), p)


def mirror_map(theta: jax.Array, p: float) -> jax.Array:
    """∇ψ(θ) = sign(θ)|θ|^{p−1} (θ itself for p = 2)."""
    if p == 2.0:
        return theta
    return jnp.sign(theta) * jnp.abs(theta) ** (p - 1.0)


def inverse_mirror_map(phi: jax.Array, p: float) -> jax.Array:
    """∇ψ*(φ) = sign(φ)|φ|^{1/(p−1)} (φ itself for p = 2)."""
    if p == 2.0:
        return phi
    return jnp.sign(phi) * jnp.abs(phi) ** (1.0 / (p - 1.0))


def _scaled(g: jax.Array, nrm: jax.Array, eps: float) -> jax.Array:
    """g/‖g‖ (0 where ‖g‖ = 0), or the authors' g/(‖g‖ + eps)."""
    if eps > 0:
        return g / (nrm + eps)
    return jnp.where(nrm > 0, g / jnp.where(nrm > 0, nrm, 1.0), 0.0)


def _normalize_by_max(g: jax.Array) -> jax.Array:
    """g / max|g| (0 for g = 0): exact rescaling before the dual norm is taken."""
    m = jnp.max(jnp.abs(g)) if g.size else jnp.zeros((), g.dtype)
    return jnp.where(m > 0, g / jnp.where(m > 0, m, 1.0), 0.0)


class MirrorDescentState(NamedTuple):
    """Stateless (the mirror image ∇ψ(θ) is recomputed from θ every step)."""


def mirror_descent(learning_rate: float, p: float, normalize: bool = True, per_block: bool = False,
                   eps: float = 0.0) -> optax.GradientTransformation:
    """ℓp mirror descent (see the module docstring) as an optax transformation; needs ``params``.

    learning_rate: η > 0; p > 1; normalize: divide g by its dual norm ‖g‖_{p/(p−1)}; per_block: one dual
    norm per leaf instead of one over all leaves; eps: the authors' g/(‖g‖ + eps) (0: exact).
    """
    p = float(p)
    if not p > 1.0 or p == float("inf"):
        raise ValueError(f"p: mirror descent needs 1 < p < inf, got {p}")
    if not learning_rate > 0:
        raise ValueError(f"lr: must be positive, got {learning_rate}")
    if eps < 0:
        raise ValueError(f"eps: must be ≥ 0, got {eps}")
    q = p / (p - 1.0)

    def init_fn(params):
        del params
        return MirrorDescentState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("mirror_descent needs params (optax: tx.update(grads, state, params))")
        if normalize:
            if eps > 0:
                # the authors' arithmetic: raw g over (‖g‖_q + eps), per tensor
                if per_block:
                    steps = jax.tree.map(lambda g: _scaled(g, lp_norm_jax(g, q), eps), updates)
                else:
                    nrm = _tree_lp_norm(updates, q)
                    steps = jax.tree.map(lambda g: _scaled(g, nrm, eps), updates)
            elif per_block:
                steps = jax.tree.map(lambda g: _scaled(_normalize_by_max(g), lp_norm_jax(_normalize_by_max(g), q),
                                                       0.0), updates)
            else:
                m = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree.leaves(updates)]))
                ms = jnp.where(m > 0, m, 1.0)
                scaled = jax.tree.map(lambda g: jnp.where(m > 0, g / ms, 0.0), updates)
                nrm = _tree_lp_norm(scaled, q)
                steps = jax.tree.map(lambda g: _scaled(g, nrm, 0.0), scaled)
        else:
            steps = updates

        return _mirror_update(steps, params, learning_rate, p), state

    return optax.GradientTransformation(init_fn, update_fn)


def _mirror_update(steps, params, learning_rate: float, p: float):
    """θ⁺ − θ with ∇ψ(θ⁺) = ∇ψ(θ) − lr·u, leaf by leaf."""

    def one(u, th):
        if p == 2.0:
            return -learning_rate * u  # ∇ψ is the identity: no round trip through θ
        phi = mirror_map(th, p) - learning_rate * u
        # an entry without gradient does not move (exactly: no round trip through the mirror map)
        return jnp.where(u == 0, 0.0, inverse_mirror_map(phi, p) - th)

    return jax.tree.map(one, steps, params)


def mirror_step(learning_rate: float, p: float) -> optax.GradientTransformation:
    """The mirror step on a given direction u (already normalized or not): the update θ⁺ − θ with
    ∇ψ(θ⁺) = ∇ψ(θ) − lr·u, ψ = ‖·‖_p^p/p entrywise. Needs ``params``; stateless."""
    p = float(p)
    if not 1.0 < p < float("inf"):
        raise ValueError(f"p: mirror descent needs 1 < p < inf, got {p}")

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("mirror_step needs params (optax: tx.update(grads, state, params))")
        return _mirror_update(updates, params, learning_rate, p), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def directional_bregman(reference: np.ndarray, W: np.ndarray, p: float) -> np.ndarray:
    """Directional Bregman divergence of ψ = (1/p)‖·‖_p^p between the ℓp directions of a reference and W:

        D(R̄, W̄) = ψ(R̄) − ψ(W̄) − ⟨∇ψ(W̄), R̄ − W̄⟩ = 1 − ⟨sign(W̄)|W̄|^{p−1}, R̄⟩,   X̄ = X/‖X‖_p,

    ≥ 0 and 0 only when the directions agree (the measure the AttentionMD paper plots). ``W`` may carry
    leading axes (e.g. records); the last ``reference.ndim`` axes are summed. NaN where W = 0."""
    R = np.asarray(reference, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    axes = tuple(range(W.ndim - R.ndim, W.ndim))

    def unit(x, ax):
        a = np.abs(x)
        m = np.max(a, axis=ax, keepdims=True)
        ms = np.where(m > 0, m, 1.0)
        nrm = m * np.sum((a / ms) ** p, axis=ax, keepdims=True) ** (1.0 / p)
        with np.errstate(invalid="ignore", divide="ignore"):
            return x / nrm

    Rb, Wb = unit(R, tuple(range(R.ndim))), unit(W, axes)
    return 1.0 - np.sum(np.sign(Wb) * np.abs(Wb) ** (p - 1.0) * Rb, axis=axes)

"""Sums and differences kept as logarithms: the pieces of the stable gradient and of the saturation measures."""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf


def log_signed_diff(lp: jax.Array, ln: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sign, log|e^lp − e^ln|) without forming e^lp or e^ln."""
    hi = jnp.maximum(lp, ln)
    both_zero = jnp.isneginf(hi)
    delta = jnp.where(both_zero, jnp.inf, jnp.abs(lp - ln))
    mag = jnp.where(both_zero, NEG_INF, hi + jnp.log(-jnp.expm1(-delta)))
    sign = jnp.where(lp > ln, 1.0, jnp.where(lp < ln, -1.0, 0.0))
    return sign, mag


def masked_lse(x: jax.Array, keep: jax.Array, axis: int) -> jax.Array:
    x = jnp.where(keep, x, NEG_INF)
    m = jnp.max(x, axis=axis, keepdims=True)
    m_safe = jnp.where(jnp.isfinite(m), m, 0.0)
    out = jnp.log(jnp.sum(jnp.exp(x - m_safe), axis=axis)) + jnp.squeeze(m_safe, axis)
    return out


def log_pairwise(log_s: jax.Array, g: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """sign and log|·| of D_it = Σ_u s_iu (g_it − g_iu), for every token t (n, T); sign 0, log −inf if D = 0.

    D is summed term by term in the pairwise form (never as g_t − Σ_u s_u g_u, which cancels), with a
    common scale removed: D_t = e^{c_t} Σ_u e^{log s_u − c_t} (g_t − g_u), c_t = max log s_u over the tokens
    u with g_u ≠ g_t (the only ones that contribute). Every term is then ≤ max|g_t − g_u| and the largest
    contributing s_u enters with weight 1, so the terms that underflow are below 1e−308 of the sum and the
    sum keeps its relative accuracy at any saturation. c_t takes only two values per sequence: the largest
    log s (token u*), or, for the tokens tied in g with u*, the largest log s outside that tie; so the
    exponentials are two per token, not one per pair.
    """
    ls = jnp.where(mask, log_s, NEG_INF)
    g = jnp.where(mask, g, 0.0)
    top = jnp.argmax(ls, axis=1)[:, None]  # u*, the most attended token
    same = g == jnp.take_along_axis(g, top, axis=1)  # tokens tied in g with u* (u* included)
    ls2 = jnp.where(same, NEG_INF, ls)
    m1 = jnp.take_along_axis(ls, top, axis=1)
    m2 = jnp.max(ls2, axis=1, keepdims=True)
    m1 = jnp.where(jnp.isfinite(m1), m1, 0.0)
    m2 = jnp.where(jnp.isfinite(m2), m2, 0.0)
    # weights ≤ 1: [..., 0] for the rows t outside the tie with u*, [..., 1] for the rows tied with u*
    # (the tie itself contributes 0); both sums Σ_u e_u (g_t − g_u) as one batched product with the pairs.
    e = jnp.stack([jnp.exp(ls - m1), jnp.exp(ls2 - m2)], axis=-1)  # (n, u, 2)
    D2 = jnp.einsum("itu,iuk->itk", g[:, :, None] - g[:, None, :], e)
    D = jnp.where(mask, jnp.where(same, D2[..., 1], D2[..., 0]), 0.0)
    nz = D != 0
    mag = jnp.where(nz, jnp.log(jnp.abs(jnp.where(nz, D, 1.0))) + jnp.where(same, m2, m1), NEG_INF)
    return jnp.sign(D), mag


def log_gap_to_top(log_s: jax.Array, g: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(g_top, log Σ_u s_u (g_top − g_u)) per sequence: the saturation gap, exact in log space."""
    gm = jnp.where(mask, g, NEG_INF)
    top = jnp.max(gm, axis=1)
    gap = top[:, None] - gm
    terms = log_s + jnp.log(jnp.where(mask & (gap > 0), gap, 1.0))
    return top, masked_lse(terms, mask & (gap > 0), axis=1)


def scaled(coef_log: jax.Array, coef_sign: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Remove the common scale M = max log|c|: c = e^M · sign · e^{log|c| − M}."""
    M = jnp.max(coef_log)
    M = jnp.where(jnp.isfinite(M), M, 0.0)
    return coef_sign * jnp.exp(coef_log - M), M


__all__ = ["NEG_INF", "log_gap_to_top", "log_pairwise", "log_signed_diff", "masked_lse", "scaled"]

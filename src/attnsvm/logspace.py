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


def pairwise(log_s: jax.Array, g: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """D_it = Σ_u s_iu (g_it − g_iu) for every token t, as (D̃, offset) with D = D̃ · e^{offset} (n, T);
    D̃ = 0 on padded tokens and where D = 0.

    D is never formed as g_t − Σ_u s_u g_u, which cancels at the most attended token u* when s_u* → 1.
    It is centred on u* instead: with Σ_u s_u = 1,

        D_t = (g_t − g_u*) + G,     G = Σ_u s_u (g_u* − g_u) = e^{m} Σ_u e^{log s_u − m} (g_u* − g_u),

    where m = max log s_u over the tokens u with g_u ≠ g_u* (the only ones in G). For u* and the tokens tied
    with it in g, D_t = G = e^{m} · (the sum): every term of the sum is ≤ max|g_u* − g_u| and the largest
    enters with weight 1, so G keeps its relative accuracy at any saturation (s_u may be far below
    1e−308: only m carries it). For the other tokens D_t is summed in linear scale (offset 0): there
    |g_t − g_u*| > 0 is the leading term and e^{m} G only corrects it, so nothing is lost when e^{m}
    underflows. The rounding error of either form is a few ulps of Σ_u s_u |g_t − g_u|, the condition of
    D_t itself (tests/test_models.py, against 50-digit arithmetic). One exponential per token and no
    (T × T) pairwise tensor.
    """
    ls = jnp.where(mask, log_s, NEG_INF)
    g = jnp.where(mask, g, 0.0)
    top = jnp.argmax(ls, axis=1)[:, None]  # u*, the most attended token
    g_top = jnp.take_along_axis(g, top, axis=1)
    same = g == g_top  # tokens tied in g with u* (u* included)
    ls2 = jnp.where(same, NEG_INF, ls)
    m = jnp.max(ls2, axis=1, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    G = jnp.sum(jnp.exp(ls2 - m) * (g_top - g), axis=1, keepdims=True)  # G e^{−m}
    D = jnp.where(mask, jnp.where(same, G, (g - g_top) + jnp.exp(m) * G), 0.0)
    return D, jnp.where(same, m, 0.0)


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


def scaled_product(log_w: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x · e^{log_w} = e^M · c with max|c| = 1 (c = 0, M = 0 if every term is 0), without forming e^{log_w}.

    For factors whose magnitude lives in log_w (far outside float64) and whose O(1) part x is known in linear
    scale: c = (x / max|x|) · e^{log_w − max log_w}, then divided by its own largest entry. Costs one
    exponential per entry (no log|x|). A term is lost only where (x/max|x|) · e^{log_w − max log_w}
    underflows (≈ 1e−308), i.e. below 1e−308/c_max of the largest term before the last division: beneath
    float64 resolution unless that largest product is itself below ≈ 1e−292 (x and e^{log_w} ordered oppositely
    over ≥ 290 decades)."""
    xm = jnp.max(jnp.abs(x))
    xm = jnp.where(xm > 0, xm, 1.0)
    lw = jnp.where(x != 0, log_w, NEG_INF)
    M0 = jnp.max(lw)
    M0 = jnp.where(jnp.isfinite(M0), M0, 0.0)
    c = (x / xm) * jnp.exp(lw - M0)
    cm = jnp.max(jnp.abs(c))
    cm = jnp.where(cm > 0, cm, 1.0)
    return c / cm, M0 + jnp.log(xm) + jnp.log(cm)


__all__ = ["NEG_INF", "log_gap_to_top", "log_signed_diff", "masked_lse", "pairwise", "scaled",
           "scaled_product"]

"""Decreasing margin losses ℓ and their derivatives, written to stay finite at any margin.

Every loss here is a function of the signed margin x = Y·f. They are pure functions usable from NumPy
(through :func:`loss_value`) and from JAX (through the ``*_jax`` helpers the models use):

* logistic     ℓ(x) = log(1 + e^{−x}) = softplus(−x),    ℓ'(x) = −σ(−x),   log|ℓ'(x)| = −softplus(x)
* exponential  ℓ(x) = e^{−x},                            ℓ'(x) = −e^{−x},  log|ℓ'(x)| = −x
* correlation  ℓ(x) = −x,                                ℓ'(x) = −1,       log|ℓ'(x)| = 0

All three are strictly decreasing (ℓ' < 0), which is what the max-margin theory needs (docs/concepts/problems.md).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

LossName = Literal["logistic", "exponential", "correlation"]
Reduction = Literal["mean", "sum"]
LOSSES: tuple[str, ...] = ("logistic", "exponential", "correlation")
REDUCTIONS: tuple[str, ...] = ("mean", "sum")


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return loss


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def loss_value(loss: str, x: np.ndarray) -> np.ndarray:
    """ℓ(x) elementwise in NumPy float64 (softplus written with logaddexp so it never overflows)."""
    x = np.asarray(x, dtype=np.float64)
    check_loss(loss)
    if loss == "logistic":
        return np.logaddexp(0.0, -x)
    if loss == "exponential":
        return np.exp(-x)
    return -x


def reduce_scale(reduction: str, n: int) -> float:
    """The factor in L = scale · Σ_i ℓ(Y_i f_i): 1/n for the mean (P1, P3), 1 for the sum (P2)."""
    return 1.0 / n if check_reduction(reduction) == "mean" else 1.0


# ---- JAX versions (imported lazily by the models so this module stays light) -------------------------


def jax_loss(loss: str, x):
    import jax.numpy as jnp
    from jax.nn import softplus

    if loss == "logistic":
        return softplus(-x)
    if loss == "exponential":
        return jnp.exp(-x)
    return -x


def jax_log_neg_dloss(loss: str, x):
    """log|ℓ'(x)| = log(−ℓ'(x)); finite for every finite x (no exp evaluated)."""
    import jax.numpy as jnp
    from jax.nn import softplus

    if loss == "logistic":
        return -softplus(x)
    if loss == "exponential":
        return -x
    return jnp.zeros_like(x)


def jax_log_softplus(z):
    """log(log(1 + e^z)) = log softplus(z), finite for every finite z (softplus(z) underflows below z ≈ −745:
    there log softplus(z) = z + log(log1p(e^z)/e^z) = z − e^z/2 + O(e^{2z}))."""
    import jax.numpy as jnp
    from jax.nn import softplus

    small = z < -30.0
    direct = jnp.log(softplus(jnp.where(small, 0.0, z)))
    return jnp.where(small, z - 0.5 * jnp.exp(jnp.minimum(z, -30.0)), direct)


def jax_log_expm1(lg):
    """log(e^g − 1) for g = e^{lg} ≥ 0 given as its logarithm lg (−inf for g = 0), without underflow of g:
    for tiny g, log(expm1 g) = lg + g/2 + O(g²); for large g, g + log(1 − e^{−g})."""
    import jax.numpy as jnp

    g = jnp.exp(jnp.minimum(lg, 709.0))
    tiny = lg < -20.0
    mid = jnp.log(jnp.expm1(jnp.where(tiny | (g > 1.0), 1.0, g)))
    big = g + jnp.log(-jnp.expm1(-jnp.where(g > 1.0, g, 1.0)))
    out = jnp.where(tiny, lg + 0.5 * g, jnp.where(g > 1.0, big, mid))
    # lg > 709: g itself is not representable; log(e^g − 1) = g to float64 precision, which is +inf here
    return jnp.where(lg > 709.0, jnp.inf, out)


def jax_log_loss(loss: str, x):
    """log ℓ(x) elementwise, finite where ℓ(x) overflows or underflows (logistic: log softplus(−x);
    exponential: −x). For the correlation loss ℓ(x) = −x is not positive in general: NaN (ℓ itself is
    exact and bounded, no logarithm is needed)."""
    import jax.numpy as jnp

    if loss == "logistic":
        return jax_log_softplus(-x)
    if loss == "exponential":
        return -x
    return jnp.full_like(x, jnp.nan)


def jax_log_excess(loss: str, x_ref, lgap):
    """log(ℓ(x_ref − gap) − ℓ(x_ref)) for gap = e^{lgap} ≥ 0 (−inf when gap = 0), for any finite x_ref:

    logistic:    ℓ(x − g) − ℓ(x) = log1p(σ(−x)·expm1(g)) = softplus(b), b = −softplus(x) + log expm1(g),
                 so the logarithm is log softplus(b);
    exponential: e^{−x}·expm1(g), logarithm −x + log expm1(g);
    correlation: g, logarithm lgap.
    """
    if loss == "logistic":
        from jax.nn import softplus

        return jax_log_softplus(-softplus(x_ref) + jax_log_expm1(lgap))
    if loss == "exponential":
        return -x_ref + jax_log_expm1(lgap)
    return lgap

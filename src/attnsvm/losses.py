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


def jax_excess(loss: str, x_ref, gap):
    """ℓ(x_ref − gap) − ℓ(x_ref) for gap ≥ 0, without cancellation.

    logistic:    log1p(σ(−x_ref) · expm1(gap))
    exponential: e^{−x_ref} · expm1(gap)
    correlation: gap
    Used for L − L* where x_ref = γ_opt and gap = γ_opt − Σ_t s_t γ_t is itself computed in log space.
    """
    import jax.numpy as jnp
    from jax.nn import sigmoid

    if loss == "logistic":
        # log(1 + a) with a = σ(−x)·(e^{gap} − 1); for huge gap fall back to the direct formula.
        a = sigmoid(-x_ref) * jnp.expm1(jnp.minimum(gap, 700.0))
        direct = jax_loss(loss, x_ref - gap) - jax_loss(loss, x_ref)
        return jnp.where(gap < 30.0, jnp.log1p(a), direct)
    if loss == "exponential":
        return jnp.exp(-x_ref) * jnp.expm1(gap)
    return gap

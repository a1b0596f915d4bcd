"""More optimizers of the registry: ℓp mirror descent (``md``), sign-GD (``sign``) and Adam (``adam``).

All three read the engine's scaled gradient ``Scaled(g_b, log_scale_b)`` (∇_b L = e^{log_scale_b} g_b,
‖g_b‖ = O(1)), so none of them loses its direction where the plain gradient underflows:

* ``md``: ∇ψ(θ⁺) = ∇ψ(θ) − lr·u with ψ(θ) = (1/p) Σ|θ_j|^p over every trained entry, and u the gradient
  divided by its dual norm ‖∇L‖_q, q = p/(p−1) (``normalize = true``, over all blocks or per block with
  ``scope = "block"``, as the AttentionMD code normalizes each parameter tensor), or u = ∇L
  (``normalize = false``). The dual norm is formed in log space from the scaled form: the unit direction
  is exact at any scale. ``eps`` > 0: the authors' ∇/(‖∇‖_q + eps).
* ``sign``: θ ← θ − lr·sign(∇L), with sign(∇L) = sign(g) (exact at any scale).
* ``adam``: optax's Adam on the global unit direction ∇L/‖∇L‖ (``input = "normalized"``, the default: the
  stable direction), or on the plain gradient (``input = "gradient"``: Adam as written, whose ε then
  dominates once ‖∇L‖ ≪ ε and slows it down).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import optax
from pydantic import Field, model_validator

from ..mirror_descent import lp_norm_jax, mirror_step
from .optim import OptimizerSpec, Scaled, normalize, register_optimizer, unscale


def dual_normalize(q: float, scope: str = "global", eps: float = 0.0) -> optax.GradientTransformation:
    """Scaled form → ∇L/‖∇L‖_q (entrywise dual norm over all blocks, or per block); 0 where ∇L = 0.

    log‖∇L‖_q = (1/q) logsumexp_b(q (log‖g_b‖_q + log_scale_b)); the output is g_b e^{log_scale_b − log‖∇L‖_q}.
    ``eps`` > 0: g_b e^{log_scale_b − log(‖∇L‖_q + eps)} (the authors' guarded division)."""
    if scope not in ("global", "block"):
        raise ValueError(f"scope must be 'global' or 'block', got {scope!r}")
    log_eps = math.log(eps) if eps > 0 else None

    def log_norm(s: Scaled) -> jax.Array:
        n = lp_norm_jax(s.g, q)
        return jnp.where(n > 0, jnp.log(jnp.where(n > 0, n, 1.0)), -jnp.inf) + s.log_scale

    def update(updates, state, params=None):
        del params
        if scope == "global":
            logs = jnp.stack([log_norm(s) for s in updates.values()])
            total = jax.scipy.special.logsumexp(q * logs) / q
            dens = {b: total for b in updates}
        else:
            dens = {b: log_norm(s) for b, s in updates.items()}
        out = {}
        for b, s in updates.items():
            den = dens[b]
            if log_eps is not None:
                out[b] = s.g * jnp.exp(s.log_scale - jnp.logaddexp(den, log_eps))
            else:
                ok = jnp.isfinite(den)
                out[b] = jnp.where(ok, s.g * jnp.exp(s.log_scale - jnp.where(ok, den, 0.0)), 0.0)
        return out, state

    return optax.GradientTransformation(optax.init_empty_state, update)


def direction_only() -> optax.GradientTransformation:
    """Scaled form → g (the O(1) part): its signs are those of ∇L."""

    def update(updates, state, params=None):
        del params
        return {b: s.g for b, s in updates.items()}, state

    return optax.GradientTransformation(optax.init_empty_state, update)


class MD(OptimizerSpec):
    """ℓp mirror descent: ∇ψ(θ⁺) = ∇ψ(θ) − lr·∇L/‖∇L‖_q, ψ = ‖·‖_p^p/p entrywise, q = p/(p−1) (module doc)."""

    name: Literal["md"] = "md"
    p: float = Field(default=2.0, gt=1, allow_inf_nan=False)
    normalize: bool = True
    scope: Literal["global", "block"] = "global"
    eps: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    uses_params: ClassVar[bool] = True

    @model_validator(mode="after")
    def _eps_needs_normalize(self) -> MD:
        if self.eps and not self.normalize:
            raise ValueError("eps: only used by the normalized step (normalize = true)")
        return self

    def direction(self) -> optax.GradientTransformation:
        first = dual_normalize(self.p / (self.p - 1.0), self.scope, self.eps) if self.normalize else unscale()
        return optax.chain(first, mirror_step(self.lr, self.p))


class Sign(OptimizerSpec):
    """sign-GD: θ ← θ − lr·sign(∇L) (steepest descent for the entrywise ℓ∞ norm)."""

    name: Literal["sign"] = "sign"

    def direction(self) -> optax.GradientTransformation:
        return optax.chain(direction_only(), optax.scale_by_sign(), optax.scale(-self.lr))


class Adam(OptimizerSpec):
    """Adam (optax.adam: b1, b2, eps) on the unit direction ∇L/‖∇L‖ (``input = "normalized"``) or on the
    plain gradient (``input = "gradient"``)."""

    name: Literal["adam"] = "adam"
    b1: float = Field(default=0.9, ge=0, lt=1)
    b2: float = Field(default=0.999, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0, allow_inf_nan=False)
    input: Literal["normalized", "gradient"] = "normalized"

    def direction(self) -> optax.GradientTransformation:
        first = normalize("global") if self.input == "normalized" else unscale()
        return optax.chain(first, optax.adam(self.lr, b1=self.b1, b2=self.b2, eps=self.eps))


for _cls in (MD, Sign, Adam):
    register_optimizer(_cls)

__all__ = ["MD", "Adam", "Sign", "direction_only", "dual_normalize"]

"""More optimizers of the registry: ℓp mirror descent (``md``), sign-GD (``sign``) and Adam (``adam``).

All three read the engine's scaled gradient ``Scaled(g_b, log_scale_b)`` (∇_b L = e^{log_scale_b} g_b,
‖g_b‖ = O(1)), so none of them loses its direction where the plain gradient underflows:

* ``md``: ∇ψ(θ⁺) = ∇ψ(θ) − lr·u with ψ(θ) = (1/p) Σ|θ_j|^p over every trained entry (so ∇ψ(θ) =
  sign(θ)|θ|^{p−1}, inverted by ∇ψ*(φ) = sign(φ)|φ|^{1/(p−1)}), and u the gradient divided by its dual norm
  ‖∇L‖_q, q = p/(p−1) (``normalize = true``, over all blocks or per block with ``scope = "block"``, as the
  AttentionMD code normalizes each parameter tensor), or u = ∇L (``normalize = false``). p = 2 is (normalized)
  gradient descent. The dual norm is formed in log space from the scaled form (per block the scale cancels:
  g_b/‖g_b‖_q after dividing g_b by max|g_b|), so the unit direction is exact at any scale and only ∇L = 0
  exactly gives a zero step. ``eps`` > 0: the authors' ∇/(‖∇‖_q + eps) (their code: eps = float64 machine
  epsilon), which emulates their arithmetic on purpose and *does* stall once ‖∇L‖_q ≪ eps.
* ``sign``: θ ← θ − lr·sign(∇L), with sign(∇L) = sign(g) (exact at any scale).
* ``adam``: optax's Adam on the global unit direction ∇L/‖∇L‖ (``input = "normalized"``, the default: the
  stable direction), or on the plain gradient (``input = "gradient"``: Adam as written, whose ε then
  dominates once ‖∇L‖ ≪ ε and slows it down).

:func:`mirror_descent` is the same ℓp step as a stand-alone optax transformation on plain gradients (for
optax users outside the engine); :func:`directional_bregman` is the measure the AttentionMD paper plots.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import optax
from pydantic import Field, model_validator

from .optim import OptimizerSpec, Scaled, normalize, register_optimizer, unscale

# ---- the ℓp mirror map and norms ------------------------------------------------------------------------------


def _check_p(p: float) -> float:
    p = float(p)
    if not 1.0 < p < float("inf"):
        raise ValueError(f"p: mirror descent needs 1 < p < inf, got {p}")
    return p


def lp_norm_jax(x: jax.Array, p: float) -> jax.Array:
    """Entrywise ‖x‖_p with a max-scaling (exact at any magnitude); 0 for x = 0."""
    a = jnp.abs(x)
    m = jnp.max(a) if a.size else jnp.zeros((), x.dtype)
    ms = jnp.where(m > 0, m, 1.0)
    if p == float("inf"):
        return m
    return m * jnp.sum((a / ms) ** p) ** (1.0 / p)


def _normalize_by_max(g: jax.Array) -> jax.Array:
    """g / max|g| (0 for g = 0): an exact rescaling before a norm is taken."""
    m = jnp.max(jnp.abs(g)) if g.size else jnp.zeros((), g.dtype)
    return jnp.where(m > 0, g / jnp.where(m > 0, m, 1.0), 0.0)


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


# ---- the transformations --------------------------------------------------------------------------------------


def dual_normalize(q: float, scope: str = "global", eps: float = 0.0) -> optax.GradientTransformation:
    """Scaled form → ∇L/‖∇L‖_q (entrywise dual norm over all blocks, or per block); 0 where ∇L = 0.

    Global: log‖∇L‖_q = (1/q) logsumexp_b(q (log‖g_b‖_q + log_scale_b)), the output g_b e^{log_scale_b −
    log‖∇L‖_q}. Per block the scale cancels: ĝ_b/‖ĝ_b‖_q with ĝ_b = g_b/max|g_b| (no log–exp round trip).
    ``eps`` > 0: g_b e^{log_scale_b − log(‖∇L‖_q + eps)} (the authors' guarded division, the norm of the
    same scope)."""
    if scope not in ("global", "block"):
        raise ValueError(f"scope must be 'global' or 'block', got {scope!r}")
    log_eps = math.log(eps) if eps > 0 else None

    def log_norm(s: Scaled) -> jax.Array:
        n = lp_norm_jax(s.g, q)
        return jnp.where(n > 0, jnp.log(jnp.where(n > 0, n, 1.0)), -jnp.inf) + s.log_scale

    def unit(g: jax.Array) -> jax.Array:
        h = _normalize_by_max(g)
        n = lp_norm_jax(h, q)
        return jnp.where(n > 0, h / jnp.where(n > 0, n, 1.0), 0.0)

    def update(updates, state, params=None):
        del params
        if scope == "block" and log_eps is None:
            return {b: unit(s.g) for b, s in updates.items()}, state
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


def mirror_step(learning_rate: float, p: float) -> optax.GradientTransformation:
    """The mirror step on a given direction u (plain arrays, normalized or not): the update θ⁺ − θ with
    ∇ψ(θ⁺) = ∇ψ(θ) − lr·u, ψ = ‖·‖_p^p/p entrywise. Needs ``params``; stateless."""
    p = _check_p(p)

    def one(u, th):
        if p == 2.0:
            return -learning_rate * u  # ∇ψ is the identity: no round trip through θ
        phi = mirror_map(th, p) - learning_rate * u
        # an entry without gradient does not move (exactly: no round trip through the mirror map)
        return jnp.where(u == 0, 0.0, inverse_mirror_map(phi, p) - th)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("mirror_step needs params (optax: tx.update(grads, state, params))")
        return jax.tree.map(one, updates, params), state

    return optax.GradientTransformation(optax.init_empty_state, update)


def as_scaled() -> optax.GradientTransformation:
    """Plain gradients → the scaled form ``Scaled(g, 0)`` the engine's transformations read."""

    def update(updates, state, params=None):
        del params
        return {b: Scaled(g, jnp.zeros((), g.dtype)) for b, g in updates.items()}, state

    return optax.GradientTransformation(optax.init_empty_state, update)


def mirror_descent(learning_rate: float, p: float, normalize: bool = True, per_block: bool = False,
                   eps: float = 0.0) -> optax.GradientTransformation:
    """ℓp mirror descent on plain gradients (a dict of blocks) as an optax transformation; needs ``params``.

    ∇ψ(θ⁺) = ∇ψ(θ) − η g/‖g‖_q (``normalize``; the dual norm over all blocks, or one per block with
    ``per_block``), or ∇ψ(θ⁺) = ∇ψ(θ) − η g; ``eps`` > 0: the authors' g/(‖g‖_q + eps). The same chain
    as the registry's ``MD`` (module docstring) after reading g as the scaled form (g, 0)."""
    p = _check_p(p)
    if not learning_rate > 0:
        raise ValueError(f"lr: must be positive, got {learning_rate}")
    if eps < 0:
        raise ValueError(f"eps: must be ≥ 0, got {eps}")
    spec = MD(lr=learning_rate, p=p, normalize=normalize, scope="block" if per_block else "global",
              eps=eps if normalize else 0.0)
    return optax.chain(as_scaled(), spec.direction())


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

__all__ = ["MD", "Adam", "Sign", "as_scaled", "direction_only", "dual_normalize", "inverse_mirror_map",
           "lp_norm_jax", "mirror_descent", "mirror_map", "mirror_step"]

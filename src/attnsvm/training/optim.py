"""Optimizers as optax gradient transformations fed with the stable descent direction.

**Input of every chain.** The engine hands the optimizer, at each step, the gradient of every trained
block b in *scaled form* ``Scaled(g_b, log_scale_b)`` with ∇_b L = e^{log_scale_b} · g_b and ‖g_b‖ = O(1)
(the log-space gradient of :mod:`attnsvm.objectives`). The first transformation of a chain turns it into
ordinary arrays:

* :func:`unscale` — g_b · e^{log_scale_b}, the plain gradient (it may underflow to 0 deep in saturation:
  fine for methods whose step scales with the gradient, such as GD or Adam);
* :func:`normalize` — ∇L/‖∇L‖ (``"global"``: one norm over all blocks) or ∇_b L/‖∇_b L‖ (``"block"``),
  formed from the scaled form, so the unit direction is exact at any scale; with ``eps`` > 0 it is the
  authors' ∇/(‖∇‖ + eps) instead, computed as g · e^{log_scale − log(e^{log‖∇‖} + eps)} (no underflow
  either), to emulate on purpose the arithmetic of code that adds eps = 2.2e−16 to the norm.

Before it, transformations on the scaled form: :func:`add_decayed_weights` (the ridge ∇(L + λ‖θ‖²/2) =
∇L + λθ, summed in log space: the role of ``optax.add_decayed_weights`` for the scaled form, where λθ may
be far above or below ∇L) and :func:`freeze` (``optax.masked(optax.set_to_zero(), ·)``: a frozen block
contributes a zero gradient, so it is also left out of the global norm). After it, any optax
transformation on plain arrays (``optax.scale(-lr)``, ``optax.scale_by_adam()``, …). The chain's output is
the update Δθ, applied as θ ← θ + Δθ (``optax.apply_updates``).

**The registry.** ``[optimizer] name`` in a config selects one entry of :data:`OPTIMIZERS`: a frozen
pydantic model (its fields are the config keys, every one validated; unknown keys are errors) whose
:meth:`OptimizerSpec.transformation` builds the chain. To add an optimizer, write one module::

    class Sign(OptimizerSpec):
        '''θ ← θ − lr · sign(∇L).'''
        name: Literal["sign"] = "sign"

        def direction(self) -> optax.GradientTransformation:
            return optax.chain(unscale(), optax.scale_by_sign(), optax.scale(-self.lr))

    register_optimizer(Sign)

(``direction`` is the chain after the ridge and the frozen blocks, which the base class prepends; override
:meth:`OptimizerSpec.transformation` instead to control the whole chain.) Transformations that need θ
(mirror descent) receive it as optax's ``params`` argument. The spec is hashable: the compiled engines key
their cache on it, and build the chain inside the traced program.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from pydantic import BaseModel, ConfigDict, Field

NEG_INF = -jnp.inf


class Scaled(NamedTuple):
    """∇_b L = e^{log_scale} · g for one block (a pytree node: optax transformations map over both leaves)."""

    g: jax.Array
    log_scale: jax.Array


def _log_norm(s: Scaled) -> jax.Array:
    """log‖e^{log_scale} g‖ (−inf for a zero block)."""
    nrm = jnp.sqrt(jnp.sum(s.g**2))
    return jnp.where(nrm > 0, jnp.log(jnp.where(nrm > 0, nrm, 1.0)), NEG_INF) + s.log_scale


def log_global_norm(direction: dict) -> jax.Array:
    """log‖∇L‖ over all blocks of a scaled direction (−inf when every block is zero)."""
    lb = jnp.stack([_log_norm(s) for s in direction.values()])
    return 0.5 * jax.scipy.special.logsumexp(2.0 * lb)


def unscale(step_size: float = 1.0) -> optax.GradientTransformation:
    """Scaled form → step_size · g · e^{log_scale}, the plain gradient times ``step_size`` (may underflow where
    the scale is below 1e−308). (``step_size`` is applied first, as (step_size·g)·e^{log_scale}: the order of
    the engine these numbers were first computed with, kept so that they stay identical to the last bit.)"""

    def update(updates, state, params=None):
        del params
        return {b: step_size * s.g * jnp.exp(s.log_scale) for b, s in updates.items()}, state

    return optax.GradientTransformation(optax.init_empty_state, update)


def normalize(mode: str = "global", eps: float = 0.0, step_size: float = 1.0) -> optax.GradientTransformation:
    """Scaled form → step_size · ∇L/‖∇L‖ (``mode="global"``) or step_size · ∇_b L/‖∇_b L‖ per block
    (``"block"``); 0 where ∇ = 0.

    ``eps`` > 0: ∇/(‖∇‖ + eps) instead (the norm of the same mode), exact in log space. ``step_size`` is
    applied first (as in :func:`unscale`, for bit-identical numbers); ``optax.scale`` after it is equivalent
    to rounding."""
    if mode not in ("global", "block"):
        raise ValueError(f"normalize must be 'global' or 'block', got {mode!r}")
    log_eps = math.log(eps) if eps > 0 else None

    def update(updates, state, params=None):
        del params
        if mode == "global" and len(updates) > 1:
            lnorm = log_global_norm(updates)
            if log_eps is None:
                ok = jnp.isfinite(lnorm)
                shift = jnp.where(ok, lnorm, 0.0)
                out = {b: jnp.where(ok, step_size * s.g * jnp.exp(s.log_scale - shift), 0.0)
                       for b, s in updates.items()}
            else:
                den = jnp.logaddexp(lnorm, log_eps)
                out = {b: step_size * s.g * jnp.exp(s.log_scale - den) for b, s in updates.items()}
            return out, state
        # "block", or one block: ∇_b L/‖∇_b L‖ from the O(1) part alone (the block's own scale cancels)
        out = {}
        for b, s in updates.items():
            nrm = jnp.sqrt(jnp.sum(s.g**2))
            if log_eps is None:
                out[b] = jnp.where(nrm > 0, step_size * s.g / jnp.where(nrm > 0, nrm, 1.0), 0.0)
            else:
                out[b] = step_size * s.g * jnp.exp(s.log_scale - jnp.logaddexp(_log_norm(s), log_eps))
        return out, state

    return optax.GradientTransformation(optax.init_empty_state, update)


def add_decayed_weights(ridge: float) -> optax.GradientTransformation:
    """Scaled form → the scaled form of ∇L + λθ (the gradient of L + λ‖θ‖²/2), the sum taken in log space:
    e^M (g e^{log_scale − M} + θ e^{log λ − M}), M = max(log_scale, log λ). Needs ``params``."""

    def update(updates, state, params=None):
        if ridge == 0.0:
            return updates, state
        if params is None:
            raise ValueError("add_decayed_weights: the ridge needs the parameters")
        lr = jnp.log(ridge)
        out = {}
        for b, s in updates.items():
            M = jnp.maximum(s.log_scale, lr)
            out[b] = Scaled(s.g * jnp.exp(s.log_scale - M) + params[b] * jnp.exp(lr - M), M)
        return out, state

    return optax.GradientTransformation(optax.init_empty_state, update)


def freeze(blocks: tuple[str, ...]) -> optax.GradientTransformation:
    """Zero the gradient of the frozen blocks (``optax.masked`` over blocks; works on either form)."""
    frozen = frozenset(blocks)
    return optax.masked(optax.set_to_zero(), lambda tree: {b: b in frozen for b in tree})


# ---- the registry ---------------------------------------------------------------------------------------------


class OptimizerSpec(BaseModel):
    """A discrete optimizer: its settings (validated, hashable) and the optax chain they build.

    lr: step size;  ridge: λ of an explicit λ‖θ‖²/2 added to the loss (0: off);  freeze: blocks kept fixed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    lr: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    ridge: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    freeze: tuple[str, ...] = ()

    #: the chain needs θ at every step (mirror descent); informational
    uses_params: ClassVar[bool] = False

    def direction(self) -> optax.GradientTransformation:
        """The chain from the scaled gradient (ridge added, frozen blocks zeroed) to the update Δθ."""
        raise NotImplementedError

    def transformation(self) -> optax.GradientTransformation:
        """ridge → frozen blocks → :meth:`direction`."""
        parts: list[Any] = []
        if self.ridge:
            parts.append(add_decayed_weights(self.ridge))
        if self.freeze:
            parts.append(freeze(self.freeze))
        return optax.chain(*parts, self.direction())


class GD(OptimizerSpec):
    """Gradient descent θ ← θ − lr ∇L."""

    name: Literal["gd"] = "gd"

    def direction(self) -> optax.GradientTransformation:
        return unscale(-self.lr)


class NGD(OptimizerSpec):
    """Normalized GD θ ← θ − lr ∇L/‖∇L‖ (``normalize="global"``) or θ_b ← θ_b − lr ∇_b L/‖∇_b L‖ per block
    (``"block"``, as P3's (K, Q) code and P1's joint (v, p) code do). ``eps`` > 0: ∇/(‖∇‖ + eps), the
    arithmetic of code that guards the division (eps = 2.2e−16 in P3's notebooks); 0 is the exact step."""

    name: Literal["ngd"] = "ngd"
    normalize: Literal["global", "block"] = "global"
    eps: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    def direction(self) -> optax.GradientTransformation:
        return normalize(self.normalize, self.eps, -self.lr)


#: ``[optimizer] name`` → its settings model (every entry is a :class:`OptimizerSpec` subclass)
OPTIMIZERS: dict[str, type[OptimizerSpec]] = {"gd": GD, "ngd": NGD}


def register_optimizer(cls: type[OptimizerSpec]) -> type[OptimizerSpec]:
    """Add an optimizer to the registry under the default of its ``name`` field (usable as a decorator)."""
    name = cls.model_fields["name"].default
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__}: the name field needs a string default (Literal['…'] = '…')")
    if name in OPTIMIZERS and OPTIMIZERS[name] is not cls:
        raise ValueError(f"optimizer {name!r} is already registered ({OPTIMIZERS[name].__name__})")
    OPTIMIZERS[name] = cls
    return cls


def optimizer(name: str, **settings: Any) -> OptimizerSpec:
    """The registered optimizer ``name`` with ``settings`` (validated)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer name must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](**settings)


__all__ = ["GD", "NGD", "OPTIMIZERS", "OptimizerSpec", "Scaled", "add_decayed_weights", "freeze",
           "log_global_norm", "normalize", "optimizer", "register_optimizer", "unscale"]

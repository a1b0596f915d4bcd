"""The parameterization protocol: θ → attention matrix W(θ) → logits a_it.

A parameterization is a small frozen dataclass (hashable: the compiled engines key on it) with

* ``name`` and ``blocks`` (the trainable arrays of θ, e.g. ``("K", "Q")``), ``shapes(d, d_key)``;
* ``default_init`` — (scheme, scale) used when the user gives none (never a stationary point for a flow);
* ``weights(θ)`` — the attention matrix W(θ) (d×d; p for the prompt model; (H, d, d) for H heads);
* ``logits(θ, data)`` — a_it (n, T), or (H, n, T) for H heads, before masking;
* ``ball_radius(R)`` — the Euclidean radius in θ-space of the constraint set of radius R (regularization
  path): R for a parameterization linear in θ, √(2R) for a product of two blocks (whose ball
  (‖K‖² + ‖Q‖²)/2 ≤ R maps onto ‖KQᵀ‖_* ≤ R);
* ``predicted_norm`` / ``compared_norms`` — the Att-SVM norm its direction is predicted to minimise and
  the ones a verdict compares (``l2`` p, ``fro`` W, ``nuclear`` (K, Q), ``l1`` diag(k⊙q));
* ``bilinear`` — True when the logits are x_itᵀ W(θ) z_i (the gradient is then pulled back through W);
* optionally ``conserved(θ)`` — (C(θ), size) of a conservation law of the gradient flow, or None.

Nothing else: the gradient is the objective's log-space ∂L/∂a (:mod:`attnsvm.objectives`) pulled back
through ``logits`` with ``jax.vjp`` (:func:`attnsvm.models.stable_grad`), so a new parameterization is one
class (``register_parameterization`` adds its name to configs) and no engine changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Parameterization:
    """Base class (see the module docstring for the protocol)."""

    name: ClassVar[str] = ""
    blocks: ClassVar[tuple[str, ...]] = ()
    default_init: ClassVar[tuple[str, float]] = ("gaussian", 0.01)
    predicted_norm: ClassVar[str] = "fro"
    compared_norms: ClassVar[tuple[str, ...]] = ("fro", "nuclear")
    #: the logits use the queries Z (False: the prompt model, whose logits use a fixed key matrix)
    needs_queries: ClassVar[bool] = True
    heads: ClassVar[int] = 1
    #: the logits are x_itᵀ W(θ) z_i: the gradient is then pulled back in two stages, ∂L/∂W = Σ_it c_it x_it z_iᵀ
    #: (one einsum) and ``jax.vjp`` through W(θ) (cheaper than through the logits; the summation order of
    #: the original engine, so the numbers stay the same to the last bit)
    bilinear: ClassVar[bool] = True

    def shapes(self, d: int, d_key: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def weights(self, params: dict) -> jax.Array:
        raise NotImplementedError

    def logits(self, params: dict, data) -> jax.Array:
        """a_it = x_itᵀ W(θ) z_i (n, T) by default; override for another logit form."""
        return bilinear_logits(self.weights(params), data)

    def ball_radius(self, R):
        return R

    def conserved(self, params: dict):
        """(C(θ), size of the terms of C) for a conservation law of the flow, or None."""
        return None


def bilinear_logits(W: jax.Array, data) -> jax.Array:
    """x_itᵀ W z_i for every (i, t)."""
    return jnp.einsum("itd,de,ie->it", data.X, W, data.Z)


#: name → parameterization class (``Model(parameterization=name)`` and configs)
PARAMETERIZATIONS: dict[str, type[Parameterization]] = {}


def register_parameterization(cls: type[Parameterization]) -> type[Parameterization]:
    """Make ``cls`` available by its ``name`` (a decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a parameterization needs a name")
    PARAMETERIZATIONS[cls.name] = cls
    return cls


__all__ = ["PARAMETERIZATIONS", "Parameterization", "bilinear_logits", "register_parameterization"]

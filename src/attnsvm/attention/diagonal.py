"""The diagonal model of P2: k, q ∈ R^d, W = diag(k ⊙ q) (its flow keeps k² − q²; direction → ℓ1 SVM)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp

from .base import Parameterization, register_parameterization


@register_parameterization
@dataclass(frozen=True)
class Diagonal(Parameterization):
    name: ClassVar[str] = "diagonal"
    blocks: ClassVar[tuple[str, ...]] = ("k", "q")
    predicted_norm: ClassVar[str] = "l1"
    compared_norms: ClassVar[tuple[str, ...]] = ("fro", "nuclear", "l1")

    def shapes(self, d, d_key):
        return {"k": (d,), "q": (d,)}

    def weights(self, params):
        return jnp.diag(params["k"] * params["q"])

    def logits(self, params, data):
        return jnp.einsum("itd,d,id->it", data.X, params["k"] * params["q"], data.Z)

    def ball_radius(self, R):
        return jnp.sqrt(2.0 * R)

    def conserved(self, params):
        KK, QQ = params["k"] ** 2, params["q"] ** 2
        return KK - QQ, (KK, QQ)

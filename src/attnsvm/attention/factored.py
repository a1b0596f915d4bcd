"""The factored model: keys and queries K, Q ∈ R^{d×m}, W = K Qᵀ (P3's (K, Q); its flow keeps KᵀK − QᵀQ)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp

from .base import Parameterization, register_parameterization


@register_parameterization
@dataclass(frozen=True)
class Factored(Parameterization):
    """hidden: m, the width of K and Q (default d)."""

    hidden: int | None = None
    name: ClassVar[str] = "factored"
    blocks: ClassVar[tuple[str, ...]] = ("K", "Q")
    predicted_norm: ClassVar[str] = "nuclear"

    def shapes(self, d, d_key):
        m = self.hidden or d
        return {"K": (d, m), "Q": (d, m)}

    def weights(self, params):
        return params["K"] @ params["Q"].T

    def logits(self, params, data):
        # (X K)(Z Q)ᵀ: never forms W, as P3's code
        return jnp.einsum("itm,im->it", data.X @ params["K"], data.Z @ params["Q"])

    def ball_radius(self, R):
        return jnp.sqrt(2.0 * R)

    def conserved(self, params):
        K, Q = params["K"], params["Q"]
        KK, QQ = jnp.swapaxes(K, -1, -2) @ K, jnp.swapaxes(Q, -1, -2) @ Q
        return KK - QQ, (KK, QQ)

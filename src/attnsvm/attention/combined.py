"""The combined model: one trained matrix W, a_it = x_itᵀ W z_i."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Parameterization, register_parameterization


@register_parameterization
@dataclass(frozen=True)
class Combined(Parameterization):
    name: ClassVar[str] = "combined"
    blocks: ClassVar[tuple[str, ...]] = ("W",)
    default_init: ClassVar[tuple[str, float]] = ("zero", 0.0)

    def shapes(self, d, d_key):
        return {"W": (d, d)}

    def weights(self, params):
        return params["W"]

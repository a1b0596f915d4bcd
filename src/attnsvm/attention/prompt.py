"""The prompt model of P1: a_it = x_itᵀ K p with a fixed key matrix K and the trained prompt p ∈ R^{d'}."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Parameterization, register_parameterization


@register_parameterization
@dataclass(frozen=True)
class Prompt(Parameterization):
    name: ClassVar[str] = "prompt"
    blocks: ClassVar[tuple[str, ...]] = ("p",)
    default_init: ClassVar[tuple[str, float]] = ("zero", 0.0)
    predicted_norm: ClassVar[str] = "l2"
    compared_norms: ClassVar[tuple[str, ...]] = ("l2",)
    needs_queries: ClassVar[bool] = False
    bilinear: ClassVar[bool] = False

    def shapes(self, d, d_key):
        return {"p": (d_key,)}

    def weights(self, params):
        return params["p"]

    def logits(self, params, data):
        return (data.X @ data.K) @ params["p"]

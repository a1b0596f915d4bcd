"""Multi-head attention: H heads, each with its own attention matrix W_h (combined) or K_h Q_hᵀ (factored)
and its own fixed value vector v_h:

    f(X_i) = Σ_h v_hᵀ X_iᵀ softmax(X_i W_h z_i).

The blocks are those of the head parameterization with a leading head axis (``W`` (H, d, d), or ``K``, ``Q``
(H, d, m)); ``weights`` is (H, d, d) and ``logits`` (H, n, T). The value vectors are data (``Data.v`` of
shape (H, d)), not trained. With H = 1 the model is the single-head one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax

from .base import PARAMETERIZATIONS, Parameterization, register_parameterization


@register_parameterization
@dataclass(frozen=True)
class MultiHead(Parameterization):
    """heads: H;  head_parameterization: ``"combined"`` or ``"factored"``;  hidden: m of factored heads."""

    heads: int = 2
    head_parameterization: str = "combined"
    hidden: int | None = None
    name: ClassVar[str] = "multihead"

    def __post_init__(self) -> None:
        if isinstance(self.heads, bool) or int(self.heads) != self.heads or self.heads < 1:
            raise ValueError(f"heads: must be an integer ≥ 1, got {self.heads}")
        if self.head_parameterization not in ("combined", "factored"):
            raise ValueError(f"head_parameterization must be 'combined' or 'factored', "
                             f"got {self.head_parameterization!r}")

    @property
    def head(self) -> Parameterization:
        cls = PARAMETERIZATIONS[self.head_parameterization]
        return cls(hidden=self.hidden) if self.head_parameterization == "factored" else cls()

    @property
    def blocks(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.head.blocks

    @property
    def default_init(self) -> tuple[str, float]:  # type: ignore[override]
        # heads started at one common point (W = 0) would stay identical: break the symmetry
        return ("gaussian", 0.01)

    @property
    def bilinear(self) -> bool:  # type: ignore[override]
        return self.head.bilinear

    @property
    def predicted_norm(self) -> str:  # type: ignore[override]
        return self.head.predicted_norm

    def shapes(self, d, d_key):
        return {b: (self.heads,) + s for b, s in self.head.shapes(d, d_key).items()}

    def weights(self, params):
        return jax.vmap(self.head.weights)(params)

    def logits(self, params, data):
        return jax.vmap(lambda p: self.head.logits(p, data))(params)

    def ball_radius(self, R):
        return self.head.ball_radius(R)

    def conserved(self, params):
        return None if self.head.conserved({b: v[0] for b, v in params.items()}) is None \
            else jax.vmap(self.head.conserved)(params)

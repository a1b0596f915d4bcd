"""ℓ2 norm of the prompt vector p: p^mm = argmin ‖p‖ s.t. (x_iα − x_it)ᵀ K p ≥ c_i (exact, NNLS)."""

from __future__ import annotations

from ._euclidean import CERT_TOL_EXACT, euclidean_norm, solve_least_distance
from ._registry import NormSpec, register_norm

SPEC = register_norm(NormSpec(
    name="l2", variable="prompt", value=euclidean_norm, dual=euclidean_norm, solve=solve_least_distance,
    tolerance=CERT_TOL_EXACT, euclidean=True, summary="ℓ2 norm of the prompt p (p^mm), exact by NNLS"))

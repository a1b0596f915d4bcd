"""Frobenius norm of W: W^mm = argmin ‖W‖_F s.t. (x_iα − x_it)ᵀ W z_i ≥ c_i (exact, NNLS)."""

from __future__ import annotations

from ._euclidean import CERT_TOL_EXACT, euclidean_norm, solve_least_distance
from ._registry import NormSpec, register_norm

SPEC = register_norm(NormSpec(
    name="fro", variable="matrix", value=euclidean_norm, dual=euclidean_norm, solve=solve_least_distance,
    tolerance=CERT_TOL_EXACT, euclidean=True, summary="Frobenius norm of W (W^mm), exact by NNLS"))

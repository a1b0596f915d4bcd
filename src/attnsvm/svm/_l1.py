"""ℓ1 norm of a diagonal W = diag(w): argmin ‖w‖₁ s.t. ((x_iα − x_it) ⊙ z_i)ᵀ w ≥ c_i, an LP (HiGHS)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import linprog

from ._constraints import Constraints
from ._euclidean import CERT_TOL_EXACT
from ._registry import NormSpec, RawSolution, register_norm
from ._status import INFEASIBLE, OPTIMAL, SOLVER_ERROR


def l1_value(w: np.ndarray) -> float:
    return float(np.abs(w).sum())


def linf_value(g: np.ndarray) -> float:
    return float(np.abs(g).max()) if g.size else 0.0


def solve_l1(cons: Constraints, options: Mapping[str, Any]) -> RawSolution:
    """min ‖w‖₁ s.t. a_kᵀw ≥ c_k as an LP in (w⁺, w⁻) ≥ 0 with HiGHS; λ = ‖w‖₁ · (HiGHS row duals)."""
    A, c = cons.rows, cons.rhs
    m, p = A.shape
    res = linprog(np.ones(2 * p), A_ub=np.hstack([-A, A]), b_ub=-c, bounds=(0, None), method="highs")
    if res.status == 2:
        return RawSolution(INFEASIBLE, None, None, "highs", f"HiGHS: {res.message}")
    if res.status != 0:
        return RawSolution(SOLVER_ERROR, None, None, "highs", f"HiGHS: {res.message}")
    w = res.x[:p] - res.x[p:]
    y = np.maximum(-np.asarray(res.ineqlin.marginals), 0.0)
    return RawSolution(OPTIMAL, w, y * float(np.abs(w).sum()), "highs", f"HiGHS: {res.message}")


SPEC = register_norm(NormSpec(
    name="l1", variable="diagonal", value=l1_value, dual=linf_value, solve=solve_l1, tolerance=CERT_TOL_EXACT,
    summary="ℓ1 norm of the diagonal w of W = diag(w), LP by HiGHS"))

"""The solver shared by the two Euclidean norms (fro on vec W, l2 on p): the exact least-distance NNLS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._constraints import Constraints
from ._ldp import farkas_lp, least_distance
from ._registry import RawSolution
from ._status import INFEASIBLE, OPTIMAL, SOLVER_ERROR

#: certificate tolerance of the exact solvers
CERT_TOL_EXACT = 1e-8


def solve_least_distance(cons: Constraints, options: Mapping[str, Any]) -> RawSolution:
    """min ‖θ‖₂ s.t. ⟨A_k, θ⟩ ≥ c_k by NNLS; infeasibility decided by a Farkas LP (HiGHS)."""
    r = least_distance(cons.rows, cons.rhs)
    if r.status == INFEASIBLE:
        farkas = farkas_lp(cons.rows, cons.rhs)
        if farkas is not None:
            return RawSolution(INFEASIBLE, None, None, "nnls+highs", "", farkas=farkas)
        if r.den > 0:
            # NNLS sees ‖θ‖ > 1e6 (on data of unit scale) and no Farkas certificate exists: the problem is
            # feasible with a huge solution θ = Aᵀu/(1 − cᵀu); its certificate says how accurate it is.
            lam = r.u / r.den
            return RawSolution(OPTIMAL, cons.rows.T @ lam, lam, "nnls",
                               f"near-infeasible: ‖θ‖ ≈ {np.sqrt(1 / r.den - 1):.3g} at unit data scale, "
                               "no Farkas certificate")
        return RawSolution(SOLVER_ERROR, None, None, "nnls+highs",
                           "NNLS reached cᵀu ≥ 1 but no Farkas certificate exists: the least-distance solve failed")
    return RawSolution(OPTIMAL, r.theta, r.lam, "nnls")


def euclidean_norm(x: np.ndarray) -> float:
    return float(np.linalg.norm(x))

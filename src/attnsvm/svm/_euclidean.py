"""The solver shared by the two Euclidean norms (fro on vec W, l2 on p): the exact least-distance NNLS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._constraints import Constraints
from ._ldp import farkas_lp, least_distance
from ._registry import RawSolution
from ._status import INACCURATE, INFEASIBLE, OPTIMAL

#: certificate tolerance of the exact solvers
CERT_TOL_EXACT = 1e-8


def solve_least_distance(cons: Constraints, options: Mapping[str, Any]) -> RawSolution:
    """min ‖θ‖₂ s.t. ⟨A_k, θ⟩ ≥ c_k by NNLS; infeasibility decided by a Farkas LP (HiGHS)."""
    r = least_distance(cons.rows, cons.rhs)
    if r.status == INFEASIBLE:
        farkas = farkas_lp(cons.rows, cons.rhs)
        if farkas is None:
            # NNLS saw ‖θ‖ > 1e6 but no exact certificate exists: report the huge solution as inaccurate.
            return RawSolution(INACCURATE, cons.rows.T @ (r.farkas * 1e12), r.farkas * 1e12, "nnls",
                               "near-infeasible: ‖θ‖ > 1e6 and no Farkas certificate")
        return RawSolution(INFEASIBLE, None, None, "nnls+highs", "", farkas=farkas)
    return RawSolution(OPTIMAL, r.theta, r.lam, "nnls")


def euclidean_norm(x: np.ndarray) -> float:
    return float(np.linalg.norm(x))

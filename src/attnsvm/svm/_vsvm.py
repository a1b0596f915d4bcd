"""The hard-margin SVM of the selected tokens (v^mm) and P1's relaxed margins."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..problem import AttentionProblem
from ._certificate import certificate_rows
from ._constraints import check_selection
from ._ldp import farkas_lp, least_distance
from ._results import Certificate
from ._solve import SUPPORT_TOL
from ._status import INFEASIBLE, OPTIMAL


@dataclass(frozen=True)
class VSVMResult:
    """v^mm = argmin ‖v‖ s.t. Y_i vᵀ r_i ≥ 1 with r_i = x_{iα_i} (hard margin, no intercept)."""

    status: str
    v: np.ndarray
    value: float
    duals: np.ndarray  # (n,) multipliers of ½‖v‖²: v = Σ λ_i Y_i r_i
    margin: np.ndarray  # (n,) Y_i vᵀ r_i
    support_samples: tuple[int, ...]
    certificate: Certificate
    selection: np.ndarray
    farkas: np.ndarray | None = None


def solve_v_svm(problem: AttentionProblem, selection="opt", tol: float = SUPPORT_TOL) -> VSVMResult:
    """Exact hard-margin SVM of the selected tokens (P1, joint training): min ‖v‖ s.t. Y_i vᵀ x_{iα_i} ≥ 1.

    Solved as a least-distance problem by NNLS (no intercept, no C → ∞ limit). Support samples:
    S = {i : Y_i vᵀ r_i − 1 ≤ tol}.
    """
    sel = check_selection(problem, selection)
    R = problem.X[np.arange(problem.n), sel]
    A = problem.Y[:, None] * R
    c = np.ones(problem.n)
    r = least_distance(A, c)
    if r.status == INFEASIBLE:
        far = farkas_lp(A, c)
        far = r.farkas if far is None else far
        cert = Certificate(float("nan"), float("nan"), float("nan"), float("nan"), float("inf"), float("inf"))
        return VSVMResult(INFEASIBLE, np.full(problem.d, np.nan), float("inf"), np.zeros(problem.n),
                          np.full(problem.n, np.nan), (), cert, sel, far)
    margin = A @ r.theta
    support = tuple(int(i) for i in np.flatnonzero(margin - 1.0 <= tol))
    return VSVMResult(OPTIMAL, r.theta, float(np.linalg.norm(r.theta)), r.lam, margin, support,
                      certificate_rows(A, c, r.theta, r.lam, "l2"), sel)


def relaxed_margins_from_v(problem: AttentionProblem, selection="opt", tol: float = SUPPORT_TOL
                           ) -> np.ndarray:
    """P1's relaxed margins: c_i = 1 for the support samples of the v-SVM at α, c_i = 0 otherwise.

    Att-SVM with these margins is p^relax (P1, joint (v, p) training)."""
    vres = solve_v_svm(problem, selection, tol)
    if vres.status != OPTIMAL:
        raise ValueError("selection: the selected tokens are not linearly separable by v (the v-SVM is "
                         "infeasible), so there are no support samples to relax the margins from")
    c = np.zeros(problem.n)
    c[list(vres.support_samples)] = 1.0
    return c

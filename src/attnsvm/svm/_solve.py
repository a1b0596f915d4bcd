"""The entry point :func:`solve_svm`: constraints → the norm's solver → certified :class:`SVMResult`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..problem import AttentionProblem
from ._certificate import certificate_rows
from ._constraints import Constraints, build_constraints, pow2_scale
from ._ldp import farkas_lp, is_farkas, least_distance, zero_row_farkas
from ._registry import RawSolution, get_norm
from ._results import NO_CERTIFICATE, Certificate, SVMResult
from ._status import INACCURATE, INFEASIBLE, OPTIMAL, SOLVER_ERROR

#: A constraint is *active* (its token a support token) when ⟨A_it, θ⟩ − c_i ≤ SUPPORT_TOL. Margins are
#: normalized to 1 by the problem itself, so this is an absolute tolerance on a quantity of order 1; the
#: exact solvers are accurate to ~1e−13 and SCS to ~1e−8, both far inside it.
SUPPORT_TOL = 1e-6


def constraints_certificate(cons: Constraints, theta: np.ndarray, lam: np.ndarray) -> Certificate:
    """Certificate numbers of (θ, λ) for the squared problem of these constraints."""
    d = cons.diffs.shape[2]
    shape = (d, d) if cons.variable == "matrix" else None
    return certificate_rows(cons.rows, cons.rhs, theta, lam, cons.norm, shape)


def _infeasible_samples(cons: Constraints) -> tuple[tuple[int, np.ndarray], ...]:
    """Samples whose own constraints are infeasible, each with a Farkas certificate on its rows only.

    One small LP per sample (only ever run for an infeasible problem)."""
    out = []
    sample = cons.index[:, 0]
    for i in np.unique(sample):
        rows = np.flatnonzero(sample == i)
        A_i, c_i = cons.rows[rows], cons.rhs[rows]
        lam_i = zero_row_farkas(A_i, c_i)
        if lam_i is None:
            lam_i = farkas_lp(A_i, c_i)
        if lam_i is not None:
            lam = np.zeros(cons.rows.shape[0])
            lam[rows] = lam_i
            out.append((int(i), lam))
    return tuple(out)


def _no_solution(cons: Constraints, status: str, solver: str, message: str, farkas: np.ndarray | None = None,
                 infeasible_samples: tuple[int, ...] = (), farkas_samples: tuple[int, ...] = ()) -> SVMResult:
    n, T = cons.valid.shape
    return SVMResult(status=status, norm=cons.norm, value=float("inf") if status == INFEASIBLE else float("nan"),
                     solution=np.full(cons.vector_to_solution(np.zeros(cons.dim)).shape, np.nan),
                     active=np.zeros((n, T), bool),
                     duals=np.zeros((n, T)), certificate=NO_CERTIFICATE, selection=cons.selection,
                     margins=cons.margins, margin=np.full((n, T), np.nan), constrained=cons.valid,
                     solver=solver, message=message.strip("; "), farkas=farkas,
                     infeasible_samples=infeasible_samples, farkas_samples=farkas_samples,
                     support_tokens=tuple(() for _ in range(n)))


def _infeasible_result(cons: Constraints, solver: str, message: str, farkas: np.ndarray | None
                       ) -> SVMResult:
    """INFEASIBLE with a verified Farkas certificate, or SOLVER_ERROR when the solver's claim has none."""
    alone = _infeasible_samples(cons)
    if alone:
        # a certificate supported on one sample names the culprit directly
        farkas = alone[0][1]

        def tokens_of(lam_i: np.ndarray) -> str:
            return ",".join(str(int(t)) for t in cons.index[lam_i > 0, 1])

        message = (message + "; " if message else "") + \
            "infeasible by itself: sample(s) " + \
            ", ".join(f"{i} (tokens {tokens_of(lam_i)} vs selected {int(cons.selection[i])})"
                      for i, lam_i in alone) + \
            " — e.g. a token identical to the selected one, or differences with 0 in their convex hull"
    if farkas is None:
        farkas = farkas_lp(cons.rows, cons.rhs)
    if farkas is None:
        return _no_solution(cons, SOLVER_ERROR, solver, (message + "; " if message else "") +
                            "the solver reported the problem infeasible but no Farkas certificate exists")
    tiny = 1e-12 * max(float(farkas.max()), 1e-300)
    used = tuple(int(i) for i in np.unique(cons.index[farkas > tiny, 0]))
    resid = float(np.linalg.norm(cons.rows.T @ farkas))
    size = float(np.linalg.norm(np.abs(cons.rows).T @ farkas))
    gain = float(cons.rhs @ farkas)
    message += f"; Farkas: ‖Σλ A‖ = {resid:.2e} (terms {size:.2e}), Σλ c = {gain:.6g}"
    return _no_solution(cons, INFEASIBLE, solver, message, cons.scatter(farkas, 0.0),
                        tuple(i for i, _ in alone), used)


def _solution_result(cons: Constraints, raw: RawSolution, tol: float, sigma: float) -> SVMResult:
    """Certify (θ', λ') of the unit-scale constraints ``cons`` and report θ = θ'/σ, λ = λ'/σ²."""
    n, _ = cons.valid.shape
    status, theta, lam, message = raw.status, raw.theta, raw.lam, raw.message
    s = cons.rows @ theta
    active_k = s - cons.rhs <= tol
    active = cons.scatter(active_k, False).astype(bool)
    support = tuple(tuple(int(t) for t in np.flatnonzero(active[i])) for i in range(n))
    cert = constraints_certificate(cons, theta, lam)
    # "optimal" is claimed only when the certificate confirms it (the norm's tolerance, at unit scale)
    limit = get_norm(cons.norm).tolerance if raw.tolerance is None else raw.tolerance
    if status == OPTIMAL and not cert.confirms(limit):
        status = INACCURATE
        message = (message + "; " if message else "") + \
            f"certificate above {limit:g}: primal {cert.primal:.2e}, dual {cert.dual:.2e}, gap {cert.gap:.2e}" + \
            (" (at unit data scale)" if sigma != 1.0 else "")
    sol = cons.vector_to_solution(theta / sigma)
    return SVMResult(status=status, norm=cons.norm, value=cert.upper / sigma, solution=sol,
                     active=active, duals=cons.scatter(lam / sigma / sigma, 0.0), certificate=cert.rescaled(sigma),
                     selection=cons.selection, margins=cons.margins, margin=cons.scatter(s),
                     constrained=cons.valid, solver=raw.solver, message=message, support_tokens=support)


def constraints_feasible(cons: Constraints) -> bool | None:
    """Whether ⟨A_k, θ⟩ ≥ c_k has a solution (the answer is the same for every norm): True (the exact
    least-distance solver found one), False (verified Farkas certificate), None (undecided)."""
    return rows_feasible(cons.rows, cons.rhs)


def rows_feasible(A: np.ndarray, c: np.ndarray) -> bool | None:
    """Whether Aθ ≥ c has a solution, decided at unit scale: True, False (verified Farkas certificate) or
    None (undecided)."""
    A = A / pow2_scale(A)
    if A.shape[0] and zero_row_farkas(A, c) is not None:
        return False
    r = least_distance(A, c)
    if r.status != INFEASIBLE:
        return True
    if _polished_farkas(A, c, r.u) or farkas_lp(A, c) is not None:
        return False
    return True if r.den > 0 else None


def _polished_farkas(A: np.ndarray, c: np.ndarray, u: np.ndarray | None) -> bool:
    """Try the NNLS iterate's support S as a Farkas certificate: the null vector of A_Sᵀ (smallest singular
    vector), if of one sign, normalized to cᵀλ = 1 and verified (cheap; the LP is the fallback)."""
    if u is None:
        return False
    S = np.flatnonzero(u > 1e-12 * max(float(u.max(initial=0.0)), 1e-300))
    if S.size == 0 or S.size > A.shape[1] + 1:
        return False
    _, sv, Vt = np.linalg.svd(A[S].T, full_matrices=True)
    v = Vt[-1]
    if np.all(v <= 0):
        v = -v
    if np.any(v < 0) or not float(c[S] @ v) > 0:
        return False
    lam = np.zeros(A.shape[0])
    lam[S] = v / float(c[S] @ v)
    return is_farkas(A, c, lam)


def check_tol(tol: float) -> float:
    """The support-token tolerance: a finite number ≥ 0."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)) \
            or not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol: the support-token tolerance must be a finite number ≥ 0, got {tol!r}")
    return float(tol)


def solve_svm(problem: AttentionProblem, selection="opt", norm: str = "fro", margins=None,
              tol: float = SUPPORT_TOL, solver_options: Mapping[str, Any] | None = None,
              unit_scale: bool = True) -> SVMResult:
    """Solve Att-SVM(α, norm, c):  min ‖θ‖ s.t. ⟨A_it, θ⟩ ≥ c_i for every i and real t ≠ α_i.

    selection: "opt" (α_i = argmax_t γ_it) or n token indices. norm: "fro" (W^mm, exact), "l2" (p^mm of the
    prompt model, exact), "nuclear" (W^mm_★, SCS), "l1" (diagonal W = diag(w), ‖w‖₁, HiGHS), or any norm
    registered later (``available_norms()``). margins: c (n,) with entries ≥ 0, default all 1. tol: support
    tokens are the t with ⟨A_it, θ⟩ − c_i ≤ tol. solver_options: passed to the norm's solver (the keys
    its spec lists in ``options``, e.g. ``{"eps": 1e-4}`` for the nuclear norm).

    The solver sees the constraints divided by a power of two σ (data of unit scale, see
    :meth:`Constraints.unit_scaled`) and the result is scaled back exactly, so status, support tokens and the
    relative certificate do not depend on the scale of X and Z (X, Z × s gives θ/s²); ``unit_scale=False``
    hands the data to the solver as given (only to emulate another code's arithmetic). Statuses: OPTIMAL
    (certified), INACCURATE (a solution whose certificate is above the norm's tolerance), INFEASIBLE (always
    with a verified Farkas certificate), SOLVER_ERROR (the solver failed; nothing is known).
    """
    spec = get_norm(norm)
    tol = check_tol(tol)
    options = dict(solver_options or {})
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"solver_options: {unknown} not understood by the {norm!r} solver "
                         f"(it takes {list(spec.options) or 'none'})")
    cons = build_constraints(problem, selection, norm, margins)
    cons, sigma = cons.unit_scaled() if unit_scale else (cons, 1.0)
    if cons.rows.shape[0] and (farkas := zero_row_farkas(cons.rows, cons.rhs)) is not None:
        return _infeasible_result(cons, "structure", "a constraint reads 0 ≥ c_i > 0", farkas)
    raw = spec.solve(cons, options)
    if raw.status == INFEASIBLE:
        return _infeasible_result(cons, raw.solver, raw.message, raw.farkas)
    if raw.status == SOLVER_ERROR or raw.theta is None or not np.all(np.isfinite(raw.theta)) \
            or raw.lam is None or not np.all(np.isfinite(raw.lam)):
        return _no_solution(cons, SOLVER_ERROR, raw.solver, raw.message or "the solver returned no finite solution")
    return _solution_result(cons, raw, tol, sigma)

"""The entry point :func:`solve_svm`: constraints → the norm's solver → certified :class:`SVMResult`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..problem import AttentionProblem
from ._certificate import certificate_rows, norm_value
from ._constraints import Constraints, build_constraints
from ._ldp import farkas_lp, zero_row_farkas
from ._registry import RawSolution, get_norm
from ._results import NO_CERTIFICATE, Certificate, SVMResult
from ._status import INACCURATE, INFEASIBLE, OPTIMAL

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


def _infeasible_result(cons: Constraints, solver: str, message: str, farkas: np.ndarray | None
                       ) -> SVMResult:
    n, T = cons.valid.shape
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
    tiny = 1e-12 * max(float(farkas.max()), 1e-300) if farkas is not None else 0.0
    used = tuple(int(i) for i in np.unique(cons.index[farkas > tiny, 0])) if farkas is not None else ()
    alone_ids = tuple(i for i, _ in alone)
    nan_sol = cons.vector_to_solution(np.full(cons.dim, np.nan))
    far = cons.scatter(farkas, 0.0) if farkas is not None else None
    if far is not None:
        resid = float(np.linalg.norm(cons.rows.T @ farkas))
        gain = float(cons.rhs @ farkas)
        message += f"; Farkas: ‖Σλ A‖ = {resid:.2e}, Σλ c = {gain:.6g}"
    empty = np.zeros((n, T), dtype=bool)
    return SVMResult(status=INFEASIBLE, norm=cons.norm, value=float("inf"), solution=nan_sol,
                     active=empty, duals=np.zeros((n, T)), certificate=NO_CERTIFICATE, selection=cons.selection,
                     margins=cons.margins, margin=np.full((n, T), np.nan), constrained=cons.valid,
                     solver=solver, message=message.strip("; "), farkas=far, infeasible_samples=alone_ids,
                     farkas_samples=used, support_tokens=tuple(() for _ in range(n)))


def _solution_result(cons: Constraints, raw: RawSolution, tol: float) -> SVMResult:
    n, _ = cons.valid.shape
    status, theta, lam, message = raw.status, raw.theta, raw.lam, raw.message
    s = cons.rows @ theta
    active_k = s - cons.rhs <= tol
    active = cons.scatter(active_k, False).astype(bool)
    support = tuple(tuple(int(t) for t in np.flatnonzero(active[i])) for i in range(n))
    sol = cons.vector_to_solution(theta)
    cert = constraints_certificate(cons, theta, lam)
    # "optimal" is claimed only when the certificate confirms it (the norm's tolerance)
    limit = get_norm(cons.norm).tolerance if raw.tolerance is None else raw.tolerance
    scale = max(1.0, cert.upper)
    if status == OPTIMAL and not (cert.primal <= limit and cert.dual <= limit * scale
                                  and abs(cert.gap) <= limit * scale):
        status = INACCURATE
        message = (message + "; " if message else "") + \
            f"certificate above {limit:g}: primal {cert.primal:.2e}, dual {cert.dual:.2e}, gap {cert.gap:.2e}"
    return SVMResult(status=status, norm=cons.norm, value=norm_value(sol, cons.norm), solution=sol,
                     active=active, duals=cons.scatter(lam, 0.0), certificate=cert,
                     selection=cons.selection, margins=cons.margins, margin=cons.scatter(s),
                     constrained=cons.valid, solver=raw.solver, message=message, support_tokens=support)


def solve_svm(problem: AttentionProblem, selection="opt", norm: str = "fro", margins=None,
              tol: float = SUPPORT_TOL, solver_options: Mapping[str, Any] | None = None) -> SVMResult:
    """Solve Att-SVM(α, norm, c):  min ‖θ‖ s.t. ⟨A_it, θ⟩ ≥ c_i for every i and real t ≠ α_i.

    selection: "opt" (α_i = argmax_t γ_it) or n token indices. norm: "fro" (W^mm, exact), "l2" (p^mm of the
    prompt model, exact), "nuclear" (W^mm_★, SCS), "l1" (diagonal W = diag(w), ‖w‖₁, HiGHS), or any norm
    registered later (``available_norms()``). margins: c (n,) with entries ≥ 0, default all 1. tol: support
    tokens are the t with ⟨A_it, θ⟩ − c_i ≤ tol. solver_options: passed to the norm's solver (the keys
    its spec lists in ``options``, e.g. ``{"eps": 1e-4}`` for the nuclear norm).
    """
    spec = get_norm(norm)
    options = dict(solver_options or {})
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"solver_options: {unknown} not understood by the {norm!r} solver "
                         f"(it takes {list(spec.options) or 'none'})")
    cons = build_constraints(problem, selection, norm, margins)
    if cons.rows.shape[0] and (farkas := zero_row_farkas(cons.rows, cons.rhs)) is not None:
        return _infeasible_result(cons, "structure", "a constraint reads 0 ≥ c_i > 0", farkas)
    raw = spec.solve(cons, options)
    if raw.status == INFEASIBLE:
        return _infeasible_result(cons, raw.solver, raw.message, raw.farkas)
    if not np.all(np.isfinite(raw.theta)):
        raw = RawSolution(INACCURATE, np.zeros(cons.dim), raw.lam, raw.solver, raw.message)
    return _solution_result(cons, raw, tol)

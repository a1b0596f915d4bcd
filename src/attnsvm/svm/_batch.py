"""Exact Frobenius / ℓ2 Att-SVMs of many problems of one shape at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..problem import AttentionProblem
from ._constraints import check_margins, check_selection, pow2_scale
from ._euclidean import CERT_TOL_EXACT
from ._ldp import farkas_lp, least_distance, zero_row_farkas
from ._solve import SUPPORT_TOL, check_tol
from ._status import INACCURATE, INFEASIBLE, OPTIMAL, SOLUTION_PRESENT, SOLVER_ERROR


@dataclass(frozen=True)
class SVMBatch:
    """Stacked results of many Att-SVMs of one shape (B instances); fields as in :class:`SVMResult`, with
    a leading batch axis and the certificate entries as (B,) arrays."""

    status: np.ndarray  # (B,) str
    norm: str
    value: np.ndarray  # (B,)
    solution: np.ndarray  # (B, d, d) for fro, (B, d') for l2
    duals: np.ndarray  # (B, n, T)
    active: np.ndarray  # (B, n, T)
    margin: np.ndarray  # (B, n, T), NaN off the constraints
    selection: np.ndarray  # (B, n)
    margins: np.ndarray  # (B, n)
    primal: np.ndarray
    dual: np.ndarray
    complementarity: np.ndarray
    gap: np.ndarray
    farkas: np.ndarray  # (B, n, T), zero for feasible instances

    def __len__(self) -> int:
        return int(self.status.shape[0])


def solve_fro_stacked(X: np.ndarray, Z: np.ndarray | None, selections: np.ndarray, margins=None,
                      mask: np.ndarray | None = None, tol: float = SUPPORT_TOL) -> SVMBatch:
    """Exact Frobenius Att-SVM for B stacked problems: X (B, n, T, d), Z (B, n, d) queries, selections
    (B, n) token indices, margins (B, n) (default 1), mask (B, n, T). With ``Z=None`` the tokens X are used
    as the constraint vectors themselves, i.e. the ℓ2 (prompt) problem with X already multiplied by K.

    Constraint rows are built for every (i, t) at once; the non-constraints (t = α_i, masked t) become
    zero rows with right-hand side 0, which NNLS never activates. Each instance is solved at unit scale
    (rows divided by a power of two, undone exactly) and certified as in :func:`solve_svm`: statuses OPTIMAL,
    INACCURATE, INFEASIBLE (verified Farkas certificate in ``farkas``) or SOLVER_ERROR. Each instance is
    one NNLS on an m×m factor (m = nT); certificates are computed for the whole batch at once.
    """
    tol = check_tol(tol)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 4:
        raise ValueError(f"X: expected (B, n, T, d), got shape {X.shape}")
    B, n, T, d = X.shape
    sel = np.asarray(selections)
    if sel.shape != (B, n) or not np.issubdtype(sel.dtype, np.integer):
        raise ValueError(f"selections: expected integer array of shape ({B}, {n}), got {sel.shape} {sel.dtype}")
    if np.any((sel < 0) | (sel >= T)):
        raise ValueError(f"selections: token indices must lie in [0, {T})")
    mask = np.ones((B, n, T), bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != (B, n, T):
        raise ValueError(f"mask: expected shape ({B}, {n}, {T}), got {mask.shape}")
    bi, ii = np.meshgrid(np.arange(B), np.arange(n), indexing="ij")
    if not np.all(mask[bi, ii, sel]):
        raise ValueError("selections: a selected token is masked (padding)")
    c = np.ones((B, n)) if margins is None else np.asarray(margins, dtype=np.float64)
    if c.shape != (B, n) or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError(f"margins: expected non-negative array of shape ({B}, {n}), got {c.shape}")
    Xm = np.where(mask[..., None], X, 0.0)
    D = Xm[bi, ii, sel][:, :, None, :] - Xm  # (B, n, T, d)
    valid = mask.copy()
    valid[bi, ii, sel] = False
    if Z is None:
        A = D.reshape(B, n * T, d)
        sol_shape: tuple[int, ...] = (d,)
        norm = "l2"
    else:
        Z = np.asarray(Z, dtype=np.float64)
        if Z.shape != (B, n, d):
            raise ValueError(f"Z: expected shape ({B}, {n}, {d}), got {Z.shape}")
        A = (D[..., :, None] * Z[:, :, None, None, :]).reshape(B, n * T, d * d)
        sol_shape = (d, d)
        norm = "fro"
    A = A * valid.reshape(B, n * T, 1)
    rhs = (c[:, :, None] * valid).reshape(B, n * T)
    # every instance at unit scale (a power of two per instance, exact both ways; see Constraints.unit_scaled)
    sigma = np.array([pow2_scale(D[b][valid[b]]) * (1.0 if Z is None else pow2_scale(Z[b])) for b in range(B)])
    A = A / sigma[:, None, None]
    p = A.shape[2]
    theta = np.zeros((B, p))
    lam = np.zeros((B, n * T))
    farkas = np.zeros((B, n * T))
    status = np.full(B, OPTIMAL, dtype="<U16")
    for b in range(B):  # one NNLS per instance; everything around it is batched
        r = least_distance(A[b], rhs[b])
        if r.status != INFEASIBLE:
            theta[b], lam[b] = r.theta, r.lam
            continue
        rows = valid[b].reshape(-1)
        far = zero_row_farkas(A[b][rows], rhs[b][rows])
        far = farkas_lp(A[b][rows], rhs[b][rows]) if far is None else far
        if far is not None:
            status[b] = INFEASIBLE
            farkas[b, rows] = far
        elif r.den > 0:  # feasible with a huge solution: the certificate decides below
            lam[b] = r.u / r.den
            theta[b] = A[b].T @ lam[b]
        else:
            status[b] = SOLVER_ERROR
    s = np.einsum("bmp,bp->bm", A, theta)
    slack = s - rhs
    G = np.einsum("bmp,bm->bp", A, np.maximum(lam, 0))
    value = np.linalg.norm(theta, axis=1)
    vflat = valid.reshape(B, n * T)
    primal = np.maximum(0.0, np.where(vflat, -slack, -np.inf).max(axis=1))
    dual = np.maximum(0.0, -lam.min(axis=1)) + np.linalg.norm(theta - G, axis=1)
    comp = np.max(np.maximum(lam, 0) * np.abs(slack) * vflat, axis=1)
    gnorm = np.linalg.norm(G, axis=1)
    lower = np.divide(np.einsum("bm,bm->b", np.maximum(lam, 0), rhs), gnorm, out=np.zeros(B), where=gnorm > 0)
    gap = value - lower
    # the certificate test of solve_svm, at unit scale
    lim, big = CERT_TOL_EXACT, np.maximum(1.0, value)
    certified = (primal <= lim) & (dual <= lim * big) & (np.abs(gap) <= lim * big)
    status[(status == OPTIMAL) & ~certified] = INACCURATE
    has = np.isin(status, list(SOLUTION_PRESENT))
    nanB = np.where(has, 1.0, np.nan)
    return SVMBatch(
        status=status, norm=norm, value=np.where(has, value / sigma, np.where(status == INFEASIBLE, np.inf, np.nan)),
        solution=((theta / sigma[:, None]) * nanB[:, None]).reshape((B, *sol_shape)),
        duals=(lam / sigma[:, None] / sigma[:, None]).reshape(B, n, T),
        active=(valid & (slack.reshape(B, n, T) <= tol)) & has[:, None, None],
        margin=np.where(valid, s.reshape(B, n, T), np.nan), selection=sel, margins=c,
        primal=primal * nanB, dual=dual / sigma * nanB, complementarity=comp / sigma / sigma * nanB,
        gap=gap / sigma * nanB, farkas=farkas.reshape(B, n, T))


def solve_svm_batch(problems: Sequence[AttentionProblem] | tuple[np.ndarray, np.ndarray | None],
                    selections="opt", norm: str = "fro", margins=None, tol: float = SUPPORT_TOL) -> SVMBatch:
    """Exact Frobenius (or ℓ2) Att-SVM for many problems of one shape (see :func:`solve_fro_stacked`).

    problems: a sequence of :class:`AttentionProblem`, or stacked arrays ``(X, Z)`` with X (B, n, T, d)
    and Z (B, n, d) queries (Z = None: ℓ2 with the tokens X as constraint vectors; then ``selections``
    must be a (B, n) array). selections: "opt" or (B, n) token indices; margins: None or (B, n).
    """
    if norm not in ("fro", "l2"):
        raise ValueError(f"norm: the batched solver is exact for 'fro' and 'l2' only, got {norm!r}; "
                         "call solve_svm per problem for 'nuclear' and 'l1'")
    if isinstance(problems, tuple) and len(problems) == 2 and isinstance(problems[0], np.ndarray):
        if isinstance(selections, str):
            raise ValueError("selections: stacked arrays carry no labels or head, so 'opt' is undefined; "
                             "give a (B, n) array of token indices")
        X, Z = problems
        if (Z is None) != (norm == "l2"):
            raise ValueError("norm: stacked (X, Z) with Z given is the 'fro' problem, Z = None the 'l2' one")
        return solve_fro_stacked(X, Z, np.asarray(selections), margins, None, tol)
    problems = list(problems)
    if not problems:
        raise ValueError("problems: empty sequence")
    shape = problems[0].X.shape
    for k, pr in enumerate(problems):
        if pr.X.shape != shape:
            raise ValueError(f"problems: all must share one shape (n, T, d) = {shape}; problem {k} is "
                             f"{pr.X.shape}")
    B = len(problems)
    if isinstance(selections, str):
        sel = np.stack([check_selection(pr, selections) for pr in problems])
    else:
        sel = np.asarray(selections)
        if sel.shape != (B, shape[0]):
            raise ValueError(f"selections: expected shape ({B}, {shape[0]}), got {sel.shape}")
        sel = np.stack([check_selection(pr, s) for pr, s in zip(problems, sel, strict=True)])
    c = None if margins is None else np.stack([check_margins(pr, m) for pr, m in
                                               zip(problems, np.asarray(margins), strict=True)])
    mask = np.stack([pr.mask for pr in problems])
    if norm == "l2":
        X = np.stack([pr.prompt_tokens() for pr in problems])
        return solve_fro_stacked(X, None, sel, c, mask, tol)
    kinds = {pr.kind for pr in problems}
    if "prompt" in kinds:
        raise ValueError("norm: 'fro' needs per-sample queries; a prompt problem has none (use norm='l2')")
    X = np.stack([pr.X for pr in problems])
    Z = np.stack([pr.queries for pr in problems])
    return solve_fro_stacked(X, Z, sel, c, mask, tol)

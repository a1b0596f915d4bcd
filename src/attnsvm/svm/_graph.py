"""The graph Att-SVM of next-token prediction (Li et al. 2024) and its certificate.

For a next-token problem (see :mod:`attnsvm.ntp`) with token-priority graphs G_k, the direction that
gradient descent on W converges to is

    W^dir = argmin ‖W‖  s.t. for every sample i (last token k, label y) and every token j ≠ y of its sequence:
            (E_y − E_j)ᵀ W E_k = 0   if y and j lie in the same SCC of G_k   (equality constraints),
            (E_y − E_j)ᵀ W E_k ≥ 1   otherwise                                 (inequality constraints),

with ‖·‖ the Frobenius norm (W parameterization) or the nuclear norm ((K, Q) parameterization). A triple
(k, y, j) produced by several samples is one constraint. Writing A = (E_y − E_j) E_kᵀ, the KKT conditions of
the squared problem min ½‖W‖² read G := Σ_in λ_c A_c + Σ_eq μ_e A_e ∈ ∂(½‖W‖²) with λ ≥ 0 and μ free, and
for every (λ ≥ 0, μ) weak duality gives ‖W^dir‖ ≥ Σλ / ‖G‖_dual (the equality terms vanish on feasible W).

Solvers. Frobenius exactly: W lives in U(·)Vᵀ (U spanning the differences, V the queries); there the
inequality rows are projected on the null space of the equality rows and the least-distance problem of the
projected rows is solved by NNLS (Lawson–Hanson): its solution lies in their span, inside that null space, so
the equalities hold to rounding.
Nuclear: the SDP min ½(tr P + tr Q), [[P, M], [Mᵀ, Q]] ⪰ 0 handed to SCS with M = reshape(N c) written in the
same null-space coordinates c, so the equalities hold exactly by construction and only the inequalities
carry the SCS tolerance. Infeasible problems (e.g. two tokens with one embedding, ordered by the graph) get a
Farkas certificate λ ≥ 0, μ with Σλ A + Σμ A_e = 0 and Σλ = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..ntp import NTPProblem, TokenGraph
from ._ldp import farkas_lp, least_distance
from ._nuclear import CERT_TOL_SCS, SCS_EPS, SCS_MAX_ITERS, nuclear_value, spectral_value
from ._results import NO_CERTIFICATE, Certificate
from ._status import INACCURATE, INFEASIBLE, OPTIMAL

#: certificate tolerance of the exact (null space + NNLS) Frobenius solve, as for the other exact norms
CERT_TOL_EXACT = 1e-8
#: relative singular-value threshold for the rank of a set of constraint rows
RANK_TOL = 1e-12

GRAPH_NORMS = ("fro", "nuclear")


@dataclass(frozen=True)
class GraphConstraints:
    """The constraints of the graph Att-SVM, one per distinct (k, y, j).

    ``last`` k, ``upper`` y (the preferred token), ``lower`` j: (m,) token ids; ``equality`` (m,) bool;
    ``sample`` (m,) the first sample that produced the constraint; ``rows`` (m, d²) vec((E_y − E_j) E_kᵀ).
    For an equality the pair is stored once with y < j.
    """

    last: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    equality: np.ndarray
    sample: np.ndarray
    diffs: np.ndarray
    queries: np.ndarray
    rows: np.ndarray

    @property
    def m(self) -> int:
        return int(self.last.shape[0])

    def values(self, W: np.ndarray) -> np.ndarray:
        """(m,) (E_y − E_j)ᵀ W E_k for each constraint."""
        return np.einsum("md,de,me->m", self.diffs, W, self.queries)


def graph_constraints(problem: NTPProblem) -> GraphConstraints:
    """Build the constraints of the graph Att-SVM from the SCCs of every G_k."""
    seen: dict[tuple[int, int, int], int] = {}
    last, upper, lower, eq, sample = [], [], [], [], []
    for i in range(problem.n):
        k = int(problem.last[i])
        y = int(problem.next[i])
        comp = problem.graphs[k].component
        for j in sorted(set(problem.sequence(i)) - {y}):
            same = bool(comp[y] == comp[j])
            key = (k, min(y, j), max(y, j)) if same else (k, y, j)
            if key in seen:
                continue
            seen[key] = len(last)
            last.append(k)
            upper.append(key[1])
            lower.append(key[2])
            eq.append(same)
            sample.append(i)
    E = problem.E
    last_a, up, lo = (np.array(v, dtype=np.int64) for v in (last, upper, lower))
    D = E[up] - E[lo] if up.size else np.zeros((0, problem.d))
    Z = E[last_a] if up.size else np.zeros((0, problem.d))
    rows = (D[:, :, None] * Z[:, None, :]).reshape(len(up), problem.d ** 2)
    return GraphConstraints(last=last_a, upper=up, lower=lo, equality=np.array(eq, dtype=bool),
                            sample=np.array(sample, dtype=np.int64), diffs=D, queries=Z, rows=rows)


@dataclass(frozen=True)
class GraphSVMResult:
    """Solution of the graph Att-SVM.

    ``W`` (d, d) the solution (NaN if infeasible), ``value`` its norm; ``margin`` (m,) the constraint values
    (E_y − E_j)ᵀ W E_k, ``duals`` (m,) λ on inequalities and μ on equalities (multipliers of ½‖W‖²);
    ``active`` (m,) inequalities met with equality (within ``tol``); ``farkas`` (m,) the infeasibility
    certificate (λ, μ) when infeasible. ``graphs`` the token-priority graphs with their SCCs.
    """

    status: str
    norm: str
    value: float
    W: np.ndarray
    certificate: Certificate
    constraints: GraphConstraints
    margin: np.ndarray
    duals: np.ndarray
    active: np.ndarray
    graphs: dict[int, TokenGraph]
    solver: str
    message: str = ""
    farkas: np.ndarray | None = None

    @property
    def equality_residual(self) -> float:
        """max |(E_y − E_j)ᵀ W E_k| over the equality constraints."""
        eq = self.constraints.equality
        return float(np.max(np.abs(self.margin[eq]))) if eq.any() and np.all(np.isfinite(self.margin)) else 0.0

    def to_dict(self) -> dict:
        c = self.constraints
        finite = bool(np.all(np.isfinite(self.W)))

        def num(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        out = {
            "status": self.status, "norm": self.norm, "value": num(self.value),
            "solution": self.W.tolist() if finite else None,
            "certificate": {k: num(v) for k, v in self.certificate.to_dict().items()},
            "equality_residual": num(self.equality_residual) if finite else None,
            "sccs": [g.to_dict() for _, g in sorted(self.graphs.items())],
            "constraints": [
                {"last_token": int(c.last[r]), "y": int(c.upper[r]), "j": int(c.lower[r]),
                 "type": "eq" if c.equality[r] else "ge", "sample": int(c.sample[r]),
                 "value": num(self.margin[r]), "dual": num(self.duals[r]), "active": bool(self.active[r])}
                for r in range(c.m)],
            "solver": self.solver, "message": self.message,
        }
        if self.farkas is not None:
            out["farkas"] = self.farkas.tolist()
        return out


def _range(rows: np.ndarray, p: int) -> np.ndarray:
    """Orthonormal basis (p×r) of the row space of ``rows`` (m, p) (economy SVD; relative rank tolerance)."""
    if rows.shape[0] == 0:
        return np.zeros((p, 0))
    _, s, Vt = np.linalg.svd(rows, full_matrices=False)
    r = int(np.sum(s > RANK_TOL * max(s[0], 1e-300))) if s.size else 0
    return Vt[:r].T


def _null(rows: np.ndarray, p: int) -> np.ndarray:
    """Orthonormal basis (p×(p−r)) of the null space of ``rows`` (m, p)."""
    if rows.shape[0] == 0:
        return np.eye(p)
    _, s, Vt = np.linalg.svd(rows, full_matrices=True)
    r = int(np.sum(s > RANK_TOL * max(s[0], 1e-300))) if s.size else 0
    return Vt[r:].T


def _dual_norm(G: np.ndarray, norm: str) -> float:
    return float(np.linalg.norm(G)) if norm == "fro" else spectral_value(G)


def _norm(W: np.ndarray, norm: str) -> float:
    return float(np.linalg.norm(W)) if norm == "fro" else nuclear_value(W)


def graph_certificate(cons: GraphConstraints, W: np.ndarray, duals: np.ndarray, norm: str) -> Certificate:
    """Certificate of (W, λ, μ) for min ½‖W‖² s.t. ⟨A_e, W⟩ = 0, ⟨A_c, W⟩ ≥ 1 (see the module docstring).

    primal: max(max_c (1 − ⟨A_c, W⟩)⁺, max_e |⟨A_e, W⟩|); dual: (−min λ)⁺ + stationarity residual
    (‖W − G‖_F for Frobenius; |‖G‖₂ − ‖W‖_*| + |⟨G, W⟩ − ‖W‖_*²|/max(1, ‖W‖_*) for nuclear);
    complementarity: max λ_c |⟨A_c, W⟩ − 1|; gap: ‖W‖ − Σλ/‖G‖_dual.
    """
    d = W.shape[0]
    s = cons.rows @ W.reshape(-1)
    eq = cons.equality
    ineq = ~eq
    lam = np.where(ineq, duals, 0.0)
    lam_pos = np.maximum(lam, 0.0)
    mu = np.where(eq, duals, 0.0)
    primal = max(float(np.max(1.0 - s[ineq], initial=0.0)), float(np.max(np.abs(s[eq]), initial=0.0)), 0.0)
    G = (cons.rows.T @ (lam_pos + mu)).reshape(d, d)
    wn = _norm(W, norm)
    gd = _dual_norm(G, norm)
    if norm == "fro":
        stat = float(np.linalg.norm(W - G))
    else:
        stat = abs(gd - wn) + abs(float(np.vdot(G, W)) - wn ** 2) / max(1.0, wn)
    dual = max(0.0, -float(np.min(lam[ineq], initial=0.0))) + stat
    comp = float(np.max(lam_pos[ineq] * np.abs(s[ineq] - 1.0), initial=0.0))
    lower = float(lam_pos.sum() / gd) if gd > 0 else 0.0
    return Certificate(primal=primal, dual=dual, complementarity=comp, gap=wn - lower, lower=lower, upper=wn)


def _reduced_frame(cons: GraphConstraints, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U (d×r1) spanning the differences, V (d×r2) the queries, and the rows in the coordinates of
    M with W = U M Vᵀ (m, r1 r2): ⟨(a)bᵀ, U M Vᵀ⟩ = ⟨(Uᵀa)(Vᵀb)ᵀ, M⟩ and ‖U M Vᵀ‖ = ‖M‖ for both norms."""
    U = _range(cons.diffs, d)
    V = _range(cons.queries, d)
    Dr, Zr = cons.diffs @ U, cons.queries @ V
    rows = (Dr[:, :, None] * Zr[:, None, :]).reshape(cons.m, U.shape[1] * V.shape[1])
    return U, V, rows


def _nuclear_sdp(Ain: np.ndarray, N: np.ndarray, r1: int, r2: int, eps: float, max_iters: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """min ‖M‖_* s.t. Ain vec M ≥ 1 with vec M = N c, by SCS.

    Variables x = (svec S, c), S = [[P, M], [Mᵀ, Q]] ⪰ 0 and cost ½(tr P + tr Q); zero-cone rows tie the block
    M of S to N c, linear rows read (Ain N) c ≥ 1. Returns (c, y_lin, G, info) where y_lin ≥ 0 are the
    multipliers of the inequalities of min ‖M‖_* and G (r1×r2) the dual matrix with ‖G‖₂ ≤ 1 and
    G − Ainᵀ y_lin in the span of the equality rows (so G = Σ y A + Σ ν A_e)."""
    import scs

    n_side = r1 + r2
    nv = n_side * (n_side + 1) // 2
    p, q = N.shape
    col = np.arange(n_side)
    start = col * n_side - col * (col - 1) // 2  # SCS svec: lower triangle by columns, off-diagonal ×√2
    ii, jj = np.meshgrid(np.arange(r1), np.arange(r2), indexing="ij")
    midx = (start[ii] + (r1 + jj - ii)).ravel()  # M[i, j] = S[r1 + j, i], row-major over (i, j)
    AinN = Ain @ N
    m = AinN.shape[0]
    zero = sp.hstack([sp.csc_matrix((np.full(p, 1 / np.sqrt(2)), (np.arange(p), midx)), shape=(p, nv)),
                      sp.csc_matrix(-N)])
    lin = sp.hstack([sp.csc_matrix((m, nv)), sp.csc_matrix(-AinN)])
    psd = sp.hstack([-sp.identity(nv, format="csc"), sp.csc_matrix((nv, q))])
    A = sp.vstack([zero, lin, psd]).tocsc()
    b = np.concatenate([np.zeros(p), -np.ones(m), np.zeros(nv)])
    cost = np.zeros(nv + q)
    cost[start] = 0.5
    solver = scs.SCS({"A": A, "b": b, "c": cost}, {"z": p, "l": m, "s": [n_side]}, eps_abs=eps, eps_rel=eps,
                     max_iters=max_iters, verbose=False)
    sol = solver.solve()
    y = np.asarray(sol["y"])
    # stationarity in S: the dual PSD matrix is [[I/2, −G/2], [−Gᵀ/2, I/2]] with G = −y_zero, i.e. ‖G‖₂ ≤ 1
    return np.asarray(sol["x"][nv:]), y[p:p + m], -y[:p].reshape(r1, r2), sol["info"]


def solve_graph_svm(problem: NTPProblem, norm: str = "fro", tol: float = 1e-6, eps: float = SCS_EPS,
                    max_iters: int = SCS_MAX_ITERS) -> GraphSVMResult:
    """Solve the graph Att-SVM of a next-token problem (module docstring) with its certificate.

    norm: "fro" (exact: null space + NNLS) or "nuclear" (SCS). tol: an inequality is active when
    ⟨A_c, W⟩ − 1 ≤ tol. eps / max_iters: SCS settings for the nuclear norm.
    """
    if norm not in GRAPH_NORMS:
        raise ValueError(f"norm: the graph Att-SVM supports {', '.join(GRAPH_NORMS)}, got {norm!r}")
    d = problem.d
    cons = graph_constraints(problem)
    graphs = problem.graphs
    eq, ineq = cons.equality, ~cons.equality
    m = cons.m
    if not ineq.any():
        W = np.zeros((d, d))
        cert = graph_certificate(cons, W, np.zeros(m), norm)
        return GraphSVMResult(OPTIMAL, norm, 0.0, W, cert, cons, np.zeros(m), np.zeros(m),
                              np.zeros(m, bool), graphs, "trivial",
                              "no inequality constraint (every G_k is one SCC per sample): W = 0")
    U, V, rows = _reduced_frame(cons, d)
    r1, r2 = U.shape[1], V.shape[1]
    Beq, Ain = rows[eq], rows[ineq]
    duals = np.zeros(m)
    if norm == "fro":
        # Rows projected on the null space of the equalities: the least-norm solution of Ã w ≥ 1 lies in the
        # row space of Ã, inside that null space, and min ‖w‖ over {Bw = 0, Ã w ≥ 1} equals the original problem.
        QB = _range(Beq, r1 * r2)
        At = Ain - (Ain @ QB) @ QB.T
        r = least_distance(At, np.ones(Ain.shape[0]))
        if r.status == INFEASIBLE:
            return _infeasible(problem, cons, At, Ain, Beq, norm, graphs, "nnls+highs")
        mvec = r.theta
        duals[ineq] = r.lam
        solver, status, message, limit = "nnls", OPTIMAL, "", CERT_TOL_EXACT
    else:
        N = _null(Beq, r1 * r2)
        c, y, G, info = _nuclear_sdp(Ain, N, r1, r2, eps, max_iters)
        st = str(info["status"])
        if "infeasible" in st:
            return _infeasible(problem, cons, Ain @ N, Ain, Beq, norm, graphs, "scs+highs", f"SCS: {st}")
        mvec = N @ c
        if not np.all(np.isfinite(mvec)):
            return GraphSVMResult(INACCURATE, norm, float("nan"), np.full((d, d), np.nan), NO_CERTIFICATE, cons,
                                  np.full(m, np.nan), np.zeros(m), np.zeros(m, bool), graphs, "scs", f"SCS: {st}")
        scale = nuclear_value(mvec.reshape(r1, r2))
        y = np.maximum(y, 0.0)
        duals[ineq] = y * scale
        if Beq.shape[0]:
            nu = np.linalg.lstsq(Beq.T, G.reshape(-1) - Ain.T @ y, rcond=None)[0]
            duals[eq] = nu * scale
        solver, limit = "scs", CERT_TOL_SCS
        status = OPTIMAL if st == "solved" else INACCURATE
        message = f"SCS: {st}, {int(info['iter'])} iterations, eps {eps:g}"
    if norm == "fro" and Beq.shape[0]:
        # μ from stationarity W − Σλ A = Σμ A_e (exact: the residual lies in the span of the equality rows)
        duals[eq] = np.linalg.lstsq(Beq.T, mvec - Ain.T @ duals[ineq], rcond=None)[0]
    W = U @ mvec.reshape(r1, r2) @ V.T
    cert = graph_certificate(cons, W, duals, norm)
    if status == OPTIMAL and not cert.confirms(limit):
        status = INACCURATE
        message = (message + "; " if message else "") + \
            f"certificate above {limit:g}: primal {cert.primal:.2e}, dual {cert.dual:.2e}, gap {cert.gap:.2e}"
    margin = cons.values(W)
    active = ineq & (margin - 1.0 <= tol)
    return GraphSVMResult(status, norm, _norm(W, norm), W, cert, cons, margin, duals, active, graphs, solver,
                          message)


def _infeasible(problem: NTPProblem, cons: GraphConstraints, AinN: np.ndarray, Ain: np.ndarray,
                Beq: np.ndarray, norm: str, graphs: dict, solver: str, message: str = "") -> GraphSVMResult:
    """Farkas certificate: λ ≥ 0 (Σλ = 1) with λᵀ(Ain restricted to the null space of the equalities) = 0
    (``AinN``: Ain N or Ain projected on that null space), i.e. Ainᵀλ in the span of the equality rows,
    completed by μ = −lstsq(Beqᵀ, Ainᵀλ) so that Σλ A + Σμ A_e = 0."""
    d, m = problem.d, cons.m
    lam = farkas_lp(AinN, np.ones(AinN.shape[0]))
    far = np.zeros(m)
    if lam is not None:
        far[~cons.equality] = lam
        if Beq.shape[0]:
            far[cons.equality] = -np.linalg.lstsq(Beq.T, Ain.T @ lam, rcond=None)[0]
        resid = float(np.linalg.norm(cons.rows.T @ far))
        used = sorted({int(cons.sample[r]) for r in np.flatnonzero(np.abs(far) > 1e-12 * np.abs(far).max())})
        message = (message + "; " if message else "") + \
            f"Farkas: ‖Σλ A + Σμ A_e‖ = {resid:.2e}, Σλ = {float(lam.sum()):.6g}; samples {used}"
    return GraphSVMResult(INFEASIBLE, norm, float("inf"), np.full((d, d), np.nan), NO_CERTIFICATE, cons,
                          np.full(m, np.nan), np.zeros(m), np.zeros(m, bool), graphs, solver, message,
                          farkas=far if lam is not None else None)

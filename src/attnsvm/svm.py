"""Attention max-margin problems (SPEC §3) with certificates.

For a token selection α = (α_i) and margins c_i (default 1) the Att-SVM is

    minimize ‖θ‖   subject to   ⟨A_it, θ⟩ ≥ c_i   for every sample i and every real token t ≠ α_i,

with the constraint vectors

* ``fro`` / ``nuclear``:  A_it = (x_iα − x_it) z_iᵀ ∈ R^{d×d}, θ = W (P3 W^mm, W^mm_★);
* ``l1``:                 a_it = (x_iα − x_it) ⊙ z_i ∈ R^d, θ = w with W = diag(w) (P2: ‖diag(w)‖_* = ‖w‖₁);
* ``l2``:                 a_it = Kᵀ(x_iα − x_it) ∈ R^{d'}, θ = p (P1 p^mm; K = ``problem.keys``).

Dual multipliers. Every result reports λ ≥ 0, the multipliers of the *squared* problem
min ½‖θ‖² s.t. ⟨A_k, θ⟩ ≥ c_k, whose KKT conditions read

    G := Σ_k λ_k A_k ∈ ∂(½‖θ‖²)   ⇔   ‖G‖_dual = ‖θ‖ and ⟨G, θ⟩ = ‖θ‖²,   λ_k (⟨A_k, θ⟩ − c_k) = 0.

For the Frobenius and ℓ2 norms this is θ = Σ λ_k A_k (so rank W ≤ min(n, d)), and Σ λ_k c_k = ‖θ‖².
Whatever λ ≥ 0 is, weak duality gives the lower bound  Σ λ_k c_k / ‖Σ λ_k A_k‖_dual ≤ ‖θ^mm‖  (dual norms:
Frobenius ↔ Frobenius, nuclear ↔ spectral, ℓ1 ↔ ℓ∞, ℓ2 ↔ ℓ2), so every certificate carries a computable
duality gap.

Solvers. Frobenius and ℓ2 are solved exactly as a least-distance problem by NNLS (Lawson & Hanson,
*Solving Least Squares Problems*, ch. 23: min ‖θ‖ s.t. Aθ ≥ c ⇔ NNLS min_{u≥0} ‖[Aᵀ; cᵀ]u − e‖, then
θ = Aᵀu/(1 − cᵀu) and λ = u/(1 − cᵀu)); infeasibility is the case 1 − cᵀu = 0, where u itself is a
Farkas certificate. The nuclear norm is an SDP handed to SCS directly in conic form, posed in the span of
the constraint directions and queries (where a minimal solution lives) and keeping the rank-one structure
of the constraints sparse. ℓ1 of the diagonal is an LP solved with HiGHS. Infeasible problems return
status ``infeasible`` with a Farkas certificate λ ≥ 0, Σ λ_k A_k = 0, Σ λ_k c_k > 0, and the samples responsible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog, nnls

from .problem import AttentionProblem

Norm = Literal["l2", "fro", "nuclear", "l1"]
NORMS: tuple[str, ...] = ("l2", "fro", "nuclear", "l1")
MATRIX_NORMS: tuple[str, ...] = ("fro", "nuclear", "l1")

#: A constraint is *active* (its token a support token) when ⟨A_it, θ⟩ − c_i ≤ SUPPORT_TOL. Margins are
#: normalized to 1 by the problem itself, so this is an absolute tolerance on a quantity of order 1; the
#: exact solvers are accurate to ~1e−13 and SCS to ~1e−8, both far inside it.
SUPPORT_TOL = 1e-6

#: 1 − cᵀu below this in the least-distance form means ‖θ‖ > 1e6: the problem is (numerically) infeasible,
#: and a Farkas certificate is sought by LP to decide.
_INFEASIBLE_DEN = 1e-12

#: A result is reported "optimal" only when primal infeasibility, dual residual and |gap| (the last two
#: relative to max(1, ‖θ‖)) are below these; otherwise "inaccurate" with the numbers in the message.
CERT_TOL_EXACT = 1e-8
CERT_TOL_SCS = 1e-6

#: SCS tolerances for the nuclear-norm SDP (direction right to ~1e−7 on the test families).
SCS_EPS = 1e-9
SCS_MAX_ITERS = 200_000


# ---- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """Optimality certificate of an Att-SVM solution, every entry a number.

    primal:          max_k max(0, c_k − ⟨A_k, θ⟩)                       (primal infeasibility)
    dual:            max(0, −min λ) + stationarity residual            (dual infeasibility); the residual is
                     ‖θ − Σλ_k A_k‖ for fro/l2 and |‖G‖_dual − ‖θ‖| + |⟨G, θ⟩ − ‖θ‖²|/max(1, ‖θ‖) with
                     G = Σλ_k A_k for nuclear/l1
    complementarity: max_k λ_k |⟨A_k, θ⟩ − c_k|
    gap:             upper − lower, with upper = ‖θ‖ and lower = Σλ_k c_k / ‖Σλ_k A_k‖_dual (weak duality,
                     valid for any λ ≥ 0)
    """

    primal: float
    dual: float
    complementarity: float
    gap: float
    lower: float
    upper: float

    def to_dict(self) -> dict[str, float]:
        return {"primal": self.primal, "dual": self.dual, "complementarity": self.complementarity,
                "gap": self.gap, "lower": self.lower, "upper": self.upper}


@dataclass(frozen=True)
class SVMResult:
    """Solution of one Att-SVM (SPEC §3).

    ``solution`` is W (d×d) for fro/nuclear/l1 (a diagonal matrix for l1) and p (d',) for l2; ``value`` is
    its norm. ``active`` / ``duals`` / ``margin`` are (n, T) arrays over tokens: ``margin[i,t] = ⟨A_it, θ⟩``
    (NaN where (i, t) is not a constraint: t = α_i or t masked). ``constrained`` marks the constraints.
    For an infeasible problem ``solution`` is NaN, ``farkas`` holds λ ≥ 0 with Σλ A = 0 and Σλ c > 0,
    ``infeasible_samples`` the samples whose constraints alone are infeasible, and ``farkas_samples`` every
    sample the certificate uses.
    """

    status: str
    norm: str
    value: float
    solution: np.ndarray
    active: np.ndarray
    duals: np.ndarray
    certificate: Certificate
    selection: np.ndarray
    margins: np.ndarray
    margin: np.ndarray
    constrained: np.ndarray
    solver: str
    message: str = ""
    farkas: np.ndarray | None = None
    infeasible_samples: tuple[int, ...] = ()
    farkas_samples: tuple[int, ...] = ()
    support_tokens: tuple[tuple[int, ...], ...] = field(default=())

    @property
    def W(self) -> np.ndarray:
        """The attention matrix of a matrix-norm solution (d×d)."""
        if self.norm == "l2":
            raise ValueError("norm: an l2 solution is a prompt vector p, not a matrix W (use .solution)")
        return self.solution

    @property
    def feasible(self) -> bool:
        return self.status != "infeasible"

    def to_dict(self) -> dict:
        """JSON-ready dict with the keys of ``attnsvm solve --json``."""
        sol = None if not np.all(np.isfinite(self.solution)) else self.solution.tolist()
        out = {
            "status": self.status, "norm": self.norm,
            "value": self.value if np.isfinite(self.value) else None,
            "solution": sol, "active": self.active.tolist(), "duals": self.duals.tolist(),
            "certificate": _json_floats(self.certificate.to_dict()),
            "selection": self.selection.tolist(), "margins": self.margins.tolist(),
            "support_tokens": [list(s) for s in self.support_tokens],
            "solver": self.solver, "message": self.message,
        }
        if self.farkas is not None:
            out["farkas"] = self.farkas.tolist()
            out["infeasible_samples"] = list(self.infeasible_samples)
            out["farkas_samples"] = list(self.farkas_samples)
        return out


def _json_floats(d: dict[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if np.isfinite(v) else None) for k, v in d.items()}


# ---- constraints ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Constraints:
    """The constraints ⟨A_it, θ⟩ ≥ c_i of one Att-SVM, built without loops over samples or tokens.

    ``diffs`` D_it = x_iα − x_it (n, T, d) (Kᵀ applied for l2), ``queries`` z_i (n, d) (None for l2),
    ``valid`` (n, T) marks the constraints (real token, t ≠ α_i), ``rows`` (m, p) the flattened A_k of the
    valid (i, t) in row-major order, ``rhs`` (m,) the c_k, ``index`` (m, 2) their (i, t).
    """

    norm: str
    diffs: np.ndarray
    queries: np.ndarray | None
    valid: np.ndarray
    selection: np.ndarray
    margins: np.ndarray
    rows: np.ndarray
    rhs: np.ndarray
    index: np.ndarray

    @property
    def dim(self) -> int:
        return self.rows.shape[1]

    def vector_to_solution(self, theta: np.ndarray) -> np.ndarray:
        d = self.diffs.shape[2]
        if self.norm in ("fro", "nuclear"):
            return theta.reshape(d, d)
        if self.norm == "l1":
            return np.diag(theta)
        return theta

    def solution_to_vector(self, sol: np.ndarray) -> np.ndarray:
        if self.norm in ("fro", "nuclear"):
            return sol.reshape(-1)
        if self.norm == "l1":
            return np.diag(sol).copy() if sol.ndim == 2 else sol
        return sol

    def scatter(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """(m,) per-constraint values → (n, T) with ``fill`` where (i, t) is not a constraint."""
        out = np.full(self.valid.shape, fill, dtype=np.result_type(values, type(fill)))
        out[self.valid] = values
        return out


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm: must be one of {NORMS}, got {norm!r}")
    return norm


def check_selection(problem: AttentionProblem, selection) -> np.ndarray:
    """Validate a selection: "opt" (argmax γ, ties broken by the lowest index — see ``tokens.opt``) or n
    token indices, each a real (unmasked) token of its sequence."""
    if isinstance(selection, str):
        if selection != "opt":
            raise ValueError(f"selection: must be 'opt' or an array of {problem.n} token indices, "
                             f"got {selection!r}")
        return problem.optimal_tokens().opt.astype(np.int64)
    sel = np.asarray(selection)
    if sel.shape != (problem.n,):
        raise ValueError(f"selection: expected shape ({problem.n},) (one token per sequence), got {sel.shape}")
    if not np.issubdtype(sel.dtype, np.integer):
        if not np.all(np.isfinite(sel.astype(float))) or np.any(sel != np.round(sel)):
            raise ValueError("selection: token indices must be integers")
        sel = sel.astype(np.int64)
    sel = sel.astype(np.int64)
    bad = np.flatnonzero((sel < 0) | (sel >= problem.T))
    if bad.size:
        raise ValueError(f"selection: token index {int(sel[bad[0]])} of sequence {int(bad[0])} is outside "
                         f"[0, {problem.T})")
    masked = np.flatnonzero(~problem.mask[np.arange(problem.n), sel])
    if masked.size:
        i = int(masked[0])
        raise ValueError(f"selection: sequence {i} selects token {int(sel[i])}, which is masked (padding)")
    return sel


def check_margins(problem: AttentionProblem, margins) -> np.ndarray:
    if margins is None:
        return np.ones(problem.n)
    c = np.asarray(margins, dtype=np.float64)
    if c.shape != (problem.n,):
        raise ValueError(f"margins: expected shape ({problem.n},) (one margin c_i per sequence), got {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("margins: every c_i must be finite and ≥ 0 (SPEC: c_i ∈ {0, 1})")
    return c


def build_constraints(problem: AttentionProblem, selection="opt", norm: Norm = "fro",
                      margins=None) -> Constraints:
    """Constraint vectors A_it and right-hand sides c_i of Att-SVM(α, norm, c), vectorized.

    D_it = x_iα − x_it; A_it = D_it z_iᵀ (fro, nuclear), D_it ⊙ z_i (l1), Kᵀ D_it (l2). Masked tokens and
    t = α_i are excluded through the (n, T) boolean ``valid``.
    """
    check_norm(norm)
    if norm in MATRIX_NORMS and problem.kind == "prompt":
        raise ValueError(f"norm: {norm!r} is a norm on the attention matrix W, which needs per-sample queries "
                         "z_i; this is a prompt problem (no Z, no query_index): use norm='l2' for the "
                         "prompt vector p")
    sel = check_selection(problem, selection)
    c = check_margins(problem, margins)
    n, T, d = problem.X.shape
    rows_i = np.arange(n)
    X = problem.prompt_tokens() if norm == "l2" else problem.X
    D = X[rows_i, sel][:, None, :] - X
    valid = problem.mask.copy()
    valid[rows_i, sel] = False
    Zq = None if norm == "l2" else problem.queries
    if norm in ("fro", "nuclear"):
        A = (D[:, :, :, None] * Zq[:, None, None, :]).reshape(n, T, d * d)
    elif norm == "l1":
        A = D * Zq[:, None, :]
    else:
        A = D
    index = np.argwhere(valid)
    return Constraints(norm=norm, diffs=D, queries=Zq, valid=valid, selection=sel, margins=c,
                       rows=A[valid], rhs=np.broadcast_to(c[:, None], (n, T))[valid].copy(), index=index)


# ---- norms ------------------------------------------------------------------------------------------


def norm_value(theta: np.ndarray, norm: str) -> float:
    """‖θ‖ in the given norm; θ is W (d×d) for fro/nuclear, w (d,) or diag(w) for l1, p for l2."""
    check_norm(norm)
    theta = np.asarray(theta, dtype=np.float64)
    if norm == "fro" or norm == "l2":
        return float(np.linalg.norm(theta))
    if norm == "nuclear":
        return float(np.linalg.svd(theta, compute_uv=False).sum())
    w = np.diag(theta) if theta.ndim == 2 else theta
    return float(np.abs(w).sum())


def _dual_norm(G: np.ndarray, norm: str) -> float:
    if norm in ("fro", "l2"):
        return float(np.linalg.norm(G))
    if norm == "nuclear":
        return float(np.linalg.norm(G, 2)) if G.size else 0.0
    return float(np.abs(G).max()) if G.size else 0.0


def correlation(A: np.ndarray, B: np.ndarray) -> float:
    """corr(A, B) = ⟨A, B⟩ / (‖A‖_F ‖B‖_F) (SPEC §5); NaN when either is zero."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.shape != B.shape:
        raise ValueError(f"A, B: shapes differ ({A.shape} vs {B.shape})")
    den = np.linalg.norm(A) * np.linalg.norm(B)
    return float(np.vdot(A, B) / den) if den > 0 else float("nan")


# ---- certificates -----------------------------------------------------------------------------------


def _certificate(cons: Constraints, theta: np.ndarray, lam: np.ndarray) -> Certificate:
    """Certificate numbers of (θ, λ) for the squared problem (see the module docstring)."""
    d = cons.diffs.shape[2]
    return certificate_rows(cons.rows, cons.rhs, theta, lam, cons.norm, (d, d) if cons.norm == "nuclear" else None)


def certificate_rows(A: np.ndarray, c: np.ndarray, theta: np.ndarray, lam: np.ndarray, norm: str,
                     matrix_shape: tuple[int, int] | None = None) -> Certificate:
    """Certificate of (θ, λ) for min ½‖θ‖² s.t. Aθ ≥ c, with rows A (m, p); ``matrix_shape`` reshapes
    vectors to matrices for the nuclear norm (whose dual norm is the spectral norm)."""
    s = A @ theta
    primal = float(max(0.0, np.max(c - s))) if c.size else 0.0
    lam_pos = np.maximum(lam, 0.0)
    G = A.T @ lam_pos

    def shaped(x):
        return x.reshape(matrix_shape) if matrix_shape is not None else x

    th_norm = norm_value(shaped(theta), norm) if norm != "l1" else float(np.abs(theta).sum())
    gd = _dual_norm(shaped(G), norm)
    if norm in ("fro", "l2"):
        stat = float(np.linalg.norm(theta - G))
    else:
        stat = abs(gd - th_norm) + abs(float(G @ theta) - th_norm**2) / max(1.0, th_norm)
    dual = float(max(0.0, -lam.min())) + stat if lam.size else stat
    comp = float(np.max(lam_pos * np.abs(s - c))) if c.size else 0.0
    lower = float(lam_pos @ c / gd) if gd > 0 else 0.0
    return Certificate(primal=primal, dual=dual, complementarity=comp, gap=th_norm - lower,
                       lower=lower, upper=th_norm)


# ---- exact least-distance solver (fro, l2, v-SVM) ------------------------------------------------------


@dataclass(frozen=True)
class _LDP:
    status: str  # optimal | infeasible
    theta: np.ndarray
    lam: np.ndarray
    farkas: np.ndarray | None


def _ldp(A: np.ndarray, c: np.ndarray) -> _LDP:
    """min ‖θ‖₂ s.t. Aθ ≥ c, exactly (Lawson–Hanson LDP through NNLS).

    NNLS: u = argmin_{u≥0} ‖E u − e‖ with E = [Aᵀ; cᵀ] and e the last unit vector. At the optimum
    ‖Eu − e‖² = 1 − cᵀu; if it is > 0 then θ = Aᵀu / (1 − cᵀu) and the KKT multipliers of ½‖θ‖² are
    λ = u / (1 − cᵀu); if it is 0 then Aᵀu = 0, cᵀu = 1 is a Farkas certificate of infeasibility.
    """
    m, p = A.shape
    if m == 0 or not np.any(c > 0):
        # θ = 0 satisfies every ⟨A_k, θ⟩ ≥ 0.
        return _LDP("optimal", np.zeros(p), np.zeros(m), None)
    E = np.empty((p + 1, m))
    E[:p] = A.T
    E[p] = c
    e = np.zeros(p + 1)
    e[p] = 1.0
    # E is passed as is: compressing it first by QR when p + 1 > m was measured slower (QR cost).
    u, _ = nnls(E, e, maxiter=max(50 * m, 1000))
    den = 1.0 - float(c @ u)
    if den <= _INFEASIBLE_DEN:
        return _LDP("infeasible", np.full(p, np.nan), np.zeros(m), u / max(float(c @ u), 1e-300))
    lam = u / den
    return _LDP("optimal", A.T @ lam, lam, None)


def _farkas_lp(A: np.ndarray, c: np.ndarray) -> np.ndarray | None:
    """λ ≥ 0 with Aᵀλ = 0 and cᵀλ = 1 (minimal Σλ), by HiGHS; None if there is none (problem feasible)."""
    m, p = A.shape
    A_eq = np.vstack([A.T, c[None, :]])
    b_eq = np.zeros(p + 1)
    b_eq[p] = 1.0
    res = linprog(np.ones(m), A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status != 0:
        return None
    return np.asarray(res.x)


def _zero_row_farkas(A: np.ndarray, c: np.ndarray) -> np.ndarray | None:
    """A constraint 0 ≥ c_k > 0 (e.g. a selected token duplicated in its sequence) is its own certificate."""
    scale = max(1.0, float(np.abs(A).max())) if A.size else 1.0
    zero = (np.abs(A).max(axis=1) <= 1e-14 * scale) & (c > 0) if A.size else np.zeros(0, bool)
    if not zero.any():
        return None
    lam = np.zeros(A.shape[0])
    k = int(np.flatnonzero(zero)[0])
    lam[k] = 1.0 / c[k]
    return lam


# ---- nuclear norm SDP -------------------------------------------------------------------------------------

def _nuclear_scs(D: np.ndarray, Zs: np.ndarray, sample: np.ndarray, c: np.ndarray, eps: float
                 ) -> tuple[np.ndarray, np.ndarray, dict]:
    """min ‖M‖_* s.t. D_kᵀ M z_{sample_k} ≥ c_k, as the SDP handed to SCS directly in its conic form.

    ‖M‖_* = min ½(tr P + tr Q) over S = [[P, M], [Mᵀ, Q]] ⪰ 0. The rank-one structure of the constraints
    is kept: u_s = M z_s are extra variables (zero cone rows u_s − M z_s = 0) and each constraint reads
    D_kᵀ u_{sample_k} ≥ c_k. The constraint matrix then has O(n r1 r2 + m r1) nonzeros instead of the
    O(m r1 r2) of ⟨A_k, M⟩ written out (cvxpy's form), which makes SCS's sparse LDL factorization about 8×
    faster at (n, T, d) = (50, 20, 32). Returns (M, y, info) with y ≥ 0 the multipliers of min ‖M‖_*.
    """
    import scs  # lazily: only the nuclear norm needs it

    m, r1 = D.shape
    ns, r2 = Zs.shape
    N = r1 + r2
    nv = N * (N + 1) // 2
    col = np.arange(N)
    start = col * N - col * (col - 1) // 2  # SCS svec: lower triangle, column-major, off-diagonal ×√2
    ii, jj = np.meshgrid(np.arange(r1), np.arange(r2), indexing="ij")
    midx = start[ii] + (r1 + jj - ii)  # M[i, j] = S[r1 + j, i]
    nu = ns * r1
    si, ai, ji = np.meshgrid(np.arange(ns), np.arange(r1), np.arange(r2), indexing="ij")
    rows = np.concatenate([np.arange(nu), (si * r1 + ai).ravel(), nu + np.repeat(np.arange(m), r1),
                           nu + m + np.arange(nv)])
    cols = np.concatenate([nv + np.arange(nu), midx[ai, ji].ravel(),
                           (nv + sample[:, None] * r1 + np.arange(r1)[None, :]).ravel(), np.arange(nv)])
    vals = np.concatenate([np.ones(nu), (-Zs[si, ji] / np.sqrt(2)).ravel(), -D.ravel(), -np.ones(nv)])
    A = sp.csc_matrix((vals, (rows, cols)), shape=(nu + m + nv, nv + nu))
    b = np.concatenate([np.zeros(nu), -c, np.zeros(nv)])
    cost = np.zeros(nv + nu)
    cost[start] = 0.5
    solver = scs.SCS({"A": A, "b": b, "c": cost}, {"z": nu, "l": m, "s": [N]}, eps_abs=eps, eps_rel=eps,
                     max_iters=SCS_MAX_ITERS, verbose=False)
    sol = solver.solve()
    return sol["x"][midx] / np.sqrt(2), np.asarray(sol["y"][nu:nu + m]), sol["info"]


def _span_basis(vectors: np.ndarray, d: int) -> np.ndarray:
    """Orthonormal basis (d×r) of the span of the rows of ``vectors`` (relative rank tolerance 1e-12)."""
    if vectors.size == 0:
        return np.zeros((d, 0))
    U, s, _ = np.linalg.svd(vectors.T, full_matrices=False)
    r = int(np.sum(s > 1e-12 * max(s[0], 1e-300)))
    return U[:, :r]


def _solve_nuclear(cons: Constraints, eps: float = SCS_EPS) -> tuple[str, np.ndarray, np.ndarray, str]:
    """min ‖W‖_* s.t. ⟨A_it, W⟩ ≥ c_i by SCS, in the reduced coordinates W = U M Vᵀ.

    U spans the token differences D_it and V the queries z_i of the constraints: projecting any feasible W
    onto U(·)Vᵀ keeps every ⟨D_it z_iᵀ, W⟩ = D_itᵀ W z_i and does not increase ‖W‖_*, so a minimizer lives
    there and the SDP shrinks from d×d to r1×r2. Returns (status, θ = vec W, λ, message).
    """
    d = cons.diffs.shape[2]
    Dv = cons.diffs[cons.valid]
    m = Dv.shape[0]
    U = _span_basis(Dv, d)
    V = _span_basis(cons.queries, d)
    if U.shape[1] == 0 or V.shape[1] == 0 or not np.any(cons.rhs > 0):
        return "degenerate", np.zeros(d * d), np.zeros(m), "W = 0 is optimal (no positive margin to meet)"
    M, y, info = _nuclear_scs(Dv @ U, cons.queries @ V, cons.index[:, 0], cons.rhs, eps)
    st = str(info["status"])
    if "infeasible" in st:
        return "infeasible", np.full(d * d, np.nan), np.zeros(m), f"SCS: {st}"
    if not np.all(np.isfinite(M)):
        return "inaccurate", np.full(d * d, np.nan), np.zeros(m), f"SCS: {st}"
    W = U @ M @ V.T
    # y are the multipliers of min ‖W‖_*; those of ½‖W‖_*² are ‖W‖_* · y.
    lam = np.maximum(y, 0.0) * norm_value(W, "nuclear")
    status = "optimal" if st == "solved" else "inaccurate"
    return status, W.reshape(-1), lam, f"SCS: {st}, {int(info['iter'])} iterations, eps {eps:g}"


# ---- l1 of the diagonal: LP ----------------------------------------------------------------------------


def _solve_l1(cons: Constraints) -> tuple[str, np.ndarray, np.ndarray, str]:
    """min ‖w‖₁ s.t. a_kᵀw ≥ c_k as an LP in (w⁺, w⁻) ≥ 0 with HiGHS; λ = ‖w‖₁ · (HiGHS row duals)."""
    A, c = cons.rows, cons.rhs
    m, p = A.shape
    res = linprog(np.ones(2 * p), A_ub=np.hstack([-A, A]), b_ub=-c, bounds=(0, None), method="highs")
    if res.status == 2:
        return "infeasible", np.full(p, np.nan), np.zeros(m), f"HiGHS: {res.message}"
    if res.status != 0:
        return "inaccurate", np.full(p, np.nan), np.zeros(m), f"HiGHS: {res.message}"
    w = res.x[:p] - res.x[p:]
    y = np.maximum(-np.asarray(res.ineqlin.marginals), 0.0)
    return "optimal", w, y * float(np.abs(w).sum()), f"HiGHS: {res.message}"


# ---- entry point ----------------------------------------------------------------------------------------


def _infeasible_samples(cons: Constraints) -> tuple[tuple[int, np.ndarray], ...]:
    """Samples whose own constraints are infeasible, each with a Farkas certificate on its rows only.

    One small LP per sample (only ever run for an infeasible problem)."""
    out = []
    sample = cons.index[:, 0]
    for i in np.unique(sample):
        rows = np.flatnonzero(sample == i)
        A_i, c_i = cons.rows[rows], cons.rhs[rows]
        lam_i = _zero_row_farkas(A_i, c_i)
        if lam_i is None:
            lam_i = _farkas_lp(A_i, c_i)
        if lam_i is not None:
            lam = np.zeros(cons.rows.shape[0])
            lam[rows] = lam_i
            out.append((int(i), lam))
    return tuple(out)


def _result(cons: Constraints, status: str, theta: np.ndarray, lam: np.ndarray, solver: str,
            message: str = "", farkas: np.ndarray | None = None, tol: float = SUPPORT_TOL) -> SVMResult:
    n, T = cons.valid.shape
    if status == "infeasible":
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
            farkas = _farkas_lp(cons.rows, cons.rhs)
        tiny = 1e-12 * max(float(farkas.max()), 1e-300) if farkas is not None else 0.0
        used = tuple(int(i) for i in np.unique(cons.index[farkas > tiny, 0])) if farkas is not None else ()
        alone = tuple(i for i, _ in alone)
        p = cons.dim
        nan_sol = cons.vector_to_solution(np.full(p, np.nan))
        far = cons.scatter(farkas, 0.0) if farkas is not None else None
        if far is not None:
            resid = float(np.linalg.norm(cons.rows.T @ farkas))
            gain = float(cons.rhs @ farkas)
            message += f"; Farkas: ‖Σλ A‖ = {resid:.2e}, Σλ c = {gain:.6g}"
        cert = Certificate(primal=float("nan"), dual=float("nan"), complementarity=float("nan"),
                           gap=float("nan"), lower=float("inf"), upper=float("inf"))
        empty = np.zeros((n, T), dtype=bool)
        return SVMResult(status="infeasible", norm=cons.norm, value=float("inf"), solution=nan_sol,
                         active=empty, duals=np.zeros((n, T)), certificate=cert, selection=cons.selection,
                         margins=cons.margins, margin=np.full((n, T), np.nan), constrained=cons.valid,
                         solver=solver, message=message.strip("; "), farkas=far, infeasible_samples=alone,
                         farkas_samples=used, support_tokens=tuple(() for _ in range(n)))
    s = cons.rows @ theta
    active_k = s - cons.rhs <= tol
    active = cons.scatter(active_k, False).astype(bool)
    support = tuple(tuple(int(t) for t in np.flatnonzero(active[i])) for i in range(n))
    sol = cons.vector_to_solution(theta)
    cert = _certificate(cons, theta, lam)
    # "optimal" is claimed only when the certificate confirms it: exact solvers to 1e-8, SCS to 1e-6.
    limit = CERT_TOL_SCS if solver.startswith("scs") else CERT_TOL_EXACT
    scale = max(1.0, cert.upper)
    if status == "optimal" and not (cert.primal <= limit and cert.dual <= limit * scale
                                    and abs(cert.gap) <= limit * scale):
        status = "inaccurate"
        message = (message + "; " if message else "") + \
            f"certificate above {limit:g}: primal {cert.primal:.2e}, dual {cert.dual:.2e}, gap {cert.gap:.2e}"
    return SVMResult(status=status, norm=cons.norm, value=norm_value(sol, cons.norm), solution=sol,
                     active=active, duals=cons.scatter(lam, 0.0), certificate=cert,
                     selection=cons.selection, margins=cons.margins, margin=cons.scatter(s),
                     constrained=cons.valid, solver=solver, message=message, support_tokens=support)


def solve_svm(problem: AttentionProblem, selection="opt", norm: Norm = "fro", margins=None,
              tol: float = SUPPORT_TOL) -> SVMResult:
    """Solve Att-SVM(α, norm, c):  min ‖θ‖ s.t. ⟨A_it, θ⟩ ≥ c_i for every i and real t ≠ α_i (SPEC §3).

    selection: "opt" (α_i = argmax_t γ_it) or n token indices. norm: "fro" (W^mm, exact), "l2" (p^mm of the
    prompt model, exact), "nuclear" (W^mm_★, SCS), "l1" (diagonal W = diag(w), ‖w‖₁, HiGHS). margins: c (n,)
    with entries ≥ 0, default all 1. tol: support tokens are the t with ⟨A_it, θ⟩ − c_i ≤ tol.
    """
    cons = build_constraints(problem, selection, norm, margins)
    if cons.rows.shape[0] and (farkas := _zero_row_farkas(cons.rows, cons.rhs)) is not None:
        return _result(cons, "infeasible", None, None, "structure", "a constraint reads 0 ≥ c_i > 0", farkas)
    if norm in ("fro", "l2"):
        r = _ldp(cons.rows, cons.rhs)
        if r.status == "infeasible":
            farkas = _farkas_lp(cons.rows, cons.rhs)
            if farkas is None:
                # NNLS saw ‖θ‖ > 1e6 but no exact certificate exists: report the huge solution as inaccurate.
                return _result(cons, "inaccurate", cons.rows.T @ (r.farkas * 1e12), r.farkas * 1e12,
                               "nnls", "near-infeasible: ‖θ‖ > 1e6 and no Farkas certificate", tol=tol)
            return _result(cons, "infeasible", None, None, "nnls+highs", "", farkas)
        return _result(cons, "optimal", r.theta, r.lam, "nnls", tol=tol)
    if norm == "nuclear":
        status, theta, lam, msg = _solve_nuclear(cons)
        if status == "degenerate":
            return _result(cons, "optimal", theta, lam, "trivial", msg, tol=tol)
        if status == "infeasible":
            return _result(cons, "infeasible", None, None, "scs+highs", msg)
        if not np.all(np.isfinite(theta)):
            return _result(cons, "inaccurate", np.zeros_like(theta), lam, "scs", msg, tol=tol)
        return _result(cons, status, theta, lam, "scs", msg, tol=tol)
    status, theta, lam, msg = _solve_l1(cons)
    if status == "infeasible":
        return _result(cons, "infeasible", None, None, "highs", msg)
    if not np.all(np.isfinite(theta)):
        return _result(cons, "inaccurate", np.zeros(cons.dim), lam, "highs", msg, tol=tol)
    return _result(cons, status, theta, lam, "highs", msg, tol=tol)


# ---- batched exact solver ---------------------------------------------------------------------------------


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
    zero rows with right-hand side 0, which NNLS never activates. Each instance is one NNLS on an m×m
    factor (m = nT); certificates are computed for the whole batch at once.
    """
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
    if c.shape != (B, n) or np.any(c < 0):
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
    p = A.shape[2]
    theta = np.zeros((B, p))
    lam = np.zeros((B, n * T))
    farkas = np.zeros((B, n * T))
    feasible = np.ones(B, bool)
    for b in range(B):  # one NNLS per instance; everything around it is batched
        r = _ldp(A[b], rhs[b])
        if r.status == "infeasible":
            feasible[b] = False
            farkas[b] = r.farkas
        else:
            theta[b], lam[b] = r.theta, r.lam
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
    status = np.where(feasible, "optimal", "infeasible")
    nanB = np.where(feasible, 1.0, np.nan)
    return SVMBatch(
        status=status, norm=norm, value=np.where(feasible, value, np.inf),
        solution=(theta * nanB[:, None]).reshape((B, *sol_shape)), duals=lam.reshape(B, n, T),
        active=(valid & (slack.reshape(B, n, T) <= tol)) & feasible[:, None, None],
        margin=np.where(valid, s.reshape(B, n, T), np.nan), selection=sel, margins=c,
        primal=primal * nanB, dual=dual * nanB, complementarity=comp * nanB, gap=gap * nanB,
        farkas=farkas.reshape(B, n, T))


def solve_svm_batch(problems: Sequence[AttentionProblem] | tuple[np.ndarray, np.ndarray | None],
                    selections="opt", norm: Norm = "fro", margins=None, tol: float = SUPPORT_TOL) -> SVMBatch:
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


# ---- v-SVM and relaxed margins (P1 joint training) -----------------------------------------------------------


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
    """Exact hard-margin SVM of the selected tokens (SPEC §3, P1 joint): min ‖v‖ s.t. Y_i vᵀ x_{iα_i} ≥ 1.

    Solved as a least-distance problem by NNLS (no intercept, no C → ∞ limit). Support samples:
    S = {i : Y_i vᵀ r_i − 1 ≤ tol}.
    """
    sel = check_selection(problem, selection)
    R = problem.X[np.arange(problem.n), sel]
    A = problem.Y[:, None] * R
    c = np.ones(problem.n)
    r = _ldp(A, c)
    if r.status == "infeasible":
        far = _farkas_lp(A, c)
        far = r.farkas if far is None else far
        cert = Certificate(float("nan"), float("nan"), float("nan"), float("nan"), float("inf"), float("inf"))
        return VSVMResult("infeasible", np.full(problem.d, np.nan), float("inf"), np.zeros(problem.n),
                          np.full(problem.n, np.nan), (), cert, sel, far)
    margin = A @ r.theta
    support = tuple(int(i) for i in np.flatnonzero(margin - 1.0 <= tol))
    return VSVMResult("optimal", r.theta, float(np.linalg.norm(r.theta)), r.lam, margin, support,
                      certificate_rows(A, c, r.theta, r.lam, "l2"), sel)


def relaxed_margins_from_v(problem: AttentionProblem, selection="opt", tol: float = SUPPORT_TOL
                           ) -> np.ndarray:
    """P1's relaxed margins: c_i = 1 for the support samples of the v-SVM at α, c_i = 0 otherwise.

    Att-SVM with these margins is p^relax (P1, joint (v, p) training)."""
    vres = solve_v_svm(problem, selection, tol)
    if vres.status != "optimal":
        raise ValueError("selection: the selected tokens are not linearly separable by v (the v-SVM is "
                         "infeasible), so there are no support samples to relax the margins from")
    c = np.zeros(problem.n)
    c[list(vres.support_samples)] = 1.0
    return c


# ---- multi-token SVM equivalence (P3, nonlinear heads) ----------------------------------------------------------


@dataclass(frozen=True)
class MultiTokenSVM:
    """P3's SVM-equivalence for multi-token selections (SPEC §3).

    W_fin = argmin ‖W‖_F s.t. (x_it₂ − x_it₁)ᵀ W z_i = log(s_it₂/s_it₁), t₁, t₂ ∈ O_i;
    W_dir = argmin ‖W‖_F s.t. (x_it₁ − x_it₂)ᵀ W z_i = 0 in O_i, (x_iτ − x_it)ᵀ W z_i ≥ 1, τ ∈ O_i, t ∈ Ō_i;
    prediction = W_fin + R·W_dir with R **fitted** by least squares to the given W (``fitted`` True), so
    ``correlation`` measures the direction only up to that one fitted scalar.
    """

    W_fin: np.ndarray
    W_dir: np.ndarray
    R: float
    fitted: bool
    prediction: np.ndarray
    correlation: float
    selected: np.ndarray  # (n, T) O_i
    masked: np.ndarray  # (n, T) Ō_i
    undecided: np.ndarray  # (n, T) tokens with τ_lo < s ≤ τ_hi (P3 rejects such runs)
    status: str  # status of the W_dir problem


def multitoken_svm(problem: AttentionProblem, weights: np.ndarray, W: np.ndarray | None = None,
                   tau_hi: float = 1e-3, tau_lo: float = 1e-6) -> MultiTokenSVM:
    """Finite part, direction and fitted R of P3's multi-token SVM-equivalence from softmax weights s (n, T).

    O_i = {t : s_it > τ_hi}, Ō_i = {t : s_it ≤ τ_lo} (P3 code: 1e−3, 1e−6). Equalities within O_i use the
    first token of O_i as t₁ (the others follow). W_fin is the minimum-norm least-squares solution; W_dir
    is solved exactly in the null space of the equalities (orthonormal basis, so ‖W‖_F is preserved) by
    the least-distance NNLS. R = ⟨W − W_fin, W_dir⟩/‖W_dir‖²_F when W is given (else R = NaN).
    """
    if problem.kind == "prompt":
        raise ValueError("problem: the multi-token SVM is posed on W with per-sample queries z_i; this is a "
                         "prompt problem")
    s = np.asarray(weights, dtype=np.float64)
    n, T, d = problem.X.shape
    if s.shape != (n, T):
        raise ValueError(f"weights: expected softmax weights of shape ({n}, {T}), got {s.shape}")
    if not 0 < tau_lo < tau_hi:
        raise ValueError(f"tau_lo, tau_hi: need 0 < tau_lo < tau_hi, got {tau_lo}, {tau_hi}")
    mask = problem.mask
    O = mask & (s > tau_hi)
    Ob = mask & (s <= tau_lo)
    und = mask & ~O & ~Ob
    if not np.all(O.any(axis=1)):
        raise ValueError(f"weights: sequence {int(np.flatnonzero(~O.any(axis=1))[0])} has no token with "
                         f"s > tau_hi = {tau_hi}")
    rows_i = np.arange(n)
    t1 = np.argmax(O, axis=1)
    Zq = problem.queries
    D = problem.X - problem.X[rows_i, t1][:, None, :]  # x_it − x_it₁
    full = (D[:, :, :, None] * Zq[:, None, None, :]).reshape(n, T, d * d)
    eq = O.copy()
    eq[rows_i, t1] = False
    Beq = full[eq]
    logs = np.log(np.where(O, s, 1.0))
    beq = (logs - logs[rows_i, t1][:, None])[eq]
    w_fin = np.linalg.lstsq(Beq, beq, rcond=None)[0] if Beq.shape[0] else np.zeros(d * d)
    Ain = -full[Ob]  # (x_it₁ − x_it) z_iᵀ
    if Beq.shape[0]:
        _, sv, Vt = np.linalg.svd(Beq, full_matrices=True)
        rank = int(np.sum(sv > 1e-12 * max(sv[0], 1e-300)))
        N = Vt[rank:].T
    else:
        N = np.eye(d * d)
    if Ain.shape[0]:
        r = _ldp(Ain @ N, np.ones(Ain.shape[0]))
        status = r.status
        w_dir = N @ r.theta if r.status == "optimal" else np.full(d * d, np.nan)
    else:
        status, w_dir = "optimal", np.zeros(d * d)
    W_fin, W_dir = w_fin.reshape(d, d), w_dir.reshape(d, d)
    if W is not None and status == "optimal" and np.linalg.norm(W_dir) > 0:
        W = np.asarray(W, dtype=np.float64)
        if W.shape != (d, d):
            raise ValueError(f"W: expected shape ({d}, {d}), got {W.shape}")
        R = float(np.vdot(W - W_fin, W_dir) / np.vdot(W_dir, W_dir))
        pred = W_fin + R * W_dir
        corr = correlation(W, pred)
    else:
        R, pred, corr = float("nan"), W_fin + W_dir, float("nan")
    return MultiTokenSVM(W_fin=W_fin, W_dir=W_dir, R=R, fitted=W is not None, prediction=pred,
                         correlation=corr, selected=O, masked=Ob, undecided=und, status=status)

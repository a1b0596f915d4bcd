"""Approximate KKT certificates: how far a trained direction is from being a KKT point of an Att-SVM.

A direction θ (W, a diagonal w, a prompt vector p, or factored parameters (K, Q) / (k, q)) is scored
against the Att-SVM at a selection α,

    minimize ‖θ‖   subject to   ⟨A_k, θ⟩ ≥ c_k   (k = (i, t), t ≠ α_i real),

without solving that problem. Steps, each free of the scale of θ and of the scale of the data:

1. **Scale to margin 1.** s = min_k ⟨A_k, θ⟩ / c_k over the constraints with c_k > 0 (default c ≡ 1) and
   θ̃ = θ / s. If s ≤ 0 the direction does not separate the selection: status ``not_separating``, and
   ``primal`` = −min_k ⟨A_k, θ⟩ / max_k |⟨A_k, θ⟩| > 0 says by how much.
2. **Multipliers.** λ ≥ 0 and a subgradient g ∈ ∂‖θ̃‖ minimizing

       stationarity² + complementarity²,   stationarity = ‖Σ_k λ_k A_k − g‖_F,
                                            complementarity = Σ_k λ_k |⟨A_k, θ̃⟩ − c_k| / ‖θ̃‖.

   Subgradients of a norm have dual norm 1, so stationarity is on the scale of 1; at an optimum
   Σ_k λ_k ⟨A_k, θ̃⟩ = ⟨g, θ̃⟩ = ‖θ̃‖, so complementarity is the fraction of that multiplier mass spent on
   constraints that are not tight. Minimizing the two together (one least-squares problem, solved exactly
   by NNLS / bounded-variable least squares except for the nuclear norm) picks, among the multipliers that
   represent g, those that are also complementary: with stationarity alone the minimizer is not unique, and
   some minimizers put weight on slack constraints.
3. **Subdifferentials.** Frobenius / ℓ2: g = θ̃/‖θ̃‖. Entrywise ℓp, 1 < p < ∞ ("lp:P" on W, "lp-prompt:P"
   on p): g = sign(θ̃)|θ̃|^{p−1} / ‖θ̃‖_p^{p−1}. ℓ1 of the diagonal (and entrywise ℓ1, "lp:1"):
   g_j = sign(w_j) on the support S, g_j ∈ [−1, 1] off it. Nuclear:
   ∂‖W‖_* = U Vᵀ + {M : Uᵀ M = 0, M V = 0, ‖M‖₂ ≤ 1} with U, V the singular vectors of the nonzero
   singular values. A trained direction has no exact zeros: its small singular values (ℓ1: entries)
   decay slowly, and which of them count as zero decides the subdifferential. Counting the smallest ones
   as zero (keeping rank r) only enlarges the subdifferential, and every g obtained is an
   ε'-subgradient of θ̃ (‖g‖_dual ≤ 1, ⟨g, θ̃⟩ ≥ ‖θ̃‖ − ε') with ε' = 2 · (the norm of the discarded
   part); ``discarded`` reports that part relative to ‖θ̃‖, and ε = max(stationarity, complementarity,
   primal, 2·discarded). By default every r is tried and the smallest ε kept, so no threshold is
   needed and ε → 0 exactly when the direction approaches a KKT point (of any rank); ``rank_tol`` fixes
   r by a relative threshold instead. The nuclear fit is minimized by L-BFGS-B on λ ≥ 0 (½ dist² to a
   convex set is C¹ with gradient A(G − P(G))), the ℓ1 fit exactly by bounded-variable least squares.
4. **Duality gap.** Any λ ≥ 0 bounds the optimal value from below, ‖θ*‖ ≥ Σ λ_k c_k / ‖Σ λ_k A_k‖_dual
   (dual norms: Frobenius ↔ Frobenius, nuclear ↔ spectral, ℓ1 ↔ ℓ∞, ℓp ↔ ℓq), so
   ``gap`` = 1 − lower/‖θ̃‖ ≥ (‖θ̃‖ − ‖θ*‖)/‖θ̃‖ bounds the relative suboptimality of θ̃ among feasible points.

**Parameter space.** For factored weights W = K Qᵀ (diagonal W = diag(k ⊙ q)) the problem in the parameters
is min ½(‖K‖²_F + ‖Q‖²_F) s.t. m_k(K, Q) = ⟨A_k, K Qᵀ⟩ ≥ c_k, smooth but not convex, with margins
homogeneous of degree 2. Its KKT conditions read φ = Σ λ_k ∇m_k(φ) (φ = (K, Q): K = G Q, Q = Gᵀ K with
G = Σ λ_k A_k) and λ_k (m_k − c_k) = 0. With φ̃ the parameters scaled by 1/√s (minimum margin 1) and
N = ‖φ̃‖: stationarity = ‖φ̃ − Σ λ_k ∇m_k(φ̃)‖ / N, complementarity = 2 Σ λ_k |m_k − c_k| / N² (at a KKT
point Σ λ_k m_k = N²/2 by Euler's identity), minimized jointly by NNLS. A parameter-space KKT point need not
be a KKT point of the convex problem: K = G Q, Q = Gᵀ K only make G's singular values 1 on the span of W,
while the nuclear-norm conditions also need ‖G‖₂ ≤ 1 (ℓ1: |g_j| ≤ 1 off the support).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import lsq_linear, minimize, nnls
from threadpoolctl import ThreadpoolController

from ..problem import AttentionProblem
from ._constraints import build_constraints, check_selection
from ._measures import logits

#: Default rank rule (module docstring, 3): None tries every rank and keeps the smallest ε; a number r_tol
#: treats singular values (ℓ1: entries) ≤ r_tol × the largest as zero.
RANK_TOL: float | None = None

#: Norms the certificate knows, besides the entrywise ℓp families "lp:P" (on W) and "lp-prompt:P" (on p)
#: for 1 ≤ P < ∞ (the names of attnsvm.svm's ℓp norms); and the two parameter spaces.
KKT_NORMS: tuple[str, ...] = ("l2", "fro", "nuclear", "l1")
PARAMETER_SPACES: tuple[str, ...] = ("factored", "diagonal")


# The public functions run with one BLAS thread: the solvers' tiny dense steps (NNLS, L-BFGS-B) run ~50×
# slower when OpenBLAS spins up threads on a busy machine (measured: 0.33 s vs 6 ms for 16 L-BFGS-B
# evaluations at m = 12 on 2 loaded cores). The controller is built once (building it scans the loaded
# libraries, ~10 ms).
_CONTROLLER: ThreadpoolController | None = None


def _one_blas_thread():
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


@dataclass(frozen=True)
class KKTCertificate:
    """ε-KKT numbers of one direction against one problem (module docstring: every entry is scale-free).

    problem:          the norm ("fro", "nuclear", "l1", "l2", "lp:P", "lp-prompt:P") or the parameter space
                      ("factored", "diagonal")
    status:           "separating" | "not_separating"
    stationarity:     ‖Σλ A − g‖_F (convex) / ‖φ̃ − Σλ ∇m‖ / ‖φ̃‖ (parameters)
    complementarity:  Σλ |m − c| / ‖θ̃‖ (convex) / 2 Σλ |m − c| / ‖φ̃‖² (parameters)
    primal:           largest constraint violation of the scaled direction relative to max c (0 when it
                      separates with every c_k > 0); for a non-separating direction −min m / max |m|
    gap:              relative duality-gap bound 1 − lower/‖θ̃‖ of the multipliers (NaN in parameter space)
    margin:           normalized margin min_k ⟨A_k, θ⟩/c_k / ‖θ‖ in the problem's norm (‖φ‖² in parameter space)
    rank:             singular values (nuclear) / coordinates (ℓ1) treated as nonzero; −1 where not applicable
    discarded:        the norm of the part treated as zero, relative to ‖θ̃‖ (0 where not applicable)
    multipliers:      λ (n, T), 0 off the constraints: of min ‖θ‖ (convex) / of min ½‖φ‖² (parameters)
    selection:        α (n,)
    """

    problem: str
    status: str
    stationarity: float
    complementarity: float
    primal: float
    gap: float
    margin: float
    rank: int
    discarded: float
    multipliers: np.ndarray
    selection: np.ndarray

    @property
    def epsilon(self) -> float:
        """max(stationarity, complementarity, primal, 2·discarded): the ε of an ε-KKT point with an
        ε-subgradient (inf if the direction does not separate)."""
        if self.status != "separating":
            return float("inf")
        return float(max(self.stationarity, self.complementarity, self.primal, 2.0 * self.discarded))

    def to_dict(self) -> dict[str, float | int | str]:
        """The scalar entries (JSON-ready; non-finite numbers as None)."""
        out: dict[str, float | int | str | None] = {"problem": self.problem, "status": self.status}
        for k in ("stationarity", "complementarity", "primal", "gap", "margin", "discarded", "epsilon"):
            v = float(getattr(self, k))
            out[k] = v if np.isfinite(v) else None
        out["rank"] = int(self.rank)
        return out


# ---- helpers ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NormKind:
    """How the certificate treats one norm: ``variable`` (the constraint vectors: "matrix" D z ᵀ, "diagonal"
    D ⊙ z, "prompt" Kᵀ D), ``sub`` (the subdifferential: "euclidean" θ/‖θ‖, "smooth" ℓp gradient, "l1" sign
    on the support and [−1, 1] off it, "nuclear"), ``p`` (the exponent of ℓp), and the name of the
    constraint family in the norm registry."""

    name: str
    variable: str
    sub: str
    p: float
    constraints: str


def _norm_kind(norm: str) -> _NormKind:
    fixed = {"fro": ("matrix", "euclidean", 2.0, "fro"), "l2": ("prompt", "euclidean", 2.0, "l2"),
             "nuclear": ("matrix", "nuclear", 1.0, "nuclear"), "l1": ("diagonal", "l1", 1.0, "l1")}
    if norm in fixed:
        return _NormKind(norm, *fixed[norm])
    prefix = next((pre for pre in ("lp:", "lp-prompt:") if isinstance(norm, str) and norm.startswith(pre)), None)
    if prefix is None:
        raise ValueError(f"norm: must be one of {KKT_NORMS} or 'lp:P' / 'lp-prompt:P' (entrywise ℓp, 1 ≤ P < ∞), "
                         f"got {norm!r}")
    try:
        pv = float(norm[len(prefix):])
    except ValueError:
        raise ValueError(f"norm: cannot read the exponent of {norm!r} (write e.g. 'lp:3' or 'lp:1.5')") from None
    if not (1.0 <= pv < np.inf):
        raise ValueError(f"norm: {norm!r} needs 1 ≤ P < ∞ (the ε-KKT certificate of ℓ∞ is not implemented)")
    prompt = prefix == "lp-prompt:"
    sub = "l1" if pv == 1.0 else ("euclidean" if pv == 2.0 else "smooth")
    return _NormKind(norm, "prompt" if prompt else "matrix", sub, pv, "l2" if prompt else "fro")


def kkt_norm_variable(norm: str) -> str:
    """What a norm known to the certificate is posed on: "matrix" (W), "diagonal" (diag(w)) or "prompt" (p);
    ValueError naming the choices for an unknown norm."""
    return _norm_kind(norm).variable


def _selection(problem: AttentionProblem, selection, W: np.ndarray) -> np.ndarray:
    """"reached" (argmax of the logits of W / p), "opt", or n token indices."""
    if isinstance(selection, str) and selection == "reached":
        return np.argmax(logits(problem, W), axis=1).astype(np.int64)
    if isinstance(selection, str) and selection not in ("opt",):
        raise ValueError(f"selection: must be 'reached', 'opt' or {problem.n} token indices, got {selection!r}")
    return check_selection(problem, selection)


def _finite(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: contains NaN or inf")
    return x


def _direction(problem: AttentionProblem, theta, kind: _NormKind) -> np.ndarray:
    """θ as the matrix W (d×d) for matrix and diagonal norms (diagonal: diag(w), from w or a diagonal W),
    p for prompt norms."""
    d = problem.d
    theta = _finite("theta", theta)
    if kind.variable == "prompt":
        dk = problem.keys.shape[1]
        if theta.shape != (dk,):
            raise ValueError(f"theta: the prompt vector p of this problem has shape ({dk},), got {theta.shape}")
        return theta
    diag = kind.variable == "diagonal"
    if diag and theta.shape == (d,):
        return np.diag(theta)
    if theta.shape != (d, d):
        raise ValueError(f"theta: expected W of shape ({d}, {d})" + (f" or w of shape ({d},)" if diag else "")
                         + f", got {theta.shape}")
    if diag:
        off = np.abs(theta - np.diag(np.diag(theta))).max()
        if off > 1e-12 * max(np.abs(theta).max(), 1e-300):
            raise ValueError("theta: the ℓ1 Att-SVM is posed on diagonal W = diag(w); W has off-diagonal "
                             f"entries up to {off:.3g} (pass w, or use norm='nuclear' / 'fro' for full W)")
    return theta


def _not_separating(problem_name: str, m: np.ndarray, cons, n: int, T: int) -> KKTCertificate:
    scale = float(np.abs(m).max()) if m.size else 0.0
    prim = float(-m.min() / scale) if scale > 0 else float("inf")
    nan = float("nan")
    return KKTCertificate(problem=problem_name, status="not_separating", stationarity=nan, complementarity=nan,
                          primal=prim, gap=nan, margin=nan, rank=-1, discarded=nan,
                          multipliers=np.zeros((n, T)), selection=cons.selection)


def _scale(m: np.ndarray, c: np.ndarray) -> float:
    """min_k m_k / c_k over c_k > 0 (the factor that brings the minimum margin to 1); −inf without such k."""
    pos = c > 0
    if not pos.any():
        raise ValueError("margins: every c_k is 0, so there is no margin to scale to (give some c_i > 0)")
    return float(np.min(m[pos] / c[pos]))


def _primal(m_scaled: np.ndarray, c: np.ndarray) -> float:
    return float(max(0.0, np.max(c - m_scaled)) / max(float(c.max()), 1e-300)) if m_scaled.size else 0.0


def _nnls_rows(E: np.ndarray, target: np.ndarray) -> np.ndarray:
    """argmin_{u ≥ 0} ‖E u − target‖ (Lawson–Hanson, exact)."""
    u, _ = nnls(E, target, maxiter=max(50 * E.shape[1], 2000))
    return u


def _spectral_clip(B: np.ndarray) -> np.ndarray:
    if B.size == 0:
        return B
    U, s, Vt = np.linalg.svd(B, full_matrices=False)
    return (U * np.minimum(s, 1.0)) @ Vt


def _nuclear_fit(As: np.ndarray, ws: np.ndarray, U: np.ndarray, V: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """λ ≥ 0 minimizing ½ dist²(Σλ A, U_r V_rᵀ + {U_⊥ N V_⊥ᵀ : ‖N‖₂ ≤ 1}) + ½ (wᵀλ)² by L-BFGS-B (rows A
    scaled to unit size); returns λ and the nearest subgradient g = P(Σλ A)."""
    d = U.shape[0]
    Ur, Uo, Vr, Vo = U[:, :r], U[:, r:], V[:, :r], V[:, r:]
    base = Ur @ Vr.T

    def project(G: np.ndarray) -> np.ndarray:
        return base + Uo @ _spectral_clip(Uo.T @ G @ Vo) @ Vo.T

    def fun(lam: np.ndarray) -> tuple[float, np.ndarray]:
        G = (lam @ As).reshape(d, d)
        R = G - project(G)
        c = float(ws @ lam)
        return 0.5 * float(np.vdot(R, R)) + 0.5 * c * c, As @ R.reshape(-1) + c * ws

    # warm start: the exact NNLS fit to U_r V_rᵀ; then L-BFGS-B on the full objective (convex and C¹: ½ dist²
    # to a convex set has gradient G − P(G))
    lam0 = _nnls_rows(np.vstack([As.T, ws[None, :]]), np.append(base.reshape(-1), 0.0))
    if r == d:
        lam = lam0  # the subdifferential is the single point U Vᵀ: NNLS is exact
    else:
        res = minimize(fun, lam0, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * len(lam0),
                       options={"maxiter": 20_000, "maxfun": 40_000, "ftol": 0.0, "gtol": 1e-15, "maxcor": 30})
        lam = np.maximum(res.x, 0.0)
    return lam, project((lam @ As).reshape(d, d)).reshape(-1)


def _l1_fit(As: np.ndarray, ws: np.ndarray, w: np.ndarray, big: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """λ ≥ 0 and g (g_j = sign w_j on ``big``, g_j ∈ [−1, 1] off it) minimizing ‖Σλ a − g‖² + (wᵀλ)², exactly
    by bounded-variable least squares (rows scaled to unit size)."""
    off = np.flatnonzero(~big)
    m_rows, k = As.shape
    E = np.zeros((k + 1, m_rows + off.size))
    E[:k, :m_rows] = As.T
    E[off, m_rows + np.arange(off.size)] = -1.0
    E[k, :m_rows] = ws
    lo = np.concatenate([np.zeros(m_rows), -np.ones(off.size)])
    hi = np.concatenate([np.full(m_rows, np.inf), np.ones(off.size)])
    g = np.where(big, np.sign(w), 0.0)
    sol = lsq_linear(E, np.append(g, 0.0), bounds=(lo, hi), method="bvls", tol=1e-14,
                     max_iter=50 * (m_rows + k + 10))
    x = np.clip(sol.x, lo, hi)
    g[off] = x[m_rows:]
    return x[:m_rows], g


def _rank_candidates(mags: np.ndarray, rank_tol: float | None) -> list[int]:
    """Ranks r to try, largest first: the one given by ``rank_tol``, or every r from the number of nonzero
    magnitudes down to 1 (``rank_tol=None``)."""
    top = float(mags.max())
    nonzero = int(np.sum(mags > 0))
    if rank_tol is not None:
        return [max(1, int(np.sum(mags > rank_tol * top)))]
    return list(range(nonzero, 0, -1))


# ---- convex certificate -------------------------------------------------------------------------------------


def _norm(theta: np.ndarray, kind: _NormKind) -> float:
    """‖θ‖ of the vector θ (vec W, w or p), or of the matrix W for the nuclear norm."""
    if kind.sub == "nuclear":
        return float(np.linalg.svd(theta, compute_uv=False).sum())
    a = np.abs(theta).ravel()
    top = float(a.max())
    return top * float(np.sum((a / top) ** kind.p) ** (1.0 / kind.p)) if top > 0 else 0.0


def _dual_norm(G: np.ndarray, kind: _NormKind) -> float:
    """The dual norm: spectral for nuclear, ℓq (1/p + 1/q = 1) entrywise otherwise."""
    if kind.sub == "nuclear":
        return float(np.linalg.norm(G, 2))
    a = np.abs(G).ravel()
    top = float(a.max())
    if kind.p == 1.0 or top == 0.0:
        return top
    q = kind.p / (kind.p - 1.0)
    return top * float(np.sum((a / top) ** q) ** (1.0 / q))


def kkt_certificate(problem: AttentionProblem, theta, norm: str = "fro", selection="reached", margins=None,
                    rank_tol: float | None = RANK_TOL) -> KKTCertificate:
    """ε-KKT certificate of the direction ``theta`` for the Att-SVM min ‖θ‖ s.t. ⟨A_k, θ⟩ ≥ c_k.

    norm: "fro", "nuclear", "l1" (diagonal W), "l2" (prompt p), or the entrywise ℓp norms "lp:P" (on W) /
    "lp-prompt:P" (on p), 1 ≤ P < ∞.
    theta: W (d×d) for the norms on W, w (d,) or diag(w) for "l1", the prompt vector p for prompt norms.
    selection: "reached" (argmax of the logits of θ; default), "opt", or n token indices.
    margins: c (n,), default 1. rank_tol: None (default) tries every rank of the nuclear subdifferential
    (ℓ1: every support size, largest entries first) and reports the one with the smallest ε; a number
    treats singular values (ℓ1: entries) ≤ rank_tol × the largest as zero.
    Every reported number is invariant to rescaling θ and to rescaling the data (module docstring).
    """
    with _one_blas_thread():
        return _kkt_certificate(problem, theta, _norm_kind(norm), selection, margins, rank_tol)


def _kkt_certificate(problem, theta, kind: _NormKind, selection, margins, rank_tol) -> KKTCertificate:
    if rank_tol is not None and not 0.0 <= rank_tol < 1.0:
        raise ValueError(f"rank_tol: must be None (choose the rank) or in [0, 1), got {rank_tol}")
    W = _direction(problem, theta, kind)
    if not np.any(W):
        raise ValueError("theta: the zero direction has no margin to scale")
    sel = _selection(problem, selection, W)
    cons = build_constraints(problem, sel, kind.constraints, margins)
    n, T = cons.valid.shape
    name = kind.name
    if cons.rows.shape[0] == 0:
        raise ValueError("selection: there are no constraints (every sequence has a single real token)")
    vec = cons.solution_to_vector(W)
    A, c = cons.rows, cons.rhs
    m = A @ vec
    s = _scale(m, c)
    if s <= 0:
        return _not_separating(name, m, cons, n, T)
    Wt = W / s
    vt = vec / s
    mt = m / s
    val = _norm(Wt if kind.sub == "nuclear" else vt, kind)
    margin = 1.0 / val  # = min_k (m_k / c_k) / ‖θ‖
    w_row = np.abs(mt - c) / val  # complementarity row: Σλ|m − c|/‖θ̃‖
    rank, discarded = -1, 0.0
    if kind.sub in ("euclidean", "smooth"):
        # the norm is differentiable at θ̃ ≠ 0: g = ∇‖θ̃‖ = sign(θ̃)|θ̃/‖θ̃‖|^{p−1} (θ̃/‖θ̃‖ for p = 2)
        g = np.sign(vt) * (np.abs(vt) / val) ** (kind.p - 1.0)
        a = float(np.linalg.norm(A, axis=1).max()) or 1.0
        u = _nnls_rows(np.vstack([A.T / a, w_row[None, :] / a]), np.append(g, 0.0))
        lam = u / a
        G = A.T @ lam
    else:
        # a threshold on singular values (ℓ1: entries) decides which subdifferential applies; without one,
        # every rank r is tried and the smallest ε kept (ε includes 2·discarded, the ε-subgradient slack)
        a = float(np.linalg.norm(A, axis=1).max()) or 1.0
        As, ws = A / a, w_row / a
        if kind.sub == "l1":
            order = np.argsort(-np.abs(vt), kind="stable")
            mags = np.abs(vt)[order]
        else:
            U, mags, Vt = np.linalg.svd(Wt)
        total = float(mags.sum())
        best = None
        for r in _rank_candidates(mags, rank_tol):
            disc = float(mags[r:].sum() / total)
            if best is not None and 2.0 * disc >= best[0]:
                break  # fewer kept directions only add slack
            if kind.sub == "l1":
                big = np.zeros(vt.size, bool)
                big[order[:r]] = True
                lam_r, g_r = _l1_fit(As, ws, vt, big)
            else:
                lam_r, g_r = _nuclear_fit(As, ws, U, Vt.T, r)
            lam_r = lam_r / a
            st, cp_ = float(np.linalg.norm(A.T @ lam_r - g_r)), float(w_row @ lam_r)
            eps = max(st, cp_, 2.0 * disc)
            if best is None or eps < best[0]:
                best = (eps, r, disc, lam_r, g_r)
        _, rank, discarded, lam, g = best
        G = A.T @ lam
    stat = float(np.linalg.norm(G - g))
    comp = float(w_row @ lam)
    dual = _dual_norm(G.reshape(Wt.shape) if kind.sub == "nuclear" else G, kind)
    lower = float(c @ lam) / dual if dual > 0 else 0.0
    gap = 1.0 - lower / val
    return KKTCertificate(problem=name, status="separating", stationarity=stat, complementarity=comp,
                          primal=_primal(mt, c), gap=gap, margin=float(margin), rank=rank,
                          discarded=discarded, multipliers=cons.scatter(lam, 0.0), selection=sel)


# ---- parameter-space certificate ----------------------------------------------------------------------------


def parameter_kkt_certificate(problem: AttentionProblem, params: dict, selection="reached", margins=None
                              ) -> KKTCertificate:
    """ε-KKT certificate of factored (``{"K", "Q"}``, W = K Qᵀ) or diagonal (``{"k", "q"}``, W = diag(k⊙q))
    parameters for min ½‖φ‖² s.t. ⟨A_k, W(φ)⟩ ≥ c_k (module docstring, "Parameter space").

    selection: "reached" (argmax of the logits of W(φ); default), "opt", or n token indices.
    """
    with _one_blas_thread():
        return _parameter_kkt(problem, params, selection, margins)


def _parameter_kkt(problem, params, selection, margins) -> KKTCertificate:
    d = problem.d
    if set(params) >= {"K", "Q"}:
        space = "factored"
        K, Q = _finite("K", params["K"]), _finite("Q", params["Q"])
        if K.ndim != 2 or K.shape[0] != d or Q.shape != K.shape:
            raise ValueError(f"K, Q: expected two arrays of shape ({d}, m), got {K.shape} and {Q.shape}")
        W = K @ Q.T
    elif set(params) >= {"k", "q"}:
        space = "diagonal"
        k, q = _finite("k", params["k"]), _finite("q", params["q"])
        if k.shape != (d,) or q.shape != (d,):
            raise ValueError(f"k, q: expected two vectors of shape ({d},), got {k.shape} and {q.shape}")
        W = np.diag(k * q)
    else:
        raise ValueError(f"params: give factored {{'K', 'Q'}} or diagonal {{'k', 'q'}} blocks, got {sorted(params)}")
    if not np.any(W):
        raise ValueError("params: W(φ) = 0 has no margin to scale")
    sel = _selection(problem, selection, W)
    cons = build_constraints(problem, sel, "fro" if space == "factored" else "l1", margins)
    n, T = cons.valid.shape
    A, c = cons.rows, cons.rhs
    if A.shape[0] == 0:
        raise ValueError("selection: there are no constraints (every sequence has a single real token)")
    m = A @ cons.solution_to_vector(W)
    s = _scale(m, c)
    if s <= 0:
        return _not_separating(space, m, cons, n, T)
    r = 1.0 / np.sqrt(s)
    if space == "factored":
        Kt, Qt = K * r, Q * r
        Am = A.reshape(-1, d, d)
        # ∇_K ⟨A, K Qᵀ⟩ = A Q, ∇_Q = Aᵀ K
        J = np.concatenate([(Am @ Qt).reshape(len(A), -1), (np.transpose(Am, (0, 2, 1)) @ Kt).reshape(len(A), -1)],
                           axis=1)
        phi = np.concatenate([Kt.ravel(), Qt.ravel()])
        norm2 = float(np.sum(K * K) + np.sum(Q * Q))
    else:
        kt, qt = k * r, q * r
        J = np.concatenate([A * qt, A * kt], axis=1)
        phi = np.concatenate([kt, qt])
        norm2 = float(np.sum(k * k) + np.sum(q * q))
    N = float(np.linalg.norm(phi))
    mt = m / s
    w_row = 2.0 * np.abs(mt - c) / N  # with μ = λ/N: 2Σλ|m − c|/N² = Σ μ (2|m − c|/N)
    a = float(np.linalg.norm(J, axis=1).max()) or 1.0
    u = _nnls_rows(np.vstack([J.T / a, w_row[None, :] / a]), np.append(phi / N, 0.0))
    mu = u / a
    stat = float(np.linalg.norm(phi / N - J.T @ mu))
    comp = float(w_row @ mu)
    return KKTCertificate(problem=space, status="separating", stationarity=stat, complementarity=comp,
                          primal=_primal(mt, c), gap=float("nan"), margin=float(s / norm2), rank=-1,
                          discarded=0.0, multipliers=cons.scatter(mu * N, 0.0), selection=sel)




# ---- many trials ---------------------------------------------------------------------------------------------

#: the convex Att-SVM and the parameter space that go with each parameterization
DEFAULT_NORM = {"prompt": "l2", "combined": "fro", "factored": "nuclear", "diagonal": "l1"}
PARAMETER_SPACE = {"factored": "factored", "diagonal": "diagonal"}


def kkt_table(problems: list[AttentionProblem], directions: np.ndarray, norms: list[str],
              params: dict[str, np.ndarray] | None = None, selection="reached", rank_tol: float | None = RANK_TOL):
    """One row per (trial, problem) with the certificate numbers (a pandas DataFrame).

    problems: one per trial, or a single shared one. directions: (B, d, d) W (or (B, d') prompt vectors p).
    norms: convex problems to certify against. params: factored {"K", "Q"} (B, d, m) or diagonal {"k", "q"}
    (B, d) blocks, certified in parameter space as well. selection: "reached", "opt" or (B, n) indices.
    """
    import pandas as pd

    directions = np.asarray(directions, dtype=np.float64)
    B = directions.shape[0]
    if len(problems) not in (1, B):
        raise ValueError(f"problems: give one shared problem or one per trial ({B}), got {len(problems)}")
    rows = []
    for b in range(B):
        pr = problems[b] if len(problems) > 1 else problems[0]
        sel = selection if isinstance(selection, str) else np.asarray(selection)[b]
        certs = []
        for norm in norms:
            theta = directions[b]
            if norm == "l1" and theta.ndim == 2:
                theta = np.diag(theta)
            certs.append(kkt_certificate(pr, theta, norm, sel, rank_tol=rank_tol))
        if params:
            certs.append(parameter_kkt_certificate(pr, {k: np.asarray(v)[b] for k, v in params.items()}, sel))
        for c in certs:
            rows.append({"trial": b, **c.to_dict()})
    return pd.DataFrame(rows)


def kkt_path(problems: list[AttentionProblem], path: np.ndarray, norms: list[str],
             rank_tol: float | None = RANK_TOL) -> dict[str, np.ndarray]:
    """ε of every recorded direction of a run: norm → (B, R) array (``path``: (B, R, d, d) W, or (B, R, d')
    prompt vectors p), each record certified at its own reached selection; NaN where the direction is not
    finite, inf where it does not separate its selection (ε of :class:`KKTCertificate`)."""
    path = np.asarray(path, dtype=np.float64)
    B, R = path.shape[:2]
    if len(problems) not in (1, B):
        raise ValueError(f"problems: give one shared problem or one per trial ({B}), got {len(problems)}")
    out = {}
    for norm in norms:
        eps = np.full((B, R), np.nan)
        for b in range(B):
            pr = problems[b] if len(problems) > 1 else problems[0]
            for r in range(R):
                theta = path[b, r]
                if not np.all(np.isfinite(theta)) or not np.any(theta):
                    continue
                if norm == "l1" and theta.ndim == 2:
                    theta = np.diag(theta)
                eps[b, r] = kkt_certificate(pr, theta, norm, rank_tol=rank_tol).epsilon
        out[norm] = eps
    return out


def parameter_kkt_path(problems: list[AttentionProblem], params_path: dict[str, np.ndarray]) -> np.ndarray:
    """Parameter-space ε of every record of a run: (B, R), from factored {"K", "Q"} (B, R, d, m) or diagonal
    {"k", "q"} (B, R, d) blocks, each record certified at its own reached selection
    (:func:`parameter_kkt_certificate`); NaN where the parameters are not finite or W(φ) = 0, inf where W(φ)
    does not separate its selection."""
    names = ("K", "Q") if {"K", "Q"} <= set(params_path) else ("k", "q")
    if not set(names) <= set(params_path):
        raise ValueError(f"params_path: give factored {{'K', 'Q'}} or diagonal {{'k', 'q'}} blocks, got "
                         f"{sorted(params_path)}")
    blocks = {k: np.asarray(params_path[k], dtype=np.float64) for k in names}
    B, R = blocks[names[0]].shape[:2]
    if len(problems) not in (1, B):
        raise ValueError(f"problems: give one shared problem or one per trial ({B}), got {len(problems)}")
    eps = np.full((B, R), np.nan)
    with _one_blas_thread():
        for b in range(B):
            pr = problems[b] if len(problems) > 1 else problems[0]
            for r in range(R):
                phi = {k: v[b, r] for k, v in blocks.items()}
                if not all(np.all(np.isfinite(v)) for v in phi.values()):
                    continue
                W = phi[names[0]] @ phi[names[1]].T if names[0] == "K" else phi["k"] * phi["q"]
                if not np.any(W):
                    continue
                eps[b, r] = _parameter_kkt(pr, phi, "reached", None).epsilon
    return eps


__all__ = ["DEFAULT_NORM", "KKTCertificate", "KKT_NORMS", "PARAMETER_SPACES", "RANK_TOL", "kkt_certificate",
           "kkt_norm_variable", "kkt_path", "kkt_table", "parameter_kkt_certificate", "parameter_kkt_path"]

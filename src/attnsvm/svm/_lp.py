"""Entrywise ℓp Att-SVM, 1 ≤ p ≤ ∞, on constraint rows:  minimize ‖θ‖_p  subject to  Aθ ≥ c.

θ is vec W (d² entries) for the attention matrix or the prompt vector p; ‖θ‖_p = (Σ_j |θ_j|^p)^{1/p} is the
entrywise norm (not a Schatten norm). Its dual norm is ‖·‖_q with 1/p + 1/q = 1.

Multipliers are reported, as for every norm, for the *squared* problem min ½‖θ‖_p² s.t. Aθ ≥ c, whose KKT
conditions are

    θ = ∇h(G),  G = Σ_k λ_k A_k,  h(G) = ½‖G‖_q²,  i.e.  θ_j = ‖G‖_q^{2−q} sign(G_j) |G_j|^{q−1},
    λ ≥ 0,  Aθ ≥ c,  λ_k (A_kθ − c_k) = 0,

and weak duality gives ‖θ^mm‖_p ≥ cᵀλ / ‖Aᵀλ‖_q for every λ ≥ 0 (the certificate's lower bound).

Solvers.

* 1 < p < ∞: the conic form min t s.t. Aθ ≥ c, Σ_j r_j = t, (r_j, t, θ_j) ∈ K_pow(1/p) (so that
  |θ_j|^p ≤ r_j t^{p−1} and Σ|θ_j|^p ≤ t^p) is handed to SCS, then *polished* by Newton's method on the KKT
  system restricted to the active constraints: in the dual variables μ (A_S ∇h(A_Sᵀμ) = c_S) for p < 2,
  where ∇²h is bounded, and in the primal–dual pair (θ, μ) for p ≥ 2, where ∇²(½‖θ‖_p²) is bounded. The
  polished point is kept only if its certificate is better; the solution is unique (the norm is strictly
  convex), so the certificate decides.
* p = 1 and p = ∞: linear programs for HiGHS. Their minimizers need not be unique; the solution returned
  is the canonical one of least Euclidean norm among the ℓp-optimal points (a least-distance problem on the
  optimal face, solved exactly by NNLS), so that correlations with it are well defined. The value ‖θ‖_p is
  unique; a direction's optimality is measured without any tie-break by its margin ratio
  (:func:`margin_ratio`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from ._certificate import certificate_rows
from ._constraints import Constraints
from ._euclidean import CERT_TOL_EXACT, solve_least_distance
from ._ldp import least_distance
from ._nuclear import CERT_TOL_SCS
from ._registry import NormSpec, RawSolution, register_family
from ._results import Certificate
from ._status import INACCURATE, INFEASIBLE, OPTIMAL

#: SCS tolerances for the power-cone form (before polishing).
SCS_EPS_LP = 1e-6
SCS_MAX_ITERS_LP = 100_000
#: a constraint enters the polishing active set when its slack is below this (relative to max |c|) or its
#: SCS multiplier above this fraction of the largest one
_ACTIVE_SLACK = 1e-5
_ACTIVE_DUAL = 1e-6
#: relative certificate level at which the least-Euclidean-norm point of an ℓ1/ℓ∞ optimal face is accepted
_FACE_TOL = 1e-8
#: relative slack added to the optimal ℓ1/ℓ∞ value when the least-Euclidean-norm point of the optimal face
#: is sought (HiGHS's value is exact to ~1e−9 relative; the face must not be empty because of rounding)
_FACE_SLACK = 1e-10


def check_p(p: float) -> float:
    """Validate the exponent: 1 ≤ p ≤ ∞ (float('inf') or the string 'inf')."""
    try:
        pf = float(p)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"p: must be a number in [1, inf], got {p!r}") from exc
    if not (pf >= 1.0):  # also rejects NaN
        raise ValueError(f"p: the ℓp Att-SVM needs 1 ≤ p ≤ inf (a norm), got {p!r}")
    return pf


def dual_exponent(p: float) -> float:
    """q with 1/p + 1/q = 1 (q = ∞ for p = 1, q = 1 for p = ∞)."""
    if p == 1.0:
        return float("inf")
    if np.isinf(p):
        return 1.0
    return p / (p - 1.0)


def lp_norm(x: np.ndarray, p: float) -> float:
    """Entrywise ‖x‖_p of an array of any shape, computed with a max-scaling (no overflow for large p)."""
    a = np.abs(np.asarray(x, dtype=np.float64)).ravel()
    if a.size == 0:
        return 0.0
    m = float(a.max())
    if m == 0.0 or np.isinf(p):
        return m
    if p == 1.0:
        return float(a.sum())
    return m * float(np.sum((a / m) ** p) ** (1.0 / p))


def grad_half_sq(G: np.ndarray, q: float) -> np.ndarray:
    """∇(½‖G‖_q²) = ‖G‖_q^{2−q} sign(G) |G|^{q−1} for 1 < q < ∞ (0 at G = 0); scale-stable."""
    N = lp_norm(G, q)
    if N == 0.0:
        return np.zeros_like(G)
    u = np.abs(G) / N
    return N * np.sign(G) * u ** (q - 1.0)


def _hess_half_sq(G: np.ndarray, q: float) -> np.ndarray:
    """∇²(½‖G‖_q²) = (q−1) N^{2−q} diag(|G|^{q−2}) + (2−q) N^{2−2q} s sᵀ with s = sign(G)|G|^{q−1}, N = ‖G‖_q
    (written in u = |G|/N for scale stability). Bounded for q ≥ 2."""
    N = lp_norm(G, q)
    u = np.abs(G) / N
    s = np.sign(G) * u ** (q - 1.0)
    with np.errstate(divide="ignore"):
        diag = (q - 1.0) * u ** (q - 2.0)
    return np.diag(diag) + (2.0 - q) * np.outer(s, s)


def lp_certificate(A: np.ndarray, c: np.ndarray, theta: np.ndarray, lam: np.ndarray, p: float) -> Certificate:
    """The certificate (:class:`~attnsvm.svm.Certificate`) of (θ, λ) for min ½‖θ‖_p² s.t. Aθ ≥ c."""
    return certificate_rows(A, c, theta, lam, lp_norm_name(p, prompt=True))


# ---- 1 < p < ∞: SCS power cones + Newton polish ----------------------------------------------------------


def _scs_power(A: np.ndarray, c: np.ndarray, p: float, eps: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """min t s.t. Aθ ≥ c, Σ r = t, (r_j, t, θ_j) ∈ K_pow(1/p), in SCS's form A x + s = b, s ∈ K.

    x = (θ, r, t); rows: zero cone Σr − t = 0; linear cone Aθ − c ≥ 0; then per j the power-cone triple
    s = (r_j, t, θ_j). Returns (θ, y ≥ 0 multipliers of min ‖θ‖_p, info)."""
    import scs  # lazily: only the ℓp norms need it here

    m, P = A.shape
    nx = 2 * P + 1
    j = np.arange(P)
    rows = [np.zeros(P, int), np.zeros(1, int)]
    cols = [P + j, np.array([2 * P])]
    vals = [np.ones(P), -np.ones(1)]
    Ai, Aj = np.nonzero(A)
    rows.append(1 + Ai)
    cols.append(Aj)
    vals.append(-A[Ai, Aj])
    base = 1 + m
    rows += [base + 3 * j, base + 3 * j + 1, base + 3 * j + 2]
    cols += [P + j, np.full(P, 2 * P), j]
    vals += [-np.ones(P), -np.ones(P), -np.ones(P)]
    M = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(base + 3 * P, nx))
    b = np.zeros(base + 3 * P)
    b[1:1 + m] = -c
    cost = np.zeros(nx)
    cost[2 * P] = 1.0
    solver = scs.SCS({"A": M, "b": b, "c": cost}, {"z": 1, "l": m, "p": [1.0 / p] * P}, eps_abs=eps,
                     eps_rel=eps, max_iters=SCS_MAX_ITERS_LP, verbose=False)
    sol = solver.solve()
    return np.asarray(sol["x"][:P]), np.asarray(sol["y"][1:1 + m]), sol["info"]


def _newton_step(J: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Solve J x = −F by LU, falling back to least squares when J is singular."""
    try:
        x = np.linalg.solve(J, -F)
        if np.all(np.isfinite(x)):
            return x
    except np.linalg.LinAlgError:
        pass
    return np.linalg.lstsq(J, -F, rcond=None)[0]


def _newton_kkt(A: np.ndarray, c: np.ndarray, p: float, S: np.ndarray, theta0: np.ndarray, mu0: np.ndarray,
                iters: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Newton on the KKT system with the constraints S held as equalities; (θ, μ_S) or None."""
    P = A.shape[1]
    AS, cS = A[S], c[S]
    cscale = max(float(np.abs(c).max()), 1e-300)
    q = dual_exponent(p)
    if p < 2.0:
        # dual Newton: F(μ) = A_S ∇h(A_Sᵀμ) − c_S, J = A_S ∇²h A_Sᵀ (∇²h bounded for q > 2)
        mu = np.maximum(mu0, 0.0)
        if not np.any(mu > 0):
            mu = np.full(S.size, 1.0)

        def resid(mu_):
            return AS @ grad_half_sq(AS.T @ mu_, q) - cS

        F = resid(mu)
        for _ in range(iters):
            fn = float(np.linalg.norm(F))
            if fn <= 1e-15 * cscale * np.sqrt(S.size):
                break
            step = _newton_step(AS @ _hess_half_sq(AS.T @ mu, q) @ AS.T, F)
            t = 1.0
            while t > 1e-8:
                Fn = resid(mu + t * step)
                if np.all(np.isfinite(Fn)) and np.linalg.norm(Fn) < (1 - 1e-4 * t) * fn:
                    break
                t *= 0.5
            else:
                break
            mu, F = mu + t * step, Fn
        theta = grad_half_sq(AS.T @ mu, q)
    else:
        # primal–dual Newton on ∇f(θ) − A_Sᵀμ = 0, A_Sθ = c_S with f = ½‖θ‖_p² (∇²f bounded for p ≥ 2)
        theta, mu = theta0.copy(), np.maximum(mu0, 0.0)

        def resid2(th, mu_):
            return np.concatenate([grad_half_sq(th, p) - AS.T @ mu_, AS @ th - cS])

        F = resid2(theta, mu)
        k = S.size
        for _ in range(iters):
            fn = float(np.linalg.norm(F))
            if fn <= 1e-15 * max(cscale, lp_norm(theta, p)) * np.sqrt(P + k):
                break
            if lp_norm(theta, p) == 0.0:
                return None
            K = np.zeros((P + k, P + k))
            K[:P, :P] = _hess_half_sq(theta, p)
            K[:P, P:] = -AS.T
            K[P:, :P] = AS
            step = _newton_step(K, F)
            t = 1.0
            while t > 1e-8:
                Fn = resid2(theta + t * step[:P], mu + t * step[P:])
                if np.all(np.isfinite(Fn)) and np.linalg.norm(Fn) < (1 - 1e-4 * t) * fn:
                    break
                t *= 0.5
            else:
                break
            theta, mu, F = theta + t * step[:P], mu + t * step[P:], Fn
    if not np.all(np.isfinite(theta)) or not np.all(np.isfinite(mu)):
        return None
    return theta, mu


def _polish(A: np.ndarray, c: np.ndarray, p: float, theta0: np.ndarray, lam0: np.ndarray,
            iters: int = 60, rounds: int = 10) -> tuple[np.ndarray, np.ndarray] | None:
    """Primal–dual active-set Newton (see the module docstring); (θ, λ) with λ zero off S, or None.

    S starts from (θ0, λ0) (small slack or non-negligible multiplier); after each Newton solve, constraints
    with a negative multiplier leave S and violated ones enter, until neither happens."""
    m, P = A.shape
    cscale = max(float(np.abs(c).max()), 1e-300)
    lmax = max(float(np.max(lam0)), 1e-300)
    S = np.flatnonzero((A @ theta0 - c <= _ACTIVE_SLACK * cscale) | (lam0 > _ACTIVE_DUAL * lmax))
    theta, lam_full = theta0, np.maximum(lam0, 0.0)
    for _ in range(rounds):
        if S.size == 0:
            return None
        out = _newton_kkt(A, c, p, S, theta, lam_full[S], iters)
        if out is None:
            return None
        theta, mu = out
        lam_full = np.zeros(m)
        lam_full[S] = mu
        neg = S[mu < -1e-12 * max(float(np.abs(mu).max()), 1e-300)]
        viol = np.flatnonzero(A @ theta - c < -1e-12 * cscale)
        viol = np.setdiff1d(viol, S)
        if neg.size == 0 and viol.size == 0:
            return theta, np.maximum(lam_full, 0.0)
        S = np.union1d(np.setdiff1d(S, neg), viol)
        lam_full = np.maximum(lam_full, 0.0)
    return theta, np.maximum(lam_full, 0.0)


def _solve_power(A: np.ndarray, c: np.ndarray, p: float, eps: float) -> RawSolution:
    m, P = A.shape
    theta, y, info = _scs_power(A, c, p, eps)
    st = str(info["status"])
    if "infeasible" in st:
        return RawSolution(INFEASIBLE, None, None, "scs", f"SCS: {st}")
    msg = f"SCS: {st}, {int(info['iter'])} iterations, eps {eps:g}"
    if not np.all(np.isfinite(theta)):
        return RawSolution(INACCURATE, np.full(P, np.nan), np.zeros(m), "scs", msg)
    lam = np.maximum(y, 0.0) * lp_norm(theta, p)  # multipliers of ½‖θ‖² = ‖θ‖ · those of ‖θ‖
    worst = lp_certificate(A, c, theta, lam, p).violation
    pol = _polish(A, c, p, theta, lam)
    if pol is not None and lp_certificate(A, c, pol[0], pol[1], p).violation < worst:
        return RawSolution(OPTIMAL, pol[0], pol[1], "scs+newton", msg + "; Newton-polished on the active set",
                           tolerance=CERT_TOL_EXACT)
    status = OPTIMAL if st == "solved" else INACCURATE
    return RawSolution(status, theta, lam, "scs", msg + "; not polished", tolerance=CERT_TOL_SCS)


# ---- p = 1 and p = ∞: LPs ------------------------------------------------------------------------------------


def _least_distance(A: np.ndarray, c: np.ndarray):
    """min ‖θ‖₂ s.t. Aθ ≥ c by NNLS, then refined on its active rows S = {λ_k > 0}: the minimum-norm solution
    of A_Sθ = c_S (least squares), kept when it is feasible (NNLS alone loses digits when ‖θ‖ is large)."""
    r = least_distance(A, c)
    if r.status != OPTIMAL:
        return r
    S = r.lam > 0
    if S.any():
        th = np.linalg.lstsq(A[S], c[S], rcond=None)[0]
        scale = max(float(np.abs(c).max()), 1e-300)
        if np.all(A @ th - c >= -1e-13 * scale) and np.linalg.norm(th) <= np.linalg.norm(r.theta) * (1 + 1e-9):
            r = type(r)(r.status, th, r.lam, r.farkas)
    return r


def _solve_linear(A: np.ndarray, c: np.ndarray, p: float) -> RawSolution:
    """ℓ1: min Σu s.t. −u ≤ θ ≤ u, Aθ ≥ c;  ℓ∞: min t s.t. −t ≤ θ_j ≤ t, Aθ ≥ c; both with HiGHS. Then the
    least-Euclidean-norm point of the optimal face (exact, NNLS) as the canonical solution."""
    m, P = A.shape
    I = sp.identity(P, format="csr")
    As = sp.csr_matrix(A)
    if np.isinf(p):
        # x = (θ, t): rows −Aθ ≤ −c; θ − t ≤ 0; −θ − t ≤ 0
        one = sp.csr_matrix(np.ones((P, 1)))
        Aub = sp.vstack([sp.hstack([-As, sp.csr_matrix((m, 1))]), sp.hstack([I, -one]), sp.hstack([-I, -one])])
        cost = np.zeros(P + 1)
        cost[P] = 1.0
        bounds = [(None, None)] * P + [(0, None)]
    else:
        # x = (θ, u): −Aθ ≤ −c; θ − u ≤ 0; −θ − u ≤ 0
        Aub = sp.vstack([sp.hstack([-As, sp.csr_matrix((m, P))]), sp.hstack([I, -I]), sp.hstack([-I, -I])])
        cost = np.concatenate([np.zeros(P), np.ones(P)])
        bounds = [(None, None)] * P + [(0, None)] * P
    bub = np.concatenate([-c, np.zeros(2 * P)])
    res = linprog(cost, A_ub=Aub.tocsc(), b_ub=bub, bounds=bounds, method="highs")
    if res.status == 2:
        return RawSolution(INFEASIBLE, None, None, "highs", f"HiGHS: {res.message}")
    if res.status != 0:
        return RawSolution(INACCURATE, np.full(P, np.nan), np.zeros(m), "highs", f"HiGHS: {res.message}")
    theta_lp = np.asarray(res.x[:P])
    val = float(res.fun)
    y = np.maximum(-np.asarray(res.ineqlin.marginals[:m]), 0.0)  # multipliers of min ‖θ‖_p
    lam = y * val
    theta = theta_lp
    msg = f"HiGHS: {res.message}"
    solver = "highs"
    if val > 0:
        # canonical point: min ‖θ‖₂ over the optimal face {Aθ ≥ c, ‖θ‖_p ≤ val(1 + slack)}
        bound = val * (1.0 + _FACE_SLACK)
        if np.isinf(p):
            Af = np.vstack([A, -np.eye(P), np.eye(P)])
            cf = np.concatenate([c, -np.full(2 * P, bound)])
            r = _least_distance(Af, cf)
            face_ok = r.status == OPTIMAL
        else:
            # θ = u − v with u, v ≥ 0 and Σ(u + v) ≤ bound: at the least-norm point u ⊙ v = 0 (shrinking both
            # keeps θ and lowers the norm), so ‖(u, v)‖₂ = ‖θ‖₂ and the face is again a polyhedron for NNLS
            Af = np.vstack([np.hstack([A, -A]), np.eye(2 * P), -np.ones((1, 2 * P))])
            cf = np.concatenate([c, np.zeros(2 * P), [-bound]])
            r = _least_distance(Af, cf)
            face_ok = r.status == OPTIMAL
            if face_ok:
                r = type(r)(r.status, r.theta[:P] - r.theta[P:], r.lam, r.farkas)
        if face_ok and lp_certificate(A, c, r.theta, lam, p).confirms(_FACE_TOL):
            theta = r.theta
            solver = "highs+nnls"
            msg += "; least-Euclidean-norm point of the optimal face"
        else:
            msg += "; the least-Euclidean-norm point of the optimal face was not certified: an LP vertex is returned"
    return RawSolution(OPTIMAL, theta, lam, solver, msg, tolerance=CERT_TOL_EXACT)


def solve_lp_rows(A: np.ndarray, c: np.ndarray, p: float, eps: float = SCS_EPS_LP) -> RawSolution:
    """min ‖θ‖_p s.t. Aθ ≥ c for rows A (m, P) and c (m,) ≥ 0, 1 ≤ p ≤ ∞ (see the module docstring).

    Returns θ and the multipliers λ ≥ 0 of ½‖θ‖_p², uncertified (:func:`attnsvm.svm.solve_svm` certifies);
    ``eps``: SCS tolerance of the power-cone stage (1 < p < ∞) before polishing."""
    p = check_p(p)
    A = np.asarray(A, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    m, P = A.shape
    if m == 0 or not np.any(c > 0):
        return RawSolution(OPTIMAL, np.zeros(P), np.zeros(m), "trivial",
                           "θ = 0 is optimal (no positive margin to meet)", tolerance=CERT_TOL_EXACT)
    if p == 1.0 or np.isinf(p):
        return _solve_linear(A, c, p)
    return _solve_power(A, c, p, eps)


def solve_v_svm_lp(problem, selection, p: float):
    """ℓp hard-margin SVM of the selected tokens: min ‖v‖_p s.t. Y_i vᵀ x_{iα_i} ≥ 1 (the head's max-margin
    problem of ℓp-JointGD), as a :class:`~attnsvm.svm.VSVMResult` with its certificate (1 ≤ p ≤ ∞)."""
    from ._constraints import check_selection
    from ._ldp import farkas_lp
    from ._results import NO_CERTIFICATE
    from ._vsvm import VSVMResult

    sel = check_selection(problem, selection)
    A = problem.Y[:, None] * problem.X[np.arange(problem.n), sel]
    c = np.ones(problem.n)
    raw = solve_lp_rows(A, c, p)
    if raw.status == INFEASIBLE or raw.theta is None or not np.all(np.isfinite(raw.theta)):
        return VSVMResult(INFEASIBLE if raw.status == INFEASIBLE else INACCURATE, np.full(problem.d, np.nan),
                          float("inf"), np.zeros(problem.n), np.full(problem.n, np.nan), (), NO_CERTIFICATE,
                          sel, farkas_lp(A, c) if raw.status == INFEASIBLE else None)
    cert = lp_certificate(A, c, raw.theta, raw.lam, p)
    ok = cert.confirms(raw.tolerance or CERT_TOL_EXACT)
    margin = A @ raw.theta
    support = tuple(int(i) for i in np.flatnonzero(margin - 1.0 <= 1e-6))
    return VSVMResult(OPTIMAL if ok and raw.status == OPTIMAL else INACCURATE, raw.theta, lp_norm(raw.theta, p),
                      raw.lam, margin, support, cert, sel)


def margin_ratio(A: np.ndarray, c: np.ndarray, theta: np.ndarray, p: float, value: float) -> float:
    """Fraction of the optimal ℓp margin that the direction of θ attains: (min_k A_kθ/c_k)/‖θ‖_p · value,
    over the constraints with c_k > 0; 1 exactly when θ/‖θ‖_p is an optimal direction (tie-break free)."""
    pos = c > 0
    nrm = lp_norm(theta, p)
    if nrm == 0 or not np.any(pos):
        return float("nan")
    return float(np.min((A[pos] @ theta) / c[pos]) / nrm * value)


# ---- registration: the parametric families "lp:P" (entrywise on W) and "lp-prompt:P" (on p) -------------------


def lp_norm_name(p: float, prompt: bool = False) -> str:
    """The registry name of the entrywise ℓp norm: ``lp:1.75``, ``lp:3``, ``lp:inf`` (on W) or
    ``lp-prompt:P`` (on the prompt vector p)."""
    pf = check_p(p)
    arg = "inf" if np.isinf(pf) else f"{pf:g}"
    return ("lp-prompt:" if prompt else "lp:") + arg


def _solver(p: float):
    def solve(cons: Constraints, options: Mapping[str, Any]) -> RawSolution:
        if p == 2.0:
            return solve_least_distance(cons, options)  # exact: ℓ2 entrywise is the Euclidean norm
        return solve_lp_rows(cons.rows, cons.rhs, p, float(options.get("eps", SCS_EPS_LP)))
    return solve


def _family(prompt: bool):
    def factory(arg: str) -> NormSpec:
        p = check_p(arg)
        q = dual_exponent(p)
        where = "the prompt vector p" if prompt else "W (entrywise)"
        how = ("LP by HiGHS, least-Euclidean-norm optimal point" if p == 1.0 or np.isinf(p)
               else "exact by NNLS" if p == 2.0 else "SCS power cones + Newton polish")
        return NormSpec(name=lp_norm_name(p, prompt), variable="prompt" if prompt else "matrix",
                        value=lambda x: lp_norm(x, p), dual=lambda x: lp_norm(x, q), solve=_solver(p),
                        tolerance=CERT_TOL_EXACT, euclidean=False,
                        summary=f"ℓ{arg} norm of {where}, {how}", options=("eps",))
    return factory


register_family("lp", _family(False))
register_family("lp-prompt", _family(True))

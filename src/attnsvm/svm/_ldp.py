"""Exact least-distance machinery shared by the Euclidean norms (fro, l2), the batch solver, the v-SVM and
the multi-token equivalence, and the Farkas certificates of infeasibility (Lawson & Hanson, *Solving Least
Squares Problems*, ch. 23)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog, nnls

from ._status import INFEASIBLE, OPTIMAL

#: 1 − cᵀu below this in the least-distance form means ‖θ‖ > 1e6: the problem is (numerically) infeasible,
#: and a Farkas certificate is sought by LP to decide.
INFEASIBLE_DEN = 1e-12


#: a Farkas certificate λ is accepted when ‖Σλ_k A_k‖ ≤ FARKAS_RTOL · ‖Σλ_k |A_k|‖ (the terms cancel up to
#: rounding, not merely because they are small)
FARKAS_RTOL = 1e-9


@dataclass(frozen=True)
class LDP:
    status: str  # OPTIMAL | INFEASIBLE (1 − cᵀu ≤ INFEASIBLE_DEN: ‖θ‖ > 1e6 or no solution)
    theta: np.ndarray
    lam: np.ndarray
    farkas: np.ndarray | None
    den: float = 1.0  # 1 − cᵀu = 1/(1 + ‖θ‖²) at the NNLS optimum
    u: np.ndarray | None = None


def least_distance(A: np.ndarray, c: np.ndarray) -> LDP:
    """min ‖θ‖₂ s.t. Aθ ≥ c, exactly (Lawson–Hanson LDP through NNLS).

    NNLS: u = argmin_{u≥0} ‖E u − e‖ with E = [Aᵀ; cᵀ] and e the last unit vector. At the optimum
    ‖Eu − e‖² = 1 − cᵀu; if it is > 0 then θ = Aᵀu / (1 − cᵀu) and the KKT multipliers of ½‖θ‖² are
    λ = u / (1 − cᵀu); if it is 0 then Aᵀu = 0, cᵀu = 1 is a Farkas certificate of infeasibility.
    """
    m, p = A.shape
    if m == 0 or not np.any(c > 0):
        # θ = 0 satisfies every ⟨A_k, θ⟩ ≥ 0.
        return LDP(OPTIMAL, np.zeros(p), np.zeros(m), None)
    E = np.empty((p + 1, m))
    E[:p] = A.T
    E[p] = c
    e = np.zeros(p + 1)
    e[p] = 1.0
    # E is passed as is: compressing it first by QR when p + 1 > m was measured slower (QR cost).
    u, _ = nnls(E, e, maxiter=max(50 * m, 1000))
    den = 1.0 - float(c @ u)
    if den <= INFEASIBLE_DEN:
        return LDP(INFEASIBLE, np.full(p, np.nan), np.zeros(m), u / max(float(c @ u), 1e-300), den, u)
    lam = u / den
    return LDP(OPTIMAL, A.T @ lam, lam, None, den, u)


def farkas_lp(A: np.ndarray, c: np.ndarray) -> np.ndarray | None:
    """λ ≥ 0 with Aᵀλ = 0 and cᵀλ = 1 (minimal Σλ), by HiGHS; None if there is none (problem feasible)."""
    m, p = A.shape
    A_eq = np.vstack([A.T, c[None, :]])
    b_eq = np.zeros(p + 1)
    b_eq[p] = 1.0
    res = linprog(np.ones(m), A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status != 0:
        return None
    lam = np.maximum(np.asarray(res.x), 0.0)
    return lam if is_farkas(A, c, lam) else None


def is_farkas(A: np.ndarray, c: np.ndarray, lam: np.ndarray) -> bool:
    """λ ≥ 0, cᵀλ > 0 and Σλ_k A_k = 0 up to rounding: ‖Aᵀλ‖ ≤ FARKAS_RTOL ‖|A|ᵀλ‖ (relative to the size
    of the terms that cancel, so the test does not depend on the scale of A)."""
    if lam.size == 0 or np.any(lam < 0) or not float(c @ lam) > 0:
        return False
    return bool(np.linalg.norm(A.T @ lam) <= FARKAS_RTOL * np.linalg.norm(np.abs(A).T @ lam))


def zero_row_farkas(A: np.ndarray, c: np.ndarray) -> np.ndarray | None:
    """A constraint 0 ≥ c_k > 0 (e.g. a selected token duplicated in its sequence) is its own certificate.

    Only rows that are exactly zero count: a row that is merely small is a feasible constraint with a
    large solution, for the solver to decide."""
    zero = np.all(A == 0, axis=1) & (c > 0) if A.size else np.zeros(0, bool)
    if not zero.any():
        return None
    lam = np.zeros(A.shape[0])
    k = int(np.flatnonzero(zero)[0])
    lam[k] = 1.0 / c[k]
    return lam

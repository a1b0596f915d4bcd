"""P3's SVM-equivalence for multi-token selections (nonlinear heads)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..problem import AttentionProblem
from ._constraints import pow2_scale
from ._ldp import farkas_lp, least_distance
from ._measures import correlation
from ._status import INFEASIBLE, OPTIMAL, SOLVER_ERROR


@dataclass(frozen=True)
class MultiTokenSVM:
    """P3's SVM-equivalence for multi-token selections .

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
        An = Ain @ N
        sigma = pow2_scale(An)  # unit scale, undone exactly: W_dir = N θ'/σ
        An = An / sigma
        r = least_distance(An, np.ones(An.shape[0]))
        status = r.status
        if status == INFEASIBLE and farkas_lp(An, np.ones(An.shape[0])) is None:
            # no verified Farkas certificate: feasible with a huge solution, or the solver failed
            status = OPTIMAL if r.den > 0 else SOLVER_ERROR
            theta = An.T @ (r.u / r.den) if r.den > 0 else None
        else:
            theta = r.theta
        w_dir = N @ theta / sigma if status == OPTIMAL else np.full(d * d, np.nan)
    else:
        status, w_dir = OPTIMAL, np.zeros(d * d)
    W_fin, W_dir = w_fin.reshape(d, d), w_dir.reshape(d, d)
    if W is not None and status == OPTIMAL and np.linalg.norm(W_dir) > 0:
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

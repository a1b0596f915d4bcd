"""Token optimality (SPEC §3, P1 Def. 2, P3): scores, optimal tokens, support tokens, local optimality.

* scores γ_it = Y_i vᵀx_it and opt_i = argmax_t γ_it with ties reported (``problem.optimal_tokens``);
* support tokens of a selection α: T_i = {t ≠ α_i : ⟨A_it, θ^mm⟩ − c_i ≤ tol} with θ^mm the Att-SVM(α)
  solution and the absolute tolerance ``tol`` (default ``svm.SUPPORT_TOL`` = 1e−6; margins are 1);
* α is *locally optimal* when Att-SVM(α) is feasible and γ_iα_i > γ_it for every t ∈ T_i and every i;
  the strict inequality uses the tie tolerance of ``problem.TIE_TOL`` (γ_iα − γ_it > 1e−9·(1 + max|γ_i|));
* the selection reached by trained weights: argmax_t of the logits x_itᵀ W z_i (or x_itᵀ K p);
* membership of a W in the cone {W : ‖W‖ ≥ R, corr(W, θ^mm) ≥ 1 − μ} around a solution (P1, P3).

The SVM norm of the test defaults to ``l2`` (p^mm) for prompt problems and ``fro`` (W^mm) otherwise.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .problem import TIE_TOL, AttentionProblem, OptimalTokens
from .svm import (
    INFEASIBLE,
    SUPPORT_TOL,
    SVMResult,
    build_constraints,
    check_norm,
    check_selection,
    correlation,
    logits,
    solve_svm,
    solve_svm_batch,
)

#: default cap on the number of candidate selections :func:`enumerate_locally_optimal` will solve
MAX_SELECTIONS = 20_000


def scores(problem: AttentionProblem) -> np.ndarray:
    """γ_it = Y_i vᵀx_it (n, T), −inf on padding."""
    return problem.scores()


def optimal_tokens(problem: AttentionProblem, tol: float = TIE_TOL) -> OptimalTokens:
    """opt_i = argmax_t γ_it with every tied maximiser reported (``tied``), see ``problem.optimal_tokens``."""
    return problem.optimal_tokens(tol=tol)


def default_norm(problem: AttentionProblem) -> str:
    """The norm of the local-optimality test: l2 (prompt p, P1) or Frobenius (W, P3)."""
    return "l2" if problem.kind == "prompt" else "fro"


def support_tokens(result: SVMResult) -> tuple[tuple[int, ...], ...]:
    """T_i of a solved Att-SVM (tolerance: the ``tol`` the result was solved with)."""
    return result.support_tokens


@dataclass(frozen=True)
class LocalOptimality:
    """Outcome of the local-optimality test of a selection α (SPEC §3)."""

    locally_optimal: bool
    feasible: bool
    globally_optimal: bool  # α_i is a maximiser of γ_i for every i (ties allowed)
    violations: tuple[tuple[int, int], ...]  # (i, t): support token t with γ_it ≥ γ_iα_i
    support_tokens: tuple[tuple[int, ...], ...]
    result: SVMResult

    @property
    def value(self) -> float:
        return self.result.value

    @property
    def margin(self) -> float:
        """Geometric margin 1/‖θ^mm‖ of the selection (0 if infeasible)."""
        return 1.0 / self.result.value if np.isfinite(self.result.value) and self.result.value > 0 else 0.0


def _strictly_better(problem: AttentionProblem, sel: np.ndarray) -> np.ndarray:
    """(n, T) True where γ_iα_i > γ_it beyond the tie tolerance."""
    g = problem.scores()
    gs = g[np.arange(problem.n), sel]
    scale = 1.0 + np.max(np.where(problem.mask, np.abs(g), 0.0), axis=1)
    return (gs[:, None] - g) > TIE_TOL * scale[:, None]


def is_locally_optimal(problem: AttentionProblem, selection, norm: str | None = None,
                       tol: float = SUPPORT_TOL, result: SVMResult | None = None) -> LocalOptimality:
    """SPEC §3: α is locally optimal iff Att-SVM(α) is feasible and γ_iα_i > γ_it for all t ∈ T_i, all i.

    ``result`` may pass an already solved Att-SVM(α) (its norm is then used).
    """
    norm = default_norm(problem) if norm is None else check_norm(norm)
    sel = check_selection(problem, selection)
    if result is None:
        result = solve_svm(problem, sel, norm, tol=tol)
    elif not np.array_equal(result.selection, sel):
        raise ValueError("result: it was solved for another selection than the one given")
    top = problem.optimal_tokens()
    glob = bool(np.all(top.tied[np.arange(problem.n), sel]))
    if result.status == INFEASIBLE:
        return LocalOptimality(False, False, glob, (), result.support_tokens, result)
    bad = result.active & ~_strictly_better(problem, sel)
    viol = tuple((int(i), int(t)) for i, t in np.argwhere(bad))
    return LocalOptimality(not viol, True, glob, viol, result.support_tokens, result)


@dataclass(frozen=True)
class LocalSelection:
    selection: np.ndarray
    value: float  # ‖θ^mm_α‖
    margin: float  # 1/‖θ^mm_α‖
    globally_optimal: bool


def candidate_tokens(problem: AttentionProblem, norm: str | None = None) -> list[np.ndarray]:
    """Tokens that can be part of a feasible selection: α_i = t survives when sample i's own constraints
    are feasible (else Att-SVM(α) is infeasible for every α with α_i = t). Checked by one exact solve of
    the single-sample problem per (i, t) — batched over t for the Frobenius and ℓ2 norms."""
    norm = default_norm(problem) if norm is None else check_norm(norm)
    out = []
    for i in range(problem.n):  # per sample: the single-sample problems of sample i share one shape
        sub = AttentionProblem(X=problem.X[i:i + 1], Y=problem.Y[i:i + 1], v=problem.v,
                               Z=None if problem.Z is None else problem.Z[i:i + 1],
                               query_index=problem.query_index, key_matrix=problem.key_matrix,
                               mask=problem.mask[i:i + 1])
        real = np.flatnonzero(problem.mask[i])
        if norm in ("fro", "l2"):
            batch = solve_svm_batch([sub] * real.size, real[:, None], norm=norm)
            ok = batch.status != INFEASIBLE
        else:
            ok = np.array([solve_svm(sub, [t], norm).status != INFEASIBLE for t in real])
        out.append(real[ok])
    return out


def enumerate_locally_optimal(problem: AttentionProblem, norm: str | None = None,
                              max_selections: int = MAX_SELECTIONS, tol: float = SUPPORT_TOL
                              ) -> list[LocalSelection]:
    """Every locally-optimal selection of a small problem, best margin first.

    The T^n selections are pruned to the product of the per-sample feasible tokens
    (:func:`candidate_tokens`); each remaining α is solved (batched for fro/l2) and tested exactly.
    Raises ValueError when more than ``max_selections`` candidates remain, because each one costs a solve.
    """
    norm = default_norm(problem) if norm is None else check_norm(norm)
    cands = candidate_tokens(problem, norm)
    total = int(np.prod([c.size for c in cands], dtype=object))
    if total > max_selections:
        raise ValueError(
            f"max_selections: {total} candidate selections remain after pruning (T^n = "
            f"{problem.T}^{problem.n} before), above max_selections = {max_selections}; enumerating them "
            "solves one Att-SVM each. Raise max_selections or test selections with is_locally_optimal")
    if total == 0:
        return []
    sels = np.array(list(itertools.product(*cands)), dtype=np.int64).reshape(total, problem.n)
    found = []
    if norm in ("fro", "l2"):
        batch = solve_svm_batch([problem] * total, sels, norm=norm, tol=tol)
        top = problem.optimal_tokens()
        for k in range(total):
            if batch.status[k] == INFEASIBLE:
                continue
            bad = batch.active[k] & ~_strictly_better(problem, sels[k])
            if not bad.any():
                found.append(LocalSelection(sels[k], float(batch.value[k]), 1.0 / float(batch.value[k]),
                                            bool(np.all(top.tied[np.arange(problem.n), sels[k]]))))
    else:
        for sel in sels:
            lo = is_locally_optimal(problem, sel, norm, tol)
            if lo.locally_optimal:
                found.append(LocalSelection(sel, lo.value, lo.margin, lo.globally_optimal))
    return sorted(found, key=lambda s: s.value)


def selection_from_W(problem: AttentionProblem, W: np.ndarray) -> np.ndarray:
    """The selection reached by trained weights: α_i = argmax_t a_it (argmax of the attention), with W
    the d×d attention matrix or, for a prompt problem, the prompt vector p."""
    return np.argmax(logits(problem, W), axis=1).astype(np.int64)


@dataclass(frozen=True)
class ConeMembership:
    inside: bool
    correlation: float  # corr(θ, θ^mm)
    norm: float  # ‖θ‖_F
    mu: float
    R: float


def cone_membership(theta: np.ndarray, solution: np.ndarray | SVMResult, mu: float = 0.1, R: float = 0.0
                    ) -> ConeMembership:
    """Is θ in the cone C_{μ,R} = {θ : ‖θ‖_F ≥ R, corr(θ, θ^mm) ≥ 1 − μ} around a solution (P3 Thm. local
    convergence; P1's cone around p^mm)?"""
    sol = solution.solution if isinstance(solution, SVMResult) else np.asarray(solution, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    if not 0 <= mu <= 2:
        raise ValueError(f"mu: must lie in [0, 2], got {mu}")
    corr = correlation(theta, sol)
    nrm = float(np.linalg.norm(theta))
    return ConeMembership(bool(np.isfinite(corr) and corr >= 1 - mu and nrm >= R), corr, nrm, mu, R)


def selection_margins(problem: AttentionProblem, theta: np.ndarray, selection, norm: str | None = None
                      ) -> np.ndarray:
    """⟨A_it, θ⟩ for the constraints of a selection (n, T), NaN off the constraints."""
    norm = default_norm(problem) if norm is None else check_norm(norm)
    cons = build_constraints(problem, selection, norm)
    return cons.scatter(cons.rows @ cons.solution_to_vector(np.asarray(theta, dtype=np.float64)))

"""Token optimality (docs/concepts/local-optimality.md; P1 Def. 2, P3): scores, optimal tokens, support
tokens, local optimality.

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

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .problem import TIE_TOL, AttentionProblem, OptimalTokens
from .svm import (
    INFEASIBLE,
    OPTIMAL,
    SOLUTION_PRESENT,
    SUPPORT_TOL,
    SVMResult,
    build_constraints,
    check_norm,
    check_selection,
    check_tol,
    correlation,
    logits,
    pow2_scale,
    rows_feasible,
    solve_svm,
    solve_svm_batch,
)

#: default cap on the number of candidate selections a search examines: the exact reduced test of fro / l2
#: decides ~10⁴ selections per CPU-second; the other norms need one conic solve per selection
MAX_SELECTIONS = 2_000_000
MAX_SELECTIONS_SOLVED = 20_000


def default_max_selections(norm: str) -> int:
    return MAX_SELECTIONS if norm in ("fro", "l2") else MAX_SELECTIONS_SOLVED


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
    """Outcome of the local-optimality test of a selection α (docs/concepts/local-optimality.md)."""

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
    def status(self) -> str:
        """Status of the Att-SVM(α) solve (``attnsvm.svm`` constants)."""
        return self.result.status

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
    """α is locally optimal iff Att-SVM(α) is feasible and γ_iα_i > γ_it for all t ∈ T_i, all i.

    ``result`` may pass an already solved Att-SVM(α) (its norm is then used). Only a certified (OPTIMAL)
    solution makes α locally optimal; ``feasible`` is True when a solution is present (OPTIMAL or INACCURATE),
    and ``status`` says which.
    """
    norm = default_norm(problem) if norm is None else check_norm(norm)
    sel = check_selection(problem, selection)
    if result is None:
        result = solve_svm(problem, sel, norm, tol=tol)
    elif not np.array_equal(result.selection, sel):
        raise ValueError("result: it was solved for another selection than the one given")
    top = problem.optimal_tokens()
    glob = bool(np.all(top.tied[np.arange(problem.n), sel]))
    if result.status not in SOLUTION_PRESENT:
        return LocalOptimality(False, False, glob, (), result.support_tokens, result)
    bad = result.active & ~_strictly_better(problem, sel)
    viol = tuple((int(i), int(t)) for i, t in np.argwhere(bad))
    # only a certified solution certifies: an inaccurate one may have the wrong support tokens
    return LocalOptimality(not viol and result.status == OPTIMAL, True, glob, viol, result.support_tokens, result)


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


@dataclass(frozen=True)
class SearchStats:
    """What :func:`search_locally_optimal` did.

    candidates: per-sample number of tokens that can be part of a feasible selection; total: selections in
    their product (before prefix pruning); pruned: selections removed because a prefix of theirs is already
    infeasible; screened: selections decided by the exact reduced test (Frobenius / ℓ2); solved: full
    Att-SVM solves (certification of the locally-optimal ones, undecided screens, other norms); seconds.
    """

    candidates: tuple[int, ...]
    total: int
    pruned: int
    screened: int
    solved: int
    seconds: float


def count_candidates(problem: AttentionProblem, norm: str | None = None) -> tuple[list[np.ndarray], int]:
    """(per-sample candidate tokens, number of selections in their product)."""
    cands = candidate_tokens(problem, norm)
    return cands, int(np.prod([c.size for c in cands], dtype=object))


def estimate_search(problem: AttentionProblem, norm: str | None = None) -> str:
    """One line: how many selections a search would examine, and a rough time (before any allocation)."""
    norm = default_norm(problem) if norm is None else check_norm(norm)
    cands, total = count_candidates(problem, norm)
    rate = _RATE.get(norm, _RATE["other"])
    return (f"{total} candidate selections (per-sample candidates {[c.size for c in cands]}, T^n = "
            f"{problem.T}^{problem.n} = {problem.T ** problem.n}); at ~{rate:g} selections/s for {norm!r} about "
            f"{total / rate:.3g} s; memory bounded by chunks of {_chunk_size(problem)} selections "
            f"(~{_chunk_bytes(problem) / 2**20:.0f} MB)")


#: rough throughput of the search on one core (selections per second), for the estimate only
_RATE = {"fro": 10000.0, "l2": 10000.0, "other": 100.0}
#: memory budget of one chunk of the reduced test (bytes)
_CHUNK_BYTES = 64 * 2**20


def _chunk_size(problem: AttentionProblem) -> int:
    m = problem.n * problem.T
    return int(max(16, min(8192, _CHUNK_BYTES // (8 * m * m * 6))))


def _chunk_bytes(problem: AttentionProblem) -> int:
    m = problem.n * problem.T
    return _chunk_size(problem) * 8 * m * m * 6


def _coupled(problem: AttentionProblem, norm: str) -> bool:
    """Whether joint feasibility can fail although every sample is feasible alone. For the matrix norms
    the constraints of sample i involve W only through u_i = W z_i; when the queries are linearly
    independent any (u_i) is some W z_i, so per-sample feasibility (the candidate tokens) is exact."""
    if norm in ("fro", "nuclear"):
        Zq = problem.queries
        return bool(np.linalg.matrix_rank(Zq) < problem.n)
    return True


def _sample_rows(problem: AttentionProblem, norm: str, cands: list[np.ndarray]) -> dict[tuple[int, int], np.ndarray]:
    """The constraint rows of sample i when it selects t, for every candidate (i, t) (built once)."""
    out = {}
    for i, ci in enumerate(cands):
        sub = AttentionProblem(X=problem.X[i:i + 1], Y=problem.Y[i:i + 1], v=problem.v,
                               Z=None if problem.Z is None else problem.Z[i:i + 1],
                               query_index=problem.query_index, key_matrix=problem.key_matrix,
                               mask=problem.mask[i:i + 1])
        for t in ci:
            out[(i, int(t))] = build_constraints(sub, [int(t)], norm).rows
    return out


def _selection_chunks(problem: AttentionProblem, norm: str, cands: list[np.ndarray], chunk: int,
                      stats: dict) -> Iterator[np.ndarray]:
    """Stream the feasible candidate selections in chunks of at most ``chunk`` rows (bounded memory)."""
    n = problem.n
    sizes = [c.size for c in cands]
    total = int(np.prod(sizes, dtype=object))
    if total == 0:
        return
    if not _coupled(problem, norm):
        # every product selection is feasible: unrank flat indices chunk by chunk
        for start in range(0, total, chunk):
            idx = np.arange(start, min(total, start + chunk), dtype=np.int64)
            digits = np.unravel_index(idx, sizes)
            yield np.stack([cands[i][digits[i]] for i in range(n)], axis=1)
        return
    # depth-first over samples; a prefix whose constraints are infeasible has no feasible extension
    rows = _sample_rows(problem, norm, cands)
    buf: list[tuple[int, ...]] = []
    below = [int(np.prod(sizes[k + 1:], dtype=object)) for k in range(n)]
    stack: list[tuple[int, ...]] = [()]
    while stack:
        prefix = stack.pop()
        k = len(prefix)
        if k == n:
            buf.append(prefix)
            if len(buf) >= chunk:
                yield np.array(buf, dtype=np.int64)
                buf = []
            continue
        for t in cands[k][::-1]:
            ext = prefix + (int(t),)
            # the constraints of samples 0 … k under the prefix: infeasible only with a verified Farkas
            # certificate (an undecided case counts as feasible, so nothing is pruned wrongly)
            A = np.vstack([rows[(i, a)] for i, a in enumerate(ext)])
            if k == 0 or rows_feasible(A, np.ones(A.shape[0])) is not False:
                stack.append(ext)
            else:
                stats["pruned"] += below[k]
                stats["done"] += below[k]
    if buf:
        yield np.array(buf, dtype=np.int64)


class _ReducedTest:
    """The exact local-optimality test of many selections at once, for the Euclidean norms (fro, l2).

    Let L_i(α) be the tokens of sequence i strictly worse than α_i and H_i(α) the others (t ≠ α_i). With
    θ_L the min-norm solution of the constraints of L only: α is locally optimal iff every H constraint has
    ⟨A_it, θ_L⟩ − 1 > tol. (If so, θ_L is feasible, hence the Att-SVM solution, with support in L; conversely,
    at a locally-optimal α the H constraints are inactive, and dropping inactive constraints keeps the
    solution.) θ_L is found in the dual, min ½λᵀKλ − 1ᵀλ over λ ≥ 0 on the L rows, K the Gram matrix of
    the rows, by a batched primal–dual active-set method whose fixed point is an exact KKT point. K comes
    from one precomputed tensor Q[i,t,j,s] = ⟨x_it, x_js⟩⟨z_i, z_j⟩ (⟨Kᵀx_it, Kᵀx_js⟩ for l2), so nothing of
    size d² is formed per selection. Selections near the decision threshold, or where the method does not
    converge, are left undecided (the caller solves them exactly).
    """

    def __init__(self, problem: AttentionProblem, norm: str, tol: float) -> None:
        mask = problem.mask
        if norm == "l2":
            Xt = np.where(mask[..., None], problem.prompt_tokens(), 0.0)
            Xt = Xt / pow2_scale(Xt)
            self.Q = np.einsum("itd,jsd->itjs", Xt, Xt)
        else:
            Xt = np.where(mask[..., None], problem.X, 0.0)
            Xt = Xt / pow2_scale(Xt)
            Zq = problem.queries / pow2_scale(problem.queries)
            self.Q = np.einsum("itd,jsd->itjs", Xt, Xt) * (Zq @ Zq.T)[:, None, :, None]
        self.n, self.T = mask.shape
        n, T = self.n, self.T
        # blocks KB[i, j, a, b, t, s] = ⟨x_ia − x_it, x_jb − x_js⟩⟨z_i, z_j⟩: the Gram matrix of a selection α
        # is then one gather KB[i, j, α_i, α_j] (n²T⁴ numbers; built only when that is small)
        self.KB = None
        if n * n * T**4 <= 4_000_000:
            Qp = self.Q.transpose(0, 2, 1, 3)  # Qp[i, j, a, b] = Q[i, a, j, b]
            self.KB = (Qp[:, :, :, :, None, None] - Qp[:, :, :, None, None, :]
                       - Qp.transpose(0, 1, 3, 2)[:, :, None, :, :, None] + Qp[:, :, None, None, :, :])
        self.mask = mask
        self.tol = tol
        g = problem.scores()
        self.g = np.where(mask, g, -np.inf)
        self.tie = TIE_TOL * (1.0 + np.max(np.where(mask, np.abs(g), 0.0), axis=1))

    def gram(self, sel: np.ndarray) -> np.ndarray:
        """K[b, (i,t), (j,s)] = ⟨D_it, D_js⟩⟨z_i, z_j⟩ with D_it = x_iα_i − x_it (B, nT, nT)."""
        n, T, Q = self.n, self.T, self.Q
        ii = np.arange(n)
        if self.KB is not None:
            Kb = self.KB[ii[:, None], ii[None, :], sel[:, :, None], sel[:, None, :]]  # (B, n, n, T, T)
            return Kb.transpose(0, 1, 3, 2, 4).reshape(sel.shape[0], n * T, n * T)
        Qa = Q[ii[None, :], sel]  # (B, n, n, T): Q[i, α_i, j, s]
        Qaa = np.take_along_axis(Qa, sel[:, None, :, None], axis=3)[..., 0]  # (B, n, n): Q[i, α_i, j, α_j]
        Qta = np.moveaxis(Q[:, :, ii[None, :], sel], 2, 0)  # (B, n, T, n): Q[i, t, j, α_j]
        K = (Qaa[:, :, None, :, None] - Qa[:, :, None, :, :] - Qta[:, :, :, :, None] + Q[None])
        return K.reshape(sel.shape[0], n * T, n * T)

    def decide(self, sel: np.ndarray, iters: int = 60) -> np.ndarray:
        """(B,) int8: 1 locally optimal, 0 not, −1 undecided."""
        B = sel.shape[0]
        n, T = self.n, self.T
        ii = np.arange(n)
        gs = self.g[ii[None, :], sel]  # (B, n)
        strictly = (gs[:, :, None] - self.g[None]) > self.tie[None, :, None]
        real = np.broadcast_to(self.mask, (B, n, T)).copy()
        real[np.arange(B)[:, None], ii[None, :], sel] = False
        L = (real & strictly).reshape(B, n * T)
        H = (real & ~strictly).reshape(B, n * T)
        K = self.gram(sel)
        # decided per size of the L set (the reduced problems of one size are solved as one batch)
        out = np.full(B, -1, dtype=np.int8)
        mL = L.sum(axis=1)
        # no L row: θ_L = 0 meets no H constraint (every margin 0 < 1)
        out[(mL == 0) & H.any(axis=1)] = 0
        out[(mL == 0) & ~H.any(axis=1)] = 1
        order = np.argsort(~L, axis=1, kind="stable")  # L rows first, in their natural order
        for size in np.unique(mL[mL > 0]):
            b = np.flatnonzero(mL == size)
            idx = order[b, :size]  # (Bb, size) the L rows
            Kc = np.take_along_axis(K[b], idx[:, None, :], axis=2)  # (Bb, m, size): columns of the L rows
            KLL = np.take_along_axis(Kc, idx[:, :, None], axis=1)  # (Bb, size, size)
            lam, ok = _pdas(KLL, iters)
            if not ok.any():
                continue
            bo = b[ok]
            sv = np.einsum("bkl,bl->bk", Kc[ok], lam[ok])  # margins ⟨A_k, θ_L⟩ of every row
            resid = np.abs(np.minimum(np.take_along_axis(sv, idx[ok], axis=1) - 1.0, 0.0)).max(axis=1)
            h = np.where(H[bo], sv - 1.0, np.inf).min(axis=1, initial=np.inf)
            gap = 1e-7 * (1.0 + lam[ok].max(axis=1))
            verdict = np.where(h > self.tol + gap, 1, np.where(h < self.tol - gap, 0, -1)).astype(np.int8)
            verdict[resid > 1e-7] = -1
            out[bo] = verdict
        return out


def _pdas(K: np.ndarray, iters: int) -> tuple[np.ndarray, np.ndarray]:
    """min ½λᵀKλ − 1ᵀλ over λ ≥ 0 for a batch of Gram matrices K (B, m, m), by the primal–dual active-set
    method: free set F, solve K_FF λ_F = 1, then F ← {λ_k > 0 in F} ∪ {(Kλ)_k < 1 outside F}. A fixed point
    satisfies the KKT conditions exactly (λ ≥ 0, Kλ ≥ 1, complementarity). Returns (λ, converged)."""
    B, m, _ = K.shape
    eye = np.eye(m)
    free = np.ones((B, m), bool)
    lam = np.zeros((B, m))
    conv_all = np.zeros(B, bool)
    todo = np.arange(B)
    for _ in range(iters):
        if todo.size == 0:
            break
        Kt, Ft = K[todo], free[todo]
        M = np.where(Ft[:, :, None] & Ft[:, None, :], Kt, 0.0) + eye * (~Ft)[:, :, None]
        rhs = Ft.astype(float)[..., None]
        # a singular K_FF (more free rows than the dimension of θ, e.g. a short prompt vector) gets the
        # minimum-norm solution; the residual test below rejects an inconsistent one
        try:
            lt = np.linalg.solve(M, rhs)[..., 0]
        except np.linalg.LinAlgError:  # split the batch: LU for the regular systems, pinv for the singular
            sign, _ = np.linalg.slogdet(M)
            sing = sign == 0
            lt = np.empty(rhs.shape[:2])
            try:
                lt[~sing] = np.linalg.solve(M[~sing], rhs[~sing])[..., 0]
            except np.linalg.LinAlgError:
                sing[:] = True
            lt[sing] = (np.linalg.pinv(M[sing], rcond=1e-12, hermitian=True) @ rhs[sing])[..., 0]
        mu = np.einsum("bkl,bl->bk", Kt, lt) - 1.0
        new = np.where(Ft, lt > 0, mu < 0)
        conv = np.all(new == Ft, axis=1)
        lam[todo] = lt
        free[todo] = new
        conv_all[todo[conv]] = True
        todo = todo[~conv]
    ok = conv_all & np.all(np.isfinite(lam), axis=1) & (np.abs(lam).max(axis=1, initial=0.0) < 1e8)
    # KKT: the free rows hold with equality (not only in the least-squares sense of a singular solve)
    eq = np.abs(np.einsum("bkl,bl->bk", K, lam) - 1.0)
    ok &= np.where(free, eq, 0.0).max(axis=1, initial=0.0) <= 1e-9 * (1.0 + np.abs(lam).max(axis=1, initial=0.0))
    return lam, ok


class _EuclideanDFS:
    """Depth-first search over the samples for a coupled Euclidean norm (ℓ2 of the prompt p, shared by all
    samples), deciding each full selection exactly by one least-distance solve.

    For a selection α let L be the rows ⟨A_it, θ⟩ ≥ 1 of the tokens strictly worse than α_i and H the others
    (:class:`_ReducedTest`): α is locally optimal iff θ_L, the min-norm point of the L rows, meets every H
    row with ⟨A_it, θ_L⟩ − 1 > tol. θ_L is computed by the exact Lawson–Hanson least-distance solver
    (NNLS). The search shares work along the tree:

    * a prefix (α_0 … α_k) whose rows (all of them, L and H) are infeasible has no feasible completion and
      is cut; feasibility is shown by a witness θ from earlier solves when one satisfies every row strictly
      (Aθ > 0, then a multiple meets Aθ ≥ 1), else by one solve; infeasibility only by a verified Farkas
      certificate (an undecided prefix is kept);
    * at the last sample the L rows of the prefix are common to the T children: their min-norm point q is
      computed once, and when q already meets the child's own L rows it is the child's θ_L (min-norm over a
      larger set, inside the smaller one), with no solve.

    Children whose H margin is within 1e−7 of tol, or whose L rows look infeasible without a verified
    certificate, are left undecided (the caller solves them in full).
    """

    def __init__(self, problem: AttentionProblem, norm: str, tol: float, cands: list[np.ndarray]) -> None:
        from .svm._ldp import least_distance

        self._ldp = least_distance
        self.n, self.tol, self.cands = problem.n, tol, cands
        rows = _sample_rows(problem, norm, cands)
        scale = pow2_scale(np.vstack(list(rows.values()))) if rows else 1.0
        g = problem.scores()
        tie = TIE_TOL * (1.0 + np.max(np.where(problem.mask, np.abs(g), 0.0), axis=1))
        self.rows, self.split = {}, {}
        for (i, a), R in rows.items():
            toks = [t for t in np.flatnonzero(problem.mask[i]) if t != a]
            R = R / scale  # unit scale: margins are unchanged, θ scales by the factor
            Lm = np.array([g[i, a] - g[i, t] > tie[i] for t in toks], dtype=bool)
            self.rows[(i, a)], self.split[(i, a)] = R, (R[Lm], R[~Lm])  # (L rows, H rows)
        self.dim = next(iter(self.rows.values())).shape[1] if self.rows else 0
        self.pool = np.zeros((0, self.dim))  # witnesses of feasibility (recent solutions)
        self.below = [int(np.prod([c.size for c in cands[k + 1:]], dtype=object)) for k in range(self.n)]

    def _feasible(self, A: np.ndarray) -> bool:
        from .svm._ldp import is_farkas

        if self.pool.shape[0] and np.any(np.all(A @ self.pool.T > 0.0, axis=0)):
            return True
        c = np.ones(A.shape[0])
        r = self._ldp(A, c)
        if r.status == OPTIMAL:
            self.pool = np.vstack([r.theta[None], self.pool[:255]])
            return True
        if r.farkas is not None and is_farkas(A, c, r.farkas):
            return False
        return rows_feasible(A, c) is not False  # verified certificate, else kept (never cut wrongly)

    def _verdict(self, h: float) -> int:
        """From h = min over the H rows of ⟨A, θ_L⟩ − 1: 1 locally optimal, 0 not, −1 within rounding of tol."""
        gap = 1e-7 * (1.0 + abs(h))
        return 1 if h > self.tol + gap else 0 if h < self.tol - gap else -1

    def _solve_leaf(self, L: np.ndarray, H1: np.ndarray, H2: np.ndarray) -> int:
        """The verdict of a child whose θ_L needs its own solve (rows L; H rows H1 ∪ H2)."""
        from .svm._ldp import is_farkas

        c = np.ones(L.shape[0])
        r = self._ldp(L, c)
        if r.status != OPTIMAL:
            return 0 if r.farkas is not None and is_farkas(L, c, r.farkas) else -1
        h = min(float(np.min(H1 @ r.theta, initial=np.inf)), float(np.min(H2 @ r.theta, initial=np.inf)))
        return self._verdict(h - 1.0)

    def run(self, on_leaves: Callable[[list[tuple[int, ...]], list[int], int], None]) -> None:
        """Walk the tree; ``on_leaves(selections, verdicts, skipped)`` per last-level node (skipped: the
        selections of cut subtrees since the previous call)."""
        n, empty = self.n, np.zeros((0, self.dim))
        stack: list[tuple[tuple[int, ...], np.ndarray, np.ndarray, np.ndarray]] = [((), empty, empty, empty)]
        cut = 0
        while stack:
            prefix, A, AL, AH = stack.pop()
            k = len(prefix)
            if k == n - 1:
                q = self._ldp(AL, np.ones(AL.shape[0]))
                hq = float(np.min(AH @ q.theta, initial=np.inf)) if q.status == OPTIMAL else np.nan
                sels, verdicts = [], []
                for t in self.cands[k]:
                    L, H = self.split[(k, int(t))]
                    if q.status == OPTIMAL and (L.shape[0] == 0 or np.min(L @ q.theta) >= 1.0 - 1e-12):
                        v = self._verdict(min(hq, float(np.min(H @ q.theta, initial=np.inf))) - 1.0)
                    else:
                        v = self._solve_leaf(np.vstack([AL, L]), AH, H)
                    sels.append(prefix + (int(t),))
                    verdicts.append(v)
                on_leaves(sels, verdicts, cut)
                cut = 0
                continue
            for t in self.cands[k][::-1]:
                R, (L, H) = self.rows[(k, int(t))], self.split[(k, int(t))]
                A2 = np.vstack([A, R])
                if k == 0 or self._feasible(A2):
                    stack.append((prefix + (int(t),), A2, np.vstack([AL, L]), np.vstack([AH, H])))
                else:
                    cut += self.below[k]
        if cut:
            on_leaves([], [], cut)


def search_locally_optimal(problem: AttentionProblem, norm: str | None = None, tol: float = SUPPORT_TOL,
                           max_selections: int | None = None, progress: Callable[[int, int], None] | None = None
                           ) -> tuple[list[LocalSelection], SearchStats]:
    """Every locally-optimal selection, best margin first, with what the search did.

    Streams the candidate selections (the product of the per-sample candidate tokens, :func:`candidate_tokens`)
    in chunks of bounded size; when feasibility couples the samples, a depth-first search drops every
    extension of an infeasible prefix. Each selection is decided exactly: by the batched reduced test of
    :class:`_ReducedTest` for fro, by the depth-first search of :class:`_EuclideanDFS` (one least-distance
    solve per leaf, shared along the tree) for l2 — undecided ones by a full solve —, and by a full Att-SVM
    solve for the other norms. Every reported selection is certified by its own Att-SVM (status OPTIMAL, no
    support token with a score as high as the selected one). ``progress(done, total)`` is called after every chunk.
    Raises ValueError, before allocating anything large, when more than ``max_selections`` candidates remain.
    """
    import time

    t0 = time.perf_counter()
    norm = default_norm(problem) if norm is None else check_norm(norm)
    tol = check_tol(tol)
    max_selections = default_max_selections(norm) if max_selections is None else max_selections
    if isinstance(max_selections, bool) or int(max_selections) < 1:
        raise ValueError(f"max_selections: must be a positive integer, got {max_selections!r}")
    cands, total = count_candidates(problem, norm)
    if total > max_selections:
        raise ValueError(f"max_selections: {estimate_search(problem, norm)}; above max_selections = "
                         f"{max_selections}. Raise max_selections or test selections with is_locally_optimal")
    stats = {"pruned": 0, "screened": 0, "solved": 0, "done": 0}
    top = problem.optimal_tokens()
    if norm == "l2" and total:
        found = _search_l2(problem, tol, cands, total, stats, progress)
        st = SearchStats(tuple(c.size for c in cands), total, stats["pruned"], stats["screened"], stats["solved"],
                         time.perf_counter() - t0)
        return sorted(found, key=lambda s: s.value), st
    fast = norm == "fro"
    test = _ReducedTest(problem, norm, tol) if fast and total else None
    chunk = _chunk_size(problem) if fast else 256
    found: list[LocalSelection] = []
    for sels in _selection_chunks(problem, norm, cands, chunk, stats):
        if test is not None:
            verdict = test.decide(sels)
            stats["screened"] += int(np.sum(verdict >= 0))
            exact = sels[verdict != 0]
        else:
            exact = sels
        for sel in exact:
            stats["solved"] += 1
            lo = is_locally_optimal(problem, sel, norm, tol)
            if lo.locally_optimal:
                found.append(LocalSelection(sel.copy(), lo.value, lo.margin,
                                            bool(np.all(top.tied[np.arange(problem.n), sel]))))
        stats["done"] += sels.shape[0]
        if progress is not None:
            progress(stats["done"], total)
    if progress is not None and stats["done"] < total:
        progress(total, total)
    st = SearchStats(tuple(c.size for c in cands), total, stats["pruned"], stats["screened"], stats["solved"],
                     time.perf_counter() - t0)
    return sorted(found, key=lambda s: s.value), st


def _search_l2(problem: AttentionProblem, tol: float, cands: list[np.ndarray], total: int, stats: dict,
               progress: Callable[[int, int], None] | None) -> list[LocalSelection]:
    """The ℓ2 search of :func:`search_locally_optimal` (:class:`_EuclideanDFS`): every selection the DFS finds
    locally optimal, or cannot decide, is solved in full and kept only when its own Att-SVM certifies it."""
    top = problem.optimal_tokens()
    found: list[LocalSelection] = []
    last = [0]

    def on_leaves(sels, verdicts, cut):
        stats["pruned"] += cut
        stats["done"] += cut + len(sels)
        for sel, v in zip(sels, verdicts, strict=True):
            if v >= 0:
                stats["screened"] += 1
            if v == 0:
                continue
            stats["solved"] += 1
            lo = is_locally_optimal(problem, list(sel), "l2", tol)
            if lo.locally_optimal:
                a = np.asarray(sel, dtype=np.int64)
                found.append(LocalSelection(a, lo.value, lo.margin, bool(np.all(top.tied[np.arange(problem.n), a]))))
        if progress is not None and (stats["done"] - last[0] >= 4096 or stats["done"] == total):
            last[0] = stats["done"]
            progress(stats["done"], total)

    _EuclideanDFS(problem, "l2", tol, cands).run(on_leaves)
    if progress is not None and last[0] < total:
        progress(total, total)
    return found


def enumerate_locally_optimal(problem: AttentionProblem, norm: str | None = None,
                              max_selections: int | None = None, tol: float = SUPPORT_TOL
                              ) -> list[LocalSelection]:
    """Every locally-optimal selection, best margin first (see :func:`search_locally_optimal`)."""
    return search_locally_optimal(problem, norm, tol, max_selections)[0]


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

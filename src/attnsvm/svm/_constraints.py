"""Constraints ⟨A_it, θ⟩ ≥ c_i of an Att-SVM and the validation of selections and margins."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..problem import AttentionProblem
from ._registry import get_norm


@dataclass(frozen=True)
class Constraints:
    """The constraints ⟨A_it, θ⟩ ≥ c_i of one Att-SVM, built without loops over samples or tokens.

    ``diffs`` D_it = x_iα − x_it (n, T, d) (Kᵀ applied for a prompt variable), ``queries`` z_i (n, d)
    (None for a prompt variable), ``valid`` (n, T) marks the constraints (real token, t ≠ α_i), ``rows``
    (m, p) the flattened A_k of the valid (i, t) in row-major order, ``rhs`` (m,) the c_k, ``index`` (m, 2)
    their (i, t).
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

    @property
    def variable(self) -> str:
        return get_norm(self.norm).variable

    def natural(self, theta: np.ndarray) -> np.ndarray:
        """Vector θ → the array the norm is defined on (W as d×d for a matrix variable, else θ)."""
        if self.variable == "matrix":
            d = self.diffs.shape[2]
            return theta.reshape(d, d)
        return theta

    def vector_to_solution(self, theta: np.ndarray) -> np.ndarray:
        """Vector θ → the reported solution: W (d×d), diag(w) for a diagonal variable, p."""
        if self.variable == "diagonal":
            return np.diag(theta)
        return self.natural(theta)

    def solution_to_vector(self, sol: np.ndarray) -> np.ndarray:
        if self.variable == "matrix":
            return sol.reshape(-1)
        if self.variable == "diagonal":
            return np.diag(sol).copy() if sol.ndim == 2 else sol
        return sol

    def unit_scaled(self) -> tuple[Constraints, float]:
        """The same constraints with every A_k divided by a power of two σ: returns (scaled constraints, σ).

        σ = σ_D·σ_z, with σ_D, σ_z the powers of two that bring the largest entry of the differences D_it
        (of the constraints) and of the queries z_i into [1/2, 1).

        Solvers see data of unit scale whatever the scale of X and Z, so their tolerances are relative.
        The solution of the scaled problem θ' gives θ = θ'/σ, and its multipliers λ' give λ = λ'/σ²
        (G = Σλ_k A_k ∈ ∂½‖θ‖² is homogeneous of degree one). σ is a power of two, so both divisions are
        exact: the rows of X, Z × 2^k are bit for bit those of X, Z. The differences D and the queries z
        are scaled separately (by powers of two whose product is σ) for solvers that use them directly.
        """
        sd = pow2_scale(self.diffs[self.valid])
        sz = 1.0 if self.queries is None else pow2_scale(self.queries)
        sigma = sd * sz
        if sigma == 1.0:
            return self, 1.0
        return replace(self, diffs=self.diffs / sd, queries=None if self.queries is None else self.queries / sz,
                       rows=self.rows / sigma), sigma

    def scatter(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """(m,) per-constraint values → (n, T) with ``fill`` where (i, t) is not a constraint."""
        out = np.full(self.valid.shape, fill, dtype=np.result_type(values, type(fill)))
        out[self.valid] = values
        return out


def pow2_scale(a: np.ndarray) -> float:
    """The power of two 2^e with max|a| ∈ [2^(e−1), 2^e) (1 for an empty or all-zero array)."""
    m = float(np.max(np.abs(a))) if a.size else 0.0
    if m == 0.0:
        return 1.0
    if not np.isfinite(m):
        raise ValueError("problem: the constraint vectors are not finite (X or Z holds inf or NaN, or "
                         "their products overflow float64); rescale the data")
    return float(np.ldexp(1.0, int(np.frexp(m)[1])))


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
        raise ValueError("margins: every c_i must be finite and ≥ 0 (the papers use c_i ∈ {0, 1})")
    return c


def build_constraints(problem: AttentionProblem, selection="opt", norm: str = "fro",
                      margins=None) -> Constraints:
    """Constraint vectors A_it and right-hand sides c_i of Att-SVM(α, norm, c), vectorized.

    D_it = x_iα − x_it; A_it = D_it z_iᵀ (matrix variable: fro, nuclear, …), D_it ⊙ z_i (diagonal: l1),
    Kᵀ D_it (prompt: l2). Masked tokens and t = α_i are excluded through the (n, T) boolean ``valid``.
    """
    var = get_norm(norm).variable
    if var != "prompt" and problem.kind == "prompt":
        raise ValueError(f"norm: {norm!r} is a norm on the attention matrix W, which needs per-sample queries "
                         "z_i; this is a prompt problem (no Z, no query_index): use norm='l2' for the "
                         "prompt vector p")
    sel = check_selection(problem, selection)
    c = check_margins(problem, margins)
    n, T, d = problem.X.shape
    rows_i = np.arange(n)
    X = problem.prompt_tokens() if var == "prompt" else problem.X
    D = X[rows_i, sel][:, None, :] - X
    valid = problem.mask.copy()
    valid[rows_i, sel] = False
    Zq = None if var == "prompt" else problem.queries
    if var == "matrix":
        A = (D[:, :, :, None] * Zq[:, None, None, :]).reshape(n, T, d * d)
    elif var == "diagonal":
        A = D * Zq[:, None, :]
    else:
        A = D
    index = np.argwhere(valid)
    return Constraints(norm=norm, diffs=D, queries=Zq, valid=valid, selection=sel, margins=c,
                       rows=A[valid], rhs=np.broadcast_to(c[:, None], (n, T))[valid].copy(), index=index)

"""The NumPy definitions of correlation, the directional Bregman divergence and logits used by the whole
package."""

from __future__ import annotations

import numpy as np

from ..problem import AttentionProblem


def correlation(A: np.ndarray, B: np.ndarray, ndim: int | None = None, zero: float = float("nan")
                ) -> float | np.ndarray:
    """corr(A, B) = ⟨A, B⟩ / (‖A‖_F ‖B‖_F): the cosine of the flattened arrays.

    With equal shapes (and ``ndim`` None) the result is one float. Otherwise the last ``ndim`` axes (default
    ``B.ndim``) form one array and the leading axes broadcast, e.g. a path A of shape (R, d, d) against one
    W (d, d) gives R correlations, and (B, R, n, d) against (n, d) with ``ndim=1`` gives (B, R, n). ``zero``
    is returned where either array is zero (default NaN: no direction). Arrays whose norms overflow or
    underflow are normalized by their largest entry first, so the result is right for any finite scale;
    non-finite entries give NaN.
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if ndim is None and A.shape == B.shape:
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            na, nb = np.linalg.norm(A), np.linalg.norm(B)
            den = na * nb
        if not (np.isfinite(den) and na >= 1e-145 and nb >= 1e-145):
            # squares under- or overflow: rescale by the largest entry (the cosine is scale-free)
            if not (np.all(np.isfinite(A)) and np.all(np.isfinite(B))):
                return float("nan")
            a, b = np.max(np.abs(A), initial=0.0), np.max(np.abs(B), initial=0.0)
            if a == 0 or b == 0:
                return float(zero)
            A, B = A / a, B / b
            den = np.linalg.norm(A) * np.linalg.norm(B)
        return float(np.vdot(A, B) / den)
    k = B.ndim if ndim is None else int(ndim)
    if k < 1 or k > min(A.ndim, B.ndim) or A.shape[A.ndim - k:] != B.shape[B.ndim - k:]:
        raise ValueError(f"A, B: the last {k} axes must agree, got shapes {A.shape} and {B.shape}")
    size = int(np.prod(B.shape[B.ndim - k:]))
    A2 = A.reshape(*A.shape[:A.ndim - k], size)
    B2 = B.reshape(*B.shape[:B.ndim - k], size)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        na, nb = np.linalg.norm(A2, axis=-1), np.linalg.norm(B2, axis=-1)
        if not (np.all(np.isfinite(na) & (na >= 1e-145)) and np.all(np.isfinite(nb) & (nb >= 1e-145))):
            # squares under- or overflow somewhere: rescale by the largest entry (the cosine is scale-free)
            sa = np.max(np.abs(A2), axis=-1, keepdims=True)
            sb = np.max(np.abs(B2), axis=-1, keepdims=True)
            A2 = A2 / np.where(sa > 0, sa, 1.0)
            B2 = B2 / np.where(sb > 0, sb, 1.0)
            na, nb = np.linalg.norm(A2, axis=-1), np.linalg.norm(B2, axis=-1)
        num = A2 @ B2 if B2.ndim == 1 else np.einsum("...k,...k->...", A2, B2)
        den = na * nb
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), zero)
    return np.where(np.isfinite(den), out, np.nan)


def directional_bregman(reference: np.ndarray, W: np.ndarray, p: float) -> np.ndarray:
    """Directional Bregman divergence of ψ = (1/p)‖·‖_p^p between the ℓp directions of a reference and W:

        D(R̄, W̄) = ψ(R̄) − ψ(W̄) − ⟨∇ψ(W̄), R̄ − W̄⟩ = 1 − ⟨sign(W̄)|W̄|^{p−1}, R̄⟩,   X̄ = X/‖X‖_p,

    ≥ 0 and 0 only when the directions agree (the measure the AttentionMD paper plots). ``W`` may carry
    leading axes (e.g. records); the last ``reference.ndim`` axes are summed. NaN where W = 0."""
    R = np.asarray(reference, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    axes = tuple(range(W.ndim - R.ndim, W.ndim))

    def unit(x, ax):
        a = np.abs(x)
        m = np.max(a, axis=ax, keepdims=True)
        ms = np.where(m > 0, m, 1.0)
        nrm = m * np.sum((a / ms) ** p, axis=ax, keepdims=True) ** (1.0 / p)
        with np.errstate(invalid="ignore", divide="ignore"):
            return x / nrm

    Rb, Wb = unit(R, tuple(range(R.ndim))), unit(W, axes)
    return 1.0 - np.sum(np.sign(Wb) * np.abs(Wb) ** (p - 1.0) * Rb, axis=axes)


def logits(problem: AttentionProblem, theta: np.ndarray) -> np.ndarray:
    """Attention logits a_it = x_itᵀ W z_i for W (…, d, d), or a_it = x_itᵀ K p for a prompt vector p
    (…, d') of a prompt problem; shape (…, n, T), −inf on padding. Leading axes of θ are batch axes."""
    theta = np.asarray(theta, dtype=np.float64)
    if problem.kind == "prompt":
        dp = problem.keys.shape[1]
        if theta.ndim < 1 or theta.shape[-1] != dp:
            raise ValueError(f"W: a prompt problem is parameterized by p of shape ({dp},), got shape "
                             f"{theta.shape}")
        if theta.ndim == 1:
            a = problem.prompt_tokens() @ theta
        else:
            a = np.einsum("ntd,...d->...nt", problem.prompt_tokens(), theta)
    else:
        if theta.ndim < 2 or theta.shape[-2:] != (problem.d, problem.d):
            raise ValueError(f"W: expected shape ({problem.d}, {problem.d}), got {theta.shape}")
        if theta.ndim == 2:
            a = np.einsum("itd,de,ie->it", problem.X, theta, problem.queries)
        else:
            a = np.einsum("itd,...de,ie->...it", problem.X, theta, problem.queries)
    return np.where(problem.mask, a, -np.inf)

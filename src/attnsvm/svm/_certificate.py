"""Certificates of (θ, λ) for the squared Att-SVM min ½‖θ‖² s.t. Aθ ≥ c, for any registered norm."""

from __future__ import annotations

import numpy as np

from ._registry import get_norm
from ._results import Certificate


def norm_value(theta: np.ndarray, norm: str) -> float:
    """‖θ‖ in the given norm; θ is W (d×d) for the matrix norms, w (d,) or diag(w) for l1, p for l2."""
    spec = get_norm(norm)
    theta = np.asarray(theta, dtype=np.float64)
    if spec.variable == "diagonal" and theta.ndim == 2:
        theta = np.diag(theta)
    return spec.value(theta)


def dual_norm_value(G: np.ndarray, norm: str) -> float:
    """‖G‖_dual of the given norm (G shaped as the norm's natural array)."""
    return get_norm(norm).dual(np.asarray(G, dtype=np.float64))


def certificate_rows(A: np.ndarray, c: np.ndarray, theta: np.ndarray, lam: np.ndarray, norm: str,
                     matrix_shape: tuple[int, int] | None = None) -> Certificate:
    """Certificate of (θ, λ) for min ½‖θ‖² s.t. Aθ ≥ c, with rows A (m, p); ``matrix_shape`` reshapes
    vectors to matrices for the norms defined on matrices (e.g. nuclear, whose dual is the spectral norm).

    The KKT conditions of the squared problem read G := Σλ_k A_k ∈ ∂(½‖θ‖²), i.e. ‖G‖_dual = ‖θ‖ and
    ⟨G, θ⟩ = ‖θ‖², with λ ≥ 0 and λ_k(⟨A_k, θ⟩ − c_k) = 0; weak duality gives ‖θ^mm‖ ≥ Σλ_k c_k/‖G‖_dual.
    """
    spec = get_norm(norm)
    s = A @ theta
    primal = float(max(0.0, np.max(c - s))) if c.size else 0.0
    lam_pos = np.maximum(lam, 0.0)
    G = A.T @ lam_pos

    def shaped(x):
        return x.reshape(matrix_shape) if matrix_shape is not None else x

    th_norm = spec.value(shaped(theta))
    gd = spec.dual(shaped(G))
    if spec.euclidean:
        stat = float(np.linalg.norm(theta - G))
    else:
        stat = abs(gd - th_norm) + abs(float(G @ theta) - th_norm**2) / max(1.0, th_norm)
    dual = float(max(0.0, -lam.min())) + stat if lam.size else stat
    comp = float(np.max(lam_pos * np.abs(s - c))) if c.size else 0.0
    lower = float(lam_pos @ c / gd) if gd > 0 else 0.0
    return Certificate(primal=primal, dual=dual, complementarity=comp, gap=th_norm - lower,
                       lower=lower, upper=th_norm)

"""Result types of the Att-SVM solvers: :class:`Certificate` and :class:`SVMResult`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._status import INFEASIBLE, SOLUTION_PRESENT


@dataclass(frozen=True)
class Certificate:
    """Optimality certificate of an Att-SVM solution, every entry a number.

    primal:          max_k max(0, c_k − ⟨A_k, θ⟩)                       (primal infeasibility)
    dual:            max(0, −min λ) + stationarity residual            (dual infeasibility); the residual is
                     ‖θ − Σλ_k A_k‖ for fro/l2 and |‖G‖_dual − ‖θ‖| + |⟨G, θ⟩ − ‖θ‖²|/max(1, ‖θ‖) with
                     G = Σλ_k A_k for the other norms
    complementarity: max_k λ_k |⟨A_k, θ⟩ − c_k|
    gap:             upper − lower, with upper = ‖θ‖ and lower = Σλ_k c_k / ‖Σλ_k A_k‖_dual (weak duality,
                     valid for any λ ≥ 0)
    scale:           the power of two σ the constraint vectors were divided by before solving (data of unit
                     scale); the numbers above are those of the given problem: the solver's numbers at unit
                     scale times 1 (primal), 1/σ (dual, gap, lower, upper) and 1/σ² (complementarity), exactly

    Whether a result is optimal is decided at unit scale, so it does not depend on the scale of X and Z:
    primal ≤ tol, dual·σ ≤ tol·max(1, ‖θ‖σ) and |gap|·σ ≤ tol·max(1, ‖θ‖σ) (``relative_gap`` = gap/upper).
    """

    primal: float
    dual: float
    complementarity: float
    gap: float
    lower: float
    upper: float
    scale: float = 1.0

    @property
    def relative_gap(self) -> float:
        """gap / upper (scale-free); NaN without a solution."""
        return self.gap / self.upper if np.isfinite(self.upper) and self.upper > 0 else float("nan")

    def confirms(self, tol: float) -> bool:
        """Whether the certificate confirms optimality at tolerance ``tol``: primal ≤ tol, dual ≤ tol·s and
        |gap| ≤ tol·s with s = max(1, upper) (False where a number is NaN)."""
        s = max(1.0, self.upper)
        return bool(self.primal <= tol and self.dual <= tol * s and abs(self.gap) <= tol * s)

    @property
    def violation(self) -> float:
        """The least tolerance :meth:`confirms` accepts: max(primal, dual/s, |gap|/s), s = max(1, upper) (inf
        where a number is NaN); compares two candidate solutions of one problem."""
        s = max(1.0, self.upper)
        v = max(self.primal, self.dual / s, abs(self.gap) / s)
        return float(v) if np.isfinite(v) or v == np.inf else float("inf")

    def rescaled(self, sigma: float) -> Certificate:
        """The certificate of the problem whose constraint vectors are σ times those of this one."""
        return Certificate(primal=self.primal, dual=self.dual / sigma,
                           complementarity=self.complementarity / sigma / sigma, gap=self.gap / sigma,
                           lower=self.lower / sigma, upper=self.upper / sigma, scale=self.scale * sigma)

    def to_dict(self) -> dict[str, float]:
        return {"primal": self.primal, "dual": self.dual, "complementarity": self.complementarity,
                "gap": self.gap, "lower": self.lower, "upper": self.upper, "scale": self.scale,
                "relative_gap": self.relative_gap}


#: the certificate of a result without a solution (infeasible, solver error)
NO_CERTIFICATE = Certificate(primal=float("nan"), dual=float("nan"), complementarity=float("nan"),
                             gap=float("nan"), lower=float("inf"), upper=float("inf"))


@dataclass(frozen=True)
class SVMResult:
    """Solution of one Att-SVM.

    ``status`` is one of the constants of :mod:`attnsvm.svm` (``OPTIMAL``, ``INFEASIBLE``, ``INACCURATE``,
    ``SOLVER_ERROR``). ``solution`` is W (d×d) for the matrix norms (a diagonal matrix for l1) and p (d',)
    for l2; ``value`` is its norm. ``active`` / ``duals`` / ``margin`` are (n, T) arrays over tokens:
    ``margin[i,t] = ⟨A_it, θ⟩`` (NaN where (i, t) is not a constraint: t = α_i or t masked).
    ``constrained`` marks the constraints. For an infeasible problem ``solution`` is NaN, ``farkas`` holds
    λ ≥ 0 with Σλ A = 0 and Σλ c > 0, ``infeasible_samples`` the samples whose constraints alone are
    infeasible, and ``farkas_samples`` every sample the certificate uses.
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
        """Not proven infeasible (a solver error leaves feasibility open, see :attr:`has_solution`)."""
        return self.status != INFEASIBLE

    @property
    def has_solution(self) -> bool:
        """The result carries a finite solution (``status in SOLUTION_PRESENT``)."""
        return self.status in SOLUTION_PRESENT

    def to_dict(self) -> dict:
        """JSON-ready dict with the keys of ``attnsvm solve --json``."""
        sol = None if not np.all(np.isfinite(self.solution)) else self.solution.tolist()
        out = {
            "status": self.status, "norm": self.norm,
            "value": self.value if np.isfinite(self.value) else None,
            "solution": sol, "active": self.active.tolist(), "duals": self.duals.tolist(),
            "certificate": json_floats(self.certificate.to_dict()),
            "selection": self.selection.tolist(), "margins": self.margins.tolist(),
            "support_tokens": [list(s) for s in self.support_tokens],
            "solver": self.solver, "message": self.message,
        }
        if self.farkas is not None:
            out["farkas"] = self.farkas.tolist()
            out["infeasible_samples"] = list(self.infeasible_samples)
            out["farkas_samples"] = list(self.farkas_samples)
        return out


def json_floats(d: dict[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if np.isfinite(v) else None) for k, v in d.items()}

"""The norm registry: every Att-SVM norm is one :class:`NormSpec`, registered by its module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from ._constraints import Constraints

#: how θ enters the logits, which fixes the constraint vectors A_it (D_it = x_iα − x_it):
#: "prompt": θ = p ∈ R^{d'}, a_it = Kᵀ D_it;  "matrix": θ = vec W ∈ R^{d²}, A_it = D_it z_iᵀ;
#: "diagonal": θ = w ∈ R^d with W = diag(w), a_it = D_it ⊙ z_i
Variable = Literal["prompt", "matrix", "diagonal"]


@dataclass(frozen=True)
class RawSolution:
    """What a norm's solver returns to the entry point :func:`solve_svm`, before certification.

    status: OPTIMAL (the solver claims it; the certificate decides), INACCURATE, INFEASIBLE or SOLVER_ERROR.
    theta: the solution as a vector (length ``Constraints.dim``); lam: multipliers λ ≥ 0 of the *squared*
    problem min ½‖θ‖² (length m). farkas: an infeasibility certificate if the solver has one (else the entry
    point computes it). tolerance: certificate tolerance for OPTIMAL (None: the norm's).
    """

    status: str
    theta: np.ndarray | None
    lam: np.ndarray | None
    solver: str
    message: str = ""
    farkas: np.ndarray | None = None
    tolerance: float | None = None


@dataclass(frozen=True)
class NormSpec:
    """One Att-SVM norm.

    name: the ``norm=`` string. variable: see :data:`Variable`. value / dual: ‖θ‖ and its dual norm, on the
    natural array (p, W as d×d, or w). solve(constraints, options) → :class:`RawSolution`. tolerance:
    certificate tolerance below which a solution is reported optimal (primal infeasibility absolute,
    dual residual and gap relative to max(1, ‖θ‖)). euclidean: the norm is ‖·‖₂ of θ, so the stationarity
    residual is ‖θ − Σλ_k A_k‖ (otherwise it is tested through the dual norm). options: the keys
    ``solver_options`` may hold for this norm.
    """

    name: str
    variable: Variable
    value: Callable[[np.ndarray], float]
    dual: Callable[[np.ndarray], float]
    solve: Callable[[Constraints, Mapping[str, Any]], RawSolution]
    tolerance: float
    euclidean: bool = False
    summary: str = ""
    options: tuple[str, ...] = ()


_REGISTRY: dict[str, NormSpec] = {}
#: parametric families: a name "FAMILY:ARG" (e.g. "lp:1.75") is built by the family's factory on first use
_FAMILIES: dict[str, Callable[[str], NormSpec]] = {}
_FAMILY_CACHE: dict[str, NormSpec] = {}


def register_norm(spec: NormSpec) -> NormSpec:
    """Add a norm to the registry (its module calls this at import); returns the spec."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"norm: {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def register_family(prefix: str, factory: Callable[[str], NormSpec]) -> None:
    """Add a parametric family: ``get_norm(f"{prefix}:{arg}")`` returns ``factory(arg)`` (built once; the
    factory raises ValueError for a bad ``arg``)."""
    _FAMILIES[prefix] = factory


def available_norms() -> tuple[str, ...]:
    """Names of the registered norms, in registration order."""
    return tuple(_REGISTRY)


def get_norm(name: str) -> NormSpec:
    """The spec of a registered norm; ValueError naming the choices otherwise."""
    if isinstance(name, str) and name not in _REGISTRY and ":" in name:
        fam, _, arg = name.partition(":")
        if fam in _FAMILIES:
            if name not in _FAMILY_CACHE:
                _FAMILY_CACHE[name] = _FAMILIES[fam](arg)
            return _FAMILY_CACHE[name]
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        fams = "".join(f", or {f}:P" for f in _FAMILIES)
        raise ValueError(f"norm: must be one of {available_norms()}{fams} (e.g. 'lp:1.75'), got {name!r}") from None


def check_norm(norm: str) -> str:
    """Validate a norm name."""
    get_norm(norm)
    return norm

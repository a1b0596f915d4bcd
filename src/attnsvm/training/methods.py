"""The three training methods, the initialization and what to save: small settings objects for
:func:`attnsvm.train`.

* :class:`Descent` — a discrete optimizer (:mod:`attnsvm.training.optim`) for a number of steps;
* :class:`Flow` — the gradient flow dθ/dt = −∇L integrated with error control in arc length
  (:mod:`attnsvm.flow`), until one of its stops (:mod:`attnsvm.training.stops`);
* :class:`RegularizationPath` — θ̄(R) = argmin_{‖θ‖ ≤ R} L on a grid of radii (:mod:`attnsvm.regpath`).

A new method is one class with a ``kind``, ``freeze`` and ``run(model, batch, params0, save, stops, progress,
init)``
returning a :class:`~attnsvm.training.run.Run`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .optim import OptimizerSpec


def _positive(name: str, v: float) -> None:
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name}: must be a positive number, got {v}")


@dataclass(frozen=True)
class Descent:
    """``steps`` steps of ``optimizer`` (e.g. ``NGD(lr=0.1)``); records every ``Save.every`` steps. With
    stops (``train(..., stop=[LogSaturation(-1e5), Radius(1e4)])``: saturation, log saturation, radius) a
    trial ends after the first step at which one holds (:func:`attnsvm.dynamics.run_descent`).

    batching: how trials are batched: ``"vmap"``, ``"map"`` (sequential, faster where vmap is
    memory-bound) or ``"auto"`` (by problem size)."""

    optimizer: OptimizerSpec
    steps: int
    batching: str = "auto"
    kind: ClassVar[str] = "descent"

    def __post_init__(self) -> None:
        if not isinstance(self.optimizer, OptimizerSpec):
            raise ValueError(f"optimizer: expected a registered optimizer (attnsvm.training.OPTIMIZERS), "
                             f"got {type(self.optimizer).__name__}")
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 0:
            raise ValueError(f"steps: must be an integer ≥ 0, got {self.steps}")
        if self.batching not in ("auto", "vmap", "map"):
            raise ValueError(f"batching must be 'auto', 'vmap' or 'map', got {self.batching!r}")
        object.__setattr__(self, "steps", int(self.steps))

    @property
    def freeze(self) -> tuple[str, ...]:
        return self.optimizer.freeze

    def run(self, model, batch, params0, save, stops, progress, init):
        from ..dynamics import run_descent
        from .stops import Time

        if any(isinstance(s, Time) for s in stops):
            raise ValueError("stop: the time stop applies to Flow (physical time t); Descent counts steps: "
                             "set its steps instead")
        return run_descent(model, self, batch, params0, save, progress, self.batching, stops)


@dataclass(frozen=True)
class Flow:
    """Gradient flow of L + ridge·‖θ‖²/2 with ``freeze`` blocks fixed (:mod:`attnsvm.flow`).

    rtol, atol: tolerances of the step-size controller on the state (θ, log(1 + t));
    max_steps: solver step budget;  max_arclength: arc-length budget;  error_estimate: a third pass at
    tolerances/100 gives a global error estimate at every record.
    """

    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 20_000
    max_arclength: float = 1e6
    ridge: float = 0.0
    freeze: tuple[str, ...] = ()
    error_estimate: bool = True
    kind: ClassVar[str] = "flow"

    def __post_init__(self) -> None:
        for f in ("rtol", "atol", "max_arclength"):
            _positive(f, getattr(self, f))
        if int(self.max_steps) < 1:
            raise ValueError(f"max_steps: must be ≥ 1, got {self.max_steps}")
        if not (np.isfinite(self.ridge) and self.ridge >= 0):
            raise ValueError(f"ridge: must be ≥ 0, got {self.ridge}")
        object.__setattr__(self, "freeze", tuple(self.freeze))
        object.__setattr__(self, "max_steps", int(self.max_steps))

    def run(self, model, batch, params0, save, stops, progress, init):
        from ..flow import run_flow
        from .stops import Saturation

        return run_flow(model, self, batch, params0, save, tuple(stops) if stops else (Saturation(1e-8),))


@dataclass(frozen=True)
class RegularizationPath:
    """θ̄(R) for every R of ``radii`` (increasing), to the stationarity tolerance ``tol`` in at most
    ``max_iter`` projected-gradient iterations per radius; ``restarts`` random restarts per radius test
    whether the warm-started solution is only stationary (:mod:`attnsvm.regpath`)."""

    radii: tuple[float, ...]
    tol: float = 1e-6
    max_iter: int = 5000
    restarts: int = 0
    kind: ClassVar[str] = "path"
    freeze: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        r = np.asarray(self.radii, dtype=np.float64)
        if r.ndim != 1 or r.size == 0:
            raise ValueError(f"radii: expected a non-empty list of radii, got {self.radii!r}")
        if not np.all(np.isfinite(r)) or np.any(r <= 0) or np.any(np.diff(r) <= 0):
            raise ValueError(f"radii: must be positive and strictly increasing, got {r.tolist()}")
        if not (np.isfinite(self.tol) and 0 < self.tol < 1):
            raise ValueError(f"tol: must be in (0, 1), got {self.tol}")
        if int(self.max_iter) < 1:
            raise ValueError(f"max_iter: must be ≥ 1, got {self.max_iter}")
        if int(self.restarts) < 0:
            raise ValueError(f"restarts: must be ≥ 0, got {self.restarts}")
        object.__setattr__(self, "radii", tuple(float(x) for x in r))
        object.__setattr__(self, "max_iter", int(self.max_iter))
        object.__setattr__(self, "restarts", int(self.restarts))

    def run(self, model, batch, params0, save, stops, progress, init):
        from ..regpath import run_path

        if stops:
            raise ValueError("stop: stops do not apply to the regularization path (it solves at each of its radii "
                             "and ends at the last one); they belong to Flow and Descent")
        return run_path(model, self, batch, params0, init.seed)


@dataclass(frozen=True)
class Save:
    """What a run records. every: steps between records (Descent; ``steps`` must be a multiple);
    records: records per trial, equally spaced in arc length (Flow); path: keep W at every record;
    params: keep every block at every record (Descent, Flow); metrics: the per-record measures (Descent; False
    keeps only the selection, path and params: the cheapest program, for long paths of tiny problems)."""

    every: int = 10
    records: int = 50
    path: bool = False
    params: bool = False
    metrics: bool = True

    def __post_init__(self) -> None:
        if int(self.every) < 1:
            raise ValueError(f"save.every: must be ≥ 1, got {self.every}")
        if int(self.records) < 2:
            raise ValueError(f"save.records: must be ≥ 2 (the start and the stop), got {self.records}")


@dataclass(frozen=True)
class Init:
    """The initial parameters of every trial.

    scheme: ``"zero"``, ``"gaussian"`` (scale·N(0, I) per block; ``scale`` may map block → scale, e.g.
        P3's K₀ = 0.1·N, Q₀ = 0), ``"given"`` (arrays in ``given``), or None for the default: zero for the
        prompt and combined models under Descent, a Gaussian of scale 0.01 otherwise (θ = 0 is a
        stationary point of the factored and diagonal models, and flows and paths need a direction).
    given: block → array, shared by all trials or with a leading trials axis (also usable with another
        scheme: the given blocks are taken, the others drawn).
    seed: the Gaussian draws' seed;  trial_ids: draw trial j's init from its own stream (seed, j), so a
        trial's start does not depend on which other trials share the call (resumable sweeps).
    """

    scheme: str | None = None
    scale: float | Mapping[str, float] = 0.01
    seed: int = 0
    given: Mapping[str, Any] | None = field(default=None, hash=False)
    trial_ids: Sequence[int] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.scheme not in (None, "zero", "gaussian", "given"):
            raise ValueError(f"init scheme must be 'zero', 'gaussian' or 'given', got {self.scheme!r}")
        scales = self.scale.values() if isinstance(self.scale, Mapping) else [self.scale]
        for s in scales:
            if isinstance(s, bool) or not isinstance(s, int | float) or not np.isfinite(s) or s < 0:
                raise ValueError(f"init scale: must be a finite number ≥ 0 (or block → number), got {self.scale!r}")

    def resolved_scheme(self, model, method) -> str:
        if self.scheme is not None:
            return self.scheme
        if self.given is not None and not isinstance(self.scale, Mapping):
            return "given" if set(model.blocks) <= set(self.given) else "zero"
        if getattr(method, "kind", "descent") == "descent":
            return model.param.default_init[0]  # e.g. zero for W, Gaussian for (K, Q), whose 0 is stationary
        return "gaussian"

    def params(self, model, problem, trials: int, method=None) -> dict[str, np.ndarray]:
        """(B, ...) per block (see the class docstring)."""
        scheme = self.resolved_scheme(model, method)
        shapes = model.param_shapes(problem.d, problem.keys.shape[1])
        if isinstance(self.scale, Mapping):
            unknown = set(self.scale) - set(shapes)
            if unknown:
                raise ValueError(f"init.scale: unknown block(s) {sorted(unknown)} for {model.name!r}; "
                                 f"blocks are {sorted(shapes)}")
        rng = np.random.default_rng(self.seed)
        ids = self.trial_ids
        if ids is not None and len(ids) != trials:
            raise ValueError(f"trial_ids: expected {trials} ids, got {len(ids)}")
        rngs = [np.random.default_rng([self.seed, int(j)]) for j in ids] if ids is not None else None
        given = self.given or {}
        unknown = set(given) - set(shapes)
        if unknown:
            raise ValueError(f"init: unknown block(s) {sorted(unknown)} for {model.name!r}; "
                             f"blocks are {sorted(shapes)}")
        out: dict[str, np.ndarray] = {}
        for b, shp in shapes.items():
            if b in given:
                arr = np.asarray(given[b], dtype=np.float64)
                if arr.shape == shp:
                    arr = np.broadcast_to(arr, (trials,) + shp).copy()
                if arr.shape != (trials,) + shp:
                    raise ValueError(f"init.{b}: expected shape {shp} or {(trials,) + shp}, got {arr.shape}")
                out[b] = arr
            elif b == "v":
                out[b] = np.broadcast_to(problem.v, (trials,) + shp).copy()
            elif scheme == "zero":
                out[b] = np.zeros((trials,) + shp)
            elif scheme == "gaussian":
                sc = self.scale.get(b, 0.0) if isinstance(self.scale, Mapping) else float(self.scale)
                if rngs is None:
                    out[b] = sc * rng.standard_normal((trials,) + shp)
                else:
                    out[b] = sc * np.stack([r.standard_normal(shp) for r in rngs])
            else:
                raise ValueError(f"init: scheme 'given' but no array for block {b!r}")
        return out


__all__ = ["Descent", "Flow", "Init", "RegularizationPath", "Save"]

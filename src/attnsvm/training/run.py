"""What :func:`attnsvm.train` returns: one :class:`Run` for every method, trials first."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

#: per-trial status: the run produced finite numbers throughout
OK = "ok"
#: per-trial status: a non-finite parameter, loss or norm appeared (the trial is left out of statistics)
DIVERGED = "diverged"
TRIAL_STATUSES = (OK, DIVERGED)

#: what the time axis ``Run.time`` counts, per method
TIME_AXES = {"descent": "step", "flow": "record", "path": "radius"}


@dataclass(frozen=True)
class Run:
    """A finished run of B trials with R records each (NumPy arrays).

    model, method: what was run (``method`` is the :class:`~attnsvm.training.Descent`,
        :class:`~attnsvm.training.Flow` or :class:`~attnsvm.training.RegularizationPath` object).
    time: (R,) the time axis, named by ``time_axis``: ``"step"`` (Descent: the step of each record),
        ``"record"`` (Flow: record index; records are equally spaced in arc length, the arc length σ and
        physical time t of every record are in ``metrics["sigma"]``, ``metrics["t"]``), ``"radius"``
        (RegularizationPath: index into the radii; the radius is ``metrics["radius"]``).
    params: final parameters, block → (B, ...);  W: (B, d, d) final attention matrix (p (B, d') for the
        prompt model).
    metrics: name → (B, R) scalar per record (``dynamics.SCALAR_METRICS`` and the method's own; empty with
        ``Save(metrics=False)``);
    selection: (B, R, n) argmax attention per record;  singular_values: (B, R, k) of W per record;
    correlations: reference name → (B, R) ⟨W, W_ref⟩/(‖W‖_F ‖W_ref‖_F);  alpha: (B, n) reference selection;
    path: (B, R, ...) W at every record when kept (``Save(path=True)``, always for the path method);
    params_path: block → (B, R, ...) every block at every record (``Save(params=True)`` for Descent and
        Flow; always for the path, its attention blocks).
    status: (B,) per trial, ``"ok"`` or ``"diverged"`` (a non-finite value appeared; such trials are left
        out of every statistic and counted apart);  stop_reason: (B,) why the trial ended (``"steps"``,
        a flow stop such as ``"saturation"``, ``"radii"``);
    compile_seconds, run_seconds: time to compile and to run the compiled program;  info: method details.
    """

    model: Any
    method: Any
    params: dict[str, np.ndarray]
    W: np.ndarray
    time: np.ndarray
    time_axis: str
    metrics: dict[str, np.ndarray]
    selection: np.ndarray
    singular_values: np.ndarray
    correlations: dict[str, np.ndarray]
    alpha: np.ndarray
    status: np.ndarray
    stop_reason: np.ndarray
    path: np.ndarray | None = None
    params_path: dict[str, np.ndarray] | None = None
    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def trials(self) -> int:
        return self.W.shape[0]

    @property
    def steps(self) -> np.ndarray:
        """Alias of ``time`` (read ``time_axis`` for its meaning)."""
        return self.time

    @property
    def ok(self) -> np.ndarray:
        """(B,) bool: the trials that count in statistics (status ``"ok"``)."""
        return self.status == OK

    @property
    def n_diverged(self) -> int:
        return int(np.sum(self.status == DIVERGED))

    def table(self):
        """One row per (trial, record): ``trial``, the time axis (column named by ``time_axis``), ``status``,
        the scalar metrics and ``corr_<reference>`` (a pandas DataFrame)."""
        import pandas as pd

        B, R = self.metrics["loss"].shape
        cols: dict[str, np.ndarray] = {"trial": np.repeat(np.arange(B), R), self.time_axis: np.tile(self.time, B),
                                       "status": np.repeat(self.status, R)}
        for k, v in self.metrics.items():
            cols[k] = v.reshape(-1)
        for k, v in self.correlations.items():
            cols[f"corr_{k}"] = v.reshape(-1)
        return pd.DataFrame(cols)


def diverged_trials(params: dict[str, np.ndarray], metrics: dict[str, np.ndarray],
                    keys: tuple[str, ...] = ("loss", "theta_norm", "W_fro")) -> np.ndarray:
    """(B,) bool: a final parameter, or a recorded loss / norm, is not finite.

    The loss counts as finite when L or its logarithm ``log_loss`` is: an exponential loss of e^{1000} is
    a legitimate value beyond float64, recorded exactly as log L = 1000, not a divergence. (A log gradient
    norm of −inf is a legitimate exact zero, and L − L* is NaN by definition for nonlinear heads, so those
    are not checked.)"""
    B = next(iter(params.values())).shape[0]
    bad = np.zeros(B, bool)
    for v in params.values():
        bad |= ~np.all(np.isfinite(np.asarray(v).reshape(B, -1)), axis=1)
    for k in keys:
        if k in metrics:
            fin = np.isfinite(metrics[k])
            if k == "loss" and "log_loss" in metrics:
                fin |= np.isfinite(metrics["log_loss"])
            bad |= ~np.all(fin, axis=1)
    return bad


def with_status(run: Run) -> Run:
    """``run`` with ``status`` set from :func:`diverged_trials`."""
    bad = diverged_trials(run.params, run.metrics)
    return replace(run, status=np.where(bad, DIVERGED, OK))


__all__ = ["DIVERGED", "OK", "Run", "TIME_AXES", "TRIAL_STATUSES", "diverged_trials", "with_status"]

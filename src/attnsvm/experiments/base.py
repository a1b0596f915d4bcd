"""The pieces every reproduction is assembled from: claims, outcomes, a resumable trial store, a context.

An experiment is a function ``run(cfg, ctx) -> Outcome`` from a validated config (a pydantic model whose
defaults are the paper's settings) to claims, tables, arrays and figures. It never writes files itself:
the :class:`Context` does, so that every experiment gets the same run-directory layout, the same
resume behaviour and the same progress bars.

Resume. ``ctx.trials(key, n, chunk, fn)`` runs ``fn(indices)`` on chunks of trial indices and writes each
finished chunk to ``trials/<key>/<start>-<stop>.npz`` at once (write to a temporary file, then rename, so a
kill never leaves a half-written chunk). Rerunning with the same output directory and the same config loads
the finished chunks and computes only the missing ones. Chunks are fixed ranges of trial indices and every
trial's seed is its index, so an interrupted and an uninterrupted run compute identical numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

VERDICTS = ("reproduced", "differs", "new", "corrected")


class ExperimentConfig(BaseModel):
    """Base of every experiment config: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Claim:
    """One statement of a paper, the number it gives, what we measured, and the verdict.

    verdict: ``reproduced`` (within the stated tolerance), ``differs`` (outside it: the note says by how
    much), ``corrected`` (the published number comes from a flaw SPEC §6 names; both are shown), ``new``
    (no published number: this project's own measurement).
    """

    claim: str
    paper: str
    measured: str
    verdict: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


def spread(x: np.ndarray, fmt: str = ".4g") -> str:
    """'mean ± std (min … max, n=N)' of a sample, or the value itself for one number."""
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return "n/a"
    if x.size == 1:
        return format(x[0], fmt)
    return (f"{format(x.mean(), fmt)} ± {format(x.std(), '.2g')} "
            f"({format(x.min(), fmt)} … {format(x.max(), fmt)}, n={x.size})")


def verdict_within(measured: float, target: float, tol: float) -> str:
    return "reproduced" if abs(measured - target) <= tol else "differs"


@dataclass
class Outcome:
    """What an experiment returns: claims, tables (written as Parquet and CSV), arrays (results.npz),
    and the names of the figures it drew through ``ctx.figure``."""

    claims: list[Claim]
    tables: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def config_hash(cfg: BaseModel) -> str:
    return hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


class Context:
    """Where an experiment writes (``out``), how it reports progress, and its resumable trial store."""

    def __init__(self, out: Path, progress: Any = None, quick: bool = False) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.quick = quick
        self._progress = progress  # a rich Progress, or None
        self.computed_chunks: list[str] = []
        self.loaded_chunks: list[str] = []
        self.figures: list[str] = []

    # ---- progress ---------------------------------------------------------------------------------------
    def task(self, description: str, total: int) -> Callable[[int], None]:
        """A progress task; returns ``advance(k)``."""
        if self._progress is None:
            return lambda k=1: None
        tid = self._progress.add_task(description, total=total)
        return lambda k=1: self._progress.update(tid, advance=k)

    # ---- resumable trials -----------------------------------------------------------------------------
    def trials(self, key: str, n: int, chunk: int, fn: Callable[[np.ndarray], dict[str, np.ndarray]],
               description: str | None = None) -> dict[str, np.ndarray]:
        """Run ``fn`` on trial indices [0, n) in chunks of ``chunk``; keep every finished chunk on disk.

        ``fn(indices)`` returns arrays whose first axis is the trial (len(indices)). Returns the arrays of
        all n trials in index order.
        """
        if n < 1 or chunk < 1:
            raise ValueError(f"trials: n and chunk must be ≥ 1, got n={n}, chunk={chunk}")
        folder = self.out / "trials" / key
        folder.mkdir(parents=True, exist_ok=True)
        advance = self.task(description or key, n)
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            path = folder / f"{start:06d}-{stop:06d}.npz"
            if path.exists():
                with np.load(path, allow_pickle=False) as f:
                    part = {k: f[k] for k in f.files}
                self.loaded_chunks.append(f"{key}/{path.name}")
            else:
                idx = np.arange(start, stop)
                part = {k: np.asarray(v) for k, v in fn(idx).items()}
                bad = [k for k, v in part.items() if v.shape[:1] != (stop - start,)]
                if bad:
                    raise ValueError(f"trials {key!r}: arrays {bad} do not have one row per trial")
                tmp = path.with_name(path.name + ".tmp.npz")
                np.savez(tmp, **part)
                os.replace(tmp, path)
                self.computed_chunks.append(f"{key}/{path.name}")
            parts.append(part)
            advance(stop - start)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    # ---- figures ------------------------------------------------------------------------------------------
    def figure(self, fig, name: str) -> str:
        """Save a matplotlib figure as figures/<name>.png and .pdf."""
        folder = self.out / "figures"
        folder.mkdir(exist_ok=True)
        fig.savefig(folder / f"{name}.png", dpi=200, bbox_inches="tight")
        fig.savefig(folder / f"{name}.pdf", bbox_inches="tight")
        self.figures.append(name)
        return name

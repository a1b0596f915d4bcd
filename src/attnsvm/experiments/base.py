"""The pieces every reproduction is assembled from: claims, outcomes, a resumable trial store, a context.

An experiment is a function ``run(cfg, ctx) -> Outcome`` from a validated config (a pydantic model whose
defaults are the paper's settings) to claims, tables, arrays and figures. It never writes files itself:
the :class:`Context` does, so that every experiment gets the same run-directory layout, the same
resume behaviour and the same progress bars.

Resume. ``ctx.trials(key, n, chunk, fn)`` runs ``fn(indices)`` on chunks of trial indices and writes each
finished chunk to ``trials/<key>/<start>-<stop>.npz`` at once (write to a temporary file, then rename, so a
kill never leaves a half-written chunk), beside a manifest ``<start>-<stop>.json`` that records the trial
ids, the name, shape and dtype of every array, the configuration's hash and the sha256 of the ``.npz``.
Rerunning with the same output directory and the same config loads the finished chunks whose manifest
verifies (checksum, trial ids, shapes) and computes the missing ones and the ones that fail verification
(shrunk, duplicated, truncated, bit-flipped, or written by another configuration), listing them with the
reason. Chunks are fixed ranges of trial indices and every trial's seed is its index, so an interrupted and
an uninterrupted run compute identical numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..config import _NoBoolNumbers

VERDICTS = ("reproduced", "differs", "new", "corrected")


class ExperimentConfig(_NoBoolNumbers):
    """Base of every experiment config: unknown keys are errors, and true/false is not a number."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Claim:
    """One statement of a paper, the number it gives, what we measured, and the verdict.

    verdict: ``reproduced`` (within the stated tolerance), ``differs`` (outside it: the note says by how
    much), ``corrected`` (the published number comes from a flaw of the original code or plot that the note
    names; both are shown), ``new``
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
    """'mean ± std (min … max, n=N)' of the finite values of a sample, or the value itself for one number;
    non-finite values are left out and their count is said ('; 2 non-finite left out')."""
    x = np.asarray(x, dtype=float).ravel()
    bad = int(np.sum(~np.isfinite(x)))
    x = x[np.isfinite(x)]
    tail = f"; {bad} non-finite left out" if bad else ""
    if x.size == 0:
        return "n/a" + (f" ({bad} non-finite)" if bad else "")
    if x.size == 1:
        return format(x[0], fmt) + tail
    return (f"{format(x.mean(), fmt)} ± {format(x.std(), '.2g')} "
            f"({format(x.min(), fmt)} … {format(x.max(), fmt)}, n={x.size}){tail}")


def finite_trials(x: np.ndarray) -> np.ndarray:
    """(B,) bool: trial b (the first axis) has only finite values; the others diverged."""
    x = np.asarray(x, dtype=float)
    return np.all(np.isfinite(x.reshape(x.shape[0], -1)), axis=1)


def count_of(hits: np.ndarray, finite: np.ndarray, what: str) -> str:
    """'k/B what' when every trial is finite, else 'k/F finite what, D diverged': a diverged trial is counted
    apart, never as a success (``hits`` is only read on the finite trials)."""
    hits, finite = np.asarray(hits, bool), np.asarray(finite, bool)
    k = int(np.sum(hits & finite))
    n_div = int(np.sum(~finite))
    if n_div == 0:
        return f"{k}/{finite.size} {what}"
    return f"{k}/{finite.size - n_div} finite {what}, {n_div} diverged"


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


#: Name of the array every chunk file carries with its trial ids (reserved: ``fn`` must not return it).
TRIAL_IDS = "_trial_ids"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ChunkError(ValueError):
    """A stored trial chunk failed verification (the reason says how)."""


def _in_float64(fn: Callable[[np.ndarray], dict[str, np.ndarray]], idx: np.ndarray) -> dict[str, np.ndarray]:
    """``fn(idx)`` with JAX in float64, as an experiment's run is (:func:`attnsvm.experiments.runner.run_experiment`):
    a chunk computed in a worker process must be the same computation as one computed here."""
    from .._jax import float64

    with float64():
        return fn(idx)


@dataclass(frozen=True)
class TrialStore:
    """One resumable store of :meth:`Context.trials_many`: trials [0, n) of ``key`` in chunks of ``chunk``,
    computed by ``fn(indices)`` (arrays with one row per trial)."""

    key: str
    n: int
    chunk: int
    fn: Callable[[np.ndarray], dict[str, np.ndarray]]
    description: str | None = None


class _StorePlan:
    """A store being filled: its chunks loaded so far, the missing ones, and how a computed chunk is kept."""

    def __init__(self, ctx: Context, spec: TrialStore, folder: Path, advance: Callable[[int], None]) -> None:
        self.ctx, self.spec, self.folder, self.advance = ctx, spec, folder, advance
        self.spans = [(start, min(spec.n, start + spec.chunk)) for start in range(0, spec.n, spec.chunk)]
        self.parts: dict[int, dict[str, np.ndarray]] = {}
        self.missing: list[tuple[int, int]] = []

    def store(self, start: int, stop: int, out: dict) -> None:
        key, n = self.spec.key, self.spec.n
        part = {k: np.asarray(v) for k, v in out.items()}
        if TRIAL_IDS in part:
            raise ValueError(f"trials {key!r}: the array name {TRIAL_IDS!r} is reserved")
        bad = [k for k, v in part.items() if v.shape[:1] != (stop - start,)]
        if bad:
            raise ValueError(f"trials {key!r}: arrays {bad} do not have one row per trial")
        path = self.folder / f"{start:06d}-{stop:06d}.npz"
        self.ctx._save_chunk(key, path, start, stop, part)
        self.ctx.computed_chunks.append(f"{key}/{path.name}")
        if not self.parts and len(self.spans) > 1:
            # the run estimate checked the settings before the start; the first chunk measures what one
            # trial of this experiment really keeps, so a long run cannot fill the memory late
            from ..problem import check_memory

            per = sum(v.nbytes for v in part.values()) / (stop - start)
            check_memory(per * n, f"{n} trials of {key!r} ({per / 1e3:.3g} kB each, measured on the first "
                         "chunk)", "lower --trials (or trials in --config)")
        self.parts[start] = part
        self.advance(stop - start)

    def merged(self) -> dict[str, np.ndarray]:
        key, n = self.spec.key, self.spec.n
        ordered = [self.parts[start] for start, _ in self.spans]
        merged = {k: np.concatenate([p[k] for p in ordered]) for k in ordered[0]}
        rows = {k: v.shape[0] for k, v in merged.items()}
        if any(r != n for r in rows.values()) or any(p.keys() != ordered[0].keys() for p in ordered):
            raise ValueError(f"trials {key!r}: expected {n} trials with the same arrays, got {rows}")
        self.ctx.trial_counts[key] = n
        return merged


class Context:
    """Where an experiment writes (``out``), how it reports progress, and its resumable trial store.

    ``config_hash`` identifies the configuration: a chunk written under another hash is never loaded.
    After the run, ``computed_chunks``, ``loaded_chunks`` and ``recomputed_chunks`` (``"key/file: reason"``)
    say where every chunk came from and ``trial_counts`` how many trials each store holds.
    """

    def __init__(self, out: Path, progress: Any = None, quick: bool = False, config_hash: str = "") -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.quick = quick
        self.config_hash = config_hash
        self._progress = progress  # a rich Progress, or None
        self.computed_chunks: list[str] = []
        self.loaded_chunks: list[str] = []
        self.recomputed_chunks: list[str] = []
        self.trial_counts: dict[str, int] = {}
        self.figures: list[str] = []

    # ---- progress ---------------------------------------------------------------------------------------
    def task(self, description: str, total: int) -> Callable[[int], None]:
        """A progress task; returns ``advance(k)``."""
        if self._progress is None:
            return lambda k=1: None
        tid = self._progress.add_task(description, total=total)
        return lambda k=1: self._progress.update(tid, advance=k)

    # ---- resumable trials -----------------------------------------------------------------------------
    def _load_chunk(self, key: str, path: Path, start: int, stop: int) -> dict[str, np.ndarray]:
        """The arrays of a stored chunk, after checking them against its manifest; ChunkError otherwise."""
        manifest_path = path.with_suffix(".json")
        if not manifest_path.exists():
            raise ChunkError("no manifest")
        try:
            man = json.loads(manifest_path.read_text())
            want = (man["key"], int(man["start"]), int(man["stop"]))
            arrays_spec = {k: (tuple(v["shape"]), str(v["dtype"])) for k, v in man["arrays"].items()}
            digest, chash = str(man["sha256"]), str(man["config_hash"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ChunkError(f"manifest unreadable ({type(exc).__name__})") from None
        if want != (key, start, stop):
            raise ChunkError(f"manifest describes trials {want[1]}–{want[2]} of {want[0]!r}")
        if chash != self.config_hash:
            raise ChunkError("written by another configuration")
        if _sha256(path) != digest:
            raise ChunkError("sha256 differs from the manifest (file changed or truncated)")
        try:
            with np.load(path, allow_pickle=False) as f:
                part = {k: f[k] for k in f.files}
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError, OSError) as exc:
            raise ChunkError(f"unreadable ({type(exc).__name__})") from None
        ids = part.pop(TRIAL_IDS, None)
        if ids is None or not np.array_equal(ids, np.arange(start, stop)):
            raise ChunkError(f"its trial ids are not {start}…{stop - 1}")
        got = {k: (v.shape, v.dtype.str) for k, v in part.items()}
        if got != arrays_spec:
            raise ChunkError("its arrays differ from the manifest (names, shapes or dtypes)")
        if any(v.shape[:1] != (stop - start,) for v in part.values()):
            raise ChunkError(f"it does not hold one row per trial ({stop - start})")
        return part

    def _save_chunk(self, key: str, path: Path, start: int, stop: int, part: dict[str, np.ndarray]) -> None:
        """Write the chunk, then its manifest, each through a temporary file and a rename (atomic)."""
        tmp = path.with_name(path.name + ".partial")  # not *.npz: never mistaken for a chunk
        with open(tmp, "wb") as f:
            np.savez(f, **part, **{TRIAL_IDS: np.arange(start, stop)})
        man = {"key": key, "start": start, "stop": stop, "trials": stop - start,
               "config_hash": self.config_hash, "sha256": _sha256(tmp),
               "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.str} for k, v in part.items()}}
        mtmp = path.with_name(path.name + ".json.partial")
        mtmp.write_text(json.dumps(man, indent=1) + "\n")
        os.replace(tmp, path)
        os.replace(mtmp, path.with_suffix(".json"))

    def trials(self, key: str, n: int, chunk: int, fn: Callable[[np.ndarray], dict[str, np.ndarray]],
               description: str | None = None, client: Any = None) -> dict[str, np.ndarray]:
        """Run ``fn`` on trial indices [0, n) in chunks of ``chunk``; keep every finished chunk on disk.

        ``fn(indices)`` returns arrays whose first axis is the trial (len(indices)). Returns the arrays of
        all n trials in index order. A stored chunk is used only when it verifies against its manifest;
        otherwise it is recomputed (and listed in ``recomputed_chunks`` with the reason). ``client``: a Dask
        client (:func:`attnsvm.cluster.task_client`) on which the missing chunks are computed at once, each
        stored as soon as it is back (an interrupted run keeps them); None (or a single missing chunk) computes
        them here, in order.
        """
        return self.trials_many([TrialStore(key, n, chunk, fn, description)], client)[0]

    def trials_many(self, stores: Sequence[TrialStore], client: Any = None) -> list[dict[str, np.ndarray]]:
        """:meth:`trials` for several stores at once: the missing chunks of all of them are computed together
        (on ``client``'s workers, in the order given, each stored as it returns; with no client, or a single
        missing chunk in all, here and in order). Returns each store's arrays, in the order of ``stores``."""
        plans = [self._plan(s) for s in stores]
        missing = [(plan, start, stop) for plan in plans for start, stop in plan.missing]
        if client is None or len(missing) <= 1:
            for plan, start, stop in missing:
                plan.store(start, stop, _in_float64(plan.spec.fn, np.arange(start, stop)))
        else:
            from distributed import as_completed

            futures = {client.submit(_in_float64, plan.spec.fn, np.arange(start, stop), pure=False):
                       (plan, start, stop) for plan, start, stop in missing}
            for fut in as_completed(list(futures), loop=client.loop):
                plan, start, stop = futures[fut]
                plan.store(start, stop, fut.result())
        return [plan.merged() for plan in plans]

    def _plan(self, spec: TrialStore) -> _StorePlan:
        """Load and verify the stored chunks of ``spec``; the rest are ``missing``."""
        key, n, chunk = spec.key, spec.n, spec.chunk
        if n < 1 or chunk < 1:
            raise ValueError(f"trials: n and chunk must be ≥ 1, got n={n}, chunk={chunk}")
        folder = self.out / "trials" / key
        folder.mkdir(parents=True, exist_ok=True)
        plan = _StorePlan(self, spec, folder, self.task(spec.description or key, n))
        for start, stop in plan.spans:
            path = folder / f"{start:06d}-{stop:06d}.npz"
            if path.exists() or path.with_suffix(".json").exists():
                try:
                    plan.parts[start] = self._load_chunk(key, path, start, stop)
                    self.loaded_chunks.append(f"{key}/{path.name}")
                    plan.advance(stop - start)
                except (ChunkError, OSError) as exc:
                    self.recomputed_chunks.append(f"{key}/{path.name}: {exc}")
        plan.missing = [(start, stop) for start, stop in plan.spans if start not in plan.parts]
        return plan

    # ---- figures ------------------------------------------------------------------------------------------
    def figure(self, fig, name: str) -> str:
        """Save a matplotlib figure as figures/<name>.png and .pdf (in the attnsvm figure style)."""
        from ..plots.common import save_figure

        save_figure(fig, self.out / "figures", name)
        self.figures.append(name)
        return name

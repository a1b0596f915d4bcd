"""``attnsvm reproduce``: configure an experiment, run it in its directory, write tables, arrays, report.

A run directory belongs to one experiment and one configuration. ``run.json`` records which (the
experiment id, the configuration's hash) and the run's status: ``running`` while it runs (and after a
kill or Ctrl-C: rerunning the same command resumes it), ``failed`` when the experiment raised (the next
run, with any configuration, takes the directory over and discards the failed run's trials), ``done``.
A directory holding a finished or interrupted run of another configuration is refused unless
``overwrite``; a directory holding the summary of ``reproduce --all`` (``summary.json``) is never an
experiment's directory, so no run overwrites another run's report.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from ..config import read_toml, to_toml
from ..report import ExperimentReport, experiment_markdown
from ..rundir import check_writable_dir
from ..timing import TimeSplit
from . import get
from .base import Context, config_hash

#: The marker of a ``reproduce --all`` directory (its summary report.md and one folder per experiment).
SUMMARY_MARKER = "summary.json"
RUN_MARKER = "run.json"
_SUMMARY_TITLE = "# attnsvm reproduce: all experiments"


class ResumeConflict(ValueError):
    """The output directory holds another experiment, another configuration, or a summary."""


def resolve_config(exp_id: str, config_file: Path | None = None, trials: int | None = None,
                   steps: int | None = None, quick: bool = False):
    exp = get(exp_id)
    overrides: dict = read_toml(config_file, "--config file") if config_file is not None else {}
    for flag, key, value in (("--trials", "trials", trials), ("--steps", "steps", steps)):
        if value is None:
            continue
        if key not in exp.config_cls.model_fields:
            raise ValueError(f"{flag}: experiment {exp_id} has no '{key}' setting")
        overrides = {**overrides, key: value}
    cfg = exp.configure(overrides, quick=quick)
    # --trials / --steps given on the command line win over the quick settings
    cli = {k: v for k, v in (("trials", trials), ("steps", steps)) if v is not None}
    if cli:
        cfg = exp.config_cls.model_validate({**cfg.model_dump(), **cli})
    return exp, cfg


def is_summary_dir(path: Path) -> bool:
    """Whether ``path`` holds the summary of ``reproduce --all`` (today's marker or an older report.md)."""
    path = Path(path)
    if (path / SUMMARY_MARKER).exists():
        return True
    report = path / "report.md"
    try:
        return report.is_file() and report.read_text(errors="replace").startswith(_SUMMARY_TITLE)
    except OSError:
        return False


def read_run_state(out: Path) -> dict | None:
    """``run.json`` of a run directory (an older directory's ``config.hash`` reads as an interrupted run)."""
    out = Path(out)
    try:
        state = json.loads((out / RUN_MARKER).read_text())
        if isinstance(state, dict):
            return state
    except (OSError, ValueError):
        pass
    stamp = out / "config.hash"
    if stamp.is_file():
        return {"experiment": None, "config_hash": stamp.read_text().strip(), "status": "running"}
    return None


def _clear(out: Path) -> None:
    """Remove what an experiment run writes into its directory (nothing else)."""
    for name in ("trials", "figures"):
        shutil.rmtree(out / name, ignore_errors=True)
    for p in out.iterdir():
        if p.is_file() and (p.suffix in (".parquet", ".csv", ".md") or p.name in (
                "results.npz", "config.toml", "config.hash", RUN_MARKER)):
            p.unlink()


def prepare_run_dir(exp_id: str, out: Path, h: str, overwrite: bool = False) -> str:
    """Make ``out`` the directory of experiment ``exp_id`` with configuration hash ``h``; return a note.

    Resume when it holds the same experiment and configuration; take it over when it holds a failed
    run; otherwise refuse (ResumeConflict) unless ``overwrite``.
    """
    out = Path(out)
    check_writable_dir(out)
    if is_summary_dir(out):
        raise ResumeConflict(f"{out} holds the summary of `attnsvm reproduce --all`; give the experiment's own "
                             f"folder {out / exp_id} (or a new folder) as --out")
    note = ""
    state = read_run_state(out) if out.exists() else None
    if state is None and out.exists() and any(out.iterdir()):
        raise ResumeConflict(f"{out} is not empty and holds no attnsvm run; give a new or empty folder as --out")
    if state is not None:
        other_exp = state.get("experiment")
        same = state.get("config_hash") == h and other_exp in (None, exp_id)
        if not same:
            status = state.get("status", "running")
            what = (f"a run of {other_exp}" if other_exp not in (None, exp_id)
                    else f"a {'finished' if status == 'done' else 'interrupted'} run of another configuration"
                         f" of {exp_id}")
            if status == "failed":
                note = "the directory held a failed run of another configuration: its trials were discarded"
            elif overwrite:
                note = f"--overwrite: {what} was replaced"
            else:
                raise ResumeConflict(f"{out} holds {what}; use --overwrite to replace it, or another --out "
                                     "(the same command as that run resumes it)")
            _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    return note


def _write_state(out: Path, exp_id: str, h: str, status: str, **extra) -> None:
    state = {"experiment": exp_id, "config_hash": h, "status": status, **extra}
    tmp = out / (RUN_MARKER + ".tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    tmp.replace(out / RUN_MARKER)


def experiment_bytes(cfg) -> tuple[float, str]:
    """(bytes, what) of an experiment's trials by the run estimate :func:`attnsvm.runs.run_bytes`, from the
    settings the experiment has: ``trials``, the problem shape (n, T, d; the largest of ``ds`` / ``Ts``),
    and the records (``steps // record_every + 1`` or ``records``); the attention weights are d × d. The
    shape of an experiment that fixes it in code (the P1 toy problems) counts as (n, T, d) = (8, 8, 8)."""
    from ..runs import run_bytes

    def largest(name: str, default: int) -> int:
        v = getattr(cfg, name, None)
        if v is None:
            v = getattr(cfg, name + "s", None)
        vals = [int(x) for x in (v if isinstance(v, (list, tuple)) else [v]) if isinstance(x, (int, np.integer))
                and not isinstance(x, bool)] if v is not None else []
        return max(vals) if vals else default

    trials = largest("trials", 1)
    n, T, d = largest("n", 8), largest("T", 8), largest("d", 8)
    steps = largest("steps", 1)
    every = getattr(cfg, "record_every", None)
    records = (steps // every + 1) if isinstance(every, int) and every > 0 else largest("records", 1)
    per_record = 32 + n + d * d
    nbytes = run_bytes(trials, records, d * d, n * T * d + n * (d + T + 2), trials, per_record)
    return nbytes, f"{trials} trials of (n, T, d) = ({n}, {T}, {d}) with {records} records"


def check_experiment_memory(exp_id: str, cfg) -> None:
    """Refuse (ValueError, one line with the estimate) an experiment whose trials do not fit in memory."""
    from ..problem import check_memory

    nbytes, what = experiment_bytes(cfg)
    check_memory(nbytes, what, "lower --trials (or trials in --config)")


def run_experiment(exp_id: str, out: Path, config_file: Path | None = None, trials: int | None = None,
                   steps: int | None = None, quick: bool = False, progress=None,
                   overwrite: bool = False) -> ExperimentReport:
    """Run one experiment into ``out`` (resuming finished trials) and write its report."""
    exp, cfg = resolve_config(exp_id, config_file, trials, steps, quick)
    check_experiment_memory(exp.id, cfg)  # before any file is written or array allocated
    out = Path(out)
    h = config_hash(cfg)
    note = prepare_run_dir(exp.id, out, h, overwrite=overwrite)
    (out / "config.hash").unlink(missing_ok=True)  # superseded by run.json
    _write_state(out, exp.id, h, "running")
    config_text = to_toml(cfg.model_dump(mode="json"))
    (out / "config.toml").write_text(config_text)
    ctx = Context(out, progress=progress, quick=quick, config_hash=h)
    t0 = time.perf_counter()
    from .._jax import float64

    split = TimeSplit()  # where the time goes: compile, run, solvers, figures, I/O, workers
    try:
        with split, float64():  # the caller's JAX precision is left as it was
            outcome = exp.run(cfg, ctx)
    except Exception as exc:
        _write_state(out, exp.id, h, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    t_io = time.perf_counter()
    for name, df in outcome.tables.items():
        df.to_parquet(out / f"{name}.parquet", index=False)
        df.to_csv(out / f"{name}.csv", index=False)
    if outcome.arrays:
        np.savez(out / "results.npz", **outcome.arrays)
    time_split = split.seconds
    time_split["io"] += time.perf_counter() - t_io
    seconds = time.perf_counter() - t0
    notes = list(outcome.notes) + ([note] if note else [])
    if ctx.recomputed_chunks:
        notes.append(f"{len(ctx.recomputed_chunks)} stored trial chunk(s) failed verification and were "
                     "recomputed: " + "; ".join(ctx.recomputed_chunks))
    rep = ExperimentReport(id=exp.id, title=exp.title, paper=exp.paper, claims=outcome.claims, seconds=seconds,
                           figures=list(dict.fromkeys(ctx.figures + outcome.figures)), notes=notes,
                           config=config_text, computed_chunks=len(ctx.computed_chunks),
                           loaded_chunks=len(ctx.loaded_chunks), recomputed_chunks=len(ctx.recomputed_chunks),
                           trial_counts=dict(ctx.trial_counts), time_split=time_split)
    (out / "report.md").write_text(experiment_markdown(rep))
    _write_state(out, exp.id, h, "done", seconds=round(seconds, 3))
    return rep


def write_summary(out: Path, reports: list[ExperimentReport], quick: bool, markdown: str) -> None:
    """The summary of ``reproduce --all`` and its marker."""
    out = Path(out)
    (out / SUMMARY_MARKER).write_text(json.dumps({"experiments": [r.id for r in reports], "quick": quick},
                                                 indent=1) + "\n")
    (out / "report.md").write_text(markdown)

"""``attnsvm reproduce``: configure an experiment, run it in its directory, write tables, arrays, report."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..config import read_toml, to_toml
from ..report import ExperimentReport, experiment_markdown
from . import get
from .base import Context, config_hash


class ResumeConflict(ValueError):
    """The output directory holds trials of a different configuration."""


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


def run_experiment(exp_id: str, out: Path, config_file: Path | None = None, trials: int | None = None,
                   steps: int | None = None, quick: bool = False, progress=None) -> ExperimentReport:
    """Run one experiment into ``out`` (resuming finished trials) and write its report."""
    exp, cfg = resolve_config(exp_id, config_file, trials, steps, quick)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / "config.hash"
    h = config_hash(cfg)
    if stamp.exists() and stamp.read_text().strip() != h and (out / "trials").exists():
        raise ResumeConflict(f"{out} holds trials of a different configuration of {exp_id}; "
                             "use another --out (or delete that directory) to start afresh")
    stamp.write_text(h + "\n")
    config_text = to_toml(cfg.model_dump(mode="json"))
    (out / "config.toml").write_text(config_text)
    ctx = Context(out, progress=progress, quick=quick)
    t0 = time.perf_counter()
    from .._jax import float64
    from ..plots.common import paper_style

    with float64(), paper_style():  # the caller's JAX precision and matplotlib style are left as they were
        outcome = exp.run(cfg, ctx)
    seconds = time.perf_counter() - t0
    for name, df in outcome.tables.items():
        df.to_parquet(out / f"{name}.parquet", index=False)
        df.to_csv(out / f"{name}.csv", index=False)
    if outcome.arrays:
        np.savez(out / "results.npz", **outcome.arrays)
    rep = ExperimentReport(id=exp.id, title=exp.title, paper=exp.paper, claims=outcome.claims, seconds=seconds,
                           figures=list(dict.fromkeys(ctx.figures + outcome.figures)), notes=outcome.notes,
                           config=config_text, computed_chunks=len(ctx.computed_chunks),
                           loaded_chunks=len(ctx.loaded_chunks))
    (out / "report.md").write_text(experiment_markdown(rep))
    return rep

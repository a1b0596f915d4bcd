"""``attnsvm kkt RUN_DIR``: ε-KKT certificates of the final directions of a training run.

Reads ``config.toml`` (problem, parameterization, references) and ``final.npz`` (W or p per trial, and the
factored / diagonal blocks) written by ``attnsvm train``, and certifies every trial's direction against the
Att-SVMs at its reached selection (``attnsvm.kkt``). Exit 2 with one line on bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from .svm import KKT_DEFAULT_NORM as DEFAULT_NORM
from .svm import KKT_RANK_TOL as RANK_TOL
from .svm import kkt_norm_variable, kkt_table
from .svm._kkt import PARAMETER_SPACE


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def run_kkt(run_dir: Path, norms: list[str] | None = None, selection: str = "reached",
            rank_tol: float | None = RANK_TOL):
    """The certificate table (pandas) of a run directory: one row per (trial, problem).

    norms: convex Att-SVMs to certify against; default the config's ``run.references``, else the natural
    norm of the parameterization (prompt → l2, combined → fro, factored → nuclear, diagonal → l1). Factored
    and diagonal runs are certified in parameter space as well (rows ``factored`` / ``diagonal``: the problem
    min ½‖φ‖² s.t. margins ≥ 1 in the blocks φ = (K, Q) or (k, q)); for the other parameterizations that
    problem is the convex one or not defined (:func:`parameter_space_note`).
    """
    from .config import ConfigError, load_config
    from .runs import build_problems

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"RUN_DIR: not a directory: {run_dir}")
    for name in ("config.toml", "final.npz"):
        if not (run_dir / name).exists():
            raise ValueError(f"RUN_DIR: {run_dir / name} is missing (write the run with `attnsvm train CONFIG "
                             f"--out {run_dir}`)")
    try:
        cfg = load_config(run_dir / "config.toml")
        problems = build_problems(cfg, run_dir)
    except (ConfigError, FileNotFoundError) as exc:
        raise ValueError(f"{run_dir / 'config.toml'}: {exc}") from None
    param = cfg.model.parameterization
    with np.load(run_dir / "final.npz") as f:
        arrays = {k: f[k] for k in f.files}
    key = "p" if param == "prompt" else "W"
    if key not in arrays:
        raise ValueError(f"{run_dir / 'final.npz'}: no '{key}' array (not written by `attnsvm train`?)")
    if norms is None:
        norms = list(cfg.run.references) or [DEFAULT_NORM[param]]
    for nm in norms:
        try:
            variable = kkt_norm_variable(nm)
        except ValueError as exc:
            raise ValueError(f"--{exc}") from None
        if (variable == "prompt") != (param == "prompt"):
            raise ValueError(f"--norm: {nm!r} does not apply to the {param} model (the prompt model has the l2 / "
                             "lp-prompt:P SVMs of p; W-models have fro, nuclear, l1 (diagonal), lp:P)")
        if nm == "l1" and param != "diagonal":
            raise ValueError("--norm: l1 is the Att-SVM of diagonal W; this run trains a full W "
                             f"({param}): use fro or nuclear")
    blocks = {"factored": ("K", "Q"), "diagonal": ("k", "q")}.get(param)
    params = {k: arrays[k] for k in blocks} if blocks and all(k in arrays for k in blocks) else None
    return kkt_table(problems, arrays[key], norms, params=params, selection=selection, rank_tol=rank_tol)


def parameter_space_note(parameterization: str) -> str | None:
    """Why a run of ``parameterization`` has no parameter-space certificate (None if it has one)."""
    if parameterization in PARAMETER_SPACE:
        return None
    if parameterization in ("combined", "prompt"):
        what = "W" if parameterization == "combined" else "p"
        svm = "Frobenius" if parameterization == "combined" else "ℓ2"
        return (f"parameter space: does not apply to the {parameterization} model — its parameter is {what} "
                f"itself, so min ½‖{what}‖² s.t. margins ≥ 1 is the {svm} Att-SVM (certify it with --norm "
                f"{'fro' if what == 'W' else 'l2'})")
    return (f"parameter space: not available for the {parameterization} model (certificates exist for "
            "factored (K, Q) and diagonal (k, q) parameters)")


def _cell(x) -> str:
    if isinstance(x, float):
        return f"{x:.2e}" if np.isfinite(x) else "—"
    return "—" if x is None else str(x)


def _parameterization(run_dir: Path) -> str:
    from .config import load_config

    return load_config(Path(run_dir) / "config.toml").model.parameterization


def register(app: typer.Typer) -> None:
    """Add the ``kkt`` command to ``app``."""

    @app.command("kkt")
    def kkt_cmd(
        run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory of `attnsvm train`.")],
        norm: Annotated[list[str] | None, typer.Option(
            "--norm", help="Att-SVM norm (repeatable): l2 (prompt) | fro | nuclear | l1 (diagonal) | lp:P | "
                           "lp-prompt:P (entrywise ℓp, 1 ≤ P < ∞). Default: the config's references, else the "
                           "parameterization's own.")] = None,
        selection: Annotated[str, typer.Option(
            "--selection", help="reached (argmax attention of each direction) | opt.")] = "reached",
        rank_tol: Annotated[float | None, typer.Option(
            "--rank-tol", help="Singular values / entries ≤ this × the largest count as zero (default: "
                               "try every rank, keep the smallest ε).")] = RANK_TOL,
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of rows.")] = False,
    ) -> None:
        """ε-KKT certificates of a run's final directions: stationarity, complementarity, primal, gap; for
        factored (K, Q) and diagonal (k, q) runs also in parameter space (rows "factored" / "diagonal")."""
        if selection not in ("reached", "opt"):
            _fail(f"--selection: must be 'reached' or 'opt', got {selection!r}")
        try:
            table = run_kkt(run_dir, norm, selection, rank_tol)
        except ValueError as exc:
            _fail(str(exc))
        if as_json:
            rows = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
                    for r in table.to_dict(orient="records")]
            typer.echo(json.dumps(rows, allow_nan=False, default=float))
            return
        t = Table(title=f"ε-KKT of the final directions in {run_dir}")
        cols = {"trial": "trial", "problem": "problem", "stationarity": "stationarity",
                "complementarity": "compl.", "primal": "primal", "gap": "gap", "epsilon": "ε", "rank": "rank",
                "discarded": "discarded"}
        for c in cols.values():
            t.add_column(c)
        for r in table.to_dict(orient="records"):
            if r["status"] != "separating":
                t.add_row(str(r["trial"]), r["problem"], "not separating", "", f"{r['primal']:.2e}", "", "∞", "",
                          "")
                continue
            t.add_row(*[_cell(r[c]) for c in cols])
        console = Console(width=max(Console().width, 110))
        console.print(t)
        note = parameter_space_note(_parameterization(run_dir))
        if note:
            console.print(note)

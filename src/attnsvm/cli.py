"""The ``attnsvm`` command line (typer). Every command reports bad input on stderr with a non-zero exit."""

from __future__ import annotations

from contextlib import ExitStack, nullcontext
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The implicit bias of softmax attention: train, solve Att-SVMs, reproduce the papers.")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root(no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the on-disk cache of compiled "
                                        "programs (also: ATTNSVM_NO_CACHE=1); see `attnsvm cache info`.")
          ) -> None:
    """attnsvm: train attention, solve Att-SVMs, certify tokens, reproduce the papers."""
    from ._jax import enable_x64
    from .cache import configure_from_cli

    enable_x64()  # the command line is its own process: float64 throughout
    configure_from_cli(no_cache)


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)  # one line, never wrapped
    raise typer.Exit(code)


@app.command()
def train(
    config: Path = typer.Argument(..., help="TOML config with the tables problem, model, optimizer, init, run."),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (default runs/<config name>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run of another config in --out."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train one-layer attention as CONFIG says and write config, metrics.parquet, final.npz, summary.md.

    --out must be new, empty, or hold a run of the same config (it is run again); --overwrite replaces a run
    of another config. A relative [problem] file is read from CONFIG's folder."""
    from .config import ConfigError, load_config
    from .runs import summary_rows, train_from_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        fail(f"{config}: {exc}")
    out = out or Path("runs") / config.stem
    try:
        result, verdict = train_from_config(cfg, out, progress=progress, base_dir=config.parent,
                                            overwrite=overwrite)
    except KeyboardInterrupt:
        fail(f"interrupted: {out} was not written (a run writes its files when it ends); "
             f"`attnsvm train {config} --out {out}` starts it again", code=130)
    except (ConfigError, ValueError, OSError) as exc:
        fail(f"{config}: {exc}")
    table = Table(title=f"attnsvm train {config.name} → {out}")
    table.add_column("quantity")
    table.add_column("value")
    for k, v in summary_rows(result, verdict):
        table.add_row(k, v)
    console.print(table)


@app.command("list")
def list_experiments() -> None:
    """The reproducible experiments of the papers, one line each."""
    from .experiments import all_experiments

    table = Table(title="attnsvm reproduce ID")
    for col in ("id", "paper", "what"):
        table.add_column(col)
    for exp in all_experiments():
        table.add_row(exp.id, exp.paper, exp.title)
    console.print(table)


@app.command()
def reproduce(
    exp_id: str = typer.Argument(None, metavar="ID", help="Experiment id (see `attnsvm list`)."),
    all_: bool = typer.Option(False, "--all", help="Run every experiment."),
    config: Path = typer.Option(None, "--config", help="TOML file overriding the paper's settings."),
    trials: int = typer.Option(None, "--trials", min=1, help="Number of trials (where the experiment has them)."),
    steps: int = typer.Option(None, "--steps", min=1, help="Number of steps (where the experiment has them)."),
    out: Path = typer.Option(
        None, "--out", "-o", help="With ID: that experiment's folder. With --all: the folder of the summary, "
        "one subfolder per id. Default runs/reproduce[-quick]/ID (and runs/reproduce[-quick] for --all)."),
    quick: bool = typer.Option(False, "--quick", help="Small settings: every experiment in seconds."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace a run of another configuration in the output folder."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    jobs: int = typer.Option(None, "--jobs", "-j", min=1, show_default="the cores this process may use",
                             help="With --all: experiments run at once, each in its own worker process (a local "
                             "Dask cluster; no progress bars, a table as each ends); those with parallel parts "
                             "of their own run after, in this process, their parts on the same workers. "
                             "1: all in this process, one by one."),
) -> None:
    """Reproduce an experiment of the papers (or --all): figures, tables, arrays and report.md in --out.

    Finished trials are kept on disk: rerunning the same command resumes an interrupted run. A --quick run
    is a different configuration, so by default it goes to runs/reproduce-quick, never into a full run.
    """
    import time

    from .experiments import all_experiments, get
    from .experiments.runner import RUN_MARKER, run_experiment, write_summary
    from .report import rich_table, summary_markdown, time_split_rich
    from .rundir import check_writable_dir

    if all_ == (exp_id is not None):
        fail("give one experiment ID or --all (see `attnsvm list`)")
    try:
        exps = all_experiments() if all_ else [get(exp_id)]
    except ValueError as exc:
        fail(str(exc))
    if all_ and config is not None:
        fail("--config applies to one experiment; run `attnsvm reproduce ID --config FILE`")
    base = out if out is not None else Path("runs/reproduce-quick" if quick else "runs/reproduce")
    if all_:
        try:
            check_writable_dir(base)
        except ValueError as exc:
            fail(str(exc))
        if (base / RUN_MARKER).exists():
            fail(f"--out {base} is the folder of one experiment's run; give another folder for --all")
    if jobs is not None and jobs > 1 and not all_:
        fail("--jobs applies to --all (one experiment uses its own parallel parts: see its `workers` setting)")
    jobs_given = jobs  # what the resume command repeats
    if jobs is None:
        from .cluster import default_workers

        # measured on 2 cores (docs/benchmarks.md): 240–312 s against 269–322 s one by one, the same arrays
        jobs = min(default_workers(), len(exps)) if all_ else 1
    reports: dict[str, object] = {}
    t0 = time.perf_counter()
    from .progress import make_progress

    def target_of(exp):
        return base / exp.id if (all_ or out is None) else out

    def again_of(exp):
        target = target_of(exp)
        return " ".join(["attnsvm", "reproduce", "--all" if all_ else exp.id, *(["--quick"] if quick else []),
                         *([f"--jobs {jobs_given}"] if jobs_given is not None else []),
                         *([f"--config {config}"] if config else []), *([f"--trials {trials}"] if trials else []),
                         *([f"--steps {steps}"] if steps else []), "--out", str(base if all_ else target)])

    def show(rep, target) -> None:
        console.print(rich_table(rep))
        console.print(f"→ {target / 'report.md'}")

    serial = list(exps)
    with ExitStack() as stack:  # the cluster of --jobs > 1 is closed however the block ends
        if jobs > 1:
            # experiments with parallel parts of their own run here, not inside a worker: their parts go to the
            # workers
            try:
                own = {e.id for e in exps if getattr(e.configure(quick=quick), "workers", 1) > 1}
            except ValueError as exc:
                fail(str(exc))
            pooled = [e for e in exps if e.id not in own]
            serial = [e for e in exps if e.id in own]
            from .cluster import dask_client

            client = stack.enter_context(dask_client(workers=jobs, reuse=False))
            reports.update(_reproduce_in_workers(pooled, jobs, target_of, again_of, show, trials, steps, quick,
                                                 overwrite, client=client))
            # the others then run their parallel parts on the same worker processes (the active client of this
            # block): no cluster to start and stop per experiment
            stack.enter_context(client.as_current())
        bar = make_progress(console=err_console, enabled=progress)
        with bar if bar is not None else nullcontext():
            for exp in serial:
                target = target_of(exp)
                try:
                    rep = run_experiment(exp.id, target, config_file=config, trials=trials, steps=steps,
                                         quick=quick, progress=bar, overwrite=overwrite)
                except KeyboardInterrupt:
                    if bar is not None:
                        bar.stop()
                    fail(f"{exp.id}: interrupted; finished trials are kept in {target / 'trials'}: "
                         f"`{again_of(exp)}` resumes", code=130)
                except (ValueError, OSError) as exc:
                    fail(f"{exp.id}: {exc}")
                reports[exp.id] = rep
                show(rep, target)
    reports = [reports[e.id] for e in exps]  # catalog order, whatever order they finished in
    if all_:
        write_summary(base, reports, quick, summary_markdown(reports))
        console.print(time_split_rich(reports))
        console.print(f"all experiments: {time.perf_counter() - t0:.1f} s → {base / 'report.md'}")


def _reproduce_in_workers(exps, jobs: int, target_of, again_of, show, trials, steps, quick: bool,
                          overwrite: bool, client) -> dict:
    """Run ``exps`` on the ``jobs`` worker processes of the Dask ``client`` (one experiment per task; each
    writes its own folder, so an interrupted run resumes as a serial one does); reports as they finish."""
    if not exps:
        return {}
    from distributed import as_completed

    from .experiments.runner import run_experiment

    out: dict = {}
    console.print(f"{len(exps)} experiments on {jobs} worker processes (no progress bars; a table as each ends)")
    futures = {client.submit(run_experiment, e.id, target_of(e), trials=trials, steps=steps, quick=quick,
                             progress=None, overwrite=overwrite, pure=False, key=f"reproduce-{e.id}"): e
               for e in exps}
    try:
        for fut in as_completed(list(futures), loop=client.loop):
            exp = futures[fut]
            try:
                rep = fut.result()
            except (ValueError, OSError) as exc:
                fail(f"{exp.id}: {exc}")
            out[exp.id] = rep
            show(rep, target_of(exp))
    except KeyboardInterrupt:
        fail(f"interrupted; finished trials are kept in each experiment's trials/ folder: "
             f"`{again_of(exps[0])}` resumes", code=130)
    return out


from . import cli_geometry  # noqa: E402  (registers `solve` and `tokens`)

cli_geometry.register(app)

from . import cli_problem  # noqa: E402  (registers `problem`)

cli_problem.register(app)

from . import cli_kkt  # noqa: E402  (registers `kkt`)

cli_kkt.register(app)

from . import cli_sweep  # noqa: E402  (registers `sweep`)

cli_sweep.register(app)
cli_sweep.register_cache(app)


def main() -> None:  # pragma: no cover - entry point
    app()

"""``attnsvm sweep`` (a grid of training configs on a Dask cluster, :mod:`attnsvm.sweep`) and ``attnsvm cache``
(the on-disk cache of compiled programs, :mod:`attnsvm.cache`)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table


def register(app: typer.Typer) -> None:
    from .cli import console, err_console, fail

    @app.command()
    def sweep(
        sweep_file: Path = typer.Argument(None, metavar="SWEEP.toml",
                                          help="A training config plus \\[sweep] grid = {...} / zip = {...}."),
        out: Path = typer.Option(None, "--out", "-o", help="Sweep directory (results, manifests, status)."),
        scheduler: str = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler "
                                      "(tcp://HOST:8786); default: a local cluster."),
        workers: int = typer.Option(None, "--workers", min=1, help="Worker processes of the local cluster "
                                    "(default: the cores)."),
        retries: int = typer.Option(2, "--retries", min=0, help="Extra attempts of a point that raises."),
        status: Path = typer.Option(None, "--status", help="Summarize the sweep in this directory and exit."),
        progress: bool = typer.Option(True, help="Show progress (a bar on a terminal, else one line per point)."),
    ) -> None:
        """Run every point of a sweep as one Dask task into --out; rerunning skips the verified points.

        Results: `attnsvm.load_sweep(DIR)` (one row per point × trial), DIR/trials and DIR/records (hive
        Parquet datasets), DIR/points/ID/final.npz.
        """
        from .sweep import SweepError, load_sweep_file, run_sweep, sweep_status

        if status is not None:
            if sweep_file is not None:
                fail("give either SWEEP.toml --out DIR or --status DIR")
            try:
                st = sweep_status(status)
            except SweepError as exc:
                fail(str(exc))
            _print_status(console, status, st)
            return
        if sweep_file is None or out is None:
            fail("give SWEEP.toml and --out DIR (or --status DIR)")
        if scheduler is not None and workers is not None:
            fail("--workers sizes the local cluster; with --scheduler the cluster's own workers run the points")
        try:
            sw = load_sweep_file(sweep_file)
        except SweepError as exc:
            fail(f"{sweep_file}: {exc}")
        sink = _ProgressSink(err_console if progress else None, len(sw.points))
        try:
            with sink:
                rep = run_sweep(sw, out, scheduler=scheduler, workers=workers, retries=retries,
                                on_event=sink.event)
        except OSError as exc:
            fail(f"cannot reach the Dask scheduler {scheduler}: {exc}" if scheduler else str(exc))
        console.print(f"sweep {sweep_file.name} → {out}: {len(rep.computed)} computed, {len(rep.skipped)} "
                      f"already done (verified), {len(rep.failed)} failed; {rep.seconds:.1f} s", highlight=False)
        for pid, why in rep.recomputed.items():
            console.print(f"  recomputed {pid}: stored result {why}", highlight=False)
        for pid, err in rep.failed.items():
            console.print(f"  [red]failed[/] {sw.point(pid).label()}: {err}", highlight=False)
        if rep.failed:
            raise typer.Exit(1)


class _ProgressSink:
    """A rich bar over points on a terminal; plain lines (one per point) otherwise."""

    def __init__(self, console, total: int) -> None:
        self.console, self.total, self.n = console, total, 0
        self.bar = None
        if console is not None and console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TextColumn("{task.description}"), console=console)
            self.task = self.bar.add_task("", total=total)

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def _line(self, text: str) -> None:
        if self.console is None:
            return
        if self.bar is not None:
            self.bar.console.print(text, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def event(self, kind: str, point, info: dict) -> None:
        if kind == "start":
            self._line(f"sweep: {info['todo']} of {info['total']} points to compute")
            return
        self.n += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=f"{point.id} {kind}")
        if kind == "done":
            self._line(f"[{self.n}/{self.total}] done {point.label()} in {info['seconds']:.1f} s on "
                       f"{info['worker']}")
        elif kind == "fail":
            self._line(f"[{self.n}/{self.total}] FAILED {point.label()}: {info['error']}: {info['message']}")
        elif kind == "skip" and self.bar is None:
            self._line(f"[{self.n}/{self.total}] already done {point.label()}")


def _print_status(console, out: Path, st: dict) -> None:
    table = Table(title=f"attnsvm sweep {out}")
    for col in ("state", "points"):
        table.add_column(col)
    for state in ("done", "failed", "pending"):
        table.add_row(state, str(len(st[state])))
    console.print(table)
    for pt, err in st["failed"]:
        console.print(f"failed {pt.label()}: {err}", highlight=False)
    for pt, why in st["pending"]:
        if why:
            console.print(f"pending {pt.label()}: stored result {why}", highlight=False)


def register_cache(app: typer.Typer) -> None:
    from .cli import console

    cache_app = typer.Typer(no_args_is_help=True, help="The on-disk cache of compiled programs (JAX's "
                            "persistent compilation cache), on by default for every attnsvm command.")
    app.add_typer(cache_app, name="cache")

    @cache_app.command("info")
    def cache_info_cmd() -> None:
        """Where the cache is, how many programs it holds and its size."""
        from .cache import ENV_DIR, ENV_OFF, cache_info

        info = cache_info()
        console.print(f"cache directory: {info['dir']} (set {ENV_DIR} to move it)", highlight=False)
        console.print(f"entries: {info['entries']}, size: {info['bytes'] / 2**20:.1f} MiB", highlight=False)
        state = "on" if info["enabled_by_default"] else f"off ({ENV_OFF} is set)"
        console.print(f"for attnsvm commands: {state}; `attnsvm --no-cache COMMAND` turns it off for one run",
                      highlight=False)

    @cache_app.command("clear")
    def cache_clear_cmd() -> None:
        """Delete every compiled program in the cache (the next run of each program compiles again)."""
        from .cache import cache_dir, clear_cache

        n = clear_cache()
        console.print(f"removed {n} files from {cache_dir()}", highlight=False)

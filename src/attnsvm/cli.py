"""The ``attnsvm`` command line (typer). Every command reports bad input on stderr with a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The implicit bias of softmax attention: train, solve Att-SVMs, reproduce the papers.")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """attnsvm: train attention, solve Att-SVMs, certify tokens, reproduce the papers."""


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@app.command()
def train(
    config: Path = typer.Argument(..., help="TOML config ([problem], [model], [optimizer], [init], [run])."),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (default runs/<config name>)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train one-layer attention as CONFIG says and write config, metrics.parquet, final.npz, summary.md."""
    from .config import ConfigError, load_config
    from .runs import summary_rows, train_from_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        fail(f"{config}: {exc}")
    out = out or Path("runs") / config.stem
    try:
        result = train_from_config(cfg, out, progress=progress, base_dir=config.parent)
    except ConfigError as exc:
        fail(f"{config}: {exc}")
    table = Table(title=f"attnsvm train {config.name} → {out}")
    table.add_column("quantity")
    table.add_column("value")
    for k, v in summary_rows(result):
        table.add_row(k, v)
    console.print(table)


from . import cli_geometry  # noqa: E402  (registers `solve` and `tokens`)

cli_geometry.register(app)


def main() -> None:  # pragma: no cover - entry point
    app()

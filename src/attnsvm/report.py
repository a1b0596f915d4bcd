"""Reports: the claims of each reproduced experiment as Markdown tables (report.md) and rich tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .experiments.base import Claim


@dataclass
class ExperimentReport:
    id: str
    title: str
    paper: str
    claims: list[Claim]
    seconds: float
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    config: str = ""
    computed_chunks: int = 0
    loaded_chunks: int = 0
    recomputed_chunks: int = 0
    trial_counts: dict[str, int] = field(default_factory=dict)
    #: seconds by category: compile, run, solvers, figures, io, workers (attnsvm.timing)
    time_split: dict[str, float] = field(default_factory=dict)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def claims_table(claims: Sequence[Claim], with_id: str | None = None) -> list[str]:
    head = "| " + ("experiment | " if with_id else "") + "claim | paper | measured | verdict | note |"
    lines = [head, "|" + "---|" * (6 if with_id else 5)]
    for c in claims:
        row = [c.claim, c.paper, c.measured, f"**{c.verdict}**", c.note]
        if with_id:
            row.insert(0, with_id)
        lines.append("| " + " | ".join(_cell(x) for x in row) + " |")
    return lines


def experiment_markdown(rep: ExperimentReport, figure_dir: str = "figures") -> str:
    recomputed = (f", {rep.recomputed_chunks} recomputed after failing verification"
                  if rep.recomputed_chunks else "")
    stores = rep.trial_counts
    counts = (f"{sum(stores.values())} trials in {len(stores)} store(s)"
              + (": " + ", ".join(f"{k} {v}" for k, v in stores.items()) if len(stores) <= 8 else "")
              if stores else "")
    lines = [f"# {rep.id}: {rep.title}", "", f"Paper: {rep.paper}. Wall time: {rep.seconds:.1f} s "
             f"({rep.computed_chunks} trial chunks computed, {rep.loaded_chunks} loaded from a previous run"
             f"{recomputed}).", ""]
    if counts:
        lines += [f"Trials: {counts}.", ""]
    if rep.time_split:
        lines += ["Where the time went: " + ", ".join(f"{k} {v:.1f} s" for k, v in rep.time_split.items()) + ".",
                  ""]
    lines += claims_table(rep.claims)
    if rep.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in rep.notes]
    if rep.figures:
        lines += ["", "## Figures", ""] + [f"![{f}]({figure_dir}/{f}.png)" for f in rep.figures]
    if rep.config:
        lines += ["", "## Config", "", "```toml", rep.config.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def summary_markdown(reports: Sequence[ExperimentReport]) -> str:
    total = sum(r.seconds for r in reports)
    lines = ["# attnsvm reproduce: all experiments", "",
             f"Total wall time {total:.1f} s. Each experiment's directory has its own report.md, figures, "
             "tables and arrays.", "", "| experiment | title | time (s) | reproduced | differs | corrected | new |",
             "|---|---|---|---|---|---|---|"]
    for r in reports:
        counts = {v: sum(c.verdict == v for c in r.claims) for v in ("reproduced", "differs", "corrected", "new")}
        lines.append(f"| [{r.id}]({r.id}/report.md) | {_cell(r.title)} | {r.seconds:.1f} | {counts['reproduced']} "
                     f"| {counts['differs']} | {counts['corrected']} | {counts['new']} |")
    lines += time_split_table(reports)
    lines += ["", "## Every claim", ""]
    for r in reports:
        lines += claims_table(r.claims, with_id=r.id)[2 if r is not reports[0] else 0:]
    return "\n".join(lines) + "\n"


def time_split_table(reports: Sequence[ExperimentReport]) -> list[str]:
    """Where the time of each experiment went (seconds; sampled, see attnsvm.timing), as Markdown lines."""
    reps = [r for r in reports if r.time_split]
    if not reps:
        return []
    cats = list(reps[0].time_split)
    lines = ["", "## Where the time goes (s)", "", "| experiment | total | " + " | ".join(cats) + " |",
             "|---|" + "---|" * (len(cats) + 1)]
    for r in reps:
        lines.append(f"| {r.id} | {r.seconds:.1f} | " + " | ".join(f"{r.time_split.get(c, 0.0):.1f}" for c in cats)
                     + " |")
    tot = {c: sum(r.time_split.get(c, 0.0) for r in reps) for c in cats}
    lines.append(f"| all | {sum(r.seconds for r in reps):.1f} | " + " | ".join(f"{tot[c]:.1f}" for c in cats)
                 + " |")
    return lines


def time_split_rich(reports: Sequence[ExperimentReport]):
    """The where-the-time-goes table for the terminal."""
    from rich.table import Table

    reps = [r for r in reports if r.time_split]
    cats = list(reps[0].time_split) if reps else []
    t = Table(title="where the time goes (s, sampled)")
    for col in ("experiment", "total", *cats):
        t.add_column(col, justify="left" if col == "experiment" else "right")
    for r in reps:
        t.add_row(r.id, f"{r.seconds:.1f}", *(f"{r.time_split.get(c, 0.0):.1f}" for c in cats))
    if len(reps) > 1:
        t.add_row("all", f"{sum(r.seconds for r in reps):.1f}",
                  *(f"{sum(r.time_split.get(c, 0.0) for r in reps):.1f}" for c in cats))
    return t


def rich_table(rep: ExperimentReport):
    from rich.table import Table

    t = Table(title=f"{rep.id} — {rep.title} ({rep.seconds:.1f} s)", show_lines=False)
    for col in ("claim", "paper", "measured", "verdict"):
        t.add_column(col, overflow="fold")
    colors = {"reproduced": "green", "differs": "red", "corrected": "yellow", "new": "cyan"}
    for c in rep.claims:
        t.add_row(c.claim, c.paper, c.measured, f"[{colors[c.verdict]}]{c.verdict}[/]")
    return t

"""Progress reporting for long commands: a rich progress bar on a terminal, plain lines otherwise.

A rich ``Progress`` redraws in place; written to a file or a pipe (a batch job's log, ``| tee``) it can
only print its final state, so a log would receive every bar at the very end. :func:`make_progress`
returns the rich bar when the console is a terminal and a :class:`PlainProgress` otherwise, which prints one
line per tenth of a task (and one when it ends), as it happens. Both offer the calls the library uses:
``add_task``, ``update``, ``advance``, ``start``/``stop`` and use as a context manager.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    start: float = field(default_factory=time.perf_counter)
    printed_decile: int = -1
    finished: bool = False


class PlainProgress:
    """Line-by-line progress: ``description: completed/total (pct %) elapsed``, one line each time a task
    passes another tenth of its total, and one when it completes. Mirrors the subset of
    ``rich.progress.Progress`` that attnsvm uses, so either can be passed where a progress is expected."""

    def __init__(self, file: TextIO | None = None, unit: str = "") -> None:
        self._file = file
        self._tasks: dict[int, _Task] = {}
        self._unit = f" {unit}" if unit else ""

    # rich.Progress compatibility ---------------------------------------------------------------------------
    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def add_task(self, description: str, total: float | None = 100.0, start: bool = True, **_: Any) -> int:
        tid = len(self._tasks)
        self._tasks[tid] = _Task(description, total)
        return tid

    def advance(self, task_id: int, advance: float = 1.0) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **_: Any) -> None:
        t = self._tasks[task_id]
        if description is not None:
            t.description = description
        if total is not None:
            t.total = total
        if completed is not None:
            t.completed = completed
        if advance is not None:
            t.completed += advance
        self._maybe_print(t)

    # ------------------------------------------------------------------------------------------------------
    def _maybe_print(self, t: _Task) -> None:
        if t.finished:
            return
        if not t.total:
            return
        frac = min(1.0, t.completed / t.total)
        decile = int(frac * 10)
        done = t.completed >= t.total
        if decile <= t.printed_decile and not done:
            return
        t.printed_decile = decile
        t.finished = done
        elapsed = time.perf_counter() - t.start
        line = (f"{t.description}: {t.completed:g}/{t.total:g}{self._unit} ({100 * frac:.0f} %) "
                f"{elapsed:.1f} s" + ("  done" if done else ""))
        out = self._file if self._file is not None else sys.stderr
        print(line, file=out, flush=True)


def make_progress(console: Any = None, enabled: bool = True, unit: str = "",
                  transient: bool = False) -> Any:
    """A progress for a long command: rich's bar on a terminal, :class:`PlainProgress` lines otherwise.

    ``console`` is the rich console to draw on (default: a new stderr console). Returns ``None`` when
    ``enabled`` is False. ``unit`` names what is counted (``"steps"``, ``"trials"``).
    """
    if not enabled:
        return None
    from rich.console import Console

    console = console if console is not None else Console(stderr=True)
    if not console.is_terminal:
        return PlainProgress(file=console.file, unit=unit)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn(unit) if unit else TextColumn(""), TimeElapsedColumn(),
                    console=console, transient=transient)


__all__ = ["PlainProgress", "make_progress"]

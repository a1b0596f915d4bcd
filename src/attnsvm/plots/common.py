"""One figure style for every attnsvm figure, and the pieces the figures share.

The style (read it once, every figure follows it):

* **Colours** come from the colour-blind-safe palette of Okabe & Ito; inside one figure a colour has one
  meaning in every panel (a method, a parameterization, an initialization, a query), and reference
  solutions (the max-margin directions) are black, or drawn in the colour of what they belong to with their
  own line style. Line styles and markers carry the second attribute, so nothing depends on colour alone.
* **Labels** are mathtext (``$p^{\\mathrm{mm}}$``, ``$\\|W\\|_F$``), never plain underscores or carets.
* **Legends cover nothing**: they sit outside the axes, below the panels (:func:`legend_below`).
* **Bands** (spread over trials) are clipped to the range of their quantity (a correlation never above 1)
  and, on a log axis, are the 10–90 % quantiles around the median (mean ± std is meaningless there).
* **Integer axes** (steps, dimensions, ranks) get integer ticks; log axes get a readable subset of decades.
* **No empty panels**: figures are laid out for the panels they have.
* **Convergence** is shown as 1 − corr (or 1 − cos) on a log axis.

The style is applied inside the plotting functions through :func:`styled` (a ``matplotlib.rc_context``):
importing attnsvm changes neither the matplotlib backend nor the global rcParams, and figures are built with
``matplotlib.figure.Figure`` (no pyplot, no display needed). :func:`save_figure` writes PNG and PDF.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, LogFormatterSciNotation, MaxNLocator, NullLocator

COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper
PAGE_WIDTH = 7.0  # inches: the full text width of a two-column paper

# Okabe & Ito, "Color Universal Design" (2008): distinguishable under the common colour-vision deficiencies
BLACK = "#000000"
ORANGE = "#E69F00"
SKY = "#56B4E9"
GREEN = "#009E73"
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
GREY = "#8C8C8C"
#: the palette in the order figures take colours (yellow last: weak on white)
PALETTE = (BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY, YELLOW)
COLORS = PALETTE  # the name earlier figure code used

#: one convention across figures: a Frobenius / ℓ2 SVM solution is solid, a nuclear / ℓ1 one dashed
REF_STYLE = {"fro": "-", "l2": "-", "nuclear": "--", "l1": "--"}

STYLE: dict[str, Any] = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2, "lines.markersize": 3.5,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "axes.linewidth": 0.6,
    "axes.prop_cycle": mpl.cycler(color=list(PALETTE)), "axes.spines.top": False, "axes.spines.right": False,
    "legend.frameon": False, "legend.handlelength": 2.2, "legend.columnspacing": 1.2,
    "figure.dpi": 150, "savefig.dpi": 200, "savefig.bbox": "tight", "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42, "ps.fonttype": 42,  # TrueType in the PDF: editable text, accepted by publishers
    "mathtext.fontset": "dejavusans", "axes.formatter.use_mathtext": True,
    "image.cmap": "cividis",
}

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def style() -> Iterator[None]:
    """The attnsvm figure style, for the duration of a ``with`` block (global rcParams are restored)."""
    with mpl.rc_context(STYLE):
        yield


def styled(fn: F) -> F:
    """Decorator: run a plotting function inside :func:`style`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def setup_style() -> None:
    """Kept for code written against the earlier module: the style is now applied by :func:`styled` and
    :func:`style`, never globally, so this does nothing."""


def figure(ncols: int = 1, nrows: int = 1, *, width: float | None = None, height: float = 2.2,
           sharex: bool | str = False, sharey: bool | str = False) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure and its (nrows, ncols) axes: one column wide for one panel, the page width
    for three or more; ``height`` is per row (inches)."""
    if width is None:
        width = COLUMN_WIDTH if ncols == 1 else (PAGE_WIDTH * 0.75 if ncols == 2 else PAGE_WIDTH)
    fig = Figure(figsize=(width, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    return fig, axes


def column_figure(ncols: int = 1, nrows: int = 1, height: float = 2.4, width: float | None = None):
    """``figure`` under the earlier name."""
    return figure(ncols, nrows, width=width, height=height)


def save_figure(fig: Figure, folder: str | Path, name: str) -> list[Path]:
    """Write ``folder/name.png`` (200 dpi) and ``folder/name.pdf`` in the attnsvm style; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    with style():
        for p in paths:
            fig.savefig(p)
    return paths


# ---- pieces -------------------------------------------------------------------------------------------


def band(ax: Any, x: np.ndarray, y: np.ndarray, label: str | None = None, color: Any = None,
         log_y: bool = False, *, lo: float | None = None, hi: float | None = None, ls: str = "-",
         lw: float | None = None, zorder: float = 2) -> Line2D:
    """The spread over trials (rows of ``y``) against ``x``, NaN entries ignored.

    Linear axis: the mean and a band of ± one standard deviation. Log axis (``log_y``): the median and the
    10–90 % quantile band, with values below ``lo`` (default 1e−16) drawn at ``lo``. Line and band are
    clipped to [lo, hi] when given (a correlation's band never rises above 1)."""
    y = np.asarray(y, dtype=float)
    if log_y:
        floor = 1e-16 if lo is None else lo
        yc = np.where(np.isnan(y), np.nan, np.maximum(y, floor))
        mid = np.nanmedian(yc, axis=0)
        a, b = np.nanquantile(yc, [0.1, 0.9], axis=0)
        ax.set_yscale("log")
        lo = floor
    else:
        mid, sd = np.nanmean(y, axis=0), np.nanstd(y, axis=0)
        a, b = mid - sd, mid + sd
    if lo is not None:
        mid, a, b = np.maximum(mid, lo), np.maximum(a, lo), np.maximum(b, lo)
    if hi is not None:
        mid, a, b = np.minimum(mid, hi), np.minimum(a, hi), np.minimum(b, hi)
    line = ax.plot(x, mid, ls, label=label, color=color, lw=lw, zorder=zorder)[0]
    ax.fill_between(x, a, b, color=line.get_color(), alpha=0.16, linewidth=0, zorder=zorder - 0.5)
    return line


def integer_ticks(axis: Any, values: Sequence[float] | None = None, max_ticks: int = 6) -> None:
    """Integer ticks on an axis that counts something: at ``values`` when few are given, else integers."""
    if values is not None:
        vals = sorted({int(v) for v in values})
        if len(vals) <= max_ticks + 2:
            axis.set_major_locator(FixedLocator(vals))
            axis.set_minor_locator(NullLocator())
            return
    axis.set_major_locator(MaxNLocator(nbins=max_ticks, integer=True))


def decade_ticks(axis: Any, lo: float, hi: float, max_ticks: int = 6) -> None:
    """Log-axis ticks at every k-th decade between ``lo`` and ``hi`` with k in 1, 2, 5, 10, 20, 50, … chosen so
    at most ``max_ticks`` labels show (never 10⁻⁸¹, 10⁻⁷⁰, …)."""
    e0, e1 = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    span = max(1, e1 - e0)
    for k in (1, 2, 5, 10, 20, 50, 100, 200, 500):
        if span / k <= max_ticks:
            break
    first = int(np.ceil(e0 / k) * k)
    axis.set_major_locator(FixedLocator([10.0 ** e for e in range(first, e1 + 1, k)]))
    axis.set_major_formatter(LogFormatterSciNotation())
    axis.set_minor_locator(NullLocator())


def legend_below(fig: Figure, handles: Sequence[Any] | None = None, labels: Sequence[str] | None = None,
                 ncol: int | None = None, axes: Sequence[Any] | None = None) -> Any:
    """One legend for the whole figure, outside and below the panels (it covers no data). Without handles it
    collects the labelled artists of ``axes`` (default all), each label once."""
    if handles is None:
        seen: dict[str, Any] = {}
        for ax in axes if axes is not None else fig.axes:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab and not lab.startswith("_") and lab not in seen:
                    seen[lab] = h
        handles, labels = list(seen.values()), list(seen)
    if not handles:
        return None
    n = len(handles)
    ncol = ncol or min(n, 4)
    return fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)


def proxy(color: Any = BLACK, ls: str = "-", marker: str | None = None, lw: float = 1.2, **kw: Any) -> Line2D:
    """A legend entry that is not drawn (e.g. 'dashed = nuclear' in black)."""
    return Line2D([], [], color=color, ls=ls, marker=marker, lw=lw, **kw)


def ray(ax: Any, direction: np.ndarray, length: float, label: str | None = None, color: Any = BLACK,
        style: str = "--", lw: float = 1.0) -> None:
    """A ray from the origin along a 2-D direction, of the given length."""
    u = np.asarray(direction, dtype=float)[:2]
    u = u / np.linalg.norm(u)
    ax.plot([0, length * u[0]], [0, length * u[1]], ls=style, color=color, label=label, linewidth=lw)


def hyperplane(ax: Any, normal: np.ndarray, offset: float, extent: float, color: Any = GREY,
               label: str | None = None, ls: Any = ":") -> None:
    """The line {x : ⟨normal, x⟩ = offset} within the box [−extent, extent]²."""
    nrm = np.asarray(normal, dtype=float)
    t = np.linspace(-extent, extent, 2)
    if abs(nrm[1]) > abs(nrm[0]):
        ax.plot(t, (offset - nrm[0] * t) / nrm[1], ls=ls, color=color, label=label, linewidth=0.8)
    else:
        ax.plot((offset - nrm[1] * t) / nrm[0], t, ls=ls, color=color, label=label, linewidth=0.8)


def note(ax: Any, text: str, loc: str = "upper right") -> None:
    """A short grey note in a corner of the axes (e.g. where exact zeros are drawn)."""
    x = 0.98 if "right" in loc else 0.02
    y = 0.97 if "upper" in loc else 0.03
    ax.text(x, y, text, transform=ax.transAxes, ha="right" if "right" in loc else "left",
            va="top" if "upper" in loc else "bottom", fontsize=6, color="0.35")


def floor_note(ax: Any, floor: float, text: str | None = None) -> None:
    """Say, just above a log axis' floor line, that values drawn there are exact (below the floor)."""
    from matplotlib.transforms import blended_transform_factory

    ax.text(0.98, floor * 4, text or f"exact: drawn at {floor:.0e}".replace("e-", "e−"), fontsize=6, color="0.35",
            transform=blended_transform_factory(ax.transAxes, ax.transData), ha="right", va="bottom")

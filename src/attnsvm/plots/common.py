"""Shared figure pieces: a paper-column style, mean ± std bands, 2-D rays and hyperplanes.

Figures are ``matplotlib.figure.Figure`` objects saved to files (no pyplot, no backend switch, no global
style change: the style applies inside :func:`paper_style`, which the experiment runner enters)."""

from __future__ import annotations

from contextlib import contextmanager

import matplotlib
import numpy as np
from matplotlib.figure import Figure

COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper
COLORS = matplotlib.colormaps["tab10"].colors
STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2, "figure.dpi": 150,
    "axes.grid": True, "grid.alpha": 0.3, "savefig.bbox": "tight",
}


@contextmanager
def paper_style():
    """The paper-column style for the figures made (and saved) inside; the caller's settings are restored."""
    with matplotlib.rc_context(STYLE):
        yield


def column_figure(ncols: int = 1, nrows: int = 1, height: float = 2.4, width: float | None = None):
    """A figure one paper column wide (or ``ncols`` columns wide for multi-panel figures)."""
    w = width if width is not None else COLUMN_WIDTH * (1 if ncols == 1 else min(2.1, 0.7 * ncols + 0.5))
    fig = Figure(figsize=(w, height * nrows))
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def band(ax, x: np.ndarray, y: np.ndarray, label: str | None = None, color=None, log_y: bool = False) -> None:
    """Mean ± std over trials (rows of y) against x; NaN entries are ignored."""
    y = np.asarray(y, dtype=float)
    mean, std = np.nanmean(y, axis=0), np.nanstd(y, axis=0)
    line = ax.plot(x, mean, label=label, color=color)[0]
    lo, hi = mean - std, mean + std
    if log_y:
        lo = np.maximum(lo, np.nanmin(mean[mean > 0]) * 0.1 if np.any(mean > 0) else 1e-16)
        ax.set_yscale("log")
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)


def ray(ax, direction: np.ndarray, length: float, label: str | None = None, color="k", style="--") -> None:
    """A ray from the origin along a 2-D direction, of the given length."""
    u = np.asarray(direction, dtype=float)
    u = u / np.linalg.norm(u)
    ax.plot([0, length * u[0]], [0, length * u[1]], style, color=color, label=label, linewidth=1.0)


def hyperplane(ax, normal: np.ndarray, offset: float, extent: float, color="0.5", label: str | None = None) -> None:
    """The line {x : ⟨normal, x⟩ = offset} within the box [−extent, extent]²."""
    nrm = np.asarray(normal, dtype=float)
    t = np.linspace(-extent, extent, 2)
    if abs(nrm[1]) > abs(nrm[0]):
        ax.plot(t, (offset - nrm[0] * t) / nrm[1], ":", color=color, label=label, linewidth=0.8)
    else:
        ax.plot((offset - nrm[1] * t) / nrm[0], t, ":", color=color, label=label, linewidth=0.8)

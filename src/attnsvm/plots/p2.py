"""Figures of the P2 experiments (Sheen, Chen, Wang, Zhou, 2024; SPEC §6 rows P2-diag and P2-full).

P2 publishes no figures: these are this project's. Every curve is one flow run, plotted against its own
‖W‖_F (log-log), with 1 − corr measured against the SVM solutions at the selection the run reaches at its
stop (so a curve ends where the run's direction settles relative to *its* solution).

* P2-diag: 1 − corr(w, w_ℓ1(α)) and 1 − corr(w, w_ℓ2(α)) of the unbalanced (k, q) runs (runs that reach
  the ℓ1 solution in one colour, the others in another), the combined diagonal W runs against ℓ2 (and ℓ1),
  and the conservation drift of k² − q² along the (k, q) flows.
* P2-full: 1 − corr with the nuclear (W^mm_★) and the Frobenius (W^mm) solutions for (K, Q) from aligned
  inits, W from aligned inits, (K, Q) from random inits, and the generic unit-Gaussian problems.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .common import COLORS, column_figure

FLOOR = 1e-12  # 1 − corr below this (rounding) is drawn at the floor of the log axis
DRIFT_FLOOR = 1e-16  # the same for the relative conservation drift (exactly 0 for a balanced start)

REACHED, OTHER, L1C, L2C = COLORS[0], COLORS[3], COLORS[0], COLORS[1]


def _curves(ax, x: np.ndarray, y: np.ndarray, color, label: str | None, style: str = "-", lw: float = 0.8,
            alpha: float = 0.8, floor: float = FLOOR) -> None:
    """One line per row of y against the same row of x (log-log); the label on the first line only."""
    for j in range(y.shape[0]):
        ax.plot(x[j], np.maximum(y[j], floor), style, color=color, lw=lw, alpha=alpha,
                label=label if j == 0 else None)


def _loglog(ax, xlabel: str, ylabel: str | None, title: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="lower left", frameon=False)


def diag_figure(a: dict[str, np.ndarray], reach_tol: float) -> Figure:
    """P2-diag: 2 × 2 panels (see the module docstring)."""
    fig, axes = column_figure(2, 2, height=2.2)
    un = a["kind"] == "unbalanced"
    ok = un & (a["gap_l1"] <= reach_tol)
    bad = un & ~ok
    x = a["W_fro_path"]
    for ax, key, ref in ((axes[0, 0], "gap_l1_path", "ℓ1"), (axes[0, 1], "gap_l2_path", "ℓ2")):
        _curves(ax, x[bad], a[key][bad], OTHER, f"do not ({int(bad.sum())})", alpha=0.6)
        _curves(ax, x[ok], a[key][ok], REACHED, f"reach ℓ1 ({int(ok.sum())})")
        if ref == "ℓ1":
            ax.axhline(reach_tol, color="0.4", ls=":", lw=0.8)
        _loglog(ax, "‖w‖", f"1 − corr(w, w_{ref}(α))", f"(k, q) unbalanced: vs the {ref} SVM")
    ax = axes[1, 0]
    cb = a["kind"] == "combined"
    _curves(ax, x[cb], a["gap_l2_path"][cb], L2C, "vs ℓ2 SVM")
    _curves(ax, x[cb], a["gap_l1_path"][cb], L1C, "vs ℓ1 SVM", style="--")
    _loglog(ax, "‖w‖", "1 − corr", "combined diagonal W")
    ax = axes[1, 1]
    for kind, color in (("unbalanced", COLORS[2]), ("balanced", COLORS[4])):
        m = a["kind"] == kind
        _curves(ax, x[m][:, 1:], a["drift_path"][m][:, 1:], color, kind, alpha=0.6, floor=DRIFT_FLOOR)
    _loglog(ax, "‖w‖", "drift of k² − q² (relative)", "conservation along the (k, q) flow")
    ax.set_ylim(bottom=DRIFT_FLOOR / 2)
    ax.text(0.98, 0.97, "exact 0 drawn at 1e−16", transform=ax.transAxes, ha="right", va="top", fontsize=6,
            color="0.4")
    fig.tight_layout()
    return fig


FULL_PANELS = (("KQ-aligned", "(K, Q), aligned init"), ("W-aligned", "W, aligned init"),
               ("KQ-random", "(K, Q), random init"), ("KQ-generic", "(K, Q), generic data"),
               ("W-generic", "W, generic data"))


def full_figure(a: dict[str, np.ndarray]) -> Figure:
    """P2-full: 1 − corr with the nuclear and the Frobenius solutions against ‖W‖_F, one panel per family."""
    panels = [(v, t) for v, t in FULL_PANELS if np.any(a["variant"] == v)]
    ncols = 3
    nrows = -(-len(panels) // ncols)
    fig, axes = column_figure(ncols, nrows, height=2.1)
    for k, (variant, title) in enumerate(panels):
        ax = axes[k // ncols, k % ncols]
        m = a["variant"] == variant
        _curves(ax, a["W_fro_path"][m], a["gap_nuc_path"][m], COLORS[0], r"vs nuclear $W^{mm}_\star$")
        _curves(ax, a["W_fro_path"][m], a["gap_fro_path"][m], COLORS[1], r"vs Frobenius $W^{mm}$", style="--")
        _loglog(ax, "‖W‖_F", "1 − corr" if k % ncols == 0 else None, title)
    for k in range(len(panels), nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
    fig.tight_layout()
    return fig


__all__ = ["diag_figure", "full_figure"]

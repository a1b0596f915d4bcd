"""Figures of the next-token reproductions (Li, Huang, Ildiz, Rawat, Oymak, *Mechanics of next token
prediction with self-attention*, 2024)."""

from __future__ import annotations

import numpy as np

from .common import COLORS, band, column_figure


def global_figure(steps: np.ndarray, ngd: dict[str, np.ndarray], gd_steps: np.ndarray | None = None,
                  gd: dict[str, np.ndarray] | None = None, lr: float | None = None):
    """The global-convergence notebook's four panels (mean ± std over problems): corr(W, W^dir),
    ‖Π_S(W) − W^fin‖, corr(Π_{S⊥}(W), W^dir), and 1 − the attention mass on the top SCC."""
    fig, axes = column_figure(ncols=2, nrows=2, height=2.2)
    (a, b), (c, e) = axes
    band(a, steps, ngd["corr_dir"], label="NGD", color=COLORS[0])
    a.set_ylabel(r"corr$(W, W^{dir})$")
    a.set_title(r"(a) direction: $W/\|W\| \to W^{dir}$")
    a.set_ylim(0, 1.02)
    band(b, steps, np.maximum(ngd["fin_distance"], 1e-16), label="NGD", color=COLORS[0], log_y=True)
    if gd is not None and gd_steps is not None:
        band(b, gd_steps, np.maximum(gd["fin_distance"], 1e-16), label="GD", color=COLORS[1], log_y=True)
    if lr is not None:
        b.axhline(lr / 2, color="0.4", linestyle=":", linewidth=0.8, label="NGD step / 2")
    b.set_ylabel(r"$\|\Pi_S(W) - W^{fin}\|_F$")
    b.set_title(r"(b) finite part: $\Pi_S(W) \to W^{fin}$")
    b.legend(loc="upper right")
    band(c, steps, ngd["proj_corr"], color=COLORS[0])
    c.set_ylabel(r"corr$(\Pi_{S^\perp}(W), W^{dir})$")
    c.set_title(r"(c) $W - \Pi_S(W)$ along $W^{dir}$")
    c.set_ylim(0, 1.02)
    band(e, steps, np.maximum(1.0 - ngd["top_mass"], 1e-300), color=COLORS[0], log_y=True)
    e.set_ylabel("1 − attention on top SCC")
    e.set_title("(d) hard retrieval")
    for ax in (a, b, c, e):
        ax.set_xlabel("step")
    fig.tight_layout()
    return fig


def horizon_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float = 0.99):
    """corr(W, W^dir) over a long horizon (log step axis), one band per run family (name → (steps, y))."""
    fig, axes = column_figure(ncols=1, nrows=1, height=2.4)
    ax = axes[0][0]
    for k, (name, (steps, y)) in enumerate(curves.items()):
        band(ax, np.maximum(steps, 1), y, label=name, color=COLORS[k])
    ax.axhline(threshold, color="0.4", linestyle=":", linewidth=0.8, label=f"{threshold}")
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(r"corr$(W, W^{dir})$")
    ax.set_ylim(0.8, 1.002)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def local_figure(steps: np.ndarray, families: dict[str, dict[str, np.ndarray]]):
    """The local-convergence notebook: corr of W with the graph SVM of the tokens it selected (local) and
    with the global graph SVM, mean ± std, one panel per run family."""
    fig, axes = column_figure(ncols=len(families), nrows=1, height=2.4)
    for k, (ax, (name, data)) in enumerate(zip(axes[0], families.items(), strict=True)):
        x = data.get("steps", steps)
        band(ax, x, data["corr_local"], label=r"local $W^{dir}$ (selected tokens)", color=COLORS[0])
        band(ax, x, data["corr_global"], label=r"global $W^{dir}$", color=COLORS[3])
        ax.set_xlabel("step")
        ax.set_ylabel("correlation")
        ax.set_title(f"({chr(97 + k)}) {name}")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower right")
    fig.tight_layout()
    return fig

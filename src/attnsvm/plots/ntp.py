"""Figures of the next-token reproductions (Li, Huang, Ildiz, Rawat, Oymak, *Mechanics of next token
prediction with self-attention*, 2024), in the attnsvm figure style: convergence as 1 − corr on log axes
(median and 10–90 % band over problems), colour = optimizer (NGD blue, GD orange) or reference (the graph
SVM of the selected tokens blue, the global one vermillion), legends below the panels."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .common import BLUE, ORANGE, PALETTE, VERMILLION, band, figure, legend_below, proxy, styled

FLOOR = 1e-16


def _gap(y: np.ndarray) -> np.ndarray:
    return np.maximum(1.0 - np.asarray(y, dtype=float), FLOOR)


@styled
def global_figure(steps: np.ndarray, ngd: dict[str, np.ndarray], gd_steps: np.ndarray | None = None,
                  gd: dict[str, np.ndarray] | None = None, lr: float | None = None) -> Figure:
    """The global-convergence notebook's four panels: 1 − corr(W, W^dir), ‖Π_S(W) − W^fin‖_F,
    1 − corr(Π_{S⊥}(W), W^dir), and 1 − the attention mass on the top SCC."""
    fig, axes = figure(ncols=2, nrows=2, height=2.0, width=5.6)
    (a, b), (c, e) = axes
    has_gd = gd is not None and gd_steps is not None
    band(a, steps, _gap(ngd["corr_dir"]), color=BLUE, log_y=True, lo=FLOOR)
    if has_gd and "corr_dir" in gd:
        band(a, gd_steps, _gap(gd["corr_dir"]), color=ORANGE, log_y=True, lo=FLOOR)
    a.set_ylabel(r"$1-\mathrm{corr}(W,\,W^{\mathrm{dir}})$")
    a.set_title(r"(a) direction: $W/\|W\| \to W^{\mathrm{dir}}$")
    band(b, steps, np.maximum(ngd["fin_distance"], FLOOR), color=BLUE, log_y=True, lo=FLOOR)
    if has_gd:
        band(b, gd_steps, np.maximum(gd["fin_distance"], FLOOR), color=ORANGE, log_y=True, lo=FLOOR)
    if lr is not None:
        b.axhline(lr / 2, color="0.4", linestyle=":", linewidth=0.8)
    b.set_ylabel(r"$\|\Pi_S(W) - W^{\mathrm{fin}}\|_F$")
    b.set_title(r"(b) finite part: $\Pi_S(W) \to W^{\mathrm{fin}}$")
    band(c, steps, _gap(ngd["proj_corr"]), color=BLUE, log_y=True, lo=FLOOR)
    c.set_ylabel(r"$1-\mathrm{corr}(\Pi_{S^\perp}(W),\,W^{\mathrm{dir}})$")
    c.set_title(r"(c) $W - \Pi_S(W)$ along $W^{\mathrm{dir}}$")
    band(e, steps, np.maximum(1.0 - ngd["top_mass"], 1e-300), color=BLUE, log_y=True, lo=1e-300)
    e.set_ylabel("1 − attention on the top SCC")
    e.set_title("(d) hard retrieval")
    for ax in (a, b, c, e):
        ax.set_xlabel("step")
    handles, labels = [proxy(BLUE)], ["NGD" + (f", $\\eta$ = {lr:g}" if lr is not None else "")]
    if has_gd:
        handles.append(proxy(ORANGE))
        labels.append("GD")
    if lr is not None:
        handles.append(proxy("0.4", ":", lw=0.8))
        labels.append(r"NGD step / 2 (in (b))")
    handles.append(proxy("0.5", "-", lw=6, alpha=0.3))
    labels.append("median, 10–90 % of problems")
    legend_below(fig, handles, labels, ncol=4)
    return fig


@styled
def horizon_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float = 0.99) -> Figure:
    """1 − corr(W, W^dir) over a long horizon (log-log), one band per run family (name → (steps, corr)), with
    the level 1 − ``threshold`` the report's claim uses."""
    fig, axes = figure(ncols=1, nrows=1, height=2.3, width=3.6)
    ax = axes[0][0]
    colors = {}
    for k, (name, (steps, y)) in enumerate(curves.items()):
        colors[name] = (BLUE, ORANGE)[k] if k < 2 else PALETTE[k % len(PALETTE)]
        band(ax, np.maximum(steps, 1), _gap(y), color=colors[name], log_y=True, lo=FLOOR)
    ax.axhline(1 - threshold, color="0.4", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(r"$1-\mathrm{corr}(W,\,W^{\mathrm{dir}})$")
    legend_below(fig, [proxy(c) for c in colors.values()] + [proxy("0.4", ":", lw=0.8)],
                 [n.replace("lr=", "$\\eta$ = ") for n in colors] + [f"corr = {threshold:g}"], ncol=3)
    return fig


@styled
def local_figure(steps: np.ndarray, families: dict[str, dict[str, np.ndarray]]) -> Figure:
    """The local-convergence notebook: 1 − corr of W with the graph SVM of the tokens it selected (local,
    blue) and with the global graph SVM (vermillion), one panel per run family."""
    fig, axes = figure(ncols=len(families), nrows=1, height=2.3,
                       width=None if len(families) > 2 else 2.9 * len(families) + 0.3)
    for k, (ax, (name, data)) in enumerate(zip(axes[0], families.items(), strict=True)):
        x = data.get("steps", steps)
        band(ax, x, _gap(data["corr_local"]), color=BLUE, log_y=True, lo=FLOOR)
        band(ax, x, _gap(data["corr_global"]), color=VERMILLION, log_y=True, lo=FLOOR)
        ax.set_xlabel("step")
        ax.set_ylabel(r"$1-\mathrm{corr}$" if k == 0 else "")
        ax.set_title(f"({chr(97 + k)}) {name}")
    legend_below(fig, [proxy(BLUE), proxy(VERMILLION)],
                 [r"vs the local $W^{\mathrm{dir}}$ (selected tokens)", r"vs the global $W^{\mathrm{dir}}$"],
                 ncol=2)
    return fig


__all__ = ["global_figure", "horizon_figure", "local_figure"]

"""Figures of the P2 experiments (Sheen, Chen, Wang, Zhou, 2024).

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

from .common import (
    BLACK,
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    PURPLE,
    REF_STYLE,
    SKY,
    VERMILLION,
    figure,
    floor_note,
    legend_below,
    proxy,
    styled,
)

FLOOR = 1e-12  # 1 − corr below this (rounding) is drawn at the floor of the log axis
DRIFT_FLOOR = 1e-16  # the same for the relative conservation drift (exactly 0 for a balanced start)

# one meaning per colour in every panel: the family of runs; the line style names the reference SVM
REACHED, OTHER, COMBINED, BALANCED = BLUE, VERMILLION, GREEN, PURPLE
NUC, FRO = VERMILLION, BLUE


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


def _corr_label(ref: str) -> str:
    return rf"$1-\mathrm{{corr}}(w,\,w_{{\ell_{ref[-1]}}}(\alpha))$"


@styled
def diag_figure(a: dict[str, np.ndarray], reach_tol: float) -> Figure:
    """P2-diag, 2 × 2 panels (see the module docstring). Colour = family of runs in every panel (unbalanced
    (k, q) runs that reach the ℓ1 solution, those that do not, combined W, balanced (k, q)); line style =
    reference SVM (ℓ2 solid, ℓ1 dashed)."""
    fig, axes = figure(2, 2, height=2.1, width=5.6)
    un = a["kind"] == "unbalanced"
    ok = un & (a["gap_l1"] <= reach_tol)
    bad = un & ~ok
    x = a["W_fro_path"]
    wl = r"$\|w\|$"
    for ax, key, ref, tag in ((axes[0, 0], "gap_l1_path", "l1", "a"), (axes[0, 1], "gap_l2_path", "l2", "b")):
        _curves(ax, x[bad], a[key][bad], OTHER, None, style=REF_STYLE[ref], alpha=0.7)
        _curves(ax, x[ok], a[key][ok], REACHED, None, style=REF_STYLE[ref])
        if ref == "l1":
            ax.axhline(reach_tol, color="0.4", ls=":", lw=0.8)
        _loglog(ax, wl, _corr_label(ref), rf"({tag}) unbalanced $(k, q)$ vs the $\ell_{ref[-1]}$ SVM")
    ax = axes[1, 0]
    cb = a["kind"] == "combined"
    _curves(ax, x[cb], a["gap_l2_path"][cb], COMBINED, None, style=REF_STYLE["l2"])
    _curves(ax, x[cb], a["gap_l1_path"][cb], COMBINED, None, style=REF_STYLE["l1"])
    _loglog(ax, wl, r"$1-\mathrm{corr}$", "(c) combined diagonal $W$ vs both SVMs")
    ax = axes[1, 1]
    for m, color in ((ok, REACHED), (bad, OTHER), (a["kind"] == "balanced", BALANCED)):
        _curves(ax, x[m][:, 1:], a["drift_path"][m][:, 1:], color, None, alpha=0.7, floor=DRIFT_FLOOR)
    _loglog(ax, wl, r"relative drift of $k^2-q^2$", "(d) conservation along the $(k, q)$ flow")
    ax.set_ylim(bottom=DRIFT_FLOOR / 3)
    floor_note(ax, DRIFT_FLOOR, "exact 0: drawn at 1e−16")
    handles = [proxy(REACHED), proxy(OTHER), proxy(COMBINED), proxy(BALANCED),
               proxy("0.3", REF_STYLE["l2"]), proxy("0.3", REF_STYLE["l1"]), proxy("0.4", ":", lw=0.8)]
    labels = [f"unbalanced $(k,q)$, reaches $\\ell_1$ ({int(ok.sum())})",
              f"unbalanced $(k,q)$, does not ({int(bad.sum())})",
              f"combined $W$ ({int(cb.sum())})", f"balanced $(k,q)$ ({int((a['kind'] == 'balanced').sum())})",
              r"vs the $\ell_2$ SVM", r"vs the $\ell_1$ SVM", f"reach tolerance {reach_tol:g}"]
    legend_below(fig, handles, labels, ncol=4)
    return fig


FULL_PANELS = (("KQ-aligned", "$(K, Q)$, aligned init"), ("W-aligned", "$W$, aligned init"),
               ("KQ-random", "$(K, Q)$, random init"), ("KQ-generic", "$(K, Q)$, generic data"),
               ("W-generic", "$W$, generic data"))


@styled
def full_figure(a: dict[str, np.ndarray]) -> Figure:
    """P2-full: 1 − corr with the nuclear (vermillion, dashed) and the Frobenius (blue, solid) solutions
    against ‖W‖_F, one panel per family of runs, laid out for the panels present (no empty panel)."""
    panels = [(v, t) for v, t in FULL_PANELS if np.any(a["variant"] == v)]
    n = len(panels)
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(7.0 if ncols == 3 else 2.4 * ncols + 0.4, 2.0 * nrows + 0.3), layout="constrained")
    # a grid twice as fine as the panels, so a short last row is centred instead of leaving an empty panel
    gs = fig.add_gridspec(nrows, 2 * ncols)
    for k, (variant, title) in enumerate(panels):
        row, col = divmod(k, ncols)
        in_row = min(ncols, n - row * ncols)
        start = (ncols - in_row) + 2 * col
        ax = fig.add_subplot(gs[row, start:start + 2])
        m = a["variant"] == variant
        _curves(ax, a["W_fro_path"][m], a["gap_nuc_path"][m], NUC, None, style=REF_STYLE["nuclear"])
        _curves(ax, a["W_fro_path"][m], a["gap_fro_path"][m], FRO, None, style=REF_STYLE["fro"])
        _loglog(ax, r"$\|W\|_F$", r"$1-\mathrm{corr}$" if col == 0 else None, f"({'abcde'[k]}) {title}")
    legend_below(fig, [proxy(NUC, REF_STYLE["nuclear"]), proxy(FRO, REF_STYLE["fro"])],
                 [r"vs the nuclear-norm solution $W^{\mathrm{mm}}_\ast$",
                  r"vs the Frobenius solution $W^{\mathrm{mm}}$"], ncol=2)
    return fig


# ε-KKT studies: one colour per class of run (attnsvm.experiments.p2_kkt.classify), in every panel; the
# converging classes in greens/blues, the settled ones in orange/vermillion. Grey is left to the P2-full W runs
# and black to P2-diag's panel (a).
CLASS_COLORS = {"kkt": BLUE, "converging": GREEN, "slow": SKY, "settled": VERMILLION,
                "settled-param-kkt": ORANGE, "failed": PURPLE}
CLASS_LABELS = {"kkt": r"$\varepsilon\leq$ tol", "converging": "converging",
                "slow": r"converging slowly (value excess falls, $g\leq1$)",
                "settled": "settled ($g>1$ ahead, or value excess not falling)",
                "settled-param-kkt": "settled at a parameter-space KKT point, not convex KKT", "failed": "failed"}


def _by_class(ax, x: np.ndarray, y: np.ndarray, cls: np.ndarray) -> list:
    """One curve per run (markers at the radii), coloured by its class; returns the classes drawn."""
    drawn = []
    for c, color in CLASS_COLORS.items():
        m = cls == c
        if m.any():
            for j in np.flatnonzero(m):
                ax.plot(x[j], np.maximum(y[j], FLOOR), "-o", color=color, lw=0.7, ms=1.8, alpha=0.75)
            drawn.append(c)
    return drawn


def _class_legend(fig: Figure, drawn: list, counts: dict, extra: tuple = ((), ())) -> None:
    handles = [proxy(CLASS_COLORS[c], "-", marker="o") for c in drawn] + list(extra[0])
    labels = [f"{CLASS_LABELS[c]} ({counts[c]})" for c in drawn] + list(extra[1])
    legend_below(fig, handles, labels, ncol=min(2, len(handles)))  # long class labels: two columns


@styled
def kkt_diag_figure(a: dict[str, np.ndarray], cls: np.ndarray, scales: list[float], tol: float) -> Figure:
    """P2-diag ε-KKT study: (a) fraction of runs with convex ε ≤ tol at the last radius by init scale (unbalanced
    / balanced starts); (b) the ℓ1 problem's ε and (c) the parameter-space ε against ‖w‖, one curve per run,
    coloured by its class."""
    fig, axes = figure(3, 1, height=2.2)
    ax = axes[0, 0]
    # black, solid / dashed: no class of panels (b), (c) is drawn in black
    for kind, ls, mk in (("unbalanced", "-", "o"), ("balanced", "--", "s")):
        fr = [np.mean(cls[(a["kind"] == kind) & np.isclose(a["scale"], sc)] == "kkt")
              if np.any((a["kind"] == kind) & np.isclose(a["scale"], sc)) else np.nan for sc in scales]
        ax.plot(scales, fr, ls, marker=mk, color=BLACK, ms=3)
    ax.set_xscale("log")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("init scale")
    ax.set_ylabel(rf"fraction with $\varepsilon_{{\ell_1}}\leq${tol:g}")
    ax.set_title(r"(a) reach the $\ell_1$ SVM")
    wl = r"$\|w\|$"
    drawn = _by_class(axes[0, 1], a["W_fro"], a["eps"], cls)
    axes[0, 1].axhline(tol, color="0.4", ls=":", lw=0.8)
    _loglog(axes[0, 1], wl, r"$\varepsilon$ of the $\ell_1$ Att-SVM", r"(b) convex $\varepsilon$-KKT")
    _by_class(axes[0, 2], a["W_fro"], a["eps_param"], cls)
    _loglog(axes[0, 2], wl, r"$\varepsilon$ in $(k, q)$", r"(c) parameter-space $\varepsilon$-KKT")
    counts = {c: int(np.sum(cls == c)) for c in drawn}
    _class_legend(fig, drawn, counts, ((proxy(BLACK, "-", marker="o"), proxy(BLACK, "--", marker="s"),
                                        proxy("0.4", ":", lw=0.8)),
                                       ("(a) unbalanced", "(a) balanced", f"tolerance {tol:g}")))
    return fig


@styled
def kkt_full_figure(a: dict[str, np.ndarray], cls: dict[str, np.ndarray]) -> Figure:
    """P2-full ε-KKT study on generic data, against ‖W‖_F: (a) ε of the nuclear SVM for the (K, Q) runs
    (coloured by class) and of the Frobenius SVM for the W runs (grey, dashed); (b) the (K, Q) parameter-space
    ε; (c) the exact value excess ‖W̃‖/‖W*_α‖ − 1."""
    fig, axes = figure(3, 1, height=2.2)
    kq, w = a["family"] == "KQ-generic", a["family"] == "W-generic"
    drawn: list = []
    if kq.any():
        drawn = _by_class(axes[0, 0], a["W_fro"][kq], a["eps"][kq], cls["KQ-generic"])
        _by_class(axes[0, 1], a["W_fro"][kq], a["eps_param"][kq], cls["KQ-generic"])
        _by_class(axes[0, 2], a["W_fro"][kq], a["excess"][kq], cls["KQ-generic"])
    if w.any():
        for ax, key in ((axes[0, 0], "eps"), (axes[0, 2], "excess")):
            _curves(ax, a["W_fro"][w], a[key][w], GREY, None, style="--", lw=0.6, alpha=0.6)
    wl = r"$\|W\|_F$"
    _loglog(axes[0, 0], wl, r"$\varepsilon$ (convex)", r"(a) $\varepsilon$-KKT, nuclear / Frobenius")
    _loglog(axes[0, 1], wl, r"$\varepsilon$ in $(K, Q)$", r"(b) parameter-space $\varepsilon$-KKT")
    _loglog(axes[0, 2], wl, r"$\|\tilde W\|/\|W^\ast_\alpha\| - 1$", "(c) value excess (exact)")
    counts = {c: int(np.sum(cls["KQ-generic"] == c)) for c in drawn} if kq.any() else {}
    _class_legend(fig, drawn, counts, ((proxy(GREY, "--"),), (r"$W$ runs vs the Frobenius SVM",)))
    return fig


__all__ = ["diag_figure", "full_figure", "kkt_diag_figure", "kkt_full_figure"]

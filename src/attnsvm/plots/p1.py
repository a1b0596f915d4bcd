"""Figures of P1 (Tarzanagh et al., NeurIPS 2023): 2-D paths of the prompt p (and head v) with the SVM
directions and the max-margin hyperplanes, as in P1's figures (single input, n inputs, joint (v, p) = Fig. 3
of the NeurIPS version, loss functions), plus the horizon panels this project adds
(cos with each SVM direction against the step, float64 beside the authors' float32 arithmetic).

Geometry panels live in the plane of the prompt-model keys Wᵀx (the first two coordinates: W = diag(1,1,0)
zeroes the third): a token t is a point k_t, the logit is ⟨k_t, p⟩, so p and the tokens share the plane.
The hyperplanes drawn are the margin lines of Att-SVM, {k : ⟨p^mm, k⟩ = ⟨p^mm, k_α⟩} (through the selected
token) and {k : ⟨p^mm, k⟩ = ⟨p^mm, k_α⟩ − 1} (through its support tokens).
"""


from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..svm import correlation
from .common import (
    BLACK,
    BLUE,
    GREY,
    ORANGE,
    PALETTE,
    decade_ticks,
    figure,
    floor_note,
    hyperplane,
    legend_below,
    proxy,
    ray,
    styled,
)

PMM = r"$p^{\mathrm{mm}}$"
FLOOR = 1e-16  # 1 − cos below this (exact in float64) is drawn at the floor of the log axis


def _cos(P: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return correlation(P, ref, zero=0.0)


def _gap(P: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """1 − cos(p, ref), floored for the log axis."""
    return np.maximum(1.0 - _cos(P, ref), FLOOR)


def _fit(ax: Any, *points: np.ndarray, pad: float = 0.08) -> float:
    """Axis limits to the bounding box of the given 2-D points and the origin (aspect free: a linear map of
    the plane keeps rays rays and hyperplanes lines). Returns the half-width of a box that covers it."""
    pts = np.concatenate([np.asarray(q, dtype=float)[..., :2].reshape(-1, 2) for q in points] + [np.zeros((1, 2))])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.maximum(hi - lo, 1e-9)
    lo, hi = lo - pad * span, hi + pad * span
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    return float(np.abs(np.concatenate([lo, hi])).max()) * 1.5


def _box(ax: Any, r: float) -> None:
    ax.set_xlim(-r, r)
    ax.set_ylim(-r, r)
    ax.set_aspect("equal", adjustable="box")


def _tokens(ax: Any, keys: np.ndarray, selected: np.ndarray | None = None, label: str = "tokens") -> None:
    """Scatter the key vectors (n, T, 2); the selected token of each sequence as a star."""
    pts = keys.reshape(-1, keys.shape[-1])
    ax.scatter(pts[:, 0], pts[:, 1], s=14, c="0.45", marker="o", zorder=3, label=label, linewidths=0)
    if selected is not None:
        sel = keys[np.arange(keys.shape[0]), selected]
        ax.scatter(sel[:, 0], sel[:, 1], s=60, c="#F0E442", edgecolors="k", linewidths=0.6, marker="*", zorder=4,
                   label=r"selected token $\alpha$")


def _margin_lines(ax: Any, keys: np.ndarray, alpha: np.ndarray, pmm: np.ndarray, extent: float,
                  color: Any = GREY, label: str | None = "margin hyperplanes", ls: Any = ":") -> None:
    """The Att-SVM margin lines of the first sequence's selected token (P1's separating hyperplanes)."""
    u = np.asarray(pmm[:2], dtype=float)
    if np.linalg.norm(u) == 0:
        return
    top = float(keys[0, alpha[0]] @ u)
    hyperplane(ax, u, top, extent, color=color, label=label, ls=ls)
    hyperplane(ax, u, top - 1.0, extent, color=color, ls=ls)


def _init_colors(m: int) -> list:
    return [PALETTE[j % len(PALETTE)] for j in range(m)]


@styled
def plot_single(cfg: Any, problems: dict, refs: dict, arrays: dict) -> Figure:
    """P1's single-input figure. Top: paths of p from each initialization p₀ (one colour per p₀, in every
    panel) over the first ``plotted_step`` steps, with the ray of p^mm of every locally optimal token and its
    margin lines. Bottom: 1 − cos(p, p^mm_α) on log axes over the whole horizon, α the locally optimal token
    the float64 path ends at (float64 solid, the authors' float32 arithmetic dotted)."""
    cases = list(problems)
    fig, axes = figure(ncols=len(cases), nrows=2, height=2.4, width=3.3 * len(cases))
    steps = arrays["steps"]
    colors = _init_colors(len(cfg.inits))
    k_plot = min(len(steps) - 1, int(np.searchsorted(steps, cfg.plotted_step)))
    other_styles = ["-.", (0, (5, 1.5, 1, 1.5, 1, 1.5))]
    handles: dict[str, Any] = {}
    for ci, case in enumerate(cases):
        ax = axes[0, ci]
        pr = problems[case]
        keys = pr.prompt_tokens()[..., :2]
        opt = int(pr.optimal_tokens().opt[0])
        _tokens(ax, keys, np.array([opt]))
        path = arrays[f"path_{case}"]
        for j in range(path.shape[0]):
            ax.plot(path[j, : k_plot + 1, 0], path[j, : k_plot + 1, 1], color=colors[j], lw=1.0,
                    label=f"$p_0$ = (0, {cfg.inits[j]:g})".replace("-", "−"))
            ax.plot(path[j, 0, 0], path[j, 0, 1], "o", color=colors[j], ms=3)
        r = 3.0
        others = [t for t, ref in refs[case].items() if t != opt and ref["p"] is not None and ref["local"]]
        ray(ax, refs[case][opt]["p"][:2], 2 * r, label=PMM + f" of token {opt} (global)", color=BLACK)
        _margin_lines(ax, keys, np.array([opt]), refs[case][opt]["p"], r, label=f"margin lines of token {opt}")
        for k, t in enumerate(others):
            ls = other_styles[k % len(other_styles)]
            ray(ax, refs[case][t]["p"][:2], 2 * r, label=PMM + f" of token {t} (locally optimal)", color=BLACK,
                style=ls)
            _margin_lines(ax, keys, np.array([t]), refs[case][t]["p"], r, color=GREY, ls=(0, (4, 2, 1, 2)),
                          label=f"margin lines of token {t}")
        _box(ax, r)
        ax.set_title(f"{case} case: paths of $p$, steps 0–{int(steps[k_plot])}")
        ax.set_xlabel("$p_1$")
        ax.set_ylabel("$p_2$")
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)

        ax = axes[1, ci]
        P64 = arrays[f"path_{case}"]
        P32 = arrays.get(f"path32_{case}")
        cands = {t: ref["p"] for t, ref in refs[case].items() if ref["p"] is not None and ref["local"]}
        for j in range(P64.shape[0]):
            # the reference of each path: p^mm of the locally optimal token its float64 run ends at
            t = max(cands, key=lambda u: float(_cos(P64[j, -1], cands[u])))
            ax.plot(steps[1:], _gap(P64[j, 1:], cands[t]), color=colors[j], lw=1.0)
            if P32 is not None:
                ax.plot(steps[1:], _gap(P32[j, 1:], cands[t]), ":", color=colors[j], lw=1.0)
        ax.axvline(cfg.plotted_step, color="0.6", lw=0.6, zorder=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NGD step")
        ax.set_ylabel(r"$1-\cos(p,\,p^{\mathrm{mm}}_\alpha)$")
        ax.set_title(rf"{case} case: direction of $p$, $\alpha$ = token it ends at")
        if any(np.any(_gap(P64[:, 1:], c) <= FLOOR) for c in cands.values()):
            floor_note(ax, FLOOR)
    handles["float64"] = proxy("0.3", "-")
    if any(f"path32_{c}" in arrays for c in cases):
        handles["float32 (authors' arithmetic)"] = proxy("0.3", ":")
    handles["steps plotted above"] = proxy("0.6", "-", lw=0.6)
    legend_below(fig, list(handles.values()), list(handles), ncol=4)
    return fig


@styled
def plot_multi(cfg: Any, problem: Any, ref: Any, arrays: dict) -> Figure:
    """P1's n-input figure; colour = method in every panel (NGD blue, GD orange), one line per p₀.
    (a) paths of p with p^mm and the margin lines; (b) the softmax of the optimal token; (c) ‖p‖ (log-log);
    (d) 1 − cos(p, p^mm) (log-log)."""
    fig, axes = figure(ncols=2, nrows=2, height=2.1, width=5.6)
    steps = arrays["steps"]
    m = len(cfg.inits)
    methods = (("ngd", BLUE, f"NGD, $\\eta$ = {cfg.lr_ngd:g}"), ("gd", ORANGE, f"GD, $\\eta$ = {cfg.lr_gd:g}"))
    ax = axes[0, 0]
    keys = problem.prompt_tokens()[..., :2]
    opt = problem.optimal_tokens().opt
    _tokens(ax, keys, opt)
    k_plot = min(len(steps) - 1, int(np.searchsorted(steps, cfg.plotted_step)))
    for name, color, lab in methods:
        path = arrays[f"{name}_path"][:m]
        for j in range(m):
            ax.plot(path[j, : k_plot + 1, 0], path[j, : k_plot + 1, 1], color=color, lw=0.9, alpha=0.85,
                    label=lab if j == 0 else None)
            ax.plot(path[j, 0, 0], path[j, 0, 1], "o", color=color, ms=2.5)
    r = _fit(ax, arrays["ngd_path"][:m, : k_plot + 1], arrays["gd_path"][:m, : k_plot + 1], keys)
    ray(ax, ref.solution[:2], 2 * r, label=PMM)
    _margin_lines(ax, keys, opt, ref.solution, r)
    ax.set_xlabel("$p_1$")
    ax.set_ylabel("$p_2$")
    ax.set_title(f"(a) paths of $p$, steps 0–{int(steps[k_plot])}")
    panels = ((axes[0, 1], "mass", "softmax on opt", "(b) attention on the optimal token", False),
              (axes[1, 0], "norm", r"$\|p\|$", r"(c) $\|p\|$: NGD $\propto t$, GD $\propto \log t$", True),
              (axes[1, 1], "cos", r"$1-\cos(p,\,p^{\mathrm{mm}})$", "(d) direction of $p$", True))
    for ax, key, ylab, title, logy in panels:
        for name, color, lab in methods:
            y = arrays[f"{name}_{key}"]
            if key == "cos":
                y = np.maximum(1.0 - y, FLOOR)
            for j in range(y.shape[0]):
                ax.plot(steps[1:], y[j, 1:], color=color, lw=0.7, alpha=0.8, label=lab if j == 0 else None)
        ax.axvline(cfg.plotted_step, color="0.6", lw=0.6, zorder=0)
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        if key == "mass":
            ax.set_ylim(0, 1.02)
        ax.set_xlabel("step")
        ax.set_ylabel(ylab)
        ax.set_title(title)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles.append(proxy("0.6", "-", lw=0.6))
    labels.append("last step drawn in (a)")
    legend_below(fig, handles, labels, ncol=4)
    return fig


@styled
def plot_joint(cfg: Any, problems: dict, refs: dict, arrays: dict) -> Figure:
    """P1 Fig. 3 (NeurIPS version): per case, the path of p with p^mm and p^relax, and the path of v with
    v^mm and the v-SVM hyperplanes vᵀr = ±1 through the selected tokens r_i (markers: label ±1).
    Colour = arithmetic (float64 blue, the authors' float32 orange), black = max-margin references."""
    cases = list(problems)
    fig, axes = figure(ncols=2, nrows=len(cases), height=2.3, width=5.6)
    k_plot = min(cfg.steps, cfg.plotted_step)
    for ci, case in enumerate(cases):
        pr, ref = problems[case], refs[case]
        keys = pr.prompt_tokens()
        ax = axes[ci, 0]
        _tokens(ax, keys, ref["alpha"])
        P = arrays[f"p_{case}"]
        ax.plot(P[:, 0], P[:, 1], color=BLUE, label="float64")
        ax.plot(P[k_plot, 0], P[k_plot, 1], "o", color=BLUE, ms=3)
        shown = [P, keys]
        if f"p32_{case}" in arrays:
            P32 = arrays[f"p32_{case}"]
            ax.plot(P32[:, 0], P32[:, 1], "-", color=ORANGE, lw=1.0, label="float32 (authors' arithmetic)",
                    zorder=1.9)
            ax.plot(P32[k_plot, 0], P32[k_plot, 1], "o", color=ORANGE, ms=3)
            shown.append(P32)
        r = _fit(ax, *shown)
        ray(ax, ref["p_mm"], 2 * r, label=PMM, color=BLACK)
        if not np.allclose(ref["p_mm"], ref["p_relax"]):
            ray(ax, ref["p_relax"], 2 * r, label=r"$p^{\mathrm{relax}}$", color=BLACK, style="-.")
        _margin_lines(ax, keys, ref["alpha"], ref["p_relax"], r, label=r"margin lines of $p^{\mathrm{relax}}$")
        ax.set_xlabel("$p_1$")
        ax.set_ylabel("$p_2$")
        ax.set_title(f"{case}: $p$ over {cfg.steps} steps")
        ax = axes[ci, 1]
        sel = pr.X[np.arange(pr.n), ref["alpha"]]
        for y, mk in ((1.0, "+"), (-1.0, "_")):
            pts = sel[pr.Y == y]
            ax.scatter(pts[:, 0], pts[:, 1], marker=mk, s=50, c="k", zorder=3, linewidths=1.2,
                       label=f"$r_i$, $Y_i = {y:+g}$")
        V = arrays[f"v_{case}"]
        ax.plot(V[:, 0], V[:, 1], color=BLUE)
        ax.plot(V[k_plot, 0], V[k_plot, 1], "o", color=BLUE, ms=3, label=f"step {k_plot}")
        rv = _fit(ax, V, sel)
        ray(ax, ref["v_mm"], 2 * rv, label=r"$v^{\mathrm{mm}}$", color=BLACK, style=(0, (1, 1)))
        for off in (1.0, -1.0):
            hyperplane(ax, ref["v_mm"], off, rv, label=r"$v^\top r = \pm 1$" if off > 0 else None)
        ax.set_xlabel("$v_1$")
        ax.set_ylabel("$v_2$")
        ax.set_title(f"{case}: $v$ (support samples {', '.join(map(str, ref['support']))})")
    legend_below(fig, ncol=5)
    return fig


@styled
def plot_loss(cfg: Any, arrays: dict) -> Figure:
    """P1's loss-function figure: paths of p for every C, one panel per loss, with the p^mm ray (parallel
    paths whose offset depends on ℓ and C); last panel 1 − cos(p, p^mm) on log axes over the whole horizon.
    Colour = C (ordered, cividis) in every panel; line style = loss."""
    import matplotlib as mpl

    losses = list(cfg.losses)
    fig, axes = figure(ncols=len(losses) + 1, nrows=1, height=2.3)
    steps = arrays["steps"]
    k_end = int(np.searchsorted(steps, cfg.steps))
    cmap = mpl.colormaps["cividis"]
    colors = [cmap(0.92 * j / max(1, len(cfg.Cs) - 1)) for j in range(len(cfg.Cs))]
    loss_ls = ["-", "--", ":"]
    loss_name = {"correlation": r"$\ell(x) = -x$", "logistic": "logistic", "exponential": "exponential"}
    for li, loss in enumerate(losses):
        ax = axes[0, li]
        P = arrays[f"path_{loss}"]
        for j, C in enumerate(cfg.Cs):
            ax.plot(P[j, : k_end + 1, 0], P[j, : k_end + 1, 1], loss_ls[li % 3], color=colors[j], lw=0.9,
                    label=f"$C$ = {C:g}")
        x_max = float(P[:, : k_end + 1, 0].max())
        ray(ax, arrays["p_mm"][0][:2], x_max, label=PMM, style=(0, (1, 1.5)), lw=1.4)
        ax.set_xlabel("$p_1$")
        ax.set_ylabel("$p_2$")
        ax.set_title(f"{loss_name.get(loss, loss)}: {cfg.steps} NGD steps")
    ax = axes[0, len(losses)]
    exact = False
    for li, loss in enumerate(losses):
        c = arrays[f"cos_{loss}"]
        for j in range(len(cfg.Cs)):
            y = 1 - c[j, 1:]
            exact |= bool(np.any(y <= FLOOR))
            ax.plot(steps[1:], np.maximum(y, FLOOR), loss_ls[li % 3], color=colors[j], lw=0.8)
    ax.axvline(cfg.steps, color="0.6", lw=0.6, zorder=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo = max(FLOOR, float(np.nanmin([np.maximum(1 - arrays[f"cos_{loss}"][:, 1:], FLOOR) for loss in losses])))
    decade_ticks(ax.yaxis, lo, 1.0)
    ax.set_xlabel("NGD step")
    ax.set_ylabel(r"$1-\cos(p,\,p^{\mathrm{mm}})$")
    ax.set_title(f"direction over {int(steps[-1])} steps")
    if exact:
        floor_note(ax, FLOOR)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for li, loss in enumerate(losses):
        handles.append(proxy("0.3", loss_ls[li % 3]))
        labels.append(f"loss: {loss_name.get(loss, loss)}")
    legend_below(fig, handles, labels, ncol=min(8, len(handles)))
    return fig


__all__ = ["plot_joint", "plot_loss", "plot_multi", "plot_single"]

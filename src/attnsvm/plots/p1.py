"""Figures of P1 (Tarzanagh et al., NeurIPS 2023): 2-D paths of the prompt p (and head v) with the SVM
directions and the max-margin hyperplanes, as in P1 Figs. 2–5, plus the horizon panels this project adds
(cos with each SVM direction against the step, float64 beside the authors' float32 arithmetic).

Geometry panels live in the plane of the prompt-model keys Wᵀx (the first two coordinates: W = diag(1,1,0)
zeroes the third): a token t is a point k_t, the logit is ⟨k_t, p⟩, so p and the tokens share the plane.
The hyperplanes drawn are the margin lines of Att-SVM, {k : ⟨p^mm, k⟩ = ⟨p^mm, k_α⟩} (through the selected
token) and {k : ⟨p^mm, k⟩ = ⟨p^mm, k_α⟩ − 1} (through its support tokens).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import COLORS, column_figure, hyperplane, ray


def _box(ax, r: float) -> None:
    ax.set_xlim(-r, r)
    ax.set_ylim(-r, r)
    ax.set_aspect("equal", adjustable="box")


def _tokens(ax, keys: np.ndarray, selected: np.ndarray | None = None, label: str = "tokens") -> None:
    """Scatter the key vectors (n, T, 2); the selected token of each sequence as a star."""
    pts = keys.reshape(-1, keys.shape[-1])
    ax.scatter(pts[:, 0], pts[:, 1], s=14, c="0.35", marker="o", zorder=3, label=label)
    if selected is not None:
        sel = keys[np.arange(keys.shape[0]), selected]
        ax.scatter(sel[:, 0], sel[:, 1], s=60, c="gold", edgecolors="k", marker="*", zorder=4, label="selected α")


def _margin_lines(ax, keys: np.ndarray, alpha: np.ndarray, pmm: np.ndarray, extent: float,
                  color: str = "0.5", label: str | None = "margin hyperplanes") -> None:
    """The Att-SVM margin lines of the first sequence's selected token (P1's separating hyperplanes)."""
    u = np.asarray(pmm[:2], dtype=float)
    if np.linalg.norm(u) == 0:
        return
    top = float(keys[0, alpha[0]] @ u)
    hyperplane(ax, u, top, extent, color=color, label=label)
    hyperplane(ax, u, top - 1.0, extent, color=color)


def plot_single(cfg: Any, problems: dict, refs: dict, arrays: dict):
    """P1 Fig. 2: paths of p (global / local case) with p^mm rays and margin lines; below, cos(p, p^mm_α)
    against the step over the whole horizon (float64 solid, the authors' float32 arithmetic dashed)."""
    cases = list(problems)
    fig, axes = column_figure(ncols=len(cases), nrows=2, height=2.5)
    steps = arrays["steps"]
    for ci, case in enumerate(cases):
        ax = axes[0, ci]
        pr = problems[case]
        keys = pr.prompt_tokens()[..., :2]
        opt = int(pr.optimal_tokens().opt[0])
        _tokens(ax, keys, np.array([opt]))
        path = arrays[f"path_{case}"]
        k_plot = min(len(steps) - 1, int(np.searchsorted(steps, cfg.plotted_step)))
        for j in range(path.shape[0]):
            ax.plot(path[j, : k_plot + 1, 0], path[j, : k_plot + 1, 1], color=COLORS[j % 10], lw=1.0,
                    label=f"p₀ = (0, {cfg.inits[j]:g})")
            ax.plot(path[j, 0, 0], path[j, 0, 1], "o", color=COLORS[j % 10], ms=3)
        r = 3.0
        for t, ref in refs[case].items():
            if ref["p"] is None or not ref["local"]:
                continue
            ray(ax, ref["p"][:2], 2 * r, label=f"p^mm (token {t})", color="k" if t == opt else "crimson")
        _margin_lines(ax, keys, np.array([opt]), refs[case][opt]["p"], r)
        _box(ax, r)
        ax.set_title(f"{case} case: paths of p (first {steps[k_plot]} steps)")
        ax.set_xlabel("p₁")
        ax.set_ylabel("p₂")
        if ci == 0:
            ax.legend(loc="lower left", fontsize=5, ncol=2)
        ax = axes[1, ci]
        local = [t for t, ref in refs[case].items() if ref["local"]]
        for t in local:
            c = arrays[f"cos_{case}_tok{t}"]
            for j in range(c.shape[0]):
                ax.plot(steps[1:], c[j, 1:], color=COLORS[j % 10], lw=0.9,
                        ls="-" if t == opt else "-.", label=f"float64, token {t}" if j == 0 else None)
            if f"path32_{case}" in arrays:
                c32 = np.stack([np.asarray(arrays[f"path32_{case}"][j] @ refs[case][t]["p"]) /
                                np.maximum(np.linalg.norm(arrays[f"path32_{case}"][j], axis=-1) *
                                           np.linalg.norm(refs[case][t]["p"]), 1e-300)
                                for j in range(c.shape[0])])
                for j in range(c.shape[0]):
                    ax.plot(steps[1:], c32[j, 1:], color=COLORS[j % 10], lw=0.6, ls=":",
                            label=f"float32 (authors'), token {t}" if j == 0 else None)
        ax.axvline(cfg.plotted_step, color="0.6", lw=0.6)
        ax.set_xscale("log")
        ax.set_ylim(-0.3, 1.05)
        ax.set_xlabel("step")
        ax.set_ylabel("cos(p, p^mm_α)")
        ax.set_title(f"{case}: direction over the horizon")
        ax.legend(fontsize=5, loc="lower left")
    fig.tight_layout()
    return fig


def plot_multi(cfg: Any, problem, ref, arrays: dict):
    """P1 Fig. 3: NGD paths of p with p^mm and margin lines; softmax of opt and ‖p‖ vs step, NGD vs GD."""
    fig, axes = column_figure(ncols=3, nrows=1, height=2.4)
    steps = arrays["steps"]
    m = len(cfg.inits)
    ax = axes[0, 0]
    keys = problem.prompt_tokens()[..., :2]
    opt = problem.optimal_tokens().opt
    _tokens(ax, keys, opt)
    k_plot = min(len(steps) - 1, int(np.searchsorted(steps, cfg.plotted_step)))
    r = 2.5
    for name, ls in (("ngd", "-"), ("gd", "--")):
        path = arrays[f"{name}_path"][:m]
        for j in range(m):
            ax.plot(path[j, : k_plot + 1, 0], path[j, : k_plot + 1, 1], ls, color=COLORS[j % 10], lw=0.9,
                    label=(f"{name.upper()} p₀ = ({cfg.inits[j]:g}, 0)" if name == "ngd" else
                           ("GD (dashed)" if j == 0 else None)))
    ray(ax, ref.solution[:2], 2 * r, label="p^mm")
    _margin_lines(ax, keys, opt, ref.solution, r)
    _box(ax, r)
    ax.set_xlabel("p₁")
    ax.set_ylabel("p₂")
    ax.set_title("paths of p")
    ax.legend(fontsize=5, loc="lower left", ncol=2)
    for ax, key, ylab in ((axes[0, 1], "mass", "softmax of the optimal token"), (axes[0, 2], "norm", "‖p‖")):
        for name, lab in (("ngd", f"NGD η={cfg.lr_ngd:g}"), ("gd", f"GD η={cfg.lr_gd:g}")):
            y = arrays[f"{name}_{key}"]
            for j in range(y.shape[0]):
                ax.plot(steps, y[j], color="C0" if name == "ngd" else "C3", lw=0.7, alpha=0.8,
                        label=lab if j == 0 else None)
        ax.axvline(cfg.plotted_step, color="0.6", lw=0.6)
        ax.set_xlabel("step")
        ax.set_ylabel(ylab)
        ax.legend(fontsize=6)
    axes[0, 1].set_xscale("log")
    axes[0, 1].set_title("attention on opt")
    axes[0, 2].set_title("‖p‖: linear (NGD) vs log (GD)")
    fig.tight_layout()
    return fig


def plot_joint(cfg: Any, problems: dict, refs: dict, arrays: dict):
    """P1 Fig. 4: per case, the path of p with p^mm and p^relax, and the path of v with v^mm and the
    v-SVM hyperplanes vᵀx = ±1 through the selected tokens (labels ±)."""
    cases = list(problems)
    fig, axes = column_figure(ncols=2, nrows=len(cases), height=2.5)
    k_plot = min(cfg.steps, cfg.plotted_step)
    for ci, case in enumerate(cases):
        pr, ref = problems[case], refs[case]
        keys = pr.prompt_tokens()
        ax = axes[ci, 0]
        _tokens(ax, keys, ref["alpha"])
        P = arrays[f"p_{case}"]
        ax.plot(P[: k_plot + 1, 0], P[: k_plot + 1, 1], color="C0", label="p (float64)")
        if f"p32_{case}" in arrays:
            P32 = arrays[f"p32_{case}"]
            ax.plot(P32[:, 0], P32[:, 1], ":", color="C1", lw=0.8, label=f"p (float32, {cfg.steps} steps)")
        r = max(3.0, 1.1 * float(np.abs(P[: k_plot + 1]).max()))
        ray(ax, ref["p_mm"], 2 * r, label="p^mm", color="k")
        if not np.allclose(ref["p_mm"], ref["p_relax"]):
            ray(ax, ref["p_relax"], 2 * r, label="p^relax", color="crimson", style="-.")
        _margin_lines(ax, keys, ref["alpha"], ref["p_relax"], r, label="margin lines (p^relax)")
        _box(ax, r)
        ax.set_xlabel("p₁")
        ax.set_ylabel("p₂")
        ax.set_title(f"{case}: p (first {k_plot} steps)")
        ax.legend(fontsize=5, loc="lower left")
        ax = axes[ci, 1]
        sel = pr.X[np.arange(pr.n), ref["alpha"]]
        for y, mk in ((1.0, "+"), (-1.0, "_")):
            pts = sel[pr.Y == y]
            ax.scatter(pts[:, 0], pts[:, 1], marker=mk, s=50, c="k", zorder=3, label=f"r_i, Y = {y:+g}")
        V = arrays[f"v_{case}"]
        ax.plot(V[: k_plot + 1, 0], V[: k_plot + 1, 1], color="C2", label="v (float64)")
        rv = max(3.0, 1.1 * float(np.abs(V[: k_plot + 1]).max()))
        ray(ax, ref["v_mm"], 2 * rv, label="v^mm", color="k")
        for off in (1.0, -1.0):
            hyperplane(ax, ref["v_mm"], off, rv, label="vᵀr = ±1" if off > 0 else None)
        _box(ax, rv)
        ax.set_xlabel("v₁")
        ax.set_ylabel("v₂")
        ax.set_title(f"{case}: v (support samples {list(ref['support'])})")
        ax.legend(fontsize=5, loc="lower left")
    fig.tight_layout()
    return fig


def plot_loss(cfg: Any, arrays: dict):
    """P1 Fig. 5: paths of p for every C, one panel per loss, with the p^mm ray: parallel paths whose
    offset depends on ℓ and C."""
    losses = list(cfg.losses)
    fig, axes = column_figure(ncols=len(losses), nrows=1, height=2.6)
    steps = arrays["steps"]
    k_end = int(np.searchsorted(steps, cfg.steps))
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    for li, loss in enumerate(losses):
        ax = axes[0, li]
        P = arrays[f"path_{loss}"]
        for j, C in enumerate(cfg.Cs):
            ax.plot(P[j, : k_end + 1, 0], P[j, : k_end + 1, 1], color=cmap(j / max(1, len(cfg.Cs) - 1)), lw=0.9,
                    label=f"C = {C:g}")
        x_max = float(P[:, : k_end + 1, 0].max())
        ray(ax, arrays["p_mm"][0][:2], x_max, label="p^mm")
        ax.set_xlabel("p₁")
        ax.set_ylabel("p₂")
        ax.set_title(f"ℓ = {'−x' if loss == 'correlation' else loss}: {cfg.steps} NGD steps")
        ax.legend(fontsize=5, ncol=2)
    fig.tight_layout()
    return fig

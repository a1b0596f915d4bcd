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

from .common import COLORS, column_figure, hyperplane, ray


def _cos(P: np.ndarray, ref: np.ndarray) -> np.ndarray:
    den = np.linalg.norm(P, axis=-1) * np.linalg.norm(ref)
    return np.divide(P @ ref, den, out=np.zeros(P.shape[:-1]), where=den > 0)


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
    ax.scatter(pts[:, 0], pts[:, 1], s=14, c="0.35", marker="o", zorder=3, label=label)
    if selected is not None:
        sel = keys[np.arange(keys.shape[0]), selected]
        ax.scatter(sel[:, 0], sel[:, 1], s=60, c="gold", edgecolors="k", marker="*", zorder=4, label="selected α")


def _margin_lines(ax: Any, keys: np.ndarray, alpha: np.ndarray, pmm: np.ndarray, extent: float,
                  color: str = "0.5", label: str | None = "margin hyperplanes") -> None:
    """The Att-SVM margin lines of the first sequence's selected token (P1's separating hyperplanes)."""
    u = np.asarray(pmm[:2], dtype=float)
    if np.linalg.norm(u) == 0:
        return
    top = float(keys[0, alpha[0]] @ u)
    hyperplane(ax, u, top, extent, color=color, label=label)
    hyperplane(ax, u, top - 1.0, extent, color=color)


def plot_single(cfg: Any, problems: dict, refs: dict, arrays: dict) -> Figure:
    """P1's single-input figure: paths of p (global / local case) with p^mm rays and margin lines; below, cos(p, p^mm_α)
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
        for t, ref in refs[case].items():
            if t != opt and ref["local"]:
                _margin_lines(ax, keys, np.array([t]), ref["p"], r, color="crimson",
                              label=f"margin lines (token {t})")
        _box(ax, r)
        ax.set_title(f"{case} case: paths of p (first {steps[k_plot]} steps)")
        ax.set_xlabel("p₁")
        ax.set_ylabel("p₂")
        if ci == 0:
            ax.legend(loc="lower left", fontsize=5, ncol=2)
        ax = axes[1, ci]
        P64 = arrays[f"path_{case}"]
        P32 = arrays.get(f"path32_{case}")
        cands = {t: ref["p"] for t, ref in refs[case].items() if ref["p"] is not None and ref["local"]}
        for j in range(P64.shape[0]):
            # the reference of each path: p^mm of the locally optimal token its float64 run ends at
            t = max(cands, key=lambda u: float(_cos(P64[j, -1], cands[u])))
            ax.plot(steps[1:], _cos(P64[j, 1:], cands[t]), color=COLORS[j % 10], lw=1.0,
                    label="float64" if j == 0 else None)
            if P32 is not None:
                ax.plot(steps[1:], _cos(P32[j, 1:], cands[t]), ":", color=COLORS[j % 10], lw=0.9,
                        label="float32 (authors' arithmetic)" if j == 0 else None)
        ax.axvline(cfg.plotted_step, color="0.6", lw=0.6)
        ax.set_xscale("log")
        ax.set_ylim(-0.3, 1.05)
        ax.set_xlabel("step")
        ax.set_ylabel("cos(p, p^mm_α)")
        ax.set_title(f"{case}: cos with p^mm of the path's final α")
        ax.legend(fontsize=5, loc="best", framealpha=0.6)
    fig.tight_layout()
    return fig


def plot_multi(cfg: Any, problem: Any, ref: Any, arrays: dict) -> Figure:
    """P1's n-input figure: NGD paths of p with p^mm and margin lines; softmax of opt and ‖p‖ vs step, NGD vs GD."""
    fig, axes = column_figure(ncols=3, nrows=1, height=2.4)
    steps = arrays["steps"]
    m = len(cfg.inits)
    ax = axes[0, 0]
    keys = problem.prompt_tokens()[..., :2]
    opt = problem.optimal_tokens().opt
    _tokens(ax, keys, opt)
    k_plot = min(len(steps) - 1, int(np.searchsorted(steps, cfg.plotted_step)))
    for name, ls in (("ngd", "-"), ("gd", "--")):
        path = arrays[f"{name}_path"][:m]
        for j in range(m):
            ax.plot(path[j, : k_plot + 1, 0], path[j, : k_plot + 1, 1], ls, color=COLORS[j % 10], lw=0.9,
                    label=(f"{name.upper()} ({'solid' if name == 'ngd' else 'dashed'}; colour = p₀)"
                           if j == 0 else None))
    r = _fit(ax, arrays["ngd_path"][:m, : k_plot + 1], arrays["gd_path"][:m, : k_plot + 1], keys)
    ray(ax, ref.solution[:2], 2 * r, label="p^mm")
    _margin_lines(ax, keys, opt, ref.solution, r)
    ax.set_xlabel("p₁")
    ax.set_ylabel("p₂")
    ax.set_title(f"paths of p (first {steps[k_plot]} steps)")
    ax.legend(fontsize=5, loc="upper left", bbox_to_anchor=(0.0, -0.25), ncol=2)
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
    axes[0, 2].set_xscale("log")
    axes[0, 2].set_yscale("log")
    axes[0, 2].set_title("‖p‖ (log-log): NGD ∝ t, GD ∝ log t")
    fig.tight_layout()
    return fig


def plot_joint(cfg: Any, problems: dict, refs: dict, arrays: dict) -> Figure:
    """P1 Fig. 3 (NeurIPS version): per case, the path of p with p^mm and p^relax, and the path of v with
    v^mm and the v-SVM hyperplanes vᵀx = ±1 through the selected tokens (labels ±)."""
    cases = list(problems)
    fig, axes = column_figure(ncols=2, nrows=len(cases), height=2.5)
    k_plot = min(cfg.steps, cfg.plotted_step)
    for ci, case in enumerate(cases):
        pr, ref = problems[case], refs[case]
        keys = pr.prompt_tokens()
        ax = axes[ci, 0]
        _tokens(ax, keys, ref["alpha"])
        P = arrays[f"p_{case}"]
        ax.plot(P[:, 0], P[:, 1], color="C0", label="p (float64)")
        ax.plot(P[k_plot, 0], P[k_plot, 1], "o", color="C0", ms=3, label=f"step {k_plot}")
        shown = [P, keys]
        if f"p32_{case}" in arrays:
            P32 = arrays[f"p32_{case}"]
            ax.plot(P32[:, 0], P32[:, 1], "-", color="C1", lw=1.0, label="p (float32, authors' arithmetic)")
            ax.plot(P32[k_plot, 0], P32[k_plot, 1], "o", color="C1", ms=3)
            shown.append(P32)
        r = _fit(ax, *shown)
        ray(ax, ref["p_mm"], 2 * r, label="p^mm", color="k")
        if not np.allclose(ref["p_mm"], ref["p_relax"]):
            ray(ax, ref["p_relax"], 2 * r, label="p^relax", color="crimson", style="-.")
        _margin_lines(ax, keys, ref["alpha"], ref["p_relax"], r, label="margin lines (p^relax)")
        ax.set_xlabel("p₁")
        ax.set_ylabel("p₂")
        ax.set_title(f"{case}: p over {cfg.steps} steps")
        ax.legend(fontsize=5, loc="best", framealpha=0.6)
        ax = axes[ci, 1]
        sel = pr.X[np.arange(pr.n), ref["alpha"]]
        for y, mk in ((1.0, "+"), (-1.0, "_")):
            pts = sel[pr.Y == y]
            ax.scatter(pts[:, 0], pts[:, 1], marker=mk, s=50, c="k", zorder=3, label=f"r_i, Y = {y:+g}")
        V = arrays[f"v_{case}"]
        ax.plot(V[:, 0], V[:, 1], color="C2", label="v (float64)")
        ax.plot(V[k_plot, 0], V[k_plot, 1], "o", color="C2", ms=3, label=f"step {k_plot}")
        rv = _fit(ax, V, sel)
        ray(ax, ref["v_mm"], 2 * rv, label="v^mm", color="k")
        for off in (1.0, -1.0):
            hyperplane(ax, ref["v_mm"], off, rv, label="vᵀr = ±1" if off > 0 else None)
        ax.set_xlabel("v₁")
        ax.set_ylabel("v₂")
        ax.set_title(f"{case}: v (support samples {list(ref['support'])})")
        ax.legend(fontsize=5, loc="best", framealpha=0.6)
    fig.tight_layout()
    return fig


def plot_loss(cfg: Any, arrays: dict) -> Figure:
    """P1's loss-function figure: paths of p for every C, one panel per loss, with the p^mm ray: parallel paths whose
    offset depends on ℓ and C."""
    losses = list(cfg.losses)
    fig, axes = column_figure(ncols=len(losses) + 1, nrows=1, height=2.6)
    steps = arrays["steps"]
    k_end = int(np.searchsorted(steps, cfg.steps))
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
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
    ax = axes[0, len(losses)]
    for li, loss in enumerate(losses):
        c = arrays[f"cos_{loss}"]
        for j in range(len(cfg.Cs)):
            ax.plot(steps[1:], np.maximum(1 - c[j, 1:], 1e-12), ["-", "--", ":"][li % 3],
                    color=cmap(j / max(1, len(cfg.Cs) - 1)), lw=0.8,
                    label=("ℓ = −x" if loss == "correlation" else f"ℓ = {loss}") if j == len(cfg.Cs) - 1 else None)
    ax.axvline(cfg.steps, color="0.6", lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("1 − cos(p, p^mm)")
    ax.set_title(f"direction over {int(steps[-1])} steps")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig

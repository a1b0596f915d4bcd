"""Figures of the P3 reproductions (Tarzanagh, Li, Thrampoulidis, Oymak, *Transformers as SVMs*, 2023)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .common import (
    BLACK,
    BLUE,
    GREEN,
    ORANGE,
    PALETTE,
    PURPLE,
    REF_STYLE,
    VERMILLION,
    band,
    decade_ticks,
    figure,
    integer_ticks,
    legend_below,
    proxy,
    ray,
    styled,
)

#: one colour per parameterization, in every P3 figure
PARAM_COLORS = {"W": BLUE, "KQ": ORANGE, "KQ-ridge": GREEN}
PARAM_LABELS = {"W": "$W$", "KQ": "$(K,Q)$", "KQ-ridge": "$(K,Q)$ + ridge"}
FRO_LABEL = r"$W^{\mathrm{mm}}_\alpha$ (Frobenius)"
NUC_LABEL = r"$W^{\mathrm{mm}}_{\ast,\alpha}$ (nuclear)"
FLOOR = 1e-16


@styled
def local_figure(steps: np.ndarray, data: dict[str, dict[str, np.ndarray]]) -> Figure:
    """P3 local-convergence figure, median and 10–90 % band over trials on log axes. Colour =
    parameterization (W, (K, Q), (K, Q) with the authors' ridge) in every panel; line style = reference SVM
    (Frobenius W^mm_α solid, nuclear W^mm_★,α dashed). (a) 1 − max softmax; (b) W: 1 − corr with each SVM;
    (c) (K, Q): the same (the (K, Q) panel is not in P3)."""
    fig, axes = figure(ncols=3, nrows=1, height=2.3)
    ax0, ax1, ax2 = axes[0]
    names = [n for n in ("W", "KQ", "KQ-ridge") if n in data]
    for name in names:
        band(ax0, steps, 1.0 - data[name]["max_softmax"], color=PARAM_COLORS[name], log_y=True, lo=FLOOR)
    ax0.set_ylabel(r"$1-$ max softmax")
    ax0.set_title("(a) attention saturation")
    band(ax1, steps, 1.0 - data["W"]["corr_fro"], color=PARAM_COLORS["W"], log_y=True, lo=FLOOR,
         ls=REF_STYLE["fro"])
    band(ax1, steps, 1.0 - data["W"]["corr_nuc"], color=PARAM_COLORS["W"], log_y=True, lo=FLOOR,
         ls=REF_STYLE["nuclear"])
    ax1.set_title("(b) $W$")
    for name in ("KQ", "KQ-ridge"):
        if name not in data:
            continue
        band(ax2, steps, 1.0 - data[name]["corr_nuc"], color=PARAM_COLORS[name], log_y=True, lo=FLOOR,
             ls=REF_STYLE["nuclear"])
        if name == "KQ":
            band(ax2, steps, 1.0 - data[name]["corr_fro"], color=PARAM_COLORS[name], log_y=True, lo=FLOOR,
                 ls=REF_STYLE["fro"])
    ax2.set_title("(c) $(K,Q)$")
    for ax in (ax1, ax2):
        ax.set_ylabel(r"$1-\mathrm{corr}$")
    for ax in axes[0]:
        ax.set_xlabel("NGD step")
        integer_ticks(ax.xaxis)
        ax.set_ylim(top=1.5)
    handles = [proxy(PARAM_COLORS[n]) for n in names] + [proxy(BLACK, REF_STYLE["fro"]),
                                                         proxy(BLACK, REF_STYLE["nuclear"])]
    labels = [PARAM_LABELS[n] for n in names] + [f"vs {FRO_LABEL}", f"vs {NUC_LABEL}"]
    legend_below(fig, handles, labels, ncol=5)
    return fig


@styled
def rank_figure(table, published=None) -> Figure:
    """P3 rank figure: mean rank of W^mm (Frobenius, solid circles) and W^mm_★ (nuclear, dashed squares) vs
    d, for the n sweep (T = 5) and the T sweep (n = 5); the published-style count dotted. Colour = (n, T)
    setting, the same in both panels (the shared setting n = T = 5 has one colour)."""
    fig, axes = figure(ncols=2, nrows=1, height=2.3, width=5.6, sharey=True)
    settings = sorted({(int(r.n), int(r.T)) for r in table.itertuples()})
    base = [s for s in settings if s[0] == s[1]]
    order = base + [s for s in settings if s not in base]
    color = {s: PALETTE[k % len(PALETTE)] for k, s in enumerate(order)}
    published_shown = False
    for ax, sweep in zip(axes[0], ("n", "T"), strict=True):
        sub = table[table["sweep"] == sweep]
        for (n, T), s in sub.groupby(["n", "T"]):
            s = s.sort_values("d")
            c = color[(int(n), int(T))]
            ax.plot(s["d"], s["rank_fro"], "o-", color=c)
            ax.plot(s["d"], s["rank_nuc"], "s--", color=c, alpha=0.9)
            if "published_rank_nuc" in s:
                ax.plot(s["d"], s["published_rank_nuc"], ":", color=c, lw=0.9)
                published_shown = True
        ax.set_xlabel("$d$")
        integer_ticks(ax.xaxis, sorted(table["d"].unique()))
        ax.set_title(f"({'a' if sweep == 'n' else 'b'}) " + ("$T$ = 5, $n$ varies" if sweep == "n"
                                                            else "$n$ = 5, $T$ varies"))
    axes[0, 0].set_ylabel("mean rank")
    integer_ticks(axes[0, 0].yaxis)
    handles = [proxy(color[s]) for s in order]
    labels = [f"$n$ = {n}, $T$ = {T}" for n, T in order]
    handles += [proxy(BLACK, "-", marker="o"), proxy(BLACK, "--", marker="s")]
    labels += ["Frobenius $W^{\\mathrm{mm}}$ (certified)", "nuclear $W^{\\mathrm{mm}}_\\ast$ (certified)"]
    if published_shown:
        handles.append(proxy(BLACK, ":", lw=0.9))
        labels.append("nuclear, published-style count")
    legend_below(fig, handles, labels, ncol=min(4, len(handles)))
    return fig


@styled
def paths_figure(problem, paths: dict[str, np.ndarray], W_fro: np.ndarray, W_nuc: np.ndarray) -> Figure:
    """P3 2-D path figure: W_t z_i along NGD (one panel per parameterization: W, and KQᵀ for (K, Q)). Colour =
    query z_i in every panel, for its path and for its two rays W^mm z_i (Frobenius, dashed) and W^mm_★ z_i
    (nuclear, dotted); each ray is labelled with its query at its end."""
    fig, axes = figure(ncols=len(paths), nrows=1, height=2.5, width=min(7.0, 2.8 * len(paths) + 0.4))
    Z = problem.queries
    titles = {"W": "(a) $W$", "KQ": r"(b) $(K,Q)$: $KQ^\top$"}
    # green / vermillion first: neither is used for anything else in this figure
    order = (GREEN, VERMILLION, ORANGE, BLUE, PURPLE)
    qcolors = [order[i % len(order)] for i in range(Z.shape[0])]
    for ax, (name, path) in zip(axes[0], paths.items(), strict=True):
        length = 0.0
        for i in range(Z.shape[0]):
            pts = path @ Z[i]  # (R, 2)
            length = max(length, float(np.max(np.linalg.norm(pts, axis=1))))
            ax.plot(pts[:, 0], pts[:, 1], "-", color=qcolors[i], lw=1.1)
            ax.plot(*pts[-1], "o", color=qcolors[i], markersize=3)
        for i in range(Z.shape[0]):
            for Wref, ls in ((W_fro, (0, (4, 2))), (W_nuc, (0, (1, 1.5)))):
                u = Wref @ Z[i]
                ray(ax, u, length, color=qcolors[i], style=ls, lw=1.0)
            end = length * (W_fro @ Z[i]) / np.linalg.norm(W_fro @ Z[i])
            ax.annotate(f"$z_{i + 1}$", end, xytext=(3, 3), textcoords="offset points", color=qcolors[i],
                        fontsize=8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("coordinate 1")
        ax.set_ylabel("coordinate 2")
        ax.set_title(titles.get(name, name))
    handles = [proxy(c) for c in qcolors] + [proxy(BLACK, "-"), proxy(BLACK, (0, (4, 2))),
                                            proxy(BLACK, (0, (1, 1.5)))]
    labels = [f"query $z_{i + 1}$" for i in range(Z.shape[0])] + [
        r"path $W_t z_i$ (dot: last step)", r"ray of $W^{\mathrm{mm}} z_i$ (Frobenius)",
        r"ray of $W^{\mathrm{mm}}_\ast z_i$ (nuclear)"]
    legend_below(fig, handles, labels, ncol=3)
    return fig


@styled
def multitoken_figure(steps: np.ndarray, curves: dict[int, dict[str, np.ndarray]],
                      masked: dict[int, np.ndarray], final: dict[int, np.ndarray],
                      split: float | None = None) -> Figure:
    """P3 multi-token figure. (a) mean 1 − corr vs step (log scale) with the SVM-equivalence W^fin + R·W^dir
    (solid), W^dir (dashed) and the 1-token SVM (dotted); colour = d in both panels. (b) largest masked
    softmax vs the final 1 − corr with W^fin + R·W^dir, with the ``split`` the report's means use."""
    fig, axes = figure(ncols=2, nrows=1, height=2.4, width=5.6)
    ax0, ax1 = axes[0]
    styles = {"svmeq": "-", "dir": "--", "single": ":"}
    names = {"svmeq": r"$W^{\mathrm{fin}}+R\,W^{\mathrm{dir}}$", "dir": r"$W^{\mathrm{dir}}$",
             "single": "1-token SVM"}
    ds = sorted(curves)
    dcolor = {d: PALETTE[k % len(PALETTE)] for k, d in enumerate(ds)}
    for d in ds:
        for key, ls in styles.items():
            y = np.maximum(1.0 - curves[d][key], FLOOR)
            ax0.plot(steps, np.nanmean(y, axis=0), ls=ls, color=dcolor[d])
    ax0.set_yscale("log")
    ax0.set_xlabel("NGD step")
    integer_ticks(ax0.xaxis)
    ax0.set_ylabel(r"mean $1-\mathrm{corr}$")
    ax0.set_title("(a) SVM-equivalence")
    xs = np.concatenate([np.maximum(masked[d], 1e-300) for d in masked])
    for d in sorted(masked):
        ax1.scatter(np.maximum(masked[d], 1e-300), np.maximum(final[d], FLOOR), s=6, color=dcolor.get(d),
                    alpha=0.75, linewidths=0)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    if xs.size:
        decade_ticks(ax1.xaxis, float(xs.min()), float(max(xs.max(), split or 0.0, 1e-300)) * 10)
    if split is not None:
        ax1.axvline(split, color="0.35", ls="--", lw=0.8)
        ax1.annotate(f"split of the report: {split:g}", (split, 0), xycoords=("data", "axes fraction"),
                     xytext=(-3, 3), textcoords="offset points", ha="right", va="bottom", fontsize=6,
                     color="0.35")
    ax1.set_xlabel("largest masked softmax")
    ax1.set_ylabel(r"final $1-\mathrm{corr}(W,\,W^{\mathrm{fin}}+R\,W^{\mathrm{dir}})$")
    ax1.set_title("(b) masked probability")
    handles = [proxy(dcolor[d]) for d in ds] + [proxy(BLACK, ls) for ls in styles.values()]
    labels = [f"$d$ = {d}" for d in ds] + [f"vs {names[k]}" for k in styles]
    legend_below(fig, handles, labels, ncol=min(5, len(handles)))
    return fig


__all__ = ["local_figure", "multitoken_figure", "paths_figure", "rank_figure"]

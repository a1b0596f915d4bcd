"""Figures of the P3 reproductions (Tarzanagh, Li, Thrampoulidis, Oymak, *Transformers as SVMs*, 2023)."""

from __future__ import annotations

import numpy as np

from .common import COLORS, band, column_figure, ray


def local_figure(steps: np.ndarray, data: dict[str, dict[str, np.ndarray]]):
    """P3 local-convergence figure: softmax mass and correlations with W^mm_α / W^mm_★,α, mean ± std over
    trials, for W and for (K, Q) with and without the authors' ridge (the (K, Q) panel is not in P3)."""
    fig, axes = column_figure(ncols=3, nrows=1, height=2.3)
    ax0, ax1, ax2 = axes[0]
    labels = {"W": "W", "KQ": "(K,Q)", "KQ-ridge": "(K,Q) + ridge"}
    for k, (name, lab) in enumerate(labels.items()):
        if name in data:
            band(ax0, steps, data[name]["max_softmax"], label=lab, color=COLORS[k])
    ax0.set_xlabel("NGD step")
    ax0.set_ylabel("mean max softmax")
    ax0.set_title("(a) attention saturation")
    ax0.legend(loc="lower right")
    W = data["W"]
    band(ax1, steps, W["corr_fro"], label=r"$W^{mm}_\alpha$ (Frobenius)", color=COLORS[0])
    band(ax1, steps, W["corr_nuc"], label=r"$W^{mm}_{\star,\alpha}$ (nuclear)", color=COLORS[3])
    ax1.set_xlabel("NGD step")
    ax1.set_ylabel("correlation")
    ax1.set_title("(b) W")
    ax1.set_ylim(0, 1.02)
    ax1.legend(loc="lower right")
    for name, color in (("KQ-ridge", COLORS[3]), ("KQ", COLORS[1])):
        if name not in data:
            continue
        band(ax2, steps, data[name]["corr_nuc"], label=rf"{labels[name]}: $W^{{mm}}_{{\star,\alpha}}$", color=color)
    if "KQ" in data:
        band(ax2, steps, data["KQ"]["corr_fro"], label=r"(K,Q): $W^{mm}_\alpha$", color=COLORS[0])
    ax2.set_xlabel("NGD step")
    ax2.set_ylabel("correlation")
    ax2.set_title("(c) (K,Q)")
    ax2.set_ylim(0, 1.02)
    ax2.legend(loc="lower right")
    fig.tight_layout()
    return fig


def rank_figure(table, published=None):
    """P3 rank figure: mean rank of W^mm (Frobenius) and W^mm_★ (nuclear) vs d, for the n sweep (T = 5) and
    the T sweep (n = 5); certified ranks solid, the published-style count dashed."""
    fig, axes = column_figure(ncols=2, nrows=1, height=2.4)
    for ax, (sweep, key) in zip(axes[0], (("n", "n"), ("T", "T")), strict=True):
        sub = table[table["sweep"] == sweep]
        for k, val in enumerate(sorted(sub[key].unique())):
            s = sub[sub[key] == val].sort_values("d")
            c = COLORS[k]
            ax.plot(s["d"], s["rank_fro"], "o-", color=c, label=f"{key}={val} Frobenius", markersize=3)
            ax.plot(s["d"], s["rank_nuc"], "s--", color=c, label=f"{key}={val} nuclear", markersize=3,
                    alpha=0.8)
            if "published_rank_nuc" in s:
                ax.plot(s["d"], s["published_rank_nuc"], ":", color=c, linewidth=0.8)
        ax.plot([], [], ":", color="0.3", linewidth=0.8, label="published-style nuclear")
        ax.set_xlabel("d")
        ax.set_ylabel("mean rank (certified solutions)")
        ax.set_title(f"({'a' if sweep == 'n' else 'b'}) {'T = 5, n varies' if sweep == 'n' else 'n = 5, T varies'}")
        ax.legend(fontsize=5, ncol=2, loc="best")
    fig.tight_layout()
    return fig


def paths_figure(problem, paths: dict[str, np.ndarray], W_fro: np.ndarray, W_nuc: np.ndarray):
    """P3 2-D path figure: W_t z_i along NGD (one panel per parameterization: W, and KQᵀ for (K, Q)) with the
    rays of W^mm z_i (Frobenius, dashed) and W^mm_★ z_i (nuclear, dotted) for each query z_i."""
    fig, axes = column_figure(ncols=len(paths), nrows=1, height=2.6)
    Z = problem.queries
    titles = {"W": "(a) W", "KQ": r"(b) $(K,Q)$: $KQ^\top$"}
    for ax, (name, path) in zip(axes[0], paths.items(), strict=True):
        length = 0.0
        for i in range(Z.shape[0]):
            pts = path @ Z[i]  # (R, 2)
            length = max(length, float(np.max(np.linalg.norm(pts, axis=1))))
            ax.plot(pts[:, 0], pts[:, 1], "-", color=COLORS[2 + i], label=rf"$W_t z_{i + 1}$")
            ax.plot(*pts[-1], "o", color=COLORS[2 + i], markersize=3)
        for i in range(Z.shape[0]):
            ray(ax, W_fro @ Z[i], length, label=r"$W^{mm} z_i$" if i == 0 else None, color=COLORS[0], style="--")
            ray(ax, W_nuc @ Z[i], length, label=r"$W^{mm}_\star z_i$" if i == 0 else None, color=COLORS[3],
                style=":")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("coordinate 1")
        ax.set_ylabel("coordinate 2")
        ax.set_title(titles.get(name, name))
        ax.legend(loc="best", fontsize=6)
    fig.tight_layout()
    return fig


def multitoken_figure(steps: np.ndarray, curves: dict[int, dict[str, np.ndarray]],
                      masked: dict[int, np.ndarray], final: dict[int, np.ndarray]):
    """P3 multi-token figure: (a) 1 − corr vs step (log scale) with the SVM-equivalence W^fin + R·W^dir,
    W^dir and the 1-token SVM, per d; (b) masked probability vs final 1 − corr."""
    fig, axes = column_figure(ncols=2, nrows=1, height=2.5)
    ax0, ax1 = axes[0]
    styles = {"svmeq": "-", "dir": "--", "single": ":"}
    names = {"svmeq": r"$W^{fin}+R\,W^{dir}$", "dir": r"$W^{dir}$", "single": "1-token SVM"}
    for k, (d, c) in enumerate(sorted(curves.items())):
        for key, ls in styles.items():
            y = 1.0 - c[key]
            ax0.plot(steps, np.nanmean(y, axis=0), ls, color=COLORS[k],
                     label=f"d={d}" if key == "svmeq" else None)
    for key, ls in styles.items():
        ax0.plot([], [], ls, color="k", label=names[key])
    ax0.set_yscale("log")
    ax0.set_xlabel("NGD step")
    ax0.set_ylabel("1 − correlation")
    ax0.set_title("(a) SVM-equivalence")
    ax0.legend(fontsize=5, ncol=2)
    for k, d in enumerate(sorted(masked)):
        ax1.scatter(np.maximum(masked[d], 1e-300), np.maximum(final[d], 1e-16), s=4, color=COLORS[k],
                    label=f"d={d}", alpha=0.6)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("max masked softmax")
    ax1.set_ylabel(r"final 1 − corr($W$, $W^{fin}+R\,W^{dir}$)")
    ax1.set_title("(b) masked probability")
    ax1.legend(fontsize=5)
    fig.tight_layout()
    return fig

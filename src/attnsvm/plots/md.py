"""Figures of the mirror-descent reproductions (AttentionMD) and of the sign-GD / Adam row."""

from __future__ import annotations

import numpy as np

from .common import COLORS, band, column_figure, legend_below, ray, styled


def _tag(p: float) -> str:
    return f"{p:g}".replace(".", "_")


@styled
def local_figures(cfg, data: dict, single: dict) -> dict:
    """md-local: per trajectory p, the directional Bregman divergence (the paper's Fig. 4) and the cosine
    correlation with every ℓq-AttSVM at the reached selection (mean ± std over trials); the single
    instance from W₀ = 0 in the plane of two entries of W, with the ℓp-AttSVM ray."""
    figs = {}
    for key, ylabel, log in (("breg", "dir. Bregman divergence", True), ("corr", "correlation", False)):
        fig, axes = column_figure(ncols=len(cfg.ps), nrows=1, height=2.3)
        for ax, p in zip(axes[0], cfg.ps, strict=True):
            a = data[p]
            steps = cfg.steps[cfg.ps.index(p)]
            R = a[f"{key}_{_tag(p)}"].shape[1]
            x = np.linspace(0, steps, R)
            for k, q in enumerate(cfg.ps):
                band(ax, x, a[f"{key}_{_tag(q)}"], label=rf"$\ell_{{{q:g}}}$-AttSVM", color=COLORS[k], log_y=log,
                     hi=None if log else 1.0)
            ax.set_title(rf"$\ell_{{{p:g}}}$-AttGD")
            ax.set_xlabel("iteration")
            ax.set_ylabel(ylabel)
            if not log:
                ax.set_ylim(0, 1.02)
        legend_below(fig, axes=[axes[0][0]])
        figs[f"md_local_{key}"] = fig
    fig, axes = column_figure(ncols=len(cfg.ps), nrows=1, height=2.4)
    i, j = (1, 2), (3, 4)  # the entries the authors plot
    for ax, (k, p) in zip(axes[0], enumerate(cfg.ps), strict=True):
        s = single[p]
        W, S = s["path"], s["svm"]
        ax.plot(W[:, i[0], i[1]], W[:, j[0], j[1]], color=COLORS[k], label=rf"$\ell_{{{p:g}}}$-AttGD")
        end = np.hypot(W[-1, i[0], i[1]], W[-1, j[0], j[1]])
        if np.all(np.isfinite(S)) and np.hypot(S[i], S[j]) > 0:
            ray(ax, np.array([S[i], S[j]]), end, label=rf"$\ell_{{{p:g}}}$-AttSVM", color=COLORS[k])
        ax.set_xlabel(rf"$W_{{{i[0]}{i[1]}}}$")
        ax.set_ylabel(rf"$W_{{{j[0]}{j[1]}}}$")
        ax.set_title(rf"$p = {p:g}$, $W_0 = 0$")
    legend_below(fig)
    figs["md_local_single"] = fig
    return figs


@styled
def joint_figures(cfg, data: dict) -> dict:
    """md-joint: softmax / logistic probabilities over the first steps, and the (W, v) iterates with the
    ℓp-AttSVM and ℓp-SVM rays (two entries of W, both entries of v), one panel per p."""
    figs = {}
    fig, axes = column_figure(ncols=len(cfg.ps), nrows=1, height=2.2)
    for ax, p in zip(axes[0], cfg.ps, strict=True):
        a = data[p]
        k = min(cfg.plotted_steps, len(a["softmax_prob"]))
        ax.plot(np.arange(k), a["logistic_prob"][:k], label="logistic prob.", color=COLORS[0])
        ax.plot(np.arange(k), a["softmax_prob"][:k], label="softmax prob.", color=COLORS[1])
        ax.set_xlabel("iteration")
        ax.set_title(rf"$\ell_{{{p:g}}}$-JointGD")
        ax.set_ylim(0, 1.02)
    legend_below(fig, axes=[axes[0][0]])
    figs["md_joint_prob"] = fig
    fig, axes = column_figure(ncols=len(cfg.ps), nrows=1, height=2.4)
    for ax, p in zip(axes[0], cfg.ps, strict=True):
        a = data[p]
        W, v = a["W"], a["v"]
        ax.plot(W[:, 0, 0], W[:, 0, 1], color=COLORS[0], label=r"$(W_{00}, W_{01})$")
        ax.plot(v[:, 0], v[:, 1], color=COLORS[1], label=r"$(v_0, v_1)$")
        if np.all(np.isfinite(a["W_svm"])):
            ray(ax, a["W_svm"][0, :2], np.hypot(*W[-1, 0, :2]), label=r"$\ell_p$-AttSVM", color=COLORS[0])
        if np.all(np.isfinite(a["v_svm"])):
            ray(ax, a["v_svm"], np.hypot(*v[-1]), label=r"$\ell_p$-SVM", color=COLORS[1])
        ax.set_title(rf"$\ell_{{{p:g}}}$-JointGD")
    legend_below(fig, axes=[axes[0][0]])
    figs["md_joint_iterates"] = fig
    return figs


@styled
def sign_adam_figure(cfg, data: dict):
    """md-sign-adam: correlation (top) and margin ratio (bottom) of W with the ℓ1, Frobenius, ℓ∞ and
    nuclear Att-SVMs at the reached selection, one column per optimizer, mean ± std over trials."""
    from ..experiments.md import SIGN_ADAM_NORMS

    opts = list(data)
    fig, axes = column_figure(ncols=len(opts), nrows=2, height=2.0)
    labels = {"l1": r"$\ell_1$", "fro": "Frobenius", "linf": r"$\ell_\infty$", "nuclear": "nuclear"}
    for c, opt in enumerate(opts):
        a = data[opt]
        R = a["corr_fro"].shape[1]
        x = np.linspace(0, cfg.steps, R)
        for k, n in enumerate(SIGN_ADAM_NORMS):
            band(axes[0][c], x, a[f"corr_{n}"], label=labels[n], color=COLORS[k], hi=1.0)
            band(axes[1][c], x, a[f"ratio_{n}"], label=labels[n], color=COLORS[k], hi=1.0)
        axes[0][c].set_title({"ngd": "normalized GD", "sign": "sign-GD", "adam": "Adam"}[opt])
        axes[0][c].set_ylim(0, 1.02)
        axes[1][c].set_ylim(-0.5, 1.02)
        axes[1][c].set_xlabel("iteration")
    axes[0][0].set_ylabel("correlation")
    axes[1][0].set_ylabel("margin ratio")
    legend_below(fig, axes=[axes[0][0]])
    return fig

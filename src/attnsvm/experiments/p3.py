"""P3 (Tarzanagh, Li, Thrampoulidis, Oymak, *Transformers as Support Vector Machines*, 2023): the
reproductions P3-local, P3-rank, P3-paths and P3-multitoken (docs/reproductions/index.md).

Settings come from the authors' public notebooks (github.com/umich-sota/TF-as-SVM): ``local_converge.ipynb``
(P3-local, Fig. "local convergence", W and (K, Q) panels), ``svm_rank.ipynb`` (P3-rank, Fig. "rank of
SVM solutions"), ``visualization*.ipynb`` (P3-paths, Fig. 1-style 2-D paths) and
``multi_token_converge.ipynb`` with ``base_nonlinear.py`` (P3-multitoken, Fig. "SVM-equivalence with a
nonlinear head"). Where this module departs from a notebook the docstring of the experiment says so.
"""

from __future__ import annotations

import time
import warnings
from functools import partial
from typing import Annotated, Literal

import jax
import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from ..cluster import map_ordered, task_client
from ..models import Model
from ..problem import AttentionProblem, unit_gaussian
from ..svm import INFEASIBLE, OPTIMAL, SOLUTION_PRESENT, correlation, solve_svm
from ..tokens import is_locally_optimal
from ..training import NGD, Descent, Flow, Init, Radius, Saturation, Save, train
from ..training.optim import OptimizerSpec
from . import Experiment, get, register
from .base import Claim, Context, ExperimentConfig, Outcome, TrialStore, spread, verdict_within

PAPER = "P3 (Tarzanagh, Li, Thrampoulidis, Oymak, Transformers as SVMs, 2023)"


# ---- helpers -----------------------------------------------------------------------------------------------


def _record_index(steps: np.ndarray, step: int) -> int:
    """Index of the recorded step closest to ``step`` (at most the last one)."""
    return int(np.argmin(np.abs(np.asarray(steps) - min(step, int(steps[-1])))))


def _uniform_init(rng: np.random.Generator, shape: tuple[int, ...], d: int) -> np.ndarray:
    """PyTorch ``nn.Linear`` default weights: U(−1/√d, 1/√d) (Kaiming-uniform with a = √5, fan-in d)."""
    b = 1.0 / np.sqrt(d)
    return rng.uniform(-b, b, size=shape)


# ============================================================================================================
# P3-local
# ============================================================================================================


class P3LocalConfig(ExperimentConfig):
    """P3-local (docs/reproductions/p3-local.md): NGD on n=6, T=8, d=10 unit-Gaussian cross-attention
    problems, W vs (K, Q)."""

    n: int
    T: int
    d: int
    trials: int
    steps: int
    lr: float
    record_every: int
    seed: int
    plotted_step: int
    init: Literal["notebook", "small"]
    ridge_lambda: float
    chunk: int
    flow: bool
    flow_trials: int
    flow_radius: float
    flow_saturation: float
    flow_rtol: float


def _local_init(cfg: P3LocalConfig, parameterization: str, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Per-trial initial parameters, trial j from its own stream (seed, j, 1)."""
    d = cfg.d
    out: dict[str, list[np.ndarray]] = {}
    for j in idx:
        rng = np.random.default_rng([cfg.seed, int(j), 1])
        if parameterization == "combined":
            W = _uniform_init(rng, (d, d), d) if cfg.init == "notebook" else np.zeros((d, d))
            out.setdefault("W", []).append(W)
        else:
            if cfg.init == "notebook":
                K, Q = _uniform_init(rng, (d, d), d), _uniform_init(rng, (d, d), d)
            else:
                K, Q = 0.1 * rng.standard_normal((d, d)), np.zeros((d, d))
            out.setdefault("K", []).append(K)
            out.setdefault("Q", []).append(Q)
    return {k: np.stack(v) for k, v in out.items()}


def _local_variants(cfg: P3LocalConfig) -> dict[str, tuple[str, OptimizerSpec, str]]:
    """variant → (parameterization, optimizer, certification norm)."""
    return {
        "W": ("combined", NGD(lr=cfg.lr, normalize="global"), "fro"),
        "KQ": ("factored", NGD(lr=cfg.lr, normalize="block"), "nuclear"),
        # the authors' loss carries λ(‖K‖² + ‖Q‖²); our optimizer's ridge is λ'‖θ‖²/2, so λ' = 2λ
        "KQ-ridge": ("factored", NGD(lr=cfg.lr, normalize="block", ridge=2.0 * cfg.ridge_lambda), "nuclear"),
    }


def _svm_at(problem: AttentionProblem, alpha: np.ndarray, cert_norm: str) -> dict[str, object]:
    """W^mm_α (fro), W^mm_★,α (nuclear) and the local-optimality certificate of α in ``cert_norm``."""
    fro = solve_svm(problem, alpha, "fro")
    nuc = solve_svm(problem, alpha, "nuclear")
    lo = is_locally_optimal(problem, alpha, norm=cert_norm, result=fro if cert_norm == "fro" else nuc)
    return {"fro": fro, "nuc": nuc, "lo": lo}


def _local_trials(cfg: P3LocalConfig, variant: str, idx: np.ndarray) -> dict[str, np.ndarray]:
    par, opt, cert_norm = _local_variants(cfg)[variant]
    problems = [unit_gaussian(cfg.n, cfg.T, cfg.d, seed=cfg.seed + int(j)) for j in idx]
    model = Model(parameterization=par)
    res = train(problems, model, Descent(opt, cfg.steps), init=Init(given=_local_init(cfg, par, idx)),
                save=Save(every=cfg.record_every, path=True))
    return _local_summaries(problems, res.path, res.selection[:, -1], res.metrics["max_softmax_mean"],
                            res.metrics["W_fro"], cert_norm)


def _local_summaries(problems: list[AttentionProblem], path: np.ndarray, alpha: np.ndarray,
                     softmax: np.ndarray, wnorm: np.ndarray, cert_norm: str) -> dict[str, np.ndarray]:
    B = len(problems)
    out = {k: [] for k in ("corr_fro", "corr_nuc", "alpha", "is_opt", "local_opt", "feasible", "gap_fro",
                           "gap_nuc", "finite")}
    for b in range(B):
        out["finite"].append(bool(np.all(np.isfinite(path[b]))))
        if not out["finite"][-1]:  # a diverged trial has no selection: counted apart, never as a success
            for k, v in (("corr_fro", np.full(path.shape[1], np.nan)), ("corr_nuc", np.full(path.shape[1], np.nan)),
                         ("alpha", alpha[b]), ("is_opt", False), ("local_opt", False), ("feasible", False),
                         ("gap_fro", np.nan), ("gap_nuc", np.nan)):
                out[k].append(v)
            continue
        s = _svm_at(problems[b], alpha[b], cert_norm)
        fro, nuc, lo = s["fro"], s["nuc"], s["lo"]
        ok = fro.feasible and nuc.feasible
        out["corr_fro"].append(correlation(path[b], fro.W) if ok else np.full(path.shape[1], np.nan))
        out["corr_nuc"].append(correlation(path[b], nuc.W) if ok else np.full(path.shape[1], np.nan))
        out["alpha"].append(alpha[b])
        out["is_opt"].append(lo.globally_optimal)
        out["local_opt"].append(lo.locally_optimal)
        out["feasible"].append(ok)
        out["gap_fro"].append(fro.certificate.gap)
        out["gap_nuc"].append(nuc.certificate.gap)
    arrays = {k: np.asarray(v) for k, v in out.items()}
    arrays["max_softmax"] = np.asarray(softmax)
    arrays["W_fro"] = np.asarray(wnorm)
    arrays["W_final"] = np.asarray(path[:, -1])
    return arrays


def _flow_available() -> bool:
    try:
        from .. import flow  # noqa: F401
    except ImportError:
        return False
    return True


def _local_flow_trials(cfg: P3LocalConfig, parameterization: str, idx: np.ndarray) -> dict[str, np.ndarray]:
    problems = [unit_gaussian(cfg.n, cfg.T, cfg.d, seed=cfg.seed + int(j)) for j in idx]
    model = Model(parameterization=parameterization)
    res = train(problems, model, Flow(rtol=cfg.flow_rtol, atol=cfg.flow_rtol, error_estimate=False),
                stop=(Saturation(cfg.flow_saturation), Radius(cfg.flow_radius)),
                init=Init(given=_local_init(cfg, parameterization, idx)), save=Save(records=50, path=True))
    cert = "fro" if parameterization == "combined" else "nuclear"
    return _local_summaries(problems, res.path, res.selection[:, -1], res.metrics["max_softmax_mean"],
                            res.metrics["W_fro"], cert)


def run_p3_local(cfg: P3LocalConfig, ctx: Context) -> Outcome:
    """Reproduce P3's local-convergence figure (W panel) and draw the (K, Q) panel the authors left out.

    Per trial j: problem ``unit_gaussian(n, T, d, seed + j)``; NGD η = 0.1 for ``steps`` steps on
    W (one global gradient normalization) and on (K, Q) (each block normalized by its own norm, as
    ``local_converge.ipynb``), the latter without and with the authors' ridge λ(‖K‖² + ‖Q‖²), λ = 2.2e−16
    (``Optimizer.ridge`` = 2λ). α = argmax softmax at the last step; W^mm_α and W^mm_★,α by
    :func:`attnsvm.svm.solve_svm` at α; α certified by :func:`attnsvm.tokens.is_locally_optimal` (Frobenius
    for W, nuclear for (K, Q)). Initialization ``notebook`` = PyTorch ``nn.Linear`` defaults
    U(−1/√d, 1/√d) for W, K and Q (what ``local_converge.ipynb`` runs); ``small`` = W₀ = 0,
    K₀ = 0.1·N(0, I), Q₀ = 0. Optional gradient-flow variants (``attnsvm.flow``) for W and (K, Q) without ridge,
    integrated until ‖W‖_F = ``flow_radius``.
    """
    t_start = time.perf_counter()
    variants = _local_variants(cfg)
    data: dict[str, dict[str, np.ndarray]] = {}
    times: dict[str, float] = {}
    for name in variants:
        t0 = time.perf_counter()
        data[name] = ctx.trials(name, cfg.trials, cfg.chunk, lambda idx, v=name: _local_trials(cfg, v, idx),
                                description=f"p3-local {name}")
        times[name] = time.perf_counter() - t0
    notes: list[str] = []
    flow_ok = cfg.flow and _flow_available()
    if cfg.flow and not flow_ok:
        notes.append("gradient-flow variants skipped: attnsvm.flow is not available in this installation")
    if flow_ok:
        for name, par in (("W-flow", "combined"), ("KQ-flow", "factored")):
            t0 = time.perf_counter()
            data[name] = ctx.trials(name, min(cfg.flow_trials, cfg.trials), cfg.chunk,
                                    lambda idx, p=par: _local_flow_trials(cfg, p, idx),
                                    description=f"p3-local {name}")
            times[name] = time.perf_counter() - t0
    steps = np.arange(0, cfg.steps + 1, cfg.record_every)
    i_plot = _record_index(steps, cfg.plotted_step)
    claims = _local_claims(cfg, data, steps, i_plot)
    rows = []
    for name, a in data.items():
        fin = a["finite"].astype(bool) if "finite" in a else np.ones(a["corr_fro"].shape[0], bool)
        a = {k: (v[fin] if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == fin.size else v)
             for k, v in a.items()}  # fractions and means over the finite trials; the diverged are counted
        rows.append({
            "variant": name,
            "trials": int(fin.size),
            "diverged": int(np.sum(~fin)),
            "max_softmax_final": float(np.nanmean(a["max_softmax"][:, -1])),
            "corr_fro_plotted": float(np.nanmean(a["corr_fro"][:, i_plot])) if "flow" not in name else np.nan,
            "corr_fro_final": float(np.nanmean(a["corr_fro"][:, -1])),
            "corr_fro_final_std": float(np.nanstd(a["corr_fro"][:, -1])),
            "corr_nuc_plotted": float(np.nanmean(a["corr_nuc"][:, i_plot])) if "flow" not in name else np.nan,
            "corr_nuc_final": float(np.nanmean(a["corr_nuc"][:, -1])),
            "corr_nuc_final_std": float(np.nanstd(a["corr_nuc"][:, -1])),
            "W_fro_final": float(np.nanmean(a["W_fro"][:, -1])),
            "frac_globally_optimal": float(np.mean(a["is_opt"])),
            "frac_locally_optimal": float(np.mean(a["local_opt"])),
            "frac_local_not_global": float(np.mean(a["local_opt"] & ~a["is_opt"].astype(bool))),
            "max_gap_nuclear": float(np.nanmax(a["gap_nuc"])),
            "seconds": times[name],
        })
    summary = pd.DataFrame(rows)
    curves = []
    from ..plots.p3 import local_figure

    with warnings.catch_warnings():  # corr is undefined (NaN) at W₀ = 0: empty means at step 0
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, a in data.items():
            if "flow" in name:
                continue
            for key in ("max_softmax", "corr_fro", "corr_nuc"):
                curves.append(pd.DataFrame({"variant": name, "metric": key, "step": steps,
                                            "mean": np.nanmean(a[key], axis=0), "std": np.nanstd(a[key], axis=0)}))
        figs = [ctx.figure(local_figure(steps, data), "p3_local")]
    notes += [
        f"init = {cfg.init!r}: " + ("PyTorch nn.Linear defaults U(−1/√d, 1/√d) for W, K and Q, as "
                                    "local_converge.ipynb runs (not W₀ = 0 / K₀ = 0.1·N, Q₀ = 0)"
                                    if cfg.init == "notebook" else "W₀ = 0, K₀ = 0.1·N(0, I), Q₀ = 0"),
        "NGD: W normalized globally; (K, Q) each block by its own norm (local_converge.ipynb). "
        f"Ridge variant: loss + λ(‖K‖² + ‖Q‖²) with λ = {cfg.ridge_lambda:g} (Optimizer ridge λ' = 2λ).",
        "α = argmax softmax at the final iterate; W^mm_α exact (NNLS), W^mm_★,α by SCS (duality gap "
        f"≤ {np.nanmax([np.nanmax(a['gap_nuc']) for a in data.values()]):.1e}); α certified with "
        "the Frobenius SVM for W and the nuclear SVM for (K, Q).",
        f"corr 'plotted' = at step {int(steps[i_plot])} (the authors plot 1000 of their 2000 steps).",
    ]
    if flow_ok:
        notes.append(f"flow variants: gradient flow (attnsvm.flow, rtol = atol = {cfg.flow_rtol:g}) on the first "
                     f"{min(cfg.flow_trials, cfg.trials)} problems, from the same initializations, until the "
                     f"saturation E ≤ {cfg.flow_saturation:g} or ‖W‖_F = {cfg.flow_radius:g}; compared at the stop.")
    notes.append("time per variant (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items())
                 + f"; total {time.perf_counter() - t_start:.1f}")
    arrays = {f"{name}__{k}": v for name, a in data.items() for k, v in a.items()}
    arrays["steps"] = steps
    return Outcome(claims=claims, tables={"summary": summary, "curves": pd.concat(curves, ignore_index=True)},
                   arrays=arrays, figures=figs, notes=notes)


def _local_claims(cfg: P3LocalConfig, data: dict[str, dict[str, np.ndarray]], steps: np.ndarray,
                  i_plot: int) -> list[Claim]:
    W, KQ, KQr = data["W"], data["KQ"], data["KQ-ridge"]
    last = int(steps[-1])
    at_plot = int(steps[i_plot])
    claims = []
    sm = np.concatenate([data[k]["max_softmax"][:, -1] for k in ("W", "KQ", "KQ-ridge")])
    claims.append(Claim(
        "max softmax → 1 (W and (K, Q))", "→ 1", f"{spread(sm, '.6f')} at step {last}",
        "reproduced" if np.nanmean(sm) > 0.99 else "differs",
        "mean of max_t s_it over samples, per trial, all three NGD variants; tolerance: mean > 0.99"))
    full = last >= 2000
    c_end = W["corr_fro"][:, -1]
    claims.append(Claim(
        f"W: corr(W, W^mm_α) at step {last}", "≈ 0.996 at 2000 steps", spread(c_end),
        verdict_within(float(np.nanmean(c_end)), 0.996, 0.005) if full else
        verdict_within(float(np.nanmean(c_end)), 0.99, 0.01),
        "tolerance ±0.005" if full else "run shorter than 2000 steps: compared with 0.99 ± 0.01"))
    c_pl = W["corr_fro"][:, i_plot]
    claims.append(Claim(
        f"W: corr(W, W^mm_α) at step {at_plot}", "≈ 0.99 at 1000 steps", spread(c_pl),
        verdict_within(float(np.nanmean(c_pl)), 0.99, 0.01), "tolerance ±0.01 (read off the plot)"))
    c_wn = W["corr_nuc"][:, -1]
    claims.append(Claim(
        f"W: corr(W, W^mm_★,α) at step {last}", "≈ 0.86", spread(c_wn),
        verdict_within(float(np.nanmean(c_wn)), 0.86, 0.04),
        "tolerance ±0.04 (read off the plot); W follows the Frobenius, not the nuclear solution"))
    c_r = KQr["corr_nuc"][:, -1]
    claims.append(Claim(
        f"(K,Q) with the authors' ridge λ = {cfg.ridge_lambda:g}: corr(KQᵀ, W^mm_★,α) at step {last}",
        "≈ 0.997", spread(c_r), verdict_within(float(np.nanmean(c_r)), 0.997, 0.01 if full else 0.03),
        f"tolerance ±{0.01 if full else 0.03}; the ridge is hidden in the authors' loss"))
    c_n = KQ["corr_nuc"][:, -1]
    lo, hi = float(np.nanmin(c_n)), float(np.nanmax(c_n))
    claims.append(Claim(
        f"(K,Q) without ridge (stable log-space NGD): corr(KQᵀ, W^mm_★,α) at step {last}",
        "0.85–0.95 in the authors' runs without the ridge (float64 torch)", spread(c_n), "new",
        "our NGD keeps moving where the torch gradient underflows; the direction is what unregularized "
        f"NGD reaches in {last} steps (trial range {lo:.3f} … {hi:.3f})"))
    c_nf = KQ["corr_fro"][:, -1]
    claims.append(Claim(
        f"(K,Q) without ridge: corr(KQᵀ, W^mm_α) (Frobenius) at step {last}", "(not reported)",
        spread(c_nf), "new", "for comparison with the nuclear correlation"))
    for name in ("W-flow", "KQ-flow"):
        if name not in data:
            continue
        a = data[name]
        key = "corr_fro" if name == "W-flow" else "corr_nuc"
        ref = "W^mm_α" if name == "W-flow" else "W^mm_★,α"
        claims.append(Claim(
            f"{name[:-5]} gradient flow (no ridge): corr with {ref} at the stop",
            "(not in P3: what gradient flow reaches)", spread(a[key][:, -1]), "new",
            f"other SVM: corr {spread(a['corr_nuc' if key == 'corr_fro' else 'corr_fro'][:, -1], '.3f')}; "
            f"stop at ‖W‖_F {spread(a['W_fro'][:, -1], '.3g')} (saturation E ≤ {cfg.flow_saturation:g} or "
            f"‖W‖_F = {cfg.flow_radius:g})"))
    for name in ("W", "KQ", "KQ-ridge"):
        a = data[name]
        fin = a["finite"].astype(bool) if "finite" in a else np.ones(len(a["is_opt"]), bool)
        g, lo_ = a["is_opt"].astype(bool)[fin], a["local_opt"].astype(bool)[fin]
        n_div = int(np.sum(~fin))
        claims.append(Claim(
            f"{name}: final selection α certified", "converges to locally optimal tokens (P3 Thm.)",
            (f"of {fin.sum()} finite trials ({n_div} diverged, left out): " if n_div else "")
            + (f"α = opt {g.mean():.0%}, certified locally optimal {lo_.mean():.0%} "
               f"(of which not global {np.mean(lo_ & ~g):.0%}), not certified {np.mean(~lo_):.0%}" if g.size
               else "no finite trial"),
            "new", f"certificate: {'Frobenius' if name == 'W' else 'nuclear'} Att-SVM(α) support tokens "
            "(tol 1e−6) all score below α (docs/concepts/local-optimality.md)"))
    return claims


register(Experiment(
    id="p3-local", paper=PAPER,
    title="Local convergence of NGD: W → W^mm_α, (K,Q) → W^mm_★,α (with and without the hidden ridge)",
    config_cls=P3LocalConfig, run=run_p3_local, quick={"trials": 20, "flow": False}))


# ============================================================================================================
# P3-rank
# ============================================================================================================


class P3RankConfig(ExperimentConfig):
    """P3-rank (docs/reproductions/p3-rank.md): rank of the Frobenius and nuclear Att-SVM solutions at α = opt."""

    ns: list[int]
    Ts: list[int]
    base_n: int
    base_T: int
    ds: list[int]
    trials: int
    seed: int
    rank_rtol: float
    published_tol: float
    published_scs_eps: float
    published_instances: int
    workers: int


def _rank(W: np.ndarray, rtol: float) -> int:
    s = np.linalg.svd(W, compute_uv=False)
    return int(np.sum(s > rtol * s[0])) if s[0] > 0 else 0


def _published_rank(W: np.ndarray | None, tol: float) -> int:
    """np.linalg.matrix_rank(W, tol) as the notebook calls it; an infeasible problem (cvxpy's W.value is None)
    counts as rank 1 there (matrix_rank of a 0-d array)."""
    if W is None or not np.all(np.isfinite(W)):
        return 1
    return int(np.linalg.matrix_rank(W, tol=tol))


def _rank_nuclear_one(args: tuple) -> dict[str, float]:
    """Nuclear SVM of one feasible instance (run in a worker process): certified rank and gap, and the
    published-style rank when asked. Top-level so that Dask can pickle it."""
    n, T, d, seed, rtol, pub, pub_tol, pub_eps = args
    pr = unit_gaussian(n, T, d, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    nuc = solve_svm(pr, "opt", "nuclear")
    out = {"nuc_seconds": time.perf_counter() - t0, "nuc_cpu": time.process_time() - c0,
           "nuc_certified": float(nuc.status == OPTIMAL), "rank_nuc": np.nan, "gap_nuc": np.nan,
           "pub_rank_nuc": np.nan}
    if nuc.status == OPTIMAL:
        out["rank_nuc"] = _rank(nuc.W, rtol)
        out["gap_nuc"] = nuc.certificate.gap
    if pub:
        # the notebook's solver: a first-order SCS solve at cvxpy's default accuracy on the data as given
        # (no rescaling), rank at absolute 1e−7
        pub_nuc = solve_svm(pr, "opt", "nuclear", solver_options={"eps": pub_eps}, unit_scale=False)
        out["pub_rank_nuc"] = _published_rank(pub_nuc.W if pub_nuc.status != INFEASIBLE else None, pub_tol)
    return out


def _rank_trials(cfg: P3RankConfig, n: int, T: int, d: int, idx: np.ndarray, client=None
                 ) -> dict[str, np.ndarray]:
    from ..svm import solve_svm_batch

    problems = [unit_gaussian(n, T, d, seed=cfg.seed + int(j)) for j in idx]
    fro = solve_svm_batch(problems, "opt", "fro")
    feas = fro.status == OPTIMAL
    pub = idx < cfg.published_instances
    tasks = [(n, T, d, cfg.seed + int(j), cfg.rank_rtol, bool(p), cfg.published_tol, cfg.published_scs_eps)
             for j, f, p in zip(idx, feas, pub, strict=True) if f]
    # feasibility does not depend on the norm: infeasible instances need no SDP
    solved = map_ordered(client, _rank_nuclear_one, tasks, batch=4)
    B = len(problems)
    out = {k: np.full(B, np.nan) for k in ("rank_nuc", "gap_nuc", "pub_rank_nuc", "nuc_seconds", "nuc_cpu",
                                           "nuc_certified")}
    for b, r in zip(np.flatnonzero(feas), solved, strict=True):
        for k, v in r.items():
            out[k][b] = v
    out["pub_rank_nuc"][pub & ~feas] = 1.0  # cvxpy's W.value is None → matrix_rank counts 1
    out["feasible"] = feas.astype(float)
    out["pub_done"] = pub.astype(float)
    out["rank_fro"] = np.array([_rank(W, cfg.rank_rtol) if f else np.nan for W, f in zip(fro.solution, feas,
                                                                                        strict=True)])
    out["gap_fro"] = np.where(feas, fro.gap, np.nan)
    out["pub_rank_fro"] = np.array([_published_rank(W if f else None, cfg.published_tol)
                                    for W, f in zip(fro.solution, feas, strict=True)], dtype=float)
    return out


def _rank_configs(cfg: P3RankConfig) -> list[tuple[int, int]]:
    pairs = [(n, cfg.base_T) for n in cfg.ns] + [(cfg.base_n, T) for T in cfg.Ts]
    return list(dict.fromkeys(pairs))


def _rank_row(n: int, T: int, d: int, a: dict[str, np.ndarray], seconds: float) -> dict[str, float]:
    feas = a["feasible"].astype(bool)
    cert = feas & (a["nuc_certified"] > 0)
    pub = a["pub_done"].astype(bool)
    mean = (lambda x: float(np.nanmean(x))) if feas.any() else (lambda x: np.nan)
    return {
        "n": n, "T": T, "d": d, "instances": feas.size, "infeasible": int((~feas).sum()),
        "nuc_uncertified": int((feas & ~cert).sum()),
        "rank_fro": mean(a["rank_fro"][feas]),
        "rank_nuc": float(np.mean(a["rank_nuc"][cert])) if cert.any() else np.nan,
        "min_n_d": min(n, d),
        "max_gap_fro": float(np.nanmax(a["gap_fro"])) if feas.any() else np.nan,
        "max_gap_nuc": float(np.max(a["gap_nuc"][cert])) if cert.any() else np.nan,
        "nuc_le_fro": float(np.mean(a["rank_nuc"][cert] <= a["rank_fro"][cert])) if cert.any() else np.nan,
        "published_rank_fro": float(np.mean(a["pub_rank_fro"])),
        "published_rank_nuc": float(np.mean(a["pub_rank_nuc"][pub])) if pub.any() else np.nan,
        "published_instances": int(pub.sum()),
        "nuc_cpu_seconds": float(np.nansum(a["nuc_cpu"])),
        "seconds": seconds,
    }


def run_p3_rank(cfg: P3RankConfig, ctx: Context) -> Outcome:
    """Reproduce P3's rank figure (``svm_rank.ipynb``): mean rank of W^mm (Frobenius) and W^mm_★ (nuclear) at
    α = opt vs d, for n ∈ ns with T = base_T and T ∈ Ts with n = base_n, ``trials`` unit-Gaussian instances each
    (instance j: ``unit_gaussian(n, T, d, seed + j)``).

    Frobenius solutions by the exact batched solver (:func:`attnsvm.svm.solve_svm_batch`), nuclear by the SCS
    SDP of :func:`attnsvm.svm.solve_svm` (ε = 1e−9, certificate with duality gap). Ranks count singular values
    above ``rank_rtol``·σ_max of certified solutions; infeasible instances (Farkas certificate; feasibility
    does not depend on the norm, so no SDP is solved for them) are counted apart. Beside them the
    *published-style* count of the notebook: infeasible instances as rank 1 (``matrix_rank`` of cvxpy's None)
    and ``matrix_rank(W, tol=1e−7)`` of a first-order SCS solution at cvxpy's default accuracy
    (ε = ``published_scs_eps``), computed on the first ``published_instances`` instances of every setting.
    """
    configs = _rank_configs(cfg)
    rows = []
    results: dict[tuple[int, int, int], dict[str, np.ndarray]] = {}
    t_all = time.perf_counter()
    with task_client(cfg.workers) as client:
        for n, T in configs:
            for d in cfg.ds:
                t0 = time.perf_counter()
                a = ctx.trials(f"n{n}-T{T}-d{d}", cfg.trials, cfg.trials,
                               lambda idx, n=n, T=T, d=d: _rank_trials(cfg, n, T, d, idx, client),
                               description=f"p3-rank n={n} T={T} d={d}")
                results[(n, T, d)] = a
                rows.append(_rank_row(n, T, d, a, time.perf_counter() - t0))
    table = pd.DataFrame(rows)
    sweeps = []
    for sweep, key, vals, fixed in (("n", "n", cfg.ns, ("T", cfg.base_T)), ("T", "T", cfg.Ts, ("n", cfg.base_n))):
        sub = table[(table[key].isin(vals)) & (table[fixed[0]] == fixed[1])].copy()
        sub.insert(0, "sweep", sweep)
        sweeps.append(sub)
    by_sweep = pd.concat(sweeps, ignore_index=True)
    from ..plots.p3 import rank_figure

    figs = [ctx.figure(rank_figure(by_sweep), "p3_rank")]
    claims = _rank_claims(cfg, table, results)
    notes = [
        f"rank = #{{σ_k > {cfg.rank_rtol:g}·σ_max}} of certified solutions (Frobenius exact NNLS; nuclear SCS "
        f"ε = 1e−9 with duality gap ≤ {np.nanmax(table['max_gap_nuc']):.1e}); the spurious singular values of "
        "the SCS solutions are ~1e−10 relative, the smallest genuine ones ≳ 1e−4.",
        f"published-style: infeasible = rank 1, matrix_rank(W, tol={cfg.published_tol:g}) absolute, nuclear "
        f"W from SCS at ε = {cfg.published_scs_eps:g} (cvxpy's default accuracy), on the first "
        f"{cfg.published_instances} instances per setting.",
        f"{table['infeasible'].sum()} of {table['instances'].sum()} instances infeasible (Farkas certificate); "
        "their rank is not defined and they are excluded from the certified means.",
        f"total time {time.perf_counter() - t_all:.1f} s with {cfg.workers} worker process(es); nuclear SDPs "
        f"dominate ({table['nuc_cpu_seconds'].sum():.1f} CPU-s, of which the published-style solves are a part).",
    ]
    arrays = {f"n{n}_T{T}_d{d}__{k}": v for (n, T, d), a in results.items() for k, v in a.items()}
    return Outcome(claims=claims, tables={"ranks": by_sweep}, arrays=arrays, figures=figs, notes=notes)


def _rank_claims(cfg: P3RankConfig, table: pd.DataFrame, results) -> list[Claim]:
    feas = table[table["infeasible"] < table["instances"]]
    claims = []
    dev = (feas["rank_fro"] - feas["min_n_d"]).abs()
    claims.append(Claim(
        "Frobenius rank ≈ min(n, d)", "≈ min(n, d) (plot)",
        f"mean |rank − min(n,d)| = {dev.mean():.2f}, max {dev.max():.2f} over {len(feas)} feasible settings",
        "reproduced" if dev.max() <= 0.5 else "differs",
        "tolerance: every setting's mean certified rank within 0.5 of min(n, d); rank ≤ min(n, d) always "
        "(W^mm = Σ λ_it (x_iα − x_it) z_iᵀ)"))
    le = np.concatenate([a["rank_nuc"][a["nuc_certified"] > 0] <= a["rank_fro"][a["nuc_certified"] > 0]
                         for a in results.values()])
    claims.append(Claim(
        "nuclear rank ≤ Frobenius rank", "nuclear ≤ Frobenius", f"{le.mean():.1%} of {le.size} feasible instances",
        "reproduced" if le.mean() == 1.0 else "differs",
        f"certified ranks, per instance ({int(table['nuc_uncertified'].sum())} feasible instances whose SCS solve "
        "did not converge are counted apart)"))
    inf = table["infeasible"].sum() / table["instances"].sum()
    default = get("p3-rank").default_config()  # the paper's grid (the packaged TOML)
    full_grid = (cfg.ds, cfg.ns, cfg.Ts) == (default.ds, default.ns, default.Ts)
    d1 = table[table["d"] == 1]
    claims.append(Claim(
        "infeasible instances", "counted as rank 1 in the published plot (31% of all; every d = 1, most d ≤ 3)",
        f"{inf:.0%} of all instances infeasible; d = 1: {d1['infeasible'].sum()}/{d1['instances'].sum()}",
        ("corrected" if abs(inf - 0.31) <= 0.05 else "differs") if full_grid else "corrected",
        "counted apart (Farkas certificates) and excluded from the certified ranks; tolerance ±5 points"
        + ("" if full_grid else " (reduced grid of n, T, d: the fraction is not comparable with 31%)")))
    for n, T, d in ((15, 5, 20), (cfg.base_n, max(cfg.Ts), max(cfg.ds)), (max(cfg.ns), cfg.base_T, 10)):
        row = table[(table["n"] == n) & (table["T"] == T) & (table["d"] == d)]
        if row.empty:
            continue
        r = row.iloc[0]
        paper = "14.7 (published plot)" if (n, T, d) == (15, 5, 20) else "published-style count"
        claims.append(Claim(
            f"nuclear rank at n={n}, T={T}, d={d}", paper,
            f"certified {r['rank_nuc']:.2f} (Frobenius {r['rank_fro']:.2f}); published-style "
            f"{r['published_rank_nuc']:.2f} (Frobenius {r['published_rank_fro']:.2f})", "corrected",
            "the published count reads SCS noise (singular values ~1e−6) as rank at absolute tol 1e−7"))
    gap = float(np.nanmax(table["max_gap_nuc"]))
    unc = int(table["nuc_uncertified"].sum())
    n_feas = int((table["instances"] - table["infeasible"]).sum())
    claims.append(Claim(
        "nuclear solutions certified", "(not reported)",
        f"{n_feas - unc}/{n_feas} feasible instances certified, max duality gap {gap:.1e}", "new",
        "weak-duality gap ‖W‖_* − Σλc/‖Σλ A‖_2 of every certified SCS solution; uncertified = SCS stopped at "
        "its iteration limit (status inaccurate), excluded from the nuclear means"))
    return claims


register(Experiment(
    id="p3-rank", paper=PAPER, title="Rank of the Frobenius and nuclear Att-SVM solutions vs d",
    config_cls=P3RankConfig, run=run_p3_rank,
    quick={"trials": 10, "ds": [1, 3, 5, 20], "ns": [5, 15], "Ts": [5, 15], "published_instances": 5,
           "workers": 1}))


# ============================================================================================================
# P3-paths
# ============================================================================================================


class P3PathsConfig(ExperimentConfig):
    """P3-paths (docs/reproductions/p3-paths.md): 2-D paths of W z_i and K Qᵀ z_i against the rays of W^mm z_i
    and W^mm_★ z_i."""

    problem_seed: int
    steps: int
    lr: float
    record_every: int
    trials: int
    seed: int
    ridge_lambda: float
    plotted_trials: int


def _paths_trials(cfg: P3PathsConfig, variant: str, idx: np.ndarray) -> dict[str, np.ndarray]:
    from ..problem import p3_paths

    pr = p3_paths(seed=cfg.problem_seed)
    d = pr.d
    if variant == "W":
        model, opt = Model(parameterization="combined"), NGD(lr=cfg.lr, normalize="global")
        init = {"W": np.zeros((len(idx), d, d))}
    else:
        ridge = 2.0 * cfg.ridge_lambda if variant == "KQ-ridge" else 0.0
        model, opt = Model(parameterization="factored"), NGD(lr=cfg.lr, normalize="block", ridge=ridge)
        K = np.stack([0.1 * np.random.default_rng([cfg.seed, int(j), 2]).standard_normal((d, d)) for j in idx])
        init = {"K": K, "Q": np.zeros_like(K)}
    res = train(pr, model, Descent(opt, cfg.steps), trials=len(idx), init=Init(given=init),
                save=Save(every=cfg.record_every, path=True))
    fro, nuc = solve_svm(pr, "opt", "fro"), solve_svm(pr, "opt", "nuclear")
    Z = pr.queries
    ray = {}
    for name, Wr in (("fro", fro.W), ("nuc", nuc.W)):
        u = Wr @ Z.T  # (d, n): W^mm z_i
        v = np.einsum("brij,nj->brni", res.path, Z)  # (B, R, n, d): W_t z_i
        ray[name] = correlation(v, u.T, ndim=1)
    return {
        "path": res.path,
        "corr_fro": np.stack([correlation(p, fro.W) for p in res.path]),
        "corr_nuc": np.stack([correlation(p, nuc.W) for p in res.path]),
        "ray_cos_fro": ray["fro"], "ray_cos_nuc": ray["nuc"],
        "selection": res.selection[:, -1],
        "max_softmax": res.metrics["max_softmax_min"],
    }


def run_p3_paths(cfg: P3PathsConfig, ctx: Context) -> Outcome:
    """Reproduce P3's 2-D path figure (``visualization.ipynb``): W z_i (W₀ = 0, NGD with global
    normalization) and K Qᵀ z_i (K₀ = 0.1·N(0, I), Q₀ = 0, NGD with per-block normalization; with the
    notebook's ridge λ(‖K‖² + ‖Q‖²), λ = 2.2e−16, and without it) over ``steps`` NGD steps, against the rays
    of W^mm z_i (Frobenius) and W^mm_★ z_i (nuclear) at α = opt. Problem: :func:`attnsvm.problem.p3_paths`
    with ``problem_seed`` (chosen, as the notebook chose its seed "for better visualization", so that the
    two SVM directions are visibly apart: corr(W^mm, W^mm_★) ≈ 0.91). (K, Q) is run from ``trials``
    random K₀; the figure shows the first ``plotted_trials``.
    """
    from ..problem import p3_paths

    pr = p3_paths(seed=cfg.problem_seed)
    fro, nuc = solve_svm(pr, "opt", "fro"), solve_svm(pr, "opt", "nuclear")
    data = {}
    for name in ("W", "KQ-ridge", "KQ"):
        n_tr = 1 if name == "W" else cfg.trials  # W₀ = 0 is deterministic
        data[name] = ctx.trials(name, n_tr, n_tr, lambda idx, v=name: _paths_trials(cfg, v, idx),
                                description=f"p3-paths {name}")
    from ..plots.p3 import paths_figure

    k = cfg.plotted_trials
    figs = [ctx.figure(paths_figure(pr, {"W": data["W"]["path"][0], "KQ": data["KQ-ridge"]["path"][0]},
                                    fro.W, nuc.W), "p3_paths")]
    if k > 1:
        figs.append(ctx.figure(paths_figure(pr, {f"KQ{j}": data["KQ-ridge"]["path"][j] for j in range(k)},
                                            fro.W, nuc.W), "p3_paths_kq_inits"))
    c_sv = correlation(fro.W, nuc.W)
    opt = pr.optimal_tokens().opt
    claims = []
    for name, own, other, ref in (("W", "fro", "nuc", "W^mm"), ("KQ-ridge", "nuc", "fro", "W^mm_★"),
                                  ("KQ", "nuc", "fro", "W^mm_★")):
        a = data[name]
        c_own, c_other = a[f"corr_{own}"][:, -1], a[f"corr_{other}"][:, -1]
        rays = a[f"ray_cos_{own}"][:, -1].min(axis=1)
        ok = np.nanmean(c_own) >= 0.99 and np.nanmean(c_own) > np.nanmean(c_other)
        lab = {"W": "W", "KQ-ridge": "(K,Q) with the notebook's ridge", "KQ": "(K,Q) without ridge"}[name]
        claims.append(Claim(
            f"{lab} follows the {'Frobenius' if own == 'fro' else 'nuclear'} rays",
            f"paths → {ref} z_i (figure)",
            f"corr with {ref} {spread(c_own)}; with the other SVM {spread(c_other, '.3f')}; "
            f"min_i cos(W z_i, {ref} z_i) {spread(rays)}",
            "reproduced" if ok else "differs",
            f"at step {cfg.steps}; tolerance: mean corr ≥ 0.99 and above the other SVM's "
            f"(corr(W^mm, W^mm_★) = {c_sv:.3f}); selection = opt in "
            f"{np.mean(np.all(a['selection'] == opt, axis=1)):.0%} of runs"))
    notes = [
        f"problem p3_paths(seed={cfg.problem_seed}): corr(W^mm, W^mm_★) = {c_sv:.3f}, "
        f"‖W^mm‖_F = {fro.value:.3g}, ‖W^mm_★‖_* = {nuc.value:.3g}; α = opt = {opt.tolist()}.",
        "W₀ = 0 (deterministic, one run); (K, Q): K₀ = 0.1·N(0, I) per trial, Q₀ = 0, per-block NGD "
        f"normalization; ridge variant λ = {cfg.ridge_lambda:g} as the notebook (Optimizer ridge 2λ).",
    ]
    arrays = {f"{name}__{k_}": v for name, a in data.items() for k_, v in a.items()}
    arrays["W_mm"], arrays["W_mm_star"] = fro.W, nuc.W
    rows = [{"variant": name, "trial": j, "corr_fro": a["corr_fro"][j, -1], "corr_nuc": a["corr_nuc"][j, -1],
             "min_ray_cos_fro": a["ray_cos_fro"][j, -1].min(), "min_ray_cos_nuc": a["ray_cos_nuc"][j, -1].min()}
            for name, a in data.items() for j in range(a["corr_fro"].shape[0])]
    return Outcome(claims=claims, tables={"final": pd.DataFrame(rows)}, arrays=arrays, figures=figs, notes=notes)


register(Experiment(
    id="p3-paths", paper=PAPER, title="2-D paths: W follows the Frobenius rays, (K,Q) the nuclear rays",
    config_cls=P3PathsConfig, run=run_p3_paths, quick={"trials": 3}))


# ============================================================================================================
# P3-multitoken
# ============================================================================================================

#: rejection reasons of a candidate (P3 multi_token_converge.ipynb)
MT_ACCEPTED, MT_BAND, MT_FINITE, MT_SVM = 0, 1, 2, 3


class P3MultitokenConfig(ExperimentConfig):
    """P3-multitoken (docs/reproductions/p3-multitoken.md): ReLU head h(u) = 1ᵀReLU(Vᵀu), multi-token
    SVM-equivalence."""

    n: int = Field(ge=1)
    T: int = Field(ge=2)
    ds: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    accepted: int = Field(ge=1)  # notebook RUN = 500 (configs/p3-multitoken.toml)
    steps: int = Field(ge=2)
    record_every: int = Field(ge=1)
    lr: float = Field(gt=0)
    tau_hi: float = Field(gt=0, lt=1)
    tau_lo: float = Field(gt=0, lt=1)
    seed: int
    round_size: int = Field(ge=1)
    max_rounds: int = Field(ge=1)
    workers: int = Field(ge=1)
    # "notebook": the authors' arithmetic, ∇L/(‖∇L‖ + eps) with eps = float64 machine epsilon (their implicit
    # stopping rule); "exact": the exact normalized step ∇L/‖∇L‖ for all `steps` steps (explicit stopping rule)
    variants: list[Literal["notebook", "exact"]] = Field(min_length=1)
    notebook_eps: float = Field(ge=0)

    @model_validator(mode="after")
    def _check(self) -> P3MultitokenConfig:
        # W is recorded after step 1 and then every record_every steps (the notebook's it % feq == 0)
        if self.steps <= self.record_every or (self.steps - 1) % self.record_every:
            raise ValueError(f"steps ({self.steps}) must be 1 + a positive multiple of record_every "
                             f"({self.record_every}), e.g. {1 + 20 * self.record_every}")
        if self.tau_lo >= self.tau_hi:
            raise ValueError(f"tau_lo ({self.tau_lo}) must be below tau_hi ({self.tau_hi})")
        return self


def _mt_candidates(cfg: P3MultitokenConfig, d: int, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Candidate j of dimension d from its own stream (seed, d, j): V = N(0, I)/‖·‖_F (d×d), unit-norm
    tokens and queries, W₀ = U(−1/√d, 1/√d) (nn.Linear default), Y uniform ±1 redrawn while every label is
    +1 (the notebook skips such draws before training: this is the same conditional distribution)."""
    n, T = cfg.n, cfg.T
    out: dict[str, list] = {k: [] for k in ("X", "Y", "Z", "V", "W0")}
    for j in idx:
        rng = np.random.default_rng([cfg.seed, d, int(j)])
        V = rng.standard_normal((d, d))
        X = rng.standard_normal((n, T, d))
        Z = rng.standard_normal((n, d))
        W0 = _uniform_init(rng, (d, d), d)
        Y = rng.choice([-1.0, 1.0], size=n)
        while np.all(Y > 0):
            Y = rng.choice([-1.0, 1.0], size=n)
        out["X"].append(X / np.linalg.norm(X, axis=-1, keepdims=True))
        out["Z"].append(Z / np.linalg.norm(Z, axis=-1, keepdims=True))
        out["V"].append(V / np.linalg.norm(V))
        out["Y"].append(Y)
        out["W0"].append(W0)
    return {k: np.stack(v) for k, v in out.items()}


def _mt_eps(cfg: P3MultitokenConfig, variant: str) -> float:
    """The eps of the normalized step ∇L/(‖∇L‖ + eps): the notebook's machine epsilon, or 0 (exact)."""
    return cfg.notebook_eps if variant == "notebook" else 0.0


def _mt_train(cfg: P3MultitokenConfig, c: dict[str, np.ndarray], eps: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray]:
    """NGD (global normalization, lr) on W with the ReLU head for every candidate at once (each candidate
    its own problem and V). The step is lr·∇L/(‖∇L‖ + eps) (``NGD(eps=...)``): eps = 0 is the exact
    normalized step, eps = 2.2e−16 the notebook's arithmetic (its steps shrink once ‖∇L‖ falls near eps).
    Records W after steps 1, 1 + k·every, … (the notebook's ``it % feq == 0`` after the update): one step,
    then the rest recorded every ``every`` steps. Returns (W records (B, R, d, d), final log s (B, n, T))."""
    B, n, T, d = c["X"].shape
    n_rec = (cfg.steps - 1) // cfg.record_every
    model = Model(parameterization="combined", head="relu")
    problems = [AttentionProblem(X=c["X"][b], Y=c["Y"][b], v=np.ones(d) / np.sqrt(d), Z=c["Z"][b])
                for b in range(B)]
    kw = dict(head_V=c["V"], alpha=np.zeros((B, n), np.int64))
    opt = NGD(lr=cfg.lr, normalize="global", eps=eps)
    first = train(problems, model, Descent(opt, 1), init=Init(given={"W": c["W0"]}),
                  save=Save(every=1, metrics=False), **kw)
    rest = train(problems, model, Descent(opt, n_rec * cfg.record_every), init=Init(given=first.params),
                 save=Save(every=cfg.record_every, path=True, metrics=False), **kw)
    return rest.path, _final_log_softmax(model, problems, c["V"], rest.params)


@partial(jax.jit, static_argnames=("model",))
def _batched_log_softmax(params: dict, data, *, model: Model):
    from ..models import log_softmax

    return jax.vmap(lambda p, dat: log_softmax(model, p, dat))(params, data)


def _final_log_softmax(model: Model, problems: list[AttentionProblem], V: np.ndarray, params: dict) -> np.ndarray:
    """log s of every trial at its final parameters (B, n, T), in float64 whatever the caller's JAX setting."""
    from .._jax import float64
    from ..dynamics import prepare_batch

    with float64():
        batch = prepare_batch(problems, model, None, np.zeros((len(problems), problems[0].n), np.int64),
                              head_V=V)
        return np.asarray(_batched_log_softmax(params, batch.data, model=model))


def dead_relu_sequences(s: np.ndarray, X: np.ndarray, V: np.ndarray) -> np.ndarray:
    """(…, n) True where every unit of the ReLU head is inactive on sequence i: Vᵀ(Σ_t s_it x_it) ≤ 0
    componentwise, so h_i = 0 and the sequence's loss gradient is exactly 0 (ReLU'(u) = 0 for u ≤ 0)."""
    pre = np.einsum("...nt,...ntd,...de->...ne", s, X, V)
    return np.all(pre <= 0.0, axis=-1)


def _mt_round(cfg: P3MultitokenConfig, d: int, idx: np.ndarray, variant: str = "exact") -> dict[str, np.ndarray]:
    from ..svm import multitoken_svm

    t0 = time.process_time()
    c = _mt_candidates(cfg, d, idx)
    Ws, log_s = _mt_train(cfg, c, _mt_eps(cfg, variant))
    s = np.exp(log_s)
    B, R = Ws.shape[:2]
    band = ((s > cfg.tau_lo) & (s <= cfg.tau_hi)).any(axis=(1, 2))
    finite = ~(s <= cfg.tau_lo).any(axis=(1, 2))
    reason = np.where(band, MT_BAND, np.where(finite, MT_FINITE, MT_ACCEPTED))
    out = {k: np.full((B, R), np.nan) for k in ("corr_svmeq", "corr_dir", "corr_single")}
    out.update({k: np.full(B, np.nan) for k in ("R", "masked_max")})
    out["W_norm"] = np.linalg.norm(Ws[:, -1], axis=(1, 2))
    # distance moved over the last recorded interval: ≈ lr·every for the exact step, → 0 once eps dominates
    out["last_move"] = np.linalg.norm(Ws[:, -1] - Ws[:, -2], axis=(1, 2)) if R > 1 else np.full(B, np.nan)
    out["dead"] = dead_relu_sequences(s, c["X"], c["V"]).sum(axis=1).astype(float)
    for b in np.flatnonzero(reason == MT_ACCEPTED):
        pr = AttentionProblem(X=c["X"][b], Y=c["Y"][b], v=np.ones(d) / np.sqrt(d), Z=c["Z"][b])
        W = Ws[b, -1]
        mt = multitoken_svm(pr, s[b], W=W, tau_hi=cfg.tau_hi, tau_lo=cfg.tau_lo)
        single = solve_svm(pr, np.argmax(s[b], axis=1), "fro")
        if mt.status != OPTIMAL or single.status not in SOLUTION_PRESENT or not np.isfinite(mt.R):
            reason[b] = MT_SVM  # the notebook's try/except around the cvxpy solves
            continue
        out["corr_svmeq"][b] = correlation(Ws[b], mt.prediction)
        out["corr_dir"][b] = correlation(Ws[b], mt.W_dir)
        out["corr_single"][b] = correlation(Ws[b], single.W)
        out["R"][b] = mt.R
        out["masked_max"][b] = float(np.max(np.where(mt.selected, 0.0, s[b])))
    out["reason"] = reason.astype(float)
    out["cpu_seconds"] = np.full(B, (time.process_time() - t0) / B)  # the round's CPU time, spread per candidate
    return out


def _mt_round_at(cfg: P3MultitokenConfig, d: int, variant: str, start: int, idx: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """Candidates ``start + idx`` of (variant, d): the function of one stored chunk (top-level, so that Dask
    pickles it by reference)."""
    return _mt_round(cfg, d, start + idx, variant)


def run_p3_multitoken(cfg: P3MultitokenConfig, ctx: Context) -> Outcome:
    """Reproduce P3's nonlinear-head figure (``multi_token_converge.ipynb``, ``base_nonlinear.py``).

    Candidates (n = 3, T = 4, d ∈ ds): see :func:`_mt_candidates`; W trained by NGD (η = 0.1, global
    normalization, logistic loss, mean) for ``steps`` = 2001 steps with the ReLU head h(u) = 1ᵀReLU(Vᵀu)
    (``Model(head="relu")``), in two variants on the same candidates: ``notebook`` steps by
    η·∇L/(‖∇L‖ + eps) with eps = 2.2e−16 as the authors' code does, so its steps shrink to nothing once
    ‖∇L‖ falls below ≈ eps (its implicit stopping rule); ``exact`` steps by η·∇L/‖∇L‖ for all 2001 steps
    (the stopping rule is the step count, stated). A run is *accepted* as in the notebook when no final
    softmax lies in (τ_lo, τ_hi] = (1e−6, 1e−3] and some softmax is ≤ 1e−6, and the SVMs are feasible.
    For accepted runs: O_i = {s > τ_hi}, Ō_i = {s ≤ τ_lo}, W^fin, W^dir and the prediction
    W^fin + R·W^dir with R **fitted** to the final W by least squares (:func:`attnsvm.svm.multitoken_svm`),
    and the 1-token SVM W^mm at argmax s; correlations of W along the run with each. A run whose final
    iterate leaves every ReLU unit inactive on some sequence (:func:`dead_relu_sequences`) is counted apart:
    that sequence's gradient is exactly 0, so training no longer acts on which of its tokens are selected.
    Candidates run as batched compiled programs in rounds of ``round_size`` (resumable), only as many rounds
    as needed for ``accepted`` runs per (variant, d); the next rounds of all pairs still short run together,
    ``workers`` processes at a time (:func:`_mt_all_d`); the first ``accepted`` accepted candidates (by index)
    are kept. The softmax weights of the test are those of the final iterate (the notebook uses the forward
    pass before the last update).
    """
    t_all = time.perf_counter()
    per: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    with task_client(cfg.workers) as client:
        stats = _mt_all_d(cfg, ctx, per, client)
    return _mt_outcome(cfg, ctx, per, pd.DataFrame(stats), t_all)


def _mt_store(variant: str, d: int, r: int) -> str:
    # the exact variant keeps the store names of earlier runs (it is the computation they made)
    return f"d{d}-round{r:03d}" if variant == "exact" else f"{variant}-d{d}-round{r:03d}"


def _mt_all_d(cfg: P3MultitokenConfig, ctx: Context, per: dict, client) -> list[dict]:
    """Rounds of every (variant, d) until each has ``accepted`` runs: round r of a pair is candidates
    [r·round_size, (r+1)·round_size), one compiled program; the next rounds of all pairs still short of
    ``accepted`` run together (on the workers at once), so no pair trains a round it does not need."""
    pairs = [(variant, d) for variant in cfg.variants for d in cfg.ds]
    parts: dict[tuple[str, int], list] = {p: [] for p in pairs}
    acc = dict.fromkeys(pairs, 0)
    share = dict.fromkeys(pairs, 0.0)  # each pair's share of the wall time of the rounds it ran in
    while True:
        todo = [p for p in pairs if acc[p] < cfg.accepted and len(parts[p]) < cfg.max_rounds]
        if not todo:
            break
        t0 = time.perf_counter()
        stores = []
        for variant, d in todo:
            r = len(parts[(variant, d)])
            stores.append(TrialStore(_mt_store(variant, d, r), cfg.round_size, cfg.round_size,
                                     partial(_mt_round_at, cfg, d, variant, r * cfg.round_size),
                                     f"p3-multitoken {variant} d={d} round {r}"))
        for p, a in zip(todo, ctx.trials_many(stores, client), strict=True):
            parts[p].append(a)
            acc[p] += int(np.sum(a["reason"] == MT_ACCEPTED))
        for p in todo:
            share[p] += (time.perf_counter() - t0) / len(todo)
    stats = []
    for variant, d in pairs:
        allc = {k: np.concatenate([q[k] for q in parts[(variant, d)]]) for k in parts[(variant, d)][0]}
        r = len(parts[(variant, d)])
        keep = np.flatnonzero(allc["reason"] == MT_ACCEPTED)[:cfg.accepted]
        # the rejection rate over the candidates up to the last kept one (what the notebook would train)
        last = int(keep[-1]) + 1 if keep.size else allc["reason"].size
        reasons = allc["reason"][:last]
        a = per[(variant, d)] = {k: v[keep] for k, v in allc.items()}
        per[(variant, d)]["_reason_all"] = allc["reason"]
        x = 1 - a["corr_svmeq"][:, -1]
        dead = a["dead"] > 0
        stats.append({
            "d": d, "variant": variant, "accepted": int(keep.size), "trained": last,
            "rejection_rate": 1.0 - keep.size / last if last else np.nan,
            "rejected_band": int(np.sum(reasons == MT_BAND)), "rejected_finite": int(np.sum(reasons == MT_FINITE)),
            "rejected_svm": int(np.sum(reasons == MT_SVM)), "rounds": r, "candidates_run": r * cfg.round_size,
            "one_minus_corr_svmeq": float(np.nanmean(x)) if x.size else np.nan,
            "median_one_minus_corr_svmeq": float(np.nanmedian(x)) if x.size else np.nan,
            "n_dead_relu": int(dead.sum()),
            "mean_1mcorr_live": float(np.nanmean(x[~dead])) if (~dead).any() else np.nan,
            "median_1mcorr_live": float(np.nanmedian(x[~dead])) if (~dead).any() else np.nan,
            "mean_1mcorr_dead": float(np.nanmean(x[dead])) if dead.any() else np.nan,
            "median_1mcorr_dead": float(np.nanmedian(x[dead])) if dead.any() else np.nan,
            "one_minus_corr_dir": float(np.nanmean(1 - a["corr_dir"][:, -1])) if x.size else np.nan,
            "one_minus_corr_single": float(np.nanmean(1 - a["corr_single"][:, -1])) if x.size else np.nan,
            "corr_svmeq": float(np.nanmean(a["corr_svmeq"][:, -1])) if x.size else np.nan,
            "median_W_norm": float(np.median(a["W_norm"])) if x.size else np.nan,
            "median_last_move": float(np.median(a["last_move"])) if x.size else np.nan,
            "seconds": share[(variant, d)],
            "compute_cpu_seconds": float(np.sum(allc["cpu_seconds"])),
        })
    return stats


def _mt_outcome(cfg: P3MultitokenConfig, ctx: Context, per: dict, table: pd.DataFrame, t_all: float
                ) -> Outcome:
    steps = np.concatenate([[1], 1 + cfg.record_every * np.arange(1, (cfg.steps - 1) // cfg.record_every + 1)])
    from ..plots.p3 import multitoken_figure

    figs = []
    for variant in cfg.variants:
        sub = {d: a for (v, d), a in per.items() if v == variant}
        curves = {d: {"svmeq": a["corr_svmeq"], "dir": a["corr_dir"], "single": a["corr_single"]}
                  for d, a in sub.items()}
        name = "p3_multitoken" if variant == cfg.variants[0] else f"p3_multitoken_{variant}"
        figs.append(ctx.figure(multitoken_figure(steps, curves, {d: a["masked_max"] for d, a in sub.items()},
                                                 {d: 1 - a["corr_svmeq"][:, -1] for d, a in sub.items()}), name))
    claims = _mt_claims(cfg, table, per)
    ex = "W^fin + R·W^dir"
    notes = [
        "NGD on W (global normalization, η = 0.1, logistic loss) from W₀ = U(−1/√d, 1/√d), head "
        "h(u) = 1ᵀReLU(Vᵀu) with V = N(0, I)/‖·‖_F, unit-norm tokens and queries (multi_token_converge.ipynb).",
        "Two variants on the same candidates. notebook: the step is η·∇L/(‖∇L‖ + eps) with eps = "
        f"{cfg.notebook_eps:.3g} (the notebook's torch.finfo(torch.double).eps): once ‖∇L‖ falls below ≈ eps "
        "the steps shrink to nothing, which is the notebook's implicit stopping rule. exact: the step is "
        f"η·∇L/‖∇L‖ (float64, stable log-space gradient) for all {cfg.steps} steps; the stopping rule is the "
        "step count. Both use the same acceptance test; the notebook row is the reproduction of the published "
        "figure, the exact row the corrected computation.",
        f"{ex}: R is fitted by least squares to the final W of each run (as the notebook), so its "
        "correlation measures the direction up to that fitted scalar.",
        "W^dir is the multi-token max-margin direction (the notebook's `sol`); the 1-token SVM is W^mm at "
        "α = argmax softmax.",
        "An all-inactive sequence: Vᵀ(Σ_t s_it x_it) ≤ 0 in every unit at the final iterate, so h_i = 0 and "
        "sequence i contributes exactly 0 to the gradient; such runs are counted apart (n_dead_relu) and "
        "the means and medians are shown with and without them.",
        f"accepted = first {cfg.accepted} accepted candidates per d; rejection rate = 1 − accepted/trained "
        "over the candidates up to the last kept one. Candidates run in rounds of "
        f"{cfg.round_size} (one compiled program each); the next rounds of every (variant, d) still short of "
        f"{cfg.accepted} run together on {cfg.workers} process(es); total time {time.perf_counter() - t_all:.1f} s.",
        "summary.csv: one row per (d, variant) with n_accepted, mean_1mcorr, median_1mcorr (final "
        f"1 − corr(W, {ex})) and n_dead_relu; multitoken.csv has every statistic.",
    ]
    arrays = {}
    for (variant, d), a in per.items():
        prefix = f"d{d}__" if variant == "exact" else f"{variant}__d{d}__"
        arrays.update({prefix + k: v for k, v in a.items() if not k.startswith("_")})
    arrays["steps"] = steps
    summary = pd.DataFrame({
        "d": table["d"].astype(int), "variant": table["variant"], "n_accepted": table["accepted"].astype(int),
        "mean_1mcorr": table["one_minus_corr_svmeq"], "median_1mcorr": table["median_one_minus_corr_svmeq"],
        "n_dead_relu": table["n_dead_relu"].astype(int)}).sort_values(["d", "variant"]).reset_index(drop=True)
    return Outcome(claims=claims, tables={"multitoken": table, "summary": summary}, arrays=arrays, figures=figs,
                   notes=notes)


#: values read off P3's multi-token figure: final 1 − corr with W^fin + R·W^dir, and rejection rates
_MT_PAPER = {4: (3.5e-2, 0.78), 10: (5.5e-3, 0.98)}
_MT_AUTHORS_50 = {4: 0.952, 6: 0.986, 8: 0.992, 10: 0.995}


def _mean_median(row) -> str:
    return (f"mean {row.one_minus_corr_svmeq:.3g}, median {row.median_one_minus_corr_svmeq:.3g} "
            f"(n={int(row.accepted)}; {int(row.n_dead_relu)} with an all-inactive sequence: mean "
            f"{row.mean_1mcorr_dead:.3g}, median {row.median_1mcorr_dead:.3g}; the others: mean "
            f"{row.mean_1mcorr_live:.3g}, median {row.median_1mcorr_live:.3g})")


def _mt_claims(cfg: P3MultitokenConfig, table: pd.DataFrame, per) -> list[Claim]:
    claims = []
    ref_variant = "notebook" if "notebook" in cfg.variants else cfg.variants[0]
    for row in table.itertuples():
        d, variant = int(row.d), row.variant
        paper = _MT_PAPER.get(d)
        ctx50 = f"; authors' 50-run notebook: corr {_MT_AUTHORS_50[d]}" if d in _MT_AUTHORS_50 else ""
        what = ("notebook arithmetic (eps = 2.2e−16)" if variant == "notebook"
                else f"exact float64, {cfg.steps} steps")
        ptxt = (f"≈ {paper[0]:.1e}{ctx50}" if paper is not None else f"(between){ctx50}")
        if paper is None or not np.isfinite(row.one_minus_corr_svmeq):
            verdict, note = "new", "between the plotted end points"
        elif variant == "notebook":
            ratio = float(row.one_minus_corr_svmeq) / paper[0]
            verdict = "reproduced" if 0.5 <= ratio <= 2.0 else "differs"
            note = f"tolerance: within a factor 2 (log-scale plot); measured mean/paper = {ratio:.2f}"
        else:
            ratio = float(row.one_minus_corr_svmeq) / paper[0]
            verdict = "corrected"
            note = (f"the published value comes from the notebook's eps, which stops its runs early; measured "
                    f"mean/paper = {ratio:.2f}")
        claims.append(Claim(f"d={d}: final 1 − corr(W, W^fin + R·W^dir), {what}", ptxt, _mean_median(row),
                            verdict, note))
    # the mechanism, measured: where the runs end and how far they still move
    parts = []
    for row in table.itertuples():
        parts.append(f"{row.variant} d={int(row.d)}: ‖W‖ {row.median_W_norm:.3g}, moved {row.median_last_move:.2g}")
    claims.append(Claim(
        "the notebook's eps stops its runs", "(not reported)", "medians over accepted runs of the final ‖W‖_F and "
        f"of the distance moved over the last {cfg.record_every} steps: " + "; ".join(parts), "new",
        f"an exact normalized step moves W by at most η·{cfg.record_every} = {cfg.lr * cfg.record_every:g} per "
        f"{cfg.record_every} steps; with eps the steps shrink once ‖∇L‖ ≲ eps"))
    if {"notebook", "exact"} <= set(cfg.variants):
        agree = []
        for d in cfg.ds:
            a, b = per[("notebook", d)]["_reason_all"], per[("exact", d)]["_reason_all"]
            m = min(a.size, b.size)
            agree.append(f"d={d}: {np.mean((a[:m] == MT_ACCEPTED) == (b[:m] == MT_ACCEPTED)):.1%} of {m}")
        claims.append(Claim("accept/reject decisions, notebook vs exact arithmetic (same candidates)",
                            "(not reported)", ", ".join(agree), "new",
                            "the acceptance test reads the final softmax, which depends on where a run stops"))
    ref = table[table["variant"] == ref_variant]
    below_dir = bool(np.all(ref["one_minus_corr_svmeq"] < ref["one_minus_corr_dir"]))
    claims.append(Claim(
        f"SVM-equivalence beats W^dir (W^mm), {ref_variant}", "below W^mm at every d",
        ", ".join(f"d={int(r.d)}: {r.one_minus_corr_svmeq:.2g} vs {r.one_minus_corr_dir:.2g}"
                  for r in ref.itertuples()),
        "reproduced" if below_dir else "differs", "mean final 1 − corr"))
    single = ref["one_minus_corr_single"]
    claims.append(Claim(
        f"far below the 1-token SVM, {ref_variant}", "1-token SVM: 1 − corr ≈ 0.12–0.16",
        ", ".join(f"d={int(r.d)}: {r.one_minus_corr_single:.3f}" for r in ref.itertuples()),
        "reproduced" if bool(np.all((single > 0.06) & (single < 0.3))) else "differs",
        "tolerance: each d's 1-token mean within 0.06–0.3 (factor 2 of the published band)"))
    for row in table.itertuples():
        d = int(row.d)
        if d not in _MT_PAPER:
            continue
        rr = float(row.rejection_rate)
        claims.append(Claim(
            f"d={d}: rejection rate, {row.variant}", f"{_MT_PAPER[d][1]:.0%} of full trainings",
            f"{rr:.1%} of {int(row.trained)} (band {int(row.rejected_band)}, finite {int(row.rejected_finite)}, "
            f"SVM {int(row.rejected_svm)})",
            verdict_within(rr, _MT_PAPER[d][1], 0.05) if row.variant == "notebook" else "new",
            "tolerance ±5 points" if row.variant == "notebook" else "exact arithmetic: no published number"))
    claims.append(Claim(
        "time", "≈ 10 CPU-hours for the notebook",
        f"{table['compute_cpu_seconds'].sum():.0f} CPU-s (this run's wall time {table['seconds'].sum():.0f} s) for "
        f"{int(table['candidates_run'].sum())} candidate trainings", "new",
        f"rounds of {cfg.round_size} candidates, one compiled program each, {cfg.workers} at a time"))
    return claims


register(Experiment(
    id="p3-multitoken", paper=PAPER, title="Nonlinear (ReLU) head: SVM-equivalence W^fin + R·W^dir",
    config_cls=P3MultitokenConfig, run=run_p3_multitoken,
    quick={"accepted": 10, "ds": [4, 10], "round_size": 256, "workers": 1}))

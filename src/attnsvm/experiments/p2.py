"""P2 (Sheen, Chen, Wang, Zhou, *Implicit Regularization of Gradient Flow on One-Layer Softmax Attention*,
2024): reproductions P2-diag and P2-full, and the regularization path on P3-local data (W vs (K, Q)).

P2 publishes no experiments; these designs are this project's own. Every function here is pure
computation — no files, no figures — and returns a dict with the arrays, the per-trial numbers and a list of
:class:`~attnsvm.experiments.base.Claim` (paper value / measured value / spread / verdict).

P2's statements, as tested here: gradient flow dθ/dt = −∇L on the exponential loss summed over samples
(P2 eq. (2.2)–(2.3); ``Model(loss="exponential", reduction="sum")``), with key and query trained separately,
converges in direction to the nuclear-norm Att-SVM at the reached selection (P2 Thm. for the diagonal case:
w = k⊙q, w/‖w‖₁ → the ℓ1 SVM of the diagonal (docs/concepts/att-svm.md); for general (K, Q) under aligned
singular spaces
at initialization: KQᵀ → W^mm_★), while the combined W goes to the Frobenius SVM (P1/P3). The conservation
law of the flow, k_j² − q_j² = const (docs/concepts/dynamics.md), fixes the sign of w_j = k_j q_j from a balanced start
k = s⊙q (s ∈ {±1}^d): such a flow can only reach the ℓ1 SVM restricted to the orthant s⊙w ≥ 0.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import scipy.linalg
from pydantic import Field
from scipy.optimize import linprog

from ..cluster import task_client
from ..models import Model
from ..problem import AttentionProblem, unit_gaussian
from ..svm import build_constraints, correlation, solve_svm
from ..training import Flow, Init, Radius, RegularizationPath, Save, train
from . import Experiment, register
from .base import Claim, Context, ExperimentConfig, Outcome, spread

PAPER = "P2 (Sheen, Chen, Wang, Zhou, 2024)"
P2_MODEL = dict(loss="exponential", reduction="sum")


# ---- geometry helpers: the diagonal SVMs -----------------------------------------------------------------------


def diag_rows(problem: AttentionProblem, alpha: np.ndarray) -> np.ndarray:
    """Constraint vectors a_it = (x_iα − x_it) ⊙ z_i (m, d) of the diagonal Att-SVM at α (docs/concepts/att-svm.md)."""
    return build_constraints(problem, alpha, "l1").rows


def diag_as_prompt(problem: AttentionProblem) -> AttentionProblem:
    """The combined diagonal W = diag(w) as a prompt model with the same logits and the same head.

    x_itᵀ diag(w) z_i = (x_it ⊙ z_i)ᵀ w, so tokens x̃_it = (x_it, x_it ⊙ z_i) ∈ R^{2d} with the fixed key
    matrix K = [0; I] (logit x̃ᵀ K p = (x ⊙ z)ᵀ p) and head ṽ = (v, 0) (scores vᵀx unchanged) train w = p
    directly; the prompt ℓ2 SVM, with constraint vectors Kᵀ(x̃_iα − x̃_it) = (x_iα − x_it) ⊙ z_i, is the
    diagonal ℓ2 SVM."""
    d = problem.d
    Xt = np.concatenate([problem.X, problem.X * problem.queries[:, None, :]], axis=2)
    K = np.vstack([np.zeros((d, d)), np.eye(d)])
    return AttentionProblem(X=Xt, Y=problem.Y, v=np.concatenate([problem.v, np.zeros(d)]), key_matrix=K,
                            mask=problem.mask)


def l1_sign_restricted(A: np.ndarray, signs: np.ndarray) -> np.ndarray | None:
    """min ‖w‖₁ s.t. A w ≥ 1 and s_j w_j ≥ 0 (w_j = 0 where s_j = 0), an LP in u = s⊙w ≥ 0 (HiGHS).

    None when infeasible (the orthant cannot separate)."""
    s = np.asarray(signs, dtype=float)
    cols = np.flatnonzero(s != 0)
    if cols.size == 0:
        return None
    As = A[:, cols] * s[cols]
    res = linprog(np.ones(cols.size), A_ub=-As, b_ub=-np.ones(A.shape[0]), bounds=(0, None), method="highs")
    if res.status != 0:
        return None
    w = np.zeros(A.shape[1])
    w[cols] = s[cols] * res.x
    return w


def l1_kkt(A: np.ndarray, w: np.ndarray, w_star: np.ndarray, rel_zero: float = 1e-3) -> dict[str, object]:
    """How far a direction w is from satisfying the KKT conditions of min ‖w‖₁ s.t. A w ≥ 1.

    w̃ = w / min_k a_kᵀw (feasible with margin 1). KKT: λ ≥ 0 on the active constraints (a_kᵀw̃ ≤ 1 + 1e−3)
    with g = Aᵀλ ∈ ∂‖w̃‖₁, i.e. g_j = sign(w̃_j) on the support S = {|w̃_j| > rel_zero·max|w̃|} and |g_j| ≤ 1
    off it. An LP finds the λ minimizing the largest violation ε. Returns ε, the per-coordinate
    violations, the ℓ1 excess ‖w̃‖₁/‖w*‖₁ − 1, and the coordinates that are near zero in w̃ but not in w*
    (``stalled``) and of opposite sign (``flipped``).
    """
    margin = A @ w
    wt = w / margin.min() if margin.min() > 0 else w * np.nan
    d = A.shape[1]
    big = np.abs(wt) > rel_zero * np.nanmax(np.abs(wt)) if np.all(np.isfinite(wt)) else np.zeros(d, bool)
    active = np.flatnonzero((A @ wt) <= 1 + 1e-3) if np.all(np.isfinite(wt)) else np.arange(A.shape[0])
    Aa = A[active]
    m = Aa.shape[0]
    sgn = np.sign(wt) * big
    # variables (λ (m), ε); minimize ε subject to ±(Aᵀλ − sgn)_S ≤ ε and ±(Aᵀλ)_{not S} ≤ 1 + ε
    rows, rhs = [], []
    for j in range(d):
        col = np.append(Aa[:, j], -1.0)
        colm = np.append(-Aa[:, j], -1.0)
        if big[j]:
            rows += [col, colm]
            rhs += [sgn[j], -sgn[j]]
        else:
            rows += [col, colm]
            rhs += [1.0, 1.0]
    c = np.zeros(m + 1)
    c[-1] = 1.0
    res = linprog(c, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=[(0, None)] * m + [(0, None)],
                  method="highs")
    eps = float(res.x[-1]) if res.status == 0 else np.inf
    g = Aa.T @ res.x[:m] if res.status == 0 else np.full(d, np.nan)
    viol = np.where(big, np.abs(g - sgn), np.maximum(0.0, np.abs(g) - 1.0))
    ws = w_star
    star_big = np.abs(ws) > rel_zero * np.max(np.abs(ws))
    return {
        "kkt_violation": eps,
        "coord_violation": viol,
        "l1_excess": float(np.sum(np.abs(wt)) / np.sum(np.abs(ws)) - 1.0),
        "stalled": np.flatnonzero(~big & star_big),
        "flipped": np.flatnonzero(big & star_big & (np.sign(wt) != np.sign(ws))),
        "extra": np.flatnonzero(big & ~star_big),
    }


# ============================================================================================================
# P2-diag
# ============================================================================================================


class P2DiagConfig(ExperimentConfig):
    """P2-diag: diagonal (k, q) gradient flow on the exponential (sum) loss, random separable problems."""

    n: int
    T: int
    d: int
    problem_seeds: list[int]
    trials: int
    init_scale: float
    seed: int
    stop_saturation: float
    stop_radius: float
    rtol: float
    atol: float
    n_records: int
    reach_tol: float
    # ε-KKT study (attnsvm.experiments.p2_kkt): init scale × balancedness, flows certified at kkt_radii
    kkt_scales: list[float]
    kkt_kinds: list[str]
    kkt_radii: list[float]
    kkt_trials: int | None = None
    kkt_max_steps: int | None
    kkt_tol: float
    converge_slope: float
    restricted_tol: float
    workers: int = Field(ge=1)  # processes for the per-seed runs and the study's cells (one flow program per core)


P2_DIAG_QUICK = {"problem_seeds": [0], "trials": 6, "stop_radius": 1000.0, "kkt_scales": [1.0, 0.01],
                 "kkt_radii": [100.0, 1000.0], "kkt_max_steps": None, "workers": 1}


def _diag_refs(problem: AttentionProblem, alpha: np.ndarray) -> dict[str, np.ndarray]:
    l1 = solve_svm(problem, alpha, "l1")
    l2 = solve_svm(diag_as_prompt(problem), alpha, "l2")
    return {"l1": np.diag(l1.solution) if l1.feasible else np.full(problem.d, np.nan),
            "l2": l2.solution if l2.feasible else np.full(problem.d, np.nan)}


def _first_index(values: np.ndarray, target: float) -> int:
    """First record at which ``values`` (increasing along a run) reaches ``target`` (else the last)."""
    hit = np.flatnonzero(values >= target)
    return int(hit[0]) if hit.size else len(values) - 1


DIAG_KINDS = ("unbalanced", "balanced", "combined")


def _as_cfg(cls, cfg):
    return cls.model_validate(cfg) if isinstance(cfg, dict) else cfg


def diag_problem_rows(cfg: P2DiagConfig, ps: int) -> dict[str, np.ndarray]:
    """The rows of one problem seed ``ps``: 3 × ``trials`` runs (unbalanced, balanced, combined), each with
    its final numbers and its per-record curves (``*_path``: 1 − corr with the ℓ1 / ℓ2 SVM at the reached
    selection, ‖w‖_F, the conservation drift of k² − q²). Depends only on (cfg, ps): the resumable unit."""
    model = Model("diagonal", **P2_MODEL)
    B, d = cfg.trials, cfg.d
    flow_kw = dict(stop=Radius(cfg.stop_radius), save=Save(records=cfg.n_records, path=True))
    flow = Flow(rtol=cfg.rtol, atol=cfg.atol, error_estimate=False)
    per: dict[str, list] = {k: [] for k in (
        "problem_seed", "kind", "trial", "gap_l1", "gap_l2", "gap_l1_at_E", "W_at_E", "is_opt", "reached",
        "kkt_violation", "l1_excess", "n_stalled", "n_flipped", "n_extra", "gap_restricted", "still_moving",
        "max_drift", "sign_locked", "steps", "W_final", "coords",
        "gap_l1_path", "gap_l2_path", "W_fro_path", "drift_path")}
    prob = unit_gaussian(cfg.n, cfg.T, d, seed=ps)
    opt = prob.optimal_tokens().opt
    ref_opt = _diag_refs(prob, opt)
    rng = np.random.default_rng([cfg.seed, ps])
    k0 = cfg.init_scale * rng.standard_normal((B, d))
    q0 = cfg.init_scale * rng.standard_normal((B, d))
    s = rng.choice([-1.0, 1.0], size=(B, d))
    s[0] = np.where(ref_opt["l1"] != 0, np.sign(ref_opt["l1"]), 1.0)  # balanced trial 0: the ℓ1 signs
    runs = {
        "unbalanced": (model, {"k": k0, "q": q0}, prob),
        "balanced": (model, {"k": s * np.abs(q0), "q": np.abs(q0)}, prob),
        "combined": (Model("prompt", **P2_MODEL), {"p": cfg.init_scale**2 * rng.standard_normal((B, d))},
                     diag_as_prompt(prob)),
    }
    for kind, (mdl, init, target) in runs.items():
        res = train(target, mdl, flow, trials=B, init=Init(given=init), **flow_kw)
        path = res.path  # (B, R, d, d) for the diagonal model, (B, R, d) for the prompt model
        drift = res.metrics.get("conservation_drift")
        for b in range(B):
            alpha = res.selection[b, -1]
            refs = _diag_refs(prob, alpha)
            w_path = np.diagonal(path[b], axis1=1, axis2=2) if path.ndim == 4 else path[b]
            w = w_path[-1]
            gap1 = 1 - correlation(w, refs["l1"])
            gap2 = 1 - correlation(w, refs["l2"])
            # where the issue's stop (E ≤ stop_saturation) falls on this path
            iE = _first_index(-res.metrics["log_saturation"][b], -np.log(cfg.stop_saturation))
            per["problem_seed"].append(ps)
            per["kind"].append(kind)
            per["trial"].append(b)
            per["gap_l1"].append(gap1)
            per["gap_l2"].append(gap2)
            per["gap_l1_at_E"].append(1 - correlation(w_path[iE], refs["l1"]))
            per["W_at_E"].append(res.metrics["W_fro"][b, iE])
            per["is_opt"].append(bool(np.all(alpha == opt)))
            per["reached"].append(gap1 <= cfg.reach_tol)
            kkt = l1_kkt(diag_rows(prob, alpha), w, refs["l1"])
            per["kkt_violation"].append(kkt["kkt_violation"])
            per["l1_excess"].append(kkt["l1_excess"])
            per["n_stalled"].append(len(kkt["stalled"]))
            per["n_flipped"].append(len(kkt["flipped"]))
            per["n_extra"].append(len(kkt["extra"]))
            big = np.abs(w) > 1e-3 * np.abs(w).max()
            restricted = l1_sign_restricted(diag_rows(prob, alpha), np.sign(w) * big)
            if kind == "balanced":
                restricted = l1_sign_restricted(diag_rows(prob, alpha), s[b])
            per["gap_restricted"].append(1 - correlation(w, restricted) if restricted is not None else np.nan)
            per["max_drift"].append(float(np.max(drift[b])) if drift is not None else np.nan)
            per["sign_locked"].append(bool(np.all(s[b] * w_path[1:] >= 0)) if kind == "balanced" else False)
            per["steps"].append(int(res.info["accepted_steps"][b]))
            per["W_final"].append(w)
            # is the direction still changing? 1 − corr between the stop and half the final norm
            ih = _first_index(res.metrics["W_fro"][b], 0.5 * res.metrics["W_fro"][b, -1])
            per["still_moving"].append(1 - correlation(w, w_path[ih]))
            per["coords"].append(f"stalled {kkt['stalled'].tolist()}, flipped {kkt['flipped'].tolist()}, "
                                 f"extra {kkt['extra'].tolist()}")
            per["gap_l1_path"].append([1 - correlation(x, refs["l1"]) for x in w_path])
            per["gap_l2_path"].append([1 - correlation(x, refs["l2"]) for x in w_path])
            per["W_fro_path"].append(res.metrics["W_fro"][b])
            per["drift_path"].append(drift[b] if drift is not None else np.full(w_path.shape[0], np.nan))
    return {k: np.asarray(v) for k, v in per.items()}


def _merge(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def diag_notes(a: dict[str, np.ndarray], reach_tol: float) -> list[str]:
    """Where the unbalanced trials that miss the ℓ1 solution stop: their stalled / flipped / extra coordinates."""
    bad = (a["kind"] == "unbalanced") & (a["gap_l1"] > reach_tol)
    return [f"problem {ps} trial {b}: {c}" for ps, b, c in
            zip(a["problem_seed"][bad], a["trial"][bad], a["coords"][bad], strict=True)]


def run_p2_diag(cfg: P2DiagConfig | dict) -> dict:
    """P2-diag (docs/reproductions/p2-diag.md): does diagonal (k, q) flow reach the ℓ1 SVM, and what happens otherwise?

    For each problem ``unit_gaussian(n, T, d, seed)`` of ``problem_seeds`` (cross-attention, unit-norm
    Gaussian tokens, queries and head, random labels; with n(T−1) ≤ d every selection is separable):

    * **unbalanced**: ``trials`` initializations k₀, q₀ = ``init_scale``·N(0, I) independently; flow
      (Tsit5, rtol/atol as configured) until ‖w‖_F = ``stop_radius`` (w = k⊙q; E is then far below the
      issue's 1e−8, which is also located on every path and reported). At the reached selection α
      (argmax attention at the stop): 1 − corr(w, w_ℓ1(α)) and 1 − corr(w, w_ℓ2(α)); a trial *reaches*
      the ℓ1 solution when 1 − corr ≤ ``reach_tol``. The others are characterized by :func:`l1_kkt`
      (KKT violation, stalled coordinates that stay near zero where w_ℓ1 is not, flipped signs) and by the
      correlation with the ℓ1 SVM restricted to their own final sign pattern (:func:`l1_sign_restricted`).
    * **combined diagonal W**: the same data trained as w directly (prompt model on x ⊙ z, see
      :func:`diag_as_prompt`) from w₀ = ``init_scale``²·N(0, I): → the ℓ2 solution.
    * **balanced**: k₀ = s ⊙ |q₀| with random signs s and q₀ as above: k² − q² = 0 is conserved, so
      sign(w_j) = s_j for ever (checked at every record); the prediction is the ℓ1 SVM restricted to the
      orthant s⊙w ≥ 0, and with s = sign(w_ℓ1(opt)) the ℓ1 solution itself.

    The rows of one problem seed come from :func:`diag_problem_rows` (the experiment's resumable unit);
    the claims from the merged rows.
    """
    cfg = _as_cfg(P2DiagConfig, cfg)
    t_start = time.perf_counter()
    arrays = _merge([diag_problem_rows(cfg, ps) for ps in cfg.problem_seeds])
    return {"arrays": arrays, "claims": _diag_claims(cfg, arrays), "notes": diag_notes(arrays, cfg.reach_tol),
            "seconds": time.perf_counter() - t_start, "config": cfg.model_dump()}


def _diag_claims(cfg: P2DiagConfig, a: dict[str, np.ndarray]) -> list[Claim]:
    claims = []
    un = a["kind"] == "unbalanced"
    reached = a["reached"][un]
    claims.append(Claim(
        "diagonal (k,q) flow: w/‖w‖ → ℓ1 SVM at the reached selection (unbalanced small random init)",
        "→ ℓ1 SVM under P2's conditions on the initialization; an independent check: 9 of 12 within 3e−3 "
        "at ‖w‖ = 200", f"{reached.sum()} of {reached.size} within {cfg.reach_tol:g} at ‖w‖_F = "
        f"{cfg.stop_radius:g}; 1 − corr(ℓ1): {spread(a['gap_l1'][un], '.2e')}", "new",
        "per problem seed: " + ", ".join(f"{ps}: {int(a['reached'][un & (a['problem_seed'] == ps)].sum())}/"
                                         f"{int((un & (a['problem_seed'] == ps)).sum())}"
                                         for ps in cfg.problem_seeds)))
    ok = un & a["reached"]
    if ok.any():
        claims.append(Claim(
            "reached trials: closer to ℓ1 than to ℓ2", "ℓ1 (nuclear of diag), not ℓ2",
            f"1 − corr ℓ1 {spread(a['gap_l1'][ok], '.2e')} vs ℓ2 {spread(a['gap_l2'][ok], '.3f')}",
            "reproduced" if np.all(a["gap_l1"][ok] < a["gap_l2"][ok]) else "differs",
            f"at E = {cfg.stop_saturation:g} (the issue's stop) the same trials had 1 − corr ℓ1 "
            f"{spread(a['gap_l1_at_E'][ok], '.2e')} at ‖w‖_F {spread(a['W_at_E'][ok], '.0f')}"))
    bad = un & ~a["reached"]
    if bad.any():
        claims.append(Claim(
            "trials that do not reach ℓ1: where they stop", "(P2: not covered by the theorem)",
            f"1 − corr ℓ1 {spread(a['gap_l1'][bad], '.3f')}; ℓ1-KKT violation "
            f"{spread(a['kkt_violation'][bad], '.2f')}; coordinates near 0 where w_ℓ1 is not (stalled) "
            f"{spread(a['n_stalled'][bad], '.2g')}, nonzero where w_ℓ1 is 0 (extra) "
            f"{spread(a['n_extra'][bad], '.2g')}, "
            f"of flipped sign {spread(a['n_flipped'][bad], '.2g')}; 1 − corr with the ℓ1 SVM restricted to their "
            f"own sign pattern {spread(a['gap_restricted'][bad], '.2e')}",
            "new", "selection = opt in "
            f"{a['is_opt'][bad].mean():.0%}; ℓ1 norm excess over the optimum {spread(a['l1_excess'][bad], '.3f')}; "
            f"direction change from ‖w‖/2 to the stop {spread(a['still_moving'][bad], '.1e')} (reached trials: "
            f"{spread(a['still_moving'][un & a['reached']], '.1e')})"))
    cb = a["kind"] == "combined"
    claims.append(Claim(
        "same data as a combined diagonal W: w/‖w‖ → ℓ2 SVM", "→ ℓ2 (Frobenius of diag)",
        f"1 − corr ℓ2 {spread(a['gap_l2'][cb], '.2e')} vs ℓ1 {spread(a['gap_l1'][cb], '.3f')}",
        "reproduced" if np.all(a["gap_l2"][cb] < a["gap_l1"][cb]) and np.median(a["gap_l2"][cb]) < 1e-2
        else "differs", "tolerance: median 1 − corr(ℓ2) < 1e−2 and ℓ2 closer than ℓ1 in every trial"))
    bl = a["kind"] == "balanced"
    claims.append(Claim(
        "balanced start k = s⊙|q|: sign lock sign(w_j) = s_j, and → ℓ1 SVM restricted to the orthant s⊙w ≥ 0",
        "conservation of k_j² − q_j² (docs/concepts/dynamics.md)",
        f"sign locked in {a['sign_locked'][bl].mean():.0%} of runs; max conservation drift "
        f"{np.nanmax(a['max_drift'][a['kind'] != 'combined']):.1e}; 1 − corr with the orthant ℓ1 SVM "
        f"{spread(a['gap_restricted'][bl], '.2e')}",
        "reproduced" if a["sign_locked"][bl].all() else "differs",
        "trial 0 of each problem uses s = sign(w_ℓ1(opt)): 1 − corr ℓ1 "
        f"{spread(a['gap_l1'][bl & (a['trial'] == 0)], '.2e')}"))
    return claims


# ============================================================================================================
# P2-full
# ============================================================================================================


class P2FullConfig(ExperimentConfig):
    """P2-full: (K, Q) vs W flow on sign-symmetrized data with aligned (diagonal) initialization."""

    n0: int
    T: int
    d: int
    problem_seed: int
    aligned_trials: int
    random_trials: int
    init_scale: float
    seed: int
    stop_radius: float
    rtol: float
    atol: float
    n_records: int
    reach_tol: float
    min_gap: float
    generic_trials: int
    generic_n: int
    generic_d: int
    local_path: bool
    # ε-KKT study of the generic-data flows (attnsvm.experiments.p2_kkt), continued to kkt_radii
    kkt_radii: list[float]
    kkt_max_steps: int | None
    kkt_tol: float
    converge_slope: float
    workers: int = Field(ge=1)  # processes for the ε-KKT study (its flows split in `workers` chunks per family)


# aligned_trials = random_trials: the aligned and the random (K, Q) runs share one compiled flow program
P2_FULL_QUICK = {"aligned_trials": 4, "random_trials": 4, "stop_radius": 300.0, "generic_trials": 4,
                 "kkt_radii": [300.0, 600.0], "kkt_max_steps": None, "workers": 1}


def aligned_problem(n0: int, T: int, d: int, seed: int) -> AttentionProblem:
    """Sign-symmetrized data whose Att-SVMs are diagonal (the P2-full construction).

    Base: n0 sequences of T tokens with geometry g_it = N(0, I_d)/√d, queries z_i = N(0, I_d)/√d, and a
    separate score coordinate (token 0 scores 1, the others U(0, 0.5)); tokens x_it = (g_it, score_it) ∈
    R^{d+1}, queries (z_i, 0), head v = e_{d+1}, labels +1. Mirror every sequence by the 2d sign vectors
    h ∈ G = {±rows of the Sylvester–Hadamard matrix H_d}: (h⊙g_it, score_it) with query (h⊙z_i, 0), so
    n = 2·n0·d sequences. G is a group under the entrywise product (the Walsh characters of Z₂^k and their
    negatives) with Σ_{h∈G} h_j h_k = 0 (j ≠ k) and Σ_{h∈G} h_k = 0. For D_h = diag(h, 1), W ↦ D_h W D_h
    permutes the mirrored sequences, so it maps the feasible set of every Att-SVM at a mirror-invariant
    selection onto itself and preserves the Frobenius and nuclear norms; the group average of a solution,
    (1/|G|) Σ_h D_h W D_h, is then a diagonal solution (off-diagonal entries average to zero by the two sums).
    Hence W^mm (unique) is diag(ℓ2 SVM of the diagonal problem) and a nuclear solution is diag(ℓ1 SVM),
    with ‖W^mm_★‖_* = ‖w_ℓ1‖₁ (checked). The singular spaces of the data features are the coordinate axes;
    an *aligned* initialization is K₀ = diag(k₀), Q₀ = diag(q₀) (W₀ = diag(w₀)). At a diagonal W every
    mirror has the attention of its base sequence, so ∇_W L = Σ c_it x_it z_iᵀ averages to a diagonal
    matrix and K, Q stay diagonal: from an aligned start the (K, Q) flow *is* the diagonal (k, q) flow of
    P2-diag, and the W flow the combined diagonal one.
    """
    if d & (d - 1):
        raise ValueError(f"d: the Hadamard construction needs a power of 2, got {d}")
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n0, T, d)) / np.sqrt(d)
    z = rng.standard_normal((n0, d)) / np.sqrt(d)
    score = rng.uniform(0.0, 0.5, size=(n0, T))
    score[:, 0] = 1.0
    H = scipy.linalg.hadamard(d).astype(float)
    H = np.concatenate([H, -H])
    X = np.concatenate([np.concatenate([h * g, score[..., None]], axis=2) for h in H])
    Z = np.concatenate([np.concatenate([h * z, np.zeros((n0, 1))], axis=1) for h in H])
    v = np.zeros(d + 1)
    v[-1] = 1.0
    return AttentionProblem(X=X, Y=np.ones(X.shape[0]), v=v, Z=Z)


FULL_FAMILIES = ("KQ-aligned", "W-aligned", "KQ-random", "KQ-generic", "W-generic")


def full_setup(cfg: P2FullConfig) -> dict:
    """Problems, models and initializations of every run family of P2-full (drawn in one fixed order from
    ``seed``, so a family's runs do not depend on which other families were computed in the same process)."""
    prob = aligned_problem(cfg.n0, cfg.T, cfg.d, cfg.problem_seed)
    D = prob.d
    rng = np.random.default_rng(cfg.seed)
    s = cfg.init_scale
    A, R, G, dg = cfg.aligned_trials, cfg.random_trials, cfg.generic_trials, cfg.generic_d

    def diag_init(shape_b: int) -> np.ndarray:
        out = np.zeros((shape_b, D, D))
        idx = np.arange(cfg.d)
        out[:, idx, idx] = s * rng.standard_normal((shape_b, cfg.d))
        return out

    kq = Model("factored", **P2_MODEL)
    wm = Model("combined", **P2_MODEL)
    # generic data (no symmetry, no alignment): one unit-Gaussian problem per trial
    generic = [unit_gaussian(cfg.generic_n, cfg.T, dg, seed=cfg.problem_seed + j) for j in range(G)]
    inits = {}
    inits["KQ-aligned"] = {"K": diag_init(A), "Q": diag_init(A)}
    inits["W-aligned"] = {"W": s * diag_init(A)}
    inits["KQ-random"] = {"K": s * rng.standard_normal((R, D, D)), "Q": s * rng.standard_normal((R, D, D))}
    inits["KQ-generic"] = {"K": s * rng.standard_normal((G, dg, dg)), "Q": s * rng.standard_normal((G, dg, dg))}
    inits["W-generic"] = {"W": s * s * rng.standard_normal((G, dg, dg))}
    return {"problem": prob, "inits": inits,
            "models": {"KQ-aligned": kq, "W-aligned": wm, "KQ-random": kq, "KQ-generic": kq, "W-generic": wm},
            "problems": {"KQ-aligned": [prob] * A, "W-aligned": [prob] * A, "KQ-random": [prob] * R,
                         "KQ-generic": generic, "W-generic": generic}}


def full_references(prob: AttentionProblem) -> dict:
    """The Frobenius, nuclear and diagonal-ℓ1 SVMs of the aligned problem at opt, and how they compare."""
    opt = prob.optimal_tokens().opt
    fro, nuc, l1 = (solve_svm(prob, opt, nm) for nm in ("fro", "nuclear", "l1"))
    return {"fro": fro.solution, "nuclear": nuc.solution, "l1": l1.solution,
            "gap_refs": 1 - correlation(fro.solution, nuc.solution),
            "offdiag": float(np.linalg.norm(nuc.solution - np.diag(np.diag(nuc.solution)))
                             / np.linalg.norm(nuc.solution)),
            "nuc_vs_l1": 1 - correlation(nuc.solution, l1.solution)}


def full_family_rows(cfg: P2FullConfig, family: str, setup: dict | None = None) -> dict[str, np.ndarray]:
    """One run family of P2-full (one row per trial): final correlations with W^mm_α and W^mm_★,α at the
    reached selection α, and the per-record curves 1 − corr (``gap_fro_path``, ``gap_nuc_path``, against the
    final α's solutions), ‖W‖_F (``W_fro_path``) and the conservation drift (``drift_path``)."""
    setup = setup if setup is not None else full_setup(cfg)
    plist = setup["problems"][family]
    many = len({id(p) for p in plist}) > 1
    res = train(plist if many else plist[0], setup["models"][family],
                Flow(rtol=cfg.rtol, atol=cfg.atol, error_estimate=False), stop=Radius(cfg.stop_radius),
                save=Save(records=cfg.n_records, path=True), trials=None if many else len(plist),
                init=Init(given=setup["inits"][family]))
    cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    per: dict[str, list] = {k: [] for k in ("variant", "trial", "corr_fro", "corr_nuc", "gap_refs", "is_opt",
                                            "offdiag", "drift", "steps", "gap_fro_path", "gap_nuc_path",
                                            "W_fro_path", "drift_path")}
    dr = res.metrics.get("conservation_drift")
    for b in range(res.trials):
        pb = plist[b]
        alpha = res.selection[b, -1]
        key = (id(pb), *alpha.tolist())
        if key not in cache:
            f_, n_ = solve_svm(pb, alpha, "fro"), solve_svm(pb, alpha, "nuclear")
            cache[key] = (f_.solution, n_.solution)
        Wf, Wn = cache[key]
        W = res.W[b]
        per["variant"].append(family)
        per["trial"].append(b)
        per["corr_fro"].append(correlation(W, Wf))
        per["corr_nuc"].append(correlation(W, Wn))
        per["gap_refs"].append(1 - correlation(Wf, Wn))
        per["is_opt"].append(bool(np.all(alpha == pb.optimal_tokens().opt)))
        per["offdiag"].append(float(np.linalg.norm(W - np.diag(np.diag(W))) / np.linalg.norm(W)))
        per["drift"].append(float(np.max(dr[b])) if dr is not None else np.nan)
        per["steps"].append(int(res.info["accepted_steps"][b]))
        per["gap_fro_path"].append([1 - correlation(x, Wf) for x in res.path[b]])
        per["gap_nuc_path"].append([1 - correlation(x, Wn) for x in res.path[b]])
        per["W_fro_path"].append(res.metrics["W_fro"][b])
        per["drift_path"].append(dr[b] if dr is not None else np.full(res.path.shape[1], np.nan))
    return {k: np.asarray(v) for k, v in per.items()}


def run_p2_full(cfg: P2FullConfig | dict) -> dict:
    """P2-full (docs/reproductions/p2-full.md): (K, Q) flow → nuclear SVM and W flow → Frobenius SVM on the same
    aligned data,
    then (K, Q) from random unaligned initializations (an open question the tool measures).

    Data: :func:`aligned_problem` (docstring: the construction and why it is aligned). The gap between the
    two predictions, 1 − corr(W^mm, W^mm_★) at opt, must be ≥ ``min_gap`` (else the run says so).
    Runs: aligned (K, Q) = (diag(k₀), diag(q₀)), k₀, q₀ = ``init_scale``·N(0, I); W from diag(w₀),
    w₀ = ``init_scale``²·N; random (K, Q) with every entry ``init_scale``·N(0, 1); and, beyond the
    construction, ``generic_trials`` unit-Gaussian problems (n = ``generic_n``, d = ``generic_d``, one per
    trial, no symmetry) trained as (K, Q) and as W from random inits. All flows to
    ‖W‖_F = ``stop_radius`` (exponential loss, sum). Correlations at the reached selection α with W^mm_α
    (exact) and W^mm_★,α (SCS); the nuclear solution is checked against diag(ℓ1 LP) at opt.
    One family's rows come from :func:`full_family_rows` (the experiment's resumable unit).
    """
    cfg = _as_cfg(P2FullConfig, cfg)
    t_start = time.perf_counter()
    setup = full_setup(cfg)
    refs = full_references(setup["problem"])
    a = _merge([full_family_rows(cfg, fam, setup) for fam in FULL_FAMILIES])
    return {"arrays": a, "claims": _full_claims(cfg, a, refs),
            "references": {k: refs[k] for k in ("fro", "nuclear", "l1")},
            "gap_refs": refs["gap_refs"], "seconds": time.perf_counter() - t_start, "config": cfg.model_dump()}


def _full_claims(cfg: P2FullConfig, a: dict[str, np.ndarray], refs: dict) -> list[Claim]:
    gap_refs, offdiag, nuc_vs_l1 = refs["gap_refs"], refs["offdiag"], refs["nuc_vs_l1"]
    dg = cfg.generic_d
    claims = []
    claims.append(Claim(
        "aligned data: the two predictions differ", f"gap 1 − corr(W^mm, W^mm_★) ≥ {cfg.min_gap}",
        f"{gap_refs:.3f}; W^mm_★ off-diagonal part {offdiag:.1e}, 1 − corr(W^mm_★, diag ℓ1 LP) {nuc_vs_l1:.1e}",
        "reproduced" if gap_refs >= cfg.min_gap else "differs",
        "construction: Hadamard sign-symmetrized data (aligned_problem docstring)"))
    for name, own, other, label in (("KQ-aligned", "corr_nuc", "corr_fro", "KQᵀ → W^mm_★ (nuclear)"),
                                    ("W-aligned", "corr_fro", "corr_nuc", "W → W^mm (Frobenius)")):
        m = a["variant"] == name
        reach = (1 - a[own][m]) <= cfg.reach_tol
        claims.append(Claim(
            f"aligned init: {label}", "P2 (K,Q) theorem with aligned init / P3 for W",
            f"{reach.sum()} of {m.sum()} within {cfg.reach_tol:g}; 1 − corr own {spread(1 - a[own][m], '.2e')}, "
            f"other {spread(1 - a[other][m], '.3f')}",
            "reproduced" if reach.mean() >= 0.5 and np.all(a[own][m] > a[other][m]) else "differs",
            f"at ‖W‖_F = {cfg.stop_radius:g}; off-diagonal part {spread(a['offdiag'][m], '.1e')} (stays aligned); "
            f"conservation drift {np.nanmax(a['drift'][m]) if name.startswith('KQ') else float('nan'):.1e}"))
    m = a["variant"] == "KQ-random"
    claims.append(Claim(
        "random unaligned (K, Q) init: distance from the nuclear solution at the stop",
        "open (P2's theorem needs alignment)",
        f"1 − corr(KQᵀ, W^mm_★,α) {spread(1 - a['corr_nuc'][m], '.2e')}; with W^mm_α "
        f"{spread(1 - a['corr_fro'][m], '.3f')}; within {cfg.reach_tol:g}: "
        f"{int(np.sum(1 - a['corr_nuc'][m] <= cfg.reach_tol))} of {int(m.sum())}", "new",
        f"selection = opt in {a['is_opt'][m].mean():.0%}; off-diagonal part {spread(a['offdiag'][m], '.2f')}"))
    for name, own, other, label in (("KQ-generic", "corr_nuc", "corr_fro", "KQᵀ vs W^mm_★,α"),
                                    ("W-generic", "corr_fro", "corr_nuc", "W vs W^mm_α")):
        m = a["variant"] == name
        claims.append(Claim(
            f"generic unit-Gaussian data (n={cfg.generic_n}, T={cfg.T}, d={dg}), random init: {label}",
            "(no theorem for (K,Q) without alignment)" if name.startswith("KQ") else "→ W^mm_α (P3)",
            f"1 − corr own {spread(1 - a[own][m], '.2e')}, other {spread(1 - a[other][m], '.3f')}; within "
            f"{cfg.reach_tol:g}: {int(np.sum(1 - a[own][m] <= cfg.reach_tol))} of {int(m.sum())}", "new",
            f"one problem per trial; gap between the two SVMs {spread(a['gap_refs'][m], '.3f')}; selection = opt "
            f"in {a['is_opt'][m].mean():.0%}; at ‖W‖_F = {cfg.stop_radius:g}"))
    return claims


# ============================================================================================================
# Regularization path on P3-local data
# ============================================================================================================


class P3LocalPathConfig(ExperimentConfig):
    """The regularization path θ̄(R) on P3-local data (n=6, T=8, d=10), W and (K, Q)."""

    n: int = 6
    T: int = 8
    d: int = 10
    trials: int = 20
    seed: int = 0
    radii: list[float] = Field(default_factory=lambda: [0.5, 1, 2, 5, 10, 20, 50, 100])
    tol: float = 1e-6
    max_iter: int = 5000
    restarts: int = 0
    kq_init_scale: float = 0.1


P3_PATH_QUICK = {"trials": 4, "radii": [1.0, 5.0, 20.0, 50.0]}


def run_p3_local_path(cfg: P3LocalPathConfig | dict, quick: bool = False) -> dict:
    """θ̄(R)/R on P3-local problems ``unit_gaussian(n, T, d, seed + j)``: the W path (Frobenius ball) against
    W^mm_α and W^mm_★,α, the (K, Q) path ((‖K‖² + ‖Q‖²)/2 ≤ R, i.e. ‖KQᵀ‖_* ≤ R) against the same two, α =
    the selection at the largest radius. P3 Thm. (regularization path → max-margin) for W; the nuclear-ball
    equivalence for (K, Q). Stationarity per radius at the stated ``tol`` (KKT residual, regpath docstring).
    """
    if isinstance(cfg, dict):
        cfg = P3LocalPathConfig.model_validate({**cfg, **(P3_PATH_QUICK if quick else {})})
    elif quick:
        cfg = cfg.model_copy(update=P3_PATH_QUICK)
    t_start = time.perf_counter()
    probs = [unit_gaussian(cfg.n, cfg.T, cfg.d, seed=cfg.seed + j) for j in range(cfg.trials)]
    path = RegularizationPath(tuple(cfg.radii), tol=cfg.tol, max_iter=cfg.max_iter, restarts=cfg.restarts)
    runs = {"W": train(probs, Model("combined"), path, init=Init("zero", seed=cfg.seed)),
            "KQ": train(probs, Model("factored"), path, init=Init("gaussian", cfg.kq_init_scale, seed=cfg.seed))}
    out: dict[str, np.ndarray] = {"radii": np.asarray(cfg.radii)}
    claims = []
    for name, res in runs.items():
        cf = np.full((cfg.trials, len(cfg.radii)), np.nan)
        cn = np.full_like(cf, np.nan)
        is_opt = np.zeros(cfg.trials, bool)
        for b, prob in enumerate(probs):
            alpha = res.selection[b, -1]
            f_, n_ = solve_svm(prob, alpha, "fro"), solve_svm(prob, alpha, "nuclear")
            for r in range(len(cfg.radii)):
                cf[b, r] = correlation(res.path[b, r], f_.solution)
                cn[b, r] = correlation(res.path[b, r], n_.solution)
            is_opt[b] = bool(np.all(alpha == prob.optimal_tokens().opt))
        out[f"{name}__corr_fro"], out[f"{name}__corr_nuc"] = cf, cn
        out[f"{name}__stationarity"] = res.metrics["stationarity"]
        out[f"{name}__iterations"] = res.metrics["iterations"]
        out[f"{name}__only_stationary"] = res.metrics["only_stationary"]
        out[f"{name}__W_path"] = res.path
        out[f"{name}__is_opt"] = is_opt
        out[f"{name}__seconds"] = np.asarray(res.compile_seconds + res.run_seconds)
        own, other = (cf, cn) if name == "W" else (cn, cf)
        stat = res.info["status"] == "stationary"
        claims.append(Claim(
            f"{name} path: θ̄(R)/R → {'W^mm_α (Frobenius)' if name == 'W' else 'W^mm_★,α (nuclear)'}",
            "P3: regularization path → max-margin direction", f"corr at R = {cfg.radii[-1]:g}: own "
            f"{spread(own[:, -1], '.4f')}, other {spread(other[:, -1], '.3f')}",
            "reproduced" if np.nanmean(own[:, -1]) > np.nanmean(other[:, -1]) else "differs",
            f"stationary (KKT residual ≤ {cfg.tol:g}) at {stat.mean():.0%} of (trial, radius); α = opt in "
            f"{is_opt.mean():.0%}; median iterations per radius {np.median(res.metrics['iterations']):.0f}"))
    return {"arrays": out, "claims": claims, "seconds": time.perf_counter() - t_start, "config": cfg.model_dump()}


# ============================================================================================================
# Catalog entries: resumable runs, tables, figures
# ============================================================================================================

_SCALARS_SKIP = ("W_final", "gap_l1_path", "gap_l2_path", "W_fro_path", "drift_path", "gap_fro_path",
                 "gap_nuc_path")


def _table(a: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({k: v for k, v in a.items() if k not in _SCALARS_SKIP and v.ndim == 1})


def run_diag(cfg: P2DiagConfig, ctx: Context) -> Outcome:
    """``attnsvm reproduce p2-diag``: one resumable chunk per problem seed (index j ↔ problem_seeds[j])."""
    from ..plots.p2 import diag_figure

    seeds = list(cfg.problem_seeds)

    def fn(idx: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[None] for k, v in diag_problem_rows(cfg, seeds[int(idx[0])]).items()}

    with task_client(cfg.workers) as client:
        raw = ctx.trials("problems", len(seeds), 1, fn, description="p2-diag: flows per problem seed",
                         client=client)
        a = {k: v.reshape(-1, *v.shape[2:]) for k, v in raw.items()}
        kc, kn, ka, kt = _diag_kkt_part(cfg, ctx, client)
    claims = _diag_claims(cfg, a)
    ctx.figure(diag_figure(a, cfg.reach_tol), "p2_diag")
    notes = [
        f"P2 publishes no experiments: this design is the project's own. Problems unit_gaussian(n={cfg.n}, "
        f"T={cfg.T}, d={cfg.d}, seed) for seeds {seeds}; per seed {cfg.trials} unbalanced, {cfg.trials} balanced "
        f"and {cfg.trials} combined-W runs; exponential loss summed over samples; gradient flow (Tsit5, rtol "
        f"{cfg.rtol:g}, atol {cfg.atol:g}) to ‖w‖_F = {cfg.stop_radius:g}; init scale {cfg.init_scale:g}.",
        f"a run reaches the ℓ1 solution when 1 − corr(w, w_ℓ1(α)) ≤ {cfg.reach_tol:g} at the reached selection α; "
        "the unbalanced runs that do not (below: stalled = near zero where w_ℓ1 is not, flipped = opposite "
        "sign, extra = nonzero where w_ℓ1 is zero):",
        *diag_notes(a, cfg.reach_tol),
    ]
    runs_table = _table(a)
    claims += kc
    notes += kn
    a.update({f"kkt_{k}": v for k, v in ka.items()})
    return Outcome(claims=claims, tables={"runs": runs_table, "kkt": kt}, arrays=a, notes=notes)


def _kkt_table(ka: dict[str, np.ndarray], cls: np.ndarray, keys: tuple[str, ...]) -> pd.DataFrame:
    """One row per run: its labels, the class, and every ε-KKT quantity at the last radius."""
    cols = {k: ka[k] for k in keys}
    cols["class"] = cls
    for k in ("W_fro", "eps", "stationarity", "complementarity", "discarded", "rank", "eps_param", "excess",
              "gap_corr", "is_opt"):
        cols[k] = ka[k][:, -1]
    return pd.DataFrame(cols)


def _diag_kkt_part(cfg: P2DiagConfig, ctx: Context, client=None):
    """The ε-KKT study of P2-diag (init scale × balancedness): one resumable chunk per (problem seed, scale,
    kind) cell (computed on ``client``'s workers when given); its claims, notes, arrays and per-run table, and
    its figure."""
    from ..plots.p2 import kkt_diag_figure
    from .p2_kkt import diag_classes, diag_kkt_claims, diag_study_cell

    cells = [(ps, sc, kind) for ps in cfg.problem_seeds for sc in cfg.kkt_scales for kind in cfg.kkt_kinds]
    kcfg = cfg.model_copy(update={"kkt_trials": cfg.kkt_trials or cfg.trials})

    def fn(idx: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[None] for k, v in diag_study_cell(kcfg, *cells[int(idx[0])]).items()}

    raw = ctx.trials("kkt", len(cells), 1, fn, description="p2-diag: ε-KKT by init scale and balancedness",
                     client=client)
    ka = {k: v.reshape(-1, *v.shape[2:]) for k, v in raw.items()}
    claims, notes = diag_kkt_claims(kcfg, ka)
    cls = diag_classes(kcfg, ka)
    ctx.figure(kkt_diag_figure(ka, cls, list(cfg.kkt_scales), cfg.kkt_tol), "p2_diag_kkt")
    notes.insert(0, f"ε-KKT study: flows continued to ‖w‖ = {', '.join(f'{r:g}' for r in cfg.kkt_radii)} "
                    f"(max_steps {cfg.kkt_max_steps} per segment), certified at each radius; a run with convex ε "
                    f"≤ {cfg.kkt_tol:g} at the last radius counts as reaching the ℓ1 SVM (attnsvm.experiments."
                    "p2_kkt docstring: the classes and the slopes).")
    table = _kkt_table(ka, cls, ("problem_seed", "scale", "kind", "trial"))
    for k in ("restricted_gap", "support", "g_off", "exponent_error", "exponent_measured", "exponent_predicted",
              "log10_escape"):
        table[k] = ka[k]
    return claims, notes, {**ka, "class": cls}, table


def run_full(cfg: P2FullConfig, ctx: Context) -> Outcome:
    """``attnsvm reproduce p2-full``: one resumable chunk per run family (FULL_FAMILIES)."""
    from ..plots.p2 import full_figure

    setup = full_setup(cfg)
    refs = full_references(setup["problem"])
    parts = []
    for fam in FULL_FAMILIES:
        n = len(setup["problems"][fam])
        parts.append(ctx.trials(fam, n, n, lambda idx, f=fam: full_family_rows(cfg, f, setup),
                                description=f"p2-full: {fam}"))
    a = _merge(parts)
    table = _table(a)
    claims = _full_claims(cfg, a, refs)
    ctx.figure(full_figure(a), "p2_full")
    a = {**a, **{f"ref_{k}": refs[k] for k in ("fro", "nuclear", "l1")}}
    if cfg.local_path:
        path_claims, path_arrays = _local_path_part(ctx)
        claims += path_claims
        a.update(path_arrays)
    notes = [
        f"P2 publishes no experiments: this design is the project's own. Aligned data: aligned_problem("
        f"n0={cfg.n0}, T={cfg.T}, d={cfg.d}, seed={cfg.problem_seed}) — Hadamard sign-symmetrized sequences "
        f"(n = {setup['problem'].n}, d = {setup['problem'].d}), whose Frobenius and nuclear SVMs are diagonal; "
        f"aligned inits are diagonal K₀, Q₀ (W₀). Flows (exponential loss, sum; Tsit5 rtol {cfg.rtol:g}, "
        f"atol {cfg.atol:g}) to ‖W‖_F = {cfg.stop_radius:g}; init scale {cfg.init_scale:g}.",
        "1 − corr is measured against the SVM solutions at each run's reached selection α (W^mm_α exact, "
        "W^mm_★,α by SCS).",
        "the regularization path on P3-local data (W and (K, Q) against the Frobenius and nuclear SVMs, "
        "attnsvm.experiments.p2.run_p3_local_path with its default P3LocalPathConfig; quick: P3_PATH_QUICK) is "
        + ("included above (the two 'path' claims)." if cfg.local_path else
           "not part of this run: set local_path = true to add its two claims (≈20 s more)."),
    ]
    kc, kn, ka, kt = _full_kkt_part(cfg, ctx, setup)
    claims += kc
    notes += kn
    a.update({f"kkt_{k}": v for k, v in ka.items()})
    return Outcome(claims=claims, tables={"runs": table, "kkt": kt}, arrays=a, notes=notes)


def _full_kkt_part(cfg: P2FullConfig, ctx: Context, setup: dict):
    """The ε-KKT study of P2-full on generic data ((K, Q) and W flows continued to ``kkt_radii``): one
    resumable chunk per family; claims, notes, arrays, per-run table and figure."""
    from ..plots.p2 import kkt_full_figure
    from .p2_kkt import FULL_KKT_FAMILIES, full_classes, full_kkt_claims, full_study_family

    # both families as one list of runs (the KQ-generic runs, then the W-generic ones), so that every chunk of
    # both is handed to the workers at once
    runs = [(fam, j) for fam in FULL_KKT_FAMILIES for j in range(len(setup["problems"][fam]))]

    def fn(idx: np.ndarray) -> dict[str, np.ndarray]:
        parts = []
        for fam in dict.fromkeys(runs[i][0] for i in idx):
            local = np.array([runs[i][1] for i in idx if runs[i][0] == fam])
            parts.append(full_study_family(cfg, fam, setup, local))
        return _merge(parts)

    per_family = max(len(setup["problems"][fam]) for fam in FULL_KKT_FAMILIES)
    with task_client(cfg.workers) as client:
        ka = ctx.trials("kkt", len(runs), -(-per_family // cfg.workers), fn, client=client,
                        description=f"p2-full: ε-KKT of {', '.join(FULL_KKT_FAMILIES)} to ‖W‖ = {cfg.kkt_radii[-1]:g}")
    claims, notes = full_kkt_claims(cfg, ka)
    cls = np.empty(ka["eps"].shape[0], dtype="<U20")
    per = {}
    for fam in FULL_KKT_FAMILIES:
        m = ka["family"] == fam
        per[fam] = full_classes(cfg, ka, fam)
        cls[m] = per[fam]
    ctx.figure(kkt_full_figure(ka, per), "p2_full_kkt")
    notes.insert(0, f"ε-KKT study on generic data: the KQ-generic and W-generic flows continued to ‖W‖_F = "
                    f"{', '.join(f'{r:g}' for r in cfg.kkt_radii)} (max_steps {cfg.kkt_max_steps} per segment), "
                    "certified at each radius against the nuclear ((K, Q)) / Frobenius (W) SVM at the reached "
                    "selection; classes as in attnsvm.experiments.p2_kkt.")
    return claims, notes, {**ka, "class": cls}, _kkt_table(ka, cls, ("family", "trial"))


_CLAIM_FIELDS = ("claim", "paper", "measured", "verdict", "note")


def _local_path_part(ctx: Context) -> tuple[list[Claim], dict[str, np.ndarray]]:
    """The regularization path on P3-local data as one resumable chunk: its arrays and its claims (kept as
    string arrays, so a rerun loads them instead of recomputing)."""

    def fn(idx: np.ndarray) -> dict[str, np.ndarray]:
        out = run_p3_local_path({}, quick=ctx.quick)
        part = {f"path_{k}": np.asarray(v)[None] for k, v in out["arrays"].items()}
        for f in _CLAIM_FIELDS:
            part[f"path_claim_{f}"] = np.asarray([[getattr(c, f) for c in out["claims"]]])
        return part

    raw = ctx.trials("p3-local-path", 1, 1, fn, description="p2-full: regularization path on P3-local data")
    claims = [Claim(*(str(raw[f"path_claim_{f}"][0, j]) for f in _CLAIM_FIELDS))
              for j in range(raw["path_claim_claim"].shape[1])]
    claims = [Claim(f"P3-local data, regularization {c.claim}", c.paper, c.measured, c.verdict, c.note)
              for c in claims]
    return claims, {k: v[0] for k, v in raw.items() if not k.startswith("path_claim_")}


register(Experiment(
    id="p2-diag", paper=PAPER,
    title="diagonal (k,q) flow → ℓ1 SVM, combined W → ℓ2; sign lock of balanced starts",
    config_cls=P2DiagConfig, run=run_diag, quick=P2_DIAG_QUICK))
register(Experiment(
    id="p2-full", paper=PAPER,
    title="aligned data: (K,Q) flow → nuclear SVM, W flow → Frobenius; random inits",
    config_cls=P2FullConfig, run=run_full, quick=P2_FULL_QUICK))


__all__ = ["DIAG_KINDS", "FULL_FAMILIES", "P2DiagConfig", "P2FullConfig", "P3LocalPathConfig", "aligned_problem",
           "diag_as_prompt", "diag_notes", "diag_problem_rows", "diag_rows", "full_family_rows", "full_references",
           "full_setup", "l1_kkt", "l1_sign_restricted", "run_diag", "run_full", "run_p2_diag", "run_p2_full",
           "run_p3_local_path"]

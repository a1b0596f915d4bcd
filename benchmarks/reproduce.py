"""Time `attnsvm reproduce` (full settings) against baselines measured in the same run.

For each experiment: our wall and CPU time (CPU includes worker processes). Baselines, measured here on a
sample and extrapolated to the experiment's workload (the sample sizes are printed):

* p3-local: the eager-PyTorch NGD loop of ``benchmarks/train_p3_local.py`` (one trial at a time, autograd,
  float64), per trial for W and (K, Q), times the 300 NGD trainings of the experiment (W, (K, Q), (K, Q) with
  ridge; the flow variants have no baseline);
* p3-rank: the loop-built cvxpy Att-SVM of ``benchmarks/svm.py`` (Clarabel for Frobenius, SCS eps 1e−9 for
  nuclear, as public code does), per instance on a sample of the sweep's settings, times the sweep's
  instance count for each norm;
* the authors' notebooks as measured on this machine and quoted in the reproduce issue (≈250 CPU-s
  P3-local, ≈400 CPU-s P3-rank, ≈50 CPU-s the four P1 notebooks, ≈10 CPU-hours P3-multitoken, extrapolated):
  printed for reference, not measured here.

Run: ``python benchmarks/reproduce.py`` (all experiments, ≈8 min on 2 cores) or ``--ids p3-local p3-rank``;
``--baseline-trials`` / ``--baseline-instances`` set the baseline samples. Needs the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import attnsvm  # noqa: E402, F401
from attnsvm.experiments import IDS, get  # noqa: E402
from attnsvm.experiments.runner import run_experiment  # noqa: E402
from attnsvm.problem import unit_gaussian  # noqa: E402
from svm import loop_cvxpy  # noqa: E402
from train_p3_local import torch_trial  # noqa: E402

QUOTED_CPU_S = {"p3-local": 250.0, "p3-rank": 400.0, "p1": 50.0, "p3-multitoken": 36000.0}


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def ours(exp_id: str, root: Path) -> tuple[float, float]:
    c0, t0 = cpu_seconds(), time.perf_counter()
    run_experiment(exp_id, root / exp_id)
    return time.perf_counter() - t0, cpu_seconds() - c0


def p3_local_baseline(n_trials: int) -> tuple[float, str]:
    cfg = get("p3-local").default_config()
    per = []
    rng = np.random.default_rng(0)
    for name in ("W", "(K,Q)"):
        times = []
        for j in range(n_trials):
            p = unit_gaussian(cfg.n, cfg.T, cfg.d, seed=cfg.seed + j)
            if name == "W":
                init = {"W": rng.uniform(-1, 1, (cfg.d, cfg.d)) / np.sqrt(cfg.d)}
            else:
                init = {"K": rng.uniform(-1, 1, (cfg.d, cfg.d)) / np.sqrt(cfg.d),
                        "Q": rng.uniform(-1, 1, (cfg.d, cfg.d)) / np.sqrt(cfg.d)}
            t0 = time.perf_counter()
            torch_trial(p.X, p.Y, p.Z, p.v, init, cfg.steps, "global" if name == "W" else "block")
            times.append(time.perf_counter() - t0)
        per.append(float(np.mean(times)))
    # the experiment trains W once and (K, Q) twice (without and with the ridge) on every problem
    total = cfg.trials * (per[0] + 2 * per[1])
    return total, f"eager PyTorch, {n_trials} trials each of W / (K,Q) timed: {per[0]:.2f} s / {per[1]:.2f} s per trial"


def p3_rank_baseline(n_instances: int) -> tuple[float, str]:
    cfg = get("p3-rank").default_config()
    settings = [(n, cfg.base_T, d) for n in cfg.ns for d in cfg.ds] + \
               [(cfg.base_n, T, d) for T in cfg.Ts for d in cfg.ds]
    rng = np.random.default_rng(1)
    sample = [settings[i] for i in rng.choice(len(settings), size=n_instances, replace=True)]
    per_norm = {"fro": [], "nuclear": []}
    for j, (n, T, d) in enumerate(sample):
        p = unit_gaussian(n, T, d, seed=10_000 + j)
        sel = p.optimal_tokens().opt
        for norm, solver, opts in (("fro", "CLARABEL", {}), ("nuclear", "SCS", {"eps": 1e-9})):
            t0 = time.perf_counter()
            loop_cvxpy(p, sel, norm, solver, **opts)
            per_norm[norm].append(time.perf_counter() - t0)
    count = len(settings) * cfg.trials
    total = count * (np.mean(per_norm["fro"]) + np.mean(per_norm["nuclear"]))
    fro, nuc = np.mean(per_norm["fro"]), np.mean(per_norm["nuclear"])
    return float(total), (f"cvxpy built in loops, {n_instances} sampled instances: fro {fro:.3f} s, "
                          f"nuclear {nuc:.3f} s per instance × {count} instances")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ids", nargs="*", default=list(IDS))
    ap.add_argument("--baseline-trials", type=int, default=3)
    ap.add_argument("--baseline-instances", type=int, default=12)
    args = ap.parse_args()
    # one thread: with two, the eager baseline's tiny tensors run 5–10× slower on 2 cores (train_p3_local.py)
    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for exp_id in args.ids:
            wall, cpu = ours(exp_id, Path(tmp))
            base, how = None, ""
            if exp_id == "p3-local":
                base, how = p3_local_baseline(args.baseline_trials)
            elif exp_id == "p3-rank":
                base, how = p3_rank_baseline(args.baseline_instances)
            rows.append((exp_id, wall, cpu, base, how))
            extra = f"; baseline ≈ {base:.0f} s ({how})" if base else ""
            print(f"{exp_id}: {wall:.1f} s wall, {cpu:.1f} s CPU{extra}", flush=True)
    print("\n| experiment | attnsvm wall (s) | attnsvm CPU (s) | baseline measured here (s, extrapolated) | ratio "
          "| authors' notebook, quoted (CPU-s) |")
    print("|---|---|---|---|---|---|")
    for exp_id, wall, cpu, base, _ in rows:
        quoted = QUOTED_CPU_S.get(exp_id, QUOTED_CPU_S["p1"] / 4 if exp_id.startswith("p1") else None)
        print(f"| {exp_id} | {wall:.1f} | {cpu:.1f} | {base:.0f} | {base / wall:.0f}× | "
              f"{f'{quoted:.0f}' if quoted else '—'} |" if base else
              f"| {exp_id} | {wall:.1f} | {cpu:.1f} | — | — | {f'{quoted:.0f}' if quoted else '—'} |")
    print(f"\ntotal: {sum(r[1] for r in rows):.1f} s wall, {sum(r[2] for r in rows):.1f} s CPU")
    for exp_id, *_, how in rows:
        if how:
            print(f"- {exp_id}: {how}")


if __name__ == "__main__":
    main()

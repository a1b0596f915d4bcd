"""Benchmark: the ℓp Att-SVM and the md-local reproduction against the public code's approach, in one run.

1. ℓp Att-SVM (p ∈ {1.75, 3, ∞}) on md-local-size instances (n = 6, T = 8, d = 10, unit Gaussian, the
   optimal selection): ``attnsvm.svm.solve_svm(problem, sel, "lp:P")`` (SCS power cones + Newton polish;
   HiGHS for ∞) against cvxpy with the constraints appended one by one in Python loops and
   ``cp.pnorm(W, p)``, solved by cvxpy's default solver (what ``synthetic-data/tools/att_svm.py`` does).
   Both times include building the problem; agreement (relative value and solution distance) and our
   certificate are printed.
2. md-local: ``attnsvm reproduce md-local`` at its full settings (100 seeds × p ∈ {1.75, 2, 3} with
   1500 / 2000 / 20 000 steps, every ℓq-AttSVM at the reached selection) against the public code's
   per-seed approach: eager PyTorch float64, one seed at a time, the normalized ℓp mirror step of their
   optimizer (g/(‖g‖_q + eps)), every iterate stored, then one loop-built cvxpy ℓp-AttSVM per seed. The
   baseline is timed on ``--baseline-seeds`` seeds per p, each for at most ``--baseline-steps`` steps (an
   eager step costs the same at every step), and extrapolated to the full steps and 100 seeds; it omits the
   authors' per-step logistic-probability loop and their correlation script (so it is a lower bound of
   their time), and it solves one SVM per seed where md-local solves three.

Run: ``python benchmarks/md.py`` (about 10 minutes on 2 cores) or ``--quick``. Needs the ``bench`` extra
(torch, cvxpy). Prints the machine load before and after, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import cvxpy as cp
import numpy as np

from attnsvm.experiments import get
from attnsvm.experiments.runner import run_experiment
from attnsvm.problem import AttentionProblem, unit_gaussian
from attnsvm.svm import lp_norm, lp_norm_name, solve_svm


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def loop_cvxpy_lp(problem: AttentionProblem, sel: np.ndarray, p: float) -> tuple[str, np.ndarray, float]:
    """The public code's approach: one cvxpy constraint per (i, t) in Python loops, cp.pnorm, default solver."""
    d = problem.d
    W = cp.Variable((d, d))
    cons = []
    for i in range(problem.n):
        for t in range(problem.T):
            if t == sel[i]:
                continue
            cons.append((problem.X[i, t] - problem.X[i, sel[i]]) @ W @ problem.queries[i] <= -1)
    prob = cp.Problem(cp.Minimize(cp.pnorm(W, p)), cons)
    prob.solve()
    return prob.status, (W.value if W.value is not None else np.full((d, d), np.nan)), float(prob.value)


def svm_benchmark(instances: int) -> None:
    print(f"\n1. lp Att-SVM, {instances} instances (n, T, d) = (6, 8, 10) per p; {load()}")
    print(f"{'p':>5} {'attnsvm ms':>11} {'cvxpy loops ms':>15} {'ratio':>7} {'value diff':>11} {'sol diff':>9} "
          f"{'our worst cert':>15}")
    for p in (1.75, 3.0, np.inf):
        ours, theirs, dval, dsol, cert = [], [], [], [], []
        for k in range(instances):
            pr = unit_gaussian(6, 8, 10, seed=10_000 + k)
            sel = pr.optimal_tokens().opt
            t0 = time.perf_counter()
            r = solve_svm(pr, sel, lp_norm_name(p))
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _, Wc, vc = loop_cvxpy_lp(pr, sel, p)
            theirs.append(time.perf_counter() - t0)
            dval.append(abs(r.value - vc) / vc)
            if np.isfinite(p):  # ℓ∞ minimizers are not unique: only the values are comparable
                dsol.append(np.linalg.norm(r.W - Wc) / np.linalg.norm(Wc))
            c = r.certificate
            cert.append(max(c.primal, c.dual / r.value, abs(c.gap) / r.value))
        mo, mt = 1e3 * np.mean(ours), 1e3 * np.mean(theirs)
        ds = f"{max(dsol):.1e}" if dsol else "n/a"
        print(f"{p:>5g} {mo:>11.1f} {mt:>15.1f} {mt / mo:>6.1f}× {max(dval):>11.1e} {ds:>9} {max(cert):>15.1e}")


def torch_md_seed(problem: AttentionProblem, W0: np.ndarray, steps: int, p: float, lr: float = 0.1,
                  eps: float = 2.220446049250313e-16) -> np.ndarray:
    """One seed the public code's way: eager torch float64, normalized ℓp mirror step, every iterate kept."""
    import torch

    torch.set_num_threads(1)  # tiny tensors: one thread is fastest (and fair on a shared machine)
    X, Y, Z, v = (torch.tensor(a, dtype=torch.float64) for a in (problem.X, problem.Y, problem.queries, problem.v))
    W = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    q = p / (p - 1)
    Ws = torch.zeros(steps + 1, *W0.shape, dtype=torch.float64)
    Ws[0] = W.detach()
    for it in range(steps):
        W.grad = None
        a = torch.einsum("itd,de,ie->it", X, W, Z)
        f = torch.einsum("it,itd->id", torch.softmax(a, dim=1), X) @ v
        loss = torch.log(1 + torch.exp(-Y * f)).mean()
        loss.backward()
        with torch.no_grad():
            g = W.grad
            phi = torch.sign(W) * W.abs() ** (p - 1) - lr * g / (g.norm(q) + eps)
            W.copy_(torch.sign(phi) * phi.abs() ** (1 / (p - 1)))
        Ws[it + 1] = W.detach()
    return Ws.numpy()


def md_local_benchmark(baseline_seeds: int, baseline_steps: int, quick: bool, out: Path | None = None) -> None:
    cfg = get("md-local").configure(quick=quick)
    print(f"\n2. md-local ({'quick' if quick else 'full'} settings: {cfg.trials} seeds, p {cfg.ps}, steps {cfg.steps})")
    print(f"   before: {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        c0, t0 = cpu_seconds(), time.perf_counter()
        run_experiment("md-local", out if out is not None else Path(tmp), quick=quick)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    print(f"   attnsvm reproduce md-local: wall {wall:.1f} s, CPU {cpu:.1f} s; after: {load()}")
    total_wall = 0.0
    for p, steps in zip(cfg.ps, cfg.steps, strict=True):
        per_step, per_svm = [], []
        k = min(steps, baseline_steps)
        for j in range(baseline_seeds):
            pr = unit_gaussian(cfg.n, cfg.T, cfg.d, seed=cfg.seed + j)
            W0 = np.random.default_rng([cfg.seed, j, 2]).standard_normal((cfg.d, cfg.d)) * cfg.init_std
            t1 = time.perf_counter()
            Ws = torch_md_seed(pr, W0, k, p, cfg.lr)
            per_step.append((time.perf_counter() - t1) / k)
            a = np.einsum("itd,de,ie->it", pr.X, Ws[-1], pr.queries)
            t1 = time.perf_counter()
            loop_cvxpy_lp(pr, a.argmax(axis=1), p)
            per_svm.append(time.perf_counter() - t1)
        per_seed = float(np.mean(per_step)) * steps + float(np.mean(per_svm))
        est = per_seed * cfg.trials
        total_wall += est
        print(f"   baseline p = {p:g}: {1e3 * np.mean(per_step):.2f} ms per eager step ({k} steps × "
              f"{baseline_seeds} seeds timed), cvxpy SVM {np.mean(per_svm):.2f} s: {per_seed:.1f} s per seed of "
              f"{steps} steps, ×{cfg.trials} seeds ≈ {est:.0f} s (‖W‖_p after {k} steps {lp_norm(Ws[-1], p):.3g})")
    print(f"   baseline total ≈ {total_wall:.0f} s (sequential, one seed at a time) vs attnsvm {wall:.1f} s wall: "
          f"ratio {total_wall / wall:.1f}×; {load()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--instances", type=int, default=None, help="SVM instances per p (default 20, quick 3)")
    ap.add_argument("--baseline-seeds", type=int, default=None, help="torch seeds timed per p (default 3, quick 1)")
    ap.add_argument("--baseline-steps", type=int, default=1000, help="eager steps timed per seed (default 1000)")
    ap.add_argument("--out", type=Path, default=None, help="keep the md-local run (report, figures) in this folder")
    args = ap.parse_args()
    print(f"attnsvm benchmark md; {load()}")
    svm_benchmark(args.instances or (3 if args.quick else 20))
    md_local_benchmark(args.baseline_seeds or (1 if args.quick else 3), args.baseline_steps, args.quick, args.out)


if __name__ == "__main__":
    main()

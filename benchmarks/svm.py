"""Benchmark: attnsvm's Att-SVM solvers against cvxpy with the constraints built in Python loops.

The baseline is what public code does: one cvxpy constraint `(x_iα − x_it) @ W @ z_i >= 1` per (i, t),
then `problem.solve(...)`. Both sides solve the same instances (P3's unit-Gaussian family) in the same run;
times are per instance and include building the constraints.

* Frobenius: attnsvm exact NNLS (batched with `solve_svm_batch`, and single `solve_svm`) vs cvxpy's
  default (Clarabel) on `norm(W, 'fro')`.
* nuclear: attnsvm SCS on the lifted sparse SDP (eps 1e-9) vs cvxpy `normNuc` with SCS at the same eps
  ("same accuracy"); accuracy = relative distance between the two solutions and attnsvm's certified gap.
* ℓ1 of the diagonal: attnsvm HiGHS LP vs cvxpy `norm1(w)` (Clarabel). Unit-Gaussian instances with
  d ≤ n(T−1) are almost always infeasible for a diagonal W, so a wider size (6, 8, 48) is added.

Run: `python benchmarks/svm.py` (about 5 minutes on 2 cores), `--quick` for a smoke run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cvxpy as cp
import numpy as np

from attnsvm.problem import AttentionProblem, unit_gaussian
from attnsvm.svm import norm_value, solve_svm, solve_svm_batch


def loop_cvxpy(problem: AttentionProblem, sel: np.ndarray, norm: str, solver: str, **opts) -> tuple[str, np.ndarray]:
    """The baseline: constraints appended one by one in Python loops, then cvxpy."""
    d = problem.d
    W = cp.Variable(d) if norm == "l1" else cp.Variable((d, d))
    cons = []
    for i in range(problem.n):
        for t in range(problem.T):
            if t == sel[i]:
                continue
            diff = problem.X[i, sel[i]] - problem.X[i, t]
            if norm == "l1":
                cons.append((diff * problem.queries[i]) @ W >= 1)
            else:
                cons.append(diff @ W @ problem.queries[i] >= 1)
    obj = {"fro": lambda: cp.norm(W, "fro"), "nuclear": lambda: cp.normNuc(W), "l1": lambda: cp.norm1(W)}[norm]()
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver=solver, **opts)
    if W.value is None:
        return prob.status, np.full((d, d), np.nan)
    return prob.status, np.diag(W.value) if norm == "l1" else W.value


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def rel(a: np.ndarray, b: np.ndarray) -> float:
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def bench(size: tuple[int, int, int], norm: str, n_ours: int, n_base: int) -> dict:
    problems = [unit_gaussian(*size, seed=s) for s in range(max(n_ours, n_base))]
    sels = [p.optimal_tokens().opt for p in problems]
    row: dict = {"size": size, "norm": norm}
    # ours
    ours = []
    if norm == "fro":
        solve_svm_batch(problems[:2], "opt", "fro")  # warm-up (imports)
        tb, batch = timed(lambda: solve_svm_batch(problems[:n_ours], "opt", "fro"))
        row["ours_batch"] = tb / n_ours
    solve_svm(problems[0], "opt", norm)  # warm-up
    times = []
    for p in problems[:n_base]:
        t, r = timed(lambda p=p: solve_svm(p, "opt", norm))
        times.append(t)
        ours.append(r)
    row["ours"] = statistics.median(times)
    # baseline, same instances
    solver, opts = {"fro": ("CLARABEL", {}), "l1": ("CLARABEL", {}),
                    "nuclear": ("SCS", {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000})}[norm]
    loop_cvxpy(unit_gaussian(2, 3, 3, seed=99), np.zeros(2, dtype=int), norm, solver, **opts)  # warm-up
    btimes, dev, dval = [], [], []
    for p, s, r in zip(problems[:n_base], sels[:n_base], ours, strict=True):
        t, (st, Wb) = timed(lambda p=p, s=s: loop_cvxpy(p, s, norm, solver, **opts))
        btimes.append(t)
        if r.status == "optimal" and st == "optimal":
            dev.append(rel(r.solution, Wb))
            dval.append(abs(r.value - norm_value(Wb, norm)) / r.value)
    row["base"] = statistics.median(btimes)
    row["dev"] = max(dev) if dev else float("nan")
    row["dval"] = max(dval) if dval else float("nan")
    row["gap"] = max((r.certificate.gap / r.value for r in ours if r.status == "optimal"), default=float("nan"))
    row["feasible"] = f"{sum(r.status == 'optimal' for r in ours)}/{len(ours)}"
    row["baseline"] = f"cvxpy loops + {solver}" + (" eps 1e-9" if norm == "nuclear" else "")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few instances, small sizes only")
    args = ap.parse_args()
    plan = [((6, 8, 10), "fro", 200, 10), ((50, 20, 32), "fro", 3, 2),
            ((6, 8, 10), "nuclear", 10, 10), ((50, 20, 32), "nuclear", 2, 2),
            ((6, 8, 10), "l1", 10, 10), ((6, 8, 48), "l1", 10, 10), ((50, 20, 32), "l1", 2, 2)]
    if args.quick:
        plan = [(s, nm, min(a, 5), min(b, 2)) for s, nm, a, b in plan if s[0] <= 6]
    header = ("| (n,T,d) | norm | attnsvm / instance | batched / instance | baseline / instance | speed-up | "
              "baseline | max rel. diff. W | rel. diff. value | attnsvm rel. gap | feasible |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for size, norm, n_ours, n_base in plan:
        r = bench(size, norm, n_ours, n_base)
        best = min(r.get("ours_batch", r["ours"]), r["ours"])
        batched = f"{r['ours_batch'] * 1e3:.3g} ms" if "ours_batch" in r else "—"
        print(f"| {size} | {norm} | {r['ours'] * 1e3:.3g} ms | {batched} | {r['base'] * 1e3:.4g} ms | "
              f"{r['base'] / best:.0f}× | {r['baseline']} | {r['dev']:.1e} | {r['dval']:.1e} | {r['gap']:.1e} | "
              f"{r['feasible']} |", flush=True)


if __name__ == "__main__":
    main()

"""Benchmark: time to reach ‖W‖_F = 100 on P3-local size (n=6, T=8, d=10, 100 trials), W = combined model,
logistic loss, W₀ = 0 — gradient flow (attnsvm.flow) vs normalized GD vs plain GD.

Run:  /work/venv/bin/python benchmarks/flow.py [--trials 100] [--radius 100]

Gradient flow stops at ‖W‖_F = R by an event; NGD (η = 0.1) needs at least R/η steps since each step moves
‖W‖ by at most η; plain GD moves along the flow in physical time, where ‖W‖ grows like log t, so it is given
a step budget and the norm it reaches is printed. Compile and run times are separate.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import attnsvm  # noqa: F401  (float64)
from attnsvm.models import Model
from attnsvm.problem import unit_gaussian
from attnsvm.training import GD, NGD, Descent, Flow, Init, Radius, Save, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--radius", type=float, default=100.0)
    ap.add_argument("--gd-steps", type=int, default=20_000)
    args = ap.parse_args()
    probs = [unit_gaussian(6, 8, 10, seed=s) for s in range(args.trials)]
    model = Model("combined")
    print(f"P3-local size, {args.trials} trials, target ‖W‖_F = {args.radius:g}")
    for rtol in (1e-6, 1e-8):
        for rep in range(2):  # the second call reuses the compiled program
            t0 = time.perf_counter()
            res = train(probs, model, Flow(rtol=rtol, atol=rtol * 1e-2, error_estimate=False), stop=Radius(args.radius),
                        init=Init("zero"), save=Save(records=10))
            wall = time.perf_counter() - t0
            stops, counts = np.unique(res.stop_reason, return_counts=True)
            print(f"flow rtol={rtol:g} call {rep + 1}: wall {wall:.2f} s (compile {res.compile_seconds:.2f} s, "
                  f"two integration passes {res.run_seconds:.2f} s); accepted steps "
                  f"{int(np.median(res.info['accepted_steps']))} median, {int(res.info['accepted_steps'].max())} "
                  f"max; stops {dict(zip(stops.tolist(), counts.tolist(), strict=True))}; ‖W‖_F "
                  f"{res.metrics['W_fro'][:, -1].min():.6g}…{res.metrics['W_fro'][:, -1].max():.6g}; "
                  f"log t at the stop {np.median(res.metrics['log_t'][:, -1]):.1f} median")
    steps = int(np.ceil(args.radius / 0.1))
    steps += (-steps) % 100
    for rep in range(2):
        res = train(probs, model, Descent(NGD(lr=0.1), steps), save=Save(every=100))
        print(f"ngd η=0.1, {steps} steps call {rep + 1}: compile {res.compile_seconds:.2f} s, run "
              f"{res.run_seconds:.2f} s; ‖W‖_F {np.median(res.metrics['W_fro'][:, -1]):.4g} median")
    res = train(probs, model, Descent(GD(lr=1.0), args.gd_steps), save=Save(every=args.gd_steps // 10))
    print(f"gd η=1, {args.gd_steps} steps: compile {res.compile_seconds:.2f} s, run {res.run_seconds:.2f} s; "
          f"‖W‖_F reached {np.median(res.metrics['W_fro'][:, -1]):.4g} median (physical time {args.gd_steps})")


if __name__ == "__main__":
    main()

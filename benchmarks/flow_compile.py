"""Benchmark: cold compile time of the gradient flow's programs (attnsvm.flow), per program and phase.

A flow run (``attnsvm.train(..., Flow(...))``) builds three compiled programs: ``_start_values`` (log‖∇L‖ and
the stop values at the start, for the input checks), ``_integrate`` (the vmapped diffrax solve: Tsit5, PID
controller, the stop event, the records in arc length) and ``_records`` (the recorded quantities at every
saved state). This script runs real flows and, for every program, times apart

* **trace + lower**: tracing the Python function to a jaxpr and lowering it to StableHLO;
* **compile**: XLA's compilation of that module (HLO passes, code generation);

in wall time and in CPU time of this process (the machine is shared: CPU time moves less with the load,
while XLA's code generation uses more than one thread, so CPU can exceed wall). Every program is compiled
cold: JAX's persistent cache and attnsvm's program cache are off in this script and JAX's in-memory caches
are cleared before every flow. **run** is the time of the two integration passes (``Run.run_seconds``).

Settings (one flow program each):

* ``p3-W``, ``p3-KQ`` — P3-local size: n=6, T=8, d=10, 20 trials (one problem per trial), combined W and
  factored (K, Q), stops saturation E ≤ 1e−8 or ‖W‖_F = 100, rtol = atol = 1e−6, 50 records with the path
  (the flows of ``attnsvm reproduce p3-local``);
* ``p2-KQ``, ``p2-W`` — P2-full size: the aligned problem of src/attnsvm/configs/p2-full.toml (n = 2·n0·d = 32
  sequences, T = 3, d + 1 = 9), 20 trials on one data set, ‖W‖_F = 1000, rtol 1e−8, atol 1e−10, 20 records.

``--variants`` also times the levers that were measured and not kept, on the ``_integrate`` program (same
process, alternating with the current code, and the largest difference of the results against it):
``direct`` (``adjoint=diffrax.DirectAdjoint()``), ``checkpoints1``
(``RecursiveCheckpointAdjoint(checkpoints=1)``), ``xla-O1`` / ``xla-O0`` (XLA's backend optimization level),
``fusion-emitters`` (XLA:CPU's MLIR fusion emitters, JAX's default, which ``attnsvm.programs.XLA_OPTIONS``
turns off). Every program is compiled with ``XLA_OPTIONS`` and its own options, as attnsvm compiles it.

Run: ``python benchmarks/flow_compile.py`` (about 1 minute per round on 2 cores); ``--settings p3-W,p2-KQ``,
``--repeats N`` (rounds), ``--variants`` (all) or ``--variants xla-O0,fusion-emitters``. To compare with
another version of the code (the before/after table in docs/benchmarks.md), run this script with
``PYTHONPATH=<that tree>/src``, alternating processes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext

import numpy as np

import attnsvm
from attnsvm.config import read_toml
from attnsvm.experiments.p2 import P2FullConfig, full_setup
from attnsvm.models import Model
from attnsvm.problem import unit_gaussian
from attnsvm.programs import XLA_OPTIONS
from attnsvm.training import Flow, Init, Radius, Saturation, Save, train

SETTINGS = ("p3-W", "p3-KQ", "p2-KQ", "p2-W")
P2_TOML = os.path.join(os.path.dirname(attnsvm.__file__), "configs", "p2-full.toml")


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def setting(name: str) -> dict:
    """The arguments of ``train`` for one setting (module docstring)."""
    if name.startswith("p3"):
        d, B = 10, 20
        rng = np.random.default_rng(0)
        u = lambda: rng.uniform(-1.0, 1.0, (B, d, d)) / np.sqrt(d)  # noqa: E731 (P3-local's "notebook" init)
        combined = name == "p3-W"
        return dict(problems=[unit_gaussian(6, 8, d, seed=j) for j in range(B)],
                    model=Model("combined" if combined else "factored"),
                    flow=Flow(rtol=1e-6, atol=1e-6, error_estimate=False),
                    stop=(Saturation(1e-8), Radius(100.0)),
                    init=Init(given={"W": u()} if combined else {"K": u(), "Q": u()}),
                    save=Save(records=50, path=True), trials=None)
    cfg = P2FullConfig.model_validate(read_toml(P2_TOML))
    setup = full_setup(cfg)
    family = {"p2-KQ": "KQ-aligned", "p2-W": "W-aligned"}[name]
    return dict(problems=setup["problems"][family][0], model=setup["models"][family],
                flow=Flow(rtol=cfg.rtol, atol=cfg.atol, error_estimate=False), stop=Radius(cfg.stop_radius),
                init=Init(given=setup["inits"][family]), save=Save(records=cfg.n_records, path=True),
                trials=len(setup["problems"][family]))


class Timer:
    """Stands in for ``attnsvm.programs.compile_program`` in attnsvm.flow: compiles cold, timing each phase."""

    def __init__(self, compiler_options: dict | None = None):
        self.rows: dict[str, dict[str, float]] = {}
        self.options = compiler_options

    def __call__(self, fn, args, static, *, trace_context=None, compiler_options=None):
        with (trace_context or nullcontext)():
            w0, c0 = time.perf_counter(), time.process_time()
            lowered = fn.lower(*args, **static)
            w1, c1 = time.perf_counter(), time.process_time()
        options = {**XLA_OPTIONS, **(compiler_options or {})}  # as attnsvm.programs.compile_program
        if fn.__name__ == "_integrate" and self.options:
            options.update(self.options)
        compiled = lowered.compile(compiler_options=options)
        w2, c2 = time.perf_counter(), time.process_time()
        self.rows[fn.__name__] = {"trace_wall": w1 - w0, "trace_cpu": c1 - c0, "compile_wall": w2 - w1,
                                  "compile_cpu": c2 - c1}
        return compiled


def run_once(name: str, variant: str) -> tuple[dict, object]:
    """One cold flow of ``name`` under ``variant``: per-program phase times and the Run."""
    import diffrax
    import jax

    from attnsvm import dynamics as D
    from attnsvm import flow as F

    options = {"xla-O1": {"xla_backend_optimization_level": 1},
               "xla-O0": {"xla_backend_optimization_level": 0},
               "fusion-emitters": {"xla_cpu_use_fusion_emitters": True}}.get(variant)
    adjoint = {"direct": lambda: diffrax.DirectAdjoint(),
               "checkpoints1": lambda: diffrax.RecursiveCheckpointAdjoint(checkpoints=1)}.get(variant)
    timer = Timer(options)
    real_compile, real_dyn, real_solve = F.compile_program, D.compile_program, diffrax.diffeqsolve

    def solve(*a, **k):  # the adjoint variants: the same solve with another adjoint (loop kind)
        return real_solve(*a, adjoint=adjoint(), **k)

    jax.clear_caches()
    F.compile_program = D.compile_program = timer  # the records program is compiled in attnsvm.dynamics
    if adjoint is not None:
        diffrax.diffeqsolve = solve
    try:
        kw = setting(name)
        w0 = time.perf_counter()
        res = train(kw.pop("problems"), kw.pop("model"), kw.pop("flow"), **kw)
        wall = time.perf_counter() - w0
    finally:
        F.compile_program, D.compile_program, diffrax.diffeqsolve = real_compile, real_dyn, real_solve
    return {"programs": timer.rows, "run": res.run_seconds, "wall": wall,
            "steps": int(np.max(res.info["accepted_steps"]))}, res


def max_diff(a, b) -> float:
    """Largest |difference| between two runs: final parameters, records and σ at the stop."""
    out = [np.max(np.abs(a.W - b.W)), np.max(np.abs(a.info["sigma_end"] - b.info["sigma_end"]))]
    for k in ("W_fro", "solver_steps", "log_t"):
        x, y = a.metrics[k], b.metrics[k]
        with np.errstate(invalid="ignore"):  # equal infinities (log t = −inf at σ = 0) are no difference
            out.append(np.max(np.where(x == y, 0.0, np.abs(x - y))))
    return float(max(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--repeats", type=int, default=1, help="alternating rounds over settings and variants")
    ap.add_argument("--variants", nargs="?", const="all", default="",
                    help="also time the levers not kept (module docstring): all, or a comma-separated list")
    args = ap.parse_args()
    os.environ["ATTNSVM_NO_CACHE"] = "1"  # belt and braces: nothing here turns the persistent cache on
    names = args.settings.split(",")
    levers = ["direct", "checkpoints1", "xla-O1", "xla-O0", "fusion-emitters"]
    variants = ["current"] + (levers if args.variants == "all" else [v for v in args.variants.split(",") if v])
    print(f"attnsvm benchmark flow_compile; python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
          f"load at start {load()}")
    print("times in s, cold; trace = trace + lower; cpu = CPU time of this process; run = two integration passes; "
          "load = 1/5/15-min load average after the flow")
    head = (f"{'setting':7s} {'variant':12s} {'program':13s} {'trace wall':>10s} {'cpu':>6s} {'compile wall':>12s} "
            f"{'cpu':>6s} {'run':>6s} {'steps':>6s} {'max|Δ|':>8s}  load")
    print(head)
    totals: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for name in names:
            ref = None
            for v in variants:
                t, res = run_once(name, v)
                ref = res if v == "current" else ref
                diff = max_diff(res, ref) if ref is not None else float("nan")
                ld = load()
                for prog, r in t["programs"].items():
                    main_prog = prog == "_integrate"  # run, steps and the difference belong to the solve
                    run = f"{t['run']:6.2f}" if main_prog else ""
                    steps = str(t["steps"]) if main_prog else ""
                    delta = f"{diff:8.1e}" if main_prog else ""
                    print(f"{name:7s} {v:12s} {prog:13s} {r['trace_wall']:10.2f} {r['trace_cpu']:6.2f} "
                          f"{r['compile_wall']:12.2f} {r['compile_cpu']:6.2f} {run:>6s} {steps:>6s} {delta:>8s}  {ld}",
                          flush=True)
                total = sum(r["trace_wall"] + r["compile_wall"] for r in t["programs"].values())
                total_cpu = sum(r["trace_cpu"] + r["compile_cpu"] for r in t["programs"].values())
                totals.setdefault((name, v), []).append((total, total_cpu, t["run"], t["wall"]))
                print(f"{name:7s} {v:12s} {'all three':13s} trace+compile {total:6.2f} s wall, {total_cpu:6.2f} s "
                      f"cpu; train() wall {t['wall']:.2f} s  {ld}", flush=True)
    print("\nsummary (median over rounds): trace+compile of the three programs, wall / cpu; run; train() wall")
    for (name, v), rows in totals.items():
        med = np.median(np.array(rows), axis=0)
        print(f"{name:7s} {v:12s} {med[0]:6.2f} / {med[1]:6.2f} s   run {med[2]:5.2f} s   train {med[3]:6.2f} s")
    print(f"load at end {load()}")


if __name__ == "__main__":
    main()

"""Benchmark: attnsvm's batched training engine against an eager PyTorch loop, on P3-local.

P3-local (docs/reproductions/p3-local.md): n=6 sequences, T=8 tokens, d=10, cross-attention, unit-norm
Gaussian x, z, v, random labels ±1; trial j uses the problem of data seed j. Normalized GD with η = 0.1 for
2000 steps, float64,
logistic loss (mean), for two parameterizations:

* W (combined), W₀ = 0, one global norm: W ← W − η ∇L/‖∇L‖;
* (K, Q) (factored, m = d), K₀ = 0.1·N(0, I), Q₀ = 0, each block normalized by its own norm
  (K ← K − η ∇_K L/‖∇_K L‖, same for Q), as P3's code does. A block whose gradient is exactly zero is
  not moved (∇_K L = (∇_W L) Q is zero at step 0 because Q₀ = 0).

attnsvm: one call of :func:`attnsvm.train` runs all trials as one compiled program (stable
log-space gradient, records every ``--record-every`` steps). Its time is end to end (data, compile, run,
records, back to NumPy); the compile and run times are printed apart (they overlap: the records program is
compiled while the steps run, so end to end is less than their sum), and "run only" is the baseline against
the run time alone.

Baseline, written here the way public research code does it: PyTorch eager, one trial after the other,
autograd of the plain softmax loss, ``torch.optim.SGD`` on the gradient divided by its norm, float64, the
same data and the same initial parameters. A baseline trial is *frozen* when its gradient is exactly zero or
not finite (its attention has saturated below float64); it stops there and is left out of the comparison of
final directions W/‖W‖ (W = K Qᵀ for the factored model).

A second part times one large size (n=50, T=20, d=32, ``--large-trials`` × ``--large-steps``) with the trials
batched by ``vmap`` and by a sequential ``lax.map`` (``Descent(batching=...)``), and the P3-local size too
(same trials and steps as above), and checks that ``batching="auto"`` (``dynamics._choose_map``) picks the
faster one.

Run: ``python benchmarks/train_p3_local.py`` (about 4 minutes on 2 cores, most of it the baseline);
``--quick`` for a smoke run (10 trials × 200 steps); ``--trials``, ``--steps``, ``--large-trials``,
``--large-steps``, ``--skip-large`` to choose.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

_T0 = time.perf_counter()
import attnsvm  # noqa: E402
from attnsvm.dynamics import _choose_map  # noqa: E402
from attnsvm.models import Model  # noqa: E402
from attnsvm.problem import unit_gaussian  # noqa: E402
from attnsvm.training import NGD, Descent, Init, Save, train  # noqa: E402

_IMPORT_S = time.perf_counter() - _T0  # importing attnsvm (and JAX with it)

ETA = 0.1
SETTINGS = {
    # name: (parameterization, normalization, init scheme, init scale)
    "W": ("combined", "global", "zero", 0.0),
    "(K,Q)": ("factored", "block", "gaussian", {"K": 0.1, "Q": 0.0}),
}


# ---- baseline: PyTorch eager, one trial at a time ----------------------------------------------------------


def torch_trial(X, Y, Z, v, init: dict[str, np.ndarray], steps: int, normalize: str) -> tuple[dict, bool, int]:
    """One trial of normalized GD in plain PyTorch. Returns (final params, frozen, steps done)."""
    X, Y, Z, v = (torch.tensor(a, dtype=torch.float64) for a in (X, Y, Z, v))
    params = {k: torch.tensor(a, dtype=torch.float64, requires_grad=True) for k, a in init.items()}
    opt = torch.optim.SGD(list(params.values()), lr=ETA)
    for it in range(steps):
        opt.zero_grad()
        W = params["W"] if "W" in params else params["K"] @ params["Q"].T
        a = torch.einsum("itd,de,ie->it", X, W, Z)  # logits
        s = torch.softmax(a, dim=1)
        f = torch.einsum("it,itd->id", s, X) @ v
        loss = torch.log(1 + torch.exp(-Y * f)).mean()
        loss.backward()
        with torch.no_grad():
            norms = {k: p.grad.norm() for k, p in params.items()}
            total = torch.sqrt(sum(nv**2 for nv in norms.values()))
            if not torch.isfinite(total) or total == 0:
                return {k: p.detach().numpy() for k, p in params.items()}, True, it
            for k, p in params.items():
                nrm = total if normalize == "global" else norms[k]
                if nrm > 0:
                    p.grad /= nrm
        opt.step()
    return {k: p.detach().numpy() for k, p in params.items()}, False, steps


def direction(params: dict[str, np.ndarray]) -> np.ndarray:
    W = params["W"] if "W" in params else params["K"] @ np.swapaxes(params["Q"], -1, -2)
    return W / np.linalg.norm(W, axis=(-2, -1), keepdims=True)


# ---- the P3-local comparison ---------------------------------------------------------------------------------


def p3_local(trials: int, steps: int, record_every: int, seed: int, baseline: bool = True) -> list[dict]:
    problems = [unit_gaussian(6, 8, 10, seed=j) for j in range(trials)]
    rows = []
    for name, (param, normalize, scheme, scale) in SETTINGS.items():
        model = Model(param, loss="logistic")
        opt = NGD(lr=ETA, normalize=normalize)
        init = Init(scheme, scale, seed).params(model, problems[0], trials)  # given to both sides
        t0 = time.perf_counter()
        res = train(problems, model, Descent(opt, steps), save=Save(every=record_every), init=Init(given=init))
        ours = time.perf_counter() - t0
        frozen_ours = int(np.sum(np.isneginf(res.metrics["log_grad_norm"][:, -1])))
        if not baseline:
            rows.append({"setting": name, "ours_s": ours, "compile_s": res.compile_seconds, "run_s": res.run_seconds})
            print(f"{name:6s} attnsvm {ours:7.2f} s end to end (compile {res.compile_seconds:.2f} s, "
                  f"run {res.run_seconds:.2f} s), frozen {frozen_ours}/{trials}", flush=True)
            continue

        t0 = time.perf_counter()
        base, frozen, stopped = [], [], []
        for j, p in enumerate(problems):
            fin, fr, it = torch_trial(p.X, p.Y, p.queries, p.v, {k: a[j] for k, a in init.items()}, steps,
                                      normalize)
            base.append(fin)
            frozen.append(fr)
            stopped.append(it)
        base_s = time.perf_counter() - t0
        frozen = np.array(frozen)
        Db = direction({k: np.stack([b[k] for b in base]) for k in base[0]})
        Do = direction(res.params)
        diff = np.abs(Db - Do).reshape(trials, -1).max(axis=1)
        live = ~frozen
        rows.append({
            "setting": name, "normalize": normalize, "ours_s": ours, "compile_s": res.compile_seconds,
            "run_s": res.run_seconds, "base_s": base_s, "frozen_base": int(frozen.sum()),
            "frozen_at": [int(s) for s, f in zip(stopped, frozen, strict=True) if f],
            "frozen_ours": frozen_ours,
            "maxdiff_live": float(diff[live].max()) if live.any() else float("nan"),
            "mediandiff_live": float(np.median(diff[live])) if live.any() else float("nan"),
        })
        r = rows[-1]
        print(f"{name:6s} attnsvm {r['ours_s']:7.2f} s end to end (compile {r['compile_s']:.2f} s, "
              f"run {r['run_s']:.2f} s) | PyTorch eager {r['base_s']:7.2f} s | ratio end to end "
              f"{r['base_s'] / r['ours_s']:6.1f}×, run only {r['base_s'] / r['run_s']:6.1f}×"
              f" | baseline frozen {r['frozen_base']}/{trials}, ours {r['frozen_ours']}/{trials} | "
              f"max |ΔW/‖W‖| over unfrozen {r['maxdiff_live']:.2e} (median {r['mediandiff_live']:.2e})",
              flush=True)
    return rows


# ---- run time per trial-step against a plain-gradient JAX program ---------------------------------------------


def plain_jax(trials: int, steps: int, record_every: int, repeat: int = 2) -> dict:
    """The W setting as the shortest JAX program a user would write: jax.grad of the plain (unstabilized)
    softmax logistic loss, W ← W − η ∇L/‖∇L‖, vmap over trials, lax.scan over steps, no records. Its run time
    (best of ``repeat``, compile apart) against attnsvm's run time for the same trials and steps (best of
    ``repeat`` calls of one compiled program; attnsvm also records every ``record_every`` steps)."""
    import jax
    import jax.numpy as jnp

    problems = [unit_gaussian(6, 8, 10, seed=j) for j in range(trials)]
    X = np.stack([p.X for p in problems])
    Y = np.stack([p.Y for p in problems])
    Z = np.stack([p.queries for p in problems])
    V = np.stack([p.v for p in problems])

    with jax.enable_x64(True):
        def loss(W, x, y, z, v):
            s = jax.nn.softmax(jnp.einsum("ntd,de,ne->nt", x, W, z), axis=-1)
            f = jnp.einsum("nt,ntd,d->n", s, x, v)
            return jnp.mean(jnp.logaddexp(0.0, -y * f))

        def one(x, y, z, v):
            def step(W, _):
                g = jax.grad(loss)(W, x, y, z, v)
                return W - ETA * g / jnp.linalg.norm(g), None

            return jax.lax.scan(step, jnp.zeros((x.shape[-1], x.shape[-1])), None, length=steps)[0]

        args = [jax.device_put(a) for a in (X, Y, Z, V)]
        prog = jax.jit(jax.vmap(one)).lower(*args).compile()
        plain = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            jax.block_until_ready(prog(*args))
            plain.append(time.perf_counter() - t0)
    model, opt = Model("combined", loss="logistic"), NGD(lr=ETA)
    ours = [train(problems, model, Descent(opt, steps), save=Save(every=record_every), init=Init("zero")).run_seconds
            for _ in range(repeat)]
    row = {"plain_run_s": min(plain), "ours_run_s": min(ours)}
    print(f"W, {trials} trials × {steps} steps, run only (best of {repeat}): attnsvm {row['ours_run_s']:.2f} s "
          f"(records every {record_every}) | plain-gradient JAX {row['plain_run_s']:.2f} s | ratio "
          f"{row['ours_run_s'] / row['plain_run_s']:.2f}× (load {os.getloadavg()[0]:.1f})", flush=True)
    return row


# ---- vmap vs lax.map ---------------------------------------------------------------------------------------


def batching(sizes: list[tuple[int, int, int, int, int]], repeat: int = 2) -> list[dict]:
    """sizes: (n, T, d, trials, steps) each."""
    rows = []
    model = Model("combined")
    opt = NGD(lr=ETA)
    for n, T, d, trials, steps in sizes:
        record_every = max(1, steps // 10)
        problems = [unit_gaussian(n, T, d, seed=j) for j in range(trials)]
        run, comp, W = {}, {}, {}
        for mode in ("vmap", "map"):
            results = [train(problems, model, Descent(opt, steps, batching=mode), save=Save(every=record_every))
                       for _ in range(repeat)]  # best of `repeat`: the machine may be shared
            run[mode] = min(r.run_seconds for r in results)
            comp[mode] = results[0].compile_seconds  # later calls reuse the compiled program
            W[mode] = results[0].W
        auto = "map" if _choose_map(problems[0], trials, "auto") else "vmap"
        faster = min(run, key=run.get)
        rows.append({"size": (n, T, d), "trials": trials, "steps": steps,
                     "vmap_run": run["vmap"], "vmap_compile": comp["vmap"],
                     "map_run": run["map"], "map_compile": comp["map"],
                     "auto": auto, "faster": faster, "agree": float(np.abs(W["vmap"] - W["map"]).max())})
        r = rows[-1]
        print(f"n={n} T={T} d={d}, {trials} trials × {steps} steps: vmap run {r['vmap_run']:.2f} s "
              f"(compile {r['vmap_compile']:.2f}) | map run {r['map_run']:.2f} s (compile {r['map_compile']:.2f})"
              f" | faster: {faster}, auto picks: {auto} {'OK' if auto == faster else 'MISMATCH'}"
              f" | max |W_vmap − W_map| {r['agree']:.1e}", flush=True)
    return rows


# ---- first and second run in fresh processes (the persistent compilation cache) --------------------------------


def fresh_runs(args, rows: list[dict]) -> list[dict]:
    """attnsvm's side in two fresh processes sharing a new, empty compilation cache: the first run compiles
    (and writes the cache), the second loads the programs. Ratios against the baseline measured above."""
    import json
    import subprocess
    import sys
    import tempfile

    base = {r["setting"]: r["base_s"] for r in rows if "base_s" in r}
    out = []
    with tempfile.TemporaryDirectory(prefix="attnsvm-bench-cache-") as cache:
        for run in ("first", "second"):
            cmd = [sys.executable, __file__, "--child-json", "--cache-dir", cache, "--trials", str(args.trials),
                   "--steps", str(args.steps), "--record-every", str(args.record_every), "--seed", str(args.seed)]
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            child = json.loads(res.stdout.strip().splitlines()[-1])
            for r in child["rows"]:
                r.update(run=run, import_s=child["import_s"], process_s=wall)
                out.append(r)
    print("\nFresh processes (import + train; the first with an empty compilation cache, the second reading it):")
    for r in out:
        b = base.get(r["setting"])
        ratio = (f"{b / r['ours_s']:6.1f}× on train, {b / (r['ours_s'] + r['import_s']):6.1f}× with the import"
                 if b else "(no baseline)")
        print(f"{r['setting']:6s} {r['run']:6s} run: train {r['ours_s']:6.2f} s (compile {r['compile_s']:.2f} s, run "
              f"{r['run_s']:.2f} s), import attnsvm {r['import_s']:.2f} s, whole process {r['process_s']:.1f} s"
              f" | {ratio}", flush=True)
    return out


def child_json(args) -> None:
    """The child of :func:`fresh_runs`: attnsvm's side only, timings as one JSON line."""
    import json

    from attnsvm.cache import enable_compilation_cache

    enable_compilation_cache(args.cache_dir)
    rows = p3_local(args.trials, args.steps, args.record_every, args.seed, baseline=False)
    print(json.dumps({"rows": rows, "import_s": _IMPORT_S}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--record-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="initialization seed ((K,Q): K₀)")
    ap.add_argument("--large-trials", type=int, default=16)
    ap.add_argument("--large-steps", type=int, default=200)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--skip-baseline", action="store_true", help="time attnsvm only")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="PyTorch intra-op threads for the baseline (1: its tensors are tiny, and on 2 cores "
                         "2 threads measured 5-10x slower)")
    ap.add_argument("--quick", action="store_true", help="10 trials × 200 steps, large size 4 × 20")
    ap.add_argument("--skip-fresh", action="store_true", help="skip the first/second run in fresh processes")
    ap.add_argument("--child-json", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_json:
        return child_json(args)
    torch.set_num_threads(args.torch_threads)
    if args.quick:
        args.trials, args.steps, args.record_every = 10, 200, 20
        args.large_trials, args.large_steps = 4, 20
    print(f"attnsvm {attnsvm.__version__ if hasattr(attnsvm, '__version__') else ''} | torch {torch.__version__} "
          f"({torch.get_num_threads()} threads) | {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} | XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"\nP3-local: n=6, T=8, d=10, {args.trials} trials × {args.steps} NGD steps, η = {ETA}, float64, "
          f"attnsvm records every {args.record_every} steps")
    rows = p3_local(args.trials, args.steps, args.record_every, args.seed, baseline=not args.skip_baseline)
    print("\nAgainst a plain-gradient JAX program of the same size:")
    plain_jax(args.trials, args.steps, args.record_every)
    if not args.skip_fresh:
        fresh_runs(args, rows)
    if not args.skip_large:
        print(f"\nBatching of trials (W, global NGD; run time without compile, best of 2; "
              f"load {os.getloadavg()[0]:.1f})")
        batching([(6, 8, 10, args.trials, args.steps), (50, 20, 32, args.large_trials, args.large_steps)])
    print(f"\nload at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

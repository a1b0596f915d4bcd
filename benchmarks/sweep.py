"""Benchmark: the p3-rank grid on Dask with 1 and 2 local worker processes, and Dask's per-task overhead.

Three measurements, in one run on one machine:

1. **Per-task overhead.** A LocalCluster of 1 worker process runs ``--noop`` empty tasks submitted at once
   (throughput: wall / tasks) and ``--latency`` empty tasks one after the other (round trip: submit, run,
   result back). The time of starting the cluster and of the workers' first ``import attnsvm`` is timed apart.
2. **The p3-rank grid** (``attnsvm reproduce p3-rank``: Frobenius Att-SVMs batched on the client, the nuclear
   SDPs as Dask tasks of 4 instances each) on a LocalCluster of 1 worker, then of 2 workers: wall time,
   speed-up, and from Dask's task stream the number of tasks, their mean compute time and the time the
   workers were busy.
3. **The model** of a grid's wall time on M machines of w worker processes each, from those numbers::

       T(M) ≈ T_start + T_client + (N_tasks · (t_task + t_overhead)) / (M · w)

   with T_start the cluster start (workers importing attnsvm and JAX), T_client the work the client does
   itself (here the batched Frobenius solves, the chunk files and the figure), t_task the mean task time and
   t_overhead the per-task overhead. The script prints the model's prediction for the 2-worker run from the
   1-worker run, next to the measured one, and its extrapolation to more machines.

Run: ``python benchmarks/sweep.py`` (``--trials`` instances per setting, default 40: about 2 minutes on 2
idle cores); ``--quick`` for a smoke run (the quick p3-rank grid).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def noop(x=None):
    return x


def _import_attnsvm() -> str:
    import attnsvm

    return attnsvm.__version__


def overhead(noops: int, latency: int) -> dict[str, float]:
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=40)
    client = Client(cluster)
    client.wait_for_workers(1)
    t_cluster = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.run(_import_attnsvm)
    t_import = time.perf_counter() - t0
    client.gather(client.map(noop, range(50), pure=False))  # warm the connection
    t0 = time.perf_counter()
    client.gather(client.map(noop, range(noops), pure=False))
    t_many = (time.perf_counter() - t0) / noops
    t0 = time.perf_counter()
    for i in range(latency):
        client.submit(noop, i, pure=False).result()
    t_one = (time.perf_counter() - t0) / latency
    client.close()
    cluster.close()
    return {"cluster_start": t_cluster, "worker_import": t_import, "per_task_batch": t_many,
            "per_task_roundtrip": t_one}


def p3_rank(workers: int, trials: int | None, quick: bool, out: Path) -> dict[str, float]:
    """p3-rank with a LocalCluster of ``workers`` processes as the active client (the experiment uses it)."""
    from distributed import Client, LocalCluster, get_task_stream

    from attnsvm.experiments.runner import run_experiment

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=40)
    client = Client(cluster)  # the default client: p3-rank's parallel part runs on it
    client.wait_for_workers(workers)
    client.run(_import_attnsvm)
    t_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    with get_task_stream(client) as ts:
        run_experiment("p3-rank", out, trials=trials, quick=quick)
    wall = time.perf_counter() - t0
    client.close()
    cluster.close()
    tasks = [t for t in ts.data if any(s["action"] == "compute" for s in t["startstops"])]
    busy = sum(s["stop"] - s["start"] for t in tasks for s in t["startstops"] if s["action"] == "compute")
    return {"workers": workers, "start": t_start, "wall": wall, "tasks": len(tasks), "busy": busy,
            "t_task": busy / max(1, len(tasks))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=40, help="instances per (n, T, d) setting")
    ap.add_argument("--quick", action="store_true", help="the quick p3-rank grid (smoke run)")
    ap.add_argument("--noop", type=int, default=2000, help="empty tasks for the throughput overhead")
    ap.add_argument("--latency", type=int, default=200, help="empty tasks one at a time for the round trip")
    args = ap.parse_args()
    trials = None if args.quick else args.trials
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    ov = overhead(args.noop, args.latency)
    print(f"cluster start (1 worker process) {ov['cluster_start']:.2f} s; first import attnsvm in the worker "
          f"{ov['worker_import']:.2f} s")
    print(f"per-task overhead: {1e3 * ov['per_task_batch']:.2f} ms per task when {args.noop} are submitted at "
          f"once, {1e3 * ov['per_task_roundtrip']:.2f} ms round trip one at a time")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        # warm the client side (imports, the batched Frobenius solver) so that neither measured run pays it
        from attnsvm.experiments.runner import run_experiment

        run_experiment("p3-rank", Path(tmp) / "warm", trials=2, quick=True)
        for w in (1, 2):
            r = p3_rank(w, trials, args.quick, Path(tmp) / f"w{w}")
            runs.append(r)
            print(f"p3-rank ({'quick' if args.quick else f'{args.trials} instances per setting'}) on {w} "
                  f"worker(s): {r['wall']:.1f} s wall (+ {r['start']:.1f} s cluster start); {r['tasks']} tasks, "
                  f"mean {1e3 * r['t_task']:.0f} ms, workers busy {r['busy']:.1f} s")
    one, two = runs
    t_ovh = ov["per_task_batch"]
    client_side = one["wall"] - one["busy"] - one["tasks"] * t_ovh  # what the client does itself
    pred2 = client_side + one["tasks"] * (one["t_task"] + t_ovh) / 2
    print(f"speed-up 1 → 2 workers: {one['wall'] / two['wall']:.2f}× "
          f"(load average {os.getloadavg()[0]:.1f} at the end)")
    print(f"overhead / task time: {t_ovh / one['t_task']:.1%}")
    print(f"model T(M·w) = T_client + N·(t_task + t_ovh)/(M·w): T_client = {client_side:.1f} s, N = "
          f"{one['tasks']}, t_task = {1e3 * one['t_task']:.0f} ms, t_ovh = {1e3 * t_ovh:.2f} ms")
    print(f"  predicted at 2 workers {pred2:.1f} s, measured {two['wall']:.1f} s")
    for m in (4, 8, 16, 64):
        print(f"  predicted at {m} worker processes {client_side + one['tasks'] * (one['t_task'] + t_ovh) / m:.1f} s"
              f" (+ start); limit T_client = {client_side:.1f} s")


if __name__ == "__main__":
    main()

"""Where independent tasks run: a Dask cluster (``dask.distributed``), local or remote.

One mechanism for every parallel piece of attnsvm (``attnsvm sweep``, the parallel parts of the paper
reproductions): a :class:`distributed.Client` connected either to a ``LocalCluster`` of worker *processes*
on this machine (one thread each: XLA and the SDP solvers run one program per core best this way) or to an
existing scheduler (``tcp://HOST:8786``) started with ``dask scheduler`` / ``dask worker`` or dask-jobqueue.

If the caller already has a Dask client (``distributed.Client(...)`` in their session), :func:`dask_client`
uses it instead of starting a cluster, so a reproduction run inside a user's cluster session uses that
cluster.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any


def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def existing_client():
    """The Dask client already active in this process, or None."""
    if "distributed" not in sys.modules:
        return None  # no client can exist, and importing dask costs a second
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - dask is a dependency
        return None
    try:
        return default_client()
    except ValueError:
        return None


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, reuse: bool = True) -> Iterator[Any]:
    """A :class:`distributed.Client`: the active one (``reuse``), the cluster at ``scheduler``, or a new
    ``LocalCluster`` of ``workers`` processes (default: the cores), one thread each, no dashboard.

    A cluster started here is closed on exit; a client or scheduler given from outside is left running.
    """
    from distributed import Client, LocalCluster

    if scheduler is None and reuse:
        client = existing_client()
        if client is not None:
            yield client
            return
    cluster = None
    if scheduler is None:
        n = workers or default_workers()
        if n < 1:
            raise ValueError(f"workers must be ≥ 1, got {n}")
        # silence_logs: the nanny's warnings at shutdown ("still alive after 4 s, killing") are noise here.
        # PJRT_NPROC: XLA's CPU client sizes its thread pools by it (default: every core). A worker is one of n
        # processes sharing the cores, and with a pool per core the pool's threads hand each small operation of
        # a long while loop (a gradient flow) to one another and spin: a P2-diag flow alone took 4.0 s of wall
        # and 7.9 s of CPU with the default pool, 3.6 s and 3.5 s with one thread (benchmarks: docs/benchmarks.md).
        pre_spawn = _pre_spawn_environ()
        parent_env = _environ_of([*pre_spawn, "PYTHONHASHSEED"])
        import dask

        try:
            with dask.config.set({"distributed.nanny.pre-spawn-environ": pre_spawn}):
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR,
                                       env={"PJRT_NPROC": os.environ.get("PJRT_NPROC", "1")})
        finally:
            _restore_environ(parent_env)
    client = Client(scheduler if cluster is None else cluster, set_as_default=False)
    _share_cache_setting(client, local=cluster is not None)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:  # a cluster started here; one given from outside keeps running
            cluster.close()
            _restore_environ(parent_env)  # a worker restarted after a crash set them again


def _pre_spawn_environ() -> dict[str, str]:
    """Dask's ``distributed.nanny.pre-spawn-environ`` (variables set before a worker process starts) without
    ``MALLOC_TRIM_THRESHOLD_``, unless this process's environment sets it (then that value).

    Dask sets it to 64 KiB so that idle workers hand memory back to the OS. Setting it also turns off glibc's
    adaptive mmap threshold, so every buffer XLA allocates above 128 KiB is a fresh ``mmap``: zeroed pages,
    a page fault per page and an ``munmap``, at every call of a compiled program. Measured on the descent of
    2048 P3-multitoken candidates at d = 10 in one process (docs/benchmarks.md): 33 s wall and 1.7 s system
    CPU without it, 47 s and 17 s with it."""
    import dask

    env = {k: str(v) for k, v in (dask.config.get("distributed.nanny.pre-spawn-environ", None) or {}).items()}
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    if "MALLOC_TRIM_THRESHOLD_" in os.environ:
        env["MALLOC_TRIM_THRESHOLD_"] = os.environ["MALLOC_TRIM_THRESHOLD_"]
    return env


def _environ_of(keys: Iterable[str]) -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in keys}


def _restore_environ(saved: dict[str, str | None]) -> None:
    """Put back variables a Dask nanny wrote into this process's environment before spawning its worker
    (``os.environ.update(pre_spawn_environ)``): starting a cluster leaves this process as it was."""
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextmanager
def task_client(workers: int) -> Iterator[Any]:
    """For the parallel parts of an experiment: the active Dask client if there is one, else a LocalCluster
    of ``workers`` processes when ``workers`` > 1, else None (compute in this process)."""
    client = existing_client()
    if client is not None:
        yield client
    elif workers > 1:
        with dask_client(workers, reuse=False) as c:
            yield c
    else:
        yield None


class _CompilationCache:
    """A Dask worker plugin: the compilation-cache setting of the process that started the cluster, applied
    in every worker (also in one restarted after a crash)."""

    name = "attnsvm-compilation-cache"

    def __init__(self, path: str | None) -> None:
        self.path = path

    def setup(self, worker) -> None:
        from .cache import enable_compilation_cache

        try:
            enable_compilation_cache(self.path)
        except OSError:
            pass  # a worker that cannot write the cache compiles as without it


def _share_cache_setting(client, local: bool) -> None:
    """If this process uses the persistent compilation cache, so do the workers: the same directory on this
    machine, each worker's own default directory on a remote cluster."""
    from .cache import active_cache_dir

    path = active_cache_dir()
    if path is None:
        return
    from distributed.diagnostics.plugin import WorkerPlugin

    plugin = type("CompilationCache", (_CompilationCache, WorkerPlugin), {})(path if local else None)
    client.register_plugin(plugin)


def map_ordered(client, fn: Callable, items: Iterable, batch: int = 1) -> list:
    """``[fn(x) for x in items]`` computed as Dask tasks on ``client`` (``batch`` items per task, to amortize
    the per-task overhead when ``fn`` is short), results in the order of ``items``. Any task's exception
    is raised here. ``client=None`` computes in this process."""
    items = list(items)
    if client is None:
        return [fn(x) for x in items]
    if batch <= 1:
        futures = client.map(fn, items, pure=False)
        return client.gather(futures)
    groups = [items[i:i + batch] for i in range(0, len(items), batch)]
    futures = client.map(_apply_all, [fn] * len(groups), groups, pure=False)
    return [r for part in client.gather(futures) for r in part]


def _apply_all(fn: Callable, xs: list) -> list:
    return [fn(x) for x in xs]

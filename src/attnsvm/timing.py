"""Where the time of a run goes: compile, run, solvers, figures, I/O, waiting on workers.

:class:`TimeSplit` samples the stack of the thread that runs the work every 50 ms (from a background
thread) and files each sample under the category of the innermost frame that belongs to one:

* ``compile``  JAX tracing, lowering and XLA compilation (or loading a compiled program from the cache);
* ``solvers``  the Att-SVM and token-certificate solvers (attnsvm.svm, attnsvm.tokens, attnsvm.kkt, SCS,
  SciPy's optimizers, cvxpy);
* ``figures``  matplotlib and attnsvm.plots (drawing and saving);
* ``io``       reading and writing files (NumPy ``.npz``, Parquet, CSV, text);
* ``workers``  waiting for tasks on Dask workers (the parallel parts: the work runs in other processes);
* ``run``      everything else: running the compiled programs, NumPy, Python glue, importing modules.

Each category's seconds are its share of samples times the wall time. The stack is read with
:func:`faulthandler.dump_traceback` (innermost 100 frames), which is safe while the thread runs; one read
costs about 1 ms, so a sample every 50 ms costs about 2% of one core. A sampler cannot be exact for short
categories, but it needs no change to the code it measures. JAX's own compile-time events give an exact
compile total beside it (``compile_events``), as a cross-check.
"""

from __future__ import annotations

import faulthandler
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter

CATEGORIES = ("compile", "run", "solvers", "figures", "io", "workers")

# JAX's tracing / lowering / compilation entry points (jax/_src): a sample inside one of these is compile time
_JAX_COMPILE_FUNCS = frozenset({
    "trace_to_jaxpr", "trace_to_jaxpr_dynamic", "_infer_params", "_infer_params_impl", "jit_trace", "jit_lower",
    "lower_sharding_computation", "lower_jaxpr_to_module", "_cached_lowering_to_hlo", "_cached_compilation",
    "compile_or_get_cached", "backend_compile", "backend_compile_and_load", "from_hlo", "_create_pjit_jaxpr",
    "lower", "compile",
})
_SOLVER_PARTS = ("attnsvm/svm", "attnsvm/tokens", "attnsvm/kkt", "/scs/", "/_scs", "scipy/optimize",
                 "/cvxpy/", "/clarabel", "/osqp")
_FIGURE_PARTS = ("/matplotlib/", "attnsvm/plots")
_IO_FUNCS = frozenset({"savez", "savez_compressed", "_savez", "load", "to_parquet", "read_parquet", "to_csv",
                       "read_csv", "write_text", "read_text", "write_bytes", "read_bytes", "write_table",
                       "read_table"})
_IO_PARTS = ("numpy/lib/_npyio", "numpy/lib/npyio", "/pyarrow/", "pandas/io/", "/zipfile")
_WORKER_PARTS = ("/distributed/client.py", "/distributed/utils.py")


def _category(stack: list[tuple[str, str]]) -> str:
    """The category of the innermost frame that belongs to one ((file, function) pairs, innermost first)."""
    for path, _ in stack:  # importing a module is not the work of the module imported
        if path.startswith("<frozen importlib"):
            return "run"
    for path, name in stack:
        if "jax/_src" in path and name in _JAX_COMPILE_FUNCS:
            return "compile"
        if any(p in path for p in _FIGURE_PARTS):
            return "figures"
        if any(p in path for p in _IO_PARTS) or (name in _IO_FUNCS and ("pathlib" in path or "numpy" in path)):
            return "io"
        if any(p in path for p in _WORKER_PARTS):
            return "workers"
        if any(p in path for p in _SOLVER_PARTS):
            return "solvers"
    return "run"


_FRAME = re.compile(r'^\s+File "(.*)", line \d+ in (\S+)$', re.M)


def _stack_of(dump: str, ident: int) -> list[tuple[str, str]] | None:
    """The (file, function) frames of thread ``ident`` in a :func:`faulthandler.dump_traceback` text."""
    key = f"hread 0x{ident:016x}"
    start = dump.find(key)
    if start < 0:
        return None
    end = dump.find("hread 0x", start + len(key))
    block = dump[start:end if end >= 0 else len(dump)]
    return [(path.replace("\\", "/"), name) for path, name in _FRAME.findall(block)]


class TimeSplit:
    """``with TimeSplit() as t: work()`` then ``t.seconds`` (category → seconds, summing to the wall time).

    Samples the thread that entered the context every ``interval`` seconds.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self.wall = 0.0
        self.compile_events = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._target = 0
        self._listener = None

    def _sample(self) -> None:
        # The stack is read by faulthandler, in C and without releasing the GIL: walking another thread's
        # frames from Python (sys._current_frames()[...].f_back) can crash CPython 3.11 when that thread pops
        # frames between two steps of the walk.
        fd = os.memfd_create("attnsvm-time-split") if hasattr(os, "memfd_create") else None
        tmp = None
        if fd is None:
            tmp = tempfile.TemporaryFile()
            fd = tmp.fileno()
        try:
            while not self._stop.wait(self.interval):
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                faulthandler.dump_traceback(fd, all_threads=True)
                os.lseek(fd, 0, os.SEEK_SET)
                chunks = []
                while True:
                    b = os.read(fd, 1 << 16)
                    if not b:
                        break
                    chunks.append(b)
                stack = _stack_of(b"".join(chunks).decode("utf-8", "replace"), self._target)
                if stack is not None:
                    self.counts[_category(stack)] += 1
        finally:
            if tmp is not None:
                tmp.close()
            else:
                os.close(fd)

    def __enter__(self) -> TimeSplit:
        self._target = threading.get_ident()
        self._t0 = time.perf_counter()
        self._listen_compile()
        self._thread = threading.Thread(target=self._sample, name="attnsvm-time-split", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.wall = time.perf_counter() - self._t0
        self._unlisten_compile()

    def _listen_compile(self) -> None:
        if "jax" not in sys.modules:
            import jax  # noqa: F401  (the events below are JAX's)
        from jax import monitoring

        def on_event(event: str, duration: float, **_) -> None:
            if event.startswith("/jax/core/compile/") and self._stop is not None and not self._stop.is_set():
                self.compile_events += duration

        self._listener = on_event
        monitoring.register_event_duration_secs_listener(on_event)

    def _unlisten_compile(self) -> None:
        from jax import monitoring

        try:
            monitoring.unregister_event_duration_listener(self._listener)
        except (AssertionError, ValueError, KeyError):  # pragma: no cover - already gone
            pass

    @property
    def seconds(self) -> dict[str, float]:
        """Category → seconds of wall time (shares of the samples; all zero if no sample was taken)."""
        total = sum(self.counts.values())
        if total == 0:
            return {c: (self.wall if c == "run" else 0.0) for c in CATEGORIES}
        return {c: self.wall * self.counts[c] / total for c in CATEGORIES}


def split_row(name: str, t: TimeSplit) -> dict[str, float | str]:
    """One row of a where-the-time-goes table."""
    return {"experiment": name, "total": t.wall, **t.seconds, "compile_events": t.compile_events}


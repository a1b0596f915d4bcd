import os
import tempfile

# One compilation cache per test session, shared by the test process, the CLI subprocesses and the Dask
# workers the tests start (they inherit the variable): a program is compiled once per session, never read
# from a cache left by an earlier session or written to the user's own cache directory.
# pytest-xdist workers (PYTEST_XDIST_WORKER is set before they read this file) keep the directory of the
# process that started them, so the workers of one session share it too (entries are written atomically).
if "PYTEST_XDIST_WORKER" not in os.environ:
    os.environ["ATTNSVM_CACHE_DIR"] = tempfile.mkdtemp(prefix="attnsvm-test-cache-")

import attnsvm  # noqa: E402
from attnsvm.cache import enable_compilation_cache  # noqa: E402

# the tests call the low-level JAX functions (attnsvm.models) directly: float64 for the whole test process
# (importing attnsvm alone changes no global setting; tests/test_training.py checks that in a fresh process)
attnsvm.enable_x64()
enable_compilation_cache()

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """With pytest-xdist (``-n 2 --dist loadgroup``, the default in pyproject.toml) a test module runs on one
    worker: its module-scoped fixtures (a Dask cluster, a trained run) are built once, and the quick runs of
    :func:`quick_run` it uses are computed on that worker only (a module that shares quick runs with another
    names that module's group, as tests/test_reproduce_jobs.py does)."""
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """Every experiment run at most once per test process in its quick settings, in the layout of
    ``attnsvm reproduce --all --quick --out ROOT`` (``ROOT/<id>``): ``quick_run(exp_id)`` returns
    ``(report, arrays of results.npz, folder)``. The tests of one experiment and the (slow) test of
    ``reproduce --all --quick`` (which then resumes every folder: each experiment's resume is checked too)
    share these runs instead of computing each twice. Tests must not modify the folders."""
    from attnsvm.experiments.runner import run_experiment

    root = tmp_path_factory.mktemp("reproduce-quick")
    cache: dict = {}

    def get(exp_id: str):
        if exp_id not in cache:
            out = root / exp_id
            rep = run_experiment(exp_id, out, quick=True)
            with np.load(out / "results.npz", allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
            cache[exp_id] = (rep, arrays, out)
        return cache[exp_id]

    get.root = root  # type: ignore[attr-defined]
    return get

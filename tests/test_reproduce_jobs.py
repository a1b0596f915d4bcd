"""`attnsvm reproduce --all --jobs N`: experiments in worker processes give the serial numbers."""

import numpy as np
import pytest
from typer.testing import CliRunner

from attnsvm.cli import _reproduce_in_workers, app
from attnsvm.cluster import dask_client
from attnsvm.experiments import get

# on the worker of tests/test_exp_p1.py, whose quick p1 runs it compares against (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("test_exp_p1")


def test_experiments_in_worker_processes_equal_the_serial_runs(quick_run, tmp_path):
    exps = [get("p1-joint"), get("p1-multi")]
    shown = []
    with dask_client(workers=2, reuse=False) as client:
        reps = _reproduce_in_workers(exps, 2, lambda e: tmp_path / e.id, lambda e: "",
                                     lambda r, t: shown.append(t), None, None, True, False, client)
    assert sorted(reps) == ["p1-joint", "p1-multi"] and len(shown) == 2
    for e in exps:
        serial, arrays, _ = quick_run(e.id)
        assert [(c.claim, c.measured, c.verdict) for c in reps[e.id].claims] == \
            [(c.claim, c.measured, c.verdict) for c in serial.claims]
        with np.load(tmp_path / e.id / "results.npz") as f:
            assert sorted(f.files) == sorted(arrays)
            for k in arrays:
                np.testing.assert_array_equal(f[k], arrays[k], err_msg=f"{e.id}: {k}")


def test_jobs_needs_all(tmp_path):
    res = CliRunner().invoke(app, ["reproduce", "p1-joint", "--jobs", "2", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert "--jobs applies to --all" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("cores", [1, 2, 3])
def test_all_runs_one_experiment_per_core_by_default(monkeypatch, tmp_path, cores):
    """Without --jobs, `reproduce --all` runs as many experiments at once as this process has cores (those with
    parallel parts of their own after, in this process); on one core, all of them here, one by one."""
    from contextlib import contextmanager

    import typer

    import attnsvm.cli as cli
    import attnsvm.cluster as cluster
    import attnsvm.experiments.runner as runner
    from attnsvm.experiments import all_experiments

    seen = {}

    @contextmanager
    def cluster_of(workers, reuse):
        seen["cluster"] = workers
        yield "client"

    def pooled(exps, jobs, *args, client=None):
        seen.update(pooled=[e.id for e in exps], jobs=jobs, client=client)
        raise typer.Exit(7)

    def serial(exp_id, *args, **kwargs):
        seen.setdefault("serial", exp_id)
        raise typer.Exit(8)

    monkeypatch.setattr(cluster, "default_workers", lambda: cores)
    monkeypatch.setattr(cluster, "dask_client", cluster_of)
    monkeypatch.setattr(cli, "_reproduce_in_workers", pooled)
    monkeypatch.setattr(runner, "run_experiment", serial)
    res = CliRunner().invoke(app, ["reproduce", "--all", "--out", str(tmp_path / "all")])
    ids = [e.id for e in all_experiments()]
    own = {e.id for e in all_experiments() if getattr(e.configure(quick=False), "workers", 1) > 1}
    if cores == 1:
        assert res.exit_code == 8 and "pooled" not in seen and seen["serial"] == ids[0]
    else:
        assert res.exit_code == 7 and seen["jobs"] == seen["cluster"] == cores and seen["client"] == "client"
        assert seen["pooled"] == [i for i in ids if i not in own] and own  # the long ones run after, here


def test_experiments_with_parallel_parts_use_the_cluster_of_the_others(monkeypatch, tmp_path):
    """After the pooled experiments, those with parallel parts of their own run in this process with the same
    worker processes as the active Dask client (what their parts ask for), and the cluster is closed after."""
    import attnsvm.cli as cli
    import attnsvm.cluster as cluster
    import attnsvm.experiments.runner as runner

    seen = {}

    def pooled(exps, jobs, *args, client=None):
        seen["pooled_client"] = client
        return {}

    def serial(exp_id, *args, **kwargs):
        seen["active"] = cluster.existing_client()
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster, "default_workers", lambda: 2)
    monkeypatch.setattr(cli, "_reproduce_in_workers", pooled)
    monkeypatch.setattr(runner, "run_experiment", serial)
    out = tmp_path / "all"
    res = CliRunner().invoke(app, ["reproduce", "--all", "--out", str(out)])
    # interrupted: how to resume is the command as given (no --jobs the user did not write), and the cluster
    # is closed all the same
    assert res.exit_code == 130 and "Traceback" not in res.output
    assert f"`attnsvm reproduce --all --out {out}` resumes" in " ".join(res.output.split())
    assert seen["pooled_client"] is not None and seen["active"] is seen["pooled_client"]
    assert seen["active"].status == "closed"
    assert cluster.existing_client() is None

"""`attnsvm reproduce --all --jobs N`: experiments in worker processes give the serial numbers."""

import numpy as np
import pytest
from typer.testing import CliRunner

from attnsvm.cli import _reproduce_in_workers, app
from attnsvm.experiments import get

# on the worker of tests/test_exp_p1.py, whose quick p1 runs it compares against (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("test_exp_p1")


def test_experiments_in_worker_processes_equal_the_serial_runs(quick_run, tmp_path):
    exps = [get("p1-joint"), get("p1-multi")]
    shown = []
    reps = _reproduce_in_workers(exps, 2, lambda e: tmp_path / e.id, lambda e: "", lambda r, t: shown.append(t),
                                 None, None, True, False)
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

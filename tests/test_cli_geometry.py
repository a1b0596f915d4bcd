"""`attnsvm solve` and `attnsvm tokens` through a local Typer app (the main app registers the same)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from attnsvm.cli_geometry import register
from attnsvm.problem import AttentionProblem, p1_joint, p1_single, unit_gaussian

app = typer.Typer()
register(app)
runner = CliRunner()

KEYS = {"status", "norm", "value", "solution", "active", "duals", "certificate", "selection", "support_tokens",
        "locally_optimal"}


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_solve_json_p1_single_global(tmp_path):
    path = p1_single("global").save(tmp_path / "p.npz")
    res = _run("solve", path, "--norm", "l2", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert KEYS <= set(out)
    assert set(out["certificate"]) >= {"primal", "dual", "complementarity", "gap"}
    np.testing.assert_allclose(out["solution"], np.array([-0.1, 1.0, 0.0]) / 1.01, atol=1e-12)
    assert out["status"] == "optimal" and out["locally_optimal"] is True
    assert out["selection"] == [0] and out["support_tokens"] == [[2]]
    assert out["certificate"]["primal"] <= 1e-12


def test_solve_list_selection_local(tmp_path):
    path = p1_single("local").save(tmp_path / "p.npz")
    out = json.loads(_run("solve", path, "--select", "1", "--json").stdout)
    np.testing.assert_allclose(out["solution"], [1.0, 0.0, 0.0], atol=1e-12)
    assert out["norm"] == "l2" and out["locally_optimal"] is True


def test_solve_relax_from_v(tmp_path):
    path = p1_joint("relaxed").save(tmp_path / "p.npz")
    out = json.loads(_run("solve", path, "--select", "1,1,1", "--relax-from-v", "--json").stdout)
    np.testing.assert_allclose(out["solution"], [1.0, 0.0], atol=1e-12)
    assert out["margins"] == [1.0, 1.0, 0.0]


def test_solve_argmax_selection_and_table(tmp_path):
    p = unit_gaussian(3, 4, 5, seed=0)
    path = p.save(tmp_path / "p.npz")
    out = json.loads(_run("solve", path, "--norm", "fro", "--select", "2,0,1", "--json").stdout)
    np.save(tmp_path / "W.npy", 50 * np.array(out["solution"]))
    back = json.loads(_run("solve", path, "--select", f"argmax:{tmp_path / 'W.npy'}", "--json").stdout)
    assert back["selection"] == [2, 0, 1]
    res = _run("solve", path, "--norm", "nuclear")
    assert res.exit_code == 0 and "certificate" in res.stdout and "per sequence" in res.stdout


def test_solve_infeasible_reports_sample(tmp_path):
    p = unit_gaussian(3, 4, 6, seed=0)
    X = np.array(p.X)
    X[1, 2] = X[1, 0]
    path = AttentionProblem(X=X, Y=p.Y, v=p.v, Z=p.Z).save(tmp_path / "p.npz")
    res = _run("solve", path, "--select", "0,0,0", "--json")
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert out["status"] == "infeasible" and out["infeasible_samples"] == [1]
    assert out["solution"] is None and out["locally_optimal"] is False
    assert out["farkas"][1][2] > 0


@pytest.mark.parametrize("args, fragment", [
    (["--norm", "spectral"], "--norm"),
    (["--select", "0,1"], "--select"),
    (["--select", "a,b,c"], "--select"),
    (["--select", "0,1,9"], "selection"),
    (["--tol", "nan"], "--tol"),
    (["--tol", "-1e-3"], "--tol"),
    (["--tol", "inf"], "--tol"),
])
def test_solve_errors_go_to_stderr(tmp_path, args, fragment):
    path = unit_gaussian(3, 4, 5, seed=0).save(tmp_path / "p.npz")
    res = _run("solve", path, *args)
    assert res.exit_code == 2
    assert fragment in res.stderr and "error" in res.stderr and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_tokens_rejects_bad_max_selections(tmp_path):
    path = unit_gaussian(3, 4, 5, seed=0).save(tmp_path / "p.npz")
    for bad in ("0", "-5"):
        res = _run("tokens", path, "--max-selections", bad)
        assert res.exit_code == 2 and "--max-selections" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_solve_inaccurate_is_never_locally_optimal(tmp_path, monkeypatch):
    """A solution that fails its certificate certifies nothing: status inaccurate, locally_optimal false."""
    import attnsvm.svm._ldp as ldp_mod

    real = ldp_mod.nnls
    monkeypatch.setattr(ldp_mod, "nnls", lambda E, e, maxiter=None: (0.9 * real(E, e, maxiter=maxiter)[0], 0.0))
    path = p1_single("global").save(tmp_path / "p.npz")
    out = json.loads(_run("solve", path, "--json").stdout)
    assert out["status"] == "inaccurate" and out["locally_optimal"] is False


@pytest.mark.parametrize("k", [-8, -3, 0, 4, 8])
def test_solve_scaled_problem_same_answer(tmp_path, k):
    """X, Z × 10^k: same status and support, solution × 10^(−2k), relative certificate unchanged."""
    pr = unit_gaussian(4, 5, 6, seed=2)
    s = 10.0 ** k
    base = json.loads(_run("solve", pr.save(tmp_path / "a.npz"), "--json").stdout)
    scaled = AttentionProblem(X=s * pr.X, Y=pr.Y, v=pr.v, Z=s * pr.queries)
    out = json.loads(_run("solve", scaled.save(tmp_path / "b.npz"), "--json").stdout)
    assert out["status"] == base["status"] == "optimal"
    assert out["locally_optimal"] == base["locally_optimal"]
    assert out["support_tokens"] == base["support_tokens"]
    np.testing.assert_allclose(np.array(out["solution"]) * s**2, base["solution"], rtol=1e-7, atol=1e-9)
    assert abs(out["certificate"]["relative_gap"]) <= 1e-8


def test_solve_matrix_norm_on_prompt_problem_fails(tmp_path):
    path = unit_gaussian(3, 4, 5, seed=0, attention="prompt").save(tmp_path / "p.npz")
    res = _run("solve", path, "--norm", "fro")
    assert res.exit_code == 2 and "prompt" in res.stderr


def test_solve_missing_file(tmp_path):
    res = _run("solve", tmp_path / "nope.npz")
    assert res.exit_code == 2 and "not found" in res.stderr


def test_tokens_command(tmp_path):
    path = p1_single("local").save(tmp_path / "p.npz")
    out = json.loads(_run("tokens", path, "--json").stdout)
    assert out["opt"] == [0]
    assert [s["selection"] for s in out["locally_optimal"]] == [[0], [1]]
    assert out["locally_optimal"][1]["margin"] == pytest.approx(1.0)
    assert out["search"]["total"] == 3 and out["search"]["screened"] + out["search"]["solved"] >= 3
    res = _run("tokens", path)
    assert res.exit_code == 0 and "locally-optimal" in res.stdout
    glob = json.loads(_run("tokens", p1_single("global").save(tmp_path / "g.npz"), "--json").stdout)
    assert glob["ties"] == [[0]] and [s["selection"] for s in glob["locally_optimal"]] == [[0]]


def test_tokens_size_guard_message(tmp_path):
    path = unit_gaussian(8, 6, 12, seed=0).save(tmp_path / "p.npz")
    res = _run("tokens", path, "--max-selections", "100")
    assert res.exit_code == 0 and "not enumerated" in res.stdout

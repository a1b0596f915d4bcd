"""``attnsvm sweep``: grid expansion and validation, and runs on a LocalCluster of 2 worker processes —
the same numbers as ``attnsvm train`` per point, a worker killed mid-task loses nothing, a killed client
resumes with only the missing points, failing points are recorded without stopping the others."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import attnsvm as A
from attnsvm.cli import app
from attnsvm.sweep import SweepError, load_sweep_file, parse_sweep, run_sweep, sweep_status, verify_point

runner = CliRunner()

BASE = """
[problem]
generator = "unit-gaussian"
n = 3
T = 4
d = 3
seed = 7
[optimizer]
name = "ngd"
steps = 30
[init]
scheme = "gaussian"
scale = 0.5
[run]
trials = 3
record_every = 10
references = ["fro"]
"""
# data seed × init seed: six points that share one compiled program (a test pays one compile per process)
GRID = BASE + """
[sweep]
grid = { "problem.seed" = [7, 8, 9], "run.seed" = [0, 1] }
"""


def _file(tmp_path, text, name="sweep.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- expansion and validation (no cluster) ----------------------------------------------------------------
def test_grid_and_zip_expand_in_order(tmp_path):
    # a per-block init scale names a block of the model: (K, Q) of the factored model (unknown blocks are errors)
    sw = parse_sweep({"problem": {"generator": "unit-gaussian", "n": 3, "T": 4, "d": 3},
                      "model": {"parameterization": "factored"},
                      "sweep": {"grid": {"problem.d": [3, 5], "init.scale.K": [0.1, 0.2, 0.3]},
                                "zip": {"optimizer.lr": [0.1, 0.2], "optimizer.steps": [10, 20]}}})
    assert sw.axes == ("problem.d", "init.scale.K", "optimizer.lr", "optimizer.steps")
    assert len(sw.points) == 2 * 3 * 2
    p = sw.points[7]  # d index 1, K index 0, zip index 1 (last axis fastest)
    assert p.axes == {"problem.d": 5, "init.scale.K": 0.1, "optimizer.lr": 0.2, "optimizer.steps": 20}
    c = p.config
    assert (c.problem.generator_args["d"], c.init.scale, c.optimizer.lr, c.optimizer.steps) == (5, {"K": 0.1}, 0.2, 20)
    assert len({q.id for q in sw.points}) == 12
    # the id is the config's content: the same point in another sweep has the same id
    other = parse_sweep({"problem": {"generator": "unit-gaussian", "n": 3, "T": 4, "d": 5},
                         "model": {"parameterization": "factored"},
                         "init": {"scale": {"K": 0.1}}, "optimizer": {"steps": 20},
                         "sweep": {"grid": {"optimizer.lr": [0.2]}}})
    assert other.points[0].id == p.id


@pytest.mark.parametrize("sweep, message", [
    ({"grid": {"optimizer.lr": [0.1, -1.0]}}, "point 1 (optimizer.lr=-1.0)"),
    ({"grid": {"optimizer.bogus": [1]}}, "optimizer.bogus: unknown key"),
    ({"grid": {"problem.d": [3, 0]}}, "point 1 (problem.d=0): problem:"),
    ({"grid": {"lr": [0.1]}}, "write it as 'section.key'"),
    ({"grid": {"optimizer.lr": []}}, "non-empty list"),
    ({"zip": {"optimizer.lr": [0.1, 0.2], "problem.d": [3]}}, "equal lengths"),
    ({"grid": {"optimizer.lr": [0.1]}, "zip": {"optimizer.lr": [0.2]}}, "more than once"),
    ({"grid": {"optimizer.lr": [0.1, 0.1]}}, "same config as point 0"),
    ({"grids": {}}, "unknown key"),
])
def test_invalid_points_are_named_before_anything_runs(sweep, message):
    data = {"problem": {"generator": "unit-gaussian", "n": 3, "T": 4, "d": 3}, "sweep": sweep}
    with pytest.raises(SweepError, match=None) as err:
        parse_sweep(data)
    assert message in str(err.value), str(err.value)


def test_cli_invalid_sweep_exits_2_without_output_dir(tmp_path):
    path = _file(tmp_path, BASE + '[sweep]\ngrid = { "optimizer.steps" = [30, 35] }\n')
    res = runner.invoke(app, ["sweep", str(path), "--out", str(tmp_path / "o"), "--no-progress"])
    assert res.exit_code == 2
    text = " ".join(res.output.split())  # the console wraps long lines
    assert "point 1 (optimizer.steps=35)" in text and "record_every" in text
    assert not (tmp_path / "o").exists()
    res = runner.invoke(app, ["sweep", "--status", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no sweep" in res.output


# ---- runs on a LocalCluster of 2 processes ----------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    from attnsvm.cluster import dask_client

    with dask_client(workers=2, reuse=False) as c:
        c.wait_for_workers(2)
        yield c


@pytest.fixture(scope="module")
def grid_run(client, tmp_path_factory):
    """The 6-point grid computed once on the cluster (the reference of the other tests)."""
    tmp = tmp_path_factory.mktemp("grid")
    path = _file(tmp, GRID)
    sw = load_sweep_file(path)
    rep = run_sweep(sw, tmp / "out", client=client)
    return sw, tmp / "out", rep, path


def test_sweep_equals_attnsvm_train_per_point(grid_run, tmp_path):
    sw, out, rep, _ = grid_run
    assert sorted(rep.computed) == sorted(p.id for p in sw.points) and not rep.failed and not rep.skipped
    df = A.load_sweep(out)
    assert len(df) == 6 * 3 and list(df["point_index"].unique()) == list(range(6))
    for p in sw.points:
        run = tmp_path / p.id
        res = runner.invoke(app, ["train", str(out / "configs" / f"{p.id}.toml"), "--out", str(run),
                                  "--no-progress"])
        assert res.exit_code == 0, res.output
        with np.load(run / "final.npz") as ref, np.load(out / "points" / p.id / "final.npz") as got:
            assert set(ref.files) == set(got.files)
            for k in ref.files:
                np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{p.label()}: {k}")
        rows = df[df["point"] == p.id].reset_index(drop=True)
        for axis in ("problem.seed", "run.seed"):
            assert (rows[axis] == p.axes[axis]).all()
        verdict = pd.read_parquet(run / "verdict.parquet")
        pd.testing.assert_frame_equal(rows[verdict.columns], verdict, check_exact=True)
        metrics = pd.read_parquet(run / "metrics.parquet")
        last = metrics[metrics["step"] == metrics["step"].max()].reset_index(drop=True)
        np.testing.assert_array_equal(rows["final_loss"], last["loss"])
        np.testing.assert_array_equal(rows["final_corr_fro"], last["corr_fro"])
        recs = A.load_sweep(out, "records")
        recs = recs[recs["point"] == p.id].reset_index(drop=True)
        pd.testing.assert_frame_equal(recs[metrics.columns], metrics, check_exact=True)
    # a hive-partitioned dataset that any Parquet reader opens
    import pyarrow.dataset as ds

    t = ds.dataset(out / "trials", format="parquet", partitioning="hive").to_table().to_pandas()
    assert sorted(t["point"].astype(str).unique()) == sorted(p.id for p in sw.points) and len(t) == 18


def _arrays(out, pid):
    with np.load(out / "points" / pid / "final.npz") as f:
        return {k: f[k] for k in f.files}


def test_killed_worker_loses_nothing_and_each_point_is_written_once(client, grid_run, tmp_path):
    sw, ref_out, _, _ = grid_run
    out = tmp_path / "out"
    pids = client.run(os.getpid)  # worker address → process id
    killed: dict = {}

    def kill_a_busy_worker():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for addr, keys in client.processing().items():
                if keys and addr in pids:
                    killed["pid"], killed["keys"] = pids[addr], list(keys)
                    os.kill(pids[addr], signal.SIGKILL)
                    return
            time.sleep(0.02)

    t = threading.Thread(target=kill_a_busy_worker)
    t.start()
    rep = run_sweep(sw, out, client=client)
    t.join()
    assert killed, "no worker was busy"
    assert not rep.failed and sorted(rep.computed) == sorted(p.id for p in sw.points)
    victims = [p for p in sw.points if any(p.id in str(k) for k in killed["keys"])]
    assert victims
    for p in sw.points:
        assert verify_point(out, p) is None
        assert len(list((out / "trials" / f"point={p.id}").iterdir())) == 1
        man = json.loads((out / "points" / p.id / "manifest.json").read_text())
        if p in victims:  # rerun by another (or the restarted) worker process
            assert not man["worker"].endswith(f":{killed['pid']}")
        ref = _arrays(ref_out, p.id)
        got = _arrays(out, p.id)
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k])
    df = A.load_sweep(out)
    assert len(df) == 18 and df.groupby("point").size().eq(3).all()
    assert not list((out / "points").glob(".*"))  # no staging leftovers


def test_killed_client_rerun_computes_only_missing_points(client, grid_run, tmp_path):
    sw, ref_out, _, path = grid_run
    out = tmp_path / "out"
    # the CLI as a client of the running cluster (--scheduler): its workers have the program compiled
    proc = subprocess.Popen([sys.executable, "-m", "attnsvm", "sweep", str(path), "--out", str(out),
                             "--scheduler", client.scheduler.address], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list((out / "points").glob("*/manifest.json")):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the client, as a killed job
        proc.wait()
    done = {p.id for p in sw.points if verify_point(out, p) is None}
    assert 1 <= len(done) < len(sw.points)
    stamps = {pid: (out / "points" / pid / "manifest.json").stat().st_mtime_ns for pid in done}
    st = sweep_status(out)
    assert len(st["done"]) == len(done) and len(st["done"]) + len(st["pending"]) == 6 and not st["failed"]
    rep = run_sweep(load_sweep_file(path), out, client=client)
    assert set(rep.skipped) == done and set(rep.computed) == {p.id for p in sw.points} - done
    assert {pid: (out / "points" / pid / "manifest.json").stat().st_mtime_ns for pid in done} == stamps
    for p in sw.points:
        ref, got = _arrays(ref_out, p.id), _arrays(out, p.id)
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k])
    assert len(A.load_sweep(out)) == 18


def test_corrupted_point_is_recomputed_and_failing_point_recorded(client, tmp_path):
    for name, seed in (("a.npz", 1), ("b.npz", 2)):
        A.unit_gaussian(3, 4, 3, seed=seed).save(tmp_path / name)
    path = _file(tmp_path, """
[problem]
file = "a.npz"
[optimizer]
steps = 20
[run]
trials = 2
record_every = 10
[sweep]
grid = { "problem.file" = ["a.npz", "b.npz"] }
""")
    sw = load_sweep_file(path)
    a, b = sw.points
    (tmp_path / "b.npz").rename(tmp_path / "b.moved")  # valid when checked, gone when the worker reads it
    out = tmp_path / "out"
    rep = run_sweep(sw, out, client=client, retries=1)
    assert rep.computed == [a.id] and list(rep.failed) == [b.id] and "b.npz" in rep.failed[b.id]
    err = json.loads((out / "failed" / f"{b.id}.json").read_text())
    assert err["attempts"] == 2 and err["axes"]["problem.file"].endswith("b.npz")
    res = runner.invoke(app, ["sweep", "--status", str(out)])
    assert res.exit_code == 0 and "failed" in res.output  # (the console's width wraps the id: checked below)
    st = sweep_status(out)
    assert [p.id for p, _ in st["failed"]] == [b.id] and [p.id for p, _ in st["done"]] == [a.id]
    assert len(A.load_sweep(out)) == 2  # only the verified point
    # a stored file that no longer matches its checksum is not trusted
    with open(out / "points" / a.id / "final.npz", "r+b") as f:
        f.seek(-3, 2)
        f.write(b"\x00\x01\x02")
    assert "checksum" in verify_point(out, a)
    (tmp_path / "b.moved").rename(tmp_path / "b.npz")
    rep = run_sweep(sw, out, client=client)
    assert set(rep.computed) == {a.id, b.id} and "checksum" in rep.recomputed[a.id]
    assert not (out / "failed" / f"{b.id}.json").exists()
    assert [verify_point(out, p) for p in sw.points] == [None, None]


# ---- the experiments' parallel parts run on the same mechanism ----------------------------------------------
def test_p3_rank_and_multitoken_parallel_parts_equal_serial(client, tmp_path):
    from attnsvm.experiments import get
    from attnsvm.experiments.base import Context
    from attnsvm.experiments.p3 import MT_ACCEPTED, _mt_all_d, _rank_trials

    cfg = get("p3-rank").configure({"trials": 6, "published_instances": 2, "workers": 2})
    idx = np.arange(6)
    par, ser = _rank_trials(cfg, 5, 5, 3, idx, client), _rank_trials(cfg, 5, 5, 3, idx, None)
    assert par["feasible"].sum() >= 2
    for k in ser:
        if k not in ("nuc_seconds", "nuc_cpu"):
            np.testing.assert_array_equal(par[k], ser[k], err_msg=k)
    # the rounds of every (variant, d) still short of `accepted` run together on the workers: the same
    # candidates, results and statistics as one round after the other in this process
    mt = get("p3-multitoken").configure({"record_every": 100, "workers": 2, "ds": [4, 6], "accepted": 2,
                                         "round_size": 8, "max_rounds": 4})
    per_par, per_ser = {}, {}
    stats_par = _mt_all_d(mt, Context(tmp_path / "par", config_hash="h"), per_par, client)
    ctx = Context(tmp_path / "ser", config_hash="h")
    stats_ser = _mt_all_d(mt, ctx, per_ser, None)
    assert per_par.keys() == per_ser.keys() and len(per_ser) == 4
    # bit for bit: a chunk computed in a worker is the same float64 computation as here (the final softmax
    # of the acceptance test was float32 in workers before: masked_max differed at 1e−5, corr_svmeq at 4e−8)
    for pair, ser in per_ser.items():
        assert np.sum(ser["reason"] == MT_ACCEPTED) > 0
        for k in ser:
            if k != "cpu_seconds":
                np.testing.assert_array_equal(per_par[pair][k], ser[k], err_msg=f"{pair} {k}")
    for a, b in zip(stats_par, stats_ser, strict=True):
        assert {k: v for k, v in a.items() if "seconds" not in k} == pytest.approx(
            {k: v for k, v in b.items() if "seconds" not in k}, nan_ok=True)
    for row in stats_ser:  # no pair trains a round beyond the one that gave its `accepted`-th run (or the cap)
        reasons = per_ser[(row["variant"], row["d"])]["_reason_all"]
        assert row["candidates_run"] == row["rounds"] * 8 == reasons.size
        assert np.sum(reasons[: (row["rounds"] - 1) * 8] == MT_ACCEPTED) < 2
        assert row["accepted"] == 2 or row["rounds"] == 4
    assert len({row["rounds"] for row in stats_ser}) > 1  # pairs that stopped early beside ones that went on

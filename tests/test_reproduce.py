"""The reproduce command end to end: resume after a kill, the catalog, config errors."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from attnsvm.cli import app
from attnsvm.experiments import IDS, all_experiments, get

runner = CliRunner()
ARGS = ["reproduce", "p3-local", "--trials", "40", "--steps", "400", "--no-progress"]


@pytest.fixture(scope="module")
def no_flow(tmp_path_factory) -> Path:
    # the NGD variants only: the kill test is about the trial store, and flow compiles for long
    path = tmp_path_factory.mktemp("cfg") / "p3-local.toml"
    path.write_text("flow = false\n")
    return path


def _cmd(out: Path, cfg: Path) -> list[str]:
    return [sys.executable, "-m", "attnsvm", *ARGS, "--config", str(cfg), "--out", str(out)]


def _run(out: Path, cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(out, cfg), capture_output=True, text=True, timeout=600)


def _claims(out: Path) -> list[str]:
    text = (out / "report.md").read_text()
    return [line for line in text.splitlines() if line.startswith("| ") and "verdict" not in line]


@pytest.mark.slow  # three processes of p3-local; resume of damaged/finished chunks is tested below in-process
def test_kill_and_resume_p3_local(tmp_path, no_flow):
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(out, no_flow), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    chunks: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        # a chunk is finished when its manifest is written (after the chunk itself)
        chunks = sorted((out / "trials").glob("*/*.json")) if (out / "trials").exists() else []
        if chunks:
            break
        time.sleep(0.05)
    assert chunks, "no trial chunk was written before the deadline"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p: p.stat().st_mtime_ns for p in (out / "trials").glob("*/*.npz") if p.with_suffix(".json").exists()}
    assert before and not (out / "report.md").exists()

    done = _run(out, no_flow)
    assert done.returncode == 0, done.stderr
    # every chunk finished before the kill was loaded, not recomputed
    for p, t in before.items():
        assert p.stat().st_mtime_ns == t
    text = (out / "report.md").read_text()
    assert f"{len(before)} loaded from a previous run" in text

    fresh = tmp_path / "fresh"
    assert _run(fresh, no_flow).returncode == 0
    assert _claims(out) == _claims(fresh)
    with np.load(out / "results.npz") as a, np.load(fresh / "results.npz") as b:
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])


def test_resume_refuses_a_different_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a quick run's default folder is not the full run's: the two never collide by default
    assert runner.invoke(app, ["reproduce", "p1-loss", "--quick", "--no-progress"]).exit_code == 0
    out = tmp_path / "runs" / "reproduce-quick" / "p1-loss"
    assert (out / "report.md").exists() and not (tmp_path / "runs" / "reproduce").exists()
    (out / "trials").mkdir(exist_ok=True)
    res = runner.invoke(app, ["reproduce", "p1-loss", "--no-progress", "--out", str(out)])
    assert res.exit_code == 2 and "another configuration" in res.output


def test_catalog_is_complete():
    """(Every experiment's TOML and quick settings: tests/test_configs.py.)"""
    ids = [e.id for e in all_experiments()]
    assert ids == list(IDS)


def test_bad_reproduce_arguments(tmp_path):
    res = runner.invoke(app, ["reproduce", "p9-nothing", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "unknown experiment" in res.output
    res = runner.invoke(app, ["reproduce", "--out", str(tmp_path)])
    assert res.exit_code != 0
    bad = tmp_path / "bad.toml"
    bad.write_text("not_a_setting = 3\n")
    res = runner.invoke(app, ["reproduce", "p3-local", "--config", str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "not_a_setting" in res.output
    with pytest.raises(ValueError, match="unknown experiment"):
        get("p4-x")


def test_huge_trials_are_refused_before_running(tmp_path):
    """--trials 1e9: one line with the estimate of the run estimator (the one `train` uses), exit 2, and
    nothing written; the estimate is run_bytes of the experiment's own shape."""
    from attnsvm.experiments.runner import experiment_bytes, resolve_config
    from attnsvm.runs import run_bytes

    out = tmp_path / "x"
    res = runner.invoke(app, ["reproduce", "p3-local", "--trials", "1000000000", "--out", str(out),
                              "--no-progress"])
    assert res.exit_code == 2 and "needs ≈" in res.output and "lower --trials" in res.output, res.output
    assert not out.exists()
    _, cfg = resolve_config("p3-local", trials=1000)
    nbytes, what = experiment_bytes(cfg)
    n, T, d = cfg.n, cfg.T, cfg.d
    records = cfg.steps // cfg.record_every + 1
    assert nbytes == run_bytes(1000, records, d * d, n * T * d + n * (d + T + 2), 1000, 32 + n + d * d)
    assert f"1000 trials of (n, T, d) = ({n}, {T}, {d})" in what
    # the run estimate is linear in the trials: 1e9 trials are 1e6 times 1000 (within the constant terms)
    big, _ = experiment_bytes(resolve_config("p3-local", trials=10**9)[1])
    assert big == pytest.approx(1e6 * nbytes, rel=1e-9)


def test_trials_measured_on_the_first_chunk_are_refused(tmp_path, monkeypatch):
    """An experiment keeping 8 kB per trial, 1000 trials, 4 MB available: refused after the first chunk of 10
    (8 MB > half of 4 MB), not after filling the memory; the message has the measured size."""
    import attnsvm.problem as P
    from attnsvm.experiments.base import Context

    monkeypatch.setattr(P, "available_memory", lambda: 4_000_000)
    ctx = Context(tmp_path, config_hash="h")
    calls = []

    def fn(idx):
        calls.append(idx.size)
        return {"x": np.zeros((idx.size, 1000))}

    with pytest.raises(ValueError, match=r"1000 trials of 'k' \(8 kB each, measured on the first chunk\) needs ≈ 8 MB"):
        ctx.trials("k", 1000, 10, fn)
    assert calls == [10]
    assert ctx.trials("k", 20, 10, fn)["x"].shape == (20, 1000)  # 160 kB: fine


def test_list_shows_every_id():
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0
    for i in IDS:
        assert i in res.output


def _label_texts(fig) -> list[str]:
    """Every title, axis label and legend entry of a figure."""
    out = [t.get_text() for t in fig.legends[0].get_texts()] if fig.legends else []
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    return [t for t in out if t]


def _check_figure_style(name: str, fig) -> None:
    """The package's figure rules, checked on the Figure objects the run saved."""
    import re

    from matplotlib.colors import to_hex

    from attnsvm.plots.common import PALETTE

    allowed = {to_hex(c) for c in PALETTE} | {"#000000"}
    for ax in fig.axes:
        # no empty panel, no legend inside a panel
        assert ax.get_visible() and (ax.lines or ax.collections), f"{name}: empty panel {ax.get_title()!r}"
        assert ax.get_legend() is None, f"{name}: legend inside panel {ax.get_title()!r}"
        for line in ax.lines:
            c = line.get_color()
            # palette colours, greys, or a sequential colour map (ordered quantities such as C)
            r, g, b = (int(to_hex(c)[i:i + 2], 16) for i in (1, 3, 5))
            assert to_hex(c) in allowed or max(r, g, b) - min(r, g, b) < 8 or name == "p1_loss_paths", \
                f"{name}: colour {to_hex(c)} outside the palette"
        # integer axes get integer ticks
        for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
            if axis.get_scale() == "linear" and (label in ("step", "NGD step", "$d$") or "rank" in label):
                ticks = [t for t in axis.get_majorticklocs() if np.isfinite(t)]
                assert np.allclose(ticks, np.round(ticks)), f"{name}: non-integer ticks {ticks} on {label!r}"
        # convergence (1 − corr / 1 − cos) is drawn on a log axis
        if re.search(r"1\s*[−-]\s*\\?(mathrm\{corr|cos)|1-\\(mathrm\{corr\}|cos)", ax.get_ylabel()):
            assert ax.get_yscale() == "log", f"{name}: {ax.get_ylabel()!r} not on a log axis"
        # bands of a correlation never rise above 1
        if "corr" in ax.get_ylabel() and ax.get_yscale() == "linear":
            for coll in ax.collections:
                for path in coll.get_paths():
                    assert path.vertices[:, 1].max() <= 1 + 1e-12, f"{name}: band above 1"
    for text in _label_texts(fig):
        plain = re.sub(r"\$[^$]*\$", "", text)  # outside mathtext: no TeX-like sub/superscripts
        assert not re.search(r"[A-Za-z)]_[A-Za-z0-9{]|\^[A-Za-z{]", plain), f"{name}: plain-text maths {text!r}"


@pytest.mark.slow  # every experiment (each has its own quick test) plus all figures again
def test_reproduce_all_quick(quick_run, monkeypatch):
    """`attnsvm reproduce --all --quick`, as CI runs it: every experiment, a summary report, no failure; every
    figure rendered (PNG and PDF) and following the package's figure rules.

    The per-experiment tests assert the quick numbers on the session's quick runs (tests/conftest.py); the
    command runs into the same folder, so it resumes every experiment: each must load all its trial chunks
    and compute none."""
    import matplotlib as mpl
    import matplotlib.image

    import attnsvm.plots.common as common

    saved: dict[str, object] = {}
    real_save = common.save_figure

    def recording_save(fig, folder, name):
        saved[name] = fig
        return real_save(fig, folder, name)

    monkeypatch.setattr(common, "save_figure", recording_save)
    for i in IDS:
        quick_run(i)
    rc_before = dict(mpl.rcParams)
    out = quick_run.root
    # one process: the figures are recorded by the monkeypatch above (the worker processes of the default
    # --jobs are tested in tests/test_reproduce_jobs.py)
    res = runner.invoke(app, ["reproduce", "--all", "--quick", "--no-progress", "--jobs", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = (out / "report.md").read_text()
    for i in IDS:
        assert (out / i / "report.md").exists() and f"[{i}]({i}/report.md)" in summary
        assert list((out / i / "figures").glob("*.png")), i
        text = (out / i / "report.md").read_text()
        assert "Where the time went: compile" in text
        assert "(0 trial chunks computed," in text, i  # resumed: nothing recomputed
    # where the time goes: one row per experiment and a total, the categories adding up to each wall time
    table = summary.split("## Where the time goes (s)")[1].split("##")[0].strip().splitlines()
    assert table[0] == "| experiment | total | compile | run | solvers | figures | io | workers |"
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert [r[0] for r in rows] == [*IDS, "all"]
    for r in rows:
        assert abs(sum(float(x) for x in r[2:]) - float(r[1])) <= 0.05 * len(r), r  # rounding of the cells
    # the style is applied inside the plotting functions only
    assert {k: v for k, v in mpl.rcParams.items() if rc_before.get(k) != v} == {}
    pngs = sorted(out.glob("*/figures/*.png"))
    assert {p.stem for p in pngs} == set(saved) and len(saved) >= len(IDS)
    for png in pngs:
        assert png.with_suffix(".pdf").stat().st_size > 1000
        img = matplotlib.image.imread(png)
        assert img.shape[0] > 300 and img.shape[1] > 500, png.name
        assert float(img[..., :3].std()) > 0.05, f"{png.name} is blank"
        _check_figure_style(png.stem, saved[png.stem])


def test_importing_plots_changes_no_global_state():
    # copies, not dict(rcParams): reading rcParams["backend"] would itself resolve the backend
    code = ("import matplotlib as mpl; b = mpl.rcParams._get_backend_or_none(); rc = mpl.rcParams.copy(); "
            "import attnsvm, attnsvm.plots.p1, attnsvm.plots.p2, attnsvm.plots.p3; "
            "assert mpl.rcParams._get_backend_or_none() == b, 'backend changed'; "
            "assert dict(mpl.rcParams.copy()) == dict(rc), 'rcParams changed'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


# ---- integrity of the trial store -------------------------------------------------------------------------

def _fn(idx: np.ndarray) -> dict[str, np.ndarray]:
    # deterministic per trial index, like every experiment's trials
    return {"a": np.sqrt(idx + 1.0), "b": np.outer(idx, np.arange(3)).astype(np.int64)}


def _store(out: Path, h: str = "h1"):
    from attnsvm.experiments.base import Context

    ctx = Context(out, config_hash=h)
    return ctx, ctx.trials("k", 20, 5, _fn)


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _bitflip(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0x10
    p.write_bytes(bytes(b))


def _shrink(p: Path) -> None:
    # a chunk rewritten with 5 of its rows (its manifest left as it was)
    with np.load(p) as f:
        arrays = {k: f[k][:2] for k in f.files}
    np.savez(p, **arrays)


def _shrink_with_manifest(p: Path) -> None:
    # the same, with a manifest that agrees with the shrunk file (checksum and shapes recomputed)
    import hashlib
    import json

    _shrink(p)
    m = p.with_suffix(".json")
    man = json.loads(m.read_text())
    man["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    for k in man["arrays"]:
        man["arrays"][k]["shape"][0] = 2
    m.write_text(json.dumps(man))


def _duplicate(p: Path) -> None:
    # chunk 0 copied over chunk 1, data and manifest
    first = sorted(p.parent.glob("*.npz"))[0]
    p.write_bytes(first.read_bytes())
    p.with_suffix(".json").write_bytes(first.with_suffix(".json").read_bytes())


def _duplicate_data_only(p: Path) -> None:
    first = sorted(p.parent.glob("*.npz"))[0]
    p.write_bytes(first.read_bytes())


def _zero(p: Path) -> None:
    p.write_bytes(b"")


def _no_manifest(p: Path) -> None:
    p.with_suffix(".json").unlink()


@pytest.mark.parametrize("damage", [_truncate, _bitflip, _shrink, _shrink_with_manifest, _duplicate,
                                    _duplicate_data_only, _zero, _no_manifest])
def test_damaged_chunk_is_recomputed(tmp_path, damage):
    _, ref = _store(tmp_path / "ref")
    out = tmp_path / "run"
    _store(out)
    victim = out / "trials" / "k" / "000005-000010.npz"
    damage(victim)
    ctx, got = _store(out)
    assert ctx.recomputed_chunks and ctx.recomputed_chunks[0].startswith("k/000005-000010.npz: ")
    assert len(ctx.recomputed_chunks) == 1 and ctx.computed_chunks == ["k/000005-000010.npz"]
    assert len(ctx.loaded_chunks) == 3 and ctx.trial_counts == {"k": 20}
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])
    # the recomputed chunk verifies again: a third pass loads everything
    ctx3, _ = _store(out)
    assert len(ctx3.loaded_chunks) == 4 and not ctx3.computed_chunks and not ctx3.recomputed_chunks


def test_chunks_of_another_configuration_are_not_loaded(tmp_path):
    _store(tmp_path)
    ctx, _ = _store(tmp_path, h="h2")
    assert len(ctx.recomputed_chunks) == 4 and all("another configuration" in r for r in ctx.recomputed_chunks)


def test_reproduce_reports_recomputed_chunks(tmp_path):
    """A chunk of a real experiment corrupted after the run: the rerun recomputes it, says so, same numbers."""
    out = tmp_path / "r"
    args = ["reproduce", "p1-loss", "--quick", "--no-progress", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    with np.load(out / "results.npz") as f:
        before = {k: f[k] for k in f.files}
    chunk = sorted((out / "trials").glob("*/*.npz"))[0]
    _bitflip(chunk)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    text = (out / "report.md").read_text()
    assert "1 recomputed after failing verification" in text and "sha256" in text
    assert "Trials: 22 trials in 2 store(s)" in text
    with np.load(out / "results.npz") as f:
        for k in before:
            np.testing.assert_array_equal(f[k], before[k])


# ---- run directories ----------------------------------------------------------------------------------------

def test_quick_and_full_runs_have_their_own_default_folders(tmp_path, monkeypatch):
    """The tour's `reproduce p1-joint --quick` right after a full run: its own folder, no conflict."""
    from attnsvm.experiments.runner import prepare_run_dir, read_run_state

    monkeypatch.chdir(tmp_path)
    full = tmp_path / "runs" / "reproduce" / "p1-loss"
    full.mkdir(parents=True)
    (full / "run.json").write_text('{"experiment": "p1-loss", "config_hash": "full", "status": "done"}')
    res = runner.invoke(app, ["reproduce", "p1-loss", "--quick", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "runs" / "reproduce-quick" / "p1-loss" / "report.md").exists()
    assert read_run_state(full)["config_hash"] == "full"  # untouched
    with pytest.raises(ValueError, match="another configuration"):
        prepare_run_dir("p1-loss", full, "quick")


def test_resume_refuses_a_different_config_unless_overwrite(tmp_path):
    out = tmp_path / "r"
    quick = ["reproduce", "p1-loss", "--quick", "--no-progress", "--out", str(out)]
    assert runner.invoke(app, quick).exit_code == 0
    cfg = tmp_path / "c.toml"
    cfg.write_text("Cs = [1.0, 2.0]\nsteps = 200\nlong_steps = 400\n")
    other = ["reproduce", "p1-loss", "--config", str(cfg), "--no-progress", "--out", str(out)]
    res = runner.invoke(app, other)
    assert res.exit_code == 2 and "finished run of another configuration" in res.output
    assert "--overwrite" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, [*other, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert "Cs = [1.0, 2.0]" in (out / "config.toml").read_text()
    assert "was replaced" in (out / "report.md").read_text()


def test_failed_run_does_not_block_its_folder(tmp_path, monkeypatch):
    import dataclasses
    import json

    from attnsvm import experiments

    exp = get("p1-loss")

    def boom(cfg, ctx):
        ctx.trials("x", 2, 1, lambda idx: {"a": idx * 1.0})
        raise ValueError("this configuration cannot run")

    out = tmp_path / "r"
    monkeypatch.setitem(experiments.REGISTRY, "p1-loss", dataclasses.replace(exp, run=boom))
    cfg = tmp_path / "c.toml"
    cfg.write_text("steps = 300\n")
    res = runner.invoke(app, ["reproduce", "p1-loss", "--config", str(cfg), "--no-progress", "--out", str(out)])
    assert res.exit_code == 2 and "cannot run" in res.output
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    monkeypatch.setitem(experiments.REGISTRY, "p1-loss", exp)
    res = runner.invoke(app, ["reproduce", "p1-loss", "--quick", "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert not (out / "trials" / "x").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "done"


def test_no_run_overwrites_a_summary_or_a_foreign_folder(tmp_path):
    summary = tmp_path / "all"
    summary.mkdir()
    (summary / "report.md").write_text("# attnsvm reproduce: all experiments\n\nolder summary\n")
    res = runner.invoke(app, ["reproduce", "p1-loss", "--quick", "--no-progress", "--out", str(summary)])
    assert res.exit_code == 2 and "summary" in res.output and str(summary / "p1-loss") in res.output.replace("\n", "")
    assert "older summary" in (summary / "report.md").read_text()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    res = runner.invoke(app, ["reproduce", "p1-loss", "--quick", "--no-progress", "--out", str(foreign)])
    assert res.exit_code == 2 and "not empty" in res.output
    afile = tmp_path / "file"
    afile.write_text("x")
    res = runner.invoke(app, ["reproduce", "p1-loss", "--quick", "--no-progress", "--out", str(afile)])
    assert res.exit_code == 2 and "is a file" in res.output
    # --all refuses an experiment's own folder as its summary folder
    run = tmp_path / "one"
    assert runner.invoke(app, ["reproduce", "p1-loss", "--quick", "--no-progress", "--out", str(run)]).exit_code == 0
    res = runner.invoke(app, ["reproduce", "--all", "--quick", "--no-progress", "--out", str(run)])
    assert res.exit_code == 2 and "one experiment" in res.output


def test_ctrl_c_says_how_to_resume(tmp_path, monkeypatch):
    import dataclasses
    import json

    from attnsvm import experiments

    exp = get("p1-loss")

    def interrupted(cfg, ctx):
        ctx.trials("x", 2, 1, lambda idx: {"a": idx * 1.0})
        raise KeyboardInterrupt

    monkeypatch.setitem(experiments.REGISTRY, "p1-loss", dataclasses.replace(exp, run=interrupted))
    out = tmp_path / "r"
    res = runner.invoke(app, ["reproduce", "p1-loss", "--quick", "--no-progress", "--out", str(out)])
    assert res.exit_code == 130
    text = " ".join(res.output.split())
    assert "interrupted" in text and f"attnsvm reproduce p1-loss --quick --out {out}` resumes" in text
    assert json.loads((out / "run.json").read_text())["status"] == "running"  # resumable, not failed
    assert len(list((out / "trials" / "x").glob("*.json"))) == 2


def test_misspelled_experiment_key_suggests_the_right_one(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("trails = 3\n")
    res = runner.invoke(app, ["reproduce", "p3-local", "--config", str(bad), "--no-progress", "--out",
                              str(tmp_path / "x")])
    assert res.exit_code == 2 and "trails: unknown key (did you mean 'trials'?)" in " ".join(res.output.split())
    assert not (tmp_path / "x").exists()


def test_chunks_on_dask_workers_equal_the_serial_ones(tmp_path):
    """Context.trials with a client: the missing chunks computed by worker processes (one XLA thread each), stored
    as they return, the same arrays in index order as computed here; a damaged one is recomputed, the rest load."""
    import os

    from attnsvm.cluster import dask_client
    from attnsvm.experiments.base import Context

    def fn(idx):  # defined here: pickled by value for the workers
        return {"a": np.sqrt(idx + 1.0), "pid": np.full(len(idx), os.getpid())}

    serial = Context(tmp_path / "serial", config_hash="h").trials("k", 20, 5, fn)
    keys = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "PYTHONHASHSEED", "PJRT_NPROC")
    before = {k: os.environ.get(k) for k in keys}
    with dask_client(workers=2, reuse=False) as client:
        assert set(client.run(lambda: os.environ.get("PJRT_NPROC")).values()) == {"1"}
        # not Dask's 64 KiB trim threshold (it makes every XLA buffer a fresh mmap), unless set here
        assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {
            before["MALLOC_TRIM_THRESHOLD_"]}
        assert {k: os.environ.get(k) for k in keys} == before  # the nannies' variables are not left here
        ctx = Context(tmp_path / "par", config_hash="h")
        par = ctx.trials("k", 20, 5, fn, client=client)
        np.testing.assert_array_equal(par["a"], serial["a"])
        assert os.getpid() not in set(par["pid"]) and sorted(ctx.computed_chunks) == [
            f"k/{s:06d}-{s + 5:06d}.npz" for s in range(0, 20, 5)]
        _truncate(tmp_path / "par" / "trials" / "k" / "000010-000015.npz")
        again = Context(tmp_path / "par", config_hash="h")
        got = again.trials("k", 20, 5, fn, client=client)
    assert {k: os.environ.get(k) for k in keys} == before
    assert again.computed_chunks == ["k/000010-000015.npz"] and len(again.loaded_chunks) == 3
    np.testing.assert_array_equal(got["a"], serial["a"])
    np.testing.assert_array_equal(got["pid"][:10], par["pid"][:10])  # loaded, not recomputed

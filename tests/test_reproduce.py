"""The reproduce command end to end: resume after a kill, the catalog, config errors."""

import os
import signal
import subprocess
import sys
import time
import tomllib
from importlib import resources
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


def test_kill_and_resume_p3_local(tmp_path, no_flow):
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(out, no_flow), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    chunks: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        chunks = sorted((out / "trials").glob("*/*.npz")) if (out / "trials").exists() else []
        if chunks:
            break
        time.sleep(0.05)
    assert chunks, "no trial chunk was written before the deadline"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p: p.stat().st_mtime_ns for p in (out / "trials").glob("*/*.npz")}
    assert before and not (out / "report.md").exists()
    assert not list((out / "trials").glob("*/*.tmp.npz"))  # no half-written chunk

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
    assert res.exit_code != 0 and "different configuration" in res.output


def test_catalog_is_complete_and_configs_match_defaults():
    ids = [e.id for e in all_experiments()]
    assert ids == list(IDS)
    for exp in all_experiments():
        text = resources.files("attnsvm.configs").joinpath(f"{exp.id}.toml").read_text()
        assert exp.config_cls.model_validate(tomllib.loads(text)) == exp.config_cls(), exp.id
        exp.configure(quick=True)  # the quick settings validate


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


def test_list_shows_every_id():
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0
    for i in IDS:
        assert i in res.output


def test_reproduce_all_quick(tmp_path):
    """`attnsvm reproduce --all --quick`, as CI runs it: every experiment, a summary report, no failure.

    The per-experiment tests assert the quick numbers; this checks the command that runs them all."""
    out = tmp_path / "all"
    res = runner.invoke(app, ["reproduce", "--all", "--quick", "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = (out / "report.md").read_text()
    for i in IDS:
        assert (out / i / "report.md").exists() and f"[{i}]({i}/report.md)" in summary
        assert list((out / i / "figures").glob("*.png")), i

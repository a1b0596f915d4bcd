"""`attnsvm problem`, plain progress lines off a terminal, and two CLI output fixes (help markup, solve at 80
columns)."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from attnsvm.cli import app
from attnsvm.experiments.base import Context
from attnsvm.problem import GENERATORS, load_problem, p1_single, unit_gaussian
from attnsvm.progress import PlainProgress, make_progress

runner = CliRunner()


def test_problem_list_names_every_generator_and_its_arguments():
    res = runner.invoke(app, ["problem", "--list"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for name in GENERATORS:
        assert name in res.output
    assert "attention=cross" in res.output and "(global|local)" in res.output


def test_problem_writes_the_generators_arrays(tmp_path):
    out = tmp_path / "sub" / "p.npz"
    res = runner.invoke(app, ["problem", "unit-gaussian", "--out", str(out), "n=3", "--T", "4", "d=5", "seed=7",
                              "--attention=self"])
    assert res.exit_code == 0, res.output
    got, want = load_problem(out), unit_gaussian(n=3, T=4, d=5, seed=7, attention="self")
    assert got.kind == "self" and got.query_index == 0
    for k in ("X", "Y", "v"):
        np.testing.assert_array_equal(getattr(got, k), getattr(want, k))
    # a literal-typed argument and the suffix .npz added (what np.savez does) is said
    res = runner.invoke(app, ["problem", "p1-single", "--out", str(tmp_path / "q"), "case=local"])
    assert res.exit_code == 0 and (tmp_path / "q.npz").exists()
    np.testing.assert_array_equal(load_problem(tmp_path / "q.npz").X, p1_single("local").X)


@pytest.mark.parametrize("args, fragment", [
    (["unit-gaussian", "--out", "P", "m=3"], "has no argument 'm'"),
    (["unit-gaussian", "--out", "P", "n=three"], "n='three': expected a int"),
    (["unit-gaussian", "--out", "P", "attention=cros"], "must be one of cross, self, prompt"),
    (["unit-gaussian", "--out", "P", "n"], "expected name=value"),
    (["p9", "--out", "P"], "unknown generator 'p9'"),
    (["unit-gaussian"], "--out"),
    ([], "give a GENERATOR"),
])
def test_problem_bad_input_is_one_line_exit_2(tmp_path, args, fragment):
    args = [str(tmp_path / "p.npz") if a == "P" else a for a in args]
    res = runner.invoke(app, ["problem", *args])
    assert res.exit_code == 2
    assert fragment in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_solve_prints_every_digit_of_W_at_80_columns(tmp_path):
    path = unit_gaussian(n=4, T=5, d=10, seed=3).save(tmp_path / "p.npz")
    res = runner.invoke(app, ["solve", str(path)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    W = np.array(json.loads(runner.invoke(app, ["solve", str(path), "--json"]).stdout)["solution"])
    text = res.output
    assert "…" not in text.split("per sequence")[0]
    printed = [float(x) for x in re.findall(r"-?\d+\.\d{6}", text.split("solution W:")[1].split("per sequence")[0])]
    np.testing.assert_allclose(np.array(printed).reshape(10, 10), W, atol=5e-7)


def test_no_help_text_loses_bracketed_words():
    """Rich markup eats "[word]" in help texts unless escaped: every bracketed word of every option and
    argument help must survive into `--help`."""
    import re

    import typer

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        out = " ".join(runner.invoke(app, [name, "--help"], env={"COLUMNS": "250"}).output.split())
        for param in cmd.params:
            for word in re.findall(r"\[(\w+)\]", getattr(param, "help", None) or ""):
                assert f"[{word}]" in out, f"`attnsvm {name} --help` drops [{word}]"


def test_train_help_shows_the_table_names():
    res = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "problem, model, optimizer" in res.output and "(, ," not in res.output


def test_progress_is_plain_lines_off_a_terminal():
    buf = io.StringIO()
    bar = make_progress(console=Console(file=buf), unit="trials")
    assert isinstance(bar, PlainProgress)
    with bar:
        t = bar.add_task("exp A", total=40)
        for _ in range(40):
            bar.update(t, advance=1)
    lines = buf.getvalue().splitlines()
    # a first sign of life, then one line per tenth, the last one saying done: 11 lines, as it happens
    assert len(lines) == 11 and lines[0].startswith("exp A: 1/40 trials (2 %)")
    assert lines[1].startswith("exp A: 4/40 trials (10 %)")
    assert lines[-1].startswith("exp A: 40/40 trials (100 %)") and lines[-1].endswith("done")
    # a terminal gets rich's bar; disabled gives None
    from rich.progress import Progress

    assert isinstance(make_progress(console=Console(file=io.StringIO(), force_terminal=True)), Progress)
    assert make_progress(enabled=False) is None


def test_experiment_context_reports_each_chunk(tmp_path):
    buf = io.StringIO()
    ctx = Context(tmp_path, progress=PlainProgress(file=buf))
    got = ctx.trials("k", 5, 2, lambda idx: {"x": idx * 2.0}, description="demo")
    np.testing.assert_array_equal(got["x"], [0, 2, 4, 6, 8])
    assert [ln.split(" (")[0] for ln in buf.getvalue().splitlines()] == ["demo: 2/5", "demo: 4/5", "demo: 5/5"]

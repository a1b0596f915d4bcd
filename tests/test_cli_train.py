import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import attnsvm as A
from attnsvm.cli import app
from attnsvm.config import ConfigError, parse_config

runner = CliRunner()


def _write(tmp_path, text):
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    return path


def test_train_writes_run_directory(tmp_path):
    cfg = _write(tmp_path, """
[problem]
generator = "unit-gaussian"
n = 3
T = 4
d = 5
seed = 7
[model]
parameterization = "factored"
[optimizer]
name = "ngd"
lr = 0.1
steps = 40
normalize = "block"
[init]
scheme = "gaussian"
scale = { K = 0.1, Q = 0.0 }
[run]
trials = 3
record_every = 10
""")
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", str(cfg), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} >= {"config.toml", "metrics.parquet", "final.npz", "summary.md"}
    df = pd.read_parquet(out / "metrics.parquet")
    assert len(df) == 3 * 5 and {"trial", "step", "loss", "excess_loss", "W_fro"} <= set(df.columns)
    with np.load(out / "final.npz") as f:
        assert f["W"].shape == (3, 5, 5) and f["K"].shape == (3, 5, 5) and f["selection"].shape == (3, 3)
        np.testing.assert_allclose(f["W"], f["K"] @ np.swapaxes(f["Q"], 1, 2), rtol=1e-12)
    # trial j uses data seed + j: trial 1's loss at step 0 is that of unit_gaussian(seed=8) at W = 0
    p = A.unit_gaussian(3, 4, 5, seed=8)
    l0 = np.mean(np.logaddexp(0, -p.Y * (p.X @ p.v).mean(axis=1)))
    assert df[(df.trial == 1) & (df.step == 0)].loss.item() == pytest.approx(l0, rel=1e-13)
    # the written config is valid and complete
    res2 = runner.invoke(app, ["train", str(out / "config.toml"), "--out", str(tmp_path / "run2"), "--no-progress"])
    assert res2.exit_code == 0, res2.output
    np.testing.assert_array_equal(np.load(tmp_path / "run2" / "final.npz")["W"], np.load(out / "final.npz")["W"])


def test_train_from_problem_file(tmp_path):
    A.p1_single("global").save(tmp_path / "prob.npz")
    cfg = _write(tmp_path, """
[problem]
file = "prob.npz"
[model]
parameterization = "prompt"
[optimizer]
steps = 100
[run]
record_every = 50
""")
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "r" / "final.npz")["p"].shape == (1, 3)


@pytest.mark.parametrize("text, key", [
    ('[problem]\ngenerator="unit-gaussian"\n[model]\nparameterisation="combined"', "model.parameterisation"),
    ('[problem]\ngenerator="unit-gaussian"\n[optimizer]\nlr=-1', "optimizer.lr"),
    ('[problem]\ngenerator="nope"', "problem"),
    ('[problem]\ngenerator="unit-gaussian"\n[optimizer]\nsteps=15\n[run]\nrecord_every=10', "record_every"),
    ('[model]\nparameterization="combined"', "problem"),
])
def test_bad_config_names_the_key(tmp_path, text, key):
    res = runner.invoke(app, ["train", str(_write(tmp_path, text)), "--out", str(tmp_path / "r")])
    assert res.exit_code != 0
    assert key in res.output


def test_prompt_problem_with_w_model_is_refused(tmp_path):
    A.p1_single().save(tmp_path / "prob.npz")
    res = runner.invoke(app, ["train", str(_write(tmp_path, '[problem]\nfile="prob.npz"\n')), "--out",
                              str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code != 0 and "needs queries" in res.output


def test_parse_config_defaults():
    cfg = parse_config({"problem": {"generator": "p1-single", "case": "local"}})
    assert cfg.problem.generator_args == {"case": "local"}
    with pytest.raises(ConfigError, match="problem"):
        parse_config({"problem": {"file": "x.npz", "n": 3}})


# ---- run directories and user errors (one line, exit 2, checked before training) --------------------------

SMALL = """
[problem]
generator = "unit-gaussian"
n = 3
T = 4
d = 3
[optimizer]
steps = 20
[run]
record_every = 10
"""


def _one_line_error(res, *needles):
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    text = lines[0]
    for n in needles:
        assert n in text, (n, text)


def test_out_with_another_config_is_refused_unless_overwrite(tmp_path):
    a = _write(tmp_path, SMALL)
    out = tmp_path / "r"
    assert runner.invoke(app, ["train", str(a), "--out", str(out), "--no-progress"]).exit_code == 0
    first = (out / "config.toml").read_text()
    # the same config: run again, same numbers
    assert runner.invoke(app, ["train", str(a), "--out", str(out), "--no-progress"]).exit_code == 0
    assert (out / "config.toml").read_text() == first
    b = tmp_path / "b.toml"
    b.write_text(SMALL.replace("d = 3", "d = 4") + "verdict = false\n")
    _one_line_error(runner.invoke(app, ["train", str(b), "--out", str(out), "--no-progress"]),
                    "holds a run of another config", "--overwrite")
    assert (out / "config.toml").read_text() == first  # untouched
    res = runner.invoke(app, ["train", str(b), "--out", str(out), "--no-progress", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert "d = 4" in (out / "config.toml").read_text()
    assert not (out / "verdict.parquet").exists()  # the old run's verdict does not survive
    assert np.load(out / "final.npz")["W"].shape == (1, 4, 4)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    _one_line_error(runner.invoke(app, ["train", str(a), "--out", str(foreign)]), "not empty")
    afile = tmp_path / "f"
    afile.write_text("x")
    _one_line_error(runner.invoke(app, ["train", str(a), "--out", str(afile)]), "is a file")


def test_relative_problem_file_is_read_from_the_config_folder(tmp_path, monkeypatch):
    cfg_dir = tmp_path / "cfgs"
    cfg_dir.mkdir()
    A.p1_single("global").save(cfg_dir / "prob.npz")
    A.p1_single("local").save(tmp_path / "prob.npz")  # same name in the working directory: never read
    monkeypatch.chdir(tmp_path)
    cfg = cfg_dir / "c.toml"
    cfg.write_text('[problem]\nfile = "prob.npz"\n[model]\nparameterization = "prompt"\n'
                   "[optimizer]\nsteps = 20\n[run]\nrecord_every = 10\n")
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 0, res.output
    import hashlib
    import tomllib

    written = tomllib.loads((tmp_path / "r" / "config.toml").read_text())["problem"]
    assert written["file"] == str((cfg_dir / "prob.npz").resolve())
    assert written["sha256"] == hashlib.sha256((cfg_dir / "prob.npz").read_bytes()).hexdigest()
    # the written config names its data: after the file changes, rerunning it is refused
    A.p1_single("local").save(cfg_dir / "prob.npz")
    _one_line_error(runner.invoke(app, ["train", str(tmp_path / "r" / "config.toml"), "--out",
                                        str(tmp_path / "r2")]), "sha256", "changed")


@pytest.mark.parametrize("patch, needles", [
    ("[optimizer]\nsteps = 20\nlr = inf\n", ["optimizer.lr"]),
    ("[optimizer]\nsteps = 20\n[run]\nrecord_every = 10\nseed = -1\n", ["run.seed", "greater than or equal to 0"]),
    ("[optimizer]\nsteps = 20\n[run]\nrecord_every = 10\ntrials = true\n", ["run.trials: expected a number, got true"]),
    ("[optimizer]\nsteps = 20\n[run]\nrecord_every = 10\ntrials = 1e9\n", ["1000000000 trials", "of memory",
                                                                          "lower run.trials"]),
    ("[optimizer]\nsteps = 20\nfreeze = [\"bogus\"]\n[run]\nrecord_every = 10\n", ["optimizer.freeze", "bogus"]),
    ("[optimizer]\nsteps = 20\n[run]\nrecord_every = 10\ntrails = 3\n", ["run.trails: unknown key (did you mean "
                                                                        "'trials'?)"]),
    ("[optimizer]\nsteps = 20\nlrr = 0.1\n[run]\nrecord_every = 10\n", ["did you mean 'lr'?"]),
])
def test_bad_numbers_are_one_line_before_training(tmp_path, patch, needles):
    base = SMALL.split("[optimizer]")[0]
    res = runner.invoke(app, ["train", str(_write(tmp_path, base + patch)), "--out", str(tmp_path / "r")])
    _one_line_error(res, *needles)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, needles", [
    ("n = true", ["problem.n: generator 'unit-gaussian' expects an integer (default 6), got true"]),
    ("n = 3\nT = false", ["problem.T:", "expects an integer", "got false"]),
    ("n = 2.5", ["problem.n:", "got 2.5"]),
    ('d = "4"', ["problem.d:", "got '4'"]),
    ("attention = 1", ["problem.attention:", "expects a string"]),
    ("seed = true", ["problem.seed: expected a number, got true"]),
    ("m = 3", ["problem.m: generator 'unit-gaussian' has no such argument"]),
])
def test_generator_arguments_are_typed(tmp_path, args, needles):
    """A generator argument of the wrong type (true read as 1 before) is one line naming the field, exit 2."""
    cfg = _write(tmp_path, f'[problem]\ngenerator = "unit-gaussian"\n{args}\n[optimizer]\nsteps = 2\n'
                 "[run]\nrecord_every = 1\n")
    _one_line_error(runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "r")]), *needles)
    assert not (tmp_path / "r").exists()


def test_bool_is_no_number_anywhere(tmp_path):
    """Every numeric field of every config refuses true/false: sections, lists, generator arguments, the
    Python generators, and the experiments' --config files."""
    from attnsvm.config import ConfigError, parse_config
    from attnsvm.experiments import all_experiments
    from attnsvm.problem import generate

    for data, key in (({"run": {"record_every": True}}, "run.record_every"),
                      ({"model": {"heads": True}}, "model.heads"),
                      ({"optimizer": {"name": "path", "radii": [1.0, True]}}, "optimizer.radii"),
                      ({"init": {"scale": True}}, "init.scale")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.") + ": expected a number"):
            parse_config({"problem": {"generator": "unit-gaussian"}, **data})
    with pytest.raises(ConfigError, match=r"^invalid config: optimizer\.freeze: unknown block"):  # not "(top level)"
        parse_config({"problem": {"generator": "unit-gaussian"}, "optimizer": {"freeze": ["bogus"]}})
    with pytest.raises(ValueError, match="n: generator 'p3-paths' expects an integer"):
        generate("p3-paths", n=True)
    for exp in all_experiments():
        ints = [k for k, f in exp.config_cls.model_fields.items() if f.annotation is int]
        for k in ints[:2]:
            with pytest.raises(ValueError, match=f"{exp.id} config: {k}: expected a number, got true"):
                exp.configure({k: True})
            with pytest.raises(ValueError, match=f"{k}: expected a number"):
                exp.configure({k: True}, quick=True)  # also where the quick settings would replace it


def test_problem_file_errors_are_one_line(tmp_path):
    (tmp_path / "dir.npz").mkdir()
    cfg = _write(tmp_path, '[problem]\nfile = "dir.npz"\n')
    _one_line_error(runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "r")]), "is a folder")
    np.save(tmp_path / "x.npy", np.zeros(3))
    cfg = _write(tmp_path, '[problem]\nfile = "x.npy"\n')
    _one_line_error(runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "r")]), ".npy file")


def test_diagonal_flow_default_init_is_not_the_stationary_point(tmp_path):
    cfg = _write(tmp_path, SMALL.split("[optimizer]")[0] + '[model]\nparameterization = "diagonal"\n'
                 '[optimizer]\nname = "flow"\nstop_radius = 3.0\n[run]\nrecords = 5\n')
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 0, res.output
    f = np.load(tmp_path / "r" / "final.npz")
    assert np.linalg.norm(f["W"]) > 1.0  # it moved away from θ₀ (θ = 0 would have a zero gradient)

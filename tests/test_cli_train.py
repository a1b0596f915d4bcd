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

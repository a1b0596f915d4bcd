"""The log-space saturation stop: E can be asked to fall far below the smallest float (log E = −1e5)."""

from __future__ import annotations

import numpy as np
import pytest

from attnsvm.models import Model
from attnsvm.problem import unit_gaussian
from attnsvm.training import Flow, Init, LogSaturation, Radius, Saturation, Save, train


def test_log_saturation_level_is_checked() -> None:
    for bad in (0.0, 1.0, float("nan"), float("-inf")):
        with pytest.raises(ValueError, match="log_saturation"):
            LogSaturation(bad)
    assert LogSaturation(-1e5).traced() == -1e5
    # the same flow program for any level (the level is traced)
    assert LogSaturation(-1e5).static() == LogSaturation(-3.0).static()


@pytest.mark.slow  # two flow compilations and a flow to ‖W‖ = 1e4: ≈ 1 min on a free 2-core machine
def test_factored_flow_runs_past_float_saturation_to_the_radius() -> None:
    """(K, Q) flow on P2-full-size generic data (n = 4, T = 3, d = 6, exponential loss summed) with
    stop_log_saturation = −1e5 and stop_radius = 1e4: it stops by radius, at ‖W‖_F = 1e4, with finite records
    whose log E is far below log(5e−324) ≈ −744 (E itself underflows there; the records keep log E)."""
    prob = unit_gaussian(4, 3, 6, seed=0)
    run = train(prob, Model("factored", loss="exponential", reduction="sum"), Flow(error_estimate=False),
                trials=2, init=Init("gaussian", 0.1, seed=0), save=Save(records=8),
                stop=[LogSaturation(-1e5), Radius(1e4)])
    assert list(run.stop_reason) == ["radius", "radius"]
    np.testing.assert_allclose(run.metrics["W_fro"][:, -1], 1e4, rtol=1e-6)
    for k in ("loss", "W_fro", "log_saturation", "sigma"):
        assert np.all(np.isfinite(run.metrics[k])), k
    assert np.all(run.metrics["log_saturation"][:, -1] < -744)
    assert np.all(run.metrics["log_saturation"][:, -1] > -1e5)
    assert np.all(np.diff(run.metrics["log_saturation"], axis=1) < 0)  # E falls along the flow
    # the float stop cannot express this level: its smallest positive level (5e−324) stops much earlier
    early = train(prob, Model("factored", loss="exponential", reduction="sum"), Flow(error_estimate=False),
                  trials=2, init=Init("gaussian", 0.1, seed=0), save=Save(records=8),
                  stop=[Saturation(5e-324), Radius(1e4)])
    assert list(early.stop_reason) == ["saturation", "saturation"]
    assert np.all(early.metrics["W_fro"][:, -1] < 1e4)


def test_run_kkt_records_epsilon_along_a_run(tmp_path) -> None:
    """``run.kkt = true``: metrics.parquet carries the ε-KKT of every record against each reference norm, equal to
    the certificate of the recorded direction."""
    import pandas as pd
    from typer.testing import CliRunner

    from attnsvm.cli import app
    from attnsvm.svm import kkt_certificate

    cfg = tmp_path / "c.toml"
    cfg.write_text('[problem]\ngenerator = "unit-gaussian"\nn = 3\nT = 3\nd = 4\nseed = 1\n'
                   '[model]\nparameterization = "combined"\n[optimizer]\nname = "ngd"\nsteps = 100\nlr = 0.5\n'
                   '[run]\ntrials = 2\nrecord_every = 50\nreferences = ["fro", "nuclear"]\nkkt = true\n'
                   'verdict = false\n')
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(cfg), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "metrics.parquet")
    assert {"kkt_fro", "kkt_nuclear"} <= set(df.columns)
    with np.load(out / "final.npz") as f:
        W = f["W"]
    last = df[df.step == df.step.max()].sort_values("trial")
    for b in range(2):
        c = kkt_certificate(unit_gaussian(3, 3, 4, seed=1 + b), W[b], "fro")
        assert last.kkt_fro.iloc[b] == pytest.approx(c.epsilon, rel=1e-9)
    # the Frobenius ε of NGD on W falls along the run (P3: W → W^mm)
    first = df[df.step == 50].sort_values("trial")
    assert np.all(last.kkt_fro.to_numpy() <= first.kkt_fro.to_numpy())

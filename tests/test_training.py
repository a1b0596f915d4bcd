"""The training pieces: optimizer chains (optax), the registry, the config union, per-trial status."""

from __future__ import annotations

from typing import Literal

import numpy as np
import optax
import pytest

import attnsvm as A
from attnsvm.config import ConfigError, parse_config
from attnsvm.models import Model, gradient, model_data
from attnsvm.training import GD, NGD, OPTIMIZERS, Descent, Init, OptimizerSpec, Save, register_optimizer, train
from attnsvm.training.optim import unscale

PROB = A.unit_gaussian(3, 4, 5, seed=0)
W0 = 0.3 * np.random.default_rng(1).standard_normal((5, 5))


def _grad(W):
    return np.asarray(gradient(Model("combined"), {"W": W}, model_data(PROB, Model("combined")))["W"])


@pytest.mark.parametrize("eps", [0.0, 0.5, 2.2e-16])
def test_ngd_step_with_and_without_eps(eps):
    """One NGD step is W − η∇/(‖∇‖ + eps) (eps = 0: the exact ∇/‖∇‖), by hand from the plain gradient."""
    res = train(PROB, Model("combined"), Descent(NGD(lr=0.3, eps=eps), 1), save=Save(every=1),
                init=Init(given={"W": W0}))
    g = _grad(W0)
    np.testing.assert_allclose(res.W[0], W0 - 0.3 * g / (np.linalg.norm(g) + eps), rtol=1e-13, atol=1e-15)


def test_eps_makes_steps_vanish_with_the_gradient():
    """The notebook's arithmetic: once ‖∇‖ ≪ eps the eps-normalized step shrinks with it (here ‖∇‖ ≈ 1e−3 of
    eps = 10 gives steps ≈ 1e−4 · lr), while the exact step keeps length lr."""
    run = {e: train(PROB, Model("combined"), Descent(NGD(lr=0.1, eps=e), 10), save=Save(every=10),
                    init=Init(given={"W": W0})) for e in (0.0, 10.0)}
    exact = np.linalg.norm(run[0.0].W[0] - W0)
    damped = np.linalg.norm(run[10.0].W[0] - W0)
    assert exact == pytest.approx(1.0, rel=0.05)  # 10 steps of length 0.1, nearly aligned
    assert damped < 0.01 * exact


def test_block_normalization_and_freeze():
    model = Model("factored")
    init = Init("gaussian", 0.3, seed=2).params(model, PROB, 1)
    res = train(PROB, model, Descent(NGD(lr=0.05, normalize="block"), 1), save=Save(every=1), init=Init(given=init))
    for b in ("K", "Q"):  # each block moved by exactly lr
        assert np.linalg.norm(res.params[b][0] - init[b][0]) == pytest.approx(0.05, rel=1e-12)
    fr = train(PROB, model, Descent(NGD(lr=0.05, freeze=("Q",)), 1), save=Save(every=1), init=Init(given=init))
    np.testing.assert_array_equal(fr.params["Q"], init["Q"])
    # the global norm leaves the frozen block out: K moves by exactly lr
    assert np.linalg.norm(fr.params["K"][0] - init["K"][0]) == pytest.approx(0.05, rel=1e-12)


def test_a_new_optimizer_is_one_class_and_one_registry_line(tmp_path):
    """Defined outside the package: sign descent θ ← θ − lr·sign(∇L) (an optax transform after unscale),
    usable from Python and from a config (its own keys validated), with optimizer state carried."""

    class SignDescent(OptimizerSpec):
        name: Literal["test-sign"] = "test-sign"

        def direction(self):
            return optax.chain(unscale(), optax.scale_by_sign(), optax.scale(-self.lr))

    class Momentum(OptimizerSpec):  # a stateful chain: heavy ball
        name: Literal["test-momentum"] = "test-momentum"
        beta: float = 0.5

        def direction(self):
            return optax.chain(unscale(), optax.trace(decay=self.beta), optax.scale(-self.lr))

    register_optimizer(SignDescent)
    register_optimizer(Momentum)
    try:
        res = train(PROB, Model("combined"), Descent(SignDescent(lr=0.01), 1), save=Save(every=1),
                    init=Init(given={"W": W0}))
        np.testing.assert_allclose(res.W[0], W0 - 0.01 * np.sign(_grad(W0)), rtol=1e-15)
        mom = train(PROB, Model("combined"), Descent(Momentum(lr=0.1, beta=0.5), 2), save=Save(every=1),
                    init=Init(given={"W": W0}))
        W1 = W0 - 0.1 * _grad(W0)
        np.testing.assert_allclose(mom.W[0],
                                   W1 - 0.1 * (_grad(W1) + 0.5 * _grad(W0)), rtol=1e-12)
        cfg = parse_config({"problem": {"generator": "unit-gaussian", "n": 3, "T": 4, "d": 5},
                            "optimizer": {"name": "test-sign", "lr": 0.01, "steps": 10}})
        assert cfg.optimizer.name == "test-sign"
        with pytest.raises(ConfigError, match="optimizer.beta"):
            parse_config({"problem": {"generator": "unit-gaussian"}, "optimizer": {"name": "test-sign", "beta": 1}})
    finally:
        OPTIMIZERS.pop("test-sign")
        OPTIMIZERS.pop("test-momentum")


def test_config_union_validates_every_key():
    base = {"problem": {"generator": "unit-gaussian", "n": 3, "T": 4, "d": 5}}
    for opt, key in (({"name": "ngd", "rtol": 1e-6}, "optimizer.rtol"),      # a flow key on a descent
                     ({"name": "gd", "normalize": "block"}, "optimizer.normalize"),  # an NGD key on GD
                     ({"name": "flow", "lr": 0.1}, "optimizer.lr"),
                     ({"name": "path"}, "optimizer.radii"),
                     ({"name": "ngd", "eps": -1.0}, "optimizer.eps"),
                     ({"name": "ngd", "lr": float("inf")}, "optimizer.lr"),
                     ({"name": "bogus"}, "name")):
        with pytest.raises(ConfigError, match=key):
            parse_config({**base, "optimizer": opt})
    with pytest.raises(ConfigError, match="init.scale: unknown block"):
        parse_config({**base, "model": {"parameterization": "factored"}, "init": {"scale": {"Bogus": 1.0}}})
    with pytest.raises(ConfigError, match="optimizer.freeze: unknown block"):
        parse_config({**base, "optimizer": {"name": "flow", "freeze": ["bogus"]}})
    flow = parse_config({**base, "optimizer": {"name": "flow"}}).optimizer
    assert flow.max_steps == 20_000  # one default: the engine's


def test_flow_config_keeps_freeze_and_path(tmp_path):
    """Settings that used to be dropped for flows (freeze, keep_path) reach the engine."""
    from attnsvm.runs import train_from_config

    cfg = parse_config({"problem": {"generator": "unit-gaussian", "n": 3, "T": 4, "d": 4},
                        "model": {"parameterization": "factored"},
                        "optimizer": {"name": "flow", "freeze": ["Q"], "stop_radius": 5.0, "rtol": 1e-6,
                                      "atol": 1e-8, "error_estimate": False},
                        "init": {"scheme": "gaussian", "scale": 0.5}, "run": {"records": 4, "keep_path": True,
                                                                               "verdict": False}})
    res, _ = train_from_config(cfg, tmp_path / "r")
    q0 = Init("gaussian", 0.5).params(Model("factored"), A.unit_gaussian(3, 4, 4), 1)["Q"]
    np.testing.assert_array_equal(res.params["Q"], q0)
    assert res.path.shape == (1, 4, 4, 4) and res.stop_reason.tolist() == ["radius"]
    with np.load(tmp_path / "r" / "final.npz") as f:
        assert f["W_path"].shape == (1, 4, 4, 4) and f["stop_reason"].tolist() == ["radius"]


def test_diverged_trials_are_marked_counted_and_left_out(tmp_path):
    from attnsvm.runs import summary_rows

    W = np.stack([W0, W0, W0])
    W[1, 0, 0] = np.nan
    res = train(PROB, Model("combined"), Descent(GD(lr=0.1), 10), trials=3, save=Save(every=10),
                init=Init(given={"W": W}))
    assert res.status.tolist() == ["ok", "diverged", "ok"] and res.n_diverged == 1
    rows = dict(summary_rows(res))
    assert rows["diverged trials (non-finite values; left out below)"] == "1"
    assert "nan" not in rows["loss"] and "nan" not in rows["‖W‖_F"]
    assert float(rows["loss"].split()[0]) == pytest.approx(res.metrics["loss"][0, -1], rel=1e-5)
    from attnsvm.metrics import verdict_summary, verdicts

    df = verdicts(PROB, res)
    assert df.status.tolist() == ["ok", "diverged", "ok"]
    assert dict(verdict_summary(df))["diverged trials"] == "1"


def test_norms_and_correlations_do_not_overflow():
    """W = 1e200·W0: ‖W‖_F and corr(W, ref) are those of W0 scaled (W² would overflow)."""
    ref = np.eye(5)
    kw = dict(save=Save(every=1), references={"eye": ref}, trials=1)
    a = train(PROB, Model("combined"), Descent(GD(lr=1e-300), 0), init=Init(given={"W": W0}), **kw)
    b = train(PROB, Model("combined"), Descent(GD(lr=1e-300), 0), init=Init(given={"W": 1e200 * W0}), **kw)
    assert b.metrics["W_fro"][0, 0] == pytest.approx(1e200 * a.metrics["W_fro"][0, 0], rel=1e-14)
    assert b.correlations["eye"][0, 0] == pytest.approx(a.correlations["eye"][0, 0], rel=1e-14)
    assert b.status.tolist() == ["ok"]


def test_import_has_no_side_effects_and_train_is_float64():
    """In a fresh process: importing attnsvm leaves JAX in float32 and matplotlib's backend and style as
    they were, while train() still computes in float64 (and leaves the setting as it found it)."""
    import subprocess
    import sys

    code = """
import matplotlib, jax
backend, size = matplotlib.get_backend(), matplotlib.rcParams["font.size"]
import attnsvm as A
assert jax.config.jax_enable_x64 is False
assert matplotlib.get_backend() == backend and matplotlib.rcParams["font.size"] == size
run = A.train(A.p1_single("global"), A.Model("prompt"), A.Descent(A.NGD(lr=0.1), 10), save=A.Save(every=10))
assert run.W.dtype.name == "float64" and run.metrics["loss"].dtype.name == "float64"
assert jax.config.jax_enable_x64 is False
import jax.numpy as jnp
assert jnp.ones(1).dtype.name == "float32"
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr

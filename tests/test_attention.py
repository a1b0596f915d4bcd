"""The parameterization protocol: a parameterization defined outside the package trains through every
method, and multi-head attention (H = 1 is the single-head model; per-head records, files and verdicts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attnsvm as A
from attnsvm.attention import Parameterization
from attnsvm.models import Model, gradient, loss, model_data
from attnsvm.training import GD, NGD, Descent, Flow, Init, Radius, RegularizationPath, Save, train

PROB = A.unit_gaussian(3, 4, 5, seed=0)


@dataclass(frozen=True)
class Symmetric(Parameterization):
    """W = A + Aᵀ: a parameterization the package does not know (linear in θ)."""

    name: ClassVar[str] = "test-symmetric"
    blocks: ClassVar[tuple[str, ...]] = ("A",)

    def shapes(self, d, d_key):
        return {"A": (d, d)}

    def weights(self, params):
        return params["A"] + params["A"].T


A0 = 0.2 * np.random.default_rng(3).standard_normal((5, 5))


def test_outside_parameterization_gradient_is_autodiff():
    model = Model(Symmetric(), loss="exponential", reduction="sum")
    data = model_data(PROB, model)
    p = {"A": jnp.asarray(A0)}
    g = gradient(model, p, data)["A"]
    ga = jax.grad(lambda q: loss(model, q, data))(p)["A"]
    np.testing.assert_allclose(g, ga, rtol=1e-11, atol=1e-14)


def test_outside_parameterization_trains_through_every_method():
    model = Model(Symmetric())
    # Descent: one GD step is A − η(G + Gᵀ), G = ∇_W L at W = A + Aᵀ (the combined model's gradient)
    gd = train(PROB, model, Descent(GD(lr=0.5), 1), save=Save(every=1), init=Init(given={"A": A0}))
    W0 = A0 + A0.T
    G = np.asarray(gradient(Model("combined"), {"W": jnp.asarray(W0)}, model_data(PROB, Model("combined")))["W"])
    np.testing.assert_allclose(gd.params["A"][0], A0 - 0.5 * (G + G.T), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gd.W[0], gd.W[0].T)
    ngd = train(PROB, model, Descent(NGD(lr=0.1), 200), save=Save(every=100), init=Init(given={"A": A0}))
    assert ngd.metrics["loss"][0, -1] < ngd.metrics["loss"][0, 0] and ngd.status.tolist() == ["ok"]
    # Flow: stops on the radius, exactly there
    fl = train(PROB, model, Flow(rtol=1e-8, atol=1e-10, error_estimate=False), stop=Radius(5.0),
               init=Init(given={"A": A0}), save=Save(records=3))
    assert fl.stop_reason.tolist() == ["radius"]
    assert fl.metrics["W_fro"][0, -1] == pytest.approx(5.0, rel=1e-9)
    # Regularization path: stationary at every radius, on the sphere ‖A‖_F = R
    rp = train(PROB, model, RegularizationPath((1.0, 2.0)), init=Init(given={"A": A0}))
    assert np.all(rp.metrics["stationarity"] <= 1e-6)
    np.testing.assert_allclose(np.linalg.norm(rp.params["A"][0]), 2.0, rtol=1e-9)


@pytest.mark.parametrize("which", ["descent", pytest.param("flow", marks=pytest.mark.slow)])  # 2 flow compiles
def test_one_head_is_the_single_head_model(which):
    W0 = Init("gaussian", 0.1).params(Model("combined"), PROB, 2)["W"]
    ref = {"eye": np.eye(5)}
    methods = {"descent": (Descent(NGD(lr=0.1), 40), dict(save=Save(every=10))),
               "flow": (Flow(rtol=1e-8, atol=1e-10), dict(stop=Radius(3.0), save=Save(records=4)))}
    for method, kw in (methods[which],):
        a = train(PROB, Model("combined"), method, trials=2, init=Init(given={"W": W0}), references=ref, **kw)
        b = train(PROB, Model("multihead", heads=1), method, trials=2, init=Init(given={"W": W0[:, None]}),
                  references=ref, **kw)
        assert b.W.shape == (2, 1, 5, 5) and b.selection.shape == a.selection.shape[:2] + (1, 3)
        np.testing.assert_allclose(b.W[:, 0], a.W, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(b.selection[:, :, 0], a.selection)
        np.testing.assert_allclose(b.correlations["eye"][..., 0], a.correlations["eye"], rtol=1e-12, atol=1e-14)
        for k, v in a.metrics.items():
            np.testing.assert_allclose(b.metrics[k], v, rtol=1e-12, atol=1e-14, err_msg=k)


def test_multihead_gradient_and_heads_differ():
    model = Model("multihead", heads=3, head_parameterization="factored", hidden=2, reduction="sum")
    data = model_data(PROB, model)
    assert data.v.shape == (3, 5)
    np.testing.assert_allclose(data.v[0], PROB.v)
    rng = np.random.default_rng(0)
    p = {k: jnp.asarray(rng.standard_normal(s)) for k, s in model.param_shapes(5).items()}
    g = gradient(model, p, data)
    ga = jax.grad(lambda q: loss(model, q, data))(p)
    for b in g:
        np.testing.assert_allclose(g[b], ga[b], rtol=1e-11, atol=1e-14)
    # f = Σ_h v_hᵀ Xᵀ softmax(X W_h z)
    W = np.einsum("hdm,hem->hde", np.asarray(p["K"]), np.asarray(p["Q"]))
    a = np.einsum("itd,hde,ie->hit", PROB.X, W, PROB.queries)
    s = np.exp(a - a.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    f = np.einsum("hit,itd,hd->i", s, PROB.X, np.asarray(data.v))
    assert float(loss(model, p, data)) == pytest.approx(np.sum(np.logaddexp(0, -PROB.Y * f)), rel=1e-12)


def test_multihead_from_a_config(tmp_path):
    from attnsvm.config import parse_config
    from attnsvm.runs import train_from_config

    cfg = parse_config({"problem": {"generator": "unit-gaussian", "n": 3, "T": 4, "d": 5},
                        "model": {"parameterization": "multihead", "heads": 2},
                        "optimizer": {"name": "ngd", "steps": 200}, "run": {"trials": 2, "record_every": 100}})
    res, verdict = train_from_config(cfg, tmp_path / "r")
    with np.load(tmp_path / "r" / "final.npz") as f:
        assert f["W"].shape == (2, 2, 5, 5) and f["selection"].shape == (2, 2, 3)
    # one verdict row per (trial, head): each head against the Frobenius SVM of its own selection
    assert len(verdict) == 4 and set(verdict["head"]) == {0, 1}
    assert np.all((verdict.corr_fro > -1) & (verdict.corr_fro <= 1))

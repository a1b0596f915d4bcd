"""The md, sign and adam optimizers of the registry, through attnsvm.train: ℓ2 mirror descent is
normalized GD on a run, the ℓp mirror step holds on the engine's direction, steps stay exact at saturation,
configs are validated."""

from __future__ import annotations

import numpy as np
import pytest

from attnsvm.models import Model
from attnsvm.problem import unit_gaussian
from attnsvm.training import MD, NGD, OPTIMIZERS, Adam, Descent, Init, Save, Sign, train


@pytest.fixture(scope="module")
def problems():
    return [unit_gaussian(6, 8, 10, seed=s) for s in range(4)]


def test_md_p2_equals_normalized_gd_on_a_run(problems):
    """2000 steps on W from N(0, 1) (saturated at the end): final W equal to 1e−12 relative."""
    W0 = np.random.default_rng(0).normal(size=(4, 10, 10))
    a = train(problems, Model("combined"), Descent(NGD(lr=0.1), 2000), init=Init(given={"W": W0}))
    b = train(problems, Model("combined"), Descent(MD(lr=0.1, p=2.0), 2000), init=Init(given={"W": W0}))
    assert a.metrics["max_softmax_mean"][:, -1].min() > 0.999
    np.testing.assert_allclose(b.W, a.W, rtol=0, atol=1e-12 * np.abs(a.W).max())


@pytest.mark.parametrize("scope", ["global", "block"])
def test_md_p2_equals_ngd_on_kq(problems, scope):
    """(K, Q), both normalizations, over 100 steps (longer factored runs amplify rounding differences)."""
    init = Init(scheme="gaussian", scale=0.5, seed=1)
    a = train(problems, Model("factored"), Descent(NGD(lr=0.1, normalize=scope), 100), init=init)
    b = train(problems, Model("factored"), Descent(MD(lr=0.1, p=2.0, scope=scope), 100), init=init)
    for k in a.params:
        np.testing.assert_allclose(b.params[k], a.params[k], rtol=0, atol=1e-12 * np.abs(a.params[k]).max())


@pytest.mark.parametrize("p", [1.75, 3.0])
def test_md_mirror_identity_on_one_engine_step(problems, p):
    """One step from a saturated W: ∇ψ(W⁺) − ∇ψ(W) = −η ∇L/‖∇L‖_q, with ∇L from the model's gradient."""
    from attnsvm.models import model_data, stable_grad

    pr = problems[0]
    W0 = 300 * np.random.default_rng(1).normal(size=(10, 10))
    r = train(pr, Model("combined"), Descent(MD(lr=0.1, p=p), 1), init=Init(given={"W": W0}), save=Save(every=1))
    sg = stable_grad(Model("combined"), {"W": W0}, model_data(pr, Model("combined")))
    g = np.asarray(sg.g["W"])
    q = p / (p - 1)
    u = g / np.sum(np.abs(g) ** q) ** (1 / q)
    psi = lambda x: np.sign(x) * np.abs(x) ** (p - 1)  # noqa: E731
    np.testing.assert_allclose(psi(r.W[0]) - psi(W0), -0.1 * u, rtol=0, atol=1e-12 * np.abs(psi(W0)).max())
    assert float(sg.log_scale["W"]) < -50  # the plain gradient is below e^−50 here: the step is not


def test_sign_and_adam_move_at_saturation(problems):
    W0 = 200 * np.random.default_rng(2).normal(size=(10, 10))
    for spec in (Sign(lr=0.01), Adam(lr=0.01), MD(lr=0.1, p=3.0, scope="block")):
        r = train(problems[0], Model("combined"), Descent(spec, 10), init=Init(given={"W": W0}))
        assert np.abs(r.W[0] - W0).max() > 1e-3, spec.name
    r = train(problems[0], Model("combined"), Descent(Sign(lr=0.01), 1), init=Init(given={"W": W0}), save=Save(every=1))
    np.testing.assert_allclose(np.abs(r.W[0] - W0)[np.abs(r.W[0] - W0) > 0], 0.01, rtol=1e-12)


def test_registry_and_config_validation():
    from attnsvm.config import train_config_model

    assert {"md", "sign", "adam"} <= set(OPTIMIZERS)
    for bad in ({"p": 1.0}, {"p": float("inf")}, {"bogus": 1}, {"eps": 1e-16, "normalize": False}):
        with pytest.raises(ValueError):
            MD(**bad)
    cfg = train_config_model().model_validate(
        {"problem": {"generator": "unit-gaussian"}, "optimizer": {"name": "md", "p": 1.75, "steps": 100}})
    assert cfg.optimizer.p == 1.75 and cfg.optimizer.normalize is True

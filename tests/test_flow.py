"""Gradient flow engine (flow.py): agreement with GD as η → 0, with itself at tighter tolerance, the
conservation laws of docs/concepts/dynamics.md, the stop events, and the P3-local radius stop."""

from __future__ import annotations

import numpy as np
import pytest

import attnsvm  # noqa: F401  (float64)
from attnsvm.flow import conservation_drift
from attnsvm.models import Model
from attnsvm.problem import unit_gaussian
from attnsvm.training import GD, Descent, Flow, Init, Radius, Saturation, Save, Time, train

SMALL = unit_gaussian(n=3, T=4, d=4, seed=1)
W0 = {"W": 0.3 * np.random.default_rng(0).standard_normal((4, 4))}
T_END = 2.0


@pytest.fixture(scope="module")
def flow_ref():
    """The combined-W flow to physical time t = 2 at tight tolerance."""
    return train(SMALL, Model("combined"), Flow(rtol=1e-12, atol=1e-14), stop=Time(T_END), init=Init(given=W0),
                 save=Save(records=5))


def test_flow_stops_at_t_max(flow_ref):
    assert flow_ref.stop_reason.tolist() == ["time"] and flow_ref.time_axis == "record"
    assert flow_ref.metrics["t"][0, -1] == pytest.approx(T_END, rel=1e-9)
    assert flow_ref.metrics["t"][0, 0] == 0.0
    # physical time increases along the records
    assert np.all(np.diff(flow_ref.metrics["t"][0]) > 0)


def test_gd_approaches_flow_linearly_in_eta(flow_ref):
    """Euler's global error is first order: the GD-flow distance at t = 2 halves when η halves.

    GD is the update θ ← θ − η∇L of ``dynamics.step`` (checked against ``train`` with ``Descent(GD)``), written
    here with η traced so that the three step sizes share one compilation."""
    import jax
    import jax.numpy as jnp

    from attnsvm.models import gradient, model_data

    model = Model("combined")
    data = model_data(SMALL, model)

    @jax.jit
    def gd(W, eta, n):
        return jax.lax.fori_loop(0, n, lambda _, w: w - eta * gradient(model, {"W": w}, data)["W"], W)

    Wf = flow_ref.W[0]
    errs = []
    for eta in (0.1, 0.05, 0.025):
        steps = int(round(T_END / eta))
        W = np.asarray(gd(jnp.asarray(W0["W"]), eta, steps))
        errs.append(np.linalg.norm(W - Wf) / np.linalg.norm(Wf))
    ref = train(SMALL, model, Descent(GD(lr=0.1), 20), save=Save(every=20), init=Init(given=W0))
    np.testing.assert_allclose(np.asarray(gd(jnp.asarray(W0["W"]), 0.1, 20)), ref.W[0], rtol=1e-12, atol=1e-14)
    errs = np.array(errs)
    ratios = errs[:-1] / errs[1:]
    assert np.all(np.abs(ratios - 2.0) < 0.1), (errs, ratios)
    assert errs[-1] < 1e-4


def test_flow_agrees_with_itself_at_tighter_tolerance(flow_ref):
    loose = train(SMALL, Model("combined"), Flow(rtol=1e-6, atol=1e-8), stop=Time(T_END), init=Init(given=W0),
                  save=Save(records=5))
    diff = np.linalg.norm(loose.W[0] - flow_ref.W[0]) / np.linalg.norm(flow_ref.W[0])
    assert diff < 1e-5
    # the built-in estimates (against tolerances / 100): the path itself is accurate at equal arc length, and
    # the error at a fixed physical time comes from the error of t, which the time estimate sees
    assert loose.metrics["error_estimate"][0, -1] < diff
    tau_err = loose.metrics["time_error_estimate"][0, -1]
    assert 0.1 * diff < tau_err < 10 * diff, (diff, tau_err)
    assert flow_ref.metrics["error_estimate"][0, -1] < 1e-12


@pytest.mark.parametrize("parameterization", ["factored", pytest.param("diagonal", marks=pytest.mark.slow)])
def test_conservation_and_saturation_stop(parameterization):
    """KᵀK − QᵀQ (k² − q²) is constant along the flow to 1e−8 relative, up to saturation E ≤ 1e−8.
    (The diagonal law is also checked by default in tests/test_p2.py, up to ‖w‖_F = 1000.)"""
    model = Model(parameterization, loss="exponential", reduction="sum")
    res = train(SMALL, model, Flow(rtol=1e-10, atol=1e-12), trials=3, stop=Saturation(1e-8),
                init=Init("gaussian", 0.1), save=Save(records=8))
    assert res.stop_reason.tolist() == ["saturation"] * 3
    drift = res.metrics["conservation_drift"]
    assert drift.shape == (3, 8)
    assert np.max(drift) < 1e-8
    # the event locates the stop: E at the last record is the threshold
    np.testing.assert_allclose(res.metrics["log_saturation"][:, -1], np.log(1e-8), atol=1e-6)
    assert np.all(res.metrics["log_saturation"][:, :-1] > np.log(1e-8))
    # attention saturated, and the norm grew far beyond the start
    assert np.all(res.metrics["max_softmax_min"][:, -1] > 1 - 1e-6)
    assert np.all(res.metrics["W_fro"][:, -1] > 10)
    assert np.all(np.diff(res.metrics["solver_steps"], axis=1) >= 0)
    assert np.all(res.metrics["solver_steps"][:, -1] == res.info["accepted_steps"])


def test_conservation_drift_detects_a_violation():
    model = Model("diagonal")
    p0 = {"k": np.array([1.0, 2.0]), "q": np.array([0.5, 1.0])}
    assert conservation_drift(model, p0, p0) == 0.0
    moved = {"k": np.array([1.0, 2.0]), "q": np.array([0.6, 1.0])}  # k₀² − q₀² changed by 0.11
    assert conservation_drift(model, moved, p0) == pytest.approx(0.11 / (np.sqrt(17) + np.sqrt(0.36**2 + 1)))
    with pytest.raises(ValueError, match="parameterization"):
        conservation_drift(Model("combined"), {"W": np.eye(2)}, {"W": np.eye(2)})


def test_radius_stop_on_p3_local_size():
    """n=6, T=8, d=10, 100 trials to ‖W‖_F = 100 (benchmarks/flow.py times it): every trial stops on the
    radius, exactly there, with attention saturated."""
    probs = [unit_gaussian(n=6, T=8, d=10, seed=s) for s in range(100)]
    res = train(probs, Model("combined"), Flow(rtol=1e-6, atol=1e-8, error_estimate=False), stop=Radius(100.0),
                init=Init("zero"), save=Save(records=3))
    assert set(res.stop_reason) == {"radius"}
    np.testing.assert_allclose(res.metrics["W_fro"][:, -1], 100.0, rtol=1e-9)
    assert np.median(res.metrics["max_softmax_min"][:, -1]) > 0.999
    assert res.info["accepted_steps"].max() < 1000


@pytest.mark.slow  # max_steps sizes the solver's buffers, so this compiles a program of its own
def test_step_budget_is_reported():
    res = train(SMALL, Model("combined"), Flow(rtol=1e-12, atol=1e-14, max_steps=3, error_estimate=False),
                stop=Time(T_END), init=Init(given=W0), save=Save(records=5))
    assert res.stop_reason.tolist() == ["max_steps"]


def test_validation_errors():
    with pytest.raises(ValueError, match="init: the gradient is exactly zero"):
        train(SMALL, Model("diagonal"), Flow(), init=Init("zero"))
    with pytest.raises(ValueError, match="already reached at the start"):
        train(SMALL, Model("combined"), Flow(), stop=Radius(0.1), init=Init(given={"W": np.eye(4)}))
    with pytest.raises(ValueError, match="rtol"):
        Flow(rtol=0.0)
    with pytest.raises(ValueError, match="level"):
        Radius(-1.0)
    with pytest.raises(ValueError, match="records"):
        Save(records=1)
    with pytest.raises(ValueError, match="freeze"):
        train(SMALL, Model("factored"), Flow(freeze=("K", "Q")))


def test_saturation_measure_vanishes_at_a_local_selection():
    """E is ½ Σ_uv s_u s_v |γ_u − γ_v| weighted by |ℓ'|: zero at one-hot attention on *any* token, so a flow that
    settles on a locally optimal token stops too (the gap to the top-score token would stay positive)."""
    import jax.numpy as jnp

    from attnsvm.flow import log_saturation
    from attnsvm.models import log_saturation as gap_to_top
    from attnsvm.models import model_data
    from attnsvm.problem import p1_single

    prob = p1_single("local")
    model = Model("prompt")
    data = model_data(prob, model)
    p = {"p": jnp.array([300.0, 0.0, 0.0])}  # one-hot on token 1, the locally optimal token
    assert float(log_saturation(model, p, data)) < -200
    assert float(gap_to_top(model, p, data)) > -5  # |ℓ'(0.9)|·(1 − 0.9) ≈ 0.029: stays positive
    # at moderate weights it is the closed form
    p = {"p": jnp.array([0.3, -0.7, 0.0])}
    a = prob.X[0] @ prob.keys @ np.array([0.3, -0.7, 0.0])
    s = np.exp(a - a.max())
    s /= s.sum()
    g = prob.scores()[0]
    f = s @ g
    E = np.exp(-f) / (1 + np.exp(-f)) * 0.5 * np.sum(s[:, None] * s[None, :] * np.abs(g[:, None] - g[None, :]))
    assert float(log_saturation(model, p, data)) == pytest.approx(np.log(E), rel=1e-12)


@pytest.mark.slow  # max_steps sizes the solver's buffers: a program of its own (≈ 15 s)
def test_batch_with_a_stop_and_a_budget_end():
    """One trial stops on the radius, the other runs out of solver steps, in one batch: under vmap diffrax runs
    the event's root find for both, which raised "root is not contained" (P2-diag study, a balanced start
    that settles at a finite point). Now each trial ends as it would alone."""
    from attnsvm.svm import solve_svm

    Wmm = solve_svm(SMALL, "opt", "fro").solution
    # trial 1 starts on the max-margin direction just below the radius 10 (7 steps); trial 0 needs 30 steps
    W = np.stack([W0["W"], 9.99 * Wmm / np.linalg.norm(Wmm)])
    flow = Flow(rtol=1e-6, atol=1e-8, max_steps=20, error_estimate=False)
    res = train(SMALL, Model("combined"), flow, trials=2, stop=Radius(10.0), init=Init(given={"W": W}),
                save=Save(records=3))
    assert res.stop_reason.tolist() == ["max_steps", "radius"]
    assert res.metrics["W_fro"][1, -1] == pytest.approx(10.0, rel=1e-9)
    alone = train(SMALL, Model("combined"), flow, trials=1, stop=Radius(10.0), init=Init(given={"W": W[:1]}),
                  save=Save(records=3))
    assert alone.stop_reason.tolist() == ["max_steps"]
    # the budget trial's end: located by the bisection (to 1e−12 in σ) at the end of its last step
    np.testing.assert_allclose(res.W[0], alone.W[0], rtol=1e-8)


def test_two_records_skip_the_second_pass_with_the_same_end():
    """With two records (start and stop) the first pass is the result: its stop, final state, step counts and
    records equal those of a five-record run (two passes) bit for bit, since the save points do not move a step."""
    kw = dict(stop=Radius(3.0), init=Init(given=W0), trials=1)
    flow = Flow(rtol=1e-8, atol=1e-10, error_estimate=False)
    two = train(SMALL, Model("combined"), flow, save=Save(records=2), **kw)
    five = train(SMALL, Model("combined"), flow, save=Save(records=5), **kw)
    assert np.isnan(two.info["stop_repeat_discrepancy"]) and five.info["stop_repeat_discrepancy"] == 0.0
    assert two.stop_reason.tolist() == five.stop_reason.tolist() == ["radius"]
    np.testing.assert_array_equal(two.W, five.W)
    np.testing.assert_array_equal(two.info["sigma_end"], five.info["sigma_end"])
    np.testing.assert_array_equal(two.info["accepted_steps"], five.info["accepted_steps"])
    for k in ("W_fro", "log_t", "sigma", "solver_steps", "loss"):
        np.testing.assert_array_equal(two.metrics[k][:, [0, -1]], five.metrics[k][:, [0, -1]], err_msg=k)
    assert two.metrics["W_fro"][0, 0] == pytest.approx(np.linalg.norm(W0["W"]))

"""L and L − L* where float64 over- or underflows: recorded as logarithms, checked against 60-digit mpmath.

With X and Z multiplied by 1e3 the margins Y vᵀx are ≈ ±1e3, so an exponential loss is ≈ e^{1000}: beyond
float64. The records keep log L and log(L − L*) exact, the trial is not "diverged", and the summary prints
the value from its logarithm; with X × 1e−3 every number is an ordinary float and matches too.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest

import attnsvm as A
from attnsvm.models import Model, log_excess_loss, log_loss, model_data
from attnsvm.runs import fmt_from_log, summary_rows
from attnsvm.training import NGD, Descent, Init, Save, train

mp.mp.dps = 60


def _problem(scale: float, hopeless: bool = False) -> A.AttentionProblem:
    """unit-Gaussian (n, T, d) = (3, 4, 3) with X, Z × scale; ``hopeless``: every token of sample 0 has
    margin Y vᵀx ≤ −scale (x ← x + 2v, Y = −1), so that L* itself is ≥ e^{scale}/3."""
    p = A.unit_gaussian(3, 4, 3, seed=4)
    X, Y = p.X.copy(), p.Y.copy()
    if hopeless:
        X[0] += 2.0 * p.v
        Y[0] = -1.0
    return A.AttentionProblem(X=X * scale, Y=Y, v=p.v, Z=p.Z * scale)


def _reference(prob: A.AttentionProblem, W: np.ndarray, loss: str) -> tuple[mp.mpf, mp.mpf]:
    """(log L, log(L − L*)) in 60-digit arithmetic from the float64 inputs (mean reduction, linear head)."""
    X, Z, Y, v = ([[mp.mpf(float(c)) for c in np.ravel(a)] for a in (prob.X, prob.Z, prob.Y, prob.v)])
    n, T, d = prob.X.shape
    Wm = [mp.mpf(float(c)) for c in np.ravel(W)]

    def ell(x):
        return mp.exp(-x) if loss == "exponential" else mp.log1p(mp.exp(-x))

    L = Ls = mp.mpf(0)
    for i in range(n):
        xs = [X[(i * T + t) * d:(i * T + t + 1) * d] for t in range(T)]
        z = Z[i * d:(i + 1) * d]
        a = [mp.fsum(xs[t][j] * Wm[j * d + k] * z[k] for j in range(d) for k in range(d)) for t in range(T)]
        m = max(a)
        e = [mp.exp(at - m) for at in a]
        s = [ei / mp.fsum(e) for ei in e]
        g = [Y[i] * mp.fsum(v[j] * xs[t][j] for j in range(d)) for t in range(T)]
        L += ell(mp.fsum(st * gt for st, gt in zip(s, g, strict=True)))
        Ls += ell(max(g))
    return mp.log(L / n), mp.log((L - Ls) / n)


def _W(prob: A.AttentionProblem, scale: float) -> np.ndarray:
    # logits x_itᵀ W z_i of order 1–10 at every scale: attention partly saturated, not one-hot
    return 3.0 * np.random.default_rng(0).standard_normal((3, 3)) / scale**2


@pytest.mark.parametrize("loss", ["exponential", "logistic"])
@pytest.mark.parametrize("scale,hopeless", [(1e3, False), (1e3, True), (1.0, False), (1e-3, False), (3e5, True)])
def test_log_loss_and_log_excess_match_mpmath(loss, scale, hopeless):
    prob = _problem(scale, hopeless)
    W = _W(prob, scale)
    m = Model("combined", loss)
    data = model_data(prob, m)
    lL, lE = float(log_loss(m, {"W": W}, data)), float(log_excess_loss(m, {"W": W}, data))
    rL, rE = _reference(prob, W, loss)
    assert np.isfinite(lL) and np.isfinite(lE)
    # absolute error in the logarithm = relative error of the value; float64 logits of size ≤ 10 carry 1e−15
    assert lL == pytest.approx(float(rL), rel=1e-12, abs=1e-11)
    assert lE == pytest.approx(float(rE), rel=1e-12, abs=1e-9)


def test_correlation_loss_has_no_logarithm_but_an_exact_excess():
    prob = _problem(1e3)
    m = Model("combined", "correlation")
    data = model_data(prob, m)
    W = _W(prob, 1e3)
    assert np.isnan(float(log_loss(m, {"W": W}, data)))
    # L − L* = mean_i Σ_u s_iu (γ_top − γ_iu) for ℓ(x) = −x
    a = np.einsum("itd,de,ie->it", prob.X, W, prob.Z)
    s = np.exp(a - a.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    g = prob.Y[:, None] * (prob.X @ prob.v)
    ref = np.mean(np.sum(s * (g.max(1, keepdims=True) - g), axis=1))
    assert float(np.exp(log_excess_loss(m, {"W": W}, data))) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("scale", [1e3, 1e-3])
def test_a_run_records_finite_logs_and_reports_the_value(scale):
    """NGD on the exponential loss with X, Z × scale: status ok, every record's log finite and equal to the
    60-digit value at the final W, the summary's loss and L − L* are the mpmath values (not inf / nan)."""
    prob = _problem(scale, hopeless=True)
    W0 = _W(prob, scale)
    run = train(prob, Model("combined", "exponential"), Descent(NGD(lr=0.1 / scale**2), 4), save=Save(every=2),
                init=Init(given={"W": W0}))
    assert run.status.tolist() == ["ok"]
    for k in ("log_loss", "log_excess_loss"):
        assert np.all(np.isfinite(run.metrics[k]))
    rL, rE = _reference(prob, run.W[0], "exponential")
    assert run.metrics["log_loss"][0, -1] == pytest.approx(float(rL), rel=1e-12)
    assert run.metrics["log_excess_loss"][0, -1] == pytest.approx(float(rE), rel=1e-12)
    rows = dict(summary_rows(run))
    for key, ref in (("loss", rL), ("L − L*", rE)):
        text = rows[key]
        assert "inf" not in text and "nan" not in text
        if scale > 1:  # e^{≈1000}: beyond float64, printed from the logarithm
            mant, ex = mp.nstr(mp.exp(ref), 6, min_fixed=1, max_fixed=0).split("e")
            assert float(run.metrics["loss"][0, -1]) == np.inf and "beyond float64" in text
            assert text.split()[0] == f"{float(mant):.6g}e{int(ex):+d}"
        else:
            assert float(text.split()[0]) == pytest.approx(float(mp.exp(ref)), rel=1e-5)


@pytest.mark.parametrize("lx,text", [(np.log(2.5) + 1000 * np.log(10), "2.5e+1000"), (-np.inf, "0"),
                                     (np.log(9.9999999) + 3 * np.log(10), "1e+4"),
                                     (np.log(1.25) - 400 * np.log(10), "1.25e-400")])
def test_fmt_from_log(lx, text):
    assert fmt_from_log(lx) == text

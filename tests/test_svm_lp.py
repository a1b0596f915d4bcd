"""Entrywise ℓp Att-SVM (1 ≤ p ≤ ∞): agreement with an independently written cvxpy model (``cp.pnorm``) on
random instances, KKT certificates, the canonical ℓ1/ℓ∞ point, the prompt variant, errors."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from attnsvm.problem import AttentionProblem, unit_gaussian
from attnsvm.svm import (
    INFEASIBLE,
    OPTIMAL,
    build_constraints,
    lp_norm,
    lp_norm_name,
    margin_ratio,
    norm_value,
    solve_svm,
)

CLARABEL = dict(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, tol_ktratio=1e-10,
                max_iter=500)


def _rows_by_loops(problem: AttentionProblem, sel: np.ndarray) -> np.ndarray:
    """Constraint rows vec((x_iα − x_it) z_iᵀ), written out one by one (independent of the library)."""
    rows = []
    for i in range(problem.n):
        for t in range(problem.T):
            if t != sel[i] and problem.mask[i, t]:
                rows.append(np.outer(problem.X[i, sel[i]] - problem.X[i, t], problem.queries[i]).reshape(-1))
    return np.array(rows)


class _Reference:
    """cvxpy: min ‖vec W‖_p s.t. A vec W ≥ 1 (A a parameter: one compilation per shape); for p ∈ {1, ∞}
    then min ‖vec W‖₂ over the optimal face (value bound (1 + 1e−10)·optimum), the library's tie-break."""

    def __init__(self, m: int, P: int, p: float):
        self.A = cp.Parameter((m, P))
        self.w = cp.Variable(P)
        self.p = p
        self.first = cp.Problem(cp.Minimize(cp.pnorm(self.w, p)), [self.A @ self.w >= 1])
        self.bound = cp.Parameter(nonneg=True)
        self.face = cp.Problem(cp.Minimize(cp.sum_squares(self.w)),
                               [self.A @ self.w >= 1, cp.pnorm(self.w, p) <= self.bound])

    def solve(self, A: np.ndarray) -> tuple[np.ndarray, float]:
        self.A.value = A
        self.first.solve(**CLARABEL)
        value = float(self.first.value)
        if self.p in (1.0, np.inf):
            self.bound.value = value * (1 + 1e-10)
            self.face.solve(**CLARABEL)
        return np.array(self.w.value), value


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("p", [1.5, 1.75, 3.0, np.inf])
def test_lp_svm_matches_cvxpy_on_50_instances(p):
    n, T, d = 4, 5, 4
    ref = _Reference(n * (T - 1), d * d, p)
    worst_sol, worst_val, worst_cert = 0.0, 0.0, 0.0
    for seed in range(50):
        pr = unit_gaussian(n, T, d, seed=1000 + seed)
        sel = np.random.default_rng(seed).integers(0, T, n)  # any selection: the SVM exists for all of them
        r = solve_svm(pr, sel, lp_norm_name(p))
        assert r.status == OPTIMAL, r.message
        w_ref, v_ref = ref.solve(_rows_by_loops(pr, sel))
        worst_val = max(worst_val, abs(r.value - v_ref) / v_ref)
        worst_sol = max(worst_sol, np.linalg.norm(r.W.reshape(-1) - w_ref) / np.linalg.norm(w_ref))
        c = r.certificate
        worst_cert = max(worst_cert, c.primal, c.dual / r.value, c.complementarity / r.value**2, abs(c.gap) / r.value)
        # value reported = ‖W‖_p of the solution; multipliers live on the constraints only
        assert r.value == pytest.approx(lp_norm(r.W, p), rel=1e-14)
        assert np.all(r.duals[~r.constrained] == 0)
    print(f"p={p}: max rel. value diff {worst_val:.1e}, solution diff {worst_sol:.1e}, KKT residual {worst_cert:.1e}")
    assert worst_val <= 1e-6
    assert worst_sol <= 1e-6
    assert worst_cert <= 1e-8


def test_lp_kkt_structure_and_weak_duality():
    """θ = ∇(½‖G‖_q²) with G = Σλ_k A_k (1 < p < ∞), supports are the active constraints, and Σλc/‖G‖_q
    equals ‖θ‖_p (zero gap)."""
    pr = unit_gaussian(6, 8, 10, seed=3)
    for p in (1.5, 3.0):
        r = solve_svm(pr, "opt", lp_norm_name(p))
        cons = build_constraints(pr, "opt", lp_norm_name(p))
        lam = r.duals[r.constrained]
        G = cons.rows.T @ lam
        q = p / (p - 1)
        N = lp_norm(G, q)
        theta = N ** (2 - q) * np.sign(G) * np.abs(G) ** (q - 1)
        np.testing.assert_allclose(theta, r.W.reshape(-1), rtol=0, atol=1e-9 * r.value)
        assert lam @ cons.rhs / N == pytest.approx(r.value, rel=1e-10)
        assert np.all(r.active[r.constrained][lam > 1e-9 * lam.max()])  # positive multiplier ⇒ support token
        slack = cons.rows @ r.W.reshape(-1) - cons.rhs
        assert np.all(slack >= -1e-10)
        assert np.max(lam * np.abs(slack)) <= 1e-9 * r.value**2


def test_lp_certificate_is_the_svm_certificate():
    """The ℓp solver judges candidates by the package's one Certificate: the polished point's violation is
    the certificate numbers' max(primal, dual/s, |gap|/s), and a perturbed point is worse and rejected."""
    from attnsvm.svm import Certificate
    from attnsvm.svm._lp import lp_certificate, solve_lp_rows

    pr = unit_gaussian(6, 8, 10, seed=3)
    cons = build_constraints(pr, "opt", lp_norm_name(1.75))
    raw = solve_lp_rows(cons.rows, cons.rhs, 1.75)
    cert = lp_certificate(cons.rows, cons.rhs, raw.theta, raw.lam, 1.75)
    assert type(cert) is Certificate and cert.upper == pytest.approx(lp_norm(raw.theta, 1.75), rel=1e-15)
    s = max(1.0, cert.upper)
    assert cert.violation == max(cert.primal, cert.dual / s, abs(cert.gap) / s) < 1e-9
    assert cert.confirms(1e-9)
    bad = lp_certificate(cons.rows, cons.rhs, 0.99 * raw.theta, raw.lam, 1.75)
    assert bad.primal > 1e-3 and bad.violation > 1e-3 and not bad.confirms(1e-6)
    nan = Certificate(float("nan"), 0.0, 0.0, 0.0, 0.0, 1.0)
    assert nan.violation == float("inf") and not nan.confirms(1.0)


def test_lp_two_matches_frobenius_and_ordering_of_values():
    pr = unit_gaussian(6, 8, 10, seed=5)
    fro = solve_svm(pr, "opt", "fro")
    l2 = solve_svm(pr, "opt", "lp:2")
    np.testing.assert_allclose(l2.W, fro.W, atol=1e-12)
    # ‖·‖_p decreases in p, so the optimal values of the same constraints do too
    vals = [solve_svm(pr, "opt", lp_norm_name(p)).value for p in (1.0, 1.5, 2.0, 3.0, np.inf)]
    assert all(a > b for a, b in zip(vals, vals[1:], strict=False))


def test_linf_canonical_point_and_margin_ratio():
    """ℓ∞ minimizers are not unique: the returned one has the least ‖·‖₂ on the optimal face (cvxpy's two
    stage model agrees), and margin_ratio is 1 for any optimal point, < 1 for a non-optimal direction."""
    pr = unit_gaussian(6, 8, 10, seed=7)
    r = solve_svm(pr, "opt", "lp:inf")
    cons = build_constraints(pr, "opt", "lp:inf")
    ref = _Reference(*cons.rows.shape, np.inf)
    w_ref, v_ref = ref.solve(_rows_by_loops(pr, r.selection))
    np.testing.assert_allclose(r.W.reshape(-1), w_ref, atol=1e-6 * np.linalg.norm(w_ref))
    assert margin_ratio(cons.rows, cons.rhs, r.W.reshape(-1), np.inf, r.value) == pytest.approx(1.0, abs=1e-8)
    fro = solve_svm(pr, "opt", "fro")
    assert margin_ratio(cons.rows, cons.rhs, fro.W.reshape(-1), np.inf, r.value) < 1 - 1e-3


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
def test_lp_prompt_variant_and_infeasible():
    pr = unit_gaussian(5, 4, 6, seed=2, attention="prompt")
    r = solve_svm(pr, "opt", "lp-prompt:3")
    assert r.status == OPTIMAL and r.solution.shape == (6,)
    th = cp.Variable(6)
    D = [pr.keys.T @ (pr.X[i, r.selection[i]] - pr.X[i, t]) for i in range(5) for t in range(4) if t != r.selection[i]]
    prob = cp.Problem(cp.Minimize(cp.pnorm(th, 3)), [np.array(D) @ th >= 1])
    prob.solve(**CLARABEL)
    assert r.value == pytest.approx(prob.value, rel=1e-7)
    # a selected token duplicated in its sequence: 0 ≥ 1 cannot hold
    X = np.random.default_rng(0).normal(size=(2, 3, 4))
    X[0, 1] = X[0, 0]
    bad = AttentionProblem(X=X, Y=np.array([1.0, -1.0]), v=np.ones(4), Z=np.ones((2, 4)))
    r = solve_svm(bad, np.array([0, 0]), "lp:1.75")
    assert r.status == INFEASIBLE and r.farkas is not None


def test_lp_norm_names_and_errors():
    assert lp_norm_name(1.75) == "lp:1.75" and lp_norm_name(np.inf) == "lp:inf"
    assert lp_norm_name(3, prompt=True) == "lp-prompt:3"
    assert norm_value(np.array([[3.0, -4.0]]), "lp:2") == pytest.approx(5.0)
    assert norm_value(np.array([[3.0, -4.0]]), "lp:inf") == pytest.approx(4.0)
    pr = unit_gaussian(3, 3, 3, seed=0)
    with pytest.raises(ValueError, match="1 ≤ p"):
        solve_svm(pr, "opt", "lp:0.5")
    with pytest.raises(ValueError, match="p: must be a number"):
        solve_svm(pr, "opt", "lp:abc")
    with pytest.raises(ValueError, match="lp:P"):
        solve_svm(pr, "opt", "lq:2")
    with pytest.raises(ValueError, match="prompt"):
        solve_svm(unit_gaussian(3, 3, 3, seed=0, attention="prompt"), "opt", "lp:3")


def test_cli_solve_lp_and_linf(tmp_path):
    import json

    from typer.testing import CliRunner

    from attnsvm.cli import app

    pr = unit_gaussian(4, 5, 4, seed=11)
    path = pr.save(tmp_path / "pr.npz")
    runner = CliRunner()
    for args, name in ((["--norm", "lp", "--p", "3"], "lp:3"), (["--norm", "linf"], "lp:inf")):
        res = runner.invoke(app, ["solve", str(path), *args, "--json"])
        assert res.exit_code == 0, res.output
        out = json.loads(res.output)
        direct = solve_svm(pr, "opt", name)
        assert out["norm"] == name and out["status"] == OPTIMAL
        assert out["value"] == pytest.approx(direct.value, rel=1e-9)
    for args, msg in ((["--norm", "lp"], "--p"), (["--norm", "fro", "--p", "3"], "--p"),
                      (["--norm", "lp", "--p", "0.5"], "1 ≤ p")):
        res = runner.invoke(app, ["solve", str(path), *args])
        assert res.exit_code == 2 and msg in res.output


def test_train_config_lp_reference(tmp_path):
    """references = ["lp", "linf"] with [run] p = 3: the run records corr with the ℓ3 and ℓ∞ Att-SVMs at opt,
    named "lp" and "linf", equal to the correlation with solve_svm's solutions; p without "lp" is refused."""
    import pandas as pd
    from typer.testing import CliRunner

    from attnsvm.cli import app
    from attnsvm.config import ConfigError, parse_config

    text = """
[problem]
generator = "unit-gaussian"
n = 3
T = 4
d = 4
seed = 3
[optimizer]
name = "ngd"
lr = 0.1
steps = 20
[run]
trials = 1
record_every = 10
references = ["lp", "linf"]
p = 3.0
"""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(text)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(cfg), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "metrics.parquet")
    W = np.load(out / "final.npz")["W"][0]
    pr = unit_gaussian(3, 4, 4, seed=3)
    for col, name in (("corr_lp", "lp:3"), ("corr_linf", "lp:inf")):
        S = solve_svm(pr, "opt", name).W
        assert df[col].iloc[-1] == pytest.approx(np.vdot(W, S) / np.linalg.norm(W) / np.linalg.norm(S), rel=1e-9)
    import tomllib

    for wrong in (text.replace('references = ["lp", "linf"]', 'references = ["fro"]'), text.replace("p = 3.0\n", "")):
        with pytest.raises(ConfigError, match="run.p"):
            parse_config(tomllib.loads(wrong))

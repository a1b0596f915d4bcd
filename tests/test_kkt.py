"""ε-KKT certificates: ≈ 0 at the project's certified SVM solutions, clearly positive at wrong directions,
equal to an independent cvxpy model of the multiplier problem, invariant to the scale of W and of the data."""

from __future__ import annotations

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from attnsvm import AttentionProblem, unit_gaussian
from attnsvm.svm import kkt_certificate, lp_norm_name, parameter_kkt_certificate, solve_svm


def _problem(seed: int, n: int = 4, T: int = 4, d: int = 6) -> AttentionProblem:
    return unit_gaussian(n, T, d, seed=seed)


def _scaled(pr: AttentionProblem, a: float) -> AttentionProblem:
    """The same problem with tokens and queries scaled by a (constraint vectors scale by a²)."""
    return AttentionProblem(X=a * pr.X, Y=pr.Y, v=pr.v, Z=a * pr.Z)


# ---- at solutions ≈ 0, elsewhere clearly positive ----------------------------------------------------------


@pytest.mark.parametrize("norm", ["fro", "nuclear", "l1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zero_at_svm_solutions(norm: str, seed: int) -> None:
    pr = _problem(seed)
    res = solve_svm(pr, "opt", norm)
    assert res.status == "optimal"
    c = kkt_certificate(pr, res.solution, norm, selection="opt")
    assert c.status == "separating"
    assert np.all(c.selection == res.selection)
    tol = 1e-6 if norm == "nuclear" else 1e-9  # SCS solutions are certified to 1e-6, the others exactly
    assert c.stationarity < tol and c.complementarity < tol and c.primal == 0.0
    assert 0.0 <= c.gap + 1e-12 and c.gap < tol
    # the direction's own selection is α, whatever the scale
    c2 = kkt_certificate(pr, 1e3 * res.solution, norm)
    assert np.all(c2.selection == res.selection)
    assert c2.epsilon == pytest.approx(c.epsilon, abs=1e-9)


def test_zero_at_prompt_solution() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5, 4, 6))
    pr = AttentionProblem(X=X, Y=np.where(rng.random(5) < 0.5, -1.0, 1.0), v=rng.standard_normal(6))
    res = solve_svm(pr, "opt", "l2")
    c = kkt_certificate(pr, res.solution, "l2", selection="opt")
    assert c.epsilon < 1e-9 and abs(c.gap) < 1e-9
    wrong = kkt_certificate(pr, res.solution + 0.3 * np.linalg.norm(res.solution) * rng.standard_normal(6) / 3,
                            "l2", selection="opt")
    assert wrong.status == "not_separating" or wrong.epsilon > 1e-2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wrong_norm_is_not_kkt(seed: int) -> None:
    """The Frobenius solution is not a nuclear KKT point and vice versa (where the two directions differ)."""
    pr = _problem(seed)
    fro, nuc = solve_svm(pr, "opt", "fro"), solve_svm(pr, "opt", "nuclear")
    corr = np.vdot(fro.solution, nuc.solution) / np.linalg.norm(fro.solution) / np.linalg.norm(nuc.solution)
    assert 1 - corr > 0.01
    a = kkt_certificate(pr, fro.solution, "nuclear", selection="opt")
    b = kkt_certificate(pr, nuc.solution, "fro", selection="opt")
    assert a.epsilon > 0.05 and b.epsilon > 0.05
    # the gap bounds the true relative suboptimality from above
    # (each solution has minimum margin 1, so it is its own scaled direction)
    assert a.gap >= 1 - nuc.value / np.linalg.svd(fro.solution, compute_uv=False).sum() - 1e-6
    assert b.gap >= 1 - fro.value / np.linalg.norm(nuc.solution) - 1e-6


def test_not_separating() -> None:
    pr = _problem(0)
    res = solve_svm(pr, "opt", "fro")
    c = kkt_certificate(pr, -res.solution, "fro", selection="opt")
    assert c.status == "not_separating" and c.epsilon == np.inf and c.primal > 0
    assert np.isnan(c.stationarity)


# ---- independent cvxpy model ------------------------------------------------------------------------------


def _constraint_rows(pr: AttentionProblem, sel: np.ndarray, diagonal: bool) -> np.ndarray:
    """A_it (m, d, d) built directly from the data (not through attnsvm.svm)."""
    rows = []
    for i in range(pr.n):
        for t in range(pr.T):
            if t != sel[i]:
                A = np.outer(pr.X[i, sel[i]] - pr.X[i, t], pr.Z[i])
                rows.append(np.diag(np.diag(A)) if diagonal else A)
    return np.array(rows)


def _cvx_convex(pr: AttentionProblem, W: np.ndarray, norm: str, rank_tol: float = 1e-4) -> tuple[float, float]:
    """min over λ ≥ 0 and g ∈ ∂‖W̃‖ of ‖Σλ A − g‖²_F + (Σλ|m − 1|/‖W̃‖)², as a cvxpy model (Clarabel)."""
    sel = np.argmax(np.einsum("itd,de,ie->it", pr.X, W, pr.Z), axis=1)
    A = _constraint_rows(pr, sel, norm == "l1")
    m = np.einsum("kde,de->k", A, W)
    Wt, mt = W / m.min(), m / m.min()
    d = pr.d
    lam = cp.Variable(len(A), nonneg=True)
    G = sum(lam[k] * A[k] for k in range(len(A)))
    cons = []
    if norm == "fro":
        val = np.linalg.norm(Wt)
        g = Wt / val
    elif norm == "l1":
        w = np.diag(Wt)
        val = np.abs(w).sum()
        big = np.abs(w) > rank_tol * np.abs(w).max()
        gv = cp.Variable(d)
        cons += [gv[j] == np.sign(w[j]) for j in range(d) if big[j]]
        cons += [cp.abs(gv[j]) <= 1 for j in range(d) if not big[j]]
        g = cp.diag(gv)
    else:
        U, s, Vt = np.linalg.svd(Wt)
        val = s.sum()
        r = int(np.sum(s > rank_tol * s[0]))
        g = U[:, :r] @ Vt[:r]
        if r < d:
            N = cp.Variable((d - r, d - r))
            cons.append(cp.sigma_max(N) <= 1)
            g = g + U[:, r:] @ N @ Vt[r:]
    wrow = np.abs(mt - 1) / val
    stat = cp.sum_squares(G - g)
    comp = wrow @ lam
    cp.Problem(cp.Minimize(stat + cp.square(comp)), cons).solve(solver="CLARABEL")
    return float(np.sqrt(max(stat.value, 0.0))), float(comp.value)


@pytest.mark.parametrize("norm", ["fro", "nuclear", "l1"])
def test_matches_cvxpy_on_random_instances(norm: str) -> None:
    rng = np.random.default_rng(11)
    checked = 0
    for seed in range(6):
        pr = _problem(seed, n=3, T=4, d=5)
        base = solve_svm(pr, "opt", norm).solution
        for kind in ("dense", "rank1"):
            if norm == "l1":
                noise = np.diag(rng.standard_normal(pr.d)) * (0.3 if kind == "dense" else 0.1)
            elif kind == "dense":
                noise = 0.3 * rng.standard_normal((pr.d, pr.d)) / pr.d
            else:
                noise = 0.2 * np.outer(rng.standard_normal(pr.d), rng.standard_normal(pr.d)) / pr.d
            W = base + np.linalg.norm(base) * noise
            c = kkt_certificate(pr, np.diag(W) if norm == "l1" else W, norm, rank_tol=1e-4)
            if c.status != "separating":
                continue
            stat, comp = _cvx_convex(pr, W, norm)
            # the minimal residual (G − g, complementarity) is unique, so both numbers must agree
            assert c.stationarity == pytest.approx(stat, rel=1e-4, abs=1e-5)
            assert c.complementarity == pytest.approx(comp, rel=1e-4, abs=1e-5)
            assert c.stationarity + c.complementarity > 1e-3
            checked += 1
    assert checked >= 6


@pytest.mark.parametrize("norm", ["nuclear", "l1"])
def test_default_rank_is_the_best_fixed_rank(norm: str) -> None:
    """Without rank_tol, ε is the smallest over the ranks r of max(stationarity_r, complementarity_r,
    2·discarded_r), each r obtained here with a threshold between the r-th and (r+1)-th magnitude."""
    rng = np.random.default_rng(4)
    for seed in range(3):
        pr = _problem(seed, n=3, T=4, d=5)
        base = solve_svm(pr, "opt", norm).solution
        # a direction with decaying small singular values / entries, as trained directions have
        if norm == "l1":
            theta = np.diag(base) + np.linalg.norm(base) * 10.0 ** rng.uniform(-4, -1, pr.d) * rng.choice([-1, 1], pr.d)
            mags = np.sort(np.abs(theta))[::-1]
        else:
            U, _, Vt = np.linalg.svd(rng.standard_normal((pr.d, pr.d)))
            theta = base + np.linalg.norm(base) * (U * 10.0 ** rng.uniform(-4, -1, pr.d)) @ Vt
            mags = np.linalg.svd(theta, compute_uv=False)
        auto = kkt_certificate(pr, theta, norm)
        if auto.status != "separating":
            continue
        per_r = []
        for r in range(1, pr.d + 1):
            tol = np.sqrt(mags[r - 1] * mags[r]) / mags[0] if r < pr.d else 0.0
            c = kkt_certificate(pr, theta, norm, selection=auto.selection, rank_tol=tol)
            assert c.rank == r
            per_r.append(c.epsilon)
        assert auto.epsilon == pytest.approx(min(per_r), rel=1e-6, abs=1e-9)
        assert auto.rank == 1 + int(np.argmin(per_r)) or per_r[auto.rank - 1] == pytest.approx(min(per_r), rel=1e-6)


@jax.jit
def _margins_and_jacobian(flat, X, Z, sel, shape_probe):
    """All-token margins a_iα − a_it (n, T) and their Jacobian in the parameters by autodiff (independent of
    attnsvm.kkt). ``shape_probe`` (d, m) for factored K, Q; (d, 0) for diagonal k, q."""
    d, mm = shape_probe.shape

    def margins(f):
        if mm:
            W = f[:d * mm].reshape(d, mm) @ f[d * mm:].reshape(d, mm).T
        else:
            W = jnp.diag(f[:d] * f[d:])
        a = jnp.einsum("itd,de,ie->it", X, W, Z)
        return jnp.take_along_axis(a, sel[:, None], axis=1) - a

    return margins(flat), jax.jacobian(margins)(flat)


def _jax_jacobian(pr: AttentionProblem, sel: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = np.ones((pr.n, pr.T), bool)
    keep[np.arange(pr.n), sel] = False
    names = ("K", "Q") if "K" in params else ("k", "q")
    flat = np.concatenate([np.ravel(params[k]) for k in names])
    probe = np.zeros(params["K"].shape if "K" in params else (pr.d, 0))
    m, J = _margins_and_jacobian(flat, pr.X, pr.Z, sel, probe)
    return np.asarray(m)[keep], np.asarray(J)[keep], flat


@pytest.mark.parametrize("space", ["factored", "diagonal"])
def test_parameter_space_matches_cvxpy(space: str) -> None:
    rng = np.random.default_rng(5)
    checked = 0
    for seed in range(5):
        pr = _problem(seed, n=3, T=3, d=5)
        nuc = solve_svm(pr, "opt", "nuclear" if space == "factored" else "l1").solution
        if space == "factored":
            U, s, Vt = np.linalg.svd(nuc)
            params = {"K": U * np.sqrt(s) + 0.2 * rng.standard_normal((5, 5)),
                      "Q": Vt.T * np.sqrt(s) + 0.2 * rng.standard_normal((5, 5))}
            W = params["K"] @ params["Q"].T
        else:
            w = np.diag(nuc)
            params = {"k": np.sign(w) * np.sqrt(np.abs(w)) + 0.3 * rng.standard_normal(5),
                      "q": np.sqrt(np.abs(w)) + 0.3 * rng.standard_normal(5)}
            W = np.diag(params["k"] * params["q"])
        c = parameter_kkt_certificate(pr, params)
        if c.status != "separating":
            continue
        sel = np.argmax(np.einsum("itd,de,ie->it", pr.X, W, pr.Z), axis=1)
        m, J, phi = _jax_jacobian(pr, sel, params)
        s_ = m.min()
        # scaled parameters φ/√s: margins → m/s, Jacobian → J/√s
        phit, mt, Jt = phi / np.sqrt(s_), m / s_, J / np.sqrt(s_)
        N = np.linalg.norm(phit)
        lam = cp.Variable(len(m), nonneg=True)
        stat = cp.sum_squares(phit - Jt.T @ lam) / N**2
        comp = 2 * (np.abs(mt - 1) @ lam) / N**2
        cp.Problem(cp.Minimize(stat + cp.square(comp))).solve(solver="CLARABEL")
        assert c.stationarity == pytest.approx(np.sqrt(stat.value), rel=1e-5, abs=1e-7)
        assert c.complementarity == pytest.approx(comp.value, rel=1e-5, abs=1e-7)
        checked += 1
    assert checked >= 3


# ---- invariances -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["fro", "nuclear", "l1"])
def test_invariant_to_scale_of_W_and_data(norm: str) -> None:
    rng = np.random.default_rng(2)
    pr = _problem(4)
    base = solve_svm(pr, "opt", norm).solution
    noise = np.diag(rng.standard_normal(pr.d)) if norm == "l1" else rng.standard_normal((pr.d, pr.d))
    W = base + 0.1 * np.linalg.norm(base) * noise / pr.d
    th = (lambda M: np.diag(M)) if norm == "l1" else (lambda M: M)
    ref = kkt_certificate(pr, th(W), norm)
    assert ref.status == "separating" and ref.epsilon > 1e-3
    tol = 1e-6 if norm == "nuclear" else 1e-9
    for a, scale in ((1.0, 1e-3), (1.0, 250.0), (3.0, 1.0), (0.2, 40.0)):
        c = kkt_certificate(_scaled(pr, a), th(scale * W), norm)
        for k in ("stationarity", "complementarity", "gap", "discarded"):
            assert getattr(c, k) == pytest.approx(getattr(ref, k), rel=tol, abs=tol), (k, a, scale)
        assert c.rank == ref.rank
        np.testing.assert_allclose(c.multipliers * a**2, ref.multipliers, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("space", ["factored", "diagonal"])
def test_parameter_space_invariances(space: str) -> None:
    rng = np.random.default_rng(9)
    pr = _problem(1, n=3, T=3, d=5)
    if space == "factored":
        params = {"K": rng.standard_normal((5, 5)), "Q": rng.standard_normal((5, 5))}
    else:
        params = {"k": rng.standard_normal(5), "q": rng.standard_normal(5)}
    ref = parameter_kkt_certificate(pr, params)
    for a, scale in ((1.0, 1e-2), (2.0, 30.0)):
        c = parameter_kkt_certificate(_scaled(pr, a), {k: scale * v for k, v in params.items()})
        assert c.status == ref.status
        if ref.status == "separating":
            assert c.stationarity == pytest.approx(ref.stationarity, rel=1e-9, abs=1e-12)
            assert c.complementarity == pytest.approx(ref.complementarity, rel=1e-9, abs=1e-12)


# ---- parameter space vs convex ------------------------------------------------------------------------------


def test_balanced_factorization_of_nuclear_solution_is_kkt_in_both() -> None:
    pr = _problem(0)
    nuc = solve_svm(pr, "opt", "nuclear").solution
    U, s, Vt = np.linalg.svd(nuc)
    c = parameter_kkt_certificate(pr, {"K": U * np.sqrt(s), "Q": Vt.T * np.sqrt(s)})
    # SCS leaves singular values ~1e−9 σ₁ where the solution has none; their factors √σ ~ 3e−5 √σ₁ are not
    # at a singular value 1 of G, which the parameter-space residual sees at that (square-root) size
    assert c.epsilon < 1e-4
    # an unbalanced factorization of the same W is not a parameter-space KKT point
    c2 = parameter_kkt_certificate(pr, {"K": U * s * 3.0, "Q": Vt.T / 3.0})
    assert c2.epsilon > 0.1
    assert kkt_certificate(pr, U * s * 3.0 @ (Vt / 3.0), "nuclear").epsilon < 1e-6


def test_restricted_l1_solution_is_parameter_kkt_but_not_convex_kkt() -> None:
    """A balanced (k, q) on the ℓ1 SVM restricted to fewer coordinates: K = G Q, Q = Gᵀ K hold (coordinates
    off the support have k = q = 0), but |g_j| > 1 off the support, so the convex problem's KKT fails."""
    found = 0
    for seed in range(12):
        pr = unit_gaussian(3, 3, 8, seed=seed)
        full = solve_svm(pr, "opt", "l1")
        w_full = np.diag(full.solution)
        support = np.flatnonzero(np.abs(w_full) > 1e-9)
        A = np.array([np.diag(a) for a in _constraint_rows(pr, full.selection, True)])
        # drop one support coordinate and re-solve the ℓ1 LP on the remaining coordinates
        for drop in support:
            keep = np.setdiff1d(np.arange(pr.d), [drop])
            Ak = A[:, keep]
            res = linprog(np.ones(2 * keep.size), A_ub=-np.hstack([Ak, -Ak]), b_ub=-np.ones(len(A)),
                          bounds=(0, None), method="highs")
            if res.status != 0:
                continue
            w = np.zeros(pr.d)
            w[keep] = res.x[:keep.size] - res.x[keep.size:]
            if np.abs(w).sum() <= np.abs(w_full).sum() * (1 + 1e-6):
                continue  # another optimum of the full problem
            params = {"k": np.sign(w) * np.sqrt(np.abs(w)), "q": np.sqrt(np.abs(w))}
            pc = parameter_kkt_certificate(pr, params, selection=full.selection)
            cc = kkt_certificate(pr, w, "l1", selection=full.selection)
            excess = np.abs(w).sum() / np.abs(w_full).sum() - 1  # w has minimum margin 1 (LP optimum)
            assert pc.epsilon < 1e-8
            # the gap bounds the relative suboptimality (‖w‖₁ − ‖w*‖₁)/‖w‖₁ from above
            assert cc.gap >= excess / (1 + excess) - 1e-9
            assert cc.epsilon > (1e-2 if excess > 0.05 else 1e-4)
            found += 1
    assert found >= 20


# ---- input errors -------------------------------------------------------------------------------------------


def test_input_errors() -> None:
    pr = _problem(0)
    W = solve_svm(pr, "opt", "fro").solution
    with pytest.raises(ValueError, match="norm"):
        kkt_certificate(pr, W, "spectral")
    with pytest.raises(ValueError, match="theta"):
        kkt_certificate(pr, np.zeros((pr.d, pr.d)), "fro")
    with pytest.raises(ValueError, match="theta"):
        kkt_certificate(pr, W, "l1")  # not diagonal
    with pytest.raises(ValueError, match="theta"):
        kkt_certificate(pr, W[:3], "fro")
    for bad in ("lp:0.5", "lp:inf", "lp:x", "lp"):
        with pytest.raises(ValueError, match="norm"):
            kkt_certificate(pr, W, bad)
    with pytest.raises(ValueError, match="selection"):
        kkt_certificate(pr, W, "fro", selection="best")
    with pytest.raises(ValueError, match="params"):
        parameter_kkt_certificate(pr, {"W": W})


# ---- attnsvm kkt RUN_DIR ------------------------------------------------------------------------------------


def _fake_run(tmp_path, parameterization: str, references: list[str]) -> tuple:
    """A run directory as `attnsvm train` writes it (config via dump_config), holding the SVM solutions."""
    from attnsvm.config import dump_config, parse_config

    cfg = parse_config({"problem": {"generator": "unit-gaussian", "n": 3, "T": 4, "d": 5, "seed": 3},
                        "model": {"parameterization": parameterization},
                        "run": {"trials": 2, "references": references}})
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.toml").write_text(dump_config(cfg))
    probs = [unit_gaussian(3, 4, 5, seed=3 + j) for j in range(2)]
    sols = [solve_svm(p, "opt", "nuclear" if parameterization == "factored" else "l1").solution for p in probs]
    arrays = {"W": np.stack(sols), "selection": np.stack([p.optimal_tokens().opt for p in probs])}
    if parameterization == "factored":
        svds = [np.linalg.svd(W) for W in sols]
        arrays["K"] = np.stack([U * np.sqrt(s) for U, s, _ in svds])
        arrays["Q"] = np.stack([Vt.T * np.sqrt(s) for _, s, Vt in svds])
    else:
        w = np.stack([np.diag(W) for W in sols])
        arrays["k"], arrays["q"] = np.sign(w) * np.sqrt(np.abs(w)), np.sqrt(np.abs(w))
    np.savez(out / "final.npz", **arrays)
    return out, probs, sols


@pytest.mark.parametrize("parameterization, references, own", [
    ("factored", ["fro", "nuclear"], "nuclear"), ("diagonal", [], "l1")])
def test_cli_on_run_directory(tmp_path, parameterization, references, own) -> None:
    import json

    from typer.testing import CliRunner

    from attnsvm.cli import app

    out, probs, sols = _fake_run(tmp_path, parameterization, references)
    res = CliRunner().invoke(app, ["kkt", str(out), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    space = parameterization
    assert {(r["trial"], r["problem"]) for r in rows} == {(j, nm) for j in range(2)
                                                          for nm in (references or [own]) + [space]}
    for r in rows:
        if r["problem"] in (own, space):
            assert r["epsilon"] < 1e-4  # SCS solutions, factored: see test_balanced_factorization...
        else:  # the Frobenius condition at the nuclear solution
            c = kkt_certificate(probs[r["trial"]], sols[r["trial"]], "fro")
            assert r["epsilon"] == pytest.approx(c.epsilon, rel=1e-12) and r["epsilon"] > 1e-2
    # a table without --json, and an explicit --norm
    res = CliRunner().invoke(app, ["kkt", str(out), "--norm", "fro"])
    assert res.exit_code == 0 and "ε-KKT" in res.output


def test_cli_on_trained_run(tmp_path) -> None:
    """`attnsvm kkt` on a real `attnsvm train` run equals the Python API on its final.npz."""
    import json

    from typer.testing import CliRunner

    from attnsvm.cli import app

    cfg = tmp_path / "c.toml"
    cfg.write_text('[problem]\ngenerator = "unit-gaussian"\nn = 3\nT = 3\nd = 4\nseed = 1\n'
                   '[model]\nparameterization = "combined"\n[optimizer]\nname = "ngd"\nsteps = 200\nlr = 0.5\n'
                   '[run]\ntrials = 2\nrecord_every = 100\nreferences = ["fro"]\nverdict = false\n')
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(cfg), "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    res = CliRunner().invoke(app, ["kkt", str(out), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    W = np.load(out / "final.npz")["W"]
    for row in rows:
        c = kkt_certificate(unit_gaussian(3, 3, 4, seed=1 + row["trial"]), W[row["trial"]], "fro")
        assert row["status"] == c.status
        if c.status == "separating":
            assert row["stationarity"] == pytest.approx(c.stationarity, rel=1e-12)


def test_cli_errors(tmp_path) -> None:
    from typer.testing import CliRunner

    from attnsvm.cli import app

    res = CliRunner().invoke(app, ["kkt", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "RUN_DIR" in res.output
    out, _, _ = _fake_run(tmp_path, "factored", [])
    for args, key in ((["--norm", "l2"], "--norm"), (["--norm", "l1"], "--norm"),
                      (["--selection", "x"], "--selection")):
        res = CliRunner().invoke(app, ["kkt", str(out), *args])
        assert res.exit_code == 2 and key in res.output, res.output
        assert "Traceback" not in res.output


# ---- entrywise ℓp ("lp:P", "lp-prompt:P") --------------------------------------------------------------------


def _cvx_lp_solution(pr: AttentionProblem, p: float) -> tuple[np.ndarray, np.ndarray]:
    """min ‖W‖_p (entrywise) s.t. ⟨A_it, W⟩ ≥ 1 at opt, by cvxpy (Clarabel)."""
    sel = pr.optimal_tokens().opt
    A = _constraint_rows(pr, sel, False).reshape(-1, pr.d * pr.d)
    w = cp.Variable(pr.d * pr.d)
    cp.Problem(cp.Minimize(cp.pnorm(w, p)), [A @ w >= 1]).solve(solver="CLARABEL")
    return w.value.reshape(pr.d, pr.d), sel


@pytest.mark.parametrize("p", [1.0, 1.5, 3.0])
def test_lp_norms(p: float) -> None:
    pr = _problem(2, n=3, T=4, d=4)
    W, sel = _cvx_lp_solution(pr, p)
    c = kkt_certificate(pr, W, f"lp:{p:g}", selection=sel)
    assert c.status == "separating" and c.epsilon < 1e-5 and abs(c.gap) < 1e-5
    # and at the project's own certified ℓp solution
    own = solve_svm(pr, sel, lp_norm_name(p))
    assert own.status == "optimal"
    assert kkt_certificate(pr, own.solution, lp_norm_name(p), selection=sel).epsilon < 1e-6
    fro = solve_svm(pr, sel, "fro").solution
    assert kkt_certificate(pr, fro, f"lp:{p:g}", selection=sel).epsilon > 1e-2
    # invariances (W scale, data scale)
    c2 = kkt_certificate(_scaled(pr, 2.0), 7.0 * fro, f"lp:{p:g}", selection=sel)
    c1 = kkt_certificate(pr, fro, f"lp:{p:g}", selection=sel)
    assert c2.stationarity == pytest.approx(c1.stationarity, rel=1e-7, abs=1e-10)
    assert c2.complementarity == pytest.approx(c1.complementarity, rel=1e-7, abs=1e-10)


def test_lp2_is_frobenius_and_lp_prompt() -> None:
    pr = _problem(1)
    rng = np.random.default_rng(0)
    W = solve_svm(pr, "opt", "fro").solution + 0.05 * rng.standard_normal((pr.d, pr.d))
    a, b = kkt_certificate(pr, W, "fro"), kkt_certificate(pr, W, "lp:2")
    assert a.stationarity == pytest.approx(b.stationarity, rel=1e-10)
    assert a.complementarity == pytest.approx(b.complementarity, rel=1e-10)
    X = rng.standard_normal((5, 4, 6))
    pp = AttentionProblem(X=X, Y=np.where(rng.random(5) < 0.5, -1.0, 1.0), v=rng.standard_normal(6))
    sol = solve_svm(pp, "opt", "l2").solution
    assert kkt_certificate(pp, sol, "lp-prompt:2").epsilon < 1e-9
    assert kkt_certificate(pp, sol, "lp-prompt:3").epsilon > 1e-3


def test_cli_parameter_space_wrong_factorization_and_data_scale(tmp_path) -> None:
    """`attnsvm kkt` on a factored run: the parameter-space ε is ≈ 0 at the balanced factorization of the nuclear
    SVM solution and clearly positive at an unbalanced factorization of the same W (whose nuclear ε stays ≈ 0);
    the same numbers when the data are scaled by 7 (problem file) and the factors by 1/7."""
    import json

    from typer.testing import CliRunner

    from attnsvm.cli import app
    from attnsvm.config import dump_config, parse_config

    probs = [unit_gaussian(3, 4, 5, seed=3 + j) for j in range(2)]
    sols = [solve_svm(p, "opt", "nuclear").solution for p in probs]
    svds = [np.linalg.svd(W) for W in sols]
    K = np.stack([U * np.sqrt(s) for U, s, _ in svds])
    Q = np.stack([Vt.T * np.sqrt(s) for _, s, Vt in svds])
    K[1], Q[1] = K[1] * 3.0, Q[1] / 3.0  # trial 1: the same W, an unbalanced factorization
    rows = {}
    for a in (1.0, 7.0):
        out = tmp_path / f"run{a:g}"
        out.mkdir()
        _scaled(probs[0], a).save(out / "problem.npz")
        cfg = parse_config({"problem": {"file": "problem.npz"}, "model": {"parameterization": "factored"},
                            "run": {"trials": 2, "references": ["nuclear"]}})
        (out / "config.toml").write_text(dump_config(cfg))
        # one problem file shared by the two trials: trial 1 is the unbalanced factorization of trial 0's W
        Kb, Qb = np.stack([K[0], K[0] * 3.0]) / a, np.stack([Q[0], Q[0] / 3.0]) / a
        np.savez(out / "final.npz", W=Kb @ np.swapaxes(Qb, 1, 2), K=Kb, Q=Qb)
        res = CliRunner().invoke(app, ["kkt", str(out), "--json"])
        assert res.exit_code == 0, res.output
        rows[a] = {(r["trial"], r["problem"]): r for r in json.loads(res.output)}
    r1 = rows[1.0]
    assert r1[(0, "factored")]["epsilon"] < 1e-4 and r1[(0, "nuclear")]["epsilon"] < 1e-4
    assert r1[(1, "factored")]["epsilon"] > 0.1  # K ≠ G Q for the unbalanced factors
    assert r1[(1, "nuclear")]["epsilon"] < 1e-4  # ... of the same (convex-KKT) W
    for key, r in r1.items():
        for f in ("stationarity", "complementarity", "epsilon"):
            assert rows[7.0][key][f] == pytest.approx(r[f], rel=1e-7, abs=1e-10), (key, f)


def test_cli_parameter_space_does_not_apply_to_combined_or_prompt(tmp_path) -> None:
    from typer.testing import CliRunner

    from attnsvm.cli import app
    from attnsvm.cli_kkt import parameter_space_note
    from attnsvm.config import dump_config, parse_config

    out = tmp_path / "combined"
    out.mkdir()
    cfg = parse_config({"problem": {"generator": "unit-gaussian", "n": 3, "T": 4, "d": 5, "seed": 3},
                        "model": {"parameterization": "combined"}, "run": {"trials": 2}})
    (out / "config.toml").write_text(dump_config(cfg))
    np.savez(out / "final.npz", W=np.random.default_rng(0).standard_normal((2, 5, 5)))
    res = CliRunner().invoke(app, ["kkt", str(out)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "parameter space: does not apply to the combined model" in text and "Frobenius Att-SVM" in text
    assert "ℓ2 Att-SVM" in parameter_space_note("prompt")
    assert parameter_space_note("factored") is None and parameter_space_note("diagonal") is None
    assert "not available" in parameter_space_note("multihead")


def test_run_kkt_records_parameter_space_epsilon(tmp_path) -> None:
    """``[run] kkt = true`` on a factored descent: metrics carry kkt_factored at every record, equal to the
    parameter-space certificate of the recorded (K, Q); the nuclear ε beside it."""
    import pandas as pd
    from typer.testing import CliRunner

    from attnsvm.cli import app

    cfg = tmp_path / "c.toml"
    cfg.write_text('[problem]\ngenerator = "unit-gaussian"\nn = 3\nT = 3\nd = 4\nseed = 1\n'
                   '[model]\nparameterization = "factored"\n[init]\nscheme = "gaussian"\nscale = 0.1\n'
                   '[optimizer]\nname = "ngd"\nsteps = 200\nlr = 0.2\n'
                   '[run]\ntrials = 2\nrecord_every = 100\nreferences = ["nuclear"]\nkkt = true\nverdict = false\n')
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(cfg), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "metrics.parquet")
    assert {"kkt_nuclear", "kkt_factored"} <= set(df.columns)
    with np.load(out / "final.npz") as f:
        K, Q = f["K"], f["Q"]
    last = df[df.step == df.step.max()].sort_values("trial")
    for b in range(2):
        c = parameter_kkt_certificate(unit_gaussian(3, 3, 4, seed=1 + b), {"K": K[b], "Q": Q[b]})
        assert last.kkt_factored.iloc[b] == pytest.approx(c.epsilon, rel=1e-9)
    assert np.all(np.isfinite(df.kkt_factored.to_numpy()[df.step.to_numpy() > 0]))


@pytest.mark.slow  # a flow compilation (≈ 20 s)
def test_flow_keeps_parameter_path_for_kkt_records() -> None:
    """Flow with Save(params=True): params_path holds (k, q) at every record, consistent with the W path, and
    runs.with_kkt turns it into kkt_diagonal, equal to the certificate of each recorded (k, q)."""
    from attnsvm.models import Model
    from attnsvm.runs import with_kkt
    from attnsvm.training import Flow, Init, Radius, Save, train

    pr = unit_gaussian(3, 3, 5, seed=2)
    run = train(pr, Model("diagonal", loss="exponential", reduction="sum"), Flow(error_estimate=False), trials=2,
                init=Init("gaussian", 0.3, seed=1), save=Save(records=4, path=True, params=True), stop=Radius(30.0))
    k, q = run.params_path["k"], run.params_path["q"]
    assert k.shape == (2, 4, 5)
    np.testing.assert_allclose(np.diagonal(run.path, axis1=2, axis2=3), k * q, rtol=1e-12, atol=1e-15)
    eps = with_kkt(run, [pr], ["l1"]).metrics
    for b in range(2):
        c = parameter_kkt_certificate(pr, {"k": k[b, -1], "q": q[b, -1]})
        assert eps["kkt_diagonal"][b, -1] == pytest.approx(c.epsilon, rel=1e-12)
    assert eps["kkt_l1"].shape == (2, 4)

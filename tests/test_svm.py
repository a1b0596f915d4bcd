"""Att-SVM solvers (docs/concepts/att-svm.md): closed forms, agreement with independently formulated cvxpy problems,
KKT certificates, rank, infeasibility certificates, batch, v-SVM, multi-token equivalence, errors."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from attnsvm.problem import AttentionProblem, p1_joint, p1_loss, p1_single, unit_gaussian
from attnsvm.svm import (
    INFEASIBLE,
    OPTIMAL,
    SOLVER_ERROR,
    build_constraints,
    correlation,
    multitoken_svm,
    norm_value,
    relaxed_margins_from_v,
    solve_fro_stacked,
    solve_svm,
    solve_svm_batch,
    solve_v_svm,
)

# ---- independent reference formulations (constraints written out one by one, as public code does) ------


def _constraint_list(problem: AttentionProblem, sel, margins, theta, norm):
    """Constraints of Att-SVM written with explicit loops and cvxpy expressions."""
    X, mask = problem.X, problem.mask
    cons = []
    for i in range(problem.n):
        for t in range(problem.T):
            if t == sel[i] or not mask[i, t]:
                continue
            diff = X[i, sel[i]] - X[i, t]
            if norm == "l2":
                cons.append((problem.keys.T @ diff) @ theta >= margins[i])
            elif norm == "l1":
                cons.append(cp.sum(cp.multiply(diff * problem.queries[i], theta)) >= margins[i])
            else:
                cons.append(diff @ theta @ problem.queries[i] >= margins[i])
    return cons


def reference(problem: AttentionProblem, sel, norm: str, margins=None) -> tuple[np.ndarray, float]:
    """(solution, value) from cvxpy: OSQP polished (fro, l2), SCS eps 1e-10 (nuclear), Clarabel (l1)."""
    margins = np.ones(problem.n) if margins is None else margins
    d = problem.d
    if norm == "l2":
        theta = cp.Variable(problem.keys.shape[1])
    elif norm == "l1":
        theta = cp.Variable(d)
    else:
        theta = cp.Variable((d, d))
    cons = _constraint_list(problem, sel, margins, theta, norm)
    if norm in ("fro", "l2"):
        prob = cp.Problem(cp.Minimize(cp.sum_squares(theta)), cons)
        prob.solve(solver="OSQP", eps_abs=1e-12, eps_rel=1e-12, polishing=True, max_iter=400_000)
    elif norm == "nuclear":
        prob = cp.Problem(cp.Minimize(cp.normNuc(theta)), cons)
        prob.solve(solver="SCS", eps_abs=1e-10, eps_rel=1e-10, max_iters=400_000)
    else:
        prob = cp.Problem(cp.Minimize(cp.norm1(theta)), cons)
        prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    assert prob.status == "optimal", prob.status
    sol = np.diag(theta.value) if norm == "l1" else theta.value
    return sol, norm_value(sol, norm)


def random_problem(rng: np.random.Generator, n: int, T: int, d: int, kind: str = "cross",
                   pad: bool = False) -> AttentionProblem:
    X = rng.standard_normal((n, T, d))
    Y = rng.choice([-1.0, 1.0], size=n)
    v = rng.standard_normal(d)
    mask = None
    if pad:
        mask = np.ones((n, T), bool)
        lengths = rng.integers(2, T + 1, size=n)
        mask[np.arange(T)[None, :] >= lengths[:, None]] = False
        if kind == "self":
            mask[:, 0] = True
    if kind == "cross":
        return AttentionProblem(X=X, Y=Y, v=v, Z=rng.standard_normal((n, d)), mask=mask)
    if kind == "self":
        return AttentionProblem(X=X, Y=Y, v=v, query_index=0, mask=mask)
    return AttentionProblem(X=X, Y=Y, v=v, key_matrix=rng.standard_normal((d, d)), mask=mask)


def random_selection(rng, problem):
    """A uniformly random real token per sequence."""
    return np.array([rng.choice(np.flatnonzero(problem.mask[i])) for i in range(problem.n)])


# ---- P1 closed forms (docs/reproductions/index.md) -------------------------------------------------------


def test_p1_single_global_closed_form():
    r = solve_svm(p1_single("global"), "opt", "l2")
    assert r.status == "optimal"
    np.testing.assert_allclose(r.solution, np.array([-0.1, 1.0, 0.0]) / 1.01, atol=1e-12)
    assert r.value == pytest.approx(1 / np.sqrt(1.01), abs=1e-12)
    assert r.support_tokens == ((2,),)  # token (0, 0) is the only active one; (1, 0) has margin 1.1/1.01


def test_p1_single_local_closed_form():
    r = solve_svm(p1_single("local"), [1], "l2")
    np.testing.assert_allclose(r.solution, [1.0, 0.0, 0.0], atol=1e-12)
    assert r.support_tokens == ((2,),)  # token (−0.1, 1) has margin 1.1


@pytest.mark.parametrize("case", ["tight", "relaxed"])
def test_p1_joint_closed_forms(case):
    p = p1_joint(case)
    sel = [1, 1, 1]
    v = solve_v_svm(p, sel)
    np.testing.assert_allclose(v.v, [0.0, 1.0], atol=1e-12)
    assert v.support_samples == ((0, 1, 2) if case == "tight" else (0, 1))
    assert v.certificate.primal <= 1e-12 and v.certificate.dual <= 1e-12
    pmm = solve_svm(p, sel, "l2")
    relax = solve_svm(p, sel, "l2", margins=relaxed_margins_from_v(p, sel))
    if case == "tight":
        np.testing.assert_allclose(pmm.solution, [4 / 3, 1 / 3], atol=1e-12)
        np.testing.assert_allclose(relax.solution, [4 / 3, 1 / 3], atol=1e-12)
    else:
        np.testing.assert_allclose(pmm.solution, [1.25, 0.25], atol=1e-12)
        np.testing.assert_allclose(relax.margins, [1.0, 1.0, 0.0])
        np.testing.assert_allclose(relax.solution, [1.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("C", [1.0, 2.0, 5.0, 10.0, 100.0])
def test_p1_loss_closed_form(C):
    r = solve_svm(p1_loss(C), "opt", "l2")
    np.testing.assert_allclose(r.solution, [1.0, 0.0, 0.0], atol=1e-12)


# ---- agreement with cvxpy --------------------------------------------------------------------------------


def _random_cases(seed: int, count: int, sizes, kinds=("cross", "self")):
    rng = np.random.default_rng(seed)
    for k in range(count):
        n, T, d = sizes[k % len(sizes)]
        kind = kinds[k % len(kinds)]
        p = random_problem(rng, n, T, d, kind, pad=(k % 3 == 0))
        sel = "opt" if k % 2 == 0 else random_selection(rng, p)
        margins = None if k % 4 else rng.integers(0, 2, size=n).astype(float)
        yield p, sel, margins


SMALL = [(2, 3, 4), (3, 4, 5), (4, 6, 8), (6, 8, 10), (5, 3, 12), (8, 5, 6)]


def test_fro_agrees_with_cvxpy_on_100_instances():
    worst, kkt = 0.0, 0.0
    for p, sel, c in _random_cases(0, 100, SMALL):
        r = solve_svm(p, sel, "fro", margins=c)
        assert r.status == "optimal"
        ref, val = reference(p, r.selection, "fro", r.margins)
        worst = max(worst, np.linalg.norm(r.solution - ref) / max(np.linalg.norm(ref), 1e-300))
        cert = r.certificate
        kkt = max(kkt, cert.primal, cert.dual, cert.complementarity, abs(cert.gap))
        if np.any(r.margins > 0):  # rank ≤ min(n, d): W = Σ λ_it (x_iα − x_it) z_iᵀ
            assert np.linalg.matrix_rank(r.solution, tol=1e-9 * r.value) <= min(p.n, p.d)
    assert worst <= 1e-7
    assert kkt <= 1e-9


def test_l2_agrees_with_cvxpy():
    worst = 0.0
    for p, sel, c in _random_cases(1, 30, SMALL, kinds=("prompt",)):
        r = solve_svm(p, sel, "l2", margins=c)
        if r.status == "infeasible":  # prompt problems with d < T−1 can be infeasible
            assert float((r.margins[:, None] * r.farkas).sum()) > 0
            continue
        ref, _ = reference(p, r.selection, "l2", r.margins)
        worst = max(worst, np.linalg.norm(r.solution - ref) / max(np.linalg.norm(ref), 1e-300))
        # complementarity max λ_k |⟨A_k, p⟩ − c_k| grows with the multipliers (Σ λ_k c_k = ‖p‖²): relative to the
        # value (an absolute 1e−9 failed at 1.13e−9 for a value of 14.8 on one machine's BLAS, passed on another)
        assert max(r.certificate.primal, r.certificate.dual, r.certificate.complementarity) <= 1e-9 * max(1.0, r.value)
    assert worst <= 1e-7


def test_fro_large_instance_against_vectorised_cvxpy():
    """(50, 20, 32): the reference is a QP whose constraint matrix the test builds itself with einsum."""
    p = unit_gaussian(50, 20, 32, seed=7)
    r = solve_svm(p, "opt", "fro")
    sel = r.selection
    D = p.X[np.arange(p.n), sel][:, None, :] - p.X
    A = np.einsum("ita,ib->itab", D, p.queries).reshape(p.n, p.T, -1)
    keep = np.ones((p.n, p.T), bool)
    keep[np.arange(p.n), sel] = False
    w = cp.Variable(p.d * p.d)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(w)), [A[keep] @ w >= 1])
    prob.solve(solver="OSQP", eps_abs=1e-12, eps_rel=1e-12, polishing=True, max_iter=400_000)
    ref = w.value.reshape(p.d, p.d)
    assert np.linalg.norm(r.solution - ref) / np.linalg.norm(ref) <= 1e-7
    assert max(r.certificate.primal, r.certificate.dual, r.certificate.complementarity) <= 1e-9
    assert np.linalg.matrix_rank(r.solution, tol=1e-9 * r.value) <= min(p.n, p.d)


NUC_SMALL = [(2, 3, 4), (3, 4, 5), (4, 6, 8), (6, 8, 10)]


def _check_nuclear(cases):
    for p, sel, c in cases:
        r = solve_svm(p, sel, "nuclear", margins=c)
        assert r.status == "optimal", r.message
        ref, val = reference(p, r.selection, "nuclear", r.margins)
        if val == 0:
            assert r.value <= 1e-8
            continue
        assert np.linalg.norm(r.solution - ref) / np.linalg.norm(ref) <= 1e-6
        assert abs(r.value - val) / val <= 1e-7
        # own certificate: the weak-duality lower bound certifies the value
        assert r.certificate.gap / r.value <= 1e-7
        assert r.certificate.lower <= val * (1 + 1e-9)
        # nuclear rank never exceeds the Frobenius rank bound
        s = np.linalg.svd(r.solution, compute_uv=False)
        assert np.sum(s > 1e-6 * s[0]) <= min(p.n, p.d)


def test_nuclear_agrees_with_scs_reference():
    _check_nuclear(_random_cases(2, 12, NUC_SMALL))


@pytest.mark.slow
def test_nuclear_agrees_with_scs_reference_sweep():
    _check_nuclear(_random_cases(3, 100, NUC_SMALL + [(10, 10, 16), (20, 10, 16), (50, 20, 32)]))


@pytest.mark.slow
def test_fro_agrees_with_cvxpy_sweep_large():
    worst = 0.0
    for p, sel, c in _random_cases(4, 100, SMALL + [(20, 10, 16), (30, 15, 24), (50, 20, 32)]):
        r = solve_svm(p, sel, "fro", margins=c)
        ref, _ = reference(p, r.selection, "fro", r.margins)
        worst = max(worst, np.linalg.norm(r.solution - ref) / max(np.linalg.norm(ref), 1e-300))
    assert worst <= 1e-7


L1_SIZES = [(2, 3, 8), (3, 4, 12), (2, 5, 10), (4, 3, 16)]


def test_l1_objective_agrees_with_clarabel():
    count = 0
    for p, sel, c in _random_cases(5, 40, L1_SIZES):
        r = solve_svm(p, sel, "l1", margins=c)
        if r.status == "infeasible":
            assert float((r.margins[:, None] * r.farkas).sum()) > 0
            continue
        count += 1
        _, val = reference(p, r.selection, "l1", r.margins)
        assert abs(r.value - val) <= 1e-8 * max(1.0, val)
        cert = r.certificate
        assert max(cert.primal, cert.dual, cert.complementarity, abs(cert.gap)) <= 1e-9
        assert np.allclose(r.solution, np.diag(np.diag(r.solution)))  # W = diag(w)
    assert count >= 30


# ---- infeasibility -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["fro", "nuclear", "l1"])
def test_duplicate_token_is_infeasible_with_certificate_naming_sample(norm):
    p = unit_gaussian(4, 5, 12, seed=3)
    X = np.array(p.X)
    X[2, 3] = X[2, 1]  # token 3 duplicates the selected token 1 of sequence 2
    q = AttentionProblem(X=X, Y=p.Y, v=p.v, Z=p.Z)
    sel = np.array([0, 0, 1, 0])
    r = solve_svm(q, sel, norm)
    assert r.status == "infeasible"
    assert r.infeasible_samples == (2,)
    cons = build_constraints(q, sel, norm)
    lam = r.farkas[cons.valid]
    assert np.all(lam >= 0)
    assert np.linalg.norm(cons.rows.T @ lam) <= 1e-12
    assert cons.rhs @ lam > 0.5
    assert "sample(s) 2" in r.message


def test_l2_infeasible_farkas_when_zero_in_hull():
    # one sequence whose token differences are ±e1: no p gives both ⟨e1, p⟩ ≥ 1 and ⟨−e1, p⟩ ≥ 1
    X = np.array([[[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]])
    p = AttentionProblem(X=X, Y=np.ones(2), v=np.array([0.0, 1.0]))
    r = solve_svm(p, [0, 0], "l2")
    assert r.status == "infeasible"
    assert r.infeasible_samples == (0,)
    lam = r.farkas
    assert np.all(lam >= 0) and lam[0].sum() > 0 and np.allclose(lam[1], 0)


# ---- masks, batch, structure --------------------------------------------------------------------------------


def test_masked_tokens_never_constrain():
    rng = np.random.default_rng(11)
    p = random_problem(rng, 4, 5, 6)
    junk = 100 * rng.standard_normal((4, 3, 6))
    X = np.concatenate([p.X, junk], axis=1)
    mask = np.concatenate([np.ones((4, 5), bool), np.zeros((4, 3), bool)], axis=1)
    q = AttentionProblem(X=X, Y=p.Y, v=p.v, Z=p.Z, mask=mask)
    for norm in ("fro", "nuclear"):
        a, b = solve_svm(p, "opt", norm), solve_svm(q, "opt", norm)
        np.testing.assert_allclose(a.solution, b.solution, atol=1e-7)
        assert not b.active[:, 5:].any() and np.all(b.duals[:, 5:] == 0)
        assert np.all(np.isnan(b.margin[:, 5:]))


def test_constraints_are_vectorised_and_exclude_selected():
    p = unit_gaussian(3, 4, 5, seed=1)
    cons = build_constraints(p, [1, 2, 3], "fro")
    assert cons.rows.shape == (9, 25)
    assert not cons.valid[np.arange(3), [1, 2, 3]].any()
    i, t = cons.index[4]
    expect = np.outer(p.X[i, [1, 2, 3][i]] - p.X[i, t], p.queries[i]).reshape(-1)
    np.testing.assert_allclose(cons.rows[4], expect)
    l1 = build_constraints(p, [1, 2, 3], "l1")
    np.testing.assert_allclose(l1.rows[4], (p.X[i, [1, 2, 3][i]] - p.X[i, t]) * p.queries[i])


def test_batch_matches_single_and_small_instances():
    problems = [unit_gaussian(6, 8, 10, seed=s) for s in range(20)]
    batch = solve_svm_batch(problems, "opt", "fro")
    for k, p in enumerate(problems):
        r = solve_svm(p, "opt", "fro")
        np.testing.assert_allclose(batch.solution[k], r.solution, atol=1e-11)
        np.testing.assert_array_equal(batch.active[k], r.active)
    assert np.all(batch.status == "optimal")
    assert np.max(batch.primal) <= 1e-9 and np.max(batch.dual) <= 1e-9
    assert np.max(np.abs(batch.gap)) <= 1e-9


def test_batch_reports_infeasible_instance():
    p = unit_gaussian(3, 4, 6, seed=0)
    X = np.array(p.X)
    X[1, 2] = X[1, 0]
    q = AttentionProblem(X=X, Y=p.Y, v=p.v, Z=p.Z)
    batch = solve_fro_stacked(np.stack([p.X, q.X]), np.stack([p.Z, q.Z]), np.zeros((2, 3), dtype=int))
    assert list(batch.status) == ["optimal", "infeasible"]
    assert batch.farkas[1, 1, 2] > 0


def test_every_selection_feasible_when_d_large():
    """P3: d ≥ max(T−1, n) in general position ⇒ every α feasible."""
    rng = np.random.default_rng(5)
    for _ in range(10):
        p = random_problem(rng, 4, 5, 6)
        assert solve_svm(p, random_selection(rng, p), "fro").status == "optimal"


# ---- multi-token equivalence ---------------------------------------------------------------------------------


def test_multitoken_fit_recovers_planted_direction():
    p = unit_gaussian(3, 4, 8, seed=2)
    s = np.array([[0.6, 0.4, 1e-9, 1e-8], [0.3, 1e-10, 0.7, 1e-9], [1.0 - 2e-9, 1e-9, 1e-9, 1e-12]])
    mt = multitoken_svm(p, s)
    assert mt.status == "optimal"
    a = np.einsum("itd,de,ie->it", p.X, mt.W_fin, p.queries)
    assert a[0, 1] - a[0, 0] == pytest.approx(np.log(0.4 / 0.6), abs=1e-10)
    assert a[1, 2] - a[1, 0] == pytest.approx(np.log(0.7 / 0.3), abs=1e-10)
    b = np.einsum("itd,de,ie->it", p.X, mt.W_dir, p.queries)
    assert abs(b[0, 0] - b[0, 1]) <= 1e-10 and abs(b[1, 0] - b[1, 2]) <= 1e-10
    assert np.all(b[0, 0] - b[0, 2:] >= 1 - 1e-10) and np.all(b[2, 0] - b[2, 1:] >= 1 - 1e-10)
    W = mt.W_fin + 7.5 * mt.W_dir
    fit = multitoken_svm(p, s, W=W)
    assert fit.fitted and fit.R == pytest.approx(7.5, rel=1e-9)
    assert fit.correlation == pytest.approx(1.0, abs=1e-12)


# ---- errors -------------------------------------------------------------------------------------------------


def test_bad_input_raises_naming_argument():
    p = unit_gaussian(3, 4, 5, seed=0)
    with pytest.raises(ValueError, match="selection"):
        solve_svm(p, [0, 1], "fro")
    with pytest.raises(ValueError, match="selection"):
        solve_svm(p, [0, 1, 4], "fro")
    with pytest.raises(ValueError, match="selection"):
        solve_svm(p, "first", "fro")
    with pytest.raises(ValueError, match="norm"):
        solve_svm(p, "opt", "spectral")
    with pytest.raises(ValueError, match="margins"):
        solve_svm(p, "opt", "fro", margins=[1, -1, 1])
    prompt = unit_gaussian(3, 4, 5, seed=0, attention="prompt")
    with pytest.raises(ValueError, match="norm.*prompt"):
        solve_svm(prompt, "opt", "nuclear")
    mask = np.ones((3, 4), bool)
    mask[0, 3] = False
    masked = AttentionProblem(X=p.X, Y=p.Y, v=p.v, Z=p.Z, mask=mask)
    with pytest.raises(ValueError, match="selection.*masked"):
        solve_svm(masked, [3, 0, 0], "fro")


def test_correlation():
    A = np.arange(6.0).reshape(2, 3)
    assert correlation(A, 3 * A) == pytest.approx(1.0)
    assert correlation(A, -A) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="shape"):
        correlation(A, A.T)


def test_batch_accepts_stacked_arrays():
    problems = [unit_gaussian(3, 4, 5, seed=s) for s in range(4)]
    sel = np.stack([p.optimal_tokens().opt for p in problems])
    X = np.stack([p.X for p in problems])
    Z = np.stack([p.Z for p in problems])
    a = solve_svm_batch((X, Z), sel, "fro")
    b = solve_svm_batch(problems, "opt", "fro")
    np.testing.assert_allclose(a.solution, b.solution, atol=1e-13)
    with pytest.raises(ValueError, match="selections"):
        solve_svm_batch((X, Z), "opt", "fro")
    prompt = solve_svm_batch((X, None), sel, "l2")
    r = solve_svm(AttentionProblem(X=X[1], Y=problems[1].Y, v=problems[1].v), sel[1], "l2")
    np.testing.assert_allclose(prompt.solution[1], r.solution, atol=1e-12)


def test_optimal_is_claimed_only_with_a_certificate(monkeypatch):
    """A solver answer that fails its own certificate is reported as inaccurate, not optimal."""
    import attnsvm.svm._ldp as ldp_mod

    real = ldp_mod.nnls

    def sloppy(E, e, maxiter=None):
        u, res = real(E, e, maxiter=maxiter)
        return 0.9 * u, res  # 10% off: violates the margins

    monkeypatch.setattr(ldp_mod, "nnls", sloppy)
    r = solve_svm(unit_gaussian(4, 5, 6, seed=0), "opt", "fro")
    assert r.status == "inaccurate"
    assert r.certificate.primal > 1e-3 and "certificate above" in r.message


# ---- package structure: statuses, one correlation / logits, the norm registry ------------------------------


def test_no_bare_status_strings_in_the_package():
    """Statuses are compared through the named constants of attnsvm.svm, never typed strings."""
    import re
    from pathlib import Path

    import attnsvm

    pat = re.compile(r"""status\w*\s*(==|!=)\s*["'](optimal|infeasible|inaccurate|solver_error)["']""")
    root = Path(attnsvm.__file__).parent
    hits = [f"{p.relative_to(root)}:{k + 1}" for p in root.rglob("*.py")
            for k, line in enumerate(p.read_text().splitlines()) if pat.search(line)]
    assert not hits, hits


def test_status_constants():
    from attnsvm import svm

    assert svm.SOLUTION_PRESENT == {svm.OPTIMAL, svm.INACCURATE}
    assert svm.INFEASIBLE not in svm.SOLUTION_PRESENT and svm.SOLVER_ERROR not in svm.SOLUTION_PRESENT
    assert svm.SOLUTION_PRESENT <= svm.STATUSES


def test_correlation_shapes_zero_and_scale():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    ref = float(np.sum(A * B) / np.sqrt(np.sum(A * A) * np.sum(B * B)))
    assert correlation(A, B) == pytest.approx(ref, abs=1e-15)
    path = np.stack([A, 2 * B, np.zeros_like(A)])
    c = correlation(path, B)
    np.testing.assert_allclose(c[:2], [ref, 1.0], atol=1e-15)
    assert np.isnan(c[2]) and correlation(path, B, zero=0.0)[2] == 0.0
    # per-row cosines with a broadcast reference (last axis only)
    rows = correlation(path[:2], B, ndim=1)
    assert rows.shape == (2, 4)
    np.testing.assert_allclose(rows[1], 1.0, atol=1e-15)
    # scale-free where the naive norms over- or underflow
    for s in (1e-200, 1e200, 1e300):
        assert correlation(s * A, B) == pytest.approx(ref, rel=1e-13)
        np.testing.assert_allclose(correlation(s * path[:2], B), [ref, 1.0], rtol=1e-13)
    assert np.isnan(correlation(np.full((4, 3), np.nan), B))
    with pytest.raises(ValueError, match="A, B"):
        correlation(A, np.ones(5))


def test_logits_batched_equal_single():
    from attnsvm.svm import logits

    rng = np.random.default_rng(1)
    for pr in (random_problem(rng, 3, 4, 5, "cross", pad=True), random_problem(rng, 3, 4, 5, "prompt")):
        shape = (pr.keys.shape[1],) if pr.kind == "prompt" else (pr.d, pr.d)
        th = rng.standard_normal((2, 3, *shape))
        batch = logits(pr, th)
        assert batch.shape == (2, 3, pr.n, pr.T)
        for a in range(2):
            for b in range(3):
                np.testing.assert_allclose(batch[a, b], logits(pr, th[a, b]), atol=1e-13)
        one = logits(pr, th[0, 0])
        if pr.kind == "prompt":
            ref = np.einsum("ntk,kj,j->nt", pr.X, pr.keys, th[0, 0])
        else:
            ref = np.einsum("ntd,de,ne->nt", pr.X, th[0, 0], pr.queries)
        np.testing.assert_allclose(one[pr.mask], ref[pr.mask], atol=1e-12)
        assert np.all(np.isneginf(one[~pr.mask]))


def test_a_norm_registered_outside_the_package():
    """A new norm is one spec: ℓ∞ of the diagonal w (an LP), defined here, solved and certified through
    solve_svm, checked against cvxpy."""
    from scipy.optimize import linprog

    from attnsvm.svm import OPTIMAL, NormSpec, RawSolution, register_norm
    from attnsvm.svm._registry import _REGISTRY

    def solve_linf(cons, options):
        A, c = cons.rows, cons.rhs
        m, p = A.shape
        # variables (w, t): min t s.t. A w ≥ c, −t ≤ w_j ≤ t
        A_ub = np.vstack([np.hstack([-A, np.zeros((m, 1))]),
                          np.hstack([np.eye(p), -np.ones((p, 1))]), np.hstack([-np.eye(p), -np.ones((p, 1))])])
        cost = np.zeros(p + 1)
        cost[p] = 1.0
        res = linprog(cost, A_ub=A_ub, b_ub=np.concatenate([-c, np.zeros(2 * p)]),
                      bounds=[(None, None)] * p + [(0, None)], method="highs")
        w = res.x[:p]
        y = -np.asarray(res.ineqlin.marginals)[:m]
        return RawSolution(OPTIMAL, w, y * float(np.abs(w).max()), "highs-test")

    spec = NormSpec(name="linf-diag-test", variable="diagonal", value=lambda w: float(np.abs(w).max()),
                    dual=lambda g: float(np.abs(g).sum()), solve=solve_linf, tolerance=1e-8)
    register_norm(spec)
    try:
        pr = unit_gaussian(3, 4, 8, seed=3)
        r = solve_svm(pr, "opt", "linf-diag-test")
        assert r.status == OPTIMAL, r.message
        assert r.certificate.gap <= 1e-8 and r.certificate.primal <= 1e-9
        w = cp.Variable(pr.d)
        sel = pr.optimal_tokens().opt
        cons = [cp.sum(cp.multiply((pr.X[i, sel[i]] - pr.X[i, t]) * pr.queries[i], w)) >= 1
                for i in range(pr.n) for t in range(pr.T) if t != sel[i]]
        prob = cp.Problem(cp.Minimize(cp.norm_inf(w)), cons)
        prob.solve(solver="CLARABEL")
        assert r.value == pytest.approx(prob.value, rel=1e-6)
        assert norm_value(r.solution, "linf-diag-test") == pytest.approx(r.value, rel=1e-14)
    finally:
        _REGISTRY.pop("linf-diag-test")


# ---- scale invariance and honest statuses --------------------------------------------------------------------


def _scaled(pr: AttentionProblem, s: float) -> AttentionProblem:
    """X (and Z) × s; a prompt problem keeps its key matrix (its rows Kᵀ D scale by s, p by 1/s)."""
    if pr.kind == "prompt":
        return AttentionProblem(X=s * pr.X, Y=pr.Y, v=pr.v, key_matrix=pr.key_matrix, mask=pr.mask)
    return AttentionProblem(X=s * pr.X, Y=pr.Y, v=pr.v, Z=s * pr.queries, mask=pr.mask)


@pytest.mark.parametrize("norm", ["l2", "fro", "nuclear", "l1"])
@pytest.mark.parametrize("seed", [0, 1])
def test_scale_invariance(norm, seed):
    """X, Z × 10^k, k = −8 … 8: same status and support tokens, solution × s^(−2) (s^(−1) for the prompt
    vector p) to solver accuracy, same relative certificate; the unit problem checked against cvxpy."""
    rng = np.random.default_rng(100 + seed)
    pr = random_problem(rng, 3, 4, 8 if norm == "l1" else 5, "prompt" if norm == "l2" else "cross")
    sel = pr.optimal_tokens().opt
    base = solve_svm(pr, sel, norm)
    rtol = 1e-6 if norm == "nuclear" else 1e-8
    if base.status != OPTIMAL:
        assert base.status == INFEASIBLE, base.message
    else:
        assert base.value == pytest.approx(reference(pr, sel, norm)[1], rel=1e-6)
    power = 1 if norm == "l2" else 2
    for k in range(-8, 9):
        s = 10.0**k
        r = solve_svm(_scaled(pr, s), sel, norm)
        assert r.status == base.status, (k, r.message)
        if base.status != OPTIMAL:
            assert np.all(np.isnan(r.solution)) and r.farkas is not None
            continue
        assert r.support_tokens == base.support_tokens, k
        np.testing.assert_allclose(r.solution * s**power, base.solution, rtol=rtol,
                                   atol=rtol * np.abs(base.solution).max(), err_msg=f"k = {k}")
        assert r.value * s**power == pytest.approx(base.value, rel=rtol)
        assert r.certificate.primal <= 1e-8 and abs(r.certificate.relative_gap) <= 1e-6
        np.testing.assert_allclose(r.duals * s ** (2 * power), base.duals, rtol=10 * rtol,
                                   atol=10 * rtol * base.duals.max())
        np.testing.assert_allclose(r.margin, base.margin, rtol=1e-6, atol=1e-7)


def test_scale_by_powers_of_two_is_exact():
    """X, Z × 2^k only shifts exponents: the solver sees the same unit-scale data, so the answer is the same
    bit for bit, scaled back exactly."""
    pr = unit_gaussian(4, 5, 6, seed=4)
    base = {nm: solve_svm(pr, "opt", nm) for nm in ("fro", "l1", "nuclear")}
    for k in (-30, -7, 5, 40):
        s = 2.0**k
        for nm, b in base.items():
            r = solve_svm(_scaled(pr, s), b.selection, nm)
            assert r.status == b.status and r.message == b.message
            np.testing.assert_array_equal(r.solution * s**2, b.solution)
            assert r.certificate.relative_gap == b.certificate.relative_gap


@pytest.mark.parametrize("norm", ["fro", "l1", "nuclear"])
def test_near_duplicate_tokens_same_as_rescaled_copy(norm):
    """Tokens 1e−12 apart (x̄ + δN, δ = 2^−40 ≈ 9e−13) give the answer of their rescaled copy (X − x̄)/δ:
    same status (optimal, not infeasible), solution scaled by δ exactly."""
    rng = np.random.default_rng(7)
    n, T, d = 3, 4, 6 if norm != "l1" else 8
    delta = 2.0**-40
    xbar = 1.0 + rng.uniform(size=d)  # one binade: X − x̄ and the differences are exact
    X = xbar + delta * rng.standard_normal((n, T, d))
    Z = rng.standard_normal((n, d))
    near = AttentionProblem(X=X, Y=np.ones(n), v=rng.standard_normal(d), Z=Z)
    copy = AttentionProblem(X=(X - xbar) / delta, Y=near.Y, v=near.v, Z=Z)
    sel = np.zeros(n, dtype=int)
    a, b = solve_svm(near, sel, norm), solve_svm(copy, sel, norm)
    assert a.status == b.status
    assert b.status in (OPTIMAL, INFEASIBLE)
    if b.status == OPTIMAL:
        np.testing.assert_allclose(a.solution * delta, b.solution, rtol=1e-12, atol=1e-12 * np.abs(b.solution).max())
        assert a.support_tokens == b.support_tokens


def test_l1_huge_scale_is_solved_not_infeasible():
    """With X × 1e100 the LP sees unit-scale data: the same optimal answer, not a solver error."""
    pr = unit_gaussian(3, 4, 8, seed=5)
    b = solve_svm(pr, "opt", "l1")
    r = solve_svm(_scaled(pr, 1e100), b.selection, "l1")
    assert r.status == b.status == OPTIMAL
    np.testing.assert_allclose(r.solution * 1e200, b.solution, rtol=1e-8, atol=1e-12)


def test_solver_failure_is_its_own_status(monkeypatch):
    """A failing LP is SOLVER_ERROR; an 'infeasible' claim without a Farkas certificate is SOLVER_ERROR too,
    never INFEASIBLE; neither is locally optimal."""
    import attnsvm.svm._l1 as l1_mod
    from attnsvm.tokens import is_locally_optimal

    pr = unit_gaussian(3, 4, 8, seed=5)
    real = l1_mod.linprog

    class Fake:
        def __init__(self, status):
            self.status, self.message = status, "fake"

    for st in (4, 2):  # numerical difficulties; a false infeasibility claim on a feasible problem
        monkeypatch.setattr(l1_mod, "linprog", lambda *a, st=st, **k: Fake(st))
        r = solve_svm(pr, "opt", "l1")
        assert r.status == SOLVER_ERROR, r.message
        assert r.farkas is None and np.all(np.isnan(r.solution)) and not r.has_solution
        assert not is_locally_optimal(pr, "opt", "l1", result=r).locally_optimal
    monkeypatch.setattr(l1_mod, "linprog", real)
    assert solve_svm(pr, "opt", "l1").status == OPTIMAL


@pytest.mark.parametrize("tol", [float("nan"), -1e-6, float("inf")])
def test_bad_tol_is_rejected(tol):
    pr = unit_gaussian(3, 4, 5, seed=0)
    with pytest.raises(ValueError, match="tol"):
        solve_svm(pr, "opt", "fro", tol=tol)
    with pytest.raises(ValueError, match="tol"):
        solve_svm_batch([pr], "opt", "fro", tol=tol)


def test_batch_scale_invariance_and_certificate():
    """The batch solver rescales per instance and certifies like solve_svm."""
    prs = [unit_gaussian(4, 5, 6, seed=s) for s in range(3)]
    sel = np.stack([p.optimal_tokens().opt for p in prs])
    base = solve_svm_batch(prs, sel, "fro")
    for k in (-8, 8):
        s = 10.0**k
        r = solve_svm_batch([_scaled(p, s) for p in prs], sel, "fro")
        np.testing.assert_array_equal(r.status, base.status)
        ok = base.status == OPTIMAL
        np.testing.assert_allclose(r.solution[ok] * s**2, base.solution[ok], rtol=1e-8, atol=1e-10)
        np.testing.assert_array_equal(r.active, base.active)
    for b, p in enumerate(prs):
        single = solve_svm(p, sel[b], "fro")
        assert single.status == base.status[b]


def test_v_svm_and_multitoken_scale():
    """The v-SVM and the multi-token direction W_dir scale back exactly with the data."""
    p = p1_joint("relaxed")
    base = solve_v_svm(p, [1, 1, 1])
    for s in (1e-6, 1e6):
        q = AttentionProblem(X=s * p.X, Y=p.Y, v=p.v)
        r = solve_v_svm(q, [1, 1, 1])
        assert r.status == base.status == "optimal" and r.support_samples == base.support_samples
        np.testing.assert_allclose(r.v * s, base.v, atol=1e-12)
    pr = unit_gaussian(3, 4, 5, seed=1)
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(4) * 0.3, size=3)
    w = np.where(w > 1e-3, w, 1e-8)
    w /= w.sum(axis=1, keepdims=True)
    a = multitoken_svm(pr, w)
    b = multitoken_svm(AttentionProblem(X=1e-4 * pr.X, Y=pr.Y, v=pr.v, Z=1e-4 * pr.queries), w)
    assert a.status == b.status
    if a.status == "optimal":
        np.testing.assert_allclose(b.W_dir * 1e-8, a.W_dir, rtol=1e-8, atol=1e-10 * np.abs(a.W_dir).max())

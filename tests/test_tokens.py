"""Token optimality (docs/concepts/local-optimality.md): local optimality against a brute-force check built
on cvxpy, enumeration, selection from W, cone membership, size guard."""

from __future__ import annotations

import itertools

import cvxpy as cp
import numpy as np
import pytest

from attnsvm.problem import AttentionProblem, p1_multi, p1_single, unit_gaussian
from attnsvm.svm import solve_svm
from attnsvm.tokens import (
    candidate_tokens,
    cone_membership,
    enumerate_locally_optimal,
    is_locally_optimal,
    selection_from_W,
    selection_margins,
)


def brute_force_locally_optimal(problem: AttentionProblem, norm: str) -> set[tuple[int, ...]]:
    """Every α in the full product of real tokens, tested with an independent cvxpy solve."""
    X, g = problem.X, problem.scores()
    found = set()
    for sel in itertools.product(*[np.flatnonzero(problem.mask[i]) for i in range(problem.n)]):
        theta = cp.Variable(problem.keys.shape[1]) if norm == "l2" else cp.Variable((problem.d, problem.d))
        exprs, where = [], []
        for i in range(problem.n):
            for t in np.flatnonzero(problem.mask[i]):
                if t == sel[i]:
                    continue
                diff = X[i, sel[i]] - X[i, t]
                exprs.append((problem.keys.T @ diff) @ theta if norm == "l2" else diff @ theta @ problem.queries[i])
                where.append((i, t))
        prob = cp.Problem(cp.Minimize(cp.sum_squares(theta)), [e >= 1 for e in exprs])
        prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
        if prob.status != "optimal":
            assert prob.status in ("infeasible", "infeasible_inaccurate")
            continue
        ok = True
        for e, (i, t) in zip(exprs, where, strict=True):
            if e.value <= 1 + 1e-6 and not g[i, sel[i]] > g[i, t] + 1e-9:
                ok = False
        if ok:
            found.add(tuple(int(s) for s in sel))
    return found


def _small_problems():
    rng = np.random.default_rng(0)
    out = [p1_single("global"), p1_single("local")]
    for k in range(6):
        n, T, d = [(2, 3, 2), (2, 3, 3), (3, 3, 2), (2, 4, 3)][k % 4]
        X = rng.standard_normal((n, T, d))
        Y = rng.choice([-1.0, 1.0], size=n)
        v = rng.standard_normal(d)
        if k % 2:
            out.append(AttentionProblem(X=X, Y=Y, v=v, Z=rng.standard_normal((n, d))))
        else:
            out.append(AttentionProblem(X=X, Y=Y, v=v))
    return out


@pytest.mark.parametrize("idx", range(8))
def test_enumeration_matches_brute_force(idx):
    p = _small_problems()[idx]
    norm = "l2" if p.kind == "prompt" else "fro"
    got = {tuple(int(t) for t in s.selection) for s in enumerate_locally_optimal(p)}
    assert got == brute_force_locally_optimal(p, norm)
    for sel in itertools.product(*[range(p.T)] * p.n):  # the single test agrees with the enumeration
        assert is_locally_optimal(p, list(sel)).locally_optimal == (sel in got)


def test_p1_single_local_and_global():
    glob = enumerate_locally_optimal(p1_single("global"))
    assert [tuple(s.selection) for s in glob] == [(0,)]
    loc = enumerate_locally_optimal(p1_single("local"))
    assert [tuple(s.selection) for s in loc] == [(0,), (1,)]
    assert loc[0].globally_optimal and not loc[1].globally_optimal
    assert loc[1].margin == pytest.approx(1.0, abs=1e-12)
    lo = is_locally_optimal(p1_single("global"), [1])
    # in the global case token (0, 0) has the same score 0.9 as the selected (1, 0) and is a support token
    assert lo.feasible and not lo.locally_optimal and lo.violations == ((0, 2),)


def test_opt_is_locally_optimal_and_argmax_of_solution_recovers_selection():
    for seed in range(5):
        p = unit_gaussian(5, 6, 8, seed=seed)
        lo = is_locally_optimal(p, "opt")
        assert lo.feasible and lo.locally_optimal and lo.globally_optimal
        rng = np.random.default_rng(seed)
        sel = rng.integers(0, 6, size=5)
        r = solve_svm(p, sel, "fro")
        assert np.array_equal(selection_from_W(p, r.solution), sel)
        assert np.all(selection_margins(p, r.solution, sel)[r.constrained] >= 1 - 1e-9)
    q = p1_multi()
    r = solve_svm(q, "opt", "l2")
    assert np.array_equal(selection_from_W(q, r.solution), np.zeros(q.n, dtype=int))


def test_cone_membership():
    p = unit_gaussian(4, 5, 6, seed=1)
    r = solve_svm(p, "opt", "fro")
    rng = np.random.default_rng(0)
    W = 10 * r.solution + 0.01 * rng.standard_normal(r.solution.shape)
    inside = cone_membership(W, r, mu=0.01, R=5.0)
    assert inside.inside and inside.correlation > 0.99
    assert not cone_membership(-W, r, mu=0.5).inside
    assert not cone_membership(W, r, mu=0.01, R=1e6).inside


def test_enumeration_size_guard_explains():
    p = unit_gaussian(8, 6, 12, seed=0)
    with pytest.raises(ValueError, match="max_selections.*candidate selections"):
        enumerate_locally_optimal(p, max_selections=1000)


def test_candidate_pruning_drops_token_in_hull():
    # token 0 sits at the mean of the others in a 1-query sequence: 0 is in the convex hull of its
    # differences, so no W selects it
    X = np.array([[[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0],
                                                                     [0.0, 2.0]]])
    p = AttentionProblem(X=X, Y=np.ones(2), v=np.array([1.0, 0.0]), Z=np.ones((2, 2)))
    cands = candidate_tokens(p)
    assert 0 not in cands[0] and {1, 2, 3} <= set(cands[0].tolist())
    assert is_locally_optimal(p, [0, 0]).feasible is False


def test_nuclear_local_optimality_runs():
    p = unit_gaussian(3, 3, 4, seed=2)
    lo = is_locally_optimal(p, "opt", norm="nuclear")
    assert lo.feasible and lo.locally_optimal
    assert lo.result.norm == "nuclear"


# ---- streaming, pruned search (the reduced exact test against brute force) ---------------------------------


def _brute_force_own(problem: AttentionProblem, norm: str, tol: float = 1e-6) -> set[tuple[int, ...]]:
    """Every selection of the full product of real tokens tested one by one with its own Att-SVM."""
    return {sel for sel in itertools.product(*[np.flatnonzero(problem.mask[i]) for i in range(problem.n)])
            if is_locally_optimal(problem, list(sel), norm, tol).locally_optimal}


@pytest.mark.parametrize("kind, seed", [("cross", 0), ("cross", 1), ("self", 2), ("prompt", 3), ("padded", 4),
                                        ("dependent", 5), ("prompt6", 7), ("prompt6", 9), ("prompt-padded", 10)])
def test_search_matches_brute_force_n4_T5(kind, seed):
    """n = 4, T = 5: the search (reduced test, prefix pruning, certification) finds exactly the locally
    optimal selections of the brute force over all 5^4 selections."""
    from attnsvm.tokens import search_locally_optimal

    rng = np.random.default_rng(seed)
    n, T, d = 4, 5, 6
    X = rng.standard_normal((n, T, d))
    Y, v = rng.choice([-1.0, 1.0], size=n), rng.standard_normal(d)
    if kind == "cross":
        p = AttentionProblem(X=X, Y=Y, v=v, Z=rng.standard_normal((n, d)))
    elif kind == "self":
        p = AttentionProblem(X=X, Y=Y, v=v, query_index=0)
    elif kind == "prompt":  # p shared by all samples: coupled, pruned depth-first (d' = 2)
        p = AttentionProblem(X=X[:, :, :2], Y=Y, v=v[:2])
    elif kind == "prompt6":  # d' = 6 (the README's prompt problem has d' = 10 > T): many feasible selections
        p = AttentionProblem(X=X, Y=Y, v=v)
    elif kind == "prompt-padded":
        mask = np.ones((n, T), bool)
        mask[1, 2:] = mask[3, 0] = False
        p = AttentionProblem(X=X[:, :, :3], Y=Y, v=v[:3], mask=mask)
    elif kind == "padded":
        mask = np.ones((n, T), bool)
        mask[0, 3:] = mask[2, 4] = False
        p = AttentionProblem(X=X, Y=Y, v=v, Z=rng.standard_normal((n, d)), mask=mask)
    else:  # queries of rank 2 < n: joint feasibility is not per-sample, prefixes are checked
        p = AttentionProblem(X=X[:, :, :2], Y=Y, v=v[:2], Z=rng.standard_normal((n, 2)))
    norm = "l2" if p.kind == "prompt" else "fro"
    seen = []
    found, stats = search_locally_optimal(p, norm, progress=lambda done, total: seen.append((done, total)))
    got = {tuple(int(t) for t in s.selection) for s in found}
    assert got == _brute_force_own(p, norm)
    assert kind not in ("prompt6",) or len(got) > 1  # a case with several locally optimal selections
    assert seen and seen[-1][0] == seen[-1][1] == stats.total
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))
    values = [s.value for s in found]
    assert values == sorted(values)
    if kind in ("prompt", "dependent", "prompt-padded"):
        assert stats.pruned > 0  # infeasible prefixes were cut
    if kind not in ("prompt", "dependent", "prompt-padded"):
        assert stats.screened > 0.9 * stats.total  # the reduced test decided nearly all of them


@pytest.mark.parametrize("norm", ["l1", "nuclear"])
def test_search_other_norms_match_brute_force(norm):
    from attnsvm.tokens import search_locally_optimal

    p = unit_gaussian(3, 3, 4, seed=6)
    found, _ = search_locally_optimal(p, norm)
    assert {tuple(int(t) for t in s.selection) for s in found} == _brute_force_own(p, norm)


def test_search_scale_invariant():
    """X, Z × 1e−3 (and × 1e3): the same locally-optimal selections, opt among them."""
    from attnsvm.tokens import search_locally_optimal

    p = unit_gaussian(4, 5, 6, seed=8)
    base = [tuple(s.selection) for s in search_locally_optimal(p)[0]]
    assert tuple(p.optimal_tokens().opt) in base
    for s in (1e-3, 1e3):
        q = AttentionProblem(X=s * p.X, Y=p.Y, v=p.v, Z=s * p.queries)
        assert [tuple(x.selection) for x in search_locally_optimal(q)[0]] == base


def test_search_refuses_before_allocating():
    """T^n = 10^12 selections: refused with the count and a time estimate, without allocating them."""
    import tracemalloc

    from attnsvm.tokens import search_locally_optimal

    p = unit_gaussian(12, 10, 4, seed=0)
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"max_selections: \d+ candidate selections .* about .* s"):
        search_locally_optimal(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20


@pytest.mark.slow
def test_search_readme_problem_within_a_minute():
    """(n, T, d) = (6, 8, 10) unit-Gaussian: all 8^6 = 262144 selections decided in under a CPU-minute; every
    reported selection certified, opt among them, and 300 random selections agree with their own solve."""
    import time

    from attnsvm.tokens import search_locally_optimal

    p = unit_gaussian(6, 8, 10, seed=0)
    t0 = time.process_time()
    found, stats = search_locally_optimal(p)
    cpu = time.process_time() - t0
    assert cpu < 60, cpu
    assert stats.total == 8**6 and stats.screened + stats.solved >= stats.total
    got = {tuple(int(t) for t in s.selection) for s in found}
    assert tuple(int(t) for t in p.optimal_tokens().opt) in got
    rng = np.random.default_rng(0)
    for sel in rng.integers(0, 8, size=(300, 6)):
        assert is_locally_optimal(p, sel).locally_optimal == (tuple(int(t) for t in sel) in got)
    for s in found[:3]:
        assert is_locally_optimal(p, s.selection).locally_optimal


@pytest.mark.slow
def test_search_readme_prompt_problem_within_a_minute():
    """The prompt (ℓ2) model on the README's (6, 8, 10) unit-Gaussian problem: every selection decided in under
    a CPU-minute (depth-first, one least-distance solve per undecided leaf), and 300 random selections agree
    with their own solve."""
    import time

    from attnsvm.tokens import search_locally_optimal

    p = unit_gaussian(6, 8, 10, seed=0, attention="prompt")
    t0 = time.process_time()
    found, stats = search_locally_optimal(p)
    cpu = time.process_time() - t0
    assert cpu < 60, cpu
    assert stats.total == 8**6 and stats.pruned > 0 and stats.pruned + stats.screened <= stats.total
    assert stats.pruned + stats.screened >= 0.99 * stats.total  # nearly every leaf decided without a full solve
    got = {tuple(int(t) for t in s.selection) for s in found}
    rng = np.random.default_rng(1)
    for sel in rng.integers(0, 8, size=(300, 6)):
        assert is_locally_optimal(p, sel).locally_optimal == (tuple(int(t) for t in sel) in got)
    for s in list(found)[:: max(1, len(found) // 20)]:
        assert is_locally_optimal(p, s.selection).locally_optimal

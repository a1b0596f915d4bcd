"""Next-token problems: validation, token-priority graphs, the graph Att-SVM (against cvxpy and the ordinary
Att-SVM) and the finite component W^fin (against cvxpy)."""

from __future__ import annotations

import numpy as np
import pytest

from attnsvm.ntp import NTPProblem, finite_component, generate_ntp, is_ntp_file, load_ntp
from attnsvm.problem import AttentionProblem
from attnsvm.svm import graph_constraints, solve_graph_svm, solve_svm

cp = pytest.importorskip("cvxpy")

CLARABEL_TIGHT = dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, tol_ktratio=1e-8)


def _E(K: int = 5, d: int = 4, seed: int = 0) -> np.ndarray:
    E = np.random.default_rng(seed).standard_normal((K, d))
    return E / np.linalg.norm(E, axis=1, keepdims=True)


# ---- validation -------------------------------------------------------------------------------------------

BAD = [
    # (E, tokens, next, words that the one-line message must contain)
    (_E(), [[0, 1, 2], [1, 2, 3]], [0, 4], ["next", "sample 1", "does not occur"]),
    (_E(), [[0, 1, 7], [1, 2, 3]], [0, 1], ["tokens", "sample 0", "position 2", "outside"]),
    (_E(), [[0, 1, -2], [1, 2, 3]], [0, 1], ["tokens", "sample 0", "outside"]),
    (_E(), [[0, 1, 2], [-1, -1, -1]], [0, 1], ["tokens", "sample 1", "empty"]),
    (_E(), [[0, -1, 2], [1, 2, 3]], [0, 1], ["tokens", "sample 0", "after the -1 padding"]),
    (_E(), [[0, 1, 2], [1, 2, 3]], [0, 9], ["next", "sample 1", "outside"]),
    (_E(), [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], [0, 1], ["tokens", "integer"]),
    (_E(), [[0, 1, 2], [1, 2, 3]], [0, 1, 2], ["next", "shape"]),
    (_E(), [0, 1, 2], [0], ["tokens", "2-D"]),
    (np.ones(5), [[0, 1]], [0], ["E", "(K, d)"]),
    (np.where(np.eye(5, 4) > 0, np.nan, 1.0), [[0, 1]], [0], ["E", "token 0", "NaN"]),
]


@pytest.mark.parametrize("E,tokens,nxt,words", BAD)
def test_bad_input_one_line_naming_sample_and_field(E, tokens, nxt, words):
    with pytest.raises(ValueError) as exc:
        NTPProblem(E=E, tokens=np.asarray(tokens), next=np.asarray(nxt))
    msg = str(exc.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_file_roundtrip_and_detection(tmp_path):
    p = generate_ntp(n=5, T=5, K=6, d=4, min_length=2, seed=3)
    path = p.save(tmp_path / "ntp.npz")
    assert is_ntp_file(path)
    q = load_ntp(path)
    np.testing.assert_array_equal(q.tokens, p.tokens)
    np.testing.assert_array_equal(q.next, p.next)
    np.testing.assert_array_equal(q.E, p.E)
    np.savez(tmp_path / "extra.npz", E=p.E, tokens=p.tokens, next=p.next, Y=np.ones(5))
    with pytest.raises(ValueError, match="unknown key"):
        load_ntp(tmp_path / "extra.npz")
    np.savez(tmp_path / "att.npz", X=np.ones((2, 3, 4)), Y=np.ones(2), v=np.ones(4))
    assert not is_ntp_file(tmp_path / "att.npz")


# ---- graphs -------------------------------------------------------------------------------------------------


def test_graphs_and_sccs_by_hand():
    # last token 4 everywhere. Sample labels: 0 over {1, 2}; 1 over {0}; 2 over {3}: edges 0→1, 0→2, 1→0, 2→3,
    # so SCCs {0, 1} → {2} → {3}, plus token 4 itself (the query, a sink: every label points to it).
    tokens = np.array([[0, 1, 2, 4], [1, 0, 4, -1], [2, 3, 4, -1]])
    p = NTPProblem(E=_E(5, 4), tokens=tokens, next=np.array([0, 1, 2]))
    np.testing.assert_array_equal(p.last, [4, 4, 4])
    g = p.graphs[4]
    assert g.sccs[0] == (0, 1)
    assert g.sccs[1] == (2,)
    assert set(g.sccs[2:]) == {(3,), (4,)}
    assert not p.is_acyclic
    # top SCC of sample 0 is {0, 1}; of sample 1 also {0, 1}; of sample 2 {2}
    np.testing.assert_array_equal(p.top_scc_mask, [[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(p.equality_pairs, [[4, 0, 1]])
    assert p.equality_subspace.shape == (1, 4, 4)


def test_generator_follows_the_authors_settings():
    p = generate_ntp(n=6, T=4, K=6, d=8, seed=0)  # the global-convergence notebook's sizes
    assert (p.n, p.T, p.K, p.d) == (6, 4, 6, 8)
    np.testing.assert_allclose(np.linalg.norm(p.E, axis=1), 1.0, atol=1e-12)
    assert all(len(set(p.sequence(i))) == 4 for i in range(p.n))  # T ≤ K: distinct ids
    assert not p.is_acyclic  # the authors redraw until some G_k has a cycle
    assert generate_ntp(seed=0, graphs="acyclic").is_acyclic
    q = generate_ntp(n=20, T=6, K=4, d=4, embedding="ortho", graphs="any", min_length=2, seed=1)
    np.testing.assert_allclose(q.E @ q.E.T, np.eye(4), atol=1e-12)
    assert q.lengths.min() >= 2 and q.lengths.max() <= 6


# ---- graph Att-SVM vs cvxpy -----------------------------------------------------------------------------------


def _cvxpy_graph_svm(p: NTPProblem, norm: str):
    """Independent model: one constraint per (sample, token j ≠ y), written from the definitions."""
    W = cp.Variable((p.d, p.d))
    cons = []
    for i in range(p.n):
        k, y = int(p.last[i]), int(p.next[i])
        comp = p.graphs[k].component
        for j in set(p.sequence(i)) - {y}:
            expr = (p.E[y] - p.E[j]) @ W @ p.E[k]
            cons.append(expr == 0 if comp[y] == comp[j] else expr >= 1)
    obj = cp.sum_squares(W) if norm == "fro" else cp.normNuc(W)
    prob = cp.Problem(cp.Minimize(obj), cons)
    # Clarabel's default tolerances (1e-8) suffice for the nuclear value; the QP of fro is solved tighter
    try:
        prob.solve(solver=cp.CLARABEL, **(CLARABEL_TIGHT if norm == "fro" else {}))
    except cp.error.SolverError:
        # Clarabel stalls on some rank-deficient SDPs (K < d); cvxpy's own SCS model is the fallback
        prob.solve(solver=cp.SCS, eps=1e-10, max_iters=200_000)
    assert prob.status in ("optimal", "optimal_inaccurate")
    return W.value


def _problems(count: int):
    sizes = [(6, 4, 6, 8), (8, 5, 5, 4), (5, 3, 8, 6), (10, 6, 4, 5)]
    for s in range(count):
        n, T, K, d = sizes[s % len(sizes)]
        yield generate_ntp(n=n, T=T, K=K, d=d, graphs="any", min_length=2 if s % 3 == 0 else 0, seed=s)


def test_fro_matches_cvxpy_on_50_problems():
    cyclic = 0
    for p in _problems(50):
        r = solve_graph_svm(p, "fro")
        assert r.status == "optimal", r.message
        W = _cvxpy_graph_svm(p, "fro")
        assert np.linalg.norm(r.W - W) <= 1e-6 * max(1.0, np.linalg.norm(W))
        assert r.certificate.gap <= 1e-9 * max(1.0, r.value)
        cyclic += not p.is_acyclic
    assert cyclic >= 10  # the family exercises equality constraints


def test_nuclear_matches_cvxpy():
    for p in _problems(20):
        r = solve_graph_svm(p, "nuclear")
        assert r.status == "optimal", r.message
        W = _cvxpy_graph_svm(p, "nuclear")
        ref = np.linalg.svd(W, compute_uv=False).sum()
        # nuclear minimizers need not be unique: compare values, and the certificate bounds ours
        assert abs(r.value - ref) <= 1e-6 * max(1.0, ref)
        assert r.certificate.lower <= ref * (1 + 1e-6)
        assert r.equality_residual <= 1e-9


def test_acyclic_equals_att_svm_of_the_label_selection():
    for s in range(6):
        p = generate_ntp(n=6, T=4, K=6, d=8, graphs="acyclic", seed=s)
        sel = np.argmax(p.tokens == p.next[:, None], axis=1)  # position of y_i (distinct ids when T ≤ K)
        att = AttentionProblem(X=p.X, Y=np.ones(p.n), v=np.ones(p.d), Z=p.queries, mask=p.mask)
        for norm in ("fro", "nuclear"):
            g = solve_graph_svm(p, norm)
            a = solve_svm(att, sel, norm)
            assert not g.constraints.equality.any()
            assert abs(g.value - a.value) <= 1e-6 * a.value
            if norm == "fro":
                np.testing.assert_allclose(g.W, a.W, atol=1e-9 * a.value)


def test_cyclic_equalities_hold():
    checked = 0
    for s in range(10):
        p = generate_ntp(seed=s)  # cyclic by construction
        for norm in ("fro", "nuclear"):
            r = solve_graph_svm(p, norm)
            eq = r.constraints.equality
            assert eq.any()
            assert np.max(np.abs(r.margin[eq])) <= 1e-9
            assert np.min(r.margin[~eq]) >= 1 - 1e-6
            # W^dir is orthogonal to the equality subspace
            assert np.max(np.abs(np.einsum("mde,de->m", p.equality_subspace, r.W))) <= 1e-9 * max(1, r.value)
            checked += 1
    assert checked == 20


def test_duplicate_constraints_counted_once():
    tokens = np.array([[0, 1, 2], [0, 1, 2], [1, 0, 2]])
    p = NTPProblem(E=_E(3, 3), tokens=tokens, next=np.array([0, 0, 1]))
    c = graph_constraints(p)
    # (2: 0 vs 1) is one equality for three samples; (0 over 2) and (1 over 2) inequalities
    assert c.m == 3 and int(c.equality.sum()) == 1


def test_infeasible_has_farkas_certificate():
    E = _E(4, 3)
    E[3] = E[1]  # tokens 1 and 3 share an embedding, but the graph ranks 1 above 3
    tokens = np.array([[1, 3, 2], [0, 1, 2]])
    p = NTPProblem(E=E, tokens=tokens, next=np.array([1, 0]))
    for norm in ("fro", "nuclear"):
        r = solve_graph_svm(p, norm)
        assert r.status == "infeasible"
        far = r.farkas
        c = r.constraints
        lam = far[~c.equality]
        assert np.all(lam >= -1e-12) and lam.sum() == pytest.approx(1.0)
        assert np.linalg.norm(c.rows.T @ far) <= 1e-9


# ---- W^fin ----------------------------------------------------------------------------------------------------


def _cvxpy_finite(p: NTPProblem) -> np.ndarray:
    B = p.equality_subspace
    c = cp.Variable(B.shape[0])
    terms = []
    for i in np.flatnonzero(p.top_scc_mask.sum(axis=1) > 1):
        O = np.flatnonzero(p.top_scc_mask[i])
        a = cp.hstack([p.E[p.tokens[i, t]] @ sum(c[m] * B[m] for m in range(B.shape[0])) @ p.queries[i]
                       for t in O])
        is_y = p.tokens[i, O] == p.next[i]
        y_pos = int(np.flatnonzero(is_y)[0])
        terms.append(cp.log_sum_exp(a) - a[y_pos] - np.log(is_y.sum()))
    prob = cp.Problem(cp.Minimize(sum(terms) / p.n))
    prob.solve(solver=cp.CLARABEL, **CLARABEL_TIGHT)
    return np.einsum("m,mde->de", c.value, B), float(prob.value)


def test_finite_component_matches_cvxpy():
    nonzero = 0
    for s in range(8):
        p = generate_ntp(seed=s)
        f = finite_component(p)
        assert f.status == "optimal" and f.gradient <= 1e-10
        ref, ref_loss = _cvxpy_finite(p)
        # the exponential-cone solver is accurate to ~1e-5 in W; in loss ours must be at least as low
        assert np.linalg.norm(f.W - ref) <= 1e-4 * max(1.0, np.linalg.norm(ref))
        assert f.loss <= ref_loss + 1e-9
        np.testing.assert_allclose(p.project(f.W), f.W, atol=1e-12)
        nonzero += np.linalg.norm(f.W) > 1e-3
    assert nonzero >= 3


def test_finite_component_trivial_when_acyclic():
    f = finite_component(generate_ntp(seed=0, graphs="acyclic"))
    assert f.status == "trivial" and np.all(f.W == 0)


# ---- CLI ---------------------------------------------------------------------------------------------------------


def _cli():
    import typer
    from typer.testing import CliRunner

    from attnsvm.cli_geometry import register

    app = typer.Typer()
    register(app)
    return lambda *args: CliRunner().invoke(app, [str(a) for a in args])


def test_cli_solve_recognizes_ntp_file(tmp_path):
    import json

    run = _cli()
    p = generate_ntp(seed=0)
    path = p.save(tmp_path / "ntp.npz")
    for norm in ("fro", "nuclear"):
        res = run("solve", path, "--norm", norm, "--json")
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        assert out["status"] == "optimal" and out["norm"] == norm
        r = solve_graph_svm(p, norm)
        assert out["value"] == pytest.approx(r.value, rel=1e-6)
        assert set(out["certificate"]) >= {"primal", "dual", "complementarity", "gap"}
        sccs = {g["last_token"]: [tuple(s) for s in g["sccs"]] for g in out["sccs"]}
        assert sccs == {k: list(g.sccs) for k, g in p.graphs.items()}
        np.testing.assert_allclose(out["W_fin"]["W"], finite_component(p).W, atol=1e-12)
        assert out["W_fin"]["status"] == "optimal"
    res = run("solve", path)
    assert res.exit_code == 0 and "SCCs" in res.stdout


def test_cli_solve_ntp_bad_input_exit_2(tmp_path):
    run = _cli()
    E = _E()
    np.savez(tmp_path / "bad.npz", E=E, tokens=np.array([[0, 1, 2], [1, 2, 3]]), next=np.array([0, 4]))
    res = run("solve", tmp_path / "bad.npz")
    assert res.exit_code == 2
    assert "next: sample 1" in res.output and "Traceback" not in res.output
    p = generate_ntp(seed=0).save(tmp_path / "ok.npz")
    res = run("solve", p, "--norm", "l1")
    assert res.exit_code == 2 and "--norm" in res.output


def test_cli_problem_writes_a_next_token_file(tmp_path):
    from typer.testing import CliRunner

    from attnsvm.cli import app

    out = tmp_path / "nt.npz"
    res = CliRunner().invoke(app, ["problem", "next-token", "--out", str(out), "n=8", "min_length=2", "seed=3"])
    assert res.exit_code == 0, res.output
    p = load_ntp(out)
    q = generate_ntp(n=8, min_length=2, seed=3)
    np.testing.assert_array_equal(p.tokens, q.tokens)
    res = CliRunner().invoke(app, ["problem", "next-token", "--out", str(out), "graphs=loops"])
    assert res.exit_code == 2 and "graphs" in res.output


def test_cli_solve_ntp_local_selection(tmp_path):
    import json

    run = _cli()
    p = generate_ntp(seed=0)
    path = p.save(tmp_path / "ntp.npz")
    # W = W^dir selects the top SCC of every sequence, so the local problem's SVM is the global one
    W = solve_graph_svm(p).W * 20
    np.save(tmp_path / "W.npy", W)
    res = run("solve", path, "--select", f"argmax:{tmp_path / 'W.npy'}", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    sel, _ = p.selected_tokens(W)
    assert out["value"] == pytest.approx(solve_graph_svm(p.with_labels(sel)).value, rel=1e-9)
    # every top-SCC token selected: the extra constraints are implied by the equalities, same W^dir
    assert all(set(sel[i]) == set(p.tokens[i, p.top_scc_mask[i]].tolist()) for i in range(p.n))
    np.testing.assert_allclose(out["solution"], solve_graph_svm(p).W, atol=1e-9)
    assert out["problem"]["n"] == sum(len(s) for s in sel)
    res = run("solve", path, "--select", "0,1,2")
    assert res.exit_code == 2 and "--select" in res.output


def test_token_mass_sums_duplicates_and_with_labels():
    p = generate_ntp(n=5, T=7, K=4, d=4, graphs="any", seed=2)  # T > K: repeated ids
    W = np.random.default_rng(0).standard_normal((4, 4))
    a = p.logits(W)
    s = np.exp(a - a.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    mass = p.token_mass(W)
    for i in range(p.n):
        for j in range(p.K):
            assert mass[i, j] == pytest.approx(s[i, p.tokens[i] == j].sum(), abs=1e-15)
    np.testing.assert_allclose(mass.sum(axis=1), 1.0, atol=1e-14)
    sel, und = p.selected_tokens(W, hi=0.2, lo=0.1)
    assert all(set(sel[i]) == set(np.flatnonzero(mass[i] > 0.2)) for i in range(p.n))
    q = p.with_labels(sel)
    assert q.n == sum(len(c) for c in sel)
    with pytest.raises(ValueError, match="labels: sample 0"):
        p.with_labels([()] + list(sel[1:]))

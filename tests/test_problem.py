import numpy as np
import pytest

import attnsvm as A
from attnsvm.problem import AttentionProblem, load_problem


def test_scores_opt_and_optimal_loss():
    p = A.p1_single("global")
    np.testing.assert_allclose(p.scores(), [[1.0, 0.9, 0.9]])
    ot = p.optimal_tokens()
    assert ot.opt.tolist() == [0] and not ot.has_ties[0]
    assert ot.gap[0] == pytest.approx(0.1)
    assert p.optimal_loss("logistic") == pytest.approx(np.log1p(np.exp(-1.0)), rel=1e-15)
    assert p.optimal_loss("exponential", "sum") == pytest.approx(np.exp(-1.0), rel=1e-15)


def test_ties_are_reported_not_broken():
    X = np.array([[[1.0, 0.0], [1.0, 0.0 + 1e-14], [0.0, 1.0]]])
    p = AttentionProblem(X=X, Y=[1], v=[1.0, 0.0], query_index=2)
    ot = p.optimal_tokens()
    assert ot.tied[0].tolist() == [True, True, False] and ot.has_ties[0] and ot.gap[0] == 0.0


def test_mask_pads_with_minus_inf_and_zero_tokens():
    X = np.ones((2, 4, 3))
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=bool)
    p = AttentionProblem(X=X, Y=[1, -1], v=[1.0, 0, 0], Z=np.ones((2, 3)), mask=mask)
    assert np.isneginf(p.scores()[0, 3]) and np.all(p.X[0, 3] == 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(X=np.zeros((2, 3)), Y=[1, 1], v=[1, 0, 0]), "X: expected a 3-D"),
        (dict(X=np.zeros((2, 3, 2)), Y=[1, 0], v=[1, 0]), "Y: labels must be"),
        (dict(X=np.zeros((2, 3, 2)), Y=[1, 1, 1], v=[1, 0]), "Y: expected shape"),
        (dict(X=np.zeros((2, 3, 2)), Y=[1, 1], v=[1, 0, 0]), "v: expected shape"),
        (dict(X=np.full((2, 3, 2), np.nan), Y=[1, 1], v=[1, 0]), "X: contains NaN"),
        (dict(X=np.zeros((2, 3, 2)), Y=[1, 1], v=[1, 0], Z=np.zeros((2, 3))), "Z: expected shape"),
        (dict(X=np.zeros((2, 3, 2)), Y=[1, 1], v=[1, 0], query_index=3), "query_index"),
        (dict(X=np.zeros((2, 3, 2)), Y=[1, 1], v=[1, 0], mask=np.array([[1, 0, 0], [1, 1, 1]], bool)),
         "fewer than 2"),
        (dict(X=np.zeros((2, 3, 2)), Y=[1, 1], v=[1, 0], mask=np.array([[0, 0, 0], [1, 1, 1]], bool)),
         "no real token"),
        (dict(X=np.zeros((2, 3, 2)), Y=[1, 1], v=[1, 0], Z=np.zeros((2, 2)), query_index=0), "at most one"),
    ],
)
def test_validation_names_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttentionProblem(**kwargs)


def test_arrays_are_read_only():
    p = A.unit_gaussian(3, 4, 5, seed=1)
    with pytest.raises(ValueError):
        p.X[0, 0, 0] = 1.0


def test_save_load_roundtrip(tmp_path):
    mask = np.ones((3, 4), bool)
    mask[1, 3] = False
    p0 = A.unit_gaussian(3, 4, 5, seed=2)
    p = AttentionProblem(X=p0.X, Y=p0.Y, v=p0.v, query_index=1, mask=mask)
    path = p.save(tmp_path / "prob.npz")
    q = load_problem(path)
    assert q.kind == "self" and q.query_index == 1
    np.testing.assert_array_equal(q.X, p.X)
    np.testing.assert_array_equal(q.mask, p.mask)
    with np.load(path) as f:
        assert set(f.files) == {"X", "Y", "v", "query_index", "mask"}
    np.savez(tmp_path / "bad.npz", X=p.X, Y=p.Y)
    with pytest.raises(ValueError, match="missing required key"):
        load_problem(tmp_path / "bad.npz")


def test_unit_gaussian_is_seeded_and_unit_norm():
    a, b = A.unit_gaussian(6, 8, 10, seed=3), A.unit_gaussian(6, 8, 10, seed=3)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_allclose(np.linalg.norm(a.X, axis=-1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(a.Z, axis=-1), 1.0, rtol=1e-14)
    assert set(np.unique(a.Y)) <= {-1.0, 1.0}


def test_permute_tokens_moves_opt():
    p = A.unit_gaussian(4, 5, 3, seed=4)
    perms = np.stack([np.roll(np.arange(5), i) for i in range(4)])
    q = p.permute_tokens(perms)
    opt_p, opt_q = p.optimal_tokens().opt, q.optimal_tokens().opt
    assert np.all(perms[np.arange(4), opt_q] == opt_p)
    assert q.optimal_loss() == pytest.approx(p.optimal_loss(), rel=1e-15)

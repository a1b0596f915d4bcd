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


# ---- bad problem files: one clear ValueError naming the field, before any large allocation --------------------

def _good(tmp_path):
    return A.unit_gaussian(3, 4, 5, seed=2)


def _forged_npz(path, shape=(1000, 1000, 1000)):
    """A tiny .npz whose X header declares an 8 GB float64 array (and holds no data)."""
    import io
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    p = A.unit_gaussian(3, 4, 5, seed=0)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("X.npy", buf.getvalue())
        for k, v in (("Y", p.Y), ("v", p.v)):
            b = io.BytesIO()
            np.save(b, v)
            zf.writestr(f"{k}.npy", b.getvalue())
    return path


BAD_FILES = {
    "npy": (lambda d, p: np.save(d / "x.npy", p.X) or d / "x.npy", r"\.npy file \(one array\)"),
    "zero": (lambda d, p: (d / "z.npz").write_bytes(b"") and None or d / "z.npz", r"empty \(0 bytes\)"),
    "text": (lambda d, p: (d / "t.npz").write_text("X = 1, 2, 3\n") and None or d / "t.npz",
             r"not an \.npz \(zip\) archive \(it looks like text\)"),
    "folder": (lambda d, p: (d / "dir.npz").mkdir() or d / "dir.npz", "is a folder"),
    "complex": (lambda d, p: np.savez(d / "c.npz", X=p.X + 1j, Y=p.Y, v=p.v) or d / "c.npz", "X is complex"),
    "labels_n1": (lambda d, p: np.savez(d / "y.npz", X=p.X, Y=p.Y[:, None], v=p.v) or d / "y.npz",
                  r"Y has shape \(3, 1\)"),
    "query_array": (lambda d, p: np.savez(d / "q.npz", X=p.X, Y=p.Y, v=p.v, query_index=np.array([0, 1]))
                    or d / "q.npz", "query_index: must be one integer"),
    "query_float": (lambda d, p: np.savez(d / "f.npz", X=p.X, Y=p.Y, v=p.v, query_index=np.array(1.7))
                    or d / "f.npz", r"query_index: must be an integer position, got 1\.7"),
    "pickled": (lambda d, p: np.savez(d / "o.npz", X=p.X, Y=p.Y, v=np.array([None] * 5, dtype=object))
                or d / "o.npz", "v has dtype object"),
    "forged_8GB": (lambda d, p: _forged_npz(d / "big.npz"), r"X declares shape \(1000, 1000, 1000\) \(8 GB\)"),
}


def _truncated(d, p):
    path = p.save(d / "tr.npz")
    path.write_bytes(path.read_bytes()[:300])
    return path


def _bitflipped(d, p):
    path = p.save(d / "bf.npz")
    b = bytearray(path.read_bytes())
    b[200] ^= 0x01  # inside X's data: the zip CRC no longer matches
    path.write_bytes(bytes(b))
    return path


BAD_FILES["truncated"] = (_truncated, "truncated or corrupt")
BAD_FILES["bitflipped"] = (_bitflipped, "truncated or corrupt")


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_problem_file_is_one_clear_error(tmp_path, case):
    make, pattern = BAD_FILES[case]
    path = make(tmp_path, A.unit_gaussian(3, 4, 5, seed=2))
    with pytest.raises(ValueError, match=pattern) as info:
        load_problem(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    # the CLI says the same on one stderr line and exits 2, no traceback
    from typer.testing import CliRunner

    from attnsvm.cli import app

    res = CliRunner().invoke(app, ["tokens", str(path)])
    assert res.exit_code == 2 and res.exception is None or isinstance(res.exception, SystemExit)
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in res.output


def test_integral_query_index_and_memory_estimate(tmp_path, monkeypatch):
    import attnsvm.problem as P

    p = A.unit_gaussian(3, 4, 5, seed=2)
    np.savez(tmp_path / "q.npz", X=p.X, Y=p.Y, v=p.v, query_index=np.array(2.0))
    assert load_problem(tmp_path / "q.npz").query_index == 2
    with pytest.raises(ValueError, match="query_index"):
        AttentionProblem(X=p.X, Y=p.Y, v=p.v, query_index=True)
    with pytest.raises(ValueError, match="complex"):
        AttentionProblem(X=p.X.astype(complex), Y=p.Y, v=p.v)
    # the estimate is made before loading: float64 bytes of X twice (2·8·60), Y (8·3), v (8·5), Z (8·15)
    path = p.save(tmp_path / "p.npz")
    monkeypatch.setattr(P, "available_memory", lambda: 1000)
    with pytest.raises(ValueError, match=r"needs ≈ 0\.00114 MB of memory, and 0\.001 MB is available"):
        load_problem(path)
    monkeypatch.setattr(P, "available_memory", lambda: 2 * 1144)
    assert load_problem(path).n == 3

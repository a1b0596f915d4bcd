"""The P1 reproductions (reproductions P1-single, P1-multi, P1-joint, P1-loss) in their quick settings.

Each experiment runs once per module with ``quick=True`` (200 steps) and the tests assert on the numbers it
wrote, against the closed forms of the P1 toy problems (which the experiments never use: they solve the
SVMs): where a full-setting claim survives the reduction to 200 steps, the quick number must land within
the stated tolerance of it.
"""

from __future__ import annotations

import numpy as np
import pytest

from attnsvm.experiments import get
from attnsvm.experiments.p1 import naive_float32_ngd
from attnsvm.experiments.runner import run_experiment
from attnsvm.problem import p1_joint, p1_single
from attnsvm.svm import correlation as cosine

P1_IDS = ("p1-single", "p1-multi", "p1-joint", "p1-loss")

# closed forms of the P1 toy solutions (docs/reproductions/index.md)
P_MM_SINGLE = np.array([-0.1, 1.0, 0.0]) / 1.01
P_MM_LOCAL = np.array([1.0, 0.0, 0.0])
V_MM_JOINT = np.array([0.0, 1.0])
P_MM_TIGHT = np.array([4.0, 1.0]) / 3.0
P_MM_RELAXED = np.array([1.25, 0.25])
P_RELAX = np.array([1.0, 0.0])


@pytest.fixture
def quick(quick_run):
    """Each P1 experiment run once per session in its quick settings (tests/conftest.py)."""
    return quick_run


def _claims(rep, prefix: str):
    found = [c for c in rep.claims if c.claim.startswith(prefix)]
    assert found, f"no claim starting with {prefix!r}: {[c.claim for c in rep.claims]}"
    return found


@pytest.mark.parametrize("exp_id", P1_IDS)
def test_quick_settings_are_short(exp_id):
    """(Every TOML's validation and documentation: tests/test_configs.py.)"""
    exp = get(exp_id)
    assert exp.configure(quick=True).steps <= 200 < exp.default_config().steps


def test_p1_single_quick(quick):
    rep, arr, out = quick("p1-single")
    assert (out / "figures" / "p1_single_paths.png").exists() and (out / "paths.parquet").exists()
    k = -1  # step 200: the authors' plotted step
    assert arr["steps"][k] == 200
    # global: every path within 1e-2 of p^mm(opt) (full setting: 0.9997 at 1000 steps, ≥ 0.9925 at 200)
    c = cosine(arr["path_global"][:, k], P_MM_SINGLE)
    assert c.min() >= 0.99
    # local: the paths from c = −1, −1.5 go to token 1's p^mm = (1, 0, 0), the others to p^mm(opt)
    cl = cosine(arr["path_local"][:, k], P_MM_LOCAL)
    cg = cosine(arr["path_local"][:, k], P_MM_SINGLE)
    inits = arr["inits"][:, 1]
    assert np.all(cl[inits <= -1.0] >= 0.99)
    assert np.all(cg[inits > -1.0] >= 0.99)
    for c in _claims(rep, "global:") + _claims(rep, "local:"):
        assert c.verdict == "reproduced", c
    assert "2/6 paths" in _claims(rep, "local:")[0].measured


def test_float32_emulation_reverses_local_convergence():
    """In the authors' float32 arithmetic (docs/concepts/numerics.md) the local paths hold at 200 steps and
    reverse by 1000."""
    pr = p1_single("local")
    p0 = np.array([[0.0, -1.0, 0.0], [0.0, -1.5, 0.0]])
    P, _ = naive_float32_ngd(pr, p0, 1000, 0.1, eps_p=1e-9)
    assert np.all(cosine(P[:, 200], P_MM_LOCAL) >= 0.99)
    assert np.all(cosine(P[:, 1000], P_MM_LOCAL) < 0.5)
    assert np.all(np.linalg.norm(P[:, 1000], axis=1) < 25)  # float32 stalls near ‖p‖ ≈ 16–18
    # joint, relaxed: p^relax at 200 steps, p^mm by 1000
    pj = p1_joint("relaxed")
    Pj, Vj = naive_float32_ngd(pj, np.array([[0.0, -1.0]]), 1000, 0.1, v0=np.array([-1.0, 0.0]), train_v=True,
                               eps_p=1e-19, eps_v=1e-9)
    assert cosine(Pj[0, 200], P_RELAX) > cosine(Pj[0, 200], P_MM_RELAXED)
    assert cosine(Pj[0, 1000], P_MM_RELAXED) > 0.999
    assert cosine(Vj[0, 1000], V_MM_JOINT) > 0.999


def test_p1_multi_quick(quick):
    rep, arr, out = quick("p1-multi")
    assert (out / "figures" / "p1_multi.png").exists()
    steps = arr["steps"]
    k200, k60, k100 = (int(np.searchsorted(steps, s)) for s in (200, 60, 100))
    # NGD paths → p^mm (solver solution of the drawn data); full setting: cos 0.9991 at 200, 1.0000 at 1000
    assert arr["ngd_cos"][:, k200].min() >= 0.99
    assert np.allclose(cosine(arr["ngd_path"][:, k200], arr["p_mm"][0]), arr["ngd_cos"][:, k200], atol=1e-12)
    # softmax of opt ≈ 1 by 60 NGD steps; ≈ 0.97 at 200 GD steps (read off the published plot)
    assert arr["ngd_mass"][:, k60].min() >= 0.99
    assert abs(arr["gd_mass"][:, k200].mean() - 0.97) <= 0.02
    # ‖p‖: NGD grows by η per step; GD is still below 5 after 200 steps (log-like)
    slope = (arr["ngd_norm"][:, k200] - arr["ngd_norm"][:, k100]) / 100
    assert np.allclose(slope, 0.1, atol=2e-3)
    assert arr["gd_norm"][:, k200].max() < 5
    for c in _claims(rep, "NGD"):
        assert c.verdict == "reproduced", c
    assert _claims(rep, "GD: optimal-token softmax")[0].verdict == "reproduced"


def test_p1_joint_quick(quick):
    rep, arr, out = quick("p1-joint")
    assert (out / "figures" / "p1_joint.png").exists()
    assert np.allclose(arr["v_mm_tight"], V_MM_JOINT, atol=1e-9)
    assert np.allclose(arr["p_mm_tight"], P_MM_TIGHT, atol=1e-9)
    assert np.allclose(arr["p_mm_relaxed"], P_MM_RELAXED, atol=1e-9)
    assert np.allclose(arr["p_relax_relaxed"], P_RELAX, atol=1e-9)
    assert arr["p_tight"].shape == (201, 2)
    # step 200 (full setting: the same numbers, and 1 − cos ≤ 6e-6 at 1000)
    for case in ("tight", "relaxed"):
        assert cosine(arr[f"v_{case}"][200], V_MM_JOINT) >= 0.999
    assert cosine(arr["p_tight"][200], P_MM_TIGHT) >= 0.999
    assert cosine(arr["p_relaxed"][200], P_RELAX) >= 0.9995
    assert cosine(arr["p_relaxed"][200], P_MM_RELAXED) <= 0.99  # p^relax, not p^mm
    assert np.allclose(arr["p_tight"][0], [0.0, -1.0]) and np.allclose(arr["v_tight"][0], [-1.0, 0.0])
    for c in rep.claims:
        if "float32" not in c.claim:
            assert c.verdict == "reproduced", c


def test_p1_loss_quick(quick):
    rep, arr, out = quick("p1-loss")
    assert (out / "figures" / "p1_loss_paths.png").exists()
    steps, Cs = arr["steps"], arr["Cs"]
    assert np.allclose(arr["p_mm"], [1.0, 0.0, 0.0], atol=1e-12)
    k200, k1000 = int(np.searchsorted(steps, 200)), int(np.searchsorted(steps, 1000))
    # correlation loss: every C within 1e-2 of p^mm by 200 steps (full: ≥ 0.9997 at 1000)
    assert arr["cos_correlation"][:, k200].min() >= 0.99
    # its offset converges to ½ log C (balance of the two samples' gradients along p₂)
    assert np.allclose(arr["path_correlation"][:, k1000, 1], 0.5 * np.log(Cs), atol=1e-3)
    # logistic: C ≤ 10 converged at 1000 steps; C = 100 is on its detour, cos ≈ 0.867 (as in the full run)
    lg = arr["cos_logistic"][:, k1000]
    assert lg[Cs <= 10].min() >= 0.999
    assert abs(lg[Cs == 100][0] - 0.867) <= 0.005
    assert np.all(arr["path_logistic"][1:, k1000, 1] < 0)  # offsets on the other side than for ℓ = −x
    assert _claims(rep, "correlation: direction")[0].verdict == "reproduced"
    assert _claims(rep, "logistic: direction")[-1].verdict == "differs"  # C = 100 at 1000 steps
    assert _claims(rep, "the transient offset")[0].verdict == "reproduced"


def test_p1_single_counts_a_diverged_path_apart(tmp_path):
    """η = 1e308 sends one local-case path to inf/NaN within 20 steps: it is counted as diverged, never as a
    path that selects a token (argmax of a NaN attention reads as token 0 = opt), and the claim differs."""
    from attnsvm.experiments.base import count_of, finite_trials

    cfg = tmp_path / "huge-lr.toml"
    cfg.write_text("lr = 1e308\ninits = [1.0, -1.0]\nsteps = 20\nrecord_every = 1\nplotted_step = 20\n"
                   "float32_check = false\n")
    rep = run_experiment("p1-single", tmp_path / "out", config_file=cfg)
    with np.load(tmp_path / "out" / "results.npz") as f:
        fin = finite_trials(f["path_local"])
    assert fin.sum() == 1  # one local path is non-finite at step 20
    (loc,) = _claims(rep, "local:")
    assert loc.verdict == "differs" and "0/1 finite paths, 1 diverged" in loc.measured
    # the counting rule itself
    assert count_of(np.array([True, True]), np.array([True, False]), "select opt") == \
        "1/1 finite select opt, 1 diverged"
    assert count_of(np.array([True, False]), np.array([True, True]), "select opt") == "1/2 select opt"

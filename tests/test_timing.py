"""attnsvm.timing: the sampled split of a run's wall time by category."""

import numpy as np

import attnsvm as A
from attnsvm.timing import CATEGORIES, TimeSplit


def test_each_kind_of_work_is_filed_under_its_category(tmp_path):
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnsvm.svm import solve_svm

    def busy(seconds, fn):
        import time

        t = time.perf_counter()
        while time.perf_counter() - t < seconds:
            fn()

    with TimeSplit(interval=0.01) as t:
        # compile: programs no other test builds (each constant makes another program)
        ks = iter(range(10**6))

        def compile_one():
            k = next(ks) + 0.5
            jax.jit(lambda x: jnp.tanh(x @ x.T * k).sum(axis=0) / k).lower(jnp.ones((7, 5))).compile()

        busy(0.3, compile_one)
        p = A.unit_gaussian(6, 5, 6, seed=3)
        busy(0.3, lambda: solve_svm(p, "opt", "nuclear"))
        fig, ax = plt.subplots()
        ax.plot(np.arange(1000) ** 0.5)
        busy(0.3, lambda: fig.savefig(tmp_path / "f.png", dpi=150))
        plt.close(fig)
        big = np.random.default_rng(0).standard_normal((800, 800))
        busy(0.3, lambda: np.savez(tmp_path / "a.npz", a=big))
        busy(0.3, lambda: np.linalg.qr(big))
    s = t.seconds
    assert set(s) == set(CATEGORIES)
    assert abs(sum(s.values()) - t.wall) < 1e-9 * t.wall
    for cat in ("compile", "solvers", "figures", "io", "run"):
        assert s[cat] > 0.05, (cat, s)
    assert s["workers"] == 0.0
    assert t.compile_events > 0.0  # JAX's own compile events, the exact cross-check

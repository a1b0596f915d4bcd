"""JAX set-up shared by the numerical modules: every computation of attnsvm runs in float64."""

from __future__ import annotations

from contextlib import contextmanager


def enable_x64() -> None:
    """Turn on float64 in JAX for the whole process (what a script may call; attnsvm's own entry points
    use :func:`float64` instead, which leaves the caller's setting as it was)."""
    import jax

    jax.config.update("jax_enable_x64", True)


@contextmanager
def float64():
    """A context in which JAX computes in float64; the previous setting is restored on exit."""
    import jax

    with jax.enable_x64(True):
        yield


def to_device(tree):
    """Host arrays (NumPy, Python scalars, nested in dicts/tuples) moved to the device as JAX arrays.

    ``jax.device_put`` copies; ``jnp.asarray`` on a host array stages it through a small compiled program
    per shape and dtype (≈0.05–0.1 s each to compile, dozens per engine call), which is most of a short
    run's set-up time."""
    import jax
    import numpy as np

    return jax.tree.map(lambda a: jax.device_put(np.asarray(a)), tree)

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

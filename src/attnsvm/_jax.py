"""JAX set-up shared by the numerical modules: float64 everywhere (docs/concepts/numerics.md)."""

from __future__ import annotations


def enable_x64() -> None:
    """Turn on float64 in JAX. Called on import of attnsvm, before any array is made."""
    import jax

    jax.config.update("jax_enable_x64", True)

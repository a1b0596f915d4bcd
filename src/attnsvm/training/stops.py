"""Stop conditions of the gradient flow, one small piece each.

A stop is a scalar function of the flow's state that crosses zero upwards where the flow should stop. The
flow locates the first crossing of the max of its stops by bisection on the dense interpolant of the
solver's last step, so every stop ends the trajectory at the same value of its quantity, whatever the
step sizes. A stop holds one number (its level); the level enters the compiled program as a traced value
(:meth:`Stop.traced`), so flows that differ only in levels share one compilation.

To add a stop: subclass :class:`Stop` with a ``level`` field, a ``name``, :meth:`traced` (the level in the
units of :meth:`value`) and :meth:`value` (model, θ, τ = log(1 + t), data, traced level) → scalar, written
in log space where the quantity can underflow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Stop:
    """Base class: ``level`` is the threshold, ``name`` the stop reason reported when it fires."""

    level: float
    name: ClassVar[str] = "stop"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.level) and self.level > 0):
            raise ValueError(f"{self.name} stop: the level must be a positive number, got {self.level}")

    def traced(self) -> float:
        """The level as the compiled program sees it (a traced scalar)."""
        return float(self.level)

    def static(self) -> Stop:
        """This stop with its level cleared: the part of it that is compiled."""
        return replace(self, level=1.0)

    def value(self, model, params: dict, tau: jax.Array, data, level: jax.Array) -> jax.Array:
        raise NotImplementedError


@dataclass(frozen=True)
class Saturation(Stop):
    """E(θ) ≤ level, with E the sign-definite saturation measure of :func:`attnsvm.flow.log_saturation`
    (compared as log E: E is far below 1e−308 at large ‖W‖)."""

    name: ClassVar[str] = "saturation"

    def traced(self) -> float:
        return float(np.log(self.level))

    def value(self, model, params, tau, data, level):
        from ..flow import log_saturation

        return level - log_saturation(model, params, data)


@dataclass(frozen=True)
class LogSaturation(Stop):
    """log E(θ) ≤ level, with ``level`` the natural log of E itself (any negative number): E falls below the
    smallest float (5e−324, log E ≈ −744) long before ‖W‖ is large, so :class:`Saturation` cannot ask for
    more, while e.g. ``LogSaturation(-1e5)`` lets an exponential-loss flow run to ‖W‖_F = 1e5 and beyond."""

    name: ClassVar[str] = "log_saturation"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.level) and self.level < 0):
            raise ValueError(f"log_saturation stop: the level is log E, a negative number, got {self.level}")

    def traced(self) -> float:
        return float(self.level)

    def static(self) -> Stop:
        return replace(self, level=-1.0)

    def value(self, model, params, tau, data, level):
        from ..flow import log_saturation

        # relative to |level| (log E is of order 1e4–1e5 here: an absolute difference cannot be located to the
        # root finder's 1e−12)
        return (level - log_saturation(model, params, data)) / jnp.abs(level)


@dataclass(frozen=True)
class Radius(Stop):
    """‖W‖_F ≥ level (‖p‖ for the prompt model)."""

    name: ClassVar[str] = "radius"

    def value(self, model, params, tau, data, level):
        from ..models import attention_weights

        W = attention_weights(model, params)
        # relative, so that the event's bisection (atol 1e−12) can locate it at any radius: ‖W‖ − R cannot get
        # below ~R·1e−16 in rounding, and at R ≈ 1e5 the location failed ("root not contained")
        return jnp.sqrt(jnp.sum(W**2)) / level - 1.0


@dataclass(frozen=True)
class Time(Stop):
    """Physical time t ≥ level (compared as τ = log(1 + t))."""

    name: ClassVar[str] = "time"

    def traced(self) -> float:
        return float(np.log1p(self.level))

    def value(self, model, params, tau, data, level):
        return tau - level


__all__ = ["LogSaturation", "Radius", "Saturation", "Stop", "Time"]

"""The experiment catalog: every experiment of the papers (docs/reproductions/index.md) as a named,
configurable, resumable reproduction.

Each experiment is registered with its id (the experiment's name in lower case), its paper, a one-line title, a config
class (the settings' types and validation, no values), the overrides ``--quick`` applies, and its
``run(cfg, ctx) -> Outcome`` function. The paper's settings are written once, each with a comment saying
where it comes from, in ``attnsvm/configs/<id>.toml`` (for users to copy and edit): :meth:`Experiment.default_config`
reads it, and a user's ``--config`` file overrides some of its keys.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from pydantic import ValidationError

from .base import Claim, Context, ExperimentConfig, Outcome

IDS = ("p1-single", "p1-multi", "p1-joint", "p1-loss", "p3-paths", "p3-local", "p3-rank", "p3-multitoken",
       "p2-diag", "p2-full", "ntp-global", "ntp-local", "md-local", "md-joint", "md-sign-adam")


@dataclass(frozen=True)
class Experiment:
    id: str
    paper: str
    title: str
    config_cls: type[ExperimentConfig]
    run: Callable[[Any, Context], Outcome]
    quick: dict[str, Any] = field(default_factory=dict)

    def default_config(self) -> ExperimentConfig:
        """The paper's settings: the packaged TOML file ``attnsvm/configs/<id>.toml``, validated (the one place
        where an experiment's settings are written)."""
        text = resources.files("attnsvm.configs").joinpath(f"{self.id}.toml").read_text()
        return self.config_cls.model_validate(tomllib.loads(text))

    def configure(self, overrides: dict[str, Any] | None = None, quick: bool = False) -> ExperimentConfig:
        """Defaults ← ``overrides`` (a user's TOML) ← the quick settings; errors name the key."""
        data = self.default_config().model_dump()
        for source in ((overrides or {}), (self.quick if quick else {})):
            data.update(source)
        try:
            return self.config_cls.model_validate(data)
        except ValidationError as exc:
            from ..rundir import did_you_mean

            fields = list(self.config_cls.model_fields)
            msgs = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: "
                             + (f"unknown key{did_you_mean(e['loc'][-1], fields)}" if e["type"] == "extra_forbidden"
                                else e["msg"])
                             for e in exc.errors())
            raise ValueError(f"{self.id} config: {msgs}") from None


REGISTRY: dict[str, Experiment] = {}


def register(exp: Experiment) -> Experiment:
    if exp.id not in IDS:
        raise ValueError(f"unknown experiment id {exp.id!r}")
    REGISTRY[exp.id] = exp
    return exp


def _load_all() -> None:
    """Import every paper module of this package: each registers its experiments when imported."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base", "runner"):
            importlib.import_module(f"{__name__}.{info.name}")


def get(exp_id: str) -> Experiment:
    _load_all()
    if exp_id not in REGISTRY:
        known = ", ".join(i for i in IDS if i in REGISTRY)
        raise ValueError(f"unknown experiment {exp_id!r}; known: {known}")
    return REGISTRY[exp_id]


def all_experiments() -> list[Experiment]:
    _load_all()
    return [REGISTRY[i] for i in IDS if i in REGISTRY]


__all__ = ["Claim", "Context", "Experiment", "ExperimentConfig", "Outcome", "all_experiments", "get",
           "register"]

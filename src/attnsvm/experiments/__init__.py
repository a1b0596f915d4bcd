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
        # the user's keys are checked before the quick settings replace some of them (a bad value is an
        # error even where --quick would override it)
        stages = [(overrides or {})] + ([self.quick] if quick else [])
        for source in stages:
            data.update(source)
            try:
                cfg = self.config_cls.model_validate(data)
            except ValidationError as exc:
                raise ValueError(f"{self.id} config: {self._messages(exc)}") from None
        return cfg

    def _messages(self, exc: ValidationError) -> str:
        """One line naming every bad key: 'key: what is wrong'."""
        from ..rundir import did_you_mean

        fields = list(self.config_cls.model_fields)
        out = []
        for e in exc.errors():
            loc, msg = ".".join(str(x) for x in e["loc"]), e["msg"]
            if e["type"] == "extra_forbidden":
                msg = f"unknown key{did_you_mean(e['loc'][-1], fields)}"
            elif e["type"] == "value_error":  # a validator's "key: what is wrong"
                msg = msg.removeprefix("Value error, ")
                key, sep, rest = msg.partition(": ")
                if sep and key.isidentifier() and not loc:
                    loc, msg = key, rest
            out.append(f"{loc}: {msg}" if loc else msg)
        return "; ".join(out)


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

"""Run configurations (TOML, validated with pydantic): what ``attnsvm train`` reads and writes.

A config has five sections::

    [problem]    file = "problem.npz"             # or: generator = "unit-gaussian", n, T, d, seed, ...
    [model]      parameterization = "combined"    # prompt | combined | factored | diagonal
                 loss = "logistic"                # logistic | exponential | correlation
                 reduction = "mean"               # mean | sum
                 head = "linear"                  # linear | relu (h(u) = 1ᵀReLU(Vᵀu), V ~ N(0, 1/d))
                 train_v = false                  # train the linear head jointly (P1 joint)
    [optimizer]  name = "ngd"                     # gd | ngd | flow | path
                 lr = 0.1
                 steps = 2000
                 normalize = "global"             # global | block (each block by its own norm)
                 ridge = 0.0                      # explicit λ‖θ‖²/2 (off by default)
    [init]       scheme = "zero"                  # zero | gaussian
                 scale = 0.01                     # or per block: { K = 0.1, Q = 0.0 }
    [run]        trials = 100                     # with a generator, trial j uses data seed + j
                 seed = 0                         # initialization seed
                 record_every = 10
                 references = ["fro", "nuclear"]  # Att-SVMs at opt to correlate with at every record
                                                  # ("lp" with p = P: the entrywise ℓP SVM; "linf": ℓ∞)
                 verdict = true                   # compare the end of the run with the theory (docs/concepts)

Unknown keys are errors (a typo must not silently fall back to a default), and every error names its key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .problem import GENERATORS, AttentionProblem, generate, load_problem


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProblemConfig(BaseModel):
    """``[problem]``: a file, or a generator with its keyword arguments (any extra key goes to the generator)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    file: str | None = None
    generator: str | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _one_source(self) -> ProblemConfig:
        if (self.file is None) == (self.generator is None):
            raise ValueError("give exactly one of 'file' (a .npz problem) or 'generator' "
                             f"(one of {sorted(GENERATORS)})")
        if self.generator is not None and self.generator not in GENERATORS:
            raise ValueError(f"generator must be one of {sorted(GENERATORS)}, got {self.generator!r}")
        if self.file is not None and self.model_extra:
            raise ValueError(f"keys {sorted(self.model_extra)} are generator arguments, but 'file' is given")
        return self

    @property
    def generator_args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def build(self, trial: int = 0, base_dir: Path | None = None) -> AttentionProblem:
        """The problem of trial ``trial``: the file, or the generator at data seed ``seed + trial``."""
        if self.file is not None:
            path = Path(self.file)
            if not path.is_absolute() and base_dir is not None and not path.exists():
                path = base_dir / path
            return load_problem(path)
        args = self.generator_args
        if self.generator in ("unit-gaussian", "p1-multi", "p3-paths"):
            args["seed"] = self.seed + trial
        return generate(self.generator, **args)

    @property
    def varies_by_trial(self) -> bool:
        return self.generator in ("unit-gaussian", "p1-multi", "p3-paths")


class ModelConfig(_Section):
    parameterization: Literal["prompt", "combined", "factored", "diagonal"] = "combined"
    loss: Literal["logistic", "exponential", "correlation"] = "logistic"
    reduction: Literal["mean", "sum"] = "mean"
    head: Literal["linear", "relu"] = "linear"
    train_v: bool = False
    hidden: int | None = Field(default=None, ge=1)
    head_width: int = Field(default=8, ge=1, description="m of the ReLU head V (d, m)")
    head_seed: int = 0


class OptimizerConfig(_Section):
    name: Literal["gd", "ngd", "flow", "path"] = "ngd"
    lr: float = Field(default=0.1, gt=0)
    steps: int = Field(default=1000, ge=0)
    normalize: Literal["global", "block"] = "global"
    ridge: float = Field(default=0.0, ge=0)
    freeze: list[str] = Field(default_factory=list)
    # gradient flow
    rtol: float = Field(default=1e-8, gt=0)
    atol: float = Field(default=1e-10, gt=0)
    stop_saturation: float | None = Field(default=1e-8, gt=0)
    stop_radius: float | None = Field(default=None, gt=0)
    max_steps: int = Field(default=100_000, ge=1)
    # regularization path
    radii: list[float] | None = None
    tol: float = Field(default=1e-6, gt=0)  # first-order stationarity of each radius (regpath)

    @field_validator("radii")
    @classmethod
    def _radii_positive(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or any(r <= 0 for r in v)):
            raise ValueError("radii must be a non-empty list of positive numbers")
        return v

    @model_validator(mode="after")
    def _path_needs_radii(self) -> OptimizerConfig:
        if self.name == "path" and self.radii is None:
            raise ValueError("name = 'path' needs radii = [R1, R2, ...]")
        return self


class InitConfig(_Section):
    scheme: Literal["zero", "gaussian"] = "zero"
    scale: float | dict[str, float] = 0.01


class RunConfig(_Section):
    trials: int = Field(default=1, ge=1)
    seed: int = 0
    record_every: int = Field(default=10, ge=1)
    references: list[Literal["l2", "fro", "nuclear", "l1", "lp", "linf"]] = Field(default_factory=list)
    p: float | None = Field(default=None, ge=1, allow_inf_nan=False,
                            description="exponent P of the 'lp' reference (the entrywise ℓP Att-SVM)")
    keep_path: bool = False
    verdict: bool = True


class TrainConfig(_Section):
    problem: ProblemConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    init: InitConfig = Field(default_factory=InitConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.optimizer.name in ("gd", "ngd") and self.optimizer.steps % self.run.record_every:
            raise ValueError(f"optimizer.steps ({self.optimizer.steps}) must be a multiple of "
                             f"run.record_every ({self.run.record_every})")
        if self.model.parameterization == "prompt" and any(r not in ("l2", "lp", "linf") for r in self.run.references):
            raise ValueError("run.references: the prompt model is compared with the 'l2', 'lp' and 'linf' SVMs only")
        if self.model.parameterization != "prompt" and "l2" in self.run.references:
            raise ValueError("run.references: 'l2' is the prompt-model SVM; use fro, nuclear, l1, lp or linf for W")
        if "lp" in self.run.references and self.run.p is None:
            raise ValueError("run.p: references = [\"lp\"] needs the exponent, e.g. p = 1.75 (in [run])")
        if self.run.p is not None and "lp" not in self.run.references:
            raise ValueError("run.p: only used by the 'lp' reference (add \"lp\" to run.references)")
        return self


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and section)"
        lines.append(f"  {loc}: {msg}")
    return "invalid config:\n" + "\n".join(lines)


def parse_config(data: dict[str, Any]) -> TrainConfig:
    """Validate a config dict; raise :class:`ConfigError` naming every bad key."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None


def read_toml(path: str | Path, label: str = "config file") -> dict[str, Any]:
    """The TOML file at ``path`` as a dict; :class:`ConfigError` (a ValueError) naming ``label`` if it is
    missing or not TOML. Shared by ``attnsvm train`` and ``attnsvm reproduce --config``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{label} not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label} {path}: not valid TOML ({exc})") from None


def load_config(path: str | Path) -> TrainConfig:
    return parse_config(read_toml(path))


def to_toml(data: dict[str, Any]) -> str:
    """Write a nested dict of scalars, lists and tables as TOML (enough for configs; None values dropped)."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {scalar(x)}" for k, x in v.items() if x is not None) + " }"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    out: list[str] = []
    top = {k: v for k, v in data.items() if not isinstance(v, dict) and v is not None}
    out += [f"{k} = {scalar(v)}" for k, v in top.items()]
    for sec, body in data.items():
        if not isinstance(body, dict):
            continue
        out.append(f"\n[{sec}]")
        out += [f"{k} = {scalar(v)}" for k, v in body.items() if v is not None]
    return "\n".join(out).lstrip() + "\n"


def dump_config(cfg: BaseModel) -> str:
    return to_toml(cfg.model_dump(mode="json"))

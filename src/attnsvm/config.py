"""Run configurations (TOML, validated with pydantic): what ``attnsvm train`` reads and writes.

A config has five sections::

    [problem]    file = "problem.npz"             # or: generator = "unit-gaussian", n, T, d, seed, ...
    [model]      parameterization = "combined"    # prompt | combined | factored | diagonal
                 loss = "logistic"                # logistic | exponential | correlation
                 reduction = "mean"               # mean | sum
                 head = "linear"                  # linear | relu (h(u) = 1ᵀReLU(Vᵀu), V ~ N(0, 1/d))
                 train_v = false                  # train the linear head jointly (P1 joint)
    [optimizer]  name = "ngd"                     # a registered optimizer (gd | ngd | …), or flow | path
                 lr = 0.1                         # the keys are the optimizer's own (training.optim), and
                 steps = 2000                     # steps for every optimizer;
                 normalize = "global"             # ngd: global | block (each block by its own norm)
                 eps = 0.0                        # ngd: ∇/(‖∇‖ + eps) instead of the exact ∇/‖∇‖
                 ridge = 0.0                      # explicit λ‖θ‖²/2 (off by default)
                 freeze = []                      # blocks kept fixed
                 # stops (any optimizer and flow): stop_saturation (E ≤ level), stop_log_saturation (log E ≤
                 #       level, any negative number), stop_radius (‖W‖_F ≥ level); flow also t_max
                 # flow: rtol, atol, max_steps, max_arclength, ridge, freeze;  path: radii, tol, max_iter,
                 #       restarts
    [init]       scheme = "zero"                  # zero | gaussian (default: zero for prompt / combined
                 scale = 0.01                     # under a descent, Gaussian otherwise); per block:
                                                  # { K = 0.1, Q = 0.0 }
    [run]        trials = 100                     # with a generator, trial j uses data seed + j
                 seed = 0                         # initialization seed
                 record_every = 10                # descent: steps between records
                 records = 50                     # flow: records per trial (equally spaced in arc length)
                 references = ["fro", "nuclear"]  # Att-SVMs at opt to correlate with at every record
                                                  # ("lp" with p = P: the entrywise ℓP SVM; "linf": ℓ∞)
                 verdict = true                   # compare the end of the run with the theory (docs/concepts)

Unknown keys are errors (a typo must not silently fall back to a default), every error names its key,
and every key is used: :func:`method_of` turns ``[optimizer]`` into the method object of
:func:`attnsvm.train`, and each default is the method's own.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from .problem import GENERATORS, AttentionProblem, generate, load_problem
from .training.methods import Descent, Flow, RegularizationPath
from .training.optim import OPTIMIZERS, OptimizerSpec
from .training.stops import LogSaturation, Radius, Saturation, Time


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the key."""


def _allows_bool(annotation: Any) -> bool:
    """Whether a field's type admits true/false (bool itself, Any, or a union / container holding bool)."""
    if annotation is bool or annotation is Any:
        return True
    return any(_allows_bool(a) for a in get_args(annotation))


def bool_number_error(model_cls: type[BaseModel], data: Any) -> str | None:
    """'key: expected a number, got true' for the first key of ``data`` whose value (or an element of its
    list) is true/false while the field is numeric: pydantic would read true as 1."""
    if not isinstance(data, dict):
        return None
    for key, val in data.items():
        field = model_cls.model_fields.get(key)
        if field is None or _allows_bool(field.annotation):
            continue
        vals = val if isinstance(val, (list, tuple)) else [val]
        if any(isinstance(x, bool) for x in vals):
            shown = (str(val).lower() if isinstance(val, bool) else
                     "[" + ", ".join(str(x).lower() if isinstance(x, bool) else repr(x) for x in val) + "]")
            return f"{key}: expected a number, got {shown}"
    return None


class _NoBoolNumbers(BaseModel):
    """A model whose numeric fields refuse true/false (strict about bool, lax about 1 vs 1.0)."""

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        bad = bool_number_error(cls, data)
        if bad:
            raise ValueError(bad)
        return data


class _Section(_NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ProblemConfig(_NoBoolNumbers):
    """``[problem]``: a file, or a generator with its keyword arguments (any extra key goes to the generator)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    file: str | None = None
    sha256: str | None = None  # of ``file``: written by ``attnsvm train`` into config.toml, checked when given
    generator: str | None = None
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> ProblemConfig:
        if (self.file is None) == (self.generator is None):
            raise ValueError("give exactly one of 'file' (a .npz problem) or 'generator' "
                             f"(one of {sorted(GENERATORS)})")
        if self.generator is not None and self.generator not in GENERATORS:
            raise ValueError(f"generator must be one of {sorted(GENERATORS)}, got {self.generator!r}")
        if self.file is not None and self.model_extra:
            raise ValueError(f"keys {sorted(self.model_extra)} are generator arguments, but 'file' is given")
        if self.sha256 is not None and self.file is None:
            raise ValueError("sha256: the checksum of 'file'; a generator has none")
        if self.generator is not None:
            from .problem import check_generator_args

            check_generator_args(self.generator, self.generator_args)
        return self

    def resolved_file(self, base_dir: Path | None = None) -> Path:
        """``file`` as a path: a relative one is relative to ``base_dir`` (the config file's folder), never
        to the working directory, so that one config always names one file."""
        path = Path(self.file).expanduser()
        return path if path.is_absolute() or base_dir is None else Path(base_dir) / path

    @property
    def generator_args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def build(self, trial: int = 0, base_dir: Path | None = None) -> AttentionProblem:
        """The problem of trial ``trial``: the file, or the generator at data seed ``seed + trial``."""
        if self.file is not None:
            path = self.resolved_file(base_dir)
            if self.sha256 is not None and path.is_file():
                from .rundir import sha256_file

                if sha256_file(path) != self.sha256:
                    raise ValueError(f"file {path}: its sha256 differs from the config's sha256 = "
                                     f"{self.sha256[:12]}…; the file changed since the config was written "
                                     "(remove the sha256 line to accept the new file)")
            return load_problem(path)
        args = self.generator_args
        if self.generator in ("unit-gaussian", "p1-multi", "p3-paths"):
            args["seed"] = self.seed + trial
        return generate(self.generator, **args)

    @property
    def varies_by_trial(self) -> bool:
        return self.generator in ("unit-gaussian", "p1-multi", "p3-paths")


class ModelConfig(_Section):
    parameterization: Literal["prompt", "combined", "factored", "diagonal", "multihead"] = "combined"
    loss: Literal["logistic", "exponential", "correlation"] = "logistic"
    reduction: Literal["mean", "sum"] = "mean"
    head: Literal["linear", "relu"] = "linear"
    train_v: bool = False
    hidden: int | None = Field(default=None, ge=1)
    head_width: int = Field(default=8, ge=1, description="m of the ReLU head V (d, m)")
    head_seed: int = Field(default=0, ge=0)
    heads: int = Field(default=1, ge=1, description="multihead: the number of heads H")
    head_parameterization: Literal["combined", "factored"] = "combined"
    values_seed: int = Field(default=0, ge=0, description="multihead: v_h (h ≥ 1) drawn from (values_seed, h)")

    @model_validator(mode="after")
    def _multihead_keys(self) -> ModelConfig:
        if self.parameterization != "multihead" and (self.heads != 1 or self.head_parameterization != "combined"):
            raise ValueError("heads and head_parameterization apply to parameterization = 'multihead'")
        return self


class FlowSection(_Section):
    """``[optimizer] name = "flow"``: the gradient flow (``training.Flow``) and its stops."""

    name: Literal["flow"] = "flow"
    rtol: float = Field(default=Flow.rtol, gt=0, allow_inf_nan=False)
    atol: float = Field(default=Flow.atol, gt=0, allow_inf_nan=False)
    max_steps: int = Field(default=Flow.max_steps, ge=1)
    max_arclength: float = Field(default=Flow.max_arclength, gt=0, allow_inf_nan=False)
    ridge: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    freeze: tuple[str, ...] = ()
    error_estimate: bool = Flow.error_estimate
    stop_saturation: float | None = Field(default=1e-8, gt=0, allow_inf_nan=False)
    stop_radius: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    t_max: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # log E itself (any negative number): E underflows to 0 long before large radii, so stop_saturation cannot
    # ask for less than 5e−324 (log E ≈ −744), while e.g. −1e5 lets an exponential-loss flow reach ‖W‖ = 1e5
    stop_log_saturation: float | None = Field(default=None, lt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _a_stop(self) -> FlowSection:
        if (self.stop_saturation is None and self.stop_radius is None and self.t_max is None
                and self.stop_log_saturation is None):
            raise ValueError("the flow needs a stop: set stop_saturation, stop_log_saturation, stop_radius or t_max")
        return self


class PathSection(_Section):
    """``[optimizer] name = "path"``: the regularization path (``training.RegularizationPath``)."""

    name: Literal["path"] = "path"
    radii: list[float]
    tol: float = Field(default=RegularizationPath.tol, gt=0, lt=1)
    max_iter: int = Field(default=RegularizationPath.max_iter, ge=1)
    restarts: int = Field(default=RegularizationPath.restarts, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _no_stops(cls, data):
        bad = sorted(k for k in data if str(k).startswith("stop_") or k == "t_max") if isinstance(data, dict) else []
        if bad:
            raise ValueError(f"{bad[0]}: stops do not apply to the regularization path (it solves at each radius "
                             "of `radii` and ends at the last one); remove the key or use name = \"flow\"")
        return data

    @field_validator("radii")
    @classmethod
    def _radii_positive(cls, v: list[float]) -> list[float]:
        bad = any(not (r > 0) or r == float("inf") for r in v) or any(b <= a for a, b in zip(v, v[1:], strict=False))
        if not v or bad:
            raise ValueError("radii must be a non-empty, strictly increasing list of positive numbers")
        return v


_DESCENT_SECTIONS: dict[type, type] = {}


#: the stop keys of a descent section (all off by default: a descent runs its steps)
_DESCENT_STOPS = {
    "stop_saturation": (float | None, Field(default=None, gt=0, allow_inf_nan=False)),
    "stop_log_saturation": (float | None, Field(default=None, lt=0, allow_inf_nan=False)),
    "stop_radius": (float | None, Field(default=None, gt=0, allow_inf_nan=False)),
}


def _descent_section(spec: type[OptimizerSpec]) -> type:
    """The config section of a registered optimizer: its own fields plus ``steps`` and the optional stops
    (``stop_saturation``, ``stop_log_saturation``, ``stop_radius``: the trial ends after the first step at
    which one holds)."""
    if spec not in _DESCENT_SECTIONS:
        _DESCENT_SECTIONS[spec] = create_model(f"{spec.__name__}Section", __base__=spec,
                                               steps=(int, Field(default=1000, ge=0)), **_DESCENT_STOPS)
    return _DESCENT_SECTIONS[spec]


def method_of(section: BaseModel) -> Descent | Flow | RegularizationPath:
    """The method object of :func:`attnsvm.train` for a validated ``[optimizer]`` section."""
    if isinstance(section, FlowSection):
        return Flow(rtol=section.rtol, atol=section.atol, max_steps=section.max_steps,
                    max_arclength=section.max_arclength, ridge=section.ridge, freeze=section.freeze,
                    error_estimate=section.error_estimate)
    if isinstance(section, PathSection):
        return RegularizationPath(tuple(section.radii), tol=section.tol, max_iter=section.max_iter,
                                  restarts=section.restarts)
    spec = OPTIMIZERS[section.name](**section.model_dump(exclude={"steps", *_DESCENT_STOPS}))
    return Descent(spec, section.steps)


def stops_of(section: BaseModel) -> tuple:
    """The stop pieces of an ``[optimizer]`` section: the flow's, or a descent's ``stop_*`` keys (empty for
    the regularization path)."""
    if isinstance(section, PathSection):
        return ()
    pieces = ((Saturation, section.stop_saturation), (Radius, section.stop_radius),
              (Time, getattr(section, "t_max", None)), (LogSaturation, section.stop_log_saturation))
    return tuple(cls(v) for cls, v in pieces if v is not None)


class InitConfig(_Section):
    scheme: Literal["zero", "gaussian"] | None = None
    scale: float | dict[str, float] = 0.01

    @field_validator("scale")
    @classmethod
    def _finite(cls, v):
        for x in (v.values() if isinstance(v, dict) else [v]):
            if not (x >= 0 and x != float("inf")):
                raise ValueError("the scale must be a finite number ≥ 0 (or block → number)")
        return v


class RunConfig(_Section):
    trials: int = Field(default=1, ge=1)
    seed: int = Field(default=0, ge=0)
    record_every: int = Field(default=10, ge=1)
    records: int = Field(default=50, ge=2)
    references: list[Literal["l2", "fro", "nuclear", "l1", "lp", "linf"]] = Field(default_factory=list)
    p: float | None = Field(default=None, ge=1, allow_inf_nan=False,
                            description="exponent P of the 'lp' reference (the entrywise ℓP Att-SVM)")
    keep_path: bool = False
    verdict: bool = True
    # ε-KKT certificate of every recorded direction against each reference norm (metrics columns kkt_<norm>;
    # attnsvm.svm.kkt_path) and, for factored / diagonal models, in parameter space (kkt_factored /
    # kkt_diagonal; attnsvm.svm.parameter_kkt_path): keeps the path; ~1–100 ms per (trial, record, norm)
    kkt: bool = False


class _TrainConfigBase(_Section):
    problem: ProblemConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    init: InitConfig = Field(default_factory=InitConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_optimizer(cls, data):
        if isinstance(data, dict) and isinstance(data.get("optimizer"), dict) and "name" not in data["optimizer"]:
            data = {**data, "optimizer": {**data["optimizer"], "name": "ngd"}}
        return data

    @model_validator(mode="after")
    def _consistent(self):
        o = self.optimizer
        if not isinstance(o, FlowSection | PathSection) and o.steps % self.run.record_every:
            raise ValueError(f"optimizer.steps ({o.steps}) must be a multiple of "
                             f"run.record_every ({self.run.record_every})")
        if self.model.parameterization == "prompt" and any(r not in ("l2", "lp", "linf") for r in self.run.references):
            raise ValueError("run.references: the prompt model is compared with the 'l2', 'lp' and 'linf' SVMs only")
        if self.model.parameterization != "prompt" and "l2" in self.run.references:
            raise ValueError("run.references: 'l2' is the prompt-model SVM; use fro, nuclear, l1, lp or linf for W")
        if "lp" in self.run.references and self.run.p is None:
            raise ValueError("run.p: references = [\"lp\"] needs the exponent, e.g. p = 1.75 (in [run])")
        if self.run.p is not None and "lp" not in self.run.references:
            raise ValueError("run.p: only used by the 'lp' reference (add \"lp\" to run.references)")
        from .models import Model

        m = self.model
        blocks = set(Model(m.parameterization, m.loss, m.reduction, m.head, m.train_v, m.hidden, m.heads,
                           m.head_parameterization).blocks)
        for what, names in (("init.scale", self.init.scale if isinstance(self.init.scale, dict) else {}),
                            ("optimizer.freeze", getattr(o, "freeze", ()))):
            unknown = set(names) - blocks
            if unknown:
                raise ValueError(f"{what}: unknown block(s) {sorted(unknown)} for the "
                                 f"{self.model.parameterization!r} model, whose blocks are {sorted(blocks)}")
        return self


_CONFIG_MODELS: dict[tuple, type] = {}


def train_config_model() -> type[_TrainConfigBase]:
    """The config model whose ``[optimizer]`` is the union keyed on ``name`` of every registered optimizer,
    ``flow`` and ``path`` (rebuilt when an optimizer is registered)."""
    key = tuple(sorted(OPTIMIZERS.items()))
    if key not in _CONFIG_MODELS:
        members = tuple(_descent_section(OPTIMIZERS[k]) for k in sorted(OPTIMIZERS)) + (FlowSection, PathSection)
        union = Annotated[Union[members], Field(discriminator="name")]  # noqa: UP007 (a runtime tuple)
        ngd = _descent_section(OPTIMIZERS["ngd"])
        _CONFIG_MODELS[key] = create_model("TrainConfig", __base__=_TrainConfigBase,
                                           optimizer=(union, Field(default_factory=ngd)))
    return _CONFIG_MODELS[key]


#: the config model with the optimizers registered at import (``train_config_model()`` for the current ones)
TrainConfig = train_config_model()


def _section_fields(loc: tuple) -> list[str]:
    """The keys allowed where an unknown key ``loc`` was found (for "did you mean")."""
    sections = {"problem": ProblemConfig, "model": ModelConfig, "init": InitConfig, "run": RunConfig}
    if not loc:
        return list(_TrainConfigBase.model_fields) + ["optimizer"]
    if loc[0] in sections:
        return list(sections[loc[0]].model_fields)
    if loc[0] == "optimizer" and len(loc) > 1:
        cls = {"flow": FlowSection, "path": PathSection}.get(str(loc[1]))
        if cls is None and str(loc[1]) in OPTIMIZERS:
            cls = _descent_section(OPTIMIZERS[str(loc[1])])
        return list(cls.model_fields) if cls is not None else []
    return []


def _format_errors(exc: ValidationError) -> str:
    from .rundir import did_you_mean

    parts = []
    for err in exc.errors():
        where, msg = tuple(err["loc"]), err["msg"]
        if err["type"] == "value_error":  # a validator's "key: what is wrong" names the key under loc
            msg = msg.removeprefix("Value error, ")
            key, sep, rest = msg.partition(": ")
            if sep and key and all(k.isidentifier() for k in key.split(".")):
                where, msg = where + tuple(key.split(".")), rest
        if where[:1] == ("optimizer",) and len(where) > 2:
            # the union's tag (the optimizer name) is not a key of the file
            where = ("optimizer",) + where[2:]
        loc = ".".join(str(x) for x in where) or "(top level)"
        if err["type"] == "union_tag_invalid":
            msg = f"name: {msg}"
        if err["type"] == "extra_forbidden":
            hint = did_you_mean(err["loc"][-1], _section_fields(tuple(err["loc"][:-1])))
            msg = f"unknown key{hint or ' (check its spelling and section)'}"
        parts.append(f"{loc}: {msg}")
    return "invalid config: " + "; ".join(parts)


def _bool_as_number(data: dict[str, Any], cfg: BaseModel) -> str | None:
    """The first key whose TOML value is true/false but whose setting is a number (pydantic reads true as 1)."""
    for sec, body in data.items():
        if not isinstance(body, dict):
            continue
        obj = getattr(cfg, sec, None)
        for key, val in body.items():
            if isinstance(val, bool) and hasattr(obj, key) and key in type(obj).model_fields \
                    and not isinstance(getattr(obj, key), bool):
                return f"{sec}.{key}: expected a number, got {str(val).lower()}"
    return None


def parse_config(data: dict[str, Any]) -> TrainConfig:
    """Validate a config dict; raise :class:`ConfigError` naming every bad key (on one line)."""
    try:
        cfg = train_config_model().model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None
    bad = _bool_as_number(data, cfg)
    if bad:
        raise ConfigError(f"invalid config: {bad}")
    return cfg


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

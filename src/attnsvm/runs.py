"""Run a training config into a run directory (what ``attnsvm train CONFIG --out DIR`` does).

problem → model → engine → records → files. The run directory holds

* ``config.toml``     the validated config, with every default written out;
* ``metrics.parquet`` one row per (trial, recorded step): loss, L − L* and their logarithms ``log_loss``,
                      ``log_excess_loss`` (exact where L overflows float64, e.g. an exponential loss at
                      margins below −709; ``loss`` then reads inf and the summary gives the value from the
                      logarithm), norms, softmax mass, margin, correlations with the reference SVMs, …;
* ``final.npz``       ``W`` (trials × d × d; the prompt model writes ``p``, trials × d), every trained block
                      by name (``K``, ``Q``, ``k``, ``q``, ``v``), ``selection`` (trials × n, argmax attention),
                      and ``steps``; the path engine adds ``radii`` and ``W_path``;
* ``verdict.parquet`` one row per trial: selection reached (global / certified local optimum), correlation
                      with each Att-SVM at that selection, margin, whether the run was long enough
                      (``attnsvm.metrics.verdicts``);
* ``summary.md``      the final numbers, averaged over trials.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .config import ConfigError, TrainConfig, dump_config, method_of, stops_of
from .models import Model
from .problem import AttentionProblem
from .training import Init, Run, Save, train


def build_problems(cfg: TrainConfig, base_dir: Path | None = None) -> list[AttentionProblem]:
    """One problem per trial when the generator is seeded by trial, else a single shared problem."""
    if cfg.problem.varies_by_trial:
        return [cfg.problem.build(j, base_dir) for j in range(cfg.run.trials)]
    return [cfg.problem.build(0, base_dir)]


def build_model(cfg: TrainConfig) -> Model:
    m = cfg.model
    return Model(parameterization=m.parameterization, loss=m.loss, reduction=m.reduction, head=m.head,
                 train_v=m.train_v, hidden=m.hidden, heads=m.heads, head_parameterization=m.head_parameterization)


def relu_head(cfg: TrainConfig, d: int) -> np.ndarray | None:
    """V (d, m) ~ N(0, 1/d) for the ReLU head, seeded by ``model.head_seed``."""
    if cfg.model.head != "relu":
        return None
    rng = np.random.default_rng(cfg.model.head_seed)
    return rng.standard_normal((d, cfg.model.head_width)) / np.sqrt(d)


def reference_norms(cfg, problem: AttentionProblem) -> list[str]:
    """The registry names of ``run.references``: "lp" → ``lp:P`` (``lp-prompt:P`` for the prompt model) with
    P = ``run.p``, "linf" → ``lp:inf``; the other names as they are."""
    from .svm import lp_norm_name

    prompt = problem.kind == "prompt"
    out = []
    for r in cfg.run.references:
        if r == "lp":
            out.append(lp_norm_name(cfg.run.p, prompt))
        elif r == "linf":
            out.append(lp_norm_name(float("inf"), prompt))
        else:
            out.append(r)
    return out


def reference_solutions(problems: list[AttentionProblem], norms: list[str], trials: int
                        ) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """The Att-SVM solution at the optimal selection, per trial, for every requested norm.

    Returns (name → (trials, *W.shape), name → per-trial status). An infeasible problem has no direction:
    its reference is all zeros (correlation reported as 0) and its status says so.
    """
    from .svm import SOLUTION_PRESENT, solve_svm

    refs: dict[str, np.ndarray] = {}
    status: dict[str, list[str]] = {}
    for norm in norms:
        sols, st = [], []
        for p in problems:
            res = solve_svm(p, "opt", norm=norm)
            st.append(res.status)
            sols.append(np.asarray(res.solution) if res.status in SOLUTION_PRESENT else None)
        shape = next((s.shape for s in sols if s is not None), None)
        if shape is None:
            prompt = norm == "l2" or norm.startswith("lp-prompt:")
            shape = (problems[0].keys.shape[1],) if prompt else (problems[0].d, problems[0].d)
        arr = np.stack([s if s is not None else np.zeros(shape) for s in sols])
        if len(problems) == 1 and trials > 1:
            arr = np.broadcast_to(arr[0], (trials,) + shape)
            st = st * trials
        refs[norm] = arr
        status[norm] = st
    return refs, status


def run_engine(cfg: TrainConfig, problems: list[AttentionProblem], model: Model,
               references: dict[str, np.ndarray], progress: bool | Callable = False) -> Run:
    """Run the config's method through :func:`attnsvm.train` (every key of the config is used)."""
    r = cfg.run
    target = problems if len(problems) > 1 else problems[0]
    return train(target, model, method_of(cfg.optimizer), init=Init(cfg.init.scheme, cfg.init.scale, r.seed),
                 save=Save(every=r.record_every, records=r.records, path=r.keep_path or r.kkt,
                           params=r.kkt and cfg.model.parameterization in ("factored", "diagonal")),
                 stop=stops_of(cfg.optimizer),
                 trials=r.trials, references=references, head_V=relu_head(cfg, problems[0].d), progress=progress)


def with_kkt(run: Run, problems: list[AttentionProblem], norms: list[str]) -> Run:
    """``run`` with the ε-KKT of every recorded direction against each norm as metrics ``kkt_<norm>`` (B, R)
    (:func:`attnsvm.svm.kkt_path`: each record at its own reached selection; inf where it does not separate),
    and for factored / diagonal runs the parameter-space ε as ``kkt_factored`` / ``kkt_diagonal``
    (:func:`attnsvm.svm.parameter_kkt_path`: min ½‖φ‖² s.t. margins ≥ 1 in the blocks themselves)."""
    from dataclasses import replace

    from .svm import kkt_path, parameter_kkt_path

    space = run.model.name if run.model.name in ("factored", "diagonal") else None
    if run.path is None:
        raise ConfigError("run.kkt: the run kept no path of directions (the engine did not record W)")
    if not norms and space is None:
        raise ConfigError("run.kkt: give the norms to certify against in run.references")
    eps = {f"kkt_{k}": v for k, v in kkt_path(problems, run.path, norms).items()}
    if space is not None:
        if run.params_path is None:
            raise ConfigError("run.kkt: the run kept no path of parameters (the engine did not record them)")
        eps[f"kkt_{space}"] = parameter_kkt_path(problems, run.params_path)
    return replace(run, metrics={**run.metrics, **eps})


def write_run(out: Path, cfg: TrainConfig, result: Run, extra: dict | None = None,
              verdict=None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(dump_config(cfg))
    result.table().to_parquet(out / "metrics.parquet", index=False)
    arrays: dict[str, np.ndarray] = {
        ("p" if result.model.name == "prompt" else "W"): result.W,
        "selection": result.selection[:, -1],
        result.time_axis: result.time,  # step (descent), record (flow) or radius index (path)
        "status": result.status,
        "stop_reason": result.stop_reason,
    }
    for name, val in result.params.items():
        arrays.setdefault(name, val)
    for key in ("radii", "W_path"):
        if key in result.info:
            arrays[key] = np.asarray(result.info[key])
    if result.path is not None and "W_path" not in arrays:
        arrays["W_path"] = result.path
    np.savez(out / "final.npz", **arrays)
    if verdict is not None:
        verdict.to_parquet(out / "verdict.parquet", index=False)
    else:  # never leave a verdict of an earlier run beside this one
        (out / "verdict.parquet").unlink(missing_ok=True)
    (out / "summary.md").write_text(summary_markdown(result, extra, verdict))


#: natural logarithms of values that float64 holds with full relative precision (normal numbers)
_LOG_MIN, _LOG_MAX = np.log(np.finfo(float).tiny), np.log(np.finfo(float).max)


def fmt_from_log(lx: float, digits: int = 6) -> str:
    """e^{lx} written in decimal from its natural logarithm, also beyond float64 (``3.2e+434``); ``0`` for
    lx = −inf."""
    if np.isneginf(lx):
        return "0"
    if not np.isfinite(lx):
        return str(lx)
    e10 = lx / np.log(10.0)
    ex = int(np.floor(e10))
    mant = 10.0 ** (e10 - ex)
    if mant >= 10.0 - 0.5 * 10.0 ** (1 - digits):  # rounds up to 10: carry into the exponent
        mant, ex = 1.0, ex + 1
    return f"{mant:.{digits}g}e{ex:+d}"


def log_stat(lx: np.ndarray) -> str:
    """Mean ± std (min, max) over trials of values given by their logarithms lx, computed in log space
    (mean = e^{LSE(lx)}/k, std from the values divided by the largest)."""
    lx = np.asarray(lx, dtype=float)
    if lx.size == 1:
        return fmt_from_log(lx[0])
    M = np.max(lx)
    if np.isneginf(M):
        return "0 ± 0 (min 0, max 0)"
    y = np.exp(lx - M)  # ≤ 1, the largest is 1
    lmean = np.log(np.mean(y)) + M
    sd = np.std(y)
    lsd = np.log(sd) + M if sd > 0 else -np.inf
    return (f"{fmt_from_log(lmean)} ± {fmt_from_log(lsd, 2)} (min {fmt_from_log(np.min(lx))}, "
            f"max {fmt_from_log(M)})")


def summary_rows(result: Run, verdict=None) -> list[tuple[str, str]]:
    """(quantity, value over trials) for the end of the run; diverged trials are counted, and left out of
    every statistic."""
    m = result.metrics
    ok = result.ok

    def stat(x: np.ndarray) -> str:
        x = np.asarray(x, dtype=float)[ok]
        if x.size == 0:
            return "no trial (all diverged)"
        if x.size == 1:
            return f"{x[0]:.6g}"
        return f"{np.nanmean(x):.6g} ± {np.nanstd(x):.2g} (min {np.nanmin(x):.6g}, max {np.nanmax(x):.6g})"

    def value_stat(key: str, log_key: str) -> str:
        """A loss-like value from its logarithm when float64 cannot hold it (said so in the row)."""
        x = np.asarray(m[key][:, -1], dtype=float)[ok]
        lx = np.asarray(m[log_key][:, -1], dtype=float)[ok] if log_key in m else np.full(x.shape, np.nan)
        if x.size == 0 or np.all(np.isnan(lx)):
            if key == "excess_loss" and x.size and np.all(np.isnan(x)):
                return "not defined (L* is ℓ(γ_opt) for one linear head only)"
            return stat(m[key][:, -1])
        if np.all(np.isfinite(x)) and np.all((lx > _LOG_MIN) & (lx < _LOG_MAX) | np.isneginf(lx)):
            return stat(m[key][:, -1])
        return log_stat(lx) + " (beyond float64: computed from its logarithm, column " + log_key + ")"

    last = result.selection[:, -1]  # (B, n), or (B, H, n): every head selecting opt
    alpha = result.alpha.reshape((result.trials,) + (1,) * (last.ndim - 2) + (-1,))
    sel = np.all((last == alpha).reshape(result.trials, -1), axis=1)[ok]
    sel_opt = np.mean(sel) if sel.size else float("nan")
    rows = [
        ("trials", str(result.trials)),
        ("diverged trials (non-finite values; left out below)", str(result.n_diverged)),
        (f"final {result.time_axis}", str(result.time[-1])),
        ("loss", value_stat("loss", "log_loss")),
        ("L − L*", value_stat("excess_loss", "log_excess_loss")),
        ("‖θ‖", stat(m["theta_norm"][:, -1])),
        ("‖W‖_F", stat(m["W_fro"][:, -1])),
        ("min_i max_t softmax", stat(m["max_softmax_min"][:, -1])),
        ("fraction of trials selecting opt", f"{sel_opt:.3f}"),
        ("normalized margin at opt", stat(m["margin"][:, -1])),
    ]
    for name, c in result.correlations.items():
        rows.append((f"corr(W, {name} SVM at opt)", stat(c[:, -1])))
    if result.time_axis != "radius":
        reasons, counts = np.unique(np.asarray(result.stop_reason, dtype=str), return_counts=True)
        rows.append(("stop reason (trials)", ", ".join(f"{r}: {c}" for r, c in zip(reasons, counts, strict=True))))
    if "steps_taken" in m:
        rows.append(("steps taken (a trial stops at its first step meeting a stop)", stat(m["steps_taken"][:, -1])))
    if "log_saturation" in m:
        rows.append(("log E (saturation)", stat(m["log_saturation"][:, -1])))
    frozen = np.sum(ok & np.isneginf(m["log_grad_norm"][:, -1]) & (m["max_softmax_min"][:, -1] < 1.0))
    rows.append(("frozen trials (zero gradient, attention not one-hot)", str(int(frozen))))
    rows.append(("compile / run seconds", f"{result.compile_seconds:.2f} / {result.run_seconds:.2f}"))
    if verdict is not None:
        from .metrics import verdict_summary

        rows += [(f"verdict: {k}", v) for k, v in verdict_summary(verdict)]
    return rows


def summary_markdown(result: Run, extra: dict | None = None, verdict=None) -> str:
    lines = ["# attnsvm train: summary", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(result, verdict)]
    if extra:
        lines += ["", "```json", json.dumps(extra, indent=2, default=str), "```"]
    return "\n".join(lines) + "\n"


#: the files ``attnsvm train`` writes into a run directory (what ``--overwrite`` removes)
RUN_FILES = ("config.toml", "metrics.parquet", "final.npz", "verdict.parquet", "summary.md")


def with_problem_checksum(cfg: TrainConfig, base_dir: Path | None = None) -> TrainConfig:
    """``cfg`` with ``[problem] file`` resolved (relative to ``base_dir``, the config's folder) and its
    sha256 recorded, so that config.toml names exactly the data it was trained on."""
    if cfg.problem.file is None:
        return cfg
    from .rundir import sha256_file

    path = cfg.problem.resolved_file(base_dir).resolve()
    if not path.is_file():
        return cfg  # missing or a folder: loading the problem says so, naming the path
    digest = sha256_file(path)
    if cfg.problem.sha256 is not None and cfg.problem.sha256 != digest:
        raise ConfigError(f"problem.file: {path} has sha256 {digest[:12]}…, not the config's "
                          f"{cfg.problem.sha256[:12]}…: the file changed since the config was written "
                          "(remove the sha256 line to accept the new file)")
    problem = cfg.problem.model_copy(update={"file": str(path), "sha256": digest})
    return cfg.model_copy(update={"problem": problem})


def prepare_out(out: Path, config_text: str, overwrite: bool = False) -> str:
    """Check the run directory before any work: a new or empty folder, or a run of the same config (it is
    run again: same numbers), or (``overwrite``) a run of another config, whose files are removed.
    Returns a note ('' or what was done); ConfigError otherwise."""
    from .rundir import check_writable_dir

    try:
        check_writable_dir(out)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not out.exists() or not any(out.iterdir()):
        return ""
    old = out / "config.toml"
    if not old.is_file():
        raise ConfigError(f"--out {out} is not empty and holds no attnsvm run; give a new or empty folder")
    if old.read_text() == config_text:
        return "same config as the run already in --out: run again"
    if not overwrite:
        raise ConfigError(f"--out {out} holds a run of another config (its config.toml differs); use "
                          "--overwrite to replace it, or another --out")
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    return "--overwrite: the run of another config in --out was replaced"


def run_bytes(trials: int, records: int, params: int, problem_floats: int, problems: int, per_record: int) -> float:
    """The one memory estimate of a run (``train`` and ``reproduce``), in float64 bytes: ``problems`` problems
    of ``problem_floats`` numbers, and per trial the parameters with optimizer state (4 copies of ``params``)
    and ``records`` records of ``per_record`` numbers."""
    return 8.0 * (problems * problem_floats + trials * (4 * params + records * per_record))


def estimate_bytes(cfg: TrainConfig, problem: AttentionProblem, model: Model) -> float:
    """Rough float64 bytes of a run (:func:`run_bytes`): the problems, the parameters with optimizer state,
    and the records (metrics, selections, and the parameter path when kept)."""
    method = method_of(cfg.optimizer)
    kind = getattr(method, "kind", "descent")
    if kind == "descent":
        records = method.steps // cfg.run.record_every + 1
    elif kind == "flow":
        records = cfg.run.records
    else:
        records = len(getattr(method, "radii", ())) or 1
    shapes = model.param_shapes(problem.d, problem.keys.shape[1])
    params = sum(int(np.prod(s)) for s in (shapes.values() if isinstance(shapes, dict) else shapes))
    per_problem = problem.X.size + problem.n * (problem.d + problem.T + 2) + problem.d * problem.d
    problems = cfg.run.trials if cfg.problem.varies_by_trial else 1
    per_record = 32 + problem.n + (params if cfg.run.keep_path else 0) + problem.d * problem.d
    return run_bytes(cfg.run.trials, records, params, per_problem, problems, per_record)


def train_from_config(cfg: TrainConfig, out: Path, progress: bool | Callable = False,
                      base_dir: Path | None = None, overwrite: bool = False):
    """Build problems, model and references from ``cfg``, run the engine, write the run directory.

    Everything that can be checked is checked before training: the output folder (writable, empty, the
    same config, or ``overwrite``), the problem file (resolved against ``base_dir``, its sha256 recorded in
    config.toml), and a memory estimate. Returns (Run, verdict DataFrame or None)."""
    from .problem import check_memory

    out = Path(out)
    cfg = with_problem_checksum(cfg, base_dir)
    note = prepare_out(out, dump_config(cfg), overwrite)
    model = build_model(cfg)
    try:
        first = cfg.problem.build(0, base_dir)
        check_memory(estimate_bytes(cfg, first, model), f"{cfg.run.trials} trials of (n, T, d) = "
                     f"({first.n}, {first.T}, {first.d})", "lower run.trials (or the steps per record)")
        problems = [first] + ([cfg.problem.build(j, base_dir) for j in range(1, cfg.run.trials)]
                              if cfg.problem.varies_by_trial else [])
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"problem: {exc}") from None
    if model.param.needs_queries and problems[0].kind == "prompt":
        raise ConfigError(f"model.parameterization: {model.parameterization!r} needs queries, but the problem "
                          "has none (give Z or query_index in the problem, or use parameterization = 'prompt')")
    norms = reference_norms(cfg, problems[0])
    refs, status = reference_solutions(problems, norms, cfg.run.trials) if cfg.run.references else ({}, {})
    # the records are named as the config names them ("lp", not "lp:1.75")
    refs = {r: refs[n] for r, n in zip(cfg.run.references, norms, strict=True)}
    status = {r: status[n] for r, n in zip(cfg.run.references, norms, strict=True)}
    result = run_engine(cfg, problems, model, refs, progress)
    if cfg.run.kkt:
        result = with_kkt(result, problems, list(cfg.run.references))
    extra = {f"reference status ({k})": {s: v.count(s) for s in set(v)} for k, v in status.items()}
    if note:
        extra["run directory"] = note
    verdict = None
    if cfg.run.verdict and model.head == "linear":
        from .metrics import verdicts

        verdict = verdicts(problems, result)
    write_run(Path(out), cfg, result, extra or None, verdict)
    return result, verdict

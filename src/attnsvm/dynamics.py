"""Training engines (docs/concepts/dynamics.md): GD and normalized GD over many trials in one compiled program.

One call of :func:`train` runs B independent trials (seeds, initializations, problems of one shape) as a
single XLA program: ``vmap`` (or a sequential ``lax.map`` at large sizes, where vmap is memory-bound) over
trials, ``lax.scan`` over records and ``fori_loop`` over the steps between records. Updates:

* gd:   θ_b ← θ_b − η ∇_b L
* ngd:  θ ← θ − η ∇L/‖∇L‖                 (``normalize="global"``: one norm over all trained blocks)
        θ_b ← θ_b − η ∇_b L/‖∇_b L‖        (``normalize="block"``: each block by its own norm, as P3's
                                            (K, Q) code and P1's joint (v, p) code do)

Gradients come from :func:`attnsvm.models.stable_grad`, whose scale is kept as a logarithm: normalized
steps are exact at any ‖W‖, and a run never freezes on an underflowed gradient. An optional explicit ridge
adds λ‖θ‖²/2 to the loss (off by default; the (K, Q) results of P3's code rely on a hidden
λ(‖K‖² + ‖Q‖²) with λ = 2.2e−16, i.e. ``ridge = 4.4e−16`` here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from .models import (
    Data,
    Model,
    ScaledGrad,
    add_ridge,
    attention_weights,
    excess_loss,
    forward,
    log_block_norms,
    log_grad_norm,
    logits,
    model_data,
    stable_grad,
    stack_data,
)
from .problem import AttentionProblem

OPTIMIZERS = ("gd", "ngd")
NORMALIZATIONS = ("global", "block")


@dataclass(frozen=True)
class Optimizer:
    """A discrete gradient method. ``freeze`` lists blocks to keep fixed (e.g. ``("Q",)``)."""

    name: Literal["gd", "ngd"] = "ngd"
    lr: float = 0.1
    normalize: Literal["global", "block"] = "global"
    ridge: float = 0.0
    freeze: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer name must be one of {OPTIMIZERS}, got {self.name!r}")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: must be a positive number, got {self.lr}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if not (np.isfinite(self.ridge) and self.ridge >= 0):
            raise ValueError(f"ridge: must be ≥ 0, got {self.ridge}")
        object.__setattr__(self, "freeze", tuple(self.freeze))


def descent_direction(opt: Optimizer, sg: ScaledGrad) -> dict:
    """The update Δθ_b (the step is θ_b − Δθ_b) for the optimizer, from the scaled gradient."""
    blocks = [b for b in sg.g if b not in opt.freeze]
    if opt.name == "gd":
        return {b: opt.lr * sg.g[b] * jnp.exp(sg.log_scale[b]) for b in blocks}
    if opt.normalize == "global":
        lb = log_block_norms(ScaledGrad({b: sg.g[b] for b in blocks},
                                        {b: sg.log_scale[b] for b in blocks}, sg.loss))
        lnorm = 0.5 * jax.scipy.special.logsumexp(2.0 * jnp.stack(list(lb.values())))
        ok = jnp.isfinite(lnorm)
        return {b: jnp.where(ok, opt.lr * sg.g[b] * jnp.exp(sg.log_scale[b] - jnp.where(ok, lnorm, 0.0)), 0.0)
                for b in blocks}
    out = {}
    for b in blocks:
        nrm = jnp.sqrt(jnp.sum(sg.g[b] ** 2))
        out[b] = jnp.where(nrm > 0, opt.lr * sg.g[b] / jnp.where(nrm > 0, nrm, 1.0), 0.0)
    return out


def step(model: Model, opt: Optimizer, params: dict, data: Data) -> dict:
    """One update θ ← θ − Δθ."""
    sg = add_ridge(stable_grad(model, params, data), params, opt.ridge)
    upd = descent_direction(opt, sg)
    return {b: (params[b] - upd[b]) if b in upd else params[b] for b in params}


# ---- what a record holds -------------------------------------------------------------------------------

SCALAR_METRICS = (
    "loss", "excess_loss", "theta_norm", "W_fro", "W_nuc", "mass_alpha_mean", "mass_alpha_min",
    "max_softmax_mean", "max_softmax_min", "log_grad_norm", "margin",
)


def constraint_margins(model: Model, params: dict, data: Data, alpha: jax.Array) -> jax.Array:
    """⟨A_it, W⟩ = a_iα − a_it for every real t ≠ α_i (+inf elsewhere), shape (n, T)."""
    a = jnp.where(data.mask, logits(model, params, data), 0.0)
    a_alpha = jnp.take_along_axis(a, alpha[:, None], axis=1)
    T = a.shape[1]
    keep = data.mask & (jnp.arange(T)[None, :] != alpha[:, None])
    return jnp.where(keep, a_alpha - a, jnp.inf)


def record(model: Model, params: dict, data: Data, alpha: jax.Array, refs: jax.Array) -> dict:
    """All per-record quantities of one trial (docs/concepts/dynamics.md; ``refs``: (r, *W.shape) reference
    solutions)."""
    fw = forward(model, params, data)
    W = attention_weights(model, params)
    s = jnp.exp(fw.log_s)
    sv = jnp.linalg.svd(W, compute_uv=False) if W.ndim == 2 else jnp.linalg.norm(W)[None]
    W_fro = jnp.sqrt(jnp.sum(W**2))
    mass = jnp.take_along_axis(s, alpha[:, None], axis=1)[:, 0]
    mx = jnp.max(s, axis=1)
    theta = jnp.sqrt(sum(jnp.sum(params[b] ** 2) for b in model.blocks))
    margin = jnp.min(constraint_margins(model, params, data, alpha)) / jnp.where(W_fro > 0, W_fro, 1.0)
    refn = jnp.sqrt(jnp.sum(refs.reshape(refs.shape[0], -1) ** 2, axis=1))
    corr = (refs.reshape(refs.shape[0], -1) @ W.reshape(-1)) / jnp.where(refn * W_fro > 0, refn * W_fro, 1.0)
    out = {
        "loss": fw.loss,
        "excess_loss": excess_loss(model, params, data, fw),
        "theta_norm": theta,
        "W_fro": W_fro,
        "W_nuc": jnp.sum(sv),
        "mass_alpha_mean": jnp.mean(mass),
        "mass_alpha_min": jnp.min(mass),
        "max_softmax_mean": jnp.mean(mx),
        "max_softmax_min": jnp.min(mx),
        "log_grad_norm": log_grad_norm(stable_grad(model, params, data)),
        "margin": margin,
        "selection": jnp.argmax(fw.log_s, axis=1),
        "singular_values": sv,
        "corr": corr,
    }
    return out


# ---- the compiled engine -----------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("model", "opt", "record_every", "n_records", "batch_data", "use_map",
                                   "keep_path"))
def _run_segment(params, data, alpha, refs, *, model, opt, record_every, n_records, batch_data, use_map,
                 keep_path):
    def rec_at(p, dat, al, rf):
        rec = record(model, p, dat, al, rf)
        if keep_path:
            rec["path"] = attention_weights(model, p)
        return rec

    def one(p, dat, al, rf):
        def chunk(p, _):
            p = jax.lax.fori_loop(0, record_every, lambda _, q: step(model, opt, q, dat), p)
            return p, rec_at(p, dat, al, rf)

        # the record at the segment's start (used for step 0: one program to compile, not two) and the
        # final attention weights come out of the same program.
        rec0 = rec_at(p, dat, al, rf)
        p, recs = jax.lax.scan(chunk, p, None, length=n_records)
        return p, (rec0, recs, attention_weights(model, p))

    d_axis = 0 if batch_data else None
    if use_map:
        if batch_data:
            return jax.lax.map(lambda a: one(*a), (params, data, alpha, refs))
        return jax.lax.map(lambda a: one(a[0], data, a[1], a[2]), (params, alpha, refs))
    return jax.vmap(one, in_axes=(0, d_axis, 0, 0))(params, data, alpha, refs)


@partial(jax.jit, static_argnames=("model", "batch_data", "keep_path"))
def _record0(params, data, alpha, refs, *, model, batch_data, keep_path):
    def one(p, dat, al, rf):
        rec = record(model, p, dat, al, rf)
        if keep_path:
            rec["path"] = attention_weights(model, p)
        return rec

    return jax.vmap(one, in_axes=(0, 0 if batch_data else None, 0, 0))(params, data, alpha, refs)


_COMPILED: dict = {}


def _compiled_segment(params, data, alpha, refs, kw: dict):
    """The compiled program for these static settings and argument shapes, compiled once per process
    (a sweep that calls :func:`train` chunk after chunk pays the compile time once)."""
    spec = jax.tree.map(lambda x: (x.shape, str(x.dtype)), (params, data, alpha, refs))
    key = (tuple(sorted(kw.items())), str(spec))
    if key not in _COMPILED:
        _COMPILED[key] = _run_segment.lower(params, data, alpha, refs, **kw).compile()
    return _COMPILED[key]


# ---- public API ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainResult:
    """What a run returns: NumPy arrays, trials first.

    params: final parameters by block name (B, ...);  W: final attention weights (B, d, d), or p (B, d').
    steps: (R,) step of each record;  metrics: name → (B, R) (see ``SCALAR_METRICS``);
    selection: (B, R, n) argmax attention;  singular_values: (B, R, k);
    correlations: reference name → (B, R) ⟨W, W_ref⟩/(‖W‖‖W_ref‖);  path: (B, R, ...) W per record if kept.
    """

    model: Model
    optimizer: Any
    params: dict[str, np.ndarray]
    W: np.ndarray
    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    selection: np.ndarray
    singular_values: np.ndarray
    correlations: dict[str, np.ndarray]
    alpha: np.ndarray
    path: np.ndarray | None = None
    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def trials(self) -> int:
        return self.W.shape[0]

    def table(self):
        """One row per (trial, recorded step): the scalar metrics and correlations (a pandas DataFrame)."""
        import pandas as pd

        B, R = self.metrics["loss"].shape
        cols: dict[str, np.ndarray] = {"trial": np.repeat(np.arange(B), R), "step": np.tile(self.steps, B)}
        for k, v in self.metrics.items():
            cols[k] = v.reshape(-1)
        for k, v in self.correlations.items():
            cols[f"corr_{k}"] = v.reshape(-1)
        return pd.DataFrame(cols)


def init_params(model: Model, problem: AttentionProblem, trials: int, scheme: str = "zero",
                scale: float | Mapping[str, float] = 0.01, seed: int = 0,
                given: Mapping[str, np.ndarray] | None = None,
                trial_ids: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Initial parameters (B, ...) for ``trials`` trials.

    scheme ``zero``: all zeros; ``gaussian``: scale·N(0, I) per block, seeded per trial (``scale`` may be a
    mapping block → scale, e.g. P3's K₀ = 0.1·N, Q₀ = 0); ``given``: arrays from ``given`` (one per block,
    shared by all trials or with a leading trials axis). A trained head starts at the problem's v unless given.
    ``trial_ids``: draw trial j's Gaussian init from its own stream (seed, j), so that a trial's start does
    not depend on which other trials share the call (resumable sweeps run trials in chunks).
    """
    shapes = model.param_shapes(problem.d, problem.keys.shape[1])
    rng = np.random.default_rng(seed)
    if trial_ids is not None and len(trial_ids) != trials:
        raise ValueError(f"trial_ids: expected {trials} ids, got {len(trial_ids)}")
    rngs = [np.random.default_rng([seed, int(j)]) for j in trial_ids] if trial_ids is not None else None
    out: dict[str, np.ndarray] = {}
    for b, shp in shapes.items():
        if given is not None and b in given:
            arr = np.asarray(given[b], dtype=np.float64)
            if arr.shape == shp:
                arr = np.broadcast_to(arr, (trials,) + shp).copy()
            if arr.shape != (trials,) + shp:
                raise ValueError(f"init.{b}: expected shape {shp} or {(trials,) + shp}, got {arr.shape}")
            out[b] = arr
        elif b == "v":
            out[b] = np.broadcast_to(problem.v, (trials,) + shp).copy()
        elif scheme == "zero":
            out[b] = np.zeros((trials,) + shp)
        elif scheme == "gaussian":
            sc = scale.get(b, 0.0) if isinstance(scale, Mapping) else float(scale)
            if rngs is None:
                out[b] = sc * rng.standard_normal((trials,) + shp)
            else:
                out[b] = sc * np.stack([r.standard_normal(shp) for r in rngs])
        elif scheme == "given":
            raise ValueError(f"init: scheme 'given' but no array for block {b!r}")
        else:
            raise ValueError(f"init scheme must be 'zero', 'gaussian' or 'given', got {scheme!r}")
    if given is not None:
        unknown = set(given) - set(shapes)
        if unknown:
            raise ValueError(f"init: unknown block(s) {sorted(unknown)} for {model.parameterization!r}; "
                             f"blocks are {sorted(shapes)}")
    return out


def _choose_map(problem: AttentionProblem, trials: int, batching: str) -> bool:
    if batching == "vmap":
        return False
    if batching == "map":
        return True
    if batching != "auto":
        raise ValueError(f"batching must be 'auto', 'vmap' or 'map', got {batching!r}")
    # vmap keeps B copies of the (n, T, T) pairwise tensors and of the d×d gradients live at once: beyond
    # this size the batched program is memory-bound and a sequential map is faster (benchmarks/).
    return trials > 1 and problem.n * problem.T * problem.T * problem.d >= 100_000


def _segments(n_chunks: int, progress: bool) -> int:
    """Records per compiled call: one call unless a progress bar wants ~10 updates (a divisor, so one compile)."""
    if not progress or n_chunks < 20:
        return n_chunks
    target = max(1, n_chunks // 10)
    return max(k for k in range(1, target + 1) if n_chunks % k == 0)


@dataclass(frozen=True)
class Batch:
    """The trials of one engine call, as every engine (GD/NGD, flow, path) sets them up.

    problems: one shared problem or one per trial; data: their ``Data`` (stacked when ``batch_data``);
    alpha: (B, n) reference selection; refs: (B, r, *W.shape) reference solutions named ``ref_names``.
    """

    problems: list[AttentionProblem]
    batch_data: bool
    trials: int
    data: Data
    alpha: np.ndarray
    refs: np.ndarray
    ref_names: list[str]

    @property
    def first(self) -> AttentionProblem:
        return self.problems[0]


def prepare_batch(problems: AttentionProblem | Sequence[AttentionProblem], model: Model, trials: int | None,
                  alpha: np.ndarray | None = None, references: Mapping[str, np.ndarray] | None = None,
                  head_V: np.ndarray | None = None, head_a: np.ndarray | None = None) -> Batch:
    """Validate and stack the problems, the reference selection α (default opt) and the references."""
    if isinstance(problems, AttentionProblem):
        plist, batch_data = [problems], False
    else:
        plist = list(problems)
        if not plist:
            raise ValueError("problems: empty sequence")
        batch_data = len(plist) > 1
    B = trials if trials is not None else (len(plist) if batch_data else 1)
    if batch_data and B != len(plist):
        raise ValueError(f"trials: {B} given but {len(plist)} problems; give one problem per trial")
    p0 = plist[0]
    datas = [model_data(p, model, V=head_V, a=head_a) for p in plist]
    data = stack_data(datas) if batch_data else datas[0]
    if alpha is None:
        alpha_arr = (np.stack([p.optimal_tokens().opt for p in plist]) if batch_data
                     else np.broadcast_to(p0.optimal_tokens().opt, (B, p0.n)).copy())
    else:
        alpha_arr = np.asarray(alpha, dtype=np.int64)
        if alpha_arr.shape == (p0.n,):
            alpha_arr = np.broadcast_to(alpha_arr, (B, p0.n)).copy()
        if alpha_arr.shape != (B, p0.n) or alpha_arr.min() < 0 or alpha_arr.max() >= p0.T:
            raise ValueError(f"alpha: expected token indices in [0, {p0.T}) of shape ({p0.n},) or ({B}, {p0.n})")
    wshape = (p0.keys.shape[1],) if model.parameterization == "prompt" else (p0.d, p0.d)
    ref_names = list(references or {})
    refs = np.zeros((B, max(1, len(ref_names))) + wshape)
    for j, name in enumerate(ref_names):
        r = np.asarray(references[name], dtype=np.float64)
        if r.shape == wshape:
            r = np.broadcast_to(r, (B,) + wshape)
        if r.shape != (B,) + wshape:
            raise ValueError(f"references[{name!r}]: expected shape {wshape} or {(B,) + wshape}, got {r.shape}")
        refs[:, j] = r
    return Batch(plist, batch_data, B, data, alpha_arr, refs, ref_names)


def train(
    problems: AttentionProblem | Sequence[AttentionProblem],
    model: Model,
    optimizer: Optimizer,
    steps: int,
    *,
    trials: int | None = None,
    record_every: int = 10,
    init: Mapping[str, np.ndarray] | None = None,
    init_scheme: str = "zero",
    init_scale: float | Mapping[str, float] = 0.01,
    seed: int = 0,
    trial_ids: Sequence[int] | None = None,
    alpha: np.ndarray | None = None,
    references: Mapping[str, np.ndarray] | None = None,
    head_V: np.ndarray | None = None,
    head_a: np.ndarray | None = None,
    keep_path: bool = False,
    batching: str = "auto",
    progress: bool | Callable[[int, int], None] = False,
) -> TrainResult:
    """Train ``trials`` independent runs with GD / normalized GD and record every ``record_every`` steps.

    problems: one problem shared by all trials, or a sequence (one per trial, all of one shape).
    init / init_scheme / init_scale / seed / trial_ids: see :func:`init_params`.
    alpha: the reference selection for "mass on α" and the margin (n,) or (B, n); default opt.
    references: name → reference attention weights (same shape as W, or with a leading trials axis): the
        run records corr(W, W_ref) for each.
    progress: True for a rich progress bar, or a callable (done_steps, total_steps).
    """
    if steps < 0 or record_every < 1:
        raise ValueError(f"steps must be ≥ 0 and record_every ≥ 1, got steps={steps}, "
                         f"record_every={record_every}")
    if steps % record_every:
        raise ValueError(f"steps ({steps}) must be a multiple of record_every ({record_every})")
    unknown = set(optimizer.freeze) - set(model.blocks)
    if unknown:
        raise ValueError(f"freeze: unknown block(s) {sorted(unknown)}; blocks are {model.blocks}")
    batch = prepare_batch(problems, model, trials, alpha, references, head_V, head_a)
    p0, B, data, batch_data, ref_names = batch.first, batch.trials, batch.data, batch.batch_data, batch.ref_names
    alpha_arr, refs = batch.alpha, batch.refs
    params = init_params(model, p0, B, init_scheme, init_scale, seed, init, trial_ids)
    use_map = _choose_map(p0, B, batching)
    jparams = {k: jnp.asarray(v) for k, v in params.items()}
    jalpha, jrefs = jnp.asarray(alpha_arr), jnp.asarray(refs)

    n_chunks = steps // record_every
    seg = _segments(n_chunks, bool(progress))
    t0 = time.perf_counter()
    recs = []
    jW = None
    if n_chunks == 0:
        rec0 = _record0(jparams, data, jalpha, jrefs, model=model, batch_data=batch_data, keep_path=keep_path)
        recs.append(jax.tree.map(lambda x: np.asarray(x)[:, None], rec0))
    compile_s = 0.0
    run_s = 0.0
    callback, bar = _progress(progress, steps)
    try:
        done = 0
        while done < n_chunks:
            kw = dict(model=model, opt=optimizer, record_every=record_every, n_records=seg,
                      batch_data=batch_data, use_map=use_map, keep_path=keep_path)
            if done == 0:
                tc = time.perf_counter()
                compiled = _compiled_segment(jparams, data, jalpha, jrefs, kw)
                compile_s = time.perf_counter() - tc
            tr = time.perf_counter()
            jparams, (rec0, rec, jW) = compiled(jparams, data, jalpha, jrefs)
            jax.block_until_ready(jparams)
            run_s += time.perf_counter() - tr
            if done == 0:
                recs.append(jax.tree.map(lambda x: np.asarray(x)[:, None], rec0))
            recs.append(jax.tree.map(np.asarray, rec))
            done += seg
            if callback:
                callback(done * record_every, steps)
    finally:
        if bar is not None:
            bar.stop()
    total = time.perf_counter() - t0
    merged = {k: np.concatenate([r[k] for r in recs], axis=1) for k in recs[0]}
    params_np = {k: np.asarray(v) for k, v in jparams.items()}
    W = np.asarray(jW if jW is not None else jax.vmap(lambda p: attention_weights(model, p))(jparams))
    corr = merged.pop("corr")
    return TrainResult(
        model=model,
        optimizer=optimizer,
        params=params_np,
        W=W,
        steps=np.arange(n_chunks + 1) * record_every,
        metrics={k: merged[k] for k in SCALAR_METRICS},
        selection=merged["selection"],
        singular_values=merged["singular_values"],
        correlations={name: corr[:, :, j] for j, name in enumerate(ref_names)},
        alpha=np.asarray(alpha_arr),
        path=merged.get("path"),
        compile_seconds=compile_s,
        run_seconds=run_s,
        info={"batching": "map" if use_map else "vmap", "total_seconds": total},
    )


def _progress(progress, total: int):
    """(callback, bar): a rich progress bar when ``progress is True``, the user's callable otherwise."""
    if callable(progress):
        return progress, None
    if not progress:
        return None, None
    from .progress import make_progress

    # a bar on a terminal, plain lines in a log (see attnsvm.progress)
    bar = make_progress(unit="steps", transient=True)
    task = bar.add_task("training", total=total)
    bar.start()
    return (lambda done, tot: bar.update(task, completed=done)), bar

"""Training one-layer causal self-attention on a next-token problem, and what the theory predicts for it.

Parameterizations: ``W`` (a_it = E_{x_it}ᵀ W E_{k_i}) or ``KQ`` (W = K Qᵀ, K, Q ∈ R^{d×d}). The gradient is
∂L/∂W = Σ_it (∂L/∂a_it) x_it z_iᵀ from the objective's log-space ∂L/∂a (:mod:`attnsvm.ntp_objective`), pulled
back to (K, Q) with ``jax.vjp``. Optimizers: ``gd`` θ ← θ − η∇L, and ``ngd`` θ ← θ − η∇L/(‖∇L‖ + eps) with the
norm per block (the authors normalize each parameter tensor separately) or global; eps = 0 is exact and
eps = 2.2e-16 emulates the authors' arithmetic. All trials run in one compiled program (vmap over trials,
lax.scan over records, lax.fori_loop over the steps between records), in float64.

:func:`ntp_records` then measures every record against the theory: corr(W, W^dir), the distance of the
projection Π_S(W) on the equality subspace S to W^fin, corr(Π_{S⊥}(W), W^dir), W − W^fin fitted as R·W^dir,
and the attention mass on the top SCC of each sequence.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .ntp import FiniteComponent, NTPProblem
from .ntp_objective import NextToken, attention_mass

PARAMETERIZATIONS = ("W", "KQ")
OPTIMIZERS = ("gd", "ngd")
INITS = ("uniform", "gaussian", "zero")


@dataclass(frozen=True)
class NTPRun:
    """B trials with R records each: ``steps`` (R,), ``W`` (B, R, d, d) the attention matrix at every record,
    ``loss`` (B, R), ``log_grad_norm`` (B, R) log ‖∇L‖ (global), ``params`` final blocks (B, ...),
    ``status`` (B,) ``"ok"`` or ``"diverged"`` (a non-finite value appeared), timings in seconds."""

    steps: np.ndarray
    W: np.ndarray
    loss: np.ndarray
    log_grad_norm: np.ndarray
    params: dict[str, np.ndarray]
    status: np.ndarray
    compile_seconds: float
    run_seconds: float
    settings: dict


def _init(parameterization: str, init: str, scale: float | None, d: int, trials: int, seed: int,
          trial_ids: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """``uniform``: entries U(−b, b), b = 1/√d by default (PyTorch's nn.Linear default, the authors' init);
    ``gaussian``: scale·N(0, 1) (default scale 0.01); ``zero``. Trial j draws from its own stream (seed, j),
    so a trial's start does not depend on how many trials share the call (``trial_ids`` names the streams;
    default 0, 1, …)."""
    blocks = ("W",) if parameterization == "W" else ("K", "Q")
    out = {b: np.zeros((trials, d, d)) for b in blocks}
    if init == "zero":
        return out
    ids = range(trials) if trial_ids is None else trial_ids
    for j, tid in enumerate(ids):
        rng = np.random.default_rng([seed, int(tid)])
        for b in blocks:
            if init == "uniform":
                bound = 1.0 / np.sqrt(d) if scale is None else scale
                out[b][j] = rng.uniform(-bound, bound, size=(d, d))
            else:
                out[b][j] = (0.01 if scale is None else scale) * rng.standard_normal((d, d))
    return out


def _W_of(params: dict) -> jax.Array:
    return params["W"] if "W" in params else params["K"] @ params["Q"].T


#: compiled programs by (settings, argument shapes): repeated calls with one setting compile once
_COMPILED: dict = {}


def _program(objective: NextToken, parameterization: str, optimizer: str, lr: float, eps: float, normalize: str,
             every: int, n_rec: int, per_trial: bool):
    """The jitted program (params (B, ...), data) → (final params, records (W, L, log‖∇L‖) (B, R+1, ...))."""

    def one_trial(params, data):
        def logits(W):
            return jnp.einsum("ntd,de,ne->nt", data.X, W, data.z)

        def value_grad(params):
            W, pull = jax.vjp(_W_of, params)
            a = logits(W)
            L, g, m = objective.loss_and_grad(a, data)
            GW = jnp.einsum("nt,ntd,ne->de", g, data.X, data.z)  # ∂L/∂W / exp(m)
            (G,) = pull(GW)  # per block, same scale exp(m)
            return L, G, m

        def step(params, _):
            L, G, m = value_grad(params)
            # the authors' eps is added to ‖∇L‖ = exp(m)‖G‖, i.e. eps·exp(−m) to ‖G‖ (skipped when eps = 0:
            # 0·exp(−m) would be 0·inf once the gradient is below 1e−308)
            pad = eps * jnp.exp(-m) if eps > 0 else 0.0
            if optimizer == "gd":
                scale_b = {b: lr * jnp.exp(m) for b in G}
            elif normalize == "block":
                scale_b = {b: lr / (jnp.linalg.norm(G[b]) + pad) for b in G}
            else:
                tot = jnp.sqrt(sum(jnp.sum(G[b] ** 2) for b in G))
                scale_b = {b: lr / (tot + pad) for b in G}
            return {b: params[b] - scale_b[b] * G[b] for b in params}

        def record(params):
            L, G, m = value_grad(params)
            gn = jnp.log(jnp.sqrt(sum(jnp.sum(G[b] ** 2) for b in G))) + m
            return _W_of(params), L, gn

        def chunk(params, _):
            params = jax.lax.fori_loop(0, int(every), lambda i, p: step(p, None), params)
            return params, record(params)

        first = record(params)
        params, recs = jax.lax.scan(chunk, params, None, length=n_rec)
        recs = jax.tree.map(lambda f, r: jnp.concatenate([f[None], r]), first, recs)
        return params, recs

    return jax.jit(jax.vmap(one_trial, in_axes=(0, 0 if per_trial else None)))


def train_ntp(problem: NTPProblem | Sequence[NTPProblem], *, parameterization: str = "W",
              objective: NextToken | None = None, optimizer: str = "ngd", lr: float = 0.01, steps: int = 4000,
              every: int = 10, trials: int = 1,
              init: str = "uniform", scale: float | None = None, seed: int = 0, eps: float = 0.0,
              normalize: str = "block", given: dict[str, np.ndarray] | None = None,
              trial_ids: Sequence[int] | None = None) -> NTPRun:
    """Train ``trials`` runs from independent inits (module docstring) and record W every ``every`` steps.

    problem: one problem shared by the trials, or a sequence of problems of one shape (n, T, d), one per
    trial (then ``trials`` is their number). given: initial blocks (block → (d, d) or (trials, d, d)) instead
    of drawing them. trial_ids: the init stream of each trial (resumable chunks of a larger set of trials).
    """
    objective = objective or NextToken()
    plist = [problem] if isinstance(problem, NTPProblem) else list(problem)
    if not plist:
        raise ValueError("problem: empty sequence of problems")
    per_trial = not isinstance(problem, NTPProblem)
    if per_trial:
        shape = (plist[0].n, plist[0].T, plist[0].d)
        for j, pr in enumerate(plist):
            if (pr.n, pr.T, pr.d) != shape:
                raise ValueError(f"problem: all problems must share (n, T, d) = {shape}; problem {j} has "
                                 f"{(pr.n, pr.T, pr.d)}")
        trials = len(plist)
    problem = plist[0]
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization: must be one of {', '.join(PARAMETERIZATIONS)}, got {parameterization!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if init not in INITS:
        raise ValueError(f"init: must be one of {', '.join(INITS)}, got {init!r}")
    if normalize not in ("block", "global"):
        raise ValueError(f"normalize: must be 'block' or 'global', got {normalize!r}")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: must be a positive number, got {lr}")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps: must be ≥ 0, got {eps}")
    if int(every) < 1 or int(steps) < 0 or int(steps) % int(every):
        raise ValueError(f"steps ({steps}) must be a non-negative multiple of every ({every} ≥ 1)")
    if int(trials) < 1:
        raise ValueError(f"trials: must be ≥ 1, got {trials}")
    d = problem.d
    if trial_ids is not None and len(trial_ids) != trials:
        raise ValueError(f"trial_ids: expected {trials} ids, got {len(trial_ids)}")
    params0 = _init(parameterization, init, scale, d, trials, seed, trial_ids)
    for b, v in (given or {}).items():
        if b not in params0:
            raise ValueError(f"given: unknown block {b!r}; blocks are {sorted(params0)}")
        arr = np.asarray(v, dtype=np.float64)
        params0[b] = np.broadcast_to(arr, (trials, d, d)).copy() if arr.shape == (d, d) else arr
        if params0[b].shape != (trials, d, d):
            raise ValueError(f"given.{b}: expected shape ({d}, {d}) or ({trials}, {d}, {d}), got {arr.shape}")
    n_rec = int(steps) // int(every)
    settings = dict(parameterization=parameterization, classifier=objective.classifier, loss=objective.loss,
                    stable=objective.stable,
                    optimizer=optimizer, lr=lr, steps=int(steps), every=int(every), trials=int(trials), init=init,
                    scale=scale, seed=seed, eps=eps, normalize=normalize)
    with jax.enable_x64(True):
        datas = [objective.data(pr) for pr in plist]
        data_all = jax.tree.map(lambda *x: jnp.stack(x), *datas) if per_trial else datas[0]
        jp = {b: jnp.asarray(v) for b, v in params0.items()}
        static = (objective, parameterization, optimizer, float(lr), float(eps), normalize, int(every), n_rec,
                  per_trial)
        shapes = tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves((jp, data_all)))
        t0 = time.perf_counter()
        compiled = _COMPILED.get((static, shapes))
        if compiled is None:
            compiled = _program(*static).lower(jp, data_all).compile()
            if len(_COMPILED) >= 64:
                _COMPILED.pop(next(iter(_COMPILED)))
            _COMPILED[(static, shapes)] = compiled
        t1 = time.perf_counter()
        params, (Ws, Ls, gns) = compiled(jp, data_all)
        Ws = np.asarray(jax.block_until_ready(Ws))
        t2 = time.perf_counter()
    params = {b: np.asarray(v) for b, v in params.items()}
    Ls, gns = np.asarray(Ls), np.asarray(gns)
    bad = ~np.all(np.isfinite(Ws.reshape(trials, -1)), axis=1) | ~np.all(np.isfinite(Ls), axis=1)
    return NTPRun(steps=np.arange(n_rec + 1) * int(every), W=Ws, loss=Ls, log_grad_norm=gns, params=params,
                  status=np.where(bad, "diverged", "ok"), compile_seconds=t1 - t0, run_seconds=t2 - t1,
                  settings=settings)


def _corr(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """corr over the last two axes, broadcasting; NaN where either is zero."""
    num = np.einsum("...de,...de->...", A, B)
    den = np.linalg.norm(A, axis=(-2, -1)) * np.linalg.norm(B, axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def ntp_records(problem: NTPProblem, W: np.ndarray, W_dir: np.ndarray, fin: FiniteComponent
                ) -> dict[str, np.ndarray]:
    """Per record (arrays of W's leading shape, e.g. (B, R)):

    corr_dir: corr(W, W^dir);  proj_corr: corr(Π_{S⊥}(W), W^dir);  fin_distance: ‖Π_S(W) − W^fin‖_F;
    R: ⟨W − W^fin, W^dir⟩/‖W^dir‖²; corr_fin_dir: corr(W, W^fin + R·W^dir);  top_mass: mean over samples of
    the attention mass on the top-SCC tokens;  W_norm: ‖W‖_F.
    """
    W = np.asarray(W, dtype=np.float64)
    P = problem.project(W)
    dn = float(np.vdot(W_dir, W_dir))
    R = np.einsum("...de,de->...", W - fin.W, W_dir) / dn if dn > 0 else np.full(W.shape[:-2], np.nan)
    a = np.einsum("ntd,...de,ne->...nt", problem.X, W, problem.queries)
    mass = attention_mass(a, problem.mask, problem.top_scc_mask).mean(axis=-1)
    return {
        "corr_dir": _corr(W, W_dir),
        "proj_corr": _corr(W - P, W_dir),
        "fin_distance": np.linalg.norm(P - fin.W, axis=(-2, -1)),
        "R": R,
        "corr_fin_dir": _corr(W, fin.W + R[..., None, None] * W_dir),
        "top_mass": mass,
        "W_norm": np.linalg.norm(W, axis=(-2, -1)),
    }

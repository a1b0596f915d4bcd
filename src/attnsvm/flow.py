"""Gradient flow dθ/dt = −∇L(θ) (docs/concepts/dynamics.md, P2 eq. (3)), integrated with error control in arc length.

**Why arc length.** In physical time t the flow slows down like 1/t while ‖W‖ grows like log t, so an
adaptive solver in t needs ever more steps and a fixed-step scheme stalls. The same trajectory is
integrated here in its arc length σ (dσ = ‖dθ‖):

    dθ/dσ = −∇L(θ)/‖∇L(θ)‖,        dτ/dσ = 1 / ((1 + t) ‖∇L(θ)‖),   τ = log(1 + t),

so the vector field has unit norm everywhere and the step size is set by the curvature of the path only.
The direction −∇L/‖∇L‖ comes from :func:`attnsvm.models.stable_grad`, whose scale is kept as a logarithm:
it is exact to rounding at any ‖W‖ (the attention of unselected tokens may be far below 1e−308), and
‖∇L‖ enters only through its logarithm, so physical time is recorded as τ = log(1 + t) without overflow
(t = expm1(τ), log t = τ + log(1 − e^{−τ})).

**Solver.** diffrax ``Tsit5`` (5th order, embedded 4th-order error estimate) with a ``PIDController`` under
the stated ``rtol`` / ``atol`` on the state (θ, τ). Trials are batched with ``vmap``; each trial keeps its
own step size and stops on its own.

**Stops** (located by one event, the max of the stop functions, bisected on the dense interpolant of the
last step, so every method stops at the same value of the stop quantity):

* ``saturation`` — E(θ) ≤ ``stop_saturation``, with the sign-definite measure (:func:`log_saturation`)

      E = scale · Σ_i |ℓ'(Y_i f_i)| · ½ Σ_{u,v} s_iu s_iv |γ̃_iu − γ̃_iv|,

  which is continuous, zero exactly when the attention of every sequence is one-hot on *some* token, and
  equal to scale · Σ_i |ℓ'| Σ_u s_iu |γ̃_iα − γ̃_iu| to first order near one-hot attention on α. L − L*
  is not used: it does not vanish when the flow selects a locally (not globally) optimal token, and the
  excess against the current top token changes sign while attention switches tokens. (The gap to the
  top-*score* token, ``models.log_saturation``, does not vanish at a local selection either.)
* ``radius``     — ‖W‖_F ≥ ``stop_radius`` (‖p‖ for the prompt model).
* ``time``       — t ≥ ``t_max``.
* ``max_steps``  — the solver used ``max_steps`` steps;  ``arclength`` — σ reached ``max_arclength``.

**Records.** A first pass finds the stop σ_end of every trial; a second pass (identical steps and event)
saves the state at ``n_records`` points equally spaced in arc length on [0, σ_end], the last one at the
stop. With ``error_estimate`` a third pass at tolerances / 100 gives global error estimates at every
record: ``error_estimate`` = ‖θ − θ_ref‖/‖θ_ref‖ at equal arc length (the error of the path), and
``time_error_estimate`` = |τ − τ_ref| (the error of log(1 + t) there; a stop at a given physical time inherits
it as a displacement along the path). Per record, besides :func:`attnsvm.dynamics.record`:
``sigma``, ``t``, ``log_t``, ``log_saturation``, ``solver_steps`` (accepted steps so far),
``error_estimate`` and, for factored / diagonal models, ``conservation_drift``: ‖C(θ) − C(θ₀)‖_F /
(‖KᵀK‖_F + ‖QᵀQ‖_F) with C = KᵀK − QᵀQ (k² − q² with k², q² for the diagonal model), the conservation law
of docs/concepts/dynamics.md measured relative to the size of the terms whose difference is conserved. It holds exactly
for the flow without ridge (both blocks trained); a ridge λ makes C decay like e^{−2λt}.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .dynamics import SCALAR_METRICS, TrainResult, init_params, prepare_batch, record
from .losses import jax_log_neg_dloss
from .models import (
    Data,
    Model,
    _masked_lse,
    add_ridge,
    attention_weights,
    forward,
    log_block_norms,
    stable_grad,
)
from .problem import AttentionProblem

STOP_REASONS = ("saturation", "radius", "time", "max_steps", "arclength", "failed")
FLOW_METRICS = ("sigma", "t", "log_t", "log_saturation", "solver_steps", "error_estimate", "time_error_estimate")

#: exponent cap for dτ/dσ = e^{−τ − log‖∇L‖}: ‖∇L‖ = 0 exactly only at a stationary point, which the
#: flow reaches in infinite time; the cap keeps the field finite there (e^{700} < float64 max).
_EXP_CAP = 700.0


@dataclass(frozen=True)
class Flow:
    """Settings of a gradient-flow run (the ``optimizer`` of its :class:`TrainResult`).

    rtol, atol: tolerances of the PID step-size controller on the state (θ, log(1 + t)).
    stop_saturation: stop when E ≤ this (None: off);  stop_radius: stop when ‖W‖_F ≥ this (None: off);
    t_max: stop at physical time t_max (None: off);  max_steps: solver step budget;
    max_arclength: σ budget;  ridge: λ of an explicit λ‖θ‖²/2 added to the loss (off by default);
    freeze: blocks kept fixed.
    """

    rtol: float = 1e-8
    atol: float = 1e-10
    stop_saturation: float | None = 1e-8
    stop_radius: float | None = None
    t_max: float | None = None
    max_steps: int = 20_000
    max_arclength: float = 1e6
    ridge: float = 0.0
    freeze: tuple[str, ...] = ()
    name: str = "flow"

    def __post_init__(self) -> None:
        for f in ("rtol", "atol", "max_arclength"):
            v = getattr(self, f)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{f}: must be a positive number, got {v}")
        for f in ("stop_saturation", "stop_radius", "t_max"):
            v = getattr(self, f)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise ValueError(f"{f}: must be a positive number or None, got {v}")
        if int(self.max_steps) < 1:
            raise ValueError(f"max_steps: must be ≥ 1, got {self.max_steps}")
        if not (np.isfinite(self.ridge) and self.ridge >= 0):
            raise ValueError(f"ridge: must be ≥ 0, got {self.ridge}")
        if self.name != "flow":
            raise ValueError(f"name: a Flow is named 'flow', got {self.name!r}")
        object.__setattr__(self, "freeze", tuple(self.freeze))
        object.__setattr__(self, "max_steps", int(self.max_steps))


# ---- the vector field in arc length ----------------------------------------------------------------------


def _unit_descent(model: Model, flow: Flow, params: dict, data: Data) -> tuple[dict, jax.Array]:
    """(−∇L/‖∇L‖ per block, log‖∇L‖) over the trained blocks, exact at any scale."""
    sg = add_ridge(stable_grad(model, params, data), params, flow.ridge)
    blocks = [b for b in sg.g if b not in flow.freeze]
    lb = log_block_norms(sg)
    lnorm = 0.5 * jax.scipy.special.logsumexp(2.0 * jnp.stack([lb[b] for b in blocks]))
    ok = jnp.isfinite(lnorm)
    shift = jnp.where(ok, lnorm, 0.0)
    out = {b: jnp.where(ok, -sg.g[b] * jnp.exp(sg.log_scale[b] - shift), 0.0) if b in blocks
           else jnp.zeros_like(params[b]) for b in params}
    return out, lnorm


def _field(model: Model, flow: Flow):
    def f(sigma, y, data):
        direction, lnorm = _unit_descent(model, flow, y["params"], data)
        dtau = jnp.exp(jnp.minimum(-y["tau"] - lnorm, _EXP_CAP))
        return {"params": direction, "tau": dtau}

    return f


def log_saturation(model: Model, params: dict, data: Data) -> jax.Array:
    """log E, E = scale · Σ_i |ℓ'(Y_i f_i)| · ½ Σ_{u,v} s_iu s_iv |γ̃_iu − γ̃_iv| (module docstring).

    Every term is positive, so the log-sum-exp over (i, u, v) has no cancellation at any saturation."""
    fw = forward(model, params, data)
    gt = data.Y[:, None] * jnp.einsum("itd,id->it", data.X, fw.hgrad)
    diff = jnp.abs(gt[:, :, None] - gt[:, None, :])
    keep = data.mask[:, :, None] & data.mask[:, None, :] & (diff > 0)
    terms = fw.log_s[:, :, None] + fw.log_s[:, None, :] + jnp.log(jnp.where(keep, diff, 1.0))
    per = _masked_lse(terms.reshape(terms.shape[0], -1), keep.reshape(keep.shape[0], -1), axis=1)
    ldl = jax_log_neg_dloss(model.loss, data.Y * fw.f)
    red = -jnp.log(data.Y.shape[0]) if model.reduction == "mean" else 0.0
    return jax.scipy.special.logsumexp(ldl + per) + red - jnp.log(2.0)


def _weights_norm(model: Model, params: dict) -> jax.Array:
    W = attention_weights(model, params)
    return jnp.sqrt(jnp.sum(W**2))


def _conditions(model: Model, flow: Flow) -> list[str]:
    """The stop reasons whose event is switched on."""
    return [k for k, v in (("saturation", flow.stop_saturation), ("radius", flow.stop_radius),
                           ("time", flow.t_max)) if v is not None]


def _stop_values(model: Model, names: tuple[str, ...], thresholds: jax.Array, y: dict, data: Data) -> jax.Array:
    """The stop functions in the order of ``names``; each crosses zero upwards at its stop.

    ``thresholds`` (traced, so one compiled program serves every pass): log E_stop, R_stop, log(1 + t_max);
    ±inf switches a stop off."""
    fns = {
        "saturation": lambda: thresholds[0] - log_saturation(model, y["params"], data),
        # relative, so that the event's bisection (atol 1e−12) can locate it at any radius: ‖W‖ − R cannot get
        # below ~R·1e−16 in rounding, and at R ≈ 1e5 the location failed ("root not contained")
        "radius": lambda: _weights_norm(model, y["params"]) / thresholds[1] - 1.0,
        "time": lambda: y["tau"] - thresholds[2],
    }
    return jnp.stack([fns[k]() for k in names])


def _event(model: Model, names: tuple[str, ...], thresholds: jax.Array) -> diffrax.Event | None:
    """One continuous event: the max of the stop functions (continuous, and zero at the first stop), located
    by bisection on the dense interpolant of the last step."""
    if not names:
        return None
    return diffrax.Event(
        cond_fn=lambda t, y, args, **kw: jnp.max(_stop_values(model, names, thresholds, y, args)),
        root_finder=optx.Bisection(rtol=1e-12, atol=1e-12))


def _thresholds(flow: Flow) -> np.ndarray:
    return np.array([np.log(flow.stop_saturation) if flow.stop_saturation is not None else -np.inf,
                     flow.stop_radius if flow.stop_radius is not None else np.inf,
                     np.log1p(flow.t_max) if flow.t_max is not None else np.inf])


#: thresholds that switch every event off (the error-estimate pass integrates to a given σ_end)
_OFF = np.array([-np.inf, np.inf, np.inf])

#: the error-estimate pass uses tolerances divided by this
_TIGHT = 100.0


@partial(jax.jit, static_argnames=("model", "flow", "batch_data", "names"))
def _integrate(y0, data, grid, t1, tol, thresholds, *, model, flow, batch_data, names):
    """One pass over all trials: the state at the arc-length ``grid`` (B, R) and at the stop.

    Called three times with one compilation: to find the stop σ_end (any grid), to record on the grid
    [0, σ_end], and for the error estimate at tighter tolerances ``tol`` = (rtol, atol) with events off
    and t1 = σ_end. Returns (ys at grid[:-1] then at the stop, σ at the stop, event mask, result flags
    (event, max_steps, successful), accepted-step count at each grid point, accepted and rejected steps).
    """

    def one(y, dat, g, t_end):
        saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=g[:-1]), diffrax.SubSaveAt(t1=True),
                                      diffrax.SubSaveAt(steps=True, fn=lambda t, yy, a: t)])
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_field(model, flow)), diffrax.Tsit5(), t0=0.0, t1=t_end, dt0=None, y0=y, args=dat,
            saveat=saveat, stepsize_controller=diffrax.PIDController(rtol=tol[0], atol=tol[1]),
            event=_event(model, names, thresholds), max_steps=flow.max_steps, throw=False,
        )
        ys_grid, ys_end, step_ts = sol.ys
        ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), ys_grid, ys_end)
        sigma_end = sol.ts[1][-1]
        gg = g.at[-1].set(sigma_end)
        # accepted steps ending at or before each record (unused slots of the step buffer are inf)
        count = jnp.sum(step_ts[None, :] <= gg[:, None] * (1 + 1e-12), axis=1)
        # which stop fired: the stop function closest to zero from above at the stop
        mask = _stop_values(model, names, thresholds, jax.tree.map(lambda a: a[0], ys_end), dat) if names \
            else jnp.zeros((0,))
        flags = jnp.stack([sol.result == diffrax.RESULTS.event_occurred,
                           sol.result == diffrax.RESULTS.max_steps_reached,
                           sol.result == diffrax.RESULTS.successful])
        return (ys, sigma_end, mask, flags, count, sol.stats["num_accepted_steps"],
                sol.stats["num_rejected_steps"])

    return jax.vmap(one, in_axes=(0, 0 if batch_data else None, 0, 0))(y0, data, grid, t1)


@partial(jax.jit, static_argnames=("model", "batch_data", "keep_path"))
def _records(params, data, alpha, refs, *, model, batch_data, keep_path):
    """dynamics.record at every saved state (params: (B, R, ...))."""

    def per_trial(p, dat, al, rf):
        def per_rec(q):
            rec = record(model, q, dat, al, rf)
            rec["log_saturation"] = log_saturation(model, q, dat)
            if keep_path:
                rec["path"] = attention_weights(model, q)
            return rec

        return jax.vmap(per_rec)(p)

    return jax.vmap(per_trial, in_axes=(0, 0 if batch_data else None, 0, 0))(params, data, alpha, refs)


# ---- public API ----------------------------------------------------------------------------------------------


def conservation_drift(model: Model, params: Mapping[str, np.ndarray], params0: Mapping[str, np.ndarray]
                       ) -> np.ndarray:
    """‖C(θ) − C(θ₀)‖_F / (‖KᵀK‖_F + ‖QᵀQ‖_F) at θ, C = KᵀK − QᵀQ (factored) or k² − q² (diagonal).

    params: blocks with leading axes (..., shape); params0: the initial blocks, broadcastable against them.
    """
    P = model.parameterization
    if P == "factored":
        K, Q = np.asarray(params["K"]), np.asarray(params["Q"])
        KK, QQ = np.swapaxes(K, -1, -2) @ K, np.swapaxes(Q, -1, -2) @ Q
        K0, Q0 = np.asarray(params0["K"]), np.asarray(params0["Q"])
        C0 = np.swapaxes(K0, -1, -2) @ K0 - np.swapaxes(Q0, -1, -2) @ Q0
        axes = (-2, -1)
    elif P == "diagonal":
        KK, QQ = np.asarray(params["k"]) ** 2, np.asarray(params["q"]) ** 2
        C0 = np.asarray(params0["k"]) ** 2 - np.asarray(params0["q"]) ** 2
        axes = (-1,)
    else:
        raise ValueError(f"parameterization: no conservation law for {P!r} (only factored and diagonal)")

    def fro(a):
        return np.sqrt(np.sum(a**2, axis=axes))

    size = fro(KK) + fro(QQ)
    return fro(KK - QQ - C0) / np.where(size > 0, size, 1.0)


def gradient_flow(
    problems: AttentionProblem | Sequence[AttentionProblem],
    model: Model,
    flow: Flow | None = None,
    *,
    trials: int | None = None,
    n_records: int = 50,
    init: Mapping[str, np.ndarray] | None = None,
    init_scheme: str = "gaussian",
    init_scale: float | Mapping[str, float] = 0.01,
    seed: int = 0,
    alpha: np.ndarray | None = None,
    references: Mapping[str, np.ndarray] | None = None,
    head_V: np.ndarray | None = None,
    head_a: np.ndarray | None = None,
    keep_path: bool = False,
    error_estimate: bool = True,
    **flow_settings,
) -> TrainResult:
    """Integrate the gradient flow dθ/dt = −∇L(θ) of ``trials`` independent runs (module docstring).

    flow: a :class:`Flow`, or its fields as keywords (rtol, atol, stop_saturation, stop_radius, t_max,
        max_steps, max_arclength, ridge, freeze).
    n_records: states recorded per trial, equally spaced in arc length from the start to the stop.
    problems / trials / init* / seed / alpha / references / head_*: as :func:`attnsvm.dynamics.train`
        (the default init is Gaussian, since θ = 0 is a stationary point of the factored and diagonal
        models).
    error_estimate: run the third, tighter pass for the per-record global error estimate.

    Returns a :class:`TrainResult` whose ``steps`` are record indices; the per-trial arc length, time and
    solver statistics are in ``metrics`` (module docstring); ``info["stop_reason"]`` holds one of
    ``STOP_REASONS`` per trial, ``info["sigma_end"]``, ``info["accepted_steps"]``,
    ``info["rejected_steps"]`` per trial.
    """
    if flow is None:
        flow = Flow(**flow_settings)
    elif flow_settings:
        raise ValueError(f"flow: give a Flow or its settings as keywords, not both ({sorted(flow_settings)})")
    if flow.stop_saturation is None and flow.stop_radius is None and flow.t_max is None:
        raise ValueError("flow: no stop condition; set stop_saturation, stop_radius or t_max")
    if n_records < 2:
        raise ValueError(f"n_records: must be ≥ 2 (the start and the stop), got {n_records}")
    unknown = set(flow.freeze) - set(model.blocks)
    if unknown or set(flow.freeze) >= set(model.blocks):
        raise ValueError(f"freeze: {sorted(flow.freeze)} must be a proper subset of the blocks {model.blocks}")
    batch = prepare_batch(problems, model, trials, alpha, references, head_V, head_a)
    batch_data, B, p0, data = batch.batch_data, batch.trials, batch.first, batch.data
    alpha_arr, refs, ref_names = batch.alpha, batch.refs, batch.ref_names
    params0 = init_params(model, p0, B, init_scheme, init_scale, seed, init)

    jparams0 = {k: jnp.asarray(v) for k, v in params0.items()}
    _check_start(model, flow, jparams0, data, batch_data)
    y0 = {"params": jparams0, "tau": jnp.zeros(B)}

    names = tuple(_conditions(model, flow))
    # Tolerances, thresholds and budgets are traced arguments: only what changes the program is static, so
    # runs that differ in rtol or a stop value share one compilation.
    static_flow = replace(flow, rtol=1.0, atol=1.0, stop_saturation=None, stop_radius=None, t_max=None,
                          max_arclength=1.0)
    kw = dict(model=model, flow=static_flow, batch_data=batch_data, names=names)
    tol = jnp.array([flow.rtol, flow.atol])
    thr = jnp.asarray(_thresholds(flow))
    t_budget = jnp.full(B, flow.max_arclength)
    grid0 = jnp.zeros((B, n_records))

    t0 = time.perf_counter()
    compiled = _integrate.lower(y0, data, grid0, t_budget, tol, thr, **kw).compile()
    compile_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    # pass 1: where does each trial stop?  pass 2: the same integration, saving on [0, σ_end]
    _, sigma_end, fired, flags, _, acc, rej = jax.block_until_ready(
        compiled(y0, data, grid0, t_budget, tol, thr))
    grid = jnp.linspace(0.0, 1.0, n_records)[None, :] * sigma_end[:, None]
    ys, sigma_end2, _, _, step_count, _, _ = jax.block_until_ready(compiled(y0, data, grid, t_budget, tol, thr))
    if error_estimate:
        ys_ref = jax.block_until_ready(compiled(y0, data, grid, sigma_end, tol / _TIGHT, jnp.asarray(_OFF)))[0]
    run_s = time.perf_counter() - t1

    recs = jax.tree.map(np.asarray, _records(ys["params"], data, jnp.asarray(alpha_arr), jnp.asarray(refs),
                                             model=model, batch_data=batch_data, keep_path=keep_path))
    traj = {k: np.asarray(v) for k, v in ys["params"].items()}
    tau = np.asarray(ys["tau"])
    metrics = {k: recs[k] for k in SCALAR_METRICS}
    metrics["sigma"] = np.asarray(grid)
    with np.errstate(over="ignore"):
        metrics["t"] = np.expm1(tau)  # inf beyond 1.8e308: log_t keeps the value
    with np.errstate(divide="ignore"):
        metrics["log_t"] = tau + np.log(-np.expm1(-tau))
    metrics["log_saturation"] = recs["log_saturation"]
    metrics["solver_steps"] = np.asarray(step_count, dtype=np.float64)
    if error_estimate:
        flat = lambda tree: np.concatenate([np.asarray(v).reshape(B, n_records, -1) for v in tree.values()],
                                           axis=2)
        a, b = flat(ys["params"]), flat(ys_ref["params"])
        nb = np.linalg.norm(b, axis=2)
        metrics["error_estimate"] = np.linalg.norm(a - b, axis=2) / np.where(nb > 0, nb, 1.0)
        metrics["time_error_estimate"] = np.abs(tau - np.asarray(ys_ref["tau"]))
    else:
        metrics["error_estimate"] = np.full((B, n_records), np.nan)
        metrics["time_error_estimate"] = np.full((B, n_records), np.nan)
    if model.parameterization in ("factored", "diagonal"):
        p0b = {k: v[:, None] for k, v in params0.items()}
        metrics["conservation_drift"] = conservation_drift(model, traj, p0b)

    flags = np.asarray(flags)
    stop = _stop_reasons(list(names), np.asarray(fired), flags[:, 2], flags[:, 1], flags[:, 0])
    final = {k: v[:, -1] for k, v in traj.items()}
    W = np.asarray(jax.vmap(lambda p: attention_weights(model, p))(final))
    corr = recs["corr"]
    info = {
        "stop_reason": stop,
        "sigma_end": np.asarray(sigma_end),
        "accepted_steps": np.asarray(acc),
        "rejected_steps": np.asarray(rej),
        "rtol": flow.rtol,
        "atol": flow.atol,
        "error_factor": _TIGHT,
        "time_variable": "arc length σ; records equally spaced in σ on [0, σ_end] per trial",
        "batching": "vmap",
        # pass 2 repeats pass 1 step for step; a difference here would mean a non-deterministic solve
        "stop_repeat_discrepancy": float(np.max(np.abs(np.asarray(sigma_end2) - np.asarray(sigma_end)))),
        "total_seconds": time.perf_counter() - t0,
        "params0": params0,
    }
    return TrainResult(
        model=model, optimizer=flow, params=final, W=W, steps=np.arange(n_records), metrics=metrics,
        selection=recs["selection"], singular_values=recs["singular_values"],
        correlations={name: corr[:, :, j] for j, name in enumerate(ref_names)}, alpha=alpha_arr,
        path=recs.get("path"), compile_seconds=compile_s, run_seconds=run_s, info=info,
    )


def _stop_reasons(names: list[str], fired: np.ndarray, success: np.ndarray, maxed: np.ndarray,
                  evented: np.ndarray) -> np.ndarray:
    out = []
    for b in range(fired.shape[0]):
        if evented[b] and fired.shape[1]:
            out.append(names[int(np.argmax(fired[b]))])
        elif maxed[b]:
            out.append("max_steps")
        elif success[b]:
            out.append("arclength")
        else:
            out.append("failed")
    return np.array(out)


@partial(jax.jit, static_argnames=("model", "flow", "batch_data"))
def _start_values(params, data, *, model, flow, batch_data):
    """log‖∇L‖, ‖W‖_F and log E at the start of every trial (compiled: eager vmap dispatches op by op)."""

    def one(p, dat):
        _, lnorm = _unit_descent(model, flow, p, dat)
        return lnorm, _weights_norm(model, p), log_saturation(model, p, dat)

    return jax.vmap(one, in_axes=(0, 0 if batch_data else None))(params, data)


def _check_start(model: Model, flow: Flow, params: dict, data: Data, batch_data: bool) -> None:
    """The flow cannot leave a stationary point, nor start past a stop."""

    lnorm, wn, ls = (np.asarray(a) for a in _start_values(params, data, model=model, flow=replace(
        flow, rtol=1.0, atol=1.0, stop_saturation=None, stop_radius=None, t_max=None, max_arclength=1.0),
        batch_data=batch_data))
    bad = np.flatnonzero(~np.isfinite(lnorm))
    if bad.size:
        raise ValueError(f"init: the gradient is exactly zero at the start of trial {int(bad[0])} (θ = 0 is a "
                         "stationary point of the factored and diagonal models); use a Gaussian init")
    if flow.stop_radius is not None and np.any(wn >= flow.stop_radius):
        raise ValueError(f"stop_radius: {flow.stop_radius} is not above ‖W₀‖_F = {wn.max():.4g}")
    if flow.stop_saturation is not None and np.any(ls <= np.log(flow.stop_saturation)):
        raise ValueError(f"stop_saturation: {flow.stop_saturation} is already reached at the start "
                         f"(E₀ = {np.exp(ls.min()):.3g})")

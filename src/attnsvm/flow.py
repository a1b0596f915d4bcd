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
the stated ``rtol`` / ``atol`` on the state (θ, τ). Trials run one after the other in one compiled program
(``lax.map``: shorter to trace and compile than ``vmap``, and as fast to run at the sizes measured); each keeps its
own step size and stops on its own.

**Stops** (located by one event, the max of the stop functions, bisected on the dense interpolant of the
last step, so every method stops at the same value of the stop quantity):

* ``saturation`` — E(θ) ≤ level (``Saturation(level)``), with the sign-definite measure (:func:`log_saturation`)

      E = scale · Σ_i |ℓ'(Y_i f_i)| · ½ Σ_{u,v} s_iu s_iv |γ̃_iu − γ̃_iv|,

  which is continuous, zero exactly when the attention of every sequence is one-hot on *some* token, and
  equal to scale · Σ_i |ℓ'| Σ_u s_iu |γ̃_iα − γ̃_iu| to first order near one-hot attention on α. L − L*
  is not used: it does not vanish when the flow selects a locally (not globally) optimal token, and the
  excess against the current top token changes sign while attention switches tokens. (The gap to the
  top-*score* token, ``models.log_saturation``, does not vanish at a local selection either.)
* ``radius``     — ‖W‖_F ≥ level (``Radius(level)``; ‖p‖ for the prompt model).
* ``time``       — t ≥ level (``Time(level)``).
  (Stops are pieces, :mod:`attnsvm.training.stops`; a new one needs no change here.)
* ``max_steps``  — the solver used ``max_steps`` steps;  ``arclength`` — σ reached ``max_arclength``.

**Records.** A first pass finds the stop σ_end of every trial; a second pass (identical steps and event)
saves the state at ``Save.records`` points equally spaced in arc length on [0, σ_end], the last one at the
stop (with two records, the start and the stop, pass 1 has them already and there is no second pass). With
``error_estimate`` a third pass at tolerances / 100 gives global error estimates at every
record: ``error_estimate`` = ‖θ − θ_ref‖/‖θ_ref‖ at equal arc length (the error of the path), and
``time_error_estimate`` = |τ − τ_ref| (the error of log(1 + t) there; a stop at a given physical time inherits
it as a displacement along the path). Per record, besides :func:`attnsvm.dynamics.record`:
``sigma``, ``t``, ``log_t``, ``log_saturation``, ``solver_steps`` (accepted steps so far),
``error_estimate`` and, for factored / diagonal models, ``conservation_drift``: ‖C(θ) − C(θ₀)‖_F /
(‖KᵀK‖_F + ‖QᵀQ‖_F) with C = KᵀK − QᵀQ (k² − q² with k², q² for the diagonal model), the conservation law
of the flow (docs/concepts/dynamics.md) measured relative to the size of the terms whose difference is
conserved. It holds exactly for the flow without ridge (both blocks trained); a ridge λ makes C decay like e^{−2λt}.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import replace
from functools import partial

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from ._jax import to_device
from .dynamics import SCALAR_METRICS, Batch, ready_at, records_program
from .logspace import masked_lse
from .losses import jax_log_neg_dloss
from .models import Data, Model, attention_weights, forward, stable_grad
from .programs import RUN_ONCE_OPTIONS, compile_program
from .training.methods import Flow, Save
from .training.optim import Scaled, add_decayed_weights, freeze, log_global_norm, normalize
from .training.run import TIME_AXES, Run
from .training.stops import Stop

#: reasons a flow trial ends besides its stops
BUDGET_REASONS = ("max_steps", "arclength", "failed")
FLOW_METRICS = ("sigma", "t", "log_t", "log_saturation", "solver_steps", "error_estimate", "time_error_estimate")

#: exponent cap for dτ/dσ = e^{−τ − log‖∇L‖}: ‖∇L‖ = 0 exactly only at a stationary point, which the
#: flow reaches in infinite time; the cap keeps the field finite there (e^{700} < float64 max).
_EXP_CAP = 700.0


# ---- the vector field in arc length ----------------------------------------------------------------------


def _unit_descent(model: Model, flow: Flow, params: dict, data: Data) -> tuple[dict, jax.Array]:
    """(−∇L/‖∇L‖ per block, log‖∇L‖) over the trained blocks, exact at any scale: the optimizer pieces
    ridge → frozen blocks → global normalization of :mod:`attnsvm.training.optim` on the scaled gradient."""
    sg = stable_grad(model, params, data)
    direction = {b: Scaled(sg.g[b], sg.log_scale[b]) for b in sg.g}
    direction = add_decayed_weights(flow.ridge).update(direction, None, params)[0]
    if flow.freeze:
        direction = freeze(flow.freeze).update(direction, freeze(flow.freeze).init(params), params)[0]
    unit = normalize("global").update(direction, None)[0]
    return {b: -u for b, u in unit.items()}, log_global_norm(direction)


def _field(model: Model, flow: Flow):
    def f(sigma, y, data):
        direction, lnorm = _unit_descent(model, flow, y["params"], data)
        dtau = jnp.exp(jnp.minimum(-y["tau"] - lnorm, _EXP_CAP))
        return {"params": direction, "tau": dtau, "steps": jnp.zeros_like(y["steps"])}

    return f


# ---- the accepted-step counter -------------------------------------------------------------------------------
# The number of accepted steps before each record rides along in the state as y["steps"]: its vector field is
# zero, the solver below adds 1 on every step (diffrax keeps a step's y only when the step is accepted), and
# the interpolant of a step (y0 + Σ b_i(θ) k_i with k_i = 0 for this leaf) returns the count at the step's
# start exactly. A record at σ inside the accepted step (σ_a, σ_b] therefore reads the number of accepted steps
# ending at or before σ_a. The step-size controller's norm leaves the counter out, so the steps taken are
# those of the flow alone (bit for bit). This replaces a buffer of every accepted step's σ (max_steps entries
# per trial, rewritten on every step under vmap), which cost compile time and a third of the run time.


class _CountingTsit5(diffrax.Tsit5):
    """Tsit5 whose step also adds 1 to the state's ``steps`` counter (kept by diffrax only if accepted)."""

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, y_error, dense_info, solver_state, result = super().step(terms, t0, t1, y0, args, solver_state,
                                                                     made_jump)
        return {**y1, "steps": y0["steps"] + 1.0}, y_error, dense_info, solver_state, result


def _flow_norm(tree) -> jax.Array:
    """diffrax's default RMS norm over the flow's state without the step counter."""
    return optx.rms_norm({k: v for k, v in tree.items() if k != "steps"})


def log_saturation(model: Model, params: dict, data: Data) -> jax.Array:
    """log E, E = scale · Σ_i |ℓ'(Y_i f_i)| · ½ Σ_{u,v} s_iu s_iv |γ̃_iu − γ̃_iv| (module docstring).

    Every term is positive, so the log-sum-exp over (i, u, v) has no cancellation at any saturation. An
    objective may define its own measure (``objective.log_saturation(fw, data)``)."""
    fw = forward(model, params, data)
    if hasattr(model.objective, "log_saturation"):
        return model.objective.log_saturation(fw, data)
    gt = model.objective.scores(fw, data)  # (n, T), or (H, n, T): summed over the heads too
    diff = jnp.abs(gt[..., :, None] - gt[..., None, :])
    keep = data.mask[:, :, None] & data.mask[:, None, :] & (diff > 0)
    terms = fw.log_s[..., :, None] + fw.log_s[..., None, :] + jnp.log(jnp.where(keep, diff, 1.0))
    if terms.ndim == 4:  # heads: (H, n, T, T) → (n, H, T, T)
        terms, keep = jnp.moveaxis(terms, 0, 1), jnp.broadcast_to(keep, terms.shape)
        keep = jnp.moveaxis(keep, 0, 1)
    n = data.Y.shape[0]
    per = masked_lse(terms.reshape(n, -1), keep.reshape(n, -1), axis=1)
    ldl = jax_log_neg_dloss(model.loss, data.Y * fw.f)
    red = -jnp.log(data.Y.shape[0]) if model.reduction == "mean" else 0.0
    return jax.scipy.special.logsumexp(ldl + per) + red - jnp.log(2.0)


def _stop_values(model: Model, stops: tuple[Stop, ...], levels: jax.Array, y: dict, data: Data) -> jax.Array:
    """The stop functions in the order of ``stops``; each crosses zero upwards at its stop. ``levels``
    (traced, so one compiled program serves every pass and every level) are the stops' ``traced()`` values."""
    return jnp.stack([s.value(model, y["params"], y["tau"], data, levels[k]) for k, s in enumerate(stops)])


class _Bisection(optx.Bisection):
    """Bisection that takes the direction of the bracket from its lower end and never raises.

    Under ``vmap`` diffrax runs the event's root find for every trial once any trial has an event (the flow
    now maps over trials, where a trial without an event skips the root find, but the solve stays correct
    under either batching); a trial
    that ended otherwise (solver budget, arc-length budget) gets the function t_end − t, which is 0 at the
    upper end of its bracket, and ``optx.Bisection``'s check (a strict sign change) raised "root is not
    contained" for the whole batch. Here flip = (value at lower > 0): that trial's function is positive at the
    lower end (t_end − t_lower, the length of its last step), so its root find converges to t_end, as diffrax
    intends; a stop trial's value at the lower end is its stop function at the start of the step that crossed
    zero (the interpolant there is the state itself), ≤ 0, so its bracket (negative → positive) is unchanged.
    One evaluation of the event function instead of two (one less copy of it in the compiled program)."""

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        import equinox as eqx

        flip = fn(jnp.asarray(options["lower"], f_struct.dtype), args)[0] > 0
        state = optx.Bisection(self.rtol, self.atol, flip=False).init(fn, y, args, options, f_struct, aux_struct,
                                                                        tags)
        return eqx.tree_at(lambda s: s.flip, state, flip)


def _event(model: Model, stops: tuple[Stop, ...], levels: jax.Array, on: jax.Array) -> diffrax.Event:
    """One continuous event: the max of the stop functions (continuous, and zero at the first stop), located
    by bisection on the dense interpolant of the last step; ``on`` = False switches it off (traced)."""
    return diffrax.Event(
        cond_fn=lambda t, y, args, **kw: jnp.where(on, jnp.max(_stop_values(model, stops, levels, y, args)), -1.0),
        root_finder=_Bisection(rtol=1e-12, atol=1e-12))


@contextmanager
def _checks_as_nan():
    """Trace equinox's runtime checks inside diffrax/optimistix as NaN-producing instead of raising.

    A raising check is a host callback, and a program with a host callback can be neither written to JAX's
    persistent cache nor exported (:mod:`attnsvm.programs`), so the flow would be traced and compiled again
    in every process (≈15–40 s). The checks guard the integrator's own invariants (save times inside
    [t0, t1], a bracketed root in the event's bisection) and do not fire on this module's inputs; if one did,
    the batch's states become NaN and every trial is marked ``diverged`` instead of the run stopping with
    an exception. Only the tracing of this module's program is affected (equinox reads the setting while
    tracing); the process-wide setting is restored on exit."""
    import equinox._errors as eqx_errors  # the module-level default that error_if reads at trace time

    before = getattr(eqx_errors, "EQX_ON_ERROR", None)
    if before is None:  # another equinox layout: keep its behaviour (the program is then not exported)
        yield
        return
    eqx_errors.EQX_ON_ERROR = "nan"
    try:
        yield
    finally:
        eqx_errors.EQX_ON_ERROR = before


#: the error-estimate pass uses tolerances divided by this
_TIGHT = 100.0


@partial(jax.jit, static_argnames=("model", "flow", "batch_data", "stops"))
def _integrate(y0, data, grid, t1, tol, levels, on, *, model, flow, batch_data, stops):
    """One pass over all trials: the state at the arc-length ``grid`` (B, R) and at the stop.

    Called three times with one compilation: to find the stop σ_end (any grid), to record on the grid
    [0, σ_end], and for the error estimate at tighter tolerances ``tol`` = (rtol, atol) with events off
    and t1 = σ_end. Returns (ys at grid[:-1] then at the stop, σ at the stop, event mask, result flags
    (event, max_steps, successful), accepted-step count at each grid point, accepted and rejected steps).
    """

    def one(y, dat, g, t_end):
        saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=g[:-1]), diffrax.SubSaveAt(t1=True)])
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_field(model, flow)), _CountingTsit5(), t0=0.0, t1=t_end, dt0=None,
            y0={**y, "steps": jnp.zeros((), y["tau"].dtype)}, args=dat, saveat=saveat,
            stepsize_controller=diffrax.PIDController(rtol=tol[0], atol=tol[1], norm=_flow_norm),
            event=_event(model, stops, levels, on), max_steps=flow.max_steps, throw=False,
        )
        ys_grid, ys_end = sol.ys
        ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), ys_grid, ys_end)
        steps = ys.pop("steps")
        sigma_end = sol.ts[1][-1]
        # accepted steps before each record; at the stop, all of them
        count = steps.astype(sol.stats["num_accepted_steps"].dtype).at[-1].set(sol.stats["num_accepted_steps"])
        # which stop fired: the stop function closest to zero from above at the stop
        mask = _stop_values(model, stops, levels, jax.tree.map(lambda a: a[0], ys_end), dat)
        flags = jnp.stack([sol.result == diffrax.RESULTS.event_occurred,
                           sol.result == diffrax.RESULTS.max_steps_reached,
                           sol.result == diffrax.RESULTS.successful])
        return (ys, sigma_end, mask, flags, count, sol.stats["num_accepted_steps"],
                sol.stats["num_rejected_steps"])

    # Trials one after the other (lax.map), not vmap: a vmapped solve has to be batched after tracing (diffrax's
    # while loops re-batched to a fixed point, every carried value selected per trial on every step), which
    # made tracing and compiling it ≈1.5× longer; the run is no slower at the sizes measured (up to 100 P3-size
    # trials, benchmarks/flow_compile.py), since under vmap every trial takes as many steps as the longest.
    if batch_data:
        return jax.lax.map(lambda a: one(*a), (y0, data, grid, t1))
    return jax.lax.map(lambda a: one(a[0], data, a[1], a[2]), (y0, grid, t1))


# ---- public API ----------------------------------------------------------------------------------------------


def conservation_drift(model: Model, params: Mapping[str, np.ndarray], params0: Mapping[str, np.ndarray]
                       ) -> np.ndarray:
    """‖C(θ) − C(θ₀)‖_F / (‖KᵀK‖_F + ‖QᵀQ‖_F) at θ, C = KᵀK − QᵀQ (factored) or k² − q² (diagonal).

    params: blocks with leading axes (..., shape); params0: the initial blocks, broadcastable against them.
    """
    P = model.name
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


def run_flow(model: Model, flow: Flow, batch: Batch, params0: dict[str, np.ndarray], save: Save,
             stops: tuple[Stop, ...]) -> Run:
    """Integrate the gradient flow dθ/dt = −∇L(θ) of every trial of ``batch`` until the first of ``stops``
    (the engine of ``Flow``; call it through :func:`attnsvm.train`; module docstring).

    Records ``save.records`` states per trial, equally spaced in arc length from the start to the stop
    (``Run.time`` is the record index); the per-trial arc length, time and solver statistics are in
    ``metrics``; ``Run.stop_reason`` holds the name of the stop that fired, or ``max_steps`` /
    ``arclength`` / ``failed``; ``info["sigma_end"]``, ``info["accepted_steps"]``, ``info["rejected_steps"]``
    per trial.
    """
    if not stops:
        raise ValueError("stop: the flow needs a stop condition (Saturation, Radius or Time)")
    n_records, keep_path, error_estimate = int(save.records), bool(save.path), flow.error_estimate
    batch_data, B, data = batch.batch_data, batch.trials, batch.data
    alpha_arr, refs, ref_names = batch.alpha, batch.refs, batch.ref_names

    jparams0 = to_device(dict(params0))
    static_stops = tuple(st.static() for st in stops)
    levels = to_device(np.array([st.traced() for st in stops], dtype=np.float64))
    _check_start(model, flow, jparams0, data, batch_data, stops, static_stops, levels)
    y0 = {"params": jparams0, "tau": jnp.zeros(B)}

    # Tolerances, thresholds and budgets are traced arguments: only what changes the program is static, so
    # runs that differ in rtol or a stop value share one compilation.
    static_flow = replace(flow, rtol=1.0, atol=1.0, max_arclength=1.0, error_estimate=False)
    kw = dict(model=model, flow=static_flow, batch_data=batch_data, stops=static_stops)
    tol = to_device(np.array([flow.rtol, flow.atol], dtype=np.float64))
    on, off = to_device((np.bool_(True), np.bool_(False)))
    t_budget = jnp.full(B, flow.max_arclength)
    grid0 = jnp.zeros((B, n_records))

    t0 = time.perf_counter()
    compiled = compile_program(_integrate, (y0, data, grid0, t_budget, tol, levels, on), kw,
                               trace_context=_checks_as_nan)
    compile_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    # pass 1: where does each trial stop?  pass 2: the same integration, saving on [0, σ_end]
    first = compiled(y0, data, grid0, t_budget, tol, levels, on)
    _, sigma_end, fired, flags, _, acc, rej = first
    grid = jnp.linspace(0.0, 1.0, n_records)[None, :] * sigma_end[:, None]
    # Two records (the start and the stop) are what pass 1 saved already: its grid [0] is the start, and the
    # steps do not depend on the save points (no step is clipped to them), so pass 2 would repeat it bit for bit.
    repeated = n_records > 2
    out = compiled(y0, data, grid, t_budget, tol, levels, on) if repeated else first
    out_ref = compiled(y0, data, grid, sigma_end, tol / _TIGHT, levels, off) if error_estimate else None
    ready = ready_at((out, out_ref))
    # the passes run on XLA's own thread (asynchronous dispatch): the records program is traced and compiled
    # meanwhile (on a second core, hidden behind them)
    rec_args = (out[0]["params"], data, *to_device((alpha_arr, refs)))
    t2 = time.perf_counter()
    records = records_program(rec_args, model=model, batch_data=batch_data, keep=(True, keep_path, False),
                              saturation=True)
    compile_s += time.perf_counter() - t2
    run_s = ready() - t1
    ys, sigma_end2, _, _, step_count, _, _ = out
    if error_estimate:
        ys_ref = out_ref[0]

    recs = jax.tree.map(np.asarray, records(*rec_args))
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
    if model.name in ("factored", "diagonal"):
        p0b = {k: v[:, None] for k, v in params0.items()}
        metrics["conservation_drift"] = conservation_drift(model, traj, p0b)

    flags = np.asarray(flags)
    stop = _stop_reasons([st.name for st in stops], np.asarray(fired), flags[:, 2], flags[:, 1], flags[:, 0])
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
        "batching": "lax.map",
        # pass 2 repeats pass 1 step for step; a difference here would mean a non-deterministic solve
        # (NaN: no second pass, two records)
        "stop_repeat_discrepancy": (float(np.max(np.abs(np.asarray(sigma_end2) - np.asarray(sigma_end))))
                                    if repeated else float("nan")),
        "total_seconds": time.perf_counter() - t0,
        "params0": params0,
    }
    return Run(
        model=model, method=flow, params=final, W=W, time=np.arange(n_records), time_axis=TIME_AXES["flow"],
        metrics=metrics, selection=recs["selection"], singular_values=recs["singular_values"],
        correlations={name: corr[:, :, j] for j, name in enumerate(ref_names)}, alpha=alpha_arr,
        status=np.full(B, "ok"), stop_reason=stop, path=recs.get("path"),
        params_path=traj if save.params else None, compile_seconds=compile_s,
        run_seconds=run_s, info=info,
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


@partial(jax.jit, static_argnames=("model", "flow", "batch_data", "stops"))
def _start_values(params, data, levels, *, model, flow, batch_data, stops):
    """log‖∇L‖ and the stop values at the start of every trial (compiled: eager vmap dispatches op by op)."""

    def one(p, dat):
        _, lnorm = _unit_descent(model, flow, p, dat)
        return lnorm, _stop_values(model, stops, levels, {"params": p, "tau": jnp.zeros(())}, dat)

    return jax.vmap(one, in_axes=(0, 0 if batch_data else None))(params, data)


def _check_start(model: Model, flow: Flow, params: dict, data: Data, batch_data: bool, stops: tuple[Stop, ...],
                 static_stops: tuple[Stop, ...], levels: jax.Array) -> None:
    """The flow cannot leave a stationary point, nor start past a stop."""
    kw = dict(model=model, flow=replace(flow, rtol=1.0, atol=1.0, max_arclength=1.0, error_estimate=False),
              batch_data=batch_data, stops=static_stops)
    lnorm, vals = (np.asarray(a) for a in compile_program(_start_values, (params, data, levels), kw,
                                                          compiler_options=RUN_ONCE_OPTIONS)(params, data, levels))
    bad = np.flatnonzero(~np.isfinite(lnorm))
    if bad.size:
        raise ValueError(f"init: the gradient is exactly zero at the start of trial {int(bad[0])} (θ = 0 is a "
                         "stationary point of the factored and diagonal models); use a Gaussian init")
    for k, st in enumerate(stops):
        if np.any(vals[:, k] >= 0):
            raise ValueError(f"stop: {type(st).__name__}({st.level:g}) is already reached at the start of trial "
                             f"{int(np.flatnonzero(vals[:, k] >= 0)[0])}")

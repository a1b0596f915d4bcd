"""Regularization path θ̄(R) = argmin_{‖θ‖ ≤ R} L(θ) (docs/concepts/dynamics.md; P1 Thm. 1 / P3 Thm. 1 for p
and W, P3 for (K, Q)).

The ball is the ℓ2 ball ‖p‖ ≤ R (prompt) or the Frobenius ball ‖W‖_F ≤ R (combined); for the factored
(diagonal) model it is (‖K‖_F² + ‖Q‖_F²)/2 ≤ R ((‖k‖² + ‖q‖²)/2 ≤ R), whose image in W = KQᵀ is the
nuclear-norm ball ‖W‖_* ≤ R (ℓ1 ball ‖k⊙q‖₁ ≤ R for the diagonal). In θ-space every one of these is a
Euclidean ball of radius ρ = R (prompt, combined) or ρ = √(2R) (factored, diagonal). The theory says
θ̄(R)/R → the max-margin direction (p^mm, W^mm, W^mm_★ up to scale) as R → ∞.

**Objective.** At large R, L − L* is far below the rounding of L (e^{−R·margin}), so an Armijo test on
L itself cannot see a decrease. The line search compares instead L − L*_α, with α the selection
(argmax attention) at the current iterate and L*_α the risk of one-hot attention on α (a constant during
the line search, so the test is the same as on L): per sample ℓ(γ_iα − D_i) − ℓ(γ_iα) with
D_i = Σ_u s_iu (γ_iα − γ_iu) formed from its positive and negative parts in log space, summed in units
e^S fixed during the line search. Using the selection α, not the global opt, matters: on the ≈40% of
P3-local instances whose path converges to a locally optimal selection, L − L* stalls at a positive
constant and its variations are lost to rounding. ∇L comes from the log-space gradient of
:func:`attnsvm.models.stable_grad` (the head is the fixed linear head).

**Method.** Projected gradient on the ball, θ⁺ = P(θ − η∇φ) with P(x) = x·min(1, ρ/‖x‖), with
Barzilai–Borwein step lengths safeguarded by an Armijo backtracking test
φ(θ⁺) ≤ φ(θ) + c·⟨∇φ(θ), θ⁺ − θ⟩ (c = 1e−4). The grid of radii is walked in increasing order; each solve is
warm-started at the previous solution scaled to the new radius, θ ← θ̄(R_prev)·ρ/ρ_prev.

**Stationarity (stated tolerance).** First-order KKT conditions of min φ s.t. ‖θ‖ ≤ ρ: ∇φ + μθ = 0,
μ ≥ 0, μ(‖θ‖ − ρ) = 0. The residual reported per radius is the scale-free

    r = ‖∇φ + μ̂θ‖ / ‖∇φ‖,   μ̂ = max(0, −⟨∇φ, θ⟩/‖θ‖²) on the boundary, μ̂ = 0 inside,

the sine of the angle between −∇L and the outward normal on the sphere. A radius is ``stationary`` when
r ≤ ``tol``. L is not convex in θ, so a stationary point need not be the minimizer: with ``restarts`` > 0
every radius is also solved from that many random points of the sphere, and the warm-started solution is
flagged ``only_stationary`` when a restart reaches a lower L (compared as L − L*_α when both select the
same α); then it is provably not the global minimizer of the ball. Without restarts nothing beyond
stationarity is claimed.
"""

from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._jax import to_device
from .dynamics import SCALAR_METRICS, Batch, record
from .logspace import log_signed_diff, masked_lse
from .models import (
    NEG_INF,
    Data,
    Model,
    attention_weights,
    forward,
    logits,
    stable_grad,
)
from .programs import compile_program
from .training.methods import RegularizationPath
from .training.run import TIME_AXES, Run

PATH_METRICS = ("radius", "stationarity", "iterations", "outward", "log_excess", "only_stationary")

_ARMIJO = 1e-4
_MAX_BACKTRACK = 60


def ball_radius(model: Model, R: float | np.ndarray) -> np.ndarray:
    """ρ, the Euclidean radius in θ-space of the constraint set of radius R (module docstring)."""
    R = np.asarray(R, dtype=np.float64)
    return np.asarray(model.param.ball_radius(R), dtype=np.float64)


# ---- the objective, relative to the current selection ------------------------------------------------------


def log_excess_terms(model: Model, params: dict, data: Data, alpha: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sign, log|·|) per sample of e_i = ℓ(γ_iα − D_i) − ℓ(γ_iα), D_i = Σ_u s_iu (γ_iα − γ_iu) (linear head).

    Σ_i e_i = (L − L*_α)/scale with L*_α the risk of one-hot attention on α. D_i is formed from its positive
    and negative parts, each a log-sum-exp, and e_i in closed form (σ the logistic function):
    exponential  e^{−γ_α}(e^D − 1);   correlation  D;   logistic  log(1 + (e^D − 1) σ(−γ_α)).
    """
    if hasattr(model.objective, "log_loss_terms"):
        # an objective without a one-hot optimum (next-token prediction): the plain risk, per sample
        return model.objective.log_loss_terms(logits(model, params, data), data)
    fw = forward(model, params, data)
    gamma = data.Y[:, None] * (data.X @ data.v)
    g_a = jnp.take_along_axis(gamma, alpha[:, None], axis=1)[:, 0]
    diff = g_a[:, None] - gamma
    absd = jnp.where(diff != 0, jnp.abs(diff), 1.0)
    terms = fw.log_s + jnp.log(absd)
    lP = masked_lse(terms, data.mask & (diff > 0), axis=1)
    lN = masked_lse(terms, data.mask & (diff < 0), axis=1)
    sgn, lD = log_signed_diff(lP, lN)
    nz = sgn != 0
    D = jnp.where(nz, sgn * jnp.exp(lD), 1.0)
    lexpm1 = lD + jnp.log(jnp.where(nz & (D != 0), jnp.expm1(D) / D, 1.0))  # log|e^D − 1|
    if model.loss == "correlation":
        lt = lD
    elif model.loss == "exponential":
        lt = -g_a + lexpm1
    else:
        ly = lexpm1 - jax.nn.softplus(g_a)
        y = jnp.where(nz, sgn * jnp.exp(ly), 1.0)
        ok = nz & (y != 0)
        lt = ly + jnp.log(jnp.where(ok, jnp.log1p(jnp.where(ok, y, 1.0)) / jnp.where(ok, y, 1.0), 1.0))
    red = -jnp.log(data.Y.shape[0]) if model.reduction == "mean" else 0.0
    return sgn, jnp.where(nz, lt + red, NEG_INF)


def _shift(lt: jax.Array) -> jax.Array:
    S = jnp.max(lt)
    return jnp.where(jnp.isfinite(S), S, 0.0)


def _value(model: Model, params: dict, data: Data, alpha: jax.Array, S: jax.Array) -> jax.Array:
    """(L − L*_α)·e^{−S}: the objective in the units e^S fixed during one line search."""
    sgn, lt = log_excess_terms(model, params, data, alpha)
    return jnp.sum(sgn * jnp.exp(lt - S))


def _grad(model: Model, params: dict, data: Data, S: jax.Array) -> dict:
    """∇L·e^{−S} from the scaled gradient (exact direction at any scale)."""
    sg = stable_grad(model, params, data)
    return {b: sg.g[b] * jnp.exp(sg.log_scale[b] - S) for b in model.attention_blocks}


def _selection(model: Model, params: dict, data: Data) -> jax.Array:
    return jnp.argmax(forward(model, params, data).log_s, axis=1)


def _dot(a: dict, b: dict) -> jax.Array:
    return sum(jnp.sum(a[k] * b[k]) for k in a)


def _proj(x: dict, rho: jax.Array) -> dict:
    nrm = jnp.sqrt(_dot(x, x))
    f = jnp.minimum(1.0, rho / jnp.where(nrm > 0, nrm, 1.0))
    return {k: v * f for k, v in x.items()}


def kkt_residual(theta: dict, grad: dict, rho: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(r, cos∠(−∇L, θ)): the scale-free KKT residual of the ball problem and the outward cosine."""
    tn2 = _dot(theta, theta)
    gn = jnp.sqrt(_dot(grad, grad))
    gt = _dot(grad, theta)
    on_boundary = jnp.sqrt(tn2) >= rho * (1 - 1e-10)
    mu = jnp.where(on_boundary, jnp.maximum(0.0, -gt / jnp.where(tn2 > 0, tn2, 1.0)), 0.0)
    res = {k: grad[k] + mu * theta[k] for k in grad}
    r = jnp.sqrt(_dot(res, res)) / jnp.where(gn > 0, gn, 1.0)
    cos = -gt / jnp.where(gn * jnp.sqrt(tn2) > 0, gn * jnp.sqrt(tn2), 1.0)
    return jnp.where(gn > 0, r, 0.0), cos


def _point(model: Model, th: dict, data: Data):
    """(selection α, shift S, value in e^S units, gradient in e^S units) at θ."""
    al = _selection(model, th, data)
    sgn, lt = log_excess_terms(model, th, data, al)
    S = _shift(lt)
    return al, S, jnp.sum(sgn * jnp.exp(lt - S)), _grad(model, th, data, S)


def _solve_ball(model: Model, data: Data, theta: dict, rho: jax.Array, tol: float, max_iter: int):
    """Projected gradient with BB steps and Armijo backtracking on the ball of radius ρ (module docstring).

    The value is L − L*_α in units e^S, α and S fixed at the current iterate for its line search (so the
    comparison never loses the tiny differences to rounding); step lengths are converted when S changes.
    Returns (θ, log|L − L*_α| at θ, r, outward cosine, iterations)."""
    theta = _proj(theta, rho)
    al, S, val, g = _point(model, theta, data)
    r, _ = kkt_residual(theta, g, rho)
    gn = jnp.sqrt(_dot(g, g))
    eta = rho / jnp.where(gn > 0, gn, 1.0) * 1e-2

    def cond(s):
        return (s[5] > tol) & (s[6] < max_iter)

    def body(s):
        th, al, S, val, gr, _, it, et = s

        def bt_cond(b):
            return (~b[2]) & (b[3] < _MAX_BACKTRACK)

        def bt_body(b):
            e, _, _, k, _, _ = b
            cand = _proj({k_: th[k_] - e * gr[k_] for k_ in th}, rho)
            vc = _value(model, cand, data, al, S)
            step = {k_: cand[k_] - th[k_] for k_ in th}
            ok = jnp.isfinite(vc) & (vc <= val + _ARMIJO * _dot(gr, step))
            return jnp.where(ok, e, 0.5 * e), vc, ok, k + 1, cand, step

        zero = {k_: jnp.zeros_like(v) for k_, v in th.items()}
        e, _, ok, _, cand, step = jax.lax.while_loop(bt_cond, bt_body, (et, val, False, 0, th, zero))
        al_n, S_n, val_n, g_n = _point(model, cand, data)
        # Barzilai–Borwein (long) step ⟨s, s⟩/⟨s, y⟩, with the new gradient brought to the old units e^S
        y = {k_: g_n[k_] * jnp.exp(S_n - S) - gr[k_] for k_ in gr}
        sy = _dot(step, y)
        bb = jnp.where(sy > 0, _dot(step, step) / jnp.where(sy > 0, sy, 1.0), 2.0 * e)
        bb = jnp.clip(bb, 1e-3 * e, 1e3 * e) * jnp.exp(S_n - S)  # a step in the new units e^{S_n}
        pick = lambda a, b: jax.tree.map(lambda x, z: jnp.where(ok, x, z), a, b)
        th_n = pick(cand, th)
        gr_n = pick(g_n, gr)
        r_n, _ = kkt_residual(th_n, gr_n, rho)
        # a failed line search (no decrease within 60 halvings: stationary to rounding) ends the solve; its
        # residual r is reported as it stands
        return (th_n, pick(al_n, al), jnp.where(ok, S_n, S), jnp.where(ok, val_n, val), gr_n, r_n,
                jnp.where(ok, it + 1, max_iter), jnp.where(ok, bb, et))

    th, al, S, val, gr, r, it, _ = jax.lax.while_loop(cond, body, (theta, al, S, val, g, r, jnp.asarray(0), eta))
    r, cos = kkt_residual(th, gr, rho)
    return th, S + jnp.log(jnp.abs(val)), r, cos, it


@partial(jax.jit, static_argnames=("model", "tol", "max_iter", "batch_data", "restarts"))
def _path(theta0, data, rhos, alpha, refs, starts, *, model, tol, max_iter, batch_data, restarts):
    """All radii for all trials: scan over the radii (warm start), vmap over trials."""

    def one(th0, dat, al, rf, st):
        def step(carry, k):
            th_prev, rho_prev = carry
            rho = rhos[k]
            th = {b: v * (rho / rho_prev) for b, v in th_prev.items()}
            th, ph, r, cos, it = _solve_ball(model, dat, th, rho, tol, max_iter)
            if restarts:
                sel = _selection(model, th, dat)
                L = forward(model, th, dat).loss

                def restart(s):
                    nrm = jnp.sqrt(_dot(s, s))
                    th_r, ph_r = _solve_ball(model, dat, {b: v * rho / nrm for b, v in s.items()}, rho, tol,
                                             max_iter)[:2]
                    same = jnp.all(_selection(model, th_r, dat) == sel)
                    L_r = forward(model, th_r, dat).loss
                    return jnp.where(same, ph_r < ph - 1e-9 * (1 + jnp.abs(ph)), L_r < L - 1e-12 * (1 + L))

                lower = jnp.any(jax.lax.map(restart, jax.tree.map(lambda a: a[k], st)))
            else:
                lower = jnp.asarray(False)
            rec = record(model, th, dat, al, rf)
            rec.update(stationarity=r, iterations=it.astype(jnp.float64), outward=cos, log_excess=ph,
                       only_stationary=lower.astype(jnp.float64), path=attention_weights(model, th),
                       theta=th)
            return (th, rho), rec

        rho0 = jnp.sqrt(_dot(th0, th0))
        rho0 = jnp.where(rho0 > 0, jnp.minimum(rho0, rhos[0]), rhos[0])
        return jax.lax.scan(step, (th0, rho0), jnp.arange(rhos.shape[0]))[1]

    return jax.vmap(one, in_axes=(0, 0 if batch_data else None, 0, 0, 0))(theta0, data, alpha, refs, starts)


def run_path(model: Model, settings: RegularizationPath, batch: Batch, params0: dict[str, np.ndarray],
             seed: int = 0) -> Run:
    """θ̄(R) for every R of ``settings.radii`` (increasing) and every trial of ``batch`` (module docstring;
    the engine of ``RegularizationPath``: call it through :func:`attnsvm.train`).

    The first radius starts from the initialization, projected into the ball. Returns a :class:`Run` with
    ``time`` = radius index, ``path`` = W_path (B, radii, *W.shape) — θ̄(R)/R is ``path / radii`` and its
    correlation with each reference is in ``correlations`` (scale-free) — and in ``metrics`` besides the
    records of :func:`attnsvm.dynamics.record`: ``radius``, ``stationarity`` (r), ``iterations``,
    ``outward`` (cos∠(−∇L, θ), 1 at a boundary KKT point), ``log_excess`` (log|L − L*_α|, α the selection)
    and ``only_stationary`` (1 when a restart found a lower L). ``info["status"]`` is (B, radii) of
    ``"stationary"`` / ``"not_converged"``, ``info["radii"]`` the grid, ``info["W_over_R"]`` = θ̄(R)/R.
    """
    if model.train_v or model.head != "linear":
        raise ValueError("model: the regularization path needs the fixed linear head (head='linear', "
                         "train_v=False), whose L*_α is known in closed form")
    batch_data, B, data = batch.batch_data, batch.trials, batch.data
    if model.multihead:
        raise ValueError("model: the regularization path has one attention head (L*_α of several heads is not "
                         "one-hot attention on α); use Descent or Flow for multihead")
    if len(model.attention_blocks) > 1 and not all(
            np.all(np.linalg.norm(params0[b].reshape(B, -1), axis=1) > 0) for b in model.attention_blocks):
        raise ValueError(f"init: the blocks {model.attention_blocks} must all be nonzero; a product of blocks "
                         "with one block 0 is a stationary point")
    alpha_arr, refs, ref_names = batch.alpha, batch.refs, batch.ref_names
    radii_arr = np.asarray(settings.radii)
    rhos = ball_radius(model, radii_arr)
    rng = np.random.default_rng(seed + 1)  # the restarts' points, from the init seed
    nr = max(settings.restarts, 1)
    starts = {b: rng.standard_normal((B, len(radii_arr), nr) + params0[b].shape[1:])
              for b in model.attention_blocks}

    t0 = time.perf_counter()
    p0, rh, al, rf, st = to_device(({k: params0[k] for k in model.attention_blocks}, rhos, alpha_arr, refs,
                                    dict(starts)))
    args = (p0, data, rh, al, rf, st)
    kw = dict(model=model, tol=settings.tol, max_iter=settings.max_iter, batch_data=batch_data,
              restarts=settings.restarts)
    compiled = compile_program(_path, args, kw)
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    recs = jax.tree.map(np.asarray, jax.block_until_ready(compiled(*args)))
    run_s = time.perf_counter() - t1

    metrics = {k: recs[k] for k in SCALAR_METRICS}
    metrics["radius"] = np.broadcast_to(radii_arr, (B, len(radii_arr))).copy()
    for k in PATH_METRICS[1:]:
        metrics[k] = recs[k]
    status = np.where(recs["stationarity"] <= settings.tol, "stationary", "not_converged")
    theta = recs["theta"]
    final = {k: v[:, -1] for k, v in theta.items()}
    corr = recs["corr"]
    info = {
        "status": status,
        "radii": radii_arr,
        "ball_radius": rhos,
        "tol": settings.tol,
        "objective": "L − L*_α in log-space units, α the current selection",
        "theta_path": theta,
        # θ̄(R)/R: W/R (‖W‖_F ≤ R, or ‖KQᵀ‖_* ≤ R for (K, Q)), p/R for the prompt model
        "W_over_R": recs["path"] / radii_arr.reshape((1, -1) + (1,) * (recs["path"].ndim - 2)),
        "total_seconds": time.perf_counter() - t0,
    }
    return Run(
        model=model, method=settings, params=final, W=recs["path"][:, -1], time=np.arange(len(radii_arr)),
        time_axis=TIME_AXES["path"], metrics=metrics, selection=recs["selection"],
        singular_values=recs["singular_values"],
        correlations={name: corr[:, :, j] for j, name in enumerate(ref_names)}, alpha=alpha_arr,
        status=np.full(B, "ok"), stop_reason=np.full(B, "radii"), path=recs["path"], params_path=theta,
        compile_seconds=compile_s,
        run_seconds=run_s, info=info,
    )


__all__ = ["ball_radius", "kkt_residual", "log_excess_terms", "run_path"]

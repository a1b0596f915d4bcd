"""One-layer softmax attention (docs/concepts/problems.md): parameterizations, heads, risk, and its gradient in
log space (docs/concepts/numerics.md).

Logit of token t in sequence i, for each parameterization (``Model.parameterization``):

==========  ===================  ==========================  =======================
name        trainable            logit a_it                   attention weights
==========  ===================  ==========================  =======================
prompt      p ∈ R^{d'}           x_itᵀ K p  (K fixed, P1)     p
combined    W ∈ R^{d×d}          x_itᵀ W z_i                  W
factored    K, Q ∈ R^{d×m}       x_itᵀ K Qᵀ z_i              W = K Qᵀ
diagonal    k, q ∈ R^d           x_itᵀ diag(k⊙q) z_i         W = diag(k⊙q)
==========  ===================  ==========================  =======================

s_i = softmax(a_i) over real tokens, u_i = X_iᵀ s_i, f_i = h(u_i) with the linear head h(u) = vᵀu (v fixed
or trained) or the ReLU head h(u) = aᵀReLU(Vᵀu) (P3 §nonlinear; a = 1 by default). The risk is
L = scale · Σ_i ℓ(Y_i f_i), scale = 1/n (mean) or 1 (sum).

**The gradient without cancellation.** With γ̃_it = Y_i ∇h(u_i)ᵀ x_it (γ̃ = γ for the linear head),

    ∂L/∂a_it = scale · ℓ'(Y_i f_i) · s_it · Σ_u s_iu (γ̃_it − γ̃_iu).                      (★)

Written as γ̃_it − f̃_i with f̃_i = Σ_u s_iu γ̃_iu, the last factor cancels catastrophically once attention
saturates (f̃ ≈ γ̃_top) and the gradient turns into rounding noise, or underflows to exactly 0 when
s_it < 1e−308. Here every factor of (★) is kept as a logarithm: log s from log-softmax, log|ℓ'| in closed
form (losses.py), and the pairwise sum split into its positive and negative parts, each a log-sum-exp.
The gradient of a block is returned as ``exp(log_scale) · g`` with ‖g‖ = O(1): the common scale is removed
where only the direction matters (normalized GD, gradient flow in log-time), and the direction stays
exact to rounding at any ‖W‖.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .losses import check_loss, check_reduction, jax_excess, jax_log_neg_dloss, jax_loss
from .problem import AttentionProblem

Parameterization = Literal["prompt", "combined", "factored", "diagonal"]
PARAMETERIZATIONS: tuple[str, ...] = ("prompt", "combined", "factored", "diagonal")
HEADS: tuple[str, ...] = ("linear", "relu")

#: trainable blocks of each parameterization (v is added when the linear head is trained)
BLOCKS: dict[str, tuple[str, ...]] = {
    "prompt": ("p",),
    "combined": ("W",),
    "factored": ("K", "Q"),
    "diagonal": ("k", "q"),
}

NEG_INF = -jnp.inf


@dataclass(frozen=True)
class Model:
    """A static model description (hashable: it is a compile-time constant of the engines).

    parameterization: prompt | combined | factored | diagonal.
    loss: logistic | exponential | correlation;  reduction: mean | sum.
    head: linear | relu;  train_v: train the linear head v jointly (P1 joint (v, p)).
    hidden: m, the width of K and Q for the factored model (default d).
    """

    parameterization: str = "combined"
    loss: str = "logistic"
    reduction: str = "mean"
    head: str = "linear"
    train_v: bool = False
    hidden: int | None = None

    def __post_init__(self) -> None:
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, "
                             f"got {self.parameterization!r}")
        check_loss(self.loss)
        check_reduction(self.reduction)
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.train_v and self.head != "linear":
            raise ValueError("train_v: only the linear head can be trained")
        if self.hidden is not None and self.hidden < 1:
            raise ValueError(f"hidden: must be ≥ 1, got {self.hidden}")

    @property
    def blocks(self) -> tuple[str, ...]:
        return BLOCKS[self.parameterization] + (("v",) if self.train_v else ())

    @property
    def attention_blocks(self) -> tuple[str, ...]:
        return BLOCKS[self.parameterization]

    def param_shapes(self, d: int, d_key: int | None = None) -> dict[str, tuple[int, ...]]:
        m = self.hidden or d
        shapes = {
            "prompt": {"p": (d_key or d,)},
            "combined": {"W": (d, d)},
            "factored": {"K": (d, m), "Q": (d, m)},
            "diagonal": {"k": (d,), "q": (d,)},
        }[self.parameterization]
        if self.train_v:
            shapes = {**shapes, "v": (d,)}
        return shapes


class Data(NamedTuple):
    """The arrays of one problem as seen by the JAX engines (a pytree; stack them to batch trials)."""

    X: jax.Array  # (n, T, d)
    Y: jax.Array  # (n,)
    Z: jax.Array  # (n, d) queries (zeros for the prompt model, which has none)
    K: jax.Array  # (d, d') fixed key matrix of the prompt model
    mask: jax.Array  # (n, T) bool
    v: jax.Array  # (d,) fixed linear head (the initial v when v is trained)
    V: jax.Array  # (d, m) ReLU head matrix (zeros (d, 1) for the linear head)
    a: jax.Array  # (m,) ReLU head output weights


def model_data(problem: AttentionProblem, model: Model, V: np.ndarray | None = None,
               a: np.ndarray | None = None) -> Data:
    """Convert a validated problem (and the ReLU head matrix V (d, m), output weights a (m,)) to ``Data``."""
    d = problem.d
    if model.parameterization == "prompt":
        Z = np.zeros((problem.n, d))
    else:
        Z = problem.queries
    if model.head == "relu":
        if V is None:
            raise ValueError("V: the ReLU head h(u) = aᵀReLU(Vᵀu) needs its matrix V (d, m)")
        V = np.asarray(V, dtype=np.float64)
        if V.ndim != 2 or V.shape[0] != d:
            raise ValueError(f"V: expected shape ({d}, m), got {V.shape}")
        a = np.ones(V.shape[1]) if a is None else np.asarray(a, dtype=np.float64)
        if a.shape != (V.shape[1],):
            raise ValueError(f"a: expected shape ({V.shape[1]},), got {a.shape}")
    else:
        V, a = np.zeros((d, 1)), np.zeros(1)
    return Data(X=jnp.asarray(problem.X), Y=jnp.asarray(problem.Y), Z=jnp.asarray(Z),
                K=jnp.asarray(problem.keys), mask=jnp.asarray(problem.mask), v=jnp.asarray(problem.v),
                V=jnp.asarray(V), a=jnp.asarray(a))


def stack_data(items: list[Data]) -> Data:
    """Stack per-trial ``Data`` along a new leading axis (all problems must share one shape)."""
    shapes = {tuple(x.shape for x in it) for it in items}
    if len(shapes) != 1:
        raise ValueError("problems: every trial's problem must have the same shapes (n, T, d) to be batched")
    # stacked in NumPy and moved once: jnp.stack of many arrays compiles a program per field
    return Data(*(jnp.asarray(np.stack([np.asarray(x) for x in xs])) for xs in zip(*items, strict=True)))


# ---- forward ------------------------------------------------------------------------------------------


def attention_weights(model: Model, params: dict) -> jax.Array:
    """W (d×d) for combined / factored / diagonal, p for the prompt model."""
    P = model.parameterization
    if P == "prompt":
        return params["p"]
    if P == "combined":
        return params["W"]
    if P == "factored":
        return params["K"] @ params["Q"].T
    return jnp.diag(params["k"] * params["q"])


def logits(model: Model, params: dict, data: Data) -> jax.Array:
    """a_it (n, T); −inf on padded tokens."""
    P = model.parameterization
    if P == "prompt":
        a = (data.X @ data.K) @ params["p"]
    elif P == "combined":
        a = jnp.einsum("itd,de,ie->it", data.X, params["W"], data.Z)
    elif P == "factored":
        a = jnp.einsum("itm,im->it", data.X @ params["K"], data.Z @ params["Q"])
    else:
        a = jnp.einsum("itd,d,id->it", data.X, params["k"] * params["q"], data.Z)
    return jnp.where(data.mask, a, NEG_INF)


def log_softmax(model: Model, params: dict, data: Data) -> jax.Array:
    """log s_it (n, T), −inf on padded tokens."""
    a = logits(model, params, data)
    return a - jax.scipy.special.logsumexp(a, axis=1, keepdims=True)


def _head_v(model: Model, params: dict, data: Data) -> jax.Array:
    return params["v"] if model.train_v else data.v


def head_output(model: Model, params: dict, data: Data, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """f_i = h(u_i) and ∇h(u_i), both for u (n, d)."""
    if model.head == "linear":
        v = _head_v(model, params, data)
        return u @ v, jnp.broadcast_to(v, u.shape)
    pre = u @ data.V  # (n, m)
    f = jnp.maximum(pre, 0.0) @ data.a
    grad = (jnp.where(pre > 0, 1.0, 0.0) * data.a) @ data.V.T
    return f, grad


class Forward(NamedTuple):
    log_s: jax.Array  # (n, T)
    u: jax.Array  # (n, d)  X_iᵀ s_i
    f: jax.Array  # (n,)
    hgrad: jax.Array  # (n, d) ∇h(u_i)
    loss: jax.Array  # ()


def forward(model: Model, params: dict, data: Data) -> Forward:
    log_s = log_softmax(model, params, data)
    s = jnp.exp(log_s)
    u = jnp.einsum("it,itd->id", s, data.X)
    f, hgrad = head_output(model, params, data, u)
    scale = 1.0 / data.Y.shape[0] if model.reduction == "mean" else 1.0
    loss = scale * jnp.sum(jax_loss(model.loss, data.Y * f))
    return Forward(log_s, u, f, hgrad, loss)


def loss(model: Model, params: dict, data: Data) -> jax.Array:
    """L(θ) = scale · Σ_i ℓ(Y_i f_i), evaluated directly (used for values and finite-difference checks)."""
    return forward(model, params, data).loss


# ---- log-space pairwise sums ----------------------------------------------------------------------------


def _log_signed_diff(lp: jax.Array, ln: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sign, log|e^lp − e^ln|) without forming e^lp or e^ln."""
    hi = jnp.maximum(lp, ln)
    both_zero = jnp.isneginf(hi)
    delta = jnp.where(both_zero, jnp.inf, jnp.abs(lp - ln))
    mag = jnp.where(both_zero, NEG_INF, hi + jnp.log(-jnp.expm1(-delta)))
    sign = jnp.where(lp > ln, 1.0, jnp.where(lp < ln, -1.0, 0.0))
    return sign, mag


def _masked_lse(x: jax.Array, keep: jax.Array, axis: int) -> jax.Array:
    x = jnp.where(keep, x, NEG_INF)
    m = jnp.max(x, axis=axis, keepdims=True)
    m_safe = jnp.where(jnp.isfinite(m), m, 0.0)
    out = jnp.log(jnp.sum(jnp.exp(x - m_safe), axis=axis)) + jnp.squeeze(m_safe, axis)
    return out


def log_pairwise(log_s: jax.Array, g: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """sign and log|·| of D_it = Σ_u s_iu (g_it − g_iu), for every token t (n, T); sign 0, log −inf if D = 0.

    D is summed term by term in the pairwise form (never as g_t − Σ_u s_u g_u, which cancels), with a
    common scale removed: D_t = e^{c_t} Σ_u e^{log s_u − c_t} (g_t − g_u), c_t = max log s_u over the tokens
    u with g_u ≠ g_t (the only ones that contribute). Every term is then ≤ max|g_t − g_u| and the largest
    contributing s_u enters with weight 1, so the terms that underflow are below 1e−308 of the sum and the
    sum keeps its relative accuracy at any saturation. c_t takes only two values per sequence: the largest
    log s (token u*), or, for the tokens tied in g with u*, the largest log s outside that tie; so the
    exponentials are two per token, not one per pair.
    """
    ls = jnp.where(mask, log_s, NEG_INF)
    g = jnp.where(mask, g, 0.0)
    top = jnp.argmax(ls, axis=1)[:, None]  # u*, the most attended token
    same = g == jnp.take_along_axis(g, top, axis=1)  # tokens tied in g with u* (u* included)
    ls2 = jnp.where(same, NEG_INF, ls)
    m1 = jnp.take_along_axis(ls, top, axis=1)
    m2 = jnp.max(ls2, axis=1, keepdims=True)
    m1 = jnp.where(jnp.isfinite(m1), m1, 0.0)
    m2 = jnp.where(jnp.isfinite(m2), m2, 0.0)
    # weights ≤ 1: [..., 0] for the rows t outside the tie with u*, [..., 1] for the rows tied with u*
    # (the tie itself contributes 0); both sums Σ_u e_u (g_t − g_u) as one batched product with the pairs.
    e = jnp.stack([jnp.exp(ls - m1), jnp.exp(ls2 - m2)], axis=-1)  # (n, u, 2)
    D2 = jnp.einsum("itu,iuk->itk", g[:, :, None] - g[:, None, :], e)
    D = jnp.where(mask, jnp.where(same, D2[..., 1], D2[..., 0]), 0.0)
    nz = D != 0
    mag = jnp.where(nz, jnp.log(jnp.abs(jnp.where(nz, D, 1.0))) + jnp.where(same, m2, m1), NEG_INF)
    return jnp.sign(D), mag


def log_gap_to_top(log_s: jax.Array, g: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(g_top, log Σ_u s_u (g_top − g_u)) per sequence: the saturation gap, exact in log space."""
    gm = jnp.where(mask, g, NEG_INF)
    top = jnp.max(gm, axis=1)
    gap = top[:, None] - gm
    terms = log_s + jnp.log(jnp.where(mask & (gap > 0), gap, 1.0))
    return top, _masked_lse(terms, mask & (gap > 0), axis=1)


# ---- stable gradient -----------------------------------------------------------------------------------


class ScaledGrad(NamedTuple):
    """∇_b L = exp(log_scale[b]) · g[b] for every trainable block b (‖g[b]‖ = O(1))."""

    g: dict
    log_scale: dict
    loss: jax.Array


def _scaled(coef_log: jax.Array, coef_sign: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Remove the common scale M = max log|c|: c = e^M · sign · e^{log|c| − M}."""
    M = jnp.max(coef_log)
    M = jnp.where(jnp.isfinite(M), M, 0.0)
    return coef_sign * jnp.exp(coef_log - M), M


def stable_grad(model: Model, params: dict, data: Data) -> ScaledGrad:
    """The gradient of L by (★), block by block, with its scale kept as a logarithm (module docstring)."""
    fw = forward(model, params, data)
    n = data.Y.shape[0]
    log_scale_red = -jnp.log(n) if model.reduction == "mean" else 0.0
    gt = data.Y[:, None] * jnp.einsum("itd,id->it", data.X, fw.hgrad)  # γ̃ (n, T)
    sgn, lmag = log_pairwise(fw.log_s, gt, data.mask)
    ldl = jax_log_neg_dloss(model.loss, data.Y * fw.f)  # log|ℓ'| (n,)
    clog = ldl[:, None] + fw.log_s + lmag + log_scale_red
    clog = jnp.where(data.mask & (sgn != 0), clog, NEG_INF)
    # ℓ' < 0, so ∂L/∂a_it has the sign opposite to D_it.
    c, M = _scaled(clog, -sgn)
    P = model.parameterization
    g: dict = {}
    if P == "prompt":
        g["p"] = data.K.T @ jnp.einsum("it,itd->d", c, data.X)
    else:
        GW = jnp.einsum("it,itd,ie->de", c, data.X, data.Z)
        if P == "combined":
            g["W"] = GW
        elif P == "factored":
            g["K"] = GW @ params["Q"]
            g["Q"] = GW.T @ params["K"]
        else:
            gw = jnp.diagonal(GW)
            g["k"] = gw * params["q"]
            g["q"] = gw * params["k"]
    ls = {b: M for b in g}
    if model.train_v:
        # ∂L/∂v = scale · Σ_i ℓ'(Y_i f_i) Y_i u_i : no cancellation here, only the scale is kept apart.
        bl = ldl + log_scale_red
        b, Mv = _scaled(bl, -data.Y)
        g["v"] = b @ fw.u
        ls["v"] = Mv
    return ScaledGrad(g=g, log_scale=ls, loss=fw.loss)


def add_ridge(sg: ScaledGrad, params: dict, ridge: float) -> ScaledGrad:
    """∇(L + λ‖θ‖²/2) = ∇L + λθ, kept in the scaled form (λ may be far below the loss gradient or above)."""
    if ridge == 0.0:
        return sg
    lr = jnp.log(ridge)
    g, ls = {}, {}
    for b in sg.g:
        M = jnp.maximum(sg.log_scale[b], lr)
        g[b] = sg.g[b] * jnp.exp(sg.log_scale[b] - M) + params[b] * jnp.exp(lr - M)
        ls[b] = M
    return ScaledGrad(g=g, log_scale=ls, loss=sg.loss + 0.5 * ridge * sum(jnp.sum(params[b] ** 2) for b in g))


def log_block_norms(sg: ScaledGrad) -> dict:
    """log‖∇_b L‖ for every block (−inf for an exactly zero block)."""
    out = {}
    for b, gb in sg.g.items():
        nrm = jnp.sqrt(jnp.sum(gb**2))
        out[b] = jnp.where(nrm > 0, jnp.log(jnp.where(nrm > 0, nrm, 1.0)), NEG_INF) + sg.log_scale[b]
    return out


def log_grad_norm(sg: ScaledGrad) -> jax.Array:
    """log‖∇L‖ over all trained blocks together."""
    lb = jnp.stack(list(log_block_norms(sg).values()))
    return 0.5 * jax.scipy.special.logsumexp(2.0 * lb)


def gradient(model: Model, params: dict, data: Data) -> dict:
    """∇L as plain arrays (e^scale · g); may underflow to 0 deep in saturation, where the scaled form does not."""
    sg = stable_grad(model, params, data)
    return {b: sg.g[b] * jnp.exp(sg.log_scale[b]) for b in sg.g}


# ---- quantities a run records ----------------------------------------------------------------------------


def excess_loss(model: Model, params: dict, data: Data, fw: Forward | None = None) -> jax.Array:
    """L − L* for the linear head, without cancellation (NaN for nonlinear heads, where L* is not ℓ(γ_opt)).

    Per sample: Y f_i = γ_top − G_i with G_i = Σ_u s_iu (γ_top − γ_iu) ≥ 0 formed in log space, and
    ℓ(γ_top − G) − ℓ(γ_top) by ``losses.jax_excess``. L* uses the current head v.
    """
    if model.head != "linear":
        return jnp.nan
    fw = forward(model, params, data) if fw is None else fw
    v = _head_v(model, params, data)
    gamma = data.Y[:, None] * (data.X @ v)
    top, lgap = log_gap_to_top(fw.log_s, gamma, data.mask)
    gap = jnp.exp(lgap)
    scale = 1.0 / data.Y.shape[0] if model.reduction == "mean" else 1.0
    return scale * jnp.sum(jax_excess(model.loss, top, gap))


def log_saturation(model: Model, params: dict, data: Data, fw: Forward | None = None) -> jax.Array:
    """log E with E = scale · Σ_i |ℓ'(Y_i f_i)| · Σ_u s_iu |γ̃_i,top − γ̃_iu|: a sign-definite saturation measure
    (zero exactly when attention is one-hot on the top token of every sequence)."""
    fw = forward(model, params, data) if fw is None else fw
    gt = data.Y[:, None] * jnp.einsum("itd,id->it", data.X, fw.hgrad)
    _, lgap = log_gap_to_top(fw.log_s, gt, data.mask)
    ldl = jax_log_neg_dloss(model.loss, data.Y * fw.f)
    red = -jnp.log(data.Y.shape[0]) if model.reduction == "mean" else 0.0
    return jax.scipy.special.logsumexp(ldl + lgap) + red

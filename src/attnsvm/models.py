"""One-layer softmax attention: the model (a parameterization and an objective), and its gradient in log space.

The parameterizations are modules of :mod:`attnsvm.attention` (θ → W(θ) → logits), the objective is
:class:`attnsvm.objectives.MarginObjective` (logits → risk and ∂L/∂a in log space); :func:`stable_grad`
pulls ∂L/∂a back through the logits with ``jax.vjp``.

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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._jax import to_device
from .attention import PARAMETERIZATIONS as _REGISTRY
from .attention import Parameterization
from .logspace import NEG_INF, log_gap_to_top, masked_lse, pairwise, scaled  # noqa: F401 (re-exported)
from .losses import check_loss, check_reduction, jax_log_excess, jax_log_loss, jax_log_neg_dloss
from .objectives import Forward, MarginObjective
from .objectives import log_softmax as _log_softmax
from .problem import AttentionProblem

#: the single-head parameterizations by name (``"multihead"`` and user classes are in ``attention``)
PARAMETERIZATIONS: tuple[str, ...] = ("prompt", "combined", "factored", "diagonal")
HEADS: tuple[str, ...] = ("linear", "relu")
#: trainable blocks of each single-head parameterization (v is added when the linear head is trained)
BLOCKS: dict[str, tuple[str, ...]] = {k: _REGISTRY[k].blocks for k in PARAMETERIZATIONS}


@dataclass(frozen=True)
class Model:
    """A static model description (hashable: it is a compile-time constant of the engines).

    parameterization: a name (prompt | combined | factored | diagonal | multihead) or a
        :class:`attnsvm.attention.Parameterization` instance (a user's own, see that module).
    loss: logistic | exponential | correlation;  reduction: mean | sum.
    head: linear | relu;  train_v: train the linear head v jointly (P1 joint (v, p)).
    hidden: m, the width of K and Q for the factored model (default d).
    heads, head_parameterization: for ``"multihead"``: H heads, each ``combined`` or ``factored``.
    objective: an objective object (:mod:`attnsvm.objectives`); default the margin loss
        ``MarginObjective(loss, reduction, head, train_v)``.
    """

    parameterization: Any = "combined"
    loss: str = "logistic"
    reduction: str = "mean"
    head: str = "linear"
    train_v: bool = False
    hidden: int | None = None
    heads: int = 1
    head_parameterization: str = "combined"
    objective: Any = None

    def __post_init__(self) -> None:
        P = self.parameterization
        if isinstance(P, Parameterization):
            param = P
        elif P in _REGISTRY:
            cls = _REGISTRY[P]
            if P == "multihead":
                param = cls(heads=self.heads, head_parameterization=self.head_parameterization, hidden=self.hidden)
            elif P == "factored":
                param = cls(hidden=self.hidden)
            else:
                param = cls()
        else:
            raise ValueError(f"parameterization must be one of {tuple(_REGISTRY)} or a Parameterization, got {P!r}")
        check_loss(self.loss)
        check_reduction(self.reduction)
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.train_v and self.head != "linear":
            raise ValueError("train_v: only the linear head can be trained")
        if self.hidden is not None and self.hidden < 1:
            raise ValueError(f"hidden: must be ≥ 1, got {self.hidden}")
        if param.heads > 1 or P == "multihead":
            if self.head != "linear" or self.train_v:
                raise ValueError("multihead: each head has its own fixed value vector v_h (linear head, not trained)")
        object.__setattr__(self, "_param", param)
        if self.objective is None:
            object.__setattr__(self, "objective", MarginObjective(self.loss, self.reduction, self.head, self.train_v))

    @property
    def param(self) -> Parameterization:
        """The parameterization object (θ → W(θ) → logits)."""
        return self._param  # type: ignore[attr-defined]

    @property
    def name(self) -> str:
        return self.param.name

    @property
    def multihead(self) -> bool:
        return self.name == "multihead"

    @property
    def blocks(self) -> tuple[str, ...]:
        return tuple(self.param.blocks) + self.objective.own_blocks()

    @property
    def attention_blocks(self) -> tuple[str, ...]:
        return tuple(self.param.blocks)

    def param_shapes(self, d: int, d_key: int | None = None) -> dict[str, tuple[int, ...]]:
        shapes = dict(self.param.shapes(d, d_key or d))
        if self.train_v:
            shapes["v"] = (d,)
        return shapes


class Data(NamedTuple):
    """The arrays of one problem as seen by the JAX engines (a pytree; stack them to batch trials)."""

    X: jax.Array  # (n, T, d)
    Y: jax.Array  # (n,)
    Z: jax.Array  # (n, d) queries (zeros for the prompt model, which has none)
    K: jax.Array  # (d, d') fixed key matrix of the prompt model
    mask: jax.Array  # (n, T) bool
    v: jax.Array  # (d,) fixed linear head (the initial v when v is trained); (H, d) value vectors of H heads
    V: jax.Array  # (d, m) ReLU head matrix (zeros (d, 1) for the linear head)
    a: jax.Array  # (m,) ReLU head output weights
    aux: Any = ()  # an objective's own arrays (a pytree; e.g. the label positions of next-token prediction)


def head_values(problem: AttentionProblem, heads: int, seed: int = 0) -> np.ndarray:
    """The default value vectors of H heads (H, d): head 0 has the problem's v (so H = 1 is the single-head
    model), head h ≥ 1 a Gaussian direction of the same norm drawn from the stream (seed, h)."""
    v = np.asarray(problem.v, dtype=np.float64)
    out = [v]
    for h in range(1, heads):
        g = np.random.default_rng([seed, h]).standard_normal(v.shape)
        out.append(g / np.linalg.norm(g) * np.linalg.norm(v))
    return np.stack(out)


def model_data(problem: AttentionProblem, model: Model, V: np.ndarray | None = None,
               a: np.ndarray | None = None, values: np.ndarray | None = None, aux=(), device: bool = True) -> Data:
    """Convert a validated problem (and the ReLU head matrix V (d, m), output weights a (m,); the value
    vectors (H, d) of a multi-head model, default :func:`head_values`) to ``Data``.

    device=False keeps the fields as NumPy arrays (to be stacked by :func:`stack_data`, which moves them to
    the device once: one transfer per field instead of one per field and problem)."""
    d = problem.d
    Z = problem.queries if model.param.needs_queries else np.zeros((problem.n, d))
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
    v = problem.v
    if model.multihead:
        H = model.param.heads
        v = head_values(problem, H) if values is None else np.asarray(values, dtype=np.float64)
        if v.shape != (H, d) or not np.all(np.isfinite(v)):
            raise ValueError(f"values: expected finite value vectors of shape ({H}, {d}), got {v.shape}")
    elif values is not None:
        raise ValueError("values: only a multi-head model has value vectors per head")
    fields = tuple(np.asarray(x) for x in (problem.X, problem.Y, Z, problem.keys, problem.mask, v, V, a))
    if not device:
        return Data(*fields, aux=aux)
    return Data(*to_device(fields), aux=to_device(aux))


def stack_data(items: list[Data]) -> Data:
    """Stack per-trial ``Data`` along a new leading axis (all problems must share one shape)."""
    shapes = {tuple(x.shape for x in jax.tree.leaves(tuple(it))) for it in items}
    if len(shapes) != 1:
        raise ValueError("problems: every trial's problem must have the same shapes (n, T, d) to be batched")
    # stacked in NumPy and moved once: jnp.stack of many arrays compiles a program per field
    fields = to_device([np.stack([np.asarray(x) for x in xs]) for xs in zip(*(it[:-1] for it in items),
                                                                              strict=True)])
    aux = to_device(jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *(it.aux for it in items)))
    return Data(*fields, aux=aux)


# ---- forward ------------------------------------------------------------------------------------------


def attention_weights(model: Model, params: dict) -> jax.Array:
    """W(θ) (d×d; (H, d, d) for H heads), p for the prompt model."""
    return model.param.weights(params)


def logits(model: Model, params: dict, data: Data) -> jax.Array:
    """a_it (n, T), (H, n, T) for H heads; −inf on padded tokens."""
    return jnp.where(data.mask, model.param.logits(params, data), NEG_INF)


def log_softmax(model: Model, params: dict, data: Data) -> jax.Array:
    """log s_it (n, T) ((H, n, T) for H heads), −inf on padded tokens."""
    return _log_softmax(logits(model, params, data))


def forward(model: Model, params: dict, data: Data) -> Forward:
    return model.objective.forward(logits(model, params, data), params, data)


def loss(model: Model, params: dict, data: Data) -> jax.Array:
    """L(θ) = scale · Σ_i ℓ(Y_i f_i), evaluated directly (used for values and finite-difference checks)."""
    return forward(model, params, data).loss


# ---- stable gradient -----------------------------------------------------------------------------------


class ScaledGrad(NamedTuple):
    """∇_b L = exp(log_scale[b]) · g[b] for every trainable block b (‖g[b]‖ = O(1))."""

    g: dict
    log_scale: dict
    loss: jax.Array


def stable_grad(model: Model, params: dict, data: Data) -> ScaledGrad:
    """The gradient of L, block by block, with its scale kept as a logarithm.

    The objective gives ∂L/∂a = e^M c in log space (:mod:`attnsvm.objectives`, equation (★)); c is pulled
    back through the parameterization's logits with ``jax.vjp`` (for logits x_itᵀ W(θ) z_i: through W(θ),
    after ∂L/∂W = Σ c x zᵀ). The pullback is linear, so the common scale e^M stays apart and the direction
    is exact at any ‖W‖."""
    param = model.param
    att = {b: params[b] for b in model.attention_blocks}
    if param.bilinear:
        # a_it = x_itᵀ W(θ) z_i: ∂L/∂W = e^M Σ_it c_it x_it z_iᵀ, then jax.vjp through W(θ)
        cot = model.objective.cotangent(logits(model, params, data), params, data)
        GW = jnp.einsum("...it,itd,ie->...de", cot.c, data.X, data.Z)
        _, pullback = jax.vjp(param.weights, att)
        (g,) = pullback(GW)
    else:
        a, pullback = jax.vjp(lambda p: param.logits(p, data), att)
        cot = model.objective.cotangent(jnp.where(data.mask, a, NEG_INF), params, data)
        (g,) = pullback(cot.c)
    g = dict(g)
    ls = {b: cot.log_scale for b in g}
    for b, (gb, lb) in cot.extra.items():
        g[b], ls[b] = gb, lb
    return ScaledGrad(g=g, log_scale=ls, loss=cot.loss)


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


def _single_linear(model: Model) -> bool:
    """L* = scale · Σ_i ℓ(γ_i,top) holds: one linear head and the margin objective."""
    return (model.head == "linear" and not (model.multihead and model.param.heads > 1)
            and isinstance(model.objective, MarginObjective))


def log_loss(model: Model, params: dict, data: Data, fw: Forward | None = None) -> jax.Array:
    """log L = log scale + logsumexp_i log ℓ(Y_i f_i), finite where L itself overflows or underflows float64
    (an exponential loss with margins of −1e3 is e^{1e3}). NaN for the correlation loss (L may be ≤ 0;
    L itself is bounded and exact there)."""
    fw = forward(model, params, data) if fw is None else fw
    if not isinstance(model.objective, MarginObjective):
        return jnp.log(fw.loss)  # other objectives (next-token) are log-losses of probabilities: bounded
    if model.loss == "correlation":
        return jnp.nan
    red = -jnp.log(data.Y.shape[0]) if model.reduction == "mean" else 0.0
    return jax.scipy.special.logsumexp(jax_log_loss(model.loss, data.Y * fw.f)) + red


def log_excess_loss(model: Model, params: dict, data: Data, fw: Forward | None = None) -> jax.Array:
    """log(L − L*) for the linear head, without cancellation and without overflow (−inf when L = L*
    exactly; NaN for nonlinear heads and several heads, where L* is not scale · Σ_i ℓ(γ_i,top)).

    Per sample: Y f_i = γ_top − G_i with G_i = Σ_u s_iu (γ_top − γ_iu) ≥ 0 kept as log G_i, and
    log(ℓ(γ_top − G) − ℓ(γ_top)) by ``losses.jax_log_excess``; the samples are summed by log-sum-exp.
    L* uses the current head v.
    """
    if not _single_linear(model):
        return jnp.nan
    fw = forward(model, params, data) if fw is None else fw
    v = model.objective._v(params, data)
    if model.multihead:  # one head: the single-head model
        v, fw = data.v[0], fw._replace(log_s=fw.log_s[0])
    gamma = data.Y[:, None] * (data.X @ v)
    top, lgap = log_gap_to_top(fw.log_s, gamma, data.mask)
    red = -jnp.log(data.Y.shape[0]) if model.reduction == "mean" else 0.0
    terms = jax_log_excess(model.loss, top, lgap)
    m = jnp.max(terms)
    # logsumexp of an all −inf vector is −inf (L = L* exactly), not NaN
    return jnp.where(jnp.isneginf(m), -jnp.inf, jax.scipy.special.logsumexp(terms)) + red


def excess_loss(model: Model, params: dict, data: Data, fw: Forward | None = None) -> jax.Array:
    """L − L* = exp(:func:`log_excess_loss`) (+inf when it exceeds float64, which the run's reports flag from
    the finite log; NaN for nonlinear heads, where L* is not ℓ(γ_opt))."""
    return jnp.exp(log_excess_loss(model, params, data, fw))


def log_saturation(model: Model, params: dict, data: Data, fw: Forward | None = None) -> jax.Array:
    """log E with E = scale · Σ_i |ℓ'(Y_i f_i)| · Σ_u s_iu |γ̃_i,top − γ̃_iu|: a sign-definite saturation measure
    (zero exactly when attention is one-hot on the top token of every sequence). Single head."""
    fw = forward(model, params, data) if fw is None else fw
    gt = data.Y[:, None] * jnp.einsum("itd,id->it", data.X, fw.hgrad)
    _, lgap = log_gap_to_top(fw.log_s, gt, data.mask)
    ldl = jax_log_neg_dloss(model.loss, data.Y * fw.f)
    red = -jnp.log(data.Y.shape[0]) if model.reduction == "mean" else 0.0
    return jax.scipy.special.logsumexp(ldl + lgap) + red

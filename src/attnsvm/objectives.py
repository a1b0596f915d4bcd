"""Objectives: what the attention output is trained for, as a function of the logits, in log space.

An objective maps the masked logits a (n, T) — or (H, n, T) for H heads — to the risk and to its
cotangent ∂L/∂a in *scaled form* (c, M) with ∂L/∂a = e^M · c and max|c| = 1, computed without
cancellation. The engine pulls c back to the parameters through the parameterization's logits with
``jax.vjp`` (:func:`attnsvm.models.stable_grad`): an objective never sees θ, except its own trained
parameters (the head v). To add an objective (e.g. next-token prediction over causal self-attention, with
loss −log Σ_{t: x_t = y} s_t), write one module with a frozen dataclass implementing

* ``forward(a, params, data) -> Forward`` — log s, the output and the risk (values, records);
* ``cotangent(a, params, data) -> Cotangent`` — (c, M) as above, the risk, and the scaled gradients of the
  objective's own blocks (``extra``: block → (g, log_scale));
* ``own_blocks(model) -> tuple`` — the objective's trained blocks (e.g. ``("v",)``).

:class:`MarginObjective` is ℓ(Y_i f_i) with f_i = h(X_iᵀ s_i) (linear head vᵀu or ReLU head aᵀReLU(Vᵀu)),
summed over the heads for multi-head attention: f_i = Σ_h v_hᵀ X_iᵀ s_hi. Its cotangent is

    ∂L/∂a_hit = scale · ℓ'(Y_i f_i) · s_hit · Σ_u s_hiu (γ̃_hit − γ̃_hiu),     γ̃_hit = Y_i ∇h(u_hi)ᵀ x_it,  (★)

with every factor that can leave float64 kept as a logarithm (log s from log-softmax, log|ℓ'| in closed form,
the scale of the pairwise sum from :func:`attnsvm.logspace.pairwise`), so the direction stays exact at any
saturation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .logspace import pairwise, scaled, scaled_product
from .losses import jax_log_neg_dloss, jax_loss


class Forward(NamedTuple):
    log_s: jax.Array  # (n, T) or (H, n, T)
    u: jax.Array  # (n, d) X_iᵀ s_i, or (H, n, d)
    f: jax.Array  # (n,)
    hgrad: jax.Array  # (n, d) ∇h(u_i), or (H, n, d) (v_h per head)
    loss: jax.Array  # ()


class Cotangent(NamedTuple):
    """∂L/∂a = e^{log_scale} · c;  extra: the objective's own blocks, name → (g, log_scale)."""

    c: jax.Array
    log_scale: jax.Array
    loss: jax.Array
    extra: dict


def log_softmax(a: jax.Array) -> jax.Array:
    """log s over the tokens (last axis); a is −inf on padded tokens."""
    return a - jax.scipy.special.logsumexp(a, axis=-1, keepdims=True)


@dataclass(frozen=True)
class MarginObjective:
    """L = scale · Σ_i ℓ(Y_i f_i) (module docstring). loss: logistic | exponential | correlation;
    reduction: mean (scale 1/n) | sum;  head: linear | relu;  train_v: the linear head is trained."""

    loss: str = "logistic"
    reduction: str = "mean"
    head: str = "linear"
    train_v: bool = False

    def own_blocks(self) -> tuple[str, ...]:
        return ("v",) if self.train_v else ()

    def _v(self, params: dict, data) -> jax.Array:
        return params["v"] if self.train_v else data.v

    def head_output(self, params: dict, data, u: jax.Array) -> tuple[jax.Array, jax.Array]:
        """f_i = h(u_i) and ∇h(u_i) for u (n, d); for H heads u is (H, n, d), f = Σ_h v_h·u_h."""
        if u.ndim == 3:
            v = data.v  # (H, d): fixed value vectors
            return jnp.einsum("hid,hd->i", u, v), jnp.broadcast_to(v[:, None, :], u.shape)
        if self.head == "linear":
            v = self._v(params, data)
            return u @ v, jnp.broadcast_to(v, u.shape)
        pre = u @ data.V  # (n, m)
        f = jnp.maximum(pre, 0.0) @ data.a
        grad = (jnp.where(pre > 0, 1.0, 0.0) * data.a) @ data.V.T
        return f, grad

    def scale(self, n: int) -> float:
        return 1.0 / n if self.reduction == "mean" else 1.0

    def log_scale(self, n: int):
        return -jnp.log(n) if self.reduction == "mean" else 0.0

    def forward(self, a: jax.Array, params: dict, data) -> Forward:
        log_s = log_softmax(a)
        s = jnp.exp(log_s)
        u = jnp.einsum("...it,itd->...id", s, data.X)
        f, hgrad = self.head_output(params, data, u)
        if a.ndim == 2 and self.head == "linear" and not self.train_v:
            # f_i = Σ_t s_it (x_itᵀv): the same number as (X_iᵀ s_i)ᵀv to rounding, with X v fixed during
            # training (computed once per program), so a training step needs no product with X for f, and u
            # is left out of the step where nothing reads it
            f = jnp.sum(s * (data.X @ data.v), axis=-1)
        loss = self.scale(data.Y.shape[0]) * jnp.sum(jax_loss(self.loss, data.Y * f))
        return Forward(log_s, u, f, hgrad, loss)

    def scores(self, fw: Forward, data) -> jax.Array:
        """γ̃_(h)it = Y_i ∇h(u_(h)i)ᵀ x_it, (n, T) or (H, n, T)."""
        return data.Y[:, None] * jnp.einsum("itd,...id->...it", data.X, fw.hgrad)

    def cotangent(self, a: jax.Array, params: dict, data) -> Cotangent:
        fw = self.forward(a, params, data)
        red = self.log_scale(data.Y.shape[0])
        gt = self.scores(fw, data)
        # ∂L/∂a_it = scale · ℓ'(Y_i f_i) · s_it · D_it with D = D̃ e^{offset}: every factor that can leave
        # float64 is a logarithm (log scale, log|ℓ'|, log s, offset), D̃ is O(1); ℓ' < 0, hence −D̃.
        if a.ndim == 3:
            D, off = jax.vmap(lambda ls, g: pairwise(ls, g, data.mask))(fw.log_s, gt)
        else:
            D, off = pairwise(fw.log_s, gt, data.mask)
        ldl = jax_log_neg_dloss(self.loss, data.Y * fw.f)  # log|ℓ'| (n,)
        c, M = scaled_product(ldl[:, None] + fw.log_s + off + red, -D)
        extra = {}
        if self.train_v:
            # ∂L/∂v = scale · Σ_i ℓ'(Y_i f_i) Y_i u_i : no cancellation here, only the scale is kept apart.
            b, Mv = scaled(ldl + red, -data.Y)
            extra["v"] = (b @ fw.u, Mv)
        return Cotangent(c, M, fw.loss, extra)


__all__ = ["Cotangent", "Forward", "MarginObjective", "log_softmax"]

"""The next-token objective: from attention logits to the loss and its gradient ∂L/∂a, in log space.

Self-attention with the last token as query gives the logits a_it = E_{x_it}ᵀ W E_{k_i} and the attention
s_i = softmax(a_i) over the real tokens of sequence i. Two classifiers read the attention:

* ``identity`` (the authors' global-convergence setting): p(y | X_i) = Σ_{t ∈ Y_i} s_it, the attention mass on
  the occurrences Y_i = {t : x_it = y_i} of the label, with the log loss L_i = −log p(y_i | X_i). Writing
  ℓ⁺ = LSE_{t ∈ Y_i} a_it and ℓ⁻ = LSE_{t ∉ Y_i} a_it (over real tokens),

      L_i = log(1 + exp(ℓ⁻ − ℓ⁺)),
      ∂L_i/∂a_it = s_it                              for t ∉ Y_i,
      ∂L_i/∂a_it = −exp(a_it − LSE a_i + ℓ⁻ − ℓ⁺)     for t ∈ Y_i   (= s_it − s_it/p, without cancelling),

  every factor a log-softmax, so the loss and the gradient keep their relative accuracy however saturated
  the attention is. The gradient is returned as exp(m)·g̃ with g̃ of order one (m the largest log|∂L/∂a|), so
  a normalized step never sees an underflowed gradient.
* ``fixed``: a fixed classifier C ∈ R^{K'×d} reads the attention output, o_i = C X_iᵀ s_i ∈ R^{K'}, with the
  cross-entropy L_i = −log softmax(o_i)_{y_i} (``loss = "log"``) or the authors' squared loss
  L_i = (1 − softmax(o_i)_{y_i})² (``loss = "squared"``, their local-convergence notebook). With q_i = ∂L_i/∂o_i
  (finite) and c_t = C x_it, the gradient is written without the cancellation of c_t − o_i:

      ∂L_i/∂a_it = s_it ⟨q_i, c_t − Σ_u s_iu c_u⟩ = Σ_u exp(log s_it + log s_iu) ⟨q_i, c_t − c_u⟩,

  so once the attention saturates (s ≈ one-hot) the gradient stays exact in relative terms instead of
  being rounding noise of size 1e−16 (which would drive a normalized step in a random direction).

The objective is the mean over samples. Everything here is a pure function of arrays (jit/vmap-able).
``stable = False`` differentiates the textbook formulas instead (softmax probabilities, −log(p + 2.2e−16) for
the identity classifier, autodiff through the softmax), i.e. the authors' arithmetic, to show what it costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._jax import to_device
from .ntp import NTPProblem
from .objectives import Cotangent, Forward
from .problem import AttentionProblem

CLASSIFIERS = ("identity", "fixed")
LOSSES = ("log", "squared")


class NTPData(NamedTuple):
    """Arrays of one next-token problem for the objective: X (n, T, d) embedded tokens, z (n, d) queries,
    mask (n, T) real tokens, label (n, T) positions of the label, y (n,) label ids, C (K', d) classifier."""

    X: jax.Array
    z: jax.Array
    mask: jax.Array
    label: jax.Array
    y: jax.Array
    C: jax.Array


@dataclass(frozen=True)
class NextToken:
    """The next-token objective (module docstring). classifier: ``identity`` | ``fixed``; loss: ``log`` |
    ``squared`` (fixed classifier only); C: the fixed classifier (K', d), default the embeddings E."""

    classifier: str = "identity"
    loss: str = "log"
    C: np.ndarray | None = field(default=None, compare=False)
    stable: bool = True

    def __post_init__(self) -> None:
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier: must be one of {', '.join(CLASSIFIERS)}, got {self.classifier!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.classifier == "identity" and self.loss != "log":
            raise ValueError("loss: the identity classifier is trained with the log loss −log p(y|X) only")
        if self.C is not None and self.classifier == "identity":
            raise ValueError("C: a classifier matrix is only used with classifier = 'fixed'")

    def data(self, problem: NTPProblem) -> NTPData:
        """The arrays of ``problem`` (float64; call inside a float64 context)."""
        C = problem.E if self.C is None else np.asarray(self.C, dtype=np.float64)
        if C.ndim != 2 or C.shape[1] != problem.d:
            raise ValueError(f"C: expected a (K', {problem.d}) classifier, got shape {C.shape}")
        if self.classifier == "fixed" and problem.next.max() >= C.shape[0]:
            raise ValueError(f"C: has {C.shape[0]} rows but a label is {int(problem.next.max())}")
        return NTPData(*to_device((problem.X, problem.queries, problem.mask, problem.tokens == problem.next[:, None],
                                   problem.next, C)))

    def loss_and_grad(self, a: jax.Array, data: NTPData) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(L, g̃, m) with L the mean loss and ∂L/∂a = exp(m)·g̃ (n, T), zero on padding."""
        if not self.stable:
            L, g = jax.value_and_grad(naive_loss)(a, data, self.classifier, self.loss)
            return L, g, jnp.zeros(())
        if self.classifier == "identity":
            return identity_loss_and_grad(a, data.mask, data.label)
        return fixed_loss_and_grad(a, data, self.loss)

    # ---- the engine's objective protocol (attnsvm.objectives): train(ntp_problems, Model(objective=...)) ----
    def own_blocks(self) -> tuple[str, ...]:
        return ()

    def attention_problem(self, problem: NTPProblem) -> AttentionProblem:
        """What the engine's parameterizations read: the embedded tokens X_i, the queries z_i = E_{k_i} and
        the mask (labels Y and head v are unused by this objective)."""
        return AttentionProblem(X=problem.X, Y=np.ones(problem.n), v=np.zeros(problem.d), Z=problem.queries,
                                mask=problem.mask)

    def data_aux(self, problem: NTPProblem) -> dict:
        """The objective's own arrays (``Data.aux``): label positions, labels, classifier, top-SCC tokens."""
        C = problem.E if self.C is None else np.asarray(self.C, dtype=np.float64)
        if C.ndim != 2 or C.shape[1] != problem.d:
            raise ValueError(f"C: expected a (K', {problem.d}) classifier, got shape {C.shape}")
        return {"label": problem.tokens == problem.next[:, None], "y": problem.next, "C": C,
                "top": problem.top_scc_mask}

    def default_selection(self, problem: NTPProblem) -> np.ndarray:
        """The reference token of each sequence (``alpha`` of the records): the first occurrence of its label."""
        return np.argmax(problem.tokens == problem.next[:, None], axis=1)

    def _ntp_data(self, data) -> NTPData:
        aux = data.aux
        return NTPData(X=data.X, z=data.Z, mask=data.mask, label=aux["label"], y=aux["y"], C=aux["C"])

    def forward(self, a: jax.Array, params: dict, data) -> Forward:
        """log s, the attention output u_i = X_iᵀ s_i and the risk (f and ∇h are not defined here: zeros)."""
        log_s = a - _lse(a, data.mask)[:, None]
        log_s = jnp.where(data.mask, log_s, -jnp.inf)
        u = jnp.einsum("it,itd->id", jnp.exp(log_s), data.X)
        loss = self.loss_value(a, self._ntp_data(data))
        return Forward(log_s, u, jnp.zeros(a.shape[0]), jnp.zeros_like(u), loss)

    def cotangent(self, a: jax.Array, params: dict, data) -> Cotangent:
        L, g, m = self.loss_and_grad(a, self._ntp_data(data))
        return Cotangent(g, m, L, {})

    def log_saturation(self, fw: Forward, data) -> jax.Array:
        """log of the mean attention mass outside the top SCC of each sequence (→ −∞ with hard retrieval)."""
        out = data.mask & ~data.aux["top"]
        per = _lse(fw.log_s, out)
        return jax.scipy.special.logsumexp(per) - jnp.log(per.shape[0])

    def log_loss_terms(self, a: jax.Array, data) -> tuple[jax.Array, jax.Array]:
        """(sign, log) of each sample's term of the mean risk, for the regularization path's line search:
        log L_i − log n with L_i = softplus(ℓ⁻ − ℓ⁺) (identity; ≈ ℓ⁻ − ℓ⁺ deep in saturation, kept exact)."""
        nd = self._ntp_data(data)
        n = a.shape[0]
        if self.classifier == "identity":
            dlt = _lse(a, nd.mask & ~nd.label) - _lse(a, nd.mask & nd.label)
            lt = jnp.where(dlt < -30.0, dlt + jnp.log1p(-0.5 * jnp.exp(dlt)),
                           jnp.log(jax.nn.softplus(jnp.minimum(dlt, 700.0))))
        else:
            log_s, c, o = _fixed_parts(a, nd)
            logp = jax.nn.log_softmax(o, axis=-1)[jnp.arange(n), nd.y]
            lt = jnp.log(-logp) if self.loss == "log" else 2.0 * jnp.log(-jnp.expm1(logp))
        finite = jnp.isfinite(lt)
        return jnp.where(finite, 1.0, 0.0), jnp.where(finite, lt - jnp.log(n), -jnp.inf)

    def loss_value(self, a: jax.Array, data: NTPData) -> jax.Array:
        if self.classifier == "identity":
            return identity_loss_and_grad(a, data.mask, data.label)[0]
        return fixed_loss(a, data, self.loss)


def _lse(x: jax.Array, keep: jax.Array) -> jax.Array:
    """log Σ_{keep} exp(x) over the last axis; −inf when nothing is kept."""
    x = jnp.where(keep, x, -jnp.inf)
    top = jnp.max(x, axis=-1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    return jnp.log(jnp.sum(jnp.exp(x - top), axis=-1)) + top[..., 0]


def identity_loss_and_grad(a: jax.Array, mask: jax.Array, label: jax.Array
                           ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mean log loss of the identity classifier and its scaled gradient (module docstring)."""
    n = a.shape[0]
    pos = label & mask
    neg = mask & ~label
    lp = _lse(a, pos)
    ln = _lse(a, neg)
    la = _lse(a, mask)
    d = ln - lp  # log((1 − p)/p); −inf when the label is the whole sequence
    loss = jnp.sum(jnp.where(jnp.isfinite(d), jax.nn.softplus(d), 0.0)) / n
    log_s = a - la[:, None]
    log_abs = jnp.where(neg, log_s, jnp.where(pos, log_s + d[:, None], -jnp.inf)) - jnp.log(n)
    sign = jnp.where(pos, -1.0, 1.0)
    m = jnp.max(log_abs)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    g = jnp.where(mask, sign * jnp.exp(log_abs - m), 0.0)
    return loss, g, m


def _output_loss(o: jax.Array, y: jax.Array, loss: str) -> jax.Array:
    """Σ_i ℓ(o_i, y_i): cross-entropy or (1 − softmax(o_i)_{y_i})²."""
    logp = jax.nn.log_softmax(o, axis=-1)[jnp.arange(o.shape[0]), y]
    per = -logp if loss == "log" else (-jnp.expm1(logp)) ** 2
    return jnp.sum(per)


def _fixed_parts(a: jax.Array, data: NTPData) -> tuple[jax.Array, jax.Array, jax.Array]:
    log_s = jnp.where(data.mask, a - _lse(a, data.mask)[:, None], -jnp.inf)
    c = jnp.einsum("ntd,kd->ntk", data.X, data.C)  # c_t = C x_t
    o = jnp.einsum("nt,ntk->nk", jnp.exp(log_s), c)
    return log_s, c, o


def fixed_loss(a: jax.Array, data: NTPData, loss: str) -> jax.Array:
    """Mean loss of the fixed classifier: o_i = C X_iᵀ s_i, cross-entropy or (1 − softmax(o)_y)²."""
    return _output_loss(_fixed_parts(a, data)[2], data.y, loss) / a.shape[0]


def fixed_loss_and_grad(a: jax.Array, data: NTPData, loss: str) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mean loss of the fixed classifier and its scaled gradient (module docstring)."""
    n = a.shape[0]
    log_s, c, o = _fixed_parts(a, data)
    L, q = jax.value_and_grad(_output_loss)(o, data.y, loss)
    D = jnp.einsum("nk,ntk->nt", q, c)
    D = D[:, :, None] - D[:, None, :]  # ⟨q, c_t − c_u⟩
    pair = data.mask[:, :, None] & data.mask[:, None, :] & (D != 0)
    lw = jnp.where(pair, log_s[:, :, None] + log_s[:, None, :] + jnp.log(jnp.abs(jnp.where(pair, D, 1.0))),
                   -jnp.inf) - jnp.log(n)
    m = jnp.max(lw)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    g = jnp.sum(jnp.where(pair, jnp.sign(D) * jnp.exp(lw - m), 0.0), axis=2)
    return L / n, g, m


def naive_loss(a: jax.Array, data: NTPData, classifier: str, loss: str) -> jax.Array:
    """The textbook loss, for autodiff (``stable = False``): probabilities first, logs after."""
    s = jax.nn.softmax(jnp.where(data.mask, a, -jnp.inf), axis=-1)
    if classifier == "identity":
        p = jnp.sum(jnp.where(data.label, s, 0.0), axis=-1)
        return jnp.mean(-jnp.log(p + jnp.finfo(jnp.float64).eps))
    o = jnp.einsum("nt,ntd,kd->nk", s, data.X, data.C)
    q = jax.nn.softmax(o, axis=-1)[jnp.arange(a.shape[0]), data.y]
    return jnp.mean(-jnp.log(q) if loss == "log" else (1.0 - q) ** 2)


def attention_mass(a: np.ndarray, mask: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Σ_{t ∈ keep} s_t per sample (…, n), from logits a (…, n, T), in NumPy."""
    a = np.where(mask, a, -np.inf)
    top = np.max(a, axis=-1, keepdims=True)
    e = np.exp(a - top)
    return np.sum(np.where(keep, e, 0.0), axis=-1) / np.sum(e, axis=-1)

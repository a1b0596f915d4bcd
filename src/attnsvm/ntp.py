"""Next-token prediction problems (Li, Huang, Ildiz, Rawat, Oymak 2024) and their token-priority graphs.

A problem holds a vocabulary of K token embeddings E ∈ R^{K×d} and n token sequences (ids into the
vocabulary, of possibly different lengths) each with the id y_i of its next token. The query of sequence i
is its last token k_i = x_{i,T_i}, so the attention logits of W are

    a_it = E_{x_it}ᵀ W E_{k_i},

and the identity classifier predicts p(y | X_i) = Σ_{t : x_it = y} s_it with s_i = softmax(a_i): the
attention mass on the occurrences of y. The label must therefore occur in its sequence.

Token-priority graphs: for every last token k, the directed graph G_k on the vocabulary has an edge
y_i → j for every sample i with last token k and every token j ≠ y_i of its sequence ("y_i was preferred
over j"). Its strongly connected components (SCCs) order the tokens: the condensation of G_k is acyclic,
and an SCC listed earlier in :attr:`TokenGraph.sccs` is never reachable from a later one. In sequence i
every token is reachable from y_i, so the SCC of y_i is the highest-priority SCC present in the sequence:
its tokens (``top_scc_mask``) are the ones gradient descent learns to retrieve.

Files: ``.npz`` with the keys ``E`` (K, d) float, ``tokens`` (n, T) integer with −1 as padding after a
sequence's end, ``next`` (n,) integer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

#: relative singular-value threshold for the rank of a set of constraint matrices
RANK_TOL = 1e-12
#: the keys of an NTP ``.npz`` file
NTP_KEYS = ("E", "tokens", "next")
PAD = -1


def _int_array(name: str, value, ndim: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: token ids must be an integer array, got dtype {arr.dtype} "
                         f"(cast with .astype(int) after checking the values are whole numbers)")
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    out = arr.astype(np.int64)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class NTPProblem:
    """A next-token prediction problem; arrays are validated and stored read-only.

    Parameters
    ----------
    E : (K, d) float token embeddings (row k embeds token id k).
    tokens : (n, T) integer token ids; a sequence of length T_i < T is padded with −1 after its end.
    next : (n,) integer id of each sequence's next token; it must occur in its sequence.
    """

    E: np.ndarray
    tokens: np.ndarray
    next: np.ndarray

    def __post_init__(self) -> None:
        try:
            E = np.array(self.E, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"E: cannot convert to a float64 array ({exc})") from exc
        if E.ndim != 2 or E.shape[0] < 1 or E.shape[1] < 1:
            raise ValueError(f"E: expected a (K, d) array of token embeddings, got shape {E.shape}")
        if not np.all(np.isfinite(E)):
            k, j = np.argwhere(~np.isfinite(E))[0]
            raise ValueError(f"E: embedding of token {int(k)} has a NaN or inf entry (column {int(j)})")
        E.setflags(write=False)
        K = E.shape[0]
        tok = _int_array("tokens", self.tokens, 2)
        n, T = tok.shape
        if n < 1 or T < 1:
            raise ValueError(f"tokens: expected at least one sequence and one position, got shape {tok.shape}")
        nxt = _int_array("next", np.ravel(self.next) if np.ndim(self.next) == 2 else self.next, 1)
        if nxt.shape != (n,):
            raise ValueError(f"next: expected shape ({n},) (one next token per sequence), got {nxt.shape}")
        pad = tok == PAD
        for i, t in np.argwhere((tok < PAD) | (tok >= K)):
            raise ValueError(f"tokens: sample {int(i)}, position {int(t)}: token id {int(tok[i, t])} is outside "
                             f"[0, K={K}) (use -1 only as padding after the sequence's end)")
        lengths = (~pad).sum(axis=1)
        for i in np.flatnonzero(lengths == 0):
            raise ValueError(f"tokens: sample {int(i)} is empty (every position is -1 padding); drop it")
        # padding only after the end: the first T_i positions are real tokens
        after = np.arange(T)[None, :] >= lengths[:, None]
        for i in np.flatnonzero(np.any(pad != after, axis=1)):
            t = int(np.flatnonzero(pad[i])[0])
            raise ValueError(f"tokens: sample {int(i)} has a token after the -1 padding at position {t}; "
                             "pad only after the sequence's end")
        for i in np.flatnonzero((nxt < 0) | (nxt >= K)):
            raise ValueError(f"next: sample {int(i)}: token id {int(nxt[i])} is outside [0, K={K})")
        occurs = np.any(tok == nxt[:, None], axis=1)
        for i in np.flatnonzero(~occurs):
            seq = tok[i, : lengths[i]].tolist()
            raise ValueError(f"next: sample {int(i)}: next token {int(nxt[i])} does not occur in its sequence "
                             f"{seq} (with the attention-mass classifier the label must be one of the "
                             "sequence's tokens)")
        for name, val in (("E", E), ("tokens", tok), ("next", nxt)):
            object.__setattr__(self, name, val)

    # ---- shapes and derived arrays ------------------------------------------------------------------
    @property
    def K(self) -> int:
        return self.E.shape[0]

    @property
    def d(self) -> int:
        return self.E.shape[1]

    @property
    def n(self) -> int:
        return self.tokens.shape[0]

    @property
    def T(self) -> int:
        return self.tokens.shape[1]

    @cached_property
    def mask(self) -> np.ndarray:
        """(n, T) True on real tokens."""
        return self.tokens != PAD

    @cached_property
    def lengths(self) -> np.ndarray:
        """(n,) T_i."""
        return self.mask.sum(axis=1)

    @cached_property
    def last(self) -> np.ndarray:
        """(n,) k_i, the id of the last token (the query) of each sequence."""
        return self.tokens[np.arange(self.n), self.lengths - 1]

    @cached_property
    def X(self) -> np.ndarray:
        """(n, T, d) embedded sequences, zero on padding."""
        return np.where(self.mask[..., None], self.E[np.maximum(self.tokens, 0)], 0.0)

    @property
    def queries(self) -> np.ndarray:
        """(n, d) z_i = E_{k_i}."""
        return self.E[self.last]

    def sequence(self, i: int) -> list[int]:
        return self.tokens[i, : self.lengths[i]].tolist()

    def logits(self, W: np.ndarray) -> np.ndarray:
        """a_it = E_{x_it}ᵀ W E_{k_i} (n, T), −inf on padding."""
        W = np.asarray(W, dtype=np.float64)
        if W.shape != (self.d, self.d):
            raise ValueError(f"W: expected shape ({self.d}, {self.d}), got {W.shape}")
        a = np.einsum("ntd,de,ne->nt", self.X, W, self.queries)
        return np.where(self.mask, a, -np.inf)

    # ---- graphs -----------------------------------------------------------------------------------------
    @cached_property
    def graphs(self) -> dict[int, TokenGraph]:
        """The token-priority graph G_k of every last token k that occurs (see :class:`TokenGraph`)."""
        return {int(k): TokenGraph.build(self, int(k)) for k in np.unique(self.last)}

    @cached_property
    def scc_id(self) -> np.ndarray:
        """(n, T) the SCC index (within G_{k_i}) of each token; −1 on padding."""
        out = np.full((self.n, self.T), -1, dtype=np.int64)
        for i in range(self.n):
            g = self.graphs[int(self.last[i])]
            L = self.lengths[i]
            out[i, :L] = g.component[self.tokens[i, :L]]
        return out

    @cached_property
    def top_scc_mask(self) -> np.ndarray:
        """(n, T) True on the tokens of sequence i in the SCC of its label (the highest-priority SCC present)."""
        lab = np.array([self.graphs[int(self.last[i])].component[self.next[i]] for i in range(self.n)])
        return self.mask & (self.scc_id == lab[:, None])

    @property
    def is_acyclic(self) -> bool:
        """Every G_k acyclic (every SCC a single token)."""
        return all(g.is_acyclic for g in self.graphs.values())

    @cached_property
    def equality_pairs(self) -> np.ndarray:
        """(m, 3) distinct (k, a, b), a < b: tokens a, b of one sequence with last token k, one of them its
        label, in the same SCC of G_k. Their matrices (E_a − E_b) E_kᵀ span the equality subspace S."""
        out = set()
        for i in np.flatnonzero(self.top_scc_mask.sum(axis=1) > 1):
            y = int(self.next[i])
            for j in set(self.tokens[i, self.top_scc_mask[i]].tolist()) - {y}:
                out.add((int(self.last[i]), min(y, j), max(y, j)))
        return np.array(sorted(out), dtype=np.int64).reshape(-1, 3)

    @cached_property
    def equality_subspace(self) -> np.ndarray:
        """Orthonormal basis (r, d, d) (Frobenius inner product) of the equality subspace
        S = span{(E_a − E_b) E_kᵀ : (k, a, b) in :attr:`equality_pairs`}; r = 0 when every G_k is acyclic."""
        d = self.d
        P = self.equality_pairs
        if P.shape[0] == 0:
            return np.zeros((0, d, d))
        rows = ((self.E[P[:, 1]] - self.E[P[:, 2]])[:, :, None] * self.E[P[:, 0]][:, None, :]).reshape(-1, d * d)
        _, s, Vt = np.linalg.svd(rows, full_matrices=False)
        r = int(np.sum(s > RANK_TOL * s[0]))
        return Vt[:r].reshape(r, d, d)

    def project(self, W: np.ndarray) -> np.ndarray:
        """Π_S(W) = Σ_m ⟨B_m, W⟩ B_m, the orthogonal projection of W (…, d, d) on the equality subspace."""
        B = self.equality_subspace
        W = np.asarray(W, dtype=np.float64)
        return np.einsum("...de,mde,mfg->...fg", W, B, B)

    def token_mass(self, W: np.ndarray) -> np.ndarray:
        """(n, K) attention mass Σ_{t : x_it = j} s_it on each token id j under W (the identity classifier's
        p(j | X_i))."""
        a = self.logits(W)
        s = np.exp(a - a.max(axis=1, keepdims=True))
        s /= s.sum(axis=1, keepdims=True)
        out = np.zeros((self.n, self.K))
        np.add.at(out, (np.repeat(np.arange(self.n), self.T)[self.mask.ravel()], self.tokens[self.mask]),
                  s[self.mask])
        return out

    def selected_tokens(self, W: np.ndarray, hi: float = 1e-2, lo: float = 9e-3
                        ) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
        """The tokens W selects in each sequence: (selected, undecided) with selected_i = {j : mass > hi} and
        undecided_i = {j : lo < mass ≤ hi} (:meth:`token_mass`; the authors' thresholds 1e−2 and 1e−2 − 1e−3)."""
        mass = self.token_mass(W)
        sel = tuple(tuple(int(j) for j in np.flatnonzero(row > hi)) for row in mass)
        und = tuple(tuple(int(j) for j in np.flatnonzero((row > lo) & (row <= hi))) for row in mass)
        return sel, und

    def with_labels(self, labels) -> NTPProblem:
        """The problem with one sample (X_i, c) for every c in ``labels[i]`` (a set of token ids of sequence
        i): the multi-label problem whose graphs and graph Att-SVM describe a *local* direction, where W
        selects the set labels[i] in sequence i."""
        if len(labels) != self.n:
            raise ValueError(f"labels: expected one set of token ids per sequence ({self.n}), got {len(labels)}")
        rows, nxt = [], []
        for i, cs in enumerate(labels):
            if len(cs) == 0:
                raise ValueError(f"labels: sample {i} has an empty label set")
            for c in cs:
                rows.append(i)
                nxt.append(int(c))
        return NTPProblem(E=self.E, tokens=self.tokens[rows], next=np.array(nxt))

    # ---- files ------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``.npz`` with the keys E, tokens, next."""
        path = Path(path)
        np.savez(path, E=self.E, tokens=self.tokens, next=self.next)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    def __repr__(self) -> str:
        return f"NTPProblem(K={self.K}, d={self.d}, n={self.n}, T={self.T})"


@dataclass(frozen=True)
class TokenGraph:
    """Token-priority graph G_k of one last token k (edges y_i → j, see the module docstring).

    ``nodes``: the token ids that occur in a sequence with last token k (ascending). ``adjacency``: (K, K)
    sparse 0/1 matrix, ``adjacency[y, j] = 1`` for an edge y → j. ``component``: (K,) SCC index of every
    token id (−1 for ids that are not nodes). ``sccs``: the SCCs as sorted tuples of token ids, in a
    topological order of the condensation (sources, i.e. highest priority, first; ties by smallest id), and
    ``component`` indexes this list.
    """

    k: int
    nodes: tuple[int, ...]
    adjacency: sp.csr_matrix
    component: np.ndarray
    sccs: tuple[tuple[int, ...], ...]

    @property
    def is_acyclic(self) -> bool:
        return all(len(c) == 1 for c in self.sccs)

    @staticmethod
    def build(problem: NTPProblem, k: int) -> TokenGraph:
        K = problem.K
        rows = np.flatnonzero(problem.last == k)
        tok = problem.tokens[rows]
        y = problem.next[rows]
        src = np.broadcast_to(y[:, None], tok.shape)
        edge = (tok != PAD) & (tok != y[:, None])
        A = sp.csr_matrix((np.ones(int(edge.sum())), (src[edge], tok[edge])), shape=(K, K))
        A.data[:] = 1.0
        A.sum_duplicates()
        A.data[:] = 1.0
        nodes = np.unique(tok[tok != PAD])
        _, labels = connected_components(A, directed=True, connection="strong")
        # Relabel the SCCs of the nodes in a topological order of the condensation (Kahn's algorithm on the
        # small condensed DAG; the SCCs themselves come from scipy).
        comp_of = {int(t): int(labels[t]) for t in nodes}
        comps = sorted(set(comp_of.values()), key=lambda c: min(t for t in nodes if comp_of[int(t)] == c))
        members = {c: tuple(sorted(int(t) for t in nodes if comp_of[int(t)] == c)) for c in comps}
        coo = A.tocoo()
        succ: dict[int, set[int]] = {c: set() for c in comps}
        indeg = dict.fromkeys(comps, 0)
        for u, v in zip(coo.row, coo.col, strict=True):
            cu, cv = comp_of[int(u)], comp_of[int(v)]
            if cu != cv and cv not in succ[cu]:
                succ[cu].add(cv)
                indeg[cv] += 1
        order: list[int] = []
        ready = sorted((c for c in comps if indeg[c] == 0), key=lambda c: members[c][0])
        while ready:
            c = ready.pop(0)
            order.append(c)
            for v in succ[c]:
                indeg[v] -= 1
                if indeg[v] == 0:
                    ready.append(v)
            ready.sort(key=lambda c: members[c][0])
        component = np.full(K, -1, dtype=np.int64)
        for rank, c in enumerate(order):
            component[list(members[c])] = rank
        component.setflags(write=False)
        return TokenGraph(k=k, nodes=tuple(int(t) for t in nodes), adjacency=A, component=component,
                          sccs=tuple(members[c] for c in order))

    def to_dict(self) -> dict:
        return {"last_token": self.k, "sccs": [list(c) for c in self.sccs],
                "edges": [[int(u), int(v)] for u, v in zip(*self.adjacency.nonzero(), strict=True)]}


@dataclass(frozen=True)
class FiniteComponent:
    """W^fin: the minimizer, over the equality subspace S, of the loss of the reduced problem.

    ``status``: "optimal" (gradient norm on S ≤ tol), "trivial" (S = {0}: every G_k acyclic, W^fin = 0) or
    "not_converged" (no finite minimizer found: the gradient did not vanish within the iterations).
    ``loss`` the reduced loss at W, ``gradient`` the Frobenius norm of its gradient projected on S.
    """

    W: np.ndarray
    status: str
    loss: float
    gradient: float
    iterations: int
    dimension: int

    def to_dict(self) -> dict:
        return {"W": self.W.tolist(), "status": self.status, "loss": self.loss, "gradient": self.gradient,
                "iterations": self.iterations, "dimension": self.dimension}


def _lse(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """log Σ_{t: keep} exp(x_t) along the last axis (−inf where nothing is kept)."""
    x = np.where(keep, x, -np.inf)
    top = np.max(x, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(x - top), axis=-1)) + top[..., 0]


def finite_component(problem: NTPProblem, tol: float = 1e-10, max_iter: int = 200) -> FiniteComponent:
    """W^fin = argmin_{W ∈ S} L_fin(W) for the identity classifier and the log loss, by Newton's method.

    The reduced problem keeps, in every sample, only the tokens O_i of the top SCC (:attr:`top_scc_mask`):
    L_fin(W) = (1/n) Σ_i [log Σ_{t∈O_i} e^{a_it} − log Σ_{t∈O_i, x_it = y_i} e^{a_it}] with a_it = E_{x_it}ᵀ W E_{k_i}
    (samples with O_i = {y_i} contribute 0). In coordinates W = Σ_m c_m B_m (B the orthonormal basis of S) it
    is convex — logits of equal tokens are equal, so the label term is linear — with gradient
    Σ_i (E_{π_i}[F] − F_{y_i}) and Hessian Σ_i Cov_{π_i}(F), F_itm = ⟨B_m, x_it z_iᵀ⟩, π_i the softmax over O_i.
    Newton steps with backtracking, stopped when the gradient norm is ≤ tol.
    """
    B = problem.equality_subspace
    d, r = problem.d, B.shape[0]
    if r == 0:
        return FiniteComponent(np.zeros((d, d)), "trivial", 0.0, 0.0, 0, 0)
    O = problem.top_scc_mask
    rows = np.flatnonzero(O.sum(axis=1) > 1)
    O = O[rows]
    lab = O & (problem.tokens[rows] == problem.next[rows][:, None])
    F = np.einsum("ntd,mde,ne->ntm", problem.X[rows], B, problem.queries[rows])
    n = problem.n

    def parts(c: np.ndarray):
        a = F @ c
        loss = float(np.sum(_lse(a, O) - _lse(a, lab)) / n)
        pi = np.where(O, np.exp(a - _lse(a, O)[:, None]), 0.0)
        mean = np.einsum("nt,ntm->nm", pi, F)
        y_feat = F[np.arange(len(rows)), np.argmax(lab, axis=1)]
        grad = np.sum(mean - y_feat, axis=0) / n
        Fc = F - mean[:, None, :]
        hess = np.einsum("nt,ntm,ntl->ml", pi, Fc, Fc) / n
        return loss, grad, hess

    c = np.zeros(r)
    loss, grad, hess = parts(c)
    it = 0
    while it < max_iter and np.linalg.norm(grad) > tol:
        it += 1
        step = -np.linalg.lstsq(hess, grad, rcond=None)[0]
        slope = float(grad @ step)
        if slope >= 0:  # numerically singular Hessian: fall back to the gradient
            step, slope = -grad, -float(grad @ grad)
        t = 1.0
        while True:
            new = parts(c + t * step)
            if new[0] <= loss + 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        if t < 1e-12:
            break
        c = c + t * step
        loss, grad, hess = new
    g = float(np.linalg.norm(grad))
    status = "optimal" if g <= tol else "not_converged"
    return FiniteComponent(np.einsum("m,mde->de", c, B), status, loss, g, it, r)


def load_ntp(path: str | Path) -> NTPProblem:
    """Read an NTP problem file (keys E, tokens, next)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"problem file not found: {path}")
    with np.load(path, allow_pickle=False) as f:
        keys = set(f.files)
        missing = set(NTP_KEYS) - keys
        if missing:
            raise ValueError(f"{path}: missing key(s) {sorted(missing)}; a next-token problem file holds "
                             "E (K,d), tokens (n,T) int with -1 padding, next (n,) int")
        unknown = keys - set(NTP_KEYS)
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; a next-token problem file holds only "
                             f"{', '.join(NTP_KEYS)}")
        kw = {k: f[k] for k in NTP_KEYS}
    return NTPProblem(**kw)


def is_ntp_file(path: str | Path) -> bool:
    """True when the ``.npz`` has the keys of a next-token problem (``tokens`` and ``next``)."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as f:
            return "tokens" in f.files and "next" in f.files
    except (OSError, ValueError):
        return False


# ---- generator --------------------------------------------------------------------------------------------


def _sample_sequences(rng: np.random.Generator, n: int, T: int, K: int) -> np.ndarray:
    """The authors' sequence sampler: T ≤ K distinct ids per sequence, or (T > K) a permutation of the K
    ids followed by T − K ids drawn with replacement."""
    if T <= K:
        return np.stack([rng.choice(K, size=T, replace=False) for _ in range(n)])
    head = np.stack([rng.permutation(K) for _ in range(n)])
    return np.concatenate([head, rng.integers(0, K, size=(n, T - K))], axis=1)


def generate_ntp(n: int = 6, T: int = 4, K: int = 6, d: int = 8, *,
                 embedding: Literal["random", "ortho"] = "random",
                 graphs: Literal["cyclic", "acyclic", "any"] = "cyclic", min_length: int = 0, seed: int = 0,
                 max_tries: int = 10_000) -> NTPProblem:
    """A random next-token problem following the public code of Li et al. (2024).

    Embeddings: ``random`` — rows i.i.d. Gaussian normalized to unit norm; ``ortho`` — K orthonormal rows
    (needs K ≤ d). Sequences: T ≤ K distinct ids each (else a permutation of all K ids then T − K drawn with
    replacement); with ``min_length`` ≥ 1 each sequence is cut to a length uniform in [min_length, T] (padding
    −1; 0 keeps every sequence at length T). Labels: uniform in [0, K), replaced by a uniformly chosen token
    of the sequence when it does not occur there. ``graphs``: ``cyclic`` — redraw until some G_k has an SCC
    of ≥ 2 tokens (the authors' global-convergence setting), ``acyclic`` — until every G_k is acyclic,
    ``any`` — no condition.
    """
    if graphs not in ("cyclic", "acyclic", "any"):
        raise ValueError(f"graphs: must be 'cyclic', 'acyclic' or 'any', got {graphs!r}")
    if embedding not in ("random", "ortho"):
        raise ValueError(f"embedding: must be 'random' or 'ortho', got {embedding!r}")
    if min(n, T, K, d) < 1:
        raise ValueError(f"n, T, K, d: must all be ≥ 1, got {n}, {T}, {K}, {d}")
    if embedding == "ortho" and K > d:
        raise ValueError(f"embedding: 'ortho' needs K ≤ d, got K={K}, d={d}")
    if not 0 <= min_length <= T:
        raise ValueError(f"min_length: must be in [0, T={T}] (0: no cut), got {min_length}")
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        if embedding == "ortho":
            E = np.linalg.qr(rng.standard_normal((d, d)))[0][:K]
        else:
            E = rng.standard_normal((K, d))
            E /= np.linalg.norm(E, axis=1, keepdims=True)
        tok = _sample_sequences(rng, n, T, K)
        if min_length:
            L = rng.integers(min_length, T + 1, size=n)
            tok = np.where(np.arange(T)[None, :] < L[:, None], tok, PAD)
        else:
            L = np.full(n, T)
        y = rng.integers(0, K, size=n)
        for i in range(n):
            if y[i] not in tok[i, : L[i]]:
                y[i] = tok[i, rng.integers(0, L[i])]
        prob = NTPProblem(E=E, tokens=tok, next=y)
        if graphs == "any" or (graphs == "acyclic") == prob.is_acyclic:
            return prob
    raise ValueError(f"graphs: no {graphs} problem found in {max_tries} draws with n={n}, T={T}, K={K}; "
                     "change the sizes or use graphs='any'")

"""The data of an attention problem (docs/concepts/problems.md): sequences, labels, queries, head, mask.

A problem holds n sequences X_i ∈ R^{T×d} with labels Y_i ∈ {−1, +1}, a linear head v ∈ R^d and the
query of each sequence, in one of three kinds:

* ``cross``  — queries z_i given (``Z``, shape (n, d));
* ``self``   — z_i = x_{i,q} for a query position q (``query_index``);
* ``prompt`` — no per-sample query; a trainable prompt p plays that role and the logit of token t is
  x_itᵀ K p with a fixed key matrix K (``key_matrix``, default I), as in P1.

Sequences of different length use a boolean ``mask`` (n, T): padded tokens get logit −∞ and never enter
a constraint. Scores are γ_it = Y_i vᵀx_it; the optimal token is opt_i = argmax_t γ_it, and ties are
reported, not broken silently.

Files: :meth:`AttentionProblem.save` / :func:`load_problem` use ``.npz`` with the keys ``X, Y, v`` and
the optional ``Z, query_index, key_matrix, mask``.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .losses import check_loss, loss_value, reduce_scale

Kind = Literal["cross", "self", "prompt"]

#: γ values closer than this (relative to the largest |γ| of the sequence, plus an absolute 1e-12) are
#: treated as tied when reporting the optimal token.
TIE_TOL = 1e-9


def _as_float_array(name: str, value, ndim: int) -> np.ndarray:
    if np.iscomplexobj(value):
        raise ValueError(f"{name}: complex values; an attention problem is real (pass {name}.real if the "
                         "imaginary part is zero)")
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot convert to a float64 array ({exc})") from exc
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name}: contains NaN or inf (first at index {tuple(int(b) for b in bad)}); "
                         "replace non-finite entries before building the problem")
    arr.setflags(write=False)
    return arr


def _as_position(value) -> int:
    """query_index as a Python int: one integer (an integral float such as 2.0 is accepted), else ValueError."""
    arr = np.asarray(value)
    if arr.shape != ():
        raise ValueError(f"query_index: must be one integer (the query position), got an array of shape "
                         f"{arr.shape}; give Z (n, d) for one query per sequence")
    if arr.dtype.kind in "iu":
        return int(arr)
    if arr.dtype.kind == "f" and np.isfinite(arr) and float(arr).is_integer():
        return int(arr)
    raise ValueError(f"query_index: must be an integer position, got {arr.item()!r} (dtype {arr.dtype})")


@dataclass(frozen=True)
class OptimalTokens:
    """opt_i = argmax_t γ_it, with ``tied[i, t]`` True for every token within the tie tolerance of the max."""

    opt: np.ndarray  # (n,) int
    tied: np.ndarray  # (n, T) bool, True at every maximiser
    gap: np.ndarray  # (n,) γ_opt − second best score (0 where tied; inf when a single real token)

    @property
    def has_ties(self) -> np.ndarray:
        return self.tied.sum(axis=1) > 1


@dataclass(frozen=True, eq=False)
class AttentionProblem:
    """One attention classification problem (docs/concepts/problems.md). Arrays are validated and stored
    read-only float64.

    Parameters
    ----------
    X : (n, T, d) tokens.           Y : (n,) labels in {−1, +1}.       v : (d,) linear head.
    Z : (n, d) cross-attention queries, or None.
    query_index : self-attention query position q (z_i = x_{i,q}), or None.
    key_matrix : (d, d) fixed K of the prompt model (logit x_itᵀ K p); default I when neither Z nor
        query_index is given.
    mask : (n, T) bool, True for real tokens; default all True.
    """

    X: np.ndarray
    Y: np.ndarray
    v: np.ndarray
    Z: np.ndarray | None = None
    query_index: int | None = None
    key_matrix: np.ndarray | None = None
    mask: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        X = _as_float_array("X", self.X, 3)
        n, T, d = X.shape
        if n < 1 or T < 1 or d < 1:
            raise ValueError(f"X: every dimension must be ≥ 1, got shape (n, T, d) = {X.shape}")
        if np.ndim(self.Y) != 1:
            raise ValueError(f"Y: expected shape ({n},) (one label per sequence), got {np.shape(self.Y)}; "
                             "pass Y.ravel() if it holds one label per row")
        Y = _as_float_array("Y", self.Y, 1)
        if Y.shape != (n,):
            raise ValueError(f"Y: expected shape ({n},) to match X with n={n}, got {Y.shape}")
        bad = np.flatnonzero((Y != 1.0) & (Y != -1.0))
        if bad.size:
            raise ValueError(f"Y: labels must be +1 or −1; sample {int(bad[0])} has {Y[bad[0]]!r} "
                             "(map {0,1} labels with 2*y-1)")
        v = _as_float_array("v", self.v, 1)
        if v.shape != (d,):
            raise ValueError(f"v: expected shape ({d},) to match X with d={d}, got {v.shape}")
        if self.Z is not None and self.query_index is not None:
            raise ValueError("Z and query_index: give at most one (cross-attention queries Z, or the "
                             "self-attention query position query_index)")
        Z = None
        if self.Z is not None:
            Z = _as_float_array("Z", self.Z, 2)
            if Z.shape != (n, d):
                raise ValueError(f"Z: expected shape ({n}, {d}) (one query per sequence), got {Z.shape}")
        q = None
        if self.query_index is not None:
            q = _as_position(self.query_index)
            if not 0 <= q < T:
                raise ValueError(f"query_index: must be in [0, {T}), got {self.query_index}")
        K = None
        if self.key_matrix is not None:
            K = _as_float_array("key_matrix", self.key_matrix, 2)
            if K.shape[0] != d:
                raise ValueError(f"key_matrix: expected {d} rows (logit x_itᵀ K p), got shape {K.shape}")
        if self.mask is None:
            mask = np.ones((n, T), dtype=bool)
        else:
            mask = np.array(self.mask)
            if mask.shape != (n, T):
                raise ValueError(f"mask: expected shape ({n}, {T}), got {mask.shape}")
            if mask.dtype != bool:
                if not np.all(np.isin(mask, (0, 1))):
                    raise ValueError("mask: must be boolean (True = real token)")
                mask = mask.astype(bool)
        counts = mask.sum(axis=1)
        if np.any(counts == 0):
            raise ValueError(f"mask: sequence {int(np.argmin(counts))} has no real token (empty sequence)")
        if np.any(counts < 2):
            raise ValueError(f"mask: sequence {int(np.argmin(counts))} has fewer than 2 real tokens; "
                             "attention over one token is constant, drop the sequence")
        if q is not None and not np.all(mask[:, q]):
            raise ValueError(f"mask: the query position {q} is masked in sequence "
                             f"{int(np.flatnonzero(~mask[:, q])[0])}")
        mask.setflags(write=False)
        # Padded entries never matter; zero them so that sums over tokens need no special case.
        if not mask.all():
            X = np.where(mask[..., None], X, 0.0)
            X.setflags(write=False)
        for name, val in (("X", X), ("Y", Y), ("v", v), ("Z", Z), ("query_index", q),
                          ("key_matrix", K), ("mask", mask)):
            object.__setattr__(self, name, val)

    # ---- shape and kind ---------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def T(self) -> int:
        return self.X.shape[1]

    @property
    def d(self) -> int:
        return self.X.shape[2]

    @property
    def kind(self) -> Kind:
        if self.Z is not None:
            return "cross"
        if self.query_index is not None:
            return "self"
        return "prompt"

    @property
    def queries(self) -> np.ndarray:
        """z_i (n, d): Z, or x_{i,q} for self-attention. The prompt model has none (raises)."""
        if self.Z is not None:
            return self.Z
        if self.query_index is not None:
            return self.X[:, self.query_index, :]
        raise ValueError("this is a prompt problem (no Z, no query_index): it has no per-sample query; "
                         "train the 'prompt' parameterization or give Z / query_index")

    @property
    def keys(self) -> np.ndarray:
        """The key matrix K of the prompt model (d, d'); identity when not given."""
        return self.key_matrix if self.key_matrix is not None else np.eye(self.d)

    def prompt_tokens(self) -> np.ndarray:
        """Kᵀx_it (n, T, d'): the vectors whose inner product with p is the prompt-model logit."""
        return self.X @ self.keys

    # ---- scores and optimal tokens ------------------------------------------------------------------
    def scores(self, v: np.ndarray | None = None) -> np.ndarray:
        """γ_it = Y_i vᵀx_it (n, T); −inf on padded tokens."""
        v = self.v if v is None else np.asarray(v, dtype=np.float64)
        g = self.Y[:, None] * (self.X @ v)
        return np.where(self.mask, g, -np.inf)

    def optimal_tokens(self, v: np.ndarray | None = None, tol: float = TIE_TOL) -> OptimalTokens:
        """opt_i = argmax_t γ_it with ties reported: ``tied[i,t]`` when γ_it ≥ max − tol·(1 + max|γ_i|)."""
        g = self.scores(v)
        top = g.max(axis=1)
        scale = 1.0 + np.max(np.where(self.mask, np.abs(g), 0.0), axis=1)
        tied = g >= (top - tol * scale)[:, None]
        opt = np.argmax(g, axis=1)
        second = np.where(tied, -np.inf, g).max(axis=1)
        gap = np.where(tied.sum(axis=1) > 1, 0.0, top - second)
        return OptimalTokens(opt=opt, tied=tied, gap=gap)

    def optimal_loss(self, loss: str = "logistic", reduction: str = "mean", v: np.ndarray | None = None
                     ) -> float:
        """L* = scale · Σ_i ℓ(γ_{i,opt_i}): the infimum of the risk with a fixed linear head
        (docs/concepts/problems.md)."""
        check_loss(loss)
        top = self.scores(v).max(axis=1)
        return float(reduce_scale(reduction, self.n) * loss_value(loss, top).sum())

    # ---- transformations used by tests and experiments -----------------------------------------------
    def permute_tokens(self, perms: np.ndarray) -> AttentionProblem:
        """The same problem with the tokens of sequence i reordered by ``perms[i]`` (n, T)."""
        perms = np.asarray(perms, dtype=int)
        if perms.shape != (self.n, self.T) or not np.all(np.sort(perms, axis=1) == np.arange(self.T)):
            raise ValueError(f"perms: expected (n, T) = ({self.n}, {self.T}) rows that are permutations")
        rows = np.arange(self.n)[:, None]
        q = self.query_index
        if q is not None:
            new_q = np.argmax(perms == q, axis=1)
            if not np.all(new_q == new_q[0]):
                raise ValueError("perms: self-attention needs the query at the same position in every "
                                 "sequence; permute the query position identically")
            q = int(new_q[0])
        return AttentionProblem(X=self.X[rows, perms], Y=self.Y, v=self.v, Z=self.Z, query_index=q,
                                key_matrix=self.key_matrix, mask=self.mask[rows, perms])

    def with_v(self, v: np.ndarray) -> AttentionProblem:
        return AttentionProblem(X=self.X, Y=self.Y, v=v, Z=self.Z, query_index=self.query_index,
                                key_matrix=self.key_matrix, mask=self.mask)

    # ---- files ------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``.npz`` with keys X, Y, v and, when set, Z, query_index, key_matrix, mask."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {"X": self.X, "Y": self.Y, "v": self.v}
        if self.Z is not None:
            arrays["Z"] = self.Z
        if self.query_index is not None:
            arrays["query_index"] = np.array(self.query_index)
        if self.key_matrix is not None:
            arrays["key_matrix"] = self.key_matrix
        if not self.mask.all():
            arrays["mask"] = self.mask
        np.savez(path, **arrays)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    def __repr__(self) -> str:
        return f"AttentionProblem(kind={self.kind!r}, n={self.n}, T={self.T}, d={self.d})"


PROBLEM_KEYS = ("X", "Y", "v", "Z", "query_index", "key_matrix", "mask")
_FIELD_NDIM = {"X": 3, "Y": 1, "v": 1, "Z": 2, "query_index": 0, "key_matrix": 2, "mask": 2}
_HOW = ("a problem file is an .npz written by AttentionProblem.save or numpy.savez with X (n,T,d), Y (n,), "
        "v (d,) and optionally Z, query_index, key_matrix, mask")


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux; free pages elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.3g} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.3g} MB"


def check_memory(nbytes: float, what: str, fix: str) -> None:
    """Refuse (ValueError, with the estimate) an allocation of ``nbytes`` above half the available memory."""
    avail = available_memory()
    if nbytes > avail / 2:
        raise ValueError(f"{what} needs ≈ {_gb(nbytes)} of memory, and {_gb(avail)} is available; {fix}")


def _npy_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype, int]]:
    """{key: (shape, dtype, stored bytes)} of every array of an .npz, read from the headers only."""
    fmt = np.lib.format
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                try:
                    with zf.open(info) as fp:
                        version = fmt.read_magic(fp)
                        if version == (1, 0):
                            shape, _, dtype = fmt.read_array_header_1_0(fp)
                        elif version == (2, 0):
                            shape, _, dtype = fmt.read_array_header_2_0(fp)
                        else:
                            raise ValueError(f"unsupported .npy format version {version}")
                        header_len = fp.tell()
                except (ValueError, EOFError, zlib.error, zipfile.BadZipFile, OSError) as exc:
                    raise ValueError(f"{path} is truncated or corrupt: array {key!r} is unreadable ({exc}); "
                                     "rewrite it") from None
                out[key] = (tuple(int(x) for x in shape), np.dtype(dtype), info.file_size - header_len)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path} is truncated or corrupt ({exc}); {_HOW}") from None
    return out


def load_problem(path: str | Path) -> AttentionProblem:
    """Read a problem written by :meth:`AttentionProblem.save` (or by hand with the same keys).

    Everything is checked before any array is allocated: the file is an .npz archive (not a ``.npy``
    array, text, an empty or truncated file), every array is real and numeric with its expected number of
    dimensions, no array declares more data than the file holds, and the float64 arrays fit in memory.
    Every failure is a ValueError (FileNotFoundError for a missing file) whose message names the field.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"problem file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a problem .npz file ({_HOW})")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path} is empty (0 bytes); {_HOW}")
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"\x93NUMPY"):
        raise ValueError(f"{path} is a .npy file (one array), not a problem; save X, Y, v (and Z, query_index, "
                         "…) together with numpy.savez(FILE.npz, X=X, Y=Y, v=v)")
    if not head.startswith(b"PK"):
        looks = " (it looks like text)" if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:256]) else ""
        raise ValueError(f"{path} is not an .npz (zip) archive{looks}; {_HOW}")
    headers = _npy_headers(path)
    missing = {"X", "Y", "v"} - set(headers)
    if missing:
        raise ValueError(f"{path}: missing required key(s) {sorted(missing)}; {_HOW}")
    unknown = set(headers) - set(PROBLEM_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {PROBLEM_KEYS}")
    need = 0
    for key, (shape, dtype, stored) in headers.items():
        if dtype.hasobject or dtype.kind not in "biufc":
            raise ValueError(f"{path}: {key} has dtype {dtype}; store numbers (float64)")
        if dtype.kind == "c":
            raise ValueError(f"{path}: {key} is complex ({dtype}); an attention problem is real (store "
                             f"{key}.real if the imaginary part is zero)")
        if len(shape) != _FIELD_NDIM[key] and not (key == "query_index" and len(shape) == 1):
            raise ValueError(f"{path}: {key} has shape {shape}; expected a {_FIELD_NDIM[key]}-D array "
                             f"({_HOW})")
        count = int(np.prod(shape, dtype=np.float64))
        if count * dtype.itemsize > stored:
            raise ValueError(f"{path}: {key} declares shape {shape} ({_gb(count * dtype.itemsize)}) but the file "
                             f"holds {stored} bytes of it: the file is truncated or forged; rewrite it")
        need += count * 8 * (2 if key == "X" else 1)  # float64 copies; X twice (conversion, masking)
    check_memory(need, f"{path}: loading X {headers['X'][0]}", "use a smaller problem")
    try:
        with np.load(path, allow_pickle=False) as f:
            kw = {k: f[k] for k in headers}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{path} is truncated or corrupt ({exc}); rewrite it") from None
    try:
        return AttentionProblem(**kw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# ---- generators ---------------------------------------------------------------------------------------


def _unit(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.standard_normal(shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def unit_gaussian(n: int = 6, T: int = 8, d: int = 10, seed: int = 0, attention: Kind = "cross"
                  ) -> AttentionProblem:
    """P3's random family: x_it, z_i, v unit-norm Gaussian, Y_i uniform in {±1} (P3 §local convergence).

    ``attention`` picks cross (z_i drawn independently), self (z_i = x_{i0}) or prompt queries.
    """
    rng = np.random.default_rng(seed)
    X = _unit(rng, (n, T, d))
    Z = _unit(rng, (n, d))
    v = _unit(rng, (d,))
    Y = rng.choice([-1.0, 1.0], size=n)
    if attention == "cross":
        return AttentionProblem(X=X, Y=Y, v=v, Z=Z)
    if attention == "self":
        return AttentionProblem(X=X, Y=Y, v=v, query_index=0)
    if attention == "prompt":
        return AttentionProblem(X=X, Y=Y, v=v)
    raise ValueError(f"attention must be 'cross', 'self' or 'prompt', got {attention!r}")


_P1_KEYS = np.diag([1.0, 1.0, 0.0])  # P1's toy W = diag(1, 1, 0): the third coordinate carries the score


def p1_single(case: Literal["global", "local"] = "global") -> AttentionProblem:
    """P1 Fig. (single input): n=1, T=3, d=3, tokens (x₁, x₂ | γ), W = diag(1,1,0), v = e₃.

    Tokens (−0.1, 1 | 1), (1, 0 | 0.9), (0, 0 | 0.9) in the global case and (0, 0 | 0) in the local case,
    so token 1 is a locally optimal selection only in the local case. p^mm(opt) = (−0.1, 1)/1.01.
    """
    if case not in ("global", "local"):
        raise ValueError(f"case must be 'global' or 'local', got {case!r}")
    last = 0.9 if case == "global" else 0.0
    X = np.array([[[-0.1, 1.0, 1.0], [1.0, 0.0, 0.9], [0.0, 0.0, last]]])
    return AttentionProblem(X=X, Y=np.array([1.0]), v=np.array([0.0, 0.0, 1.0]), key_matrix=_P1_KEYS)


def p1_multi(seed: int = 0, n: int = 3, T: int = 7, noise: float = 0.2) -> AttentionProblem:
    """P1 Fig. (n inputs): token 0 of every input is optimal, at (1, 0) + noise with score 1; the others
    sit at (−1, 1) or (−0.5, −0.5) + noise with score 0.5 (d = 3: two geometry coordinates and the score),
    W = diag(1, 1, 0), v = e₃, Y = +1."""
    rng = np.random.default_rng(seed)
    centers = np.zeros((T, 2))
    centers[0] = (1.0, 0.0)
    centers[1:] = np.where((np.arange(1, T) % 2 == 1)[:, None], [-1.0, 1.0], [-0.5, -0.5])
    X = np.zeros((n, T, 3))
    X[:, :, :2] = centers + noise * rng.standard_normal((n, T, 2))
    X[:, :, 2] = 0.5
    X[:, 0, 2] = 1.0
    return AttentionProblem(X=X, Y=np.ones(n), v=np.array([0.0, 0.0, 1.0]), key_matrix=_P1_KEYS)


def p1_joint(case: Literal["tight", "relaxed"] = "tight") -> AttentionProblem:
    """P1 joint (v, p) example: n=3, T=2, d=2, Y = (+1, −1, +1), W = I,
    X₁ = [(0,0),(1,1)], X₂ = [(0,0),(1,−1)], X₃ = [(0,0),(0.5,1)] (tight) or [(0,0),(0.5,1.5)] (relaxed).
    v is trained jointly; the head stored here is v₀ = (−1, 0), the paper's initialization."""
    if case not in ("tight", "relaxed"):
        raise ValueError(f"case must be 'tight' or 'relaxed', got {case!r}")
    third = (0.5, 1.0) if case == "tight" else (0.5, 1.5)
    X = np.array([[[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, -1.0]], [[0.0, 0.0], list(third)]])
    return AttentionProblem(X=X, Y=np.array([1.0, -1.0, 1.0]), v=np.array([-1.0, 0.0]))


def p1_loss(C: float = 1.0) -> AttentionProblem:
    """P1 loss-function example: n=2, T=2, d=3; X₁ = [(0,0|0),(1,1|C)], X₂ = [(0,0|0),(1,−1|1)],
    W = diag(1,1,0), v = e₃, Y = +1. p^mm = (1, 0, 0) for every C > 0."""
    X = np.array([[[0.0, 0.0, 0.0], [1.0, 1.0, C]], [[0.0, 0.0, 0.0], [1.0, -1.0, 1.0]]])
    return AttentionProblem(X=X, Y=np.ones(2), v=np.array([0.0, 0.0, 1.0]), key_matrix=_P1_KEYS)


def p3_paths(seed: int = 0, n: int = 2, T: int = 3) -> AttentionProblem:
    """P3's 2-D path figure (``visualization.ipynb`` of umich-sota/TF-as-SVM): n=2, T=3, d=2; the tokens of
    sequence i are 0.3·N(0, I) + s_i·(1, 0) with s = (−1, +1, −1, …) (one cluster per sequence), the
    cross-attention queries z_i and the head v are unit-norm Gaussian, and every label is Y_i = +1. The
    optimal token of each sequence is the one with the largest vᵀx_it."""
    rng = np.random.default_rng(seed)
    v = _unit(rng, (2,))
    X = 0.3 * rng.standard_normal((n, T, 2))
    X[:, :, 0] += np.where(np.arange(n) % 2 == 0, -1.0, 1.0)[:, None]
    Z = _unit(rng, (n, 2))
    return AttentionProblem(X=X, Y=np.ones(n), v=v, Z=Z)


GENERATORS = {
    "unit-gaussian": unit_gaussian,
    "p1-single": p1_single,
    "p1-multi": p1_multi,
    "p1-joint": p1_joint,
    "p1-loss": p1_loss,
    "p3-paths": p3_paths,
}


def check_generator_args(name: str, kwargs: dict) -> None:
    """ValueError naming the argument when one is unknown or of the wrong type for generator ``name``: an
    integer argument takes an integer (not true/false, not 1.5, not "6"), a real one a finite real number,
    a boolean one true/false, a text one a string."""
    import inspect

    fn = GENERATORS[name]
    params = inspect.signature(fn).parameters
    for key, val in kwargs.items():
        if key not in params:
            raise ValueError(f"{key}: generator {name!r} has no such argument; it takes "
                             f"{', '.join(params) or 'none'}")
        default = params[key].default
        shown = str(val).lower() if isinstance(val, bool) else repr(val)
        if isinstance(default, bool):
            ok = isinstance(val, (bool, np.bool_))
            want = "true or false"
        elif isinstance(default, (int, np.integer)):
            ok = isinstance(val, (int, np.integer)) and not isinstance(val, (bool, np.bool_))
            want = "an integer"
        elif isinstance(default, float):
            ok = isinstance(val, (int, float, np.integer, np.floating)) and not isinstance(val, (bool, np.bool_)) \
                and bool(np.isfinite(val))
            want = "a finite number"
        elif isinstance(default, str):
            ok, want = isinstance(val, str), "a string"
        else:
            continue
        if not ok:
            raise ValueError(f"{key}: generator {name!r} expects {want} (default {default!r}), got {shown}")


def generate(name: str, **kwargs) -> AttentionProblem:
    """Build a problem by generator name (``GENERATORS``) with keyword arguments (types checked by
    :func:`check_generator_args`)."""
    if name not in GENERATORS:
        raise ValueError(f"generator must be one of {sorted(GENERATORS)}, got {name!r}")
    check_generator_args(name, kwargs)
    try:
        return GENERATORS[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"generator {name!r}: bad arguments {kwargs} ({exc})") from exc

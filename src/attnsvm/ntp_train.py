"""Training one-layer causal self-attention on a next-token problem, and what the theory predicts for it.

Training goes through the one engine, :func:`attnsvm.training.train`, with the next-token objective of
:mod:`attnsvm.ntp_objective` (its log-space ∂L/∂a pulled back through the parameterization's logits with
``jax.vjp``), so every method applies:

    from attnsvm.models import Model
    from attnsvm.training import train, Descent, NGD, Flow, RegularizationPath
    run = train(ntp_problems, Model("factored", objective=NextToken()), Flow(), stop=Radius(20.0))

:func:`train_ntp` is the short form for descent with the authors' settings: ``W`` (combined, a_it =
E_{x_it}ᵀ W E_{k_i}) or ``KQ`` (factored, W = K Qᵀ), ``gd`` or ``ngd`` (per block, as the authors'
torch code, or global; ``eps`` adds their guard ∇/(‖∇‖ + eps)), their init U(−1/√d, 1/√d) per entry drawn
from the stream (seed, trial id), and W at every record.

:func:`ntp_records` then measures every record against the theory: corr(W, W^dir), the distance of the
projection Π_S(W) on the equality subspace S to W^fin, corr(Π_{S⊥}(W), W^dir), W − W^fin fitted as R·W^dir,
and the attention mass on the top SCC of each sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def train_ntp(problem: NTPProblem | Sequence[NTPProblem], *, parameterization: str = "W",
              objective: NextToken | None = None, optimizer: str = "ngd", lr: float = 0.01, steps: int = 4000,
              every: int = 10, trials: int = 1, init: str = "uniform", scale: float | None = None, seed: int = 0,
              eps: float = 0.0, normalize: str = "block", given: dict[str, np.ndarray] | None = None,
              trial_ids: Sequence[int] | None = None) -> NTPRun:
    """Train ``trials`` runs from independent inits (module docstring) and record W every ``every`` steps.

    problem: one problem shared by the trials, or a sequence of problems of one shape (n, T, d), one per
    trial (then ``trials`` is their number). given: initial blocks (block → (d, d) or (trials, d, d)) instead
    of drawing them. trial_ids: the init stream of each trial (resumable chunks of a larger set of trials).
    """
    from .models import Model
    from .training import GD, NGD, Descent, Init, Save, train

    objective = objective or NextToken()
    plist = [problem] if isinstance(problem, NTPProblem) else list(problem)
    if not plist:
        raise ValueError("problem: empty sequence of problems")
    per_trial = not isinstance(problem, NTPProblem)
    if per_trial:
        trials = len(plist)
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization: must be one of {', '.join(PARAMETERIZATIONS)}, got {parameterization!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if init not in INITS:
        raise ValueError(f"init: must be one of {', '.join(INITS)}, got {init!r}")
    if int(trials) < 1:
        raise ValueError(f"trials: must be ≥ 1, got {trials}")
    d = plist[0].d
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
    opt = GD(lr=lr) if optimizer == "gd" else NGD(lr=lr, eps=eps, normalize=normalize)
    model = Model("combined" if parameterization == "W" else "factored", objective=objective)
    run = train(plist if per_trial else plist[0], model, Descent(opt, steps), init=Init(scheme="given", given=params0),
                save=Save(every=every, path=True), trials=None if per_trial else trials)
    settings = dict(parameterization=parameterization, classifier=objective.classifier, loss=objective.loss,
                    stable=objective.stable, optimizer=optimizer, lr=lr, steps=int(steps), every=int(every),
                    trials=int(trials), init=init, scale=scale, seed=seed, eps=eps, normalize=normalize)
    return NTPRun(steps=np.asarray(run.time), W=np.asarray(run.path), loss=run.metrics["loss"],
                  log_grad_norm=run.metrics["log_grad_norm"], params=run.params, status=np.asarray(run.status),
                  compile_seconds=run.compile_seconds, run_seconds=run.run_seconds, settings=settings)


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

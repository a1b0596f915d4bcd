"""The one entry point: :func:`train`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .._jax import float64
from ..problem import AttentionProblem
from .methods import Init, Save
from .run import Run, with_status
from .stops import Stop


def train(
    problems: AttentionProblem | Sequence[AttentionProblem],
    model,
    method,
    *,
    init: Init | None = None,
    save: Save | None = None,
    stop: Stop | Sequence[Stop] | None = None,
    trials: int | None = None,
    alpha: np.ndarray | None = None,
    references: dict[str, np.ndarray] | None = None,
    head_V: np.ndarray | None = None,
    head_a: np.ndarray | None = None,
    values: np.ndarray | None = None,
    progress: bool | Callable[[int, int], None] = False,
) -> Run:
    """Train ``trials`` independent runs of ``model`` on ``problems`` with ``method`` and return a :class:`Run`.

    problems: one problem shared by all trials, or one per trial (all of one shape; trials = their number);
        an objective with its own problem type takes those (e.g. next-token problems with
        ``Model(objective=attnsvm.ntp_objective.NextToken())``).
    model: a :class:`attnsvm.Model` (parameterization, loss, head).
    method: ``Descent(optimizer, steps)``, ``Flow(rtol, atol, ...)`` or ``RegularizationPath(radii, ...)``.
    init: the initial parameters (:class:`Init`; default per parameterization and method).
    save: what to record (:class:`Save`);  stop: stop conditions (:mod:`attnsvm.training.stops`): the flow's (default
        ``Saturation(1e-8)``), or Descent's (saturation, log saturation, radius; checked after every step).
    alpha: the reference selection (n,) or (B, n) for "mass on α" and the margin; default opt.
    references: name → reference attention matrices (W's shape, or with a leading trials axis): every record
        carries corr(W, W_ref).
    head_V, head_a: the ReLU head h(u) = aᵀReLU(Vᵀu) (``model.head = "relu"``): V (d, m), or (B, d, m) with
        one problem per trial.
    values: the value vectors v_h (H, d) of a multi-head model (default: head 0 the problem's v, the others
        drawn, :func:`attnsvm.models.head_values`).
    progress: True for a progress bar, or a callable (done, total) (Descent).

    Computed in float64 whatever the caller's JAX settings. Trials with a non-finite value are marked
    ``"diverged"`` in ``Run.status``.
    """
    from ..dynamics import prepare_batch

    init = init or Init()
    save = save or Save()
    stops = (stop,) if isinstance(stop, Stop) else tuple(stop or ())
    unknown = set(method.freeze) - set(model.blocks)
    if unknown:
        raise ValueError(f"freeze: unknown block(s) {sorted(unknown)}; blocks are {model.blocks}")
    if method.freeze and set(method.freeze) >= set(model.blocks):
        raise ValueError(f"freeze: {sorted(method.freeze)} freezes every block of {model.blocks}")
    with float64():
        batch = prepare_batch(problems, model, trials, alpha, references, head_V, head_a, values)
        params0 = init.params(model, batch.first, batch.trials, method)
        run = method.run(model, batch, params0, save, stops, progress, init)
    return with_status(run)


__all__ = ["train"]

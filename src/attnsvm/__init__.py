"""attnsvm: the implicit bias of softmax attention made computable.

Train one-layer softmax attention, solve the attention max-margin problems (Att-SVM) with certificates,
certify which tokens are (locally) optimal, and reproduce the experiments of the papers.
"""

from ._jax import enable_x64 as _enable_x64
from .problem import (
    AttentionProblem,
    OptimalTokens,
    generate,
    load_problem,
    p1_joint,
    p1_loss,
    p1_multi,
    p1_single,
    p3_paths,
    unit_gaussian,
)

_enable_x64()

__version__ = "0.1.0"


def load_sweep(out, table: str = "trials"):
    """The results of ``attnsvm sweep ... --out OUT`` as a pandas DataFrame, one row per (point, trial)
    (``table="records"``: per recorded step). See :func:`attnsvm.sweep.load_sweep`."""
    from .sweep import load_sweep as _load_sweep

    return _load_sweep(out, table)


__all__ = [
    "AttentionProblem",
    "OptimalTokens",
    "generate",
    "load_problem",
    "load_sweep",
    "p1_joint",
    "p1_loss",
    "p1_multi",
    "p1_single",
    "p3_paths",
    "unit_gaussian",
]

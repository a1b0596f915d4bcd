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
__all__ = [
    "AttentionProblem",
    "OptimalTokens",
    "generate",
    "load_problem",
    "p1_joint",
    "p1_loss",
    "p1_multi",
    "p1_single",
    "p3_paths",
    "unit_gaussian",
]

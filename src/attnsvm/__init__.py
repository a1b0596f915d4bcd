"""attnsvm: the implicit bias of softmax attention made computable.

Train one-layer softmax attention, solve the attention max-margin problems (Att-SVM) with certificates,
certify which tokens are (locally) optimal, and reproduce the experiments of the papers::

    import attnsvm as A
    problems = [A.unit_gaussian(6, 8, 10, seed=j) for j in range(100)]
    run = A.train(problems, A.Model("combined"), A.Descent(A.NGD(lr=0.1), steps=2000))

Importing attnsvm changes no global setting (JAX precision, matplotlib backend or style): every entry point
computes in float64 inside its own context (:func:`float64`); call :func:`enable_x64` to use the low-level
JAX functions (``attnsvm.models``) in float64 from your own code.
"""

from ._jax import enable_x64, float64
from .attention import Parameterization, register_parameterization
from .metrics import verdicts
from .models import Model
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
from .svm import solve_svm
from .tokens import is_locally_optimal
from .training import (
    GD,
    NGD,
    OPTIMIZERS,
    Descent,
    Flow,
    Init,
    OptimizerSpec,
    Radius,
    RegularizationPath,
    Run,
    Saturation,
    Save,
    Stop,
    Time,
    optimizer,
    register_optimizer,
    train,
)

__version__ = "0.1.0"


def load_sweep(out, table: str = "trials"):
    """The results of ``attnsvm sweep ... --out OUT`` as a pandas DataFrame, one row per (point, trial)
    (``table="records"``: per recorded step). See :func:`attnsvm.sweep.load_sweep`."""
    from .sweep import load_sweep as _load_sweep

    return _load_sweep(out, table)


__all__ = [
    "GD", "NGD", "OPTIMIZERS", "AttentionProblem", "Descent", "Flow", "Init", "Model", "OptimalTokens",
    "OptimizerSpec", "Parameterization", "Radius", "RegularizationPath", "Run", "Saturation", "Save", "Stop",
    "Time", "enable_x64", "float64", "generate", "is_locally_optimal", "load_problem", "load_sweep", "optimizer",
    "p1_joint", "p1_loss", "p1_multi", "p1_single", "p3_paths", "register_optimizer", "register_parameterization",
    "solve_svm", "train", "unit_gaussian", "verdicts",
]

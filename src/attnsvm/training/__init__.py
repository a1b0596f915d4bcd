"""Training one-layer attention: one entry point, methods, optimizers and stops as composable pieces.

    run = train(problems, model, Descent(NGD(lr=0.1), steps=2000), init=Init(), save=Save(every=10))

Data flow: problems → ``Data`` arrays → the model's log-space gradient (:mod:`attnsvm.models`) → the
method (optimizer chain / flow / path) in one compiled program over all trials → records → :class:`Run`.
New optimizer: :mod:`attnsvm.training.optim` (one class + ``register_optimizer``; ℓp mirror descent,
sign-GD and Adam are such classes in :mod:`attnsvm.training.mirror`); new stop:
:mod:`attnsvm.training.stops`; new method: :mod:`attnsvm.training.methods`.
"""

from .api import train
from .methods import Descent, Flow, Init, RegularizationPath, Save
from .mirror import MD, Adam, Sign  # registers md, sign, adam
from .optim import GD, NGD, OPTIMIZERS, OptimizerSpec, optimizer, register_optimizer
from .run import DIVERGED, OK, Run
from .stops import LogSaturation, Radius, Saturation, Stop, Time

__all__ = [
    "DIVERGED", "GD", "MD", "NGD", "OK", "OPTIMIZERS", "Adam", "Descent", "Flow", "Init", "LogSaturation",
    "OptimizerSpec", "Radius", "RegularizationPath", "Run", "Saturation", "Save", "Sign", "Stop", "Time",
    "optimizer", "register_optimizer", "train",
]

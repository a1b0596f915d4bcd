"""Parameterizations of one-layer attention, one module each (protocol: :mod:`attnsvm.attention.base`)."""

from .base import PARAMETERIZATIONS, Parameterization, bilinear_logits, register_parameterization
from .combined import Combined
from .diagonal import Diagonal
from .factored import Factored
from .multihead import MultiHead
from .prompt import Prompt

__all__ = ["PARAMETERIZATIONS", "Combined", "Diagonal", "Factored", "MultiHead", "Parameterization", "Prompt",
           "bilinear_logits", "register_parameterization"]

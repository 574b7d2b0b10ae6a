"""loopgrad: multi-layer perceptrons trained with explicit, compiled index loops.

``loopgrad.kernels`` holds the loops, ``loopgrad.reference`` their NumPy twins,
``MLP`` composes them; ``docs/math.md`` holds the equations they cite.
"""
from .gradcheck import gradcheck
from .model import MLP, History
from .optim import DPSGD, SGD, Adam

__version__ = "0.1.0"
__all__ = ["MLP", "History", "SGD", "Adam", "DPSGD", "gradcheck"]

"""loopgrad: multi-layer perceptrons trained with explicit, compiled index loops.

``loopgrad.kernels`` holds the loops, ``loopgrad.reference`` their NumPy twins,
``MLP`` composes them; ``docs/math.md`` holds the equations they cite.

``import loopgrad`` is cheap: numba (about half a second to import, more to read the cached
kernels) is imported when the first name that needs it is used (``MLP``, ``History``,
``gradcheck``, or a submodule such as ``loopgrad.kernels``), not before.
"""
import importlib

from .optim import DPSGD, SGD, Adam

__version__ = "0.1.0"
__all__ = ["MLP", "History", "SGD", "Adam", "DPSGD", "gradcheck"]

# names imported on first use, and the module each comes from
_LAZY = {"MLP": "model", "History": "model", "gradcheck": "gradcheck"}
_SUBMODULES = frozenset({
    "cli", "datasets", "distributed", "explain", "io", "kernels", "layout", "model", "plots",
    "reference", "sklearn", "tables", "tabular", "tiers", "twins"})


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'loopgrad' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)

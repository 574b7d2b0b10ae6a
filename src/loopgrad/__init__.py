"""loopgrad: multi-layer perceptrons trained with explicit, compiled index loops.

``loopgrad.kernels`` holds the loops, ``loopgrad.reference`` their NumPy twins,
``MLP`` composes them; ``docs/math.md`` holds the equations they cite.

``import loopgrad`` is cheap: numba (about half a second to import, more to read the cached
kernels) is imported when the first name that needs it is used (``MLP``, ``History``,
``gradcheck``, or a submodule such as ``loopgrad.kernels``), not before.
"""
import importlib
import pkgutil

from .optim import DPSGD, SGD, Adam

__version__ = "0.1.0"
__all__ = ["MLP", "History", "SGD", "Adam", "DPSGD", "gradcheck"]

# names imported on first use, and the module each comes from; and the public submodules
_LAZY = {"MLP": "model", "History": "model", "gradcheck": "gradcheck"}
_SUBMODULES = frozenset(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


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

"""Activations in matrix form (twin of ``loopgrad.kernels.activations``): F2, F3, B5, B7.

Like scikit-learn's ``_base.py``: one small table of functions per direction,
keyed by name.
"""
import math

import numpy as np

from .. import _checks
from ..tables import EXP_MAX, LEAKY_SLOPE, activation_code


def _erf(x):
    """scipy's vectorised erf, imported on first use: gelu's twin alone needs it, and importing
    scipy.special costs a quarter of a second of every start-up."""
    from scipy.special import erf as scipy_erf
    return scipy_erf(x)


def _sigmoid(Z):
    e = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1 / (1 + e), e / (1 + e)).astype(Z.dtype, copy=False)


def _softmax(Z):
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


FORWARD = {
    "identity": lambda Z: Z.copy(),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "relu": lambda Z: np.maximum(Z, 0),
    "leaky_relu": lambda Z: np.where(Z > 0, Z, Z.dtype.type(LEAKY_SLOPE) * Z),
    "softplus": lambda Z: np.maximum(Z, 0) + np.log1p(np.exp(-np.abs(Z))),
    "gelu": lambda Z: 0.5 * Z * (1 + _erf(Z / Z.dtype.type(math.sqrt(2)))).astype(Z.dtype, copy=False),
    "softmax": _softmax,
    "exp": lambda Z: np.exp(np.minimum(Z, Z.dtype.type(EXP_MAX))),
}

# g'(Z) given Z and A = g(Z); softmax has no element-wise derivative (B7).
DERIVATIVE = {
    "identity": lambda Z, A: np.ones_like(Z),
    "sigmoid": lambda Z, A: A * (1 - A),
    "tanh": lambda Z, A: 1 - A * A,
    "relu": lambda Z, A: (Z > 0).astype(Z.dtype),
    "leaky_relu": lambda Z, A: np.where(Z > 0, 1, LEAKY_SLOPE).astype(Z.dtype),
    "softplus": lambda Z, A: _sigmoid(Z),
    "exp": lambda Z, A: A,
    "gelu": lambda Z, A: (0.5 * (1 + _erf(Z / math.sqrt(2))) + Z * np.exp(-0.5 * Z * Z) / math.sqrt(2 * math.pi)).astype(Z.dtype, copy=False),
}


def activation_forward(name, Z):
    """F2 ``A = g(Z)``; F3 ``A = exp(Z - M) / rowsum(exp(Z - M))``. Z (m, n) -> A (m, n)."""
    activation_code(name)
    Z = _checks.float_array("Z", Z, 2)
    return FORWARD[name](Z).astype(Z.dtype, copy=False)


def activation_backward(name, dA, Z, A):
    """B5 ``dZ = dA * g'(Z)``; B7 ``dZ = A * (dA - rowsum(dA * A))``. dA, Z, A (m, n) -> dZ (m, n)."""
    activation_code(name)
    dA, Z, A = _checks.activation_pair(dA, Z, A)
    if name == "softmax":
        return A * (dA - (dA * A).sum(axis=1, keepdims=True))
    return (dA * DERIVATIVE[name](Z, A)).astype(Z.dtype, copy=False)

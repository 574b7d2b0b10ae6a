"""Losses and the output delta in matrix form (twin of ``loopgrad.kernels.losses``)."""
import numpy as np

from .. import _checks
from ..tables import EXP_MAX, loss_code


def _cross_entropy(Z, Y):
    M = Z.max(axis=1, keepdims=True)
    lse = M + np.log(np.exp(Z - M).sum(axis=1, keepdims=True))
    return (Y * (lse - Z)).sum(axis=1)


LOSS = {
    "cross_entropy": _cross_entropy,
    "binary_cross_entropy": lambda Z, Y: (np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z)))).sum(axis=1),
    "squared_error": lambda Z, Y: 0.5 * ((Z - Y) ** 2).sum(axis=1),
    "poisson": lambda Z, Y: (_xlogx(Y) - Y * Z + np.exp(np.minimum(Z, Z.dtype.type(EXP_MAX))) - Y).sum(axis=1),
}


def _xlogx(Y):
    """y log y with 0 log 0 = 0, without a warning for the zeros."""
    return np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1)), 0).astype(Y.dtype, copy=False)


def loss_forward(name, Z_L, Y):
    """``J = mean_i L(i)`` from logits Z_L (m, n_L) and targets Y (m, n_L)."""
    loss_code(name)
    Z_L, Y = _checks.targets("Z_L", Z_L, Y)
    return Z_L.dtype.type(LOSS[name](Z_L, Y).mean())


def output_delta(name, A_L, Y):
    """B8 ``dZ_L = A_L - Y``."""
    loss_code(name)
    A_L, Y = _checks.targets("A_L", A_L, Y)
    return A_L - Y

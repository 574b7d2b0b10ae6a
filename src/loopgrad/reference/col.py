"""Column convention in matrix form (twin of ``loopgrad.kernels.col``): examples are columns."""
import numpy as np

from .. import _checks
from . import activations as _row_act
from . import losses as _row_loss


def dense_forward(A_prev, W, b):
    """F1 ``Z = W @ A_prev + b[:, None]``."""
    A_prev, W, b = _checks.col_layer(A_prev, W, b)
    return W @ A_prev + b[:, None]


def dense_backward(dZ, A_prev, W):
    """B4 ``dA_prev = W.T @ dZ``, B2 ``dW = dZ @ A_prev.T / m``, B3 ``db = dZ.sum(axis=1) / m``."""
    dZ, A_prev, W = _checks.col_delta(dZ, A_prev, W)
    m = dZ.dtype.type(dZ.shape[1])
    return W.T @ dZ, dZ @ A_prev.T / m, dZ.sum(axis=1) / m


def activation_forward(name, Z):
    """F2/F3 per column."""
    return _row_act.activation_forward(name, Z.T).T


def activation_backward(name, dA, Z, A):
    """B5/B7 per column."""
    return _row_act.activation_backward(name, dA.T, Z.T, A.T).T


def loss_forward(name, Z_L, Y):
    """J from logits, columns are examples."""
    return _row_loss.loss_forward(name, Z_L.T, Y.T)


def output_delta(name, A_L, Y):
    """B8 ``dZ_L = A_L - Y``."""
    return _row_loss.output_delta(name, A_L.T, Y.T).T


def per_example_weight_grads(A_prev, dZ):
    """B1 ``dW(i) = outer(dZ[:, i], A_prev[:, i])`` -> (m, n_out, n_in)."""
    return dZ.T[:, :, None] * A_prev.T[:, None, :]


def per_example_sq_norms(A_prev, dZ):
    """N1 per column."""
    return ((A_prev * A_prev).sum(axis=0) + 1) * (dZ * dZ).sum(axis=0)

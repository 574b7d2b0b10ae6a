"""The dense layer in matrix form (twin of ``loopgrad.kernels.dense``): F1, B1-B4, N1."""
import numpy as np

from .. import _checks


def dense_forward(A_prev, W, b):
    """F1 ``Z = A_prev @ W + b``. A_prev (m, n_in), W (n_in, n_out), b (n_out,) -> Z (m, n_out)."""
    A_prev, W, b = _checks.dense_layer(A_prev, W, b)
    return A_prev @ W + b


def dense_backward(dZ, A_prev, W):
    """B4 ``dA_prev = dZ @ W.T``, B2 ``dW = A_prev.T @ dZ / m``, B3 ``db = dZ.sum(0) / m``."""
    dZ, A_prev, W = _checks.dense_delta(dZ, A_prev, W)
    m = dZ.dtype.type(A_prev.shape[0])
    return dZ @ W.T, A_prev.T @ dZ / m, dZ.sum(axis=0) / m


def per_example_weight_grads(A_prev, dZ):
    """B1 ``dW(i) = outer(A_prev[i], dZ[i])`` for every i. -> (m, n_in, n_out)."""
    A_prev, dZ = _checks.example_pair(A_prev, dZ)
    return A_prev[:, :, None] * dZ[:, None, :]


def per_example_sq_norms(A_prev, dZ):
    """N1 ``(||A_prev[i]||^2 + 1) * ||dZ[i]||^2``. -> (m,)."""
    A_prev, dZ = _checks.example_pair(A_prev, dZ)
    return ((A_prev * A_prev).sum(axis=1) + 1) * (dZ * dZ).sum(axis=1)

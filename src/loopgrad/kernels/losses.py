"""Losses from the output layer's logits, and the matched output delta (B8).

``J = (1/m) sum_i L(i)``, with ``L(i)`` summed over output units. Every form is
written so that no exp overflows however large the logits are (the Poisson rate exp(z) is taken
at min(z, EXP_MAX)).
"""
import math

import numpy as np

from .. import _checks
from .._numba import FIRST, jit, rows_flat
from ..tables import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, EXP_MAX, POISSON, SOFTMAX, loss_code
from .activations import _act_rows_forward


@jit
def _loss_rows_into(code, Z, A, Y, L):
    """L(i) for every row from the logits Z and, for cross-entropy, their softmax A (the output layer's
    activation, already taken by F3); serial: m * n_L is small beside the dense layers; the mean follows."""
    m, n = Z.shape
    zero = Z.dtype.type(0.0)
    half = Z.dtype.type(0.5)
    for i in range(m):
        z = Z[i]
        y = Y[i]
        s = zero
        if code == CROSS_ENTROPY:
            # L(i) = sum_k Y[i,k] (lse_i - Z[i,k]), lse_i = log sum_j exp Z[i,j]. At the row's largest logit
            # Z[i,t], F3 gave A[i,t] = 1 / sum_j exp(Z[i,j] - Z[i,t]), which lies in [1/n, 1]: so
            # lse_i = Z[i,t] - log A[i,t] takes no exp again, and no log of an A that underflowed to 0.
            t = 0
            for k in range(1, n):
                if z[k] > z[t]:
                    t = k
            lse = z[t] - math.log(A[i, t])
            for k in range(n):
                s += y[k] * (lse - z[k])
        elif code == BINARY_CROSS_ENTROPY:
            for k in range(n):
                # -y log s(z) - (1-y) log(1-s(z)) = max(z,0) - z y + log1p(e^-|z|)
                s += max(z[k], zero) - z[k] * y[k] + math.log1p(math.exp(-abs(z[k])))
        elif code == POISSON:
            top = Z.dtype.type(EXP_MAX)
            for k in range(n):
                # L(i) = sum_k y log y - y log a + a - y with log a = z (half the Poisson deviance; 0 log 0 = 0)
                ylogy = y[k] * math.log(y[k]) if y[k] > zero else zero
                s += ylogy - y[k] * z[k] + math.exp(min(z[k], top)) - y[k]
        else:
            for k in range(n):
                # L(i) = 0.5 * sum_k (Z[i,k] - Y[i,k])^2 (identity output: A = Z)
                r = z[k] - y[k]
                s += r * r
            s = half * s
        L[i] = s


@jit
def _logit_loss_rows_into(code, Z, Y, L):
    """``_loss_rows_into`` from the logits alone, for the public loss kernels: the softmax that
    cross-entropy reads is taken here first (F3, row by row)."""
    A = np.empty(Z.shape, Z.dtype)
    if code == CROSS_ENTROPY:
        _act_rows_forward(SOFTMAX, Z, A, FIRST, Z.shape[0])
    _loss_rows_into(code, Z, A, Y, L)


@jit
def _mean(L):
    s = L.dtype.type(0.0)
    for i in range(L.shape[0]):
        s += L[i]
    return s / L.dtype.type(L.shape[0])


@jit
def _output_delta_into(A, Y, dZ):
    m = A.shape[0]
    a, y, d = rows_flat(A, FIRST, m), rows_flat(Y, FIRST, m), rows_flat(dZ, FIRST, m)
    if a.shape[0] == A.size and y.shape[0] == A.size and d.shape[0] == A.size:
        # row after row as one loop, which LLVM vectorises across rows shorter than a vector (a
        # classifier's 10)
        for p in range(d.shape[0]):
            d[p] = a[p] - y[p]
        return
    for i in range(m):
        # dZ[L][i,k] = A[L][i,k] - Y[i,k]
        for k in range(A.shape[1]):
            dZ[i, k] = A[i, k] - Y[i, k]


def loss_forward(name, Z_L, Y):
    """Cost of the B8 pairs from logits, ``J = (1/m) sum_i L(i)``: cross-entropy through log-sum-exp (softmax),
    binary cross-entropy through log-sigmoid, squared error ``0.5 ||a - y||^2``.

    Z_L (m, n_L), Y (m, n_L) -> J, a scalar of the inputs' dtype.

    Textbook loop: ``kernels/textbook.py`` ``loss_forward`` (the literal loop nest of the same sum).
    """
    code = loss_code(name)
    Z_L, Y = _checks.targets("Z_L", Z_L, Y)
    L = np.empty(Z_L.shape[0], dtype=Z_L.dtype)
    _logit_loss_rows_into(code, Z_L, Y, L)
    return Z_L.dtype.type(_mean(L))


def output_delta(name, A_L, Y):
    """B8 ``dZ[L][i,k] = A[L][i,k] - Y[i,k]`` for each matched output/loss pair.

    A_L (m, n_L), Y (m, n_L) -> dZ_L (m, n_L), per example (no 1/m).

    Textbook loop: ``kernels/textbook.py`` ``output_delta`` (the literal loop nest of the same sum).
    """
    loss_code(name)
    A_L, Y = _checks.targets("A_L", A_L, Y)
    dZ = np.empty_like(A_L)
    _output_delta_into(A_L, Y, dZ)
    return dZ

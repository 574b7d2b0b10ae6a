"""Every equation of docs/math.md as the literal loop nest of its index formula, in both conventions.

Read this file top to bottom beside docs/math.md: no register blocking, no transposed copies, no
threads; each loop nest is the sum as written, with the index form over the innermost loop. First
the row convention (examples are rows, as the library runs), then the column convention (examples
are columns, W (n_out, n_in)): the same sums with the indices in the other order. The public
functions have the names and signatures of ``loopgrad.kernels`` (and of their NumPy twins), so the
twin table holds them against both; ``loopgrad.kernels.col`` is the checked public face of the
column loops here.

Each tuned kernel in ``dense.py`` names the loop here that it computes. (A whole epoch built from
these loops was measured as a fast-compiling first tier for cold starts: 15-18 s to compile on
the 2-core AVX2 machine against 44-56 s for the tuned epoch, still too slow, so the first tier of
``loopgrad.tiers`` is the NumPy twin, which compiles nothing.)
"""
import numpy as np

from .. import _checks, tables
from .._numba import FIRST, jit
from .activations import _act_rows_backward, _act_rows_forward
from .losses import _logit_loss_rows_into, _mean, _output_delta_into


# ---- forward ------------------------------------------------------------------------------------

@jit
def _linear_into(A_prev, W, b, Z):
    """F1: Z[i,j] = sum_k A_prev[i,k] * W[k,j] + b[j]."""
    m, n_in = A_prev.shape
    for i in range(m):
        for j in range(W.shape[1]):
            s = b[j]
            # Z[i,j] = b[j] + sum_k A_prev[i,k] * W[k,j]
            for k in range(n_in):
                s += A_prev[i, k] * W[k, j]
            Z[i, j] = s


@jit
def _activation_into(code, Z, A):
    """F2 A[i,j] = g(Z[i,j]), one example (row) at a time; F3 for softmax, whose row is normalised as a whole."""
    _act_rows_forward(code, Z, A, FIRST, Z.shape[0])


# ---- backward -----------------------------------------------------------------------------------

@jit
def _per_example_weight_grads_into(A_prev, dZ, G):
    """B1: dW(i)[j,k] = sum_p dZ[i,p] sum_q A_prev[i,q] delta(q,j) delta(p,k) = A_prev[i,j] * dZ[i,k]."""
    for i in range(A_prev.shape[0]):
        for j in range(A_prev.shape[1]):
            # only q = j and p = k survive the two deltas
            for k in range(dZ.shape[1]):
                G[i, j, k] = A_prev[i, j] * dZ[i, k]


@jit
def _weight_grad_into(A_prev, dZ, dW):
    """B2: dW[j,k] = (1/m) sum_i A_prev[i,j] * dZ[i,k]."""
    m = A_prev.shape[0]
    for j in range(A_prev.shape[1]):
        for k in range(dZ.shape[1]):
            s = dW.dtype.type(0.0)
            # dW[j,k] = (1/m) sum_i A_prev[i,j] * dZ[i,k]
            for i in range(m):
                s += A_prev[i, j] * dZ[i, k]
            dW[j, k] = s / dW.dtype.type(m)


@jit
def _bias_grad_into(dZ, db):
    """B3: db[k] = (1/m) sum_i dZ[i,k]."""
    m = dZ.shape[0]
    for k in range(dZ.shape[1]):
        s = db.dtype.type(0.0)
        # db[k] = (1/m) sum_i dZ[i,k]
        for i in range(m):
            s += dZ[i, k]
        db[k] = s / db.dtype.type(m)


@jit
def _input_grad_into(dZ, W, dA_prev):
    """B4: dA_prev[i,p] = sum_q dZ[i,q] * W[p,q]."""
    for i in range(dZ.shape[0]):
        for p in range(W.shape[0]):
            s = dA_prev.dtype.type(0.0)
            # dA_prev[i,p] = sum_q dZ[i,q] * W[p,q]
            for q in range(dZ.shape[1]):
                s += dZ[i, q] * W[p, q]
            dA_prev[i, p] = s


@jit
def _activation_backward_into(code, dA, Z, A, dZ):
    """B5 dZ[i,p] = dA[i,p] * g'(Z[i,p]) (the sum over r collapsed on delta(r,p)); B7 for softmax."""
    for i in range(Z.shape[0]):
        for p in range(Z.shape[1]):
            dZ[i, p] = dA[i, p]
    _act_rows_backward(code, dZ, Z, A, FIRST, Z.shape[0])


@jit
def _per_example_sq_norms_into(A_prev, dZ, out):
    """N1: ||dW(i)||^2 + ||db(i)||^2 = (sum_j A_prev[i,j]^2 + 1) * sum_k dZ[i,k]^2."""
    for i in range(A_prev.shape[0]):
        sa = out.dtype.type(1.0)
        for j in range(A_prev.shape[1]):
            sa += A_prev[i, j] * A_prev[i, j]
        sd = out.dtype.type(0.0)
        # ||dZ[i]||^2 = sum_k dZ[i,k]^2
        for k in range(dZ.shape[1]):
            sd += dZ[i, k] * dZ[i, k]
        out[i] = sa * sd


# ---- the column convention: examples are columns, W (n_out, n_in) --------------------------------

@jit
def _col_linear_into(W, A_prev, b, Z):
    """F1 (column): Z[j,i] = sum_k W[j,k] * A_prev[k,i] + b[j]."""
    for j in range(W.shape[0]):
        for i in range(A_prev.shape[1]):
            s = b[j]
            # Z[j,i] = b[j] + sum_k W[j,k] * A_prev[k,i]
            for k in range(W.shape[1]):
                s += W[j, k] * A_prev[k, i]
            Z[j, i] = s


@jit
def _col_weight_grad_into(dZ, A_prev, dW):
    """B2 (column): dW[j,k] = (1/m) sum_i dZ[j,i] * A_prev[k,i]."""
    m = dZ.shape[1]
    for j in range(dZ.shape[0]):
        for k in range(A_prev.shape[0]):
            s = dW.dtype.type(0.0)
            # dW[j,k] = (1/m) sum_i dZ[j,i] * A_prev[k,i]
            for i in range(m):
                s += dZ[j, i] * A_prev[k, i]
            dW[j, k] = s / dW.dtype.type(m)


@jit
def _col_bias_grad_into(dZ, db):
    """B3 (column): db[j] = (1/m) sum_i dZ[j,i]."""
    m = dZ.shape[1]
    for j in range(dZ.shape[0]):
        s = db.dtype.type(0.0)
        # db[j] = (1/m) sum_i dZ[j,i]
        for i in range(m):
            s += dZ[j, i]
        db[j] = s / db.dtype.type(m)


@jit
def _col_input_grad_into(W, dZ, dA_prev):
    """B4 (column): dA_prev[k,i] = sum_j W[j,k] * dZ[j,i]."""
    for k in range(W.shape[1]):
        for i in range(dZ.shape[1]):
            s = dA_prev.dtype.type(0.0)
            # dA_prev[k,i] = sum_j W[j,k] * dZ[j,i]
            for j in range(W.shape[0]):
                s += W[j, k] * dZ[j, i]
            dA_prev[k, i] = s


@jit
def _col_per_example_weight_grads_into(A_prev, dZ, G):
    """B1 (column): dW(i)[k,j] = sum_p dZ[p,i] sum_q A_prev[q,i] delta(q,j) delta(p,k) = dZ[k,i] * A_prev[j,i]."""
    for i in range(A_prev.shape[1]):
        for k in range(dZ.shape[0]):
            # only p = k and q = j survive the two deltas
            for j in range(A_prev.shape[0]):
                G[i, k, j] = dZ[k, i] * A_prev[j, i]


@jit
def _col_per_example_sq_norms_into(A_prev, dZ, out):
    """N1 (column): ||dW(i)||^2 + ||db(i)||^2 = (sum_j A_prev[j,i]^2 + 1) * sum_k dZ[k,i]^2."""
    for i in range(A_prev.shape[1]):
        sa = out.dtype.type(1.0)
        for j in range(A_prev.shape[0]):
            sa += A_prev[j, i] * A_prev[j, i]
        sd = out.dtype.type(0.0)
        # ||dZ[:, i]||^2 = sum_k dZ[k,i]^2
        for k in range(dZ.shape[0]):
            sd += dZ[k, i] * dZ[k, i]
        out[i] = sa * sd


# ---- the same names and signatures as loopgrad.kernels --------------------------------------------

def dense_forward(A_prev, W, b):
    """F1 ``Z[i,j] = sum_k A_prev[i,k] * W[k,j] + b[j]``. A_prev (m, n_in), W (n_in, n_out), b (n_out,) -> Z (m, n_out)."""
    A_prev, W, b = _checks.dense_layer(A_prev, W, b)
    Z = np.empty((A_prev.shape[0], W.shape[1]), dtype=W.dtype)
    _linear_into(A_prev, W, b, Z)
    return Z


def dense_backward(dZ, A_prev, W):
    """B4 ``dA_prev[i,p] = sum_q dZ[i,q] W[p,q]``, B2 ``dW[j,k] = (1/m) sum_i A_prev[i,j] dZ[i,k]``,
    B3 ``db[k] = (1/m) sum_i dZ[i,k]``. -> dA_prev (m, n_in), dW (n_in, n_out), db (n_out,)."""
    dZ, A_prev, W = _checks.dense_delta(dZ, A_prev, W)
    dA_prev, dW, db = np.empty_like(A_prev), np.empty_like(W), np.empty(W.shape[1], W.dtype)
    _input_grad_into(dZ, W, dA_prev)
    _weight_grad_into(A_prev, dZ, dW)
    _bias_grad_into(dZ, db)
    return dA_prev, dW, db


def per_example_weight_grads(A_prev, dZ):
    """B1 ``dW(i)[j,k] = A_prev[i,j] * dZ[i,k]``. A_prev (m, n_in), dZ (m, n_out) -> (m, n_in, n_out)."""
    A_prev, dZ = _checks.example_pair(A_prev, dZ)
    G = np.empty((A_prev.shape[0], A_prev.shape[1], dZ.shape[1]), dtype=dZ.dtype)
    _per_example_weight_grads_into(A_prev, dZ, G)
    return G


def per_example_sq_norms(A_prev, dZ):
    """N1 ``(sum_j A_prev[i,j]^2 + 1) * sum_k dZ[i,k]^2``. A_prev (m, n_in), dZ (m, n_out) -> (m,)."""
    A_prev, dZ = _checks.example_pair(A_prev, dZ)
    out = np.empty(A_prev.shape[0], dtype=dZ.dtype)
    _per_example_sq_norms_into(A_prev, dZ, out)
    return out


def activation_forward(name, Z):
    """F2 ``A[i,j] = g(Z[i,j])``; F3 for softmax. Z (m, n) -> A (m, n)."""
    code = tables.activation_code(name)
    Z = _checks.float_array("Z", Z, 2)
    A = np.empty_like(Z)
    _activation_into(code, Z, A)
    return A


def activation_backward(name, dA, Z, A):
    """B5 ``dZ[i,p] = dA[i,p] * g'(Z[i,p])``; B7 for softmax. dA, Z, A (m, n) -> dZ (m, n)."""
    code = tables.activation_code(name)
    dA, Z, A = _checks.activation_pair(dA, Z, A)
    dZ = np.empty_like(Z)
    _activation_backward_into(code, dA, Z, A, dZ)
    return dZ


def loss_forward(name, Z_L, Y):
    """Cost of the B8 pairs from logits, ``J = (1/m) sum_i L(i)``. Z_L, Y (m, n_L) -> J."""
    code = tables.loss_code(name)
    Z_L, Y = _checks.targets("Z_L", Z_L, Y)
    L = np.empty(Z_L.shape[0], dtype=Z_L.dtype)
    _logit_loss_rows_into(code, Z_L, Y, L)
    return Z_L.dtype.type(_mean(L))


def output_delta(name, A_L, Y):
    """B8 ``dZ[L][i,k] = A[L][i,k] - Y[i,k]``. A_L, Y (m, n_L) -> dZ_L (m, n_L)."""
    tables.loss_code(name)
    A_L, Y = _checks.targets("A_L", A_L, Y)
    dZ = np.empty_like(A_L)
    _output_delta_into(A_L, Y, dZ)
    return dZ

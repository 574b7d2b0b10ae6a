"""The dense layer as index loops: F1 forward; B1-B4 backward; N1 per-example norms.

Row convention: A_prev (m, n_in), W (n_in, n_out), b (n_out,), Z (m, n_out).
Parallel loops run over an index whose outputs one iteration owns (rows of Z and
dA_prev, rows of dW), so every element is summed by one thread in a fixed order
and the result is bitwise the same on any number of threads.
"""
import numpy as np

from .._checks import float_array, same_dtype, shape
from .._numba import jit, prange
from .activations import _act_row_backward, _act_row_forward


@jit(parallel=True)
def _dense_act_forward_into(A_prev, W, b, code, Z, A):
    """F1 then F2/F3 fused in the store: Z = A_prev W + b, A = g(Z), row by row."""
    m, n_in = A_prev.shape
    n_out = W.shape[1]
    for i in prange(m):
        z = Z[i]
        x = A_prev[i]
        for j in range(n_out):
            z[j] = b[j]
        for k in range(n_in):
            xk = x[k]
            w = W[k]
            # Z[i,j] += A_prev[i,k] * W[k,j]: contiguous in j, so it vectorises
            for j in range(n_out):
                z[j] += xk * w[j]
        if code >= 0:
            _act_row_forward(code, z, A[i])


@jit(parallel=True)
def _weight_grad_into(A_prev, dZ, dW):
    """B2 into dW: each thread owns whole rows j of dW."""
    m, n_in = A_prev.shape
    n_out = dZ.shape[1]
    inv_m = dW.dtype.type(1.0) / dW.dtype.type(m)
    zero = dW.dtype.type(0.0)
    for j in prange(n_in):
        g = dW[j]
        for k in range(n_out):
            g[k] = zero
        for i in range(m):
            a = A_prev[i, j]
            d = dZ[i]
            # dW[j,k] += A_prev[i,j] * dZ[i,k]
            for k in range(n_out):
                g[k] += a * d[k]
        for k in range(n_out):
            g[k] = g[k] * inv_m


@jit
def _bias_grad_into(dZ, db):
    """B3 into db: a column sum taken row after row (contiguous), then 1/m."""
    m, n_out = dZ.shape
    zero = db.dtype.type(0.0)
    for k in range(n_out):
        db[k] = zero
    for i in range(m):
        d = dZ[i]
        # db[k] += dZ[i,k]
        for k in range(n_out):
            db[k] += d[k]
    inv_m = db.dtype.type(1.0) / db.dtype.type(m)
    for k in range(n_out):
        db[k] = db[k] * inv_m


@jit(parallel=True)
def _input_grad_act_into(dZ, W, code, Z_prev, A_prev, dZ_prev):
    """B4 then B5/B7 fused (B6): dA_prev = dZ W^T, then g'(Z_prev) applied in place.

    ``code < 0`` stops after B4 (dZ_prev then holds dA_prev).
    """
    m, n_out = dZ.shape
    n_in = W.shape[0]
    zero = dZ.dtype.type(0.0)
    for i in prange(m):
        d = dZ[i]
        out = dZ_prev[i]
        for p in range(n_in):
            w = W[p]
            s = zero
            # dA_prev[i,p] = sum_q dZ[i,q] * W[p,q]: both rows contiguous in q
            for q in range(n_out):
                s += d[q] * w[q]
            out[p] = s
        if code >= 0:
            _act_row_backward(code, out, Z_prev[i], A_prev[i])


@jit(parallel=True)
def _per_example_weight_grads_into(A_prev, dZ, G):
    m, n_in = A_prev.shape
    n_out = dZ.shape[1]
    for i in prange(m):
        for j in range(n_in):
            a = A_prev[i, j]
            # dW(i)[j,k] = A_prev[i,j] * dZ[i,k]: the two deltas have collapsed the double sum
            for k in range(n_out):
                G[i, j, k] = a * dZ[i, k]


@jit(parallel=True)
def _per_example_sq_norms_into(A_prev, dZ, out):
    m, n_in = A_prev.shape
    n_out = dZ.shape[1]
    one = out.dtype.type(1.0)
    for i in prange(m):
        sa = out.dtype.type(0.0)
        for j in range(n_in):
            sa += A_prev[i, j] * A_prev[i, j]
        sd = out.dtype.type(0.0)
        # ||dZ[i]||^2 = sum_k dZ[i,k]^2
        for k in range(n_out):
            sd += dZ[i, k] * dZ[i, k]
        out[i] = (sa + one) * sd


def _check_layer(A_prev, W, b=None):
    A_prev = float_array("A_prev", A_prev, 2)
    W = float_array("W", W, 2)
    shape("W", W, (A_prev.shape[1], None), "(n_in, n_out)")
    if b is None:
        same_dtype(A_prev=A_prev, W=W)
        return A_prev, W
    b = float_array("b", b, 1)
    shape("b", b, (W.shape[1],), "(n_out,)")
    same_dtype(A_prev=A_prev, W=W, b=b)
    return A_prev, W, b


def _check_pair(A_prev, dZ):
    A_prev = float_array("A_prev", A_prev, 2)
    dZ = float_array("dZ", dZ, 2)
    shape("dZ", dZ, (A_prev.shape[0], None), "(m, n_out)")
    same_dtype(A_prev=A_prev, dZ=dZ)
    return A_prev, dZ


def dense_forward(A_prev, W, b):
    """F1 ``Z[i,j] = sum_k A_prev[i,k] * W[k,j] + b[j]``.

    A_prev (m, n_in), W (n_in, n_out), b (n_out,) -> Z (m, n_out).
    """
    A_prev, W, b = _check_layer(A_prev, W, b)
    Z = np.empty((A_prev.shape[0], W.shape[1]), dtype=W.dtype)
    _dense_act_forward_into(A_prev, W, b, -1, Z, Z)
    return Z


def dense_backward(dZ, A_prev, W):
    """B4 ``dA_prev[i,p] = sum_q dZ[i,q] W[p,q]``, B2 ``dW[j,k] = (1/m) sum_i A_prev[i,j] dZ[i,k]``,
    B3 ``db[k] = (1/m) sum_i dZ[i,k]``.

    dZ (m, n_out), A_prev (m, n_in), W (n_in, n_out) -> dA_prev (m, n_in), dW (n_in, n_out), db (n_out,).
    """
    A_prev, W = _check_layer(A_prev, W)
    dZ = float_array("dZ", dZ, 2)
    shape("dZ", dZ, (A_prev.shape[0], W.shape[1]), "(m, n_out)")
    same_dtype(dZ=dZ, W=W)
    dA_prev = np.empty_like(A_prev)
    dW = np.empty_like(W)
    db = np.empty(W.shape[1], dtype=W.dtype)
    _input_grad_act_into(dZ, W, -1, A_prev, A_prev, dA_prev)
    _weight_grad_into(A_prev, dZ, dW)
    _bias_grad_into(dZ, db)
    return dA_prev, dW, db


def per_example_weight_grads(A_prev, dZ):
    """B1 ``dW(i)[j,k] = A_prev[i,j] * dZ[i,k]`` (no 1/m: their mean is B2's dW).

    A_prev (m, n_in), dZ (m, n_out) -> (m, n_in, n_out).
    """
    A_prev, dZ = _check_pair(A_prev, dZ)
    G = np.empty((A_prev.shape[0], A_prev.shape[1], dZ.shape[1]), dtype=dZ.dtype)
    _per_example_weight_grads_into(A_prev, dZ, G)
    return G


def per_example_sq_norms(A_prev, dZ):
    """N1 ``||dW(i)||^2 + ||db(i)||^2 = (sum_j A_prev[i,j]^2 + 1) * sum_k dZ[i,k]^2``.

    A_prev (m, n_in), dZ (m, n_out) -> (m,). Never forms a dW(i).
    """
    A_prev, dZ = _check_pair(A_prev, dZ)
    out = np.empty(A_prev.shape[0], dtype=dZ.dtype)
    _per_example_sq_norms_into(A_prev, dZ, out)
    return out

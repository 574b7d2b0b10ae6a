"""The first layer on sparse input: F1 and B2 when A[0] = X is a CSR matrix.

CSR row i holds its stored entries ``data[p]`` at columns ``indices[p]`` for
``indptr[i] <= p < indptr[i + 1]``. F1's sum over the input index j then runs over the stored
entries of row i only, and B2's sum over the examples i scatters each stored entry into the row of
dW that its column names: work in proportion to the stored entries, not to m n_0. Layers 2..L are
dense as ever. F1 runs in blocks of rows (each owns its rows of Z); B2 in blocks of columns of dW
(each owns its columns, summing the examples in order), so results do not depend on the threads.
"""
import numpy as np

from .. import _checks, _company
from .._numba import FIRST, jit, prange, refuse_in_forked_child
from ._gemm import ROW_BLOCK, SERIAL_WORK
from .activations import _act_rows_forward

# Columns of dW per parallel task of B2, fixed so that the split never depends on the thread count.
COL_BLOCK = 16


@jit
def _sparse_forward_rows(data, indices, indptr, W, b, code, Z, A, i0, i1):
    """F1 then F2/F3 on rows i0 <= i < i1: Z[i,k] = b[k] + sum_p data[p] W[indices[p],k], A[i] = g(Z[i])."""
    n_out = W.shape[1]
    for i in range(i0, i1):
        z = Z[i]
        for k in range(n_out):
            z[k] = b[k]
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            w = W[indices[p]]
            # Z[i,k] += A[i,j] W[j,k] for the stored j = indices[p] of row i
            for k in range(n_out):
                z[k] += v * w[k]
    if code >= 0:
        _act_rows_forward(code, Z, A, i0, i1)


@jit(parallel=True)
def _sparse_forward_blocks(data, indices, indptr, W, b, code, Z, A):
    m = indptr.shape[0] - 1
    for blk in prange((m + ROW_BLOCK - 1) // ROW_BLOCK):
        _sparse_forward_rows(data, indices, indptr, W, b, code, Z, A, blk * ROW_BLOCK, min(m, (blk + 1) * ROW_BLOCK))


@jit
def _sparse_forward_into(data, indices, indptr, W, b, code, Z, A):
    """F1 (and F2/F3 unless ``code < 0``) for a CSR batch (m = len(indptr) - 1 rows) into Z, A (m, n_out)."""
    m = indptr.shape[0] - 1
    if data.shape[0] * W.shape[1] < SERIAL_WORK:
        _sparse_forward_rows(data, indices, indptr, W, b, code, Z, A, FIRST, m)
    else:
        _sparse_forward_blocks(data, indices, indptr, W, b, code, Z, A)


@jit
def _sparse_weight_grad_cols(data, indices, indptr, dZ, dW, k0, k1, inv_m):
    """B2 on the columns k0 <= k < k1: dW[j,k] = (1/m) sum_i A[i,j] dZ[i,k], scattered from the stored entries."""
    for j in range(dW.shape[0]):
        for k in range(k0, k1):
            dW[j, k] = 0.0
    for i in range(indptr.shape[0] - 1):
        d = dZ[i]
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            g = dW[indices[p]]
            # dW[j,k] += A[i,j] dZ[i,k] for the stored j = indices[p] of row i
            for k in range(k0, k1):
                g[k] += v * d[k]
    for j in range(dW.shape[0]):
        for k in range(k0, k1):
            dW[j, k] *= inv_m


@jit(parallel=True)
def _sparse_weight_grad_blocks(data, indices, indptr, dZ, dW, inv_m):
    n_out = dW.shape[1]
    for blk in prange((n_out + COL_BLOCK - 1) // COL_BLOCK):
        _sparse_weight_grad_cols(data, indices, indptr, dZ, dW, blk * COL_BLOCK, min(n_out, (blk + 1) * COL_BLOCK),
                                 inv_m)


@jit
def _sparse_weight_grad_into(data, indices, indptr, dZ, dW):
    """B2 for a CSR A[0] into dW (n_0, n_1), overwritten."""
    inv_m = dW.dtype.type(1.0) / dW.dtype.type(indptr.shape[0] - 1)
    if (data.shape[0] + dW.shape[0]) * dW.shape[1] < SERIAL_WORK:
        _sparse_weight_grad_cols(data, indices, indptr, dZ, dW, 0, dW.shape[1], inv_m)
    else:
        _sparse_weight_grad_blocks(data, indices, indptr, dZ, dW, inv_m)


@refuse_in_forked_child
@_company.shares_cores(lambda data, indices, indptr, W, b: np.size(data) * W.shape[1])
def sparse_dense_forward(data, indices, indptr, W, b):
    """F1 for a CSR input: ``Z[i,k] = sum_j A[i,j] W[j,k] + b[k]`` over the stored entries of row i.

    data (nnz,), indices (nnz,) int, indptr (m + 1,) int (CSR of A (m, n_in)), W (n_in, n_out),
    b (n_out,) -> Z (m, n_out), a new array.
    """
    data, indices, indptr = _checks.csr("A", data, indices, indptr, W.shape[0] if hasattr(W, "shape") else None)
    W = _checks.float_array("W", W, 2)
    b = _checks.float_array("b", b, 1)
    _checks.shape("b", b, (W.shape[1],), "(n_out,)")
    _checks.same_dtype(data=data, W=W, b=b)
    m = indptr.shape[0] - 1
    Z = np.empty((m, W.shape[1]), dtype=W.dtype)
    _sparse_forward_into(data, indices, indptr, W, b, np.int64(-1), Z, Z)
    return Z


@refuse_in_forked_child
@_company.shares_cores(lambda data, indices, indptr, n_in, dZ: np.size(data) * dZ.shape[1])
def sparse_weight_grad(data, indices, indptr, n_in, dZ):
    """B2 for a CSR input: ``dW[j,k] = (1/m) sum_i A[i,j] dZ[i,k]``, each stored entry added into row j.

    data, indices, indptr: CSR of A (m, n_in); dZ (m, n_out) -> dW (n_in, n_out), a new array.
    """
    n_in = _checks.integer("n_in", n_in, 1)
    data, indices, indptr = _checks.csr("A", data, indices, indptr, n_in)
    dZ = _checks.float_array("dZ", dZ, 2)
    _checks.shape("dZ", dZ, (indptr.shape[0] - 1, dZ.shape[1]), "(m, n_out), m = len(indptr) - 1")
    _checks.same_dtype(data=data, dZ=dZ)
    if indptr.shape[0] == 1:
        raise ValueError("A: expected at least one row (m >= 1), got len(indptr) = 1")
    dW = np.empty((n_in, dZ.shape[1]), dtype=dZ.dtype)
    _sparse_weight_grad_into(data, indices, indptr, np.ascontiguousarray(dZ), dW)
    return dW

"""The dense layer as index loops: F1 forward; B1-B4 backward; N1 per-example norms.

Row convention: A_prev (m, n_in), W (n_in, n_out), b (n_out,), Z (m, n_out).
One function per equation; the sum over k of F1, B2 and B4 is the tuned product of
``kernels/_gemm.py`` (its naive triple loop sits beside it there), and what is fused into
its stores (bias, activation, g', 1/m) is written out here. Parallel loops run over an index
whose outputs one iteration owns (rows of Z and dA_prev, rows of dW), so every element is
summed by one thread in a fixed order and the result is bitwise the same on any number of threads.
"""
import numpy as np

from .. import _checks
from .._numba import FIRST, OVERWRITE, jit, prange, refuse_in_forked_child
from ..layout import WEIGHT_CHUNK
from ._gemm import ROW_BLOCK, SERIAL_WORK, nn_rows, nt_rows, transpose_into
from .activations import _act_row_backward, _act_row_forward

# From this batch size on, F1 copies W transposed (n_in * n_out moves) to use the dot form,
# which runs about 1.5x faster than the axpy form; below it the copy costs more than it saves.
DOT_FORWARD_ROWS = 64
# From this batch size on, B2 transposes A_prev and dZ (m * (n_in + n_out) moves) to use the
# dot form over the example index (in chunks of at most WEIGHT_CHUNK examples).
DOT_WEIGHT_ROWS = 256


@jit
def _forward_rows(A_prev, W, WT, b, code, Z, A, i0, i1):
    """F1 then F2/F3 on rows i0 <= i < i1: Z[i,j] = sum_k A_prev[i,k] W[k,j] + b[j], A[i] = g(Z[i])."""
    if A_prev.shape[0] >= DOT_FORWARD_ROWS:
        # sum_k A_prev[i,k] * WT[j,k]: the dot form on the transposed copy of W
        nt_rows(A_prev, WT, Z, i0, i1, OVERWRITE)
    else:
        nn_rows(A_prev, W, Z, i0, i1)
    for i in range(i0, i1):
        z = Z[i]
        # Z[i,j] += b[j], while the row is still in cache
        for j in range(z.shape[0]):
            z[j] += b[j]
        if code >= 0:
            _act_row_forward(code, z, A[i])


@jit(parallel=True)
def _forward_blocks(A_prev, W, WT, b, code, Z, A):
    m = A_prev.shape[0]
    for blk in prange((m + ROW_BLOCK - 1) // ROW_BLOCK):
        _forward_rows(A_prev, W, WT, b, code, Z, A, blk * ROW_BLOCK, min(m, (blk + 1) * ROW_BLOCK))


@jit
def _dense_act_forward_into(A_prev, W, b, code, Z, A, wt):
    """F1 then F2/F3 fused in the store: Z = A_prev W + b, A = g(Z), one block of rows per task.

    ``code < 0`` stops after F1. ``wt`` (at least n_in * n_out, ``Buffers.wt``) receives W
    transposed when the batch is large enough for the dot form. Small products run on the calling
    thread. (The serial path stays outside the parallel function: inside it, calls cost a few us more.)
    """
    m, n_in = A_prev.shape
    n_out = W.shape[1]
    WT = wt[:n_in * n_out].reshape((n_out, n_in))
    if m >= DOT_FORWARD_ROWS:
        transpose_into(W, WT, FIRST)
    if m * n_in * n_out < SERIAL_WORK:
        _forward_rows(A_prev, W, WT, b, code, Z, A, FIRST, m)
    else:
        _forward_blocks(A_prev, W, WT, b, code, Z, A)


@jit
def _weight_grad_rows(A_prev, dZ, AT, dZT, dW, j0, j1, acc, inv_m):
    """B2 on rows j0 <= j < j1: dW[j,k] = (1/m) sum_i A_prev[i,j] dZ[i,k] over the examples given;
    ``acc`` adds to dW (a later chunk of examples), ``inv_m > 0`` then scales the rows by it."""
    if AT.shape[1] > 0:
        # sum_i AT[j,i] * dZT[k,i]: the dot form over a chunk of examples
        nt_rows(AT, dZT, dW, j0, j1, acc)
    else:
        # sum_i A_prev[i,j] dZ[i,k]: the axpy form on A_prev.T (read one scalar at a time)
        nn_rows(A_prev.T, dZ, dW, j0, j1)
    if inv_m > 0:
        for j in range(j0, j1):
            g = dW[j]
            # dW[j,k] = (1/m) * sum: the 1/m of J = (1/m) sum_i L(i) lives here and in db only
            for k in range(g.shape[0]):
                g[k] = g[k] * inv_m


@jit(parallel=True)
def _weight_grad_blocks(A_prev, dZ, AT, dZT, dW, acc, inv_m):
    n_in = A_prev.shape[1]
    for blk in prange((n_in + ROW_BLOCK - 1) // ROW_BLOCK):
        _weight_grad_rows(A_prev, dZ, AT, dZT, dW, blk * ROW_BLOCK, min(n_in, (blk + 1) * ROW_BLOCK), acc, inv_m)


@jit
def _weight_grad_part(A_prev, dZ, AT, dZT, dW, acc, inv_m):
    if A_prev.shape[0] * A_prev.shape[1] * dZ.shape[1] < SERIAL_WORK:
        _weight_grad_rows(A_prev, dZ, AT, dZT, dW, FIRST, A_prev.shape[1], acc, inv_m)
    else:
        _weight_grad_blocks(A_prev, dZ, AT, dZT, dW, acc, inv_m)


@jit
def _weight_grad_into(A_prev, dZ, dW, at, dzt):
    """B2 into dW: each task owns a block of rows j of dW.

    From DOT_WEIGHT_ROWS examples on, chunks of up to WEIGHT_CHUNK examples are transposed into
    the scratch ``at`` and ``dzt`` (``Buffers.at``/``dzt``; m * (n_in + n_out) moves in all, small
    beside the m * n_in * n_out multiply-adds) so that the sum over examples is a dot form;
    chunking keeps the operands' rows in cache.
    """
    m, n_in = A_prev.shape
    n_out = dZ.shape[1]
    inv_m = dW.dtype.type(1.0) / dW.dtype.type(m)
    if m < DOT_WEIGHT_ROWS:
        E = at[:0].reshape((0, 0))
        _weight_grad_part(A_prev, dZ, E, E, dW, OVERWRITE, inv_m)
        return
    chunk = min(m, WEIGHT_CHUNK)
    zero = dW.dtype.type(0.0)
    for c0 in range(0, m, chunk):
        mc = min(chunk, m - c0)
        AT = at[:n_in * mc].reshape((n_in, mc))
        dZT = dzt[:n_out * mc].reshape((n_out, mc))
        transpose_into(A_prev, AT, c0)
        transpose_into(dZ, dZT, c0)
        _weight_grad_part(A_prev, dZ, AT, dZT, dW, c0 > 0, inv_m if c0 + mc == m else zero)


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


@jit
def _input_grad_rows(dZ, W, code, Z_prev, A_prev, dZ_prev, i0, i1):
    """B4 then B5/B7 on rows i0 <= i < i1: dA_prev[i,p] = sum_q dZ[i,q] W[p,q], then g'(Z_prev)."""
    # sum_q dZ[i,q] * W[p,q]: rows of dZ and of W are both contiguous in q, the dot form as it is
    nt_rows(dZ, W, dZ_prev, i0, i1, OVERWRITE)
    if code >= 0:
        for i in range(i0, i1):
            _act_row_backward(code, dZ_prev[i], Z_prev[i], A_prev[i])


@jit(parallel=True)
def _input_grad_blocks(dZ, W, code, Z_prev, A_prev, dZ_prev):
    m = dZ.shape[0]
    for blk in prange((m + ROW_BLOCK - 1) // ROW_BLOCK):
        _input_grad_rows(dZ, W, code, Z_prev, A_prev, dZ_prev, blk * ROW_BLOCK, min(m, (blk + 1) * ROW_BLOCK))


@jit
def _input_grad_act_into(dZ, W, code, Z_prev, A_prev, dZ_prev):
    """B4 then B5/B7 fused (B6): dA_prev = dZ W^T, then g'(Z_prev) applied in place.

    ``code < 0`` stops after B4 (dZ_prev then holds dA_prev).
    """
    m, n_out = dZ.shape
    if m * n_out * W.shape[0] < SERIAL_WORK:
        _input_grad_rows(dZ, W, code, Z_prev, A_prev, dZ_prev, FIRST, m)
    else:
        _input_grad_blocks(dZ, W, code, Z_prev, A_prev, dZ_prev)


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


@jit
def _per_example_sq_norms_into(A_prev, dZ, out):
    # serial: O(m (n_in + n_out)) work beside the O(m n_in n_out) products
    m, n_in = A_prev.shape
    n_out = dZ.shape[1]
    one = out.dtype.type(1.0)
    for i in range(m):
        sa = out.dtype.type(0.0)
        for j in range(n_in):
            sa += A_prev[i, j] * A_prev[i, j]
        sd = out.dtype.type(0.0)
        # ||dZ[i]||^2 = sum_k dZ[i,k]^2
        for k in range(n_out):
            sd += dZ[i, k] * dZ[i, k]
        out[i] = (sa + one) * sd


@refuse_in_forked_child
def dense_forward(A_prev, W, b):
    """F1 ``Z[i,j] = sum_k A_prev[i,k] * W[k,j] + b[j]``.

    A_prev (m, n_in), W (n_in, n_out), b (n_out,) -> Z (m, n_out).

    Textbook loop: ``kernels/textbook.py`` ``dense_forward`` (the literal loop nest of the same sum).
    """
    A_prev, W, b = _checks.dense_layer(A_prev, W, b)
    Z = np.empty((A_prev.shape[0], W.shape[1]), dtype=W.dtype)
    _dense_act_forward_into(A_prev, W, b, -1, Z, Z, np.empty(W.size, W.dtype))
    return Z


@refuse_in_forked_child
def dense_backward(dZ, A_prev, W):
    """B4 ``dA_prev[i,p] = sum_q dZ[i,q] W[p,q]``, B2 ``dW[j,k] = (1/m) sum_i A_prev[i,j] dZ[i,k]``,
    B3 ``db[k] = (1/m) sum_i dZ[i,k]``.

    dZ (m, n_out), A_prev (m, n_in), W (n_in, n_out) -> dA_prev (m, n_in), dW (n_in, n_out), db (n_out,).

    Textbook loop: ``kernels/textbook.py`` ``dense_backward`` (the literal loop nest of the same sum).
    """
    dZ, A_prev, W = _checks.dense_delta(dZ, A_prev, W)
    m, n_in = A_prev.shape
    n_out = W.shape[1]
    dA_prev = np.empty_like(A_prev)
    dW = np.empty_like(W)
    db = np.empty(n_out, dtype=W.dtype)
    chunk = min(m, WEIGHT_CHUNK)
    _input_grad_act_into(dZ, W, -1, A_prev, A_prev, dA_prev)
    _weight_grad_into(A_prev, dZ, dW, np.empty(chunk * n_in, W.dtype), np.empty(chunk * n_out, W.dtype))
    _bias_grad_into(dZ, db)
    return dA_prev, dW, db


@refuse_in_forked_child
def per_example_weight_grads(A_prev, dZ):
    """B1 ``dW(i)[j,k] = A_prev[i,j] * dZ[i,k]`` (no 1/m: their mean is B2's dW).

    A_prev (m, n_in), dZ (m, n_out) -> (m, n_in, n_out).

    Textbook loop: ``kernels/textbook.py`` ``per_example_weight_grads`` (the literal loop nest of the same sum).
    """
    A_prev, dZ = _checks.example_pair(A_prev, dZ)
    G = np.empty((A_prev.shape[0], A_prev.shape[1], dZ.shape[1]), dtype=dZ.dtype)
    _per_example_weight_grads_into(A_prev, dZ, G)
    return G


def per_example_sq_norms(A_prev, dZ):
    """N1 ``||dW(i)||^2 + ||db(i)||^2 = (sum_j A_prev[i,j]^2 + 1) * sum_k dZ[i,k]^2``.

    A_prev (m, n_in), dZ (m, n_out) -> (m,). Never forms a dW(i).

    Textbook loop: ``kernels/textbook.py`` ``per_example_sq_norms`` (the literal loop nest of the same sum).
    """
    A_prev, dZ = _checks.example_pair(A_prev, dZ)
    out = np.empty(A_prev.shape[0], dtype=dZ.dtype)
    _per_example_sq_norms_into(A_prev, dZ, out)
    return out

"""The dense layer as index loops: F1 forward; B1-B4 backward; N1 per-example norms.

Row convention: A_prev (m, n_in), W (n_in, n_out), b (n_out,), Z (m, n_out).
Parallel loops run over an index whose outputs one iteration owns (rows of Z and
dA_prev, rows of dW), so every element is summed by one thread in a fixed order
and the result is bitwise the same on any number of threads.
"""
import numpy as np

from .._checks import float_array, same_dtype, shape
from .._numba import FIRST, OVERWRITE, jit, prange
from .activations import _act_row_backward, _act_row_forward


# Rows of an output that one parallel task owns. Fixed, so each output element is summed by one
# thread in one order whatever the number of threads: the same bits on 1 or 2 threads.
ROW_BLOCK = 16
# Below this many multiply-adds a product runs serially: waking the thread pool costs more.
SERIAL_WORK = 1 << 18
# From this batch size on, F1 copies W transposed (n_in * n_out moves) to use the dot form,
# which runs about 1.5x faster than the axpy form; below it the copy costs more than it saves.
DOT_FORWARD_ROWS = 64
# From this batch size on, B2 transposes A_prev and dZ (m * (n_in + n_out) moves) to use the
# dot form over the example index.
DOT_WEIGHT_ROWS = 256
# B2's dot form sums over at most this many examples at a time (transposed rows stay in cache).
WEIGHT_CHUNK = 1024


@jit
def _nn_rows(X, B, C, i0, i1):
    """C[i,:] = sum_k X[i,k] * B[k,:] for rows i0 <= i < i1 (overwrites C's rows).

    The "axpy" form: the innermost loop runs along a row of B and of C (contiguous), and four
    rows of C take four rows of B at a time, so each load of B feeds 16 multiply-adds.
    X may be any layout (it is read one scalar at a time): A_prev for F1, A_prev.T for B2.
    """
    K = X.shape[1]
    N = B.shape[1]
    zero = C.dtype.type(0.0)
    i = i0
    while i + 4 <= i1:
        c0 = C[i]
        c1 = C[i + 1]
        c2 = C[i + 2]
        c3 = C[i + 3]
        for j in range(N):
            c0[j] = zero
            c1[j] = zero
            c2[j] = zero
            c3[j] = zero
        k = 0
        while k + 4 <= K:
            b0 = B[k]
            b1 = B[k + 1]
            b2 = B[k + 2]
            b3 = B[k + 3]
            x00, x01, x02, x03 = X[i, k], X[i, k + 1], X[i, k + 2], X[i, k + 3]
            x10, x11, x12, x13 = X[i + 1, k], X[i + 1, k + 1], X[i + 1, k + 2], X[i + 1, k + 3]
            x20, x21, x22, x23 = X[i + 2, k], X[i + 2, k + 1], X[i + 2, k + 2], X[i + 2, k + 3]
            x30, x31, x32, x33 = X[i + 3, k], X[i + 3, k + 1], X[i + 3, k + 2], X[i + 3, k + 3]
            # C[i+r,j] += sum_{q<4} X[i+r,k+q] * B[k+q,j]
            for j in range(N):
                y0 = b0[j]
                y1 = b1[j]
                y2 = b2[j]
                y3 = b3[j]
                c0[j] += x00 * y0 + x01 * y1 + x02 * y2 + x03 * y3
                c1[j] += x10 * y0 + x11 * y1 + x12 * y2 + x13 * y3
                c2[j] += x20 * y0 + x21 * y1 + x22 * y2 + x23 * y3
                c3[j] += x30 * y0 + x31 * y1 + x32 * y2 + x33 * y3
            k += 4
        while k < K:
            b0 = B[k]
            x0, x1, x2, x3 = X[i, k], X[i + 1, k], X[i + 2, k], X[i + 3, k]
            for j in range(N):
                y = b0[j]
                c0[j] += x0 * y
                c1[j] += x1 * y
                c2[j] += x2 * y
                c3[j] += x3 * y
            k += 1
        i += 4
    while i < i1:
        c = C[i]
        for j in range(N):
            c[j] = zero
        for k in range(K):
            x = X[i, k]
            b = B[k]
            # C[i,j] += X[i,k] * B[k,j]
            for j in range(N):
                c[j] += x * b[j]
        i += 1


@jit
def _nt_rows(X, Y, C, i0, i1, acc):
    """C[i,j] = sum_k X[i,k] * Y[j,k] for rows i0 <= i < i1 (overwrites C's rows, or adds to
    them when ``acc``).

    The "dot" form: both operands are contiguous along the summed index k, and a 4 x 4 block of
    outputs is kept in 16 scalar accumulators, which LLVM turns into vector registers (fastmath
    reassociation lets it split each sum across SIMD lanes). Columns of C are the outer loop so
    that Y streams through the cache once per task while the task's rows of X stay in L2.
    """
    K = X.shape[1]
    N = Y.shape[0]
    zero = C.dtype.type(0.0)
    i4 = i0 + (i1 - i0) // 4 * 4
    j = 0
    while j + 4 <= N:
        b0 = Y[j]
        b1 = Y[j + 1]
        b2 = Y[j + 2]
        b3 = Y[j + 3]
        for i in range(i0, i4, 4):
            a0 = X[i]
            a1 = X[i + 1]
            a2 = X[i + 2]
            a3 = X[i + 3]
            c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = zero
            c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = zero
            # C[i+r,j+s] = sum_k X[i+r,k] * Y[j+s,k]
            for k in range(K):
                x0 = a0[k]
                x1 = a1[k]
                x2 = a2[k]
                x3 = a3[k]
                y0 = b0[k]
                y1 = b1[k]
                y2 = b2[k]
                y3 = b3[k]
                c00 += x0 * y0
                c01 += x0 * y1
                c02 += x0 * y2
                c03 += x0 * y3
                c10 += x1 * y0
                c11 += x1 * y1
                c12 += x1 * y2
                c13 += x1 * y3
                c20 += x2 * y0
                c21 += x2 * y1
                c22 += x2 * y2
                c23 += x2 * y3
                c30 += x3 * y0
                c31 += x3 * y1
                c32 += x3 * y2
                c33 += x3 * y3
            if acc:
                c00 += C[i, j]
                c01 += C[i, j + 1]
                c02 += C[i, j + 2]
                c03 += C[i, j + 3]
                c10 += C[i + 1, j]
                c11 += C[i + 1, j + 1]
                c12 += C[i + 1, j + 2]
                c13 += C[i + 1, j + 3]
                c20 += C[i + 2, j]
                c21 += C[i + 2, j + 1]
                c22 += C[i + 2, j + 2]
                c23 += C[i + 2, j + 3]
                c30 += C[i + 3, j]
                c31 += C[i + 3, j + 1]
                c32 += C[i + 3, j + 2]
                c33 += C[i + 3, j + 3]
            C[i, j], C[i, j + 1], C[i, j + 2], C[i, j + 3] = c00, c01, c02, c03
            C[i + 1, j], C[i + 1, j + 1], C[i + 1, j + 2], C[i + 1, j + 3] = c10, c11, c12, c13
            C[i + 2, j], C[i + 2, j + 1], C[i + 2, j + 2], C[i + 2, j + 3] = c20, c21, c22, c23
            C[i + 3, j], C[i + 3, j + 1], C[i + 3, j + 2], C[i + 3, j + 3] = c30, c31, c32, c33
        for i in range(i4, i1):
            a0 = X[i]
            c0 = c1 = c2 = c3 = zero
            for k in range(K):
                x = a0[k]
                c0 += x * b0[k]
                c1 += x * b1[k]
                c2 += x * b2[k]
                c3 += x * b3[k]
            if acc:
                c0 += C[i, j]
                c1 += C[i, j + 1]
                c2 += C[i, j + 2]
                c3 += C[i, j + 3]
            C[i, j], C[i, j + 1], C[i, j + 2], C[i, j + 3] = c0, c1, c2, c3
        j += 4
    while j < N:
        b0 = Y[j]
        for i in range(i0, i1):
            a0 = X[i]
            c = zero
            # C[i,j] = sum_k X[i,k] * Y[j,k]
            for k in range(K):
                c += a0[k] * b0[k]
            C[i, j] = C[i, j] + c if acc else c
        j += 1


@jit
def _transpose_rows(X, XT, r0, j0, j1):
    m = XT.shape[1]
    i = 0
    while i < m:
        i1 = min(i + 16, m)
        for j in range(j0, j1):
            t = XT[j]
            for ii in range(i, i1):
                t[ii] = X[r0 + ii, j]
        i = i1


@jit(parallel=True)
def _transpose_into(X, XT, r0):
    """XT = X[r0:r0 + XT.shape[1]].T in 16 x 16 tiles; each task owns a block of rows of XT."""
    n = X.shape[1]
    for blk in prange((n + ROW_BLOCK - 1) // ROW_BLOCK):
        _transpose_rows(X, XT, r0, blk * ROW_BLOCK, min(n, (blk + 1) * ROW_BLOCK))


@jit
def _forward_rows(A_prev, W, WT, b, code, Z, A, i0, i1):
    if A_prev.shape[0] >= DOT_FORWARD_ROWS:
        # Z[i,j] = sum_k A_prev[i,k] * WT[j,k]: the dot form on the transposed copy
        _nt_rows(A_prev, WT, Z, i0, i1, OVERWRITE)
    else:
        _nn_rows(A_prev, W, Z, i0, i1)
    for i in range(i0, i1):
        z = Z[i]
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
def _dense_act_forward_into(A_prev, W, b, code, Z, A, scratch):
    """F1 then F2/F3 fused in the store: Z = A_prev W + b, A = g(Z), one block of rows per task.

    ``code < 0`` stops after F1. ``scratch`` (at least n_in * n_out) receives W transposed
    when the batch is large enough for the dot form. Small products run on the calling thread.
    (The serial path stays outside the parallel function: inside it, calls cost a few us more.)
    """
    m, n_in = A_prev.shape
    n_out = W.shape[1]
    WT = scratch[:n_in * n_out].reshape((n_out, n_in))
    if m >= DOT_FORWARD_ROWS:
        _transpose_into(W, WT, FIRST)
    if m * n_in * n_out < SERIAL_WORK:
        _forward_rows(A_prev, W, WT, b, code, Z, A, FIRST, m)
    else:
        _forward_blocks(A_prev, W, WT, b, code, Z, A)


@jit
def _weight_grad_rows(A_prev, dZ, AT, dZT, dW, j0, j1, acc, inv_m):
    """Rows j0 <= j < j1 of B2's sum over the examples given; ``acc`` adds to dW, ``inv_m > 0``
    then scales the rows by it."""
    if AT.shape[1] > 0:
        # dW[j,k] (+)= sum_i AT[j,i] * dZT[k,i]: the dot form over a chunk of examples
        _nt_rows(AT, dZT, dW, j0, j1, acc)
    else:
        # dW[j,k] = sum_i A_prev[i,j] dZ[i,k]: the axpy form on A_prev.T (read one scalar at a time)
        _nn_rows(A_prev.T, dZ, dW, j0, j1)
    if inv_m > 0:
        for j in range(j0, j1):
            g = dW[j]
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
def _weight_grad_into(A_prev, dZ, dW):
    """B2 into dW: each task owns a block of rows j of dW.

    From DOT_WEIGHT_ROWS examples on, chunks of up to WEIGHT_CHUNK examples are transposed
    (m * (n_in + n_out) moves in all, small beside the m * n_in * n_out multiply-adds) so that
    the sum over examples is a dot form; chunking keeps the operands' rows in cache.
    """
    m, n_in = A_prev.shape
    n_out = dZ.shape[1]
    inv_m = dW.dtype.type(1.0) / dW.dtype.type(m)
    if m < DOT_WEIGHT_ROWS:
        E = np.empty((0, 0), dtype=A_prev.dtype)
        _weight_grad_part(A_prev, dZ, E, E, dW, OVERWRITE, inv_m)
        return
    chunk = min(m, WEIGHT_CHUNK)
    AT_buf = np.empty(n_in * chunk, dtype=A_prev.dtype)
    dZT_buf = np.empty(n_out * chunk, dtype=dZ.dtype)
    zero = dW.dtype.type(0.0)
    for c0 in range(0, m, chunk):
        mc = min(chunk, m - c0)
        AT = AT_buf[:n_in * mc].reshape((n_in, mc))
        dZT = dZT_buf[:n_out * mc].reshape((n_out, mc))
        _transpose_into(A_prev, AT, c0)
        _transpose_into(dZ, dZT, c0)
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
    # dA_prev[i,p] = sum_q dZ[i,q] * W[p,q]: rows of dZ and of W are both contiguous in q
    _nt_rows(dZ, W, dZ_prev, i0, i1, OVERWRITE)
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
    _dense_act_forward_into(A_prev, W, b, -1, Z, Z, np.empty(W.size, W.dtype))
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

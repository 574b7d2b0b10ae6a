"""The dense layer as index loops: F1 forward; B1-B4 backward; N1 per-example norms.

Row convention: A_prev (m, n_in), W (n_in, n_out), b (n_out,), Z (m, n_out).
One function per equation; the sum over k of F1, B2 and B4 is the tuned product of
``kernels/_gemm.py`` (its naive triple loop sits beside it there), and what is fused into
its stores (bias, activation, g', 1/m) is written out here. Parallel loops run over an index
whose outputs one iteration owns (rows of Z and dA_prev, rows of dW), so every element is
summed by one thread in a fixed order and the result is bitwise the same on any number of threads.
"""
import numpy as np

from .. import _checks, _company
from ..tables import b4_transposed
from .._numba import FIRST, OVERWRITE, VECTOR_BITS, jit, prange, refuse_in_forked_child, transpose_tile
from ._gemm import (PACK_ROWS, ROW_BLOCK, SERIAL_WORK, aliases, f1_reads_panels, nn_packed_rows, nn_rows,
                    nn_rows_panels, nt_rows, pack_panel, pack_panel_rows, packed_task_rows, packs, panel_shape,
                    reads_panels, task_rows, unaliased)
from .activations import _act_rows_backward, _act_rows_forward


@jit
def _forward_rows(A_prev, W, b, code, Z, A, i0, i1, P):
    """F1 then F2/F3 on rows i0 <= i < i1: Z[i,j] = sum_k A_prev[i,k] W[k,j] + b[j], A[i] = g(Z[i]). P: W's
    packed panels (``_panels_in``), or none."""
    # sum_k A_prev[i,k] * W[k,j]: the outer-product form, W as it is stored or its panels
    nn_rows_panels(A_prev, W, Z, i0, i1, P)
    _bias_act_rows(b, code, Z, A, i0, i1)


@jit
def _bias_act_rows(b, code, Z, A, i0, i1):
    """The rest of F1, then F2/F3, on rows i0 <= i < i1 that hold the sum over k: Z[i,j] += b[j], A[i] = g(Z[i])."""
    for i in range(i0, i1):
        z = Z[i]
        # Z[i,j] += b[j], while the row is still in cache
        for j in range(z.shape[0]):
            z[j] += b[j]
    if code >= 0:
        _act_rows_forward(code, Z, A, i0, i1)


@jit(parallel=True)
def _forward_blocks(A_prev, W, P, b, code, Z, A):
    m = A_prev.shape[0]
    rows = task_rows(m, Z.shape[1])
    for blk in prange((m + rows - 1) // rows):
        _forward_rows(A_prev, W, b, code, Z, A, blk * rows, min(m, (blk + 1) * rows), P)


@jit(parallel=True)
def _pack_panels(B, P):
    if B.strides[1] == B.itemsize:
        K = B.shape[0]
        for t in prange((K + PACK_ROWS - 1) // PACK_ROWS):
            pack_panel_rows(B, P, t * PACK_ROWS, min(K, (t + 1) * PACK_ROWS))
    else:
        for jb in prange(P.shape[0]):
            pack_panel(B, P, jb)


@jit
def _panels(B):
    """Every panel of B (``pack_panel_rows``), packed on the pool: the operand the packed products read.
    By blocks of PACK_ROWS rows where B's rows are contiguous (1024^2 float32 on two threads: 184 us
    against 296 by panels, which read B's rows at their stride), else by panels."""
    P = np.empty(panel_shape(B), B.dtype)
    _pack_panels(B, P)
    return P


@jit
def _no_panels(B):
    """No panels (none of B's rows): the products read B as it is stored."""
    return np.empty((0, 0, panel_shape(B)[2]), B.dtype)


@jit
def _panels_in(B, wanted, room):
    """B's packed panels (``_pack_panels``) where the product reads them (``wanted``: ``tables.reads_panels``
    for dZ of B2, ``tables.f1_reads_panels`` for W of F1) and B's rows are contiguous, packed into ``room``
    when it has their shape (the step's buffers, ``layout.dz_panels``, ``layout.w_panels``), else into new
    memory; otherwise ``room``'s first none (the products then read B as stored)."""
    if not wanted or B.strides[1] != B.itemsize:
        return room[:0]
    if room.shape != panel_shape(B):
        return _panels(B)
    _pack_panels(B, room)
    return room


@jit(parallel=True)
def _forward_packed(A_prev, P, b, code, Z, A):
    m = A_prev.shape[0]
    rows = packed_task_rows(m, Z.shape[1], Z.itemsize)
    for blk in prange((m + rows - 1) // rows):
        i0, i1 = blk * rows, min(m, (blk + 1) * rows)
        # sum_k A_prev[i,k] * W[k,j] over packed panels of W and of these rows of A_prev
        nn_packed_rows(A_prev, P, Z, i0, i1)
        _bias_act_rows(b, code, Z, A, i0, i1)


@jit
def _dense_act_forward_into(A_prev, W, b, code, Z, A):
    """F1 then F2/F3 fused in the store: Z = A_prev W + b, A = g(Z), one block of rows per task.

    ``code < 0`` stops after F1. Small products run on the calling thread. (The serial path stays
    outside the parallel function: inside it, calls cost a few us more.) Large batches over many inputs
    read W's packed panels (``tables.f1_reads_panels``), packed here into new memory.
    """
    _dense_act_forward_room_into(A_prev, W, b, code, Z, A, _no_panels(W))


@jit
def _dense_act_forward_room_into(A_prev, W, b, code, Z, A, room):
    """``_dense_act_forward_into`` with room for W's panels where F1 reads them (``_panels_in``)."""
    m, n_in = A_prev.shape
    if m * n_in * W.shape[1] < SERIAL_WORK:
        _forward_rows(A_prev, W, b, code, Z, A, FIRST, m, _no_panels(W))
    elif packs(m, n_in, W.shape[1]):
        _forward_packed(A_prev, _panels(W), b, code, Z, A)
    else:
        W_read = unaliased(W, m)
        _forward_blocks(A_prev, W_read, _panels_in(W_read, f1_reads_panels(m, n_in), room), b, code, Z, A)


@jit
def _weight_grad_rows(A_prev, dZ, dW, j0, j1, inv_m, P):
    """B2 on rows j0 <= j < j1: dW[j,k] = (1/m) sum_i A_prev[i,j] dZ[i,k]. P: dZ's packed panels
    (``_panels_in``), or none."""
    # sum_i A_prev.T[j,i] * dZ[i,k]: the outer-product form over the examples, A_prev read in place
    nn_rows_panels(A_prev.T, dZ, dW, j0, j1, P)
    _scale_rows(dW, j0, j1, inv_m)


@jit
def _scale_rows(dW, j0, j1, inv_m):
    for j in range(j0, j1):
        g = dW[j]
        # dW[j,k] = (1/m) * sum: the 1/m of J = (1/m) sum_i L(i) lives here and in db only
        for k in range(g.shape[0]):
            g[k] = g[k] * inv_m


@jit(parallel=True)
def _weight_grad_blocks(A_prev, dZ, dW, inv_m, P):
    n_in = dW.shape[0]
    rows = task_rows(n_in, dW.shape[1])
    for blk in prange((n_in + rows - 1) // rows):
        _weight_grad_rows(A_prev, dZ, dW, blk * rows, min(n_in, (blk + 1) * rows), inv_m, P)


@jit(parallel=True)
def _weight_grad_packed(A_prev, P, dW, inv_m):
    n_in = dW.shape[0]
    rows = packed_task_rows(n_in, dW.shape[1], dW.itemsize)
    for blk in prange((n_in + rows - 1) // rows):
        j0, j1 = blk * rows, min(n_in, (blk + 1) * rows)
        # sum_i A_prev.T[j,i] * dZ[i,k] over packed panels of dZ and of these columns of A_prev
        nn_packed_rows(A_prev.T, P, dW, j0, j1)
        _scale_rows(dW, j0, j1, inv_m)


@jit
def _weight_grad_operands(A_prev, dZ):
    """A_prev and dZ as B2's parallel blocks read them: each ``unaliased``, A_prev's numbers being used
    n_out times and dZ's n_in times."""
    return unaliased(A_prev, dZ.shape[1]), unaliased(dZ, A_prev.shape[1])


@jit
def _weight_grad_copies(A_prev, dZ):
    """Whether ``_weight_grad_operands`` copies A_prev or dZ (B2's operands, ``_gemm.aliases``)."""
    return aliases(A_prev, dZ.shape[1]) or aliases(dZ, A_prev.shape[1])


@jit
def _weight_grad_into(A_prev, dZ, dW):
    """B2 into dW: each task owns a block of rows j of dW; small products run on the calling thread."""
    _weight_grad_room_into(A_prev, dZ, dW, _no_panels(dZ))


@jit
def _weight_grad_room_into(A_prev, dZ, dW, room):
    """``_weight_grad_into`` with room for dZ's panels where the product reads them (``_panels_in``)."""
    m, n_in = A_prev.shape
    inv_m = dW.dtype.type(1.0) / dW.dtype.type(m)
    if m * n_in * dZ.shape[1] < SERIAL_WORK:
        _weight_grad_rows(A_prev, dZ, dW, FIRST, n_in, inv_m, _no_panels(dZ))
    elif packs(n_in, m, dZ.shape[1]):
        _weight_grad_packed(A_prev, _panels(dZ), dW, inv_m)
    else:
        A_read, dZ_read = _weight_grad_operands(A_prev, dZ)
        _weight_grad_blocks(A_read, dZ_read, dW, inv_m, _panels_in(dZ_read, reads_panels(n_in, m), room))


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
def _transpose_into(W, WT):
    """WT[q,p] = W[p,q]: the copy of W that B4 reads where ``tables.b4_transposed`` asks for one. Square
    tiles of one vector's width go through registers (``transpose_tile``), the edges no whole tile covers
    number by number. Number by number down W's columns, the copy had cost more than the product it served:
    on the Zen 4 guest, float32, 59 us for a 784 x 128 W (B4 itself 130 us at 128 rows) and 585 us for
    512 x 512, where W's rows 2 KiB apart share L1's sets."""
    n_in, n_out = W.shape
    t = VECTOR_BITS // (8 * W.itemsize)
    tiled = W.strides[1] == W.itemsize and WT.strides[1] == WT.itemsize
    p_tiles = n_in // t * t if tiled else 0
    q_tiles = n_out // t * t if tiled else 0
    for p0 in range(0, p_tiles, t):
        for q0 in range(0, q_tiles, t):
            # WT[q0 + c, p0 + r] = W[p0 + r, q0 + c] for r, c < t
            transpose_tile(W, WT, p0, q0, q0, p0)
    for q in range(n_out):
        row = WT[q]
        # WT[q,p] = W[p,q] outside the tiles: columns p_tiles.. of the tiled rows, every p of the others
        for p in range(p_tiles if q < q_tiles else 0, n_in):
            row[p] = W[p, q]


@jit
def _input_grad_rows(dZ, W, WT, code, Z_prev, A_prev, dZ_prev, i0, i1):
    """B4 then B5/B7 on rows i0 <= i < i1: dA_prev[i,p] = sum_q dZ[i,q] W[p,q], then g'(Z_prev).
    WT is W's transposed copy where ``tables.b4_transposed`` asks for one, else empty (0, n_in)."""
    if WT.shape[0] > 0:
        # sum_q dZ[i,q] * WT[q,p]: the outer-product form of F1 over the copy (few q, or many rows)
        nn_rows(dZ, WT, dZ_prev, i0, i1)
    else:
        # sum_q dZ[i,q] * W[p,q]: rows of dZ and of W are both contiguous in q, the dot form as it is
        nt_rows(dZ, W, dZ_prev, i0, i1, OVERWRITE)
    if code >= 0:
        _act_rows_backward(code, dZ_prev, Z_prev, A_prev, i0, i1)


@jit(parallel=True)
def _input_grad_blocks(dZ, W, WT, code, Z_prev, A_prev, dZ_prev):
    m = dZ.shape[0]
    for blk in prange((m + ROW_BLOCK - 1) // ROW_BLOCK):
        _input_grad_rows(dZ, W, WT, code, Z_prev, A_prev, dZ_prev, blk * ROW_BLOCK, min(m, (blk + 1) * ROW_BLOCK))


@jit(parallel=True)
def _input_grad_packed(dZ, P, code, Z_prev, A_prev, dZ_prev):
    m = dZ.shape[0]
    rows = packed_task_rows(m, dZ_prev.shape[1], dZ_prev.itemsize)
    for blk in prange((m + rows - 1) // rows):
        i0, i1 = blk * rows, min(m, (blk + 1) * rows)
        # sum_q dZ[i,q] * W^T[q,p] over packed panels of W^T and of these rows of dZ
        nn_packed_rows(dZ, P, dZ_prev, i0, i1)
        if code >= 0:
            _act_rows_backward(code, dZ_prev, Z_prev, A_prev, i0, i1)


@jit
def _input_grad_act_into(dZ, W, WT, code, Z_prev, A_prev, dZ_prev):
    """B4 then B5/B7 fused (B6): dA_prev = dZ W^T, then g'(Z_prev) applied in place. WT: as for
    ``_input_grad_rows`` (filled by the caller).

    ``code < 0`` stops after B4 (dZ_prev then holds dA_prev).
    """
    m, n_out = dZ.shape
    if m * n_out * W.shape[0] < SERIAL_WORK:
        _input_grad_rows(dZ, W, WT, code, Z_prev, A_prev, dZ_prev, FIRST, m)
    elif packs(m, n_out, W.shape[0]):
        # the outer-product form over W^T, its panels packed straight from W (``b4_transposed`` makes no copy here)
        _input_grad_packed(dZ, _panels(W.T), code, Z_prev, A_prev, dZ_prev)
    else:
        _input_grad_blocks(dZ, W, WT, code, Z_prev, A_prev, dZ_prev)


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
def _sq_norm_row(a, d):
    """N1 for one example: (sum_j a[j]^2 + 1) * sum_k d[k]^2, from its row of A_prev and of dZ."""
    sa = d.dtype.type(0.0)
    for j in range(a.shape[0]):
        sa += a[j] * a[j]
    sd = d.dtype.type(0.0)
    # ||dZ[i]||^2 = sum_k dZ[i,k]^2
    for k in range(d.shape[0]):
        sd += d[k] * d[k]
    return (sa + d.dtype.type(1.0)) * sd


@jit
def _per_example_sq_norms_into(A_prev, dZ, out):
    # serial: O(m (n_in + n_out)) work beside the O(m n_in n_out) products
    for i in range(A_prev.shape[0]):
        out[i] = _sq_norm_row(A_prev[i], dZ[i])


def _b4_copy(W, m):
    """The WT argument of ``_input_grad_act_into`` for W and a batch of m rows: W's transposed copy where
    B4 reads one (``tables.b4_transposed``), else an empty (0, n_in)."""
    if b4_transposed(W.shape[0], W.shape[1], W.itemsize, m):
        return np.ascontiguousarray(W.T)
    return np.empty((0, W.shape[0]), dtype=W.dtype)


@refuse_in_forked_child
@_company.shares_cores(lambda A_prev, W, b: A_prev.shape[0] * W.shape[0] * W.shape[1])
def dense_forward(A_prev, W, b):
    """F1 ``Z[i,j] = sum_k A_prev[i,k] * W[k,j] + b[j]``.

    A_prev (m, n_in), W (n_in, n_out), b (n_out,) -> Z (m, n_out).

    Textbook loop: ``kernels/textbook.py`` ``dense_forward`` (the literal loop nest of the same sum).
    """
    A_prev, W, b = _checks.dense_layer(A_prev, W, b)
    Z = np.empty((A_prev.shape[0], W.shape[1]), dtype=W.dtype)
    _dense_act_forward_into(A_prev, W, b, -1, Z, Z)
    return Z


@refuse_in_forked_child
@_company.shares_cores(lambda dZ, A_prev, W: 2 * dZ.shape[0] * W.shape[0] * W.shape[1])
def dense_backward(dZ, A_prev, W):
    """B4 ``dA_prev[i,p] = sum_q dZ[i,q] W[p,q]``, B2 ``dW[j,k] = (1/m) sum_i A_prev[i,j] dZ[i,k]``,
    B3 ``db[k] = (1/m) sum_i dZ[i,k]``.

    dZ (m, n_out), A_prev (m, n_in), W (n_in, n_out) -> dA_prev (m, n_in), dW (n_in, n_out), db (n_out,).

    Textbook loop: ``kernels/textbook.py`` ``dense_backward`` (the literal loop nest of the same sum).
    """
    dZ, A_prev, W = _checks.dense_delta(dZ, A_prev, W)
    dA_prev = np.empty_like(A_prev)
    dW = np.empty_like(W)
    db = np.empty(W.shape[1], dtype=W.dtype)
    _input_grad_act_into(dZ, W, _b4_copy(W, dZ.shape[0]), -1, A_prev, A_prev, dA_prev)
    _weight_grad_into(A_prev, dZ, dW)
    _bias_grad_into(dZ, db)
    return dA_prev, dW, db


@refuse_in_forked_child
@_company.shares_cores(lambda A_prev, dZ: A_prev.shape[0] * A_prev.shape[1] * dZ.shape[1])
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

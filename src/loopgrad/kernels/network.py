"""The whole network over the buffers of ``loopgrad.layout``: forward, backward, the fused step, the epoch.

One compiled call runs a mini-batch's forward (F1-F3), loss, backward (B8, B6, B2, B3) and
optimizer update over the parameter block; one more runs a whole epoch of them. No Python runs
per layer, per kernel or per mini-batch. The batch's X sits in the slot A[0] of ``Buffers`` and
its targets in ``Buffers.y``; every offset comes from ``layout``.
"""
import math

import numpy as np

from .. import layout
from .._numba import FIRST, jit, prange
from ..layout import ACT, N_IN, N_OUT
from ..tables import H_CLIP, ROW_PASS_ROWS
from ._gemm import (ROW_BLOCK, SERIAL_WORK, f1_reads_panels, k_chunking, nn_rows_chunks, panel_shape,
                    reads_panels, task_rows, unaliased)
from .dense import (_bias_act_rows, _bias_grad_into, _dense_act_forward_room_into, _forward_rows, _input_grad_act_into,
                    _input_grad_rows, _no_panels, _panels_in, _sq_norm_row, _transpose_into, _weight_grad_copies,
                    _weight_grad_operands, _weight_grad_room_into, _weight_grad_rows)
from .losses import _loss_rows_into, _mean, _output_delta_into
from .noise import _dp_noise_into
from .sparse import _sparse_forward_into, _sparse_weight_grad_into
from .optim import _optimizer_range_into, _optimizer_update_into

# Up to ROW_PASS_ROWS (``tables``) the step's F1-F3, loss, B8 and B6 run as one pass over blocks of
# rows; above it, layer by layer.
# From this many multiply-adds in a forward pass (m * sum_l n_in n_out) on, the fused step's pass over
# blocks of rows runs parallel; below it, on the calling thread, where waking the pool would cost more
# than it saves (64-64-10 at batch 32, 2.8e5, stays serial).
STEP_SERIAL_WORK = 1 << 19


@jit
def forward_into(net, buf, m):
    """F1 then F2/F3 for l = 1..L: ``Z[l] = A[l-1] W[l] + b[l]``, ``A[l] = g_l(Z[l])``, on the
    ``m`` rows loaded in A[0]."""
    _dense_forward_from(net, buf, m, 1)


@jit
def _dense_forward_from(net, buf, m, first):
    for l in range(first, net.layers.shape[0] + 1):
        W, b = layout.params(net.theta, net.layers, l - 1)
        # W's panels (large batches over many inputs) into the buffers' room where it has one (layer 1)
        _dense_act_forward_room_into(layout.a(buf, l - 1, m), W, b, net.layers[l - 1, ACT], layout.z(buf, l, m),
                                     layout.a(buf, l, m), layout.w_panels(buf, l, panel_shape(W)[2]))


@jit
def forward_sparse_into(net, buf, m, data, indices, indptr):
    """``forward_into`` for a CSR input (``data``, ``indices``, ``indptr`` of the m rows): F1 of layer 1
    over the stored entries (``kernels.sparse``), then F1-F3 dense for l = 2..L."""
    W, b = layout.params(net.theta, net.layers, 0)
    _sparse_forward_into(data, indices, indptr, W, b, net.layers[0, ACT], layout.z(buf, 1, m), layout.a(buf, 1, m))
    _dense_forward_from(net, buf, m, 2)


@jit
def cost(net, buf, m):
    """After ``forward_into``: the cost of the B8 pairs, J = (1/m) sum_i L(i), from the logits Z[L] (and A[L])
    and the targets Y; with sample weights, J = sum_i w_i L(i) / sum_i w_i (0 when the weights sum to 0)."""
    L = net.layers.shape[0]
    _loss_rows_into(net.loss, layout.z(buf, L, m), layout.a(buf, L, m), layout.targets(buf, m), buf.losses[:m])
    return _cost_of_losses(buf, m)


@jit
def _cost_of_losses(buf, m):
    """J from the per-example losses L(i) in ``buf.losses``: their mean, or their weighted mean."""
    losses = buf.losses[:m]
    if buf.weights.shape[0] == 0:
        return _mean(losses)
    total = losses.dtype.type(0.0)
    for i in range(m):
        total += buf.weights[i] * losses[i]
    s = _weight_sum(buf.weights, m)
    return total / s if s > 0.0 else losses.dtype.type(0.0)


@jit
def _weight_sum(weights, m):
    s = weights.dtype.type(0.0)
    for i in range(m):
        s += weights[i]
    return s


@jit
def _weight_rows(weights, m, s, dZ, i0, i1):
    """dZ[L][i] *= m w_i / s for rows i0 <= i < i1, with s = sum_j w_j: by linearity every later delta, and
    so B2 and B3's (1/m) sums, become the weighted means sum_i w_i g(i) / sum_i w_i."""
    for i in range(i0, i1):
        c = weights[i] * dZ.dtype.type(m) / s if s > 0.0 else dZ.dtype.type(0.0)
        for k in range(dZ.shape[1]):
            dZ[i, k] *= c


@jit
def _clip_rows(net, buf, m, clip_norm, i0, i1):
    """Scale the delta rows i0 <= i < i1 so that each example's whole gradient has norm <= clip_norm: N1
    gives the norms without forming any dW(i), and by N2 the clipped sum is B2 on the scaled rows.
    ``buf.norms`` keeps the factors."""
    L = net.layers.shape[0]
    norms = buf.norms
    for i in range(i0, i1):
        norms[i] = norms.dtype.type(0.0)
    for l in range(1, L + 1):
        A_prev, dZ = layout.a(buf, l - 1, m), layout.dz(buf, l, m)
        for i in range(i0, i1):
            norms[i] += _sq_norm_row(A_prev[i], dZ[i])
    for i in range(i0, i1):
        # c_i = min(1, C / ||g(i)||)
        nrm = math.sqrt(norms[i])
        norms[i] = 1.0 if nrm <= clip_norm else clip_norm / nrm
    for l in range(1, L + 1):
        dZ = layout.dz(buf, l, m)
        for i in range(i0, i1):
            for k in range(dZ.shape[1]):
                dZ[i, k] *= norms[i]


@jit
def gradients_into(net, buf, m, clip_norm):
    """After ``forward_into``: J, then B8 ``dZ[L] = A[L] - Y``, B6 ``dZ[l] = (dZ[l+1] W[l+1]^T) * g'(Z[l])``,
    B2 ``dW[l] = A[l-1]^T dZ[l] / m`` and B3 ``db[l] = sum_i dZ[l] / m`` into ``net.grad``.

    With ``clip_norm > 0`` each example's gradient is first scaled to norm at most ``clip_norm``
    (N1, N2). With sample weights (``buf.weights`` not empty) J, dW and db are the weighted means.
    Returns J (before clipping).
    """
    J = _deltas(net, buf, m)
    if clip_norm > 0.0:
        _clip_rows(net, buf, m, clip_norm, FIRST, m)
    _dense_grads_from(net, buf, m, 1)
    return J


@jit
def _transposed_copies(net, buf):
    """Copy W[l]^T into the room ``layout.wt`` gives (``tables.b4_transposed``: a narrow layer, or a modest W
    in batches of many rows), for the B4 that follows; the copy is made anew for every backward pass,
    since W moves with every step."""
    for l in range(2, net.layers.shape[0] + 1):
        WT = layout.wt(buf, l)
        if WT.shape[0] > 0:
            _transpose_into(layout.params(net.theta, net.layers, l - 1)[0], WT)


@jit
def _deltas(net, buf, m):
    """J, then B8 (the weighted rows with sample weights) and B6 down to dZ[1]."""
    L = net.layers.shape[0]
    _transposed_copies(net, buf)
    J = cost(net, buf, m)
    _output_delta_into(layout.a(buf, L, m), layout.targets(buf, m), layout.dz(buf, L, m))
    if buf.weights.shape[0] > 0:
        _weight_rows(buf.weights, m, _weight_sum(buf.weights, m), layout.dz(buf, L, m), FIRST, m)
    for l in range(L, 1, -1):
        W, _ = layout.params(net.theta, net.layers, l - 1)
        _input_grad_act_into(layout.dz(buf, l, m), W, layout.wt(buf, l), net.layers[l - 2, ACT],
                             layout.z(buf, l - 1, m), layout.a(buf, l - 1, m), layout.dz(buf, l - 1, m))
    return J


@jit
def _panel_room(buf, l, m, dZ):
    """The buffers' room for the panels of dZ[l] (m rows; ``layout.dz_panels``) in the panel width of the
    products (``_gemm.panel_shape``)."""
    return layout.dz_panels(buf, l, m, panel_shape(dZ)[2])


@jit
def _dense_grads_from(net, buf, m, first):
    for l in range(first, net.layers.shape[0] + 1):
        dW, db = layout.params(net.grad, net.layers, l - 1)
        dZ = layout.dz(buf, l, m)
        _weight_grad_room_into(layout.a(buf, l - 1, m), dZ, dW, _panel_room(buf, l, m, dZ))
        _bias_grad_into(dZ, db)


@jit
def gradients_sparse_into(net, buf, m, data, indices, indptr):
    """``gradients_into`` for a CSR input: B2 of layer 1 scattered from the stored entries
    (``kernels.sparse``), the rest as ever. Returns J."""
    J = _deltas(net, buf, m)
    dW, db = layout.params(net.grad, net.layers, 0)
    dZ = layout.dz(buf, 1, m)
    _sparse_weight_grad_into(data, indices, indptr, dZ, dW)
    _bias_grad_into(dZ, db)
    _dense_grads_from(net, buf, m, 2)
    return J


# ---- the fused step -------------------------------------------------------------------------------------
# Every number of F1-F3, the loss, B8 and B6 belongs to one example, so for small batches one task owns
# a block of rows through every layer and back: one parallel region where there were one or two per
# layer and equation (ROW_PASS_ROWS). B2 and B3 sum over the examples and wait for all of them: one
# region per layer, in which each block of rows of dW gets the optimizer's update as soon as it is
# written, while it is in cache (a separate update pass read and wrote the whole parameter block once
# more). Where layer 1's sum over k has several chunks, its F1 and B2 go by chunks instead, so that each
# thread keeps its own rows of that layer's W (below).

@jit
def _gather_rows(X, rows, A0, i0, i1):
    """A[0][i] = X[rows[i]] for i0 <= i < i1: the batch's examples, copied by the task that reads them
    next (so the copy is split between the threads and is still in that core's cache for F1)."""
    for i in range(i0, i1):
        x, a = X[rows[i]], A0[i]
        for j in range(a.shape[0]):
            a[j] = x[j]


@jit
def _row_pass(net, buf, m, wsum, clip_norm, X, rows, i0, i1):
    """The rows i0 <= i < i1 of the batch through every layer and back: their examples X[rows[i]] into A[0]
    (unless ``rows`` is empty: A[0] is loaded), F1-F3 for l = 1..L, L(i), B8 (times m w_i / wsum with
    sample weights), B6 for l = L..2, and with ``clip_norm > 0`` N1/N2's clipping. Each of these numbers
    depends on its own example alone."""
    if rows.shape[0] > 0:
        _gather_rows(X, rows, layout.a(buf, 0, m), i0, i1)
    W, b = layout.params(net.theta, net.layers, 0)
    _forward_rows(layout.a(buf, 0, m), W, b, net.layers[0, ACT], layout.z(buf, 1, m), layout.a(buf, 1, m), i0, i1,
                  _no_panels(W))
    _row_pass_on(net, buf, m, wsum, clip_norm, i0, i1)


@jit
def _row_pass_on(net, buf, m, wsum, clip_norm, i0, i1):
    """``_row_pass`` from A[1] (done for the rows i0 <= i < i1) on: F1-F3 for l = 2..L, L(i), B8, B6, clipping."""
    L = net.layers.shape[0]
    for l in range(2, L + 1):
        W, b = layout.params(net.theta, net.layers, l - 1)
        _forward_rows(layout.a(buf, l - 1, m), W, b, net.layers[l - 1, ACT], layout.z(buf, l, m),
                      layout.a(buf, l, m), i0, i1, _no_panels(W))
    Y = layout.targets(buf, m)
    _loss_rows_into(net.loss, layout.z(buf, L, m)[i0:i1], layout.a(buf, L, m)[i0:i1], Y[i0:i1], buf.losses[i0:i1])
    dZ = layout.dz(buf, L, m)
    _output_delta_into(layout.a(buf, L, m)[i0:i1], Y[i0:i1], dZ[i0:i1])
    if buf.weights.shape[0] > 0:
        _weight_rows(buf.weights, m, wsum, dZ, i0, i1)
    for l in range(L, 1, -1):
        W, _ = layout.params(net.theta, net.layers, l - 1)
        _input_grad_rows(layout.dz(buf, l, m), W, layout.wt(buf, l), net.layers[l - 2, ACT],
                         layout.z(buf, l - 1, m), layout.a(buf, l - 1, m), layout.dz(buf, l - 1, m), i0, i1)
    if clip_norm > 0.0:
        _clip_rows(net, buf, m, clip_norm, i0, i1)


@jit(parallel=True)
def _row_blocks(net, buf, m, wsum, clip_norm, X, rows):
    for blk in prange((m + ROW_BLOCK - 1) // ROW_BLOCK):
        _row_pass(net, buf, m, wsum, clip_norm, X, rows, blk * ROW_BLOCK, min(m, (blk + 1) * ROW_BLOCK))


# ---- layer 1 split by its sum over k ---------------------------------------------------------------
# In the row pass every task reads all of layer 1's W, while B2 and the update write each row of W on
# one core: so every step, half of W moved from one core's cache to the other's and back (on the
# AVX-512 Xeon, 784-128-64-10 at batch 32, float32: 134 us a step against 93 with the update's writes
# left out). Where the first layer's sum over k has two chunks or more (``tables.k_chunks``), the step
# instead gives one task to each chunk, which is a range of rows of W: its F1 over all the batch's rows
# on those k, then B2 and the update of those rows of W. The pool's static schedule hands each thread
# the same contiguous run of tasks in both regions, so a thread's rows of W stay in its core's cache.
# Chunk 0's sum goes to Z, every later chunk's to a partial of its own, added in chunk order by the row
# pass that follows: Z is the bits of ``nn_rows``, however many threads share the chunks.

@jit
def _first_layer_split(buf):
    """Whether layer 1's F1 and B2 go by chunks of its sum over k: where ``layout`` gave room for the
    partials, which it does exactly where that sum has two chunks or more (and the input is dense)."""
    return layout.partials(buf).shape[0] > 0


@jit
def _gather_columns(X, rows, A0, k0, k1):
    """A[0][i, k0:k1] = X[rows[i], k0:k1] for every row i of the batch."""
    for i in range(A0.shape[0]):
        x, a = X[rows[i]][k0:k1], A0[i][k0:k1]
        for k in range(a.shape[0]):
            a[k] = x[k]


@jit(parallel=True)
def _first_layer_chunk_sums(X, rows, A0, W, Z, P):
    """F1's sum over k of layer 1, one task per chunk q of k: chunk 0 into Z, chunk q >= 1 from zero into
    P[q - 1]. Each task first copies its columns of the batch's examples X[rows] into A[0] (unless ``rows``
    is empty)."""
    m, K = A0.shape
    count, length = k_chunking(K)
    for q in prange(count):
        k0, k1 = q * length, min(K, (q + 1) * length)
        if rows.shape[0] > 0:
            _gather_columns(X, rows, A0, k0, k1)
        nn_rows_chunks(A0, W, Z if q == 0 else P[q - 1, :m], FIRST, m, q, q + 1, length)


@jit
def _first_layer_finish_rows(net, buf, m, i0, i1):
    """F1 of layer 1 on rows i0 <= i < i1 after ``_first_layer_chunk_sums``: the partials of chunks 1, 2, ...
    added in turn, then the bias and F2/F3."""
    W, b = layout.params(net.theta, net.layers, 0)
    count, _ = k_chunking(W.shape[0])
    Z, P = layout.z(buf, 1, m), layout.partials(buf)
    for q in range(1, count):
        for i in range(i0, i1):
            z, s = Z[i], P[q - 1, i]
            # Z[i,j] = (sum over the chunks before q) + S_q[i,j], as nn_rows adds each chunk's sum
            for j in range(z.shape[0]):
                z[j] += s[j]
    _bias_act_rows(b, net.layers[0, ACT], Z, layout.a(buf, 1, m), i0, i1)


@jit(parallel=True)
def _split_row_blocks(net, buf, m, wsum, clip_norm):
    for blk in prange((m + ROW_BLOCK - 1) // ROW_BLOCK):
        i0, i1 = blk * ROW_BLOCK, min(m, (blk + 1) * ROW_BLOCK)
        _first_layer_finish_rows(net, buf, m, i0, i1)
        _row_pass_on(net, buf, m, wsum, clip_norm, i0, i1)


@jit(parallel=True)
def _first_layer_grad_update_chunks(A_prev, dZ, dW, net, buf, m, update, t):
    """B2 and the update of layer 1, one task per chunk of F1's sum over k: the rows of W that
    ``_first_layer_chunk_sums``'s task of the same number read (so they stay in its core's cache), in
    blocks of ``task_rows`` rows as ``_grad_update_blocks`` takes them: the same bits. Task q then takes the
    q-th of as many ranges of rows of each later layer's dW that ``_joins_first_layer`` (B2 and the update,
    the bits of any other cut), so that those layers need no parallel region of their own."""
    K = dW.shape[0]
    count, length = k_chunking(K)
    step = task_rows(K, dW.shape[1])
    for q in prange(count):
        j0, j1 = q * length, min(K, (q + 1) * length)
        for j in range(j0, j1, step):
            _grad_update_rows(A_prev, dZ, dW, net, update, t, 0, j, min(j1, j + step), _no_panels(dZ))
        for l in range(1, net.layers.shape[0]):
            if _joins_first_layer(net, buf, m, l):
                dW_l, _ = layout.params(net.grad, net.layers, l)
                n = dW_l.shape[0]
                dZ_l = layout.dz(buf, l + 1, m)
                _grad_update_rows(layout.a(buf, l, m), dZ_l, dW_l, net, update, t, l, n * q // count,
                                  n * (q + 1) // count, _no_panels(dZ_l))


@jit
def _joins_first_layer(net, buf, m, l):
    """Whether B2 and the update of layer l + 1 (l >= 1) run in the tasks of ``_first_layer_grad_update_chunks``:
    where its operands are read as stored (``_weight_grad_operands`` would copy neither)."""
    return not _weight_grad_copies(layout.a(buf, l, m), layout.dz(buf, l + 1, m))


@jit(parallel=True)
def _gather_forward_blocks(X, rows, A0, W, P, b, code, Z, A):
    m = A0.shape[0]
    step = task_rows(m, Z.shape[1])
    for blk in prange((m + step - 1) // step):
        i0, i1 = blk * step, min(m, (blk + 1) * step)
        _gather_rows(X, rows, A0, i0, i1)
        _forward_rows(A0, W, b, code, Z, A, i0, i1, P)


@jit
def _forward_from_rows(net, buf, m, X, rows):
    """``forward_into`` on the examples X[rows] (A[0] as it is when ``rows`` is empty). Where layer 1's F1
    runs in parallel blocks (from SERIAL_WORK on), each task first copies its own rows into A[0]; else
    the rows are copied first. An element of Z sums the same terms in the same order however the rows
    are split, so the numbers are those of the copy first, then ``forward_into``."""
    A0 = layout.a(buf, 0, m)
    W, b = layout.params(net.theta, net.layers, 0)
    if rows.shape[0] > 0 and m * W.shape[0] * W.shape[1] >= SERIAL_WORK:
        W_read = unaliased(W, m)
        # W's panels (large batches over many inputs) packed into the buffers' room, once per step: W moves
        P = _panels_in(W_read, f1_reads_panels(m, W.shape[0]), layout.w_panels(buf, 1, panel_shape(W)[2]))
        _gather_forward_blocks(X, rows, A0, W_read, P, b, net.layers[0, ACT], layout.z(buf, 1, m), layout.a(buf, 1, m))
        _dense_forward_from(net, buf, m, 2)
        return
    if rows.shape[0] > 0:
        _gather_rows(X, rows, A0, FIRST, m)
    forward_into(net, buf, m)


@jit
def _grad_update_rows(A_prev, dZ, dW, net, update, t, l, j0, j1, P):
    """B2 on rows j0 <= j < j1 of layer l + 1's dW, then the update of those weights at step t while
    their gradient is still in cache. P: as for ``_weight_grad_rows``."""
    _weight_grad_rows(A_prev, dZ, dW, j0, j1, dW.dtype.type(1.0) / dW.dtype.type(A_prev.shape[0]), P)
    p0, p1 = layout.param_rows(net.layers, l, j0, j1)
    _optimizer_range_into(update.code, net.theta, net.grad, update.state, net.decay, update.hyper, t, p0, p1)


@jit(parallel=True)
def _grad_update_blocks(A_prev, dZ, dW, net, update, t, l, P):
    # the layer's arrays come in as arguments: built from ``buf`` inside the task, LLVM compiled B2's
    # product 10-20% slower (measured on the AVX2 machine). P: dZ's panels (``_panels_in``) or none.
    n_in = dW.shape[0]
    rows = task_rows(n_in, dW.shape[1])
    for blk in prange((n_in + rows - 1) // rows):
        _grad_update_rows(A_prev, dZ, dW, net, update, t, l, blk * rows, min(n_in, (blk + 1) * rows), P)


@jit
def _grads_and_update(net, buf, m, update, t, split):
    """B2 and B3 for every layer, each block of parameters updated as soon as its gradient is written:
    ``_dense_grads_from`` with the update fused in (the same gradient bits). With ``split``, layer 1's B2
    goes by the chunks its F1 went by, and the later layers' B2 in the same tasks
    (``_first_layer_grad_update_chunks``): one parallel region for all of them."""
    for l in range(net.layers.shape[0]):
        dW, db = layout.params(net.grad, net.layers, l)
        A_prev, dZ = layout.a(buf, l, m), layout.dz(buf, l + 1, m)
        n_in = dW.shape[0]
        if l == 0 and split:
            A_read, dZ_read = _weight_grad_operands(A_prev, dZ)
            _first_layer_grad_update_chunks(A_read, dZ_read, dW, net, buf, m, update, t)
        elif split and _joins_first_layer(net, buf, m, l):
            pass  # done by layer 1's tasks
        elif m * n_in * dW.shape[1] < SERIAL_WORK:
            _grad_update_rows(A_prev, dZ, dW, net, update, t, l, FIRST, n_in, _no_panels(dZ))
        else:
            A_read, dZ_read = _weight_grad_operands(A_prev, dZ)
            _grad_update_blocks(A_read, dZ_read, dW, net, update, t, l,
                                _panels_in(dZ_read, reads_panels(n_in, m), _panel_room(buf, l + 1, m, dZ)))
        _bias_grad_into(dZ, db)
        p0, p1 = layout.param_rows(net.layers, l, n_in, n_in + 1)  # b is the row after W's
        _optimizer_range_into(update.code, net.theta, net.grad, update.state, net.decay, update.hyper, t, p0, p1)


@jit
def _forward_work(layers):
    work = 0
    for l in range(layers.shape[0]):
        work += layers[l, N_IN] * layers[l, N_OUT]
    return work


@jit(inline=True)
def train_step_into(net, buf, m, update, t, noise):
    """One mini-batch, fused, on the m rows loaded in A[0] and Y: F1-F3, the loss J, B8 and B6 (N1, N2
    when the optimizer clips), up to ROW_PASS_ROWS rows in one pass over blocks of rows, each block
    through every layer and back (layer 1's sum over k first, a chunk per task, where it has several);
    then B2 and B3 with the update of each block of parameters as soon as its gradient is written. For DP-SGD the noisy mean (``noise._dp_noise_into``: the
    counter-based noise of step ``t``, or the row ``noise`` (P,) when it is not empty) comes between
    the whole gradient and the update. The same numbers as ``forward_into``, ``gradients_into`` and the
    update in turn. Updates ``net.theta`` in place at step ``t``; returns J of the batch before the
    update."""
    return _step(net, buf, m, update, t, noise, layout.a(buf, 0, m), buf.slots[0, :0])


# Inlined into the epoch at numba's IR level: one step body in the source, but no compiled level of
# its own on the training path (it cost 3.6 s of the 56 s cold compile measured on the AVX2 machine).
@jit(inline=True)
def _step(net, buf, m, update, t, noise, X, rows):
    """``train_step_into`` on the examples X[rows] (Y and the sample weights loaded), which the tasks that
    first read them copy into A[0]; with ``rows`` empty, on A[0] as loaded."""
    clip_norm = update.hyper[H_CLIP]
    split = False
    if m > ROW_PASS_ROWS:
        _forward_from_rows(net, buf, m, X, rows)
        J = _deltas(net, buf, m)
        if clip_norm > 0.0:
            _clip_rows(net, buf, m, clip_norm, FIRST, m)
    else:
        wsum = _weight_sum(buf.weights, m) if buf.weights.shape[0] > 0 else buf.weights.dtype.type(0.0)
        _transposed_copies(net, buf)
        if m > ROW_BLOCK and m * _forward_work(net.layers) >= STEP_SERIAL_WORK:
            split = _first_layer_split(buf)
            if split:
                W, _ = layout.params(net.theta, net.layers, 0)
                _first_layer_chunk_sums(X, rows, layout.a(buf, 0, m), W, layout.z(buf, 1, m), layout.partials(buf))
                _split_row_blocks(net, buf, m, wsum, clip_norm)
            else:
                _row_blocks(net, buf, m, wsum, clip_norm, X, rows)
        else:
            _row_pass(net, buf, m, wsum, clip_norm, X, rows, FIRST, m)
        J = _cost_of_losses(buf, m)
    if clip_norm > 0.0:
        # DP-SGD's noise goes on the whole gradient before any parameter moves
        _dense_grads_from(net, buf, m, 1)
        _dp_noise_into(net.grad, noise, update.hyper, t, m)
        _optimizer_update_into(update.code, net.theta, net.grad, update.state, net.decay, update.hyper, t)
    else:
        _grads_and_update(net, buf, m, update, t, split)
    return J


@jit
def train_epoch_into(net, buf, X, Y, W, order, batch_size, update, t0, noise, stop):
    """An epoch of fused steps (F1-F3, B8, B6, B2, B3 and the update per mini-batch): the rows
    ``order[s:s + batch_size]`` of (X, Y) (and their sample weights W (n,) when W is not empty, into
    ``buf.weights``) are gathered into the slots A[0] and Y (X's rows by the step's first tasks, which
    read them next) and trained as by ``train_step_into`` at step ``t0 + k + 1`` (k counts the batches
    of this call),
    with the noise row ``noise[k]`` when ``noise`` is (steps, P); a (1, 0) block means no noise.
    ``stop`` (1,) int64 is read after every mini-batch: nonzero ends the call there (another thread
    sets it on Ctrl-C). Returns (sum_k m_k J_k as float64, mini-batches done).
    """
    n = order.shape[0]
    total = 0.0
    k = 0
    for start in range(0, n, batch_size):
        if stop[0] != 0:
            break
        m = min(batch_size, n - start)
        rows = order[start:start + m]
        yb = layout.targets(buf, m)
        for r in range(m):
            y, yr = Y[rows[r]], yb[r]
            for j in range(y.shape[0]):
                yr[j] = y[j]
            if W.shape[0] > 0:
                buf.weights[r] = W[rows[r]]
        row = noise[k] if noise.shape[1] > 0 else noise[0]
        total += float(_step(net, buf, m, update, t0 + k + 1, row, X, rows)) * m
        k += 1
    return total, k


@jit
def train_epoch_sparse_into(net, buf, data, indices, indptr, Y, W, order, batch_size, update, t0, stop):
    """``train_epoch_into`` for a CSR X (``data``, ``indices``, ``indptr`` of all n rows): each
    mini-batch's rows are gathered into a CSR batch, then ``forward_sparse_into`` (F1-F3),
    ``gradients_sparse_into`` (B8, B6, B2, B3) and the update at step ``t0 + k + 1``. No DP-SGD
    noise or clipping.
    Returns (sum_k m_k J_k as float64, mini-batches done)."""
    n = order.shape[0]
    total = 0.0
    k = 0
    bptr = np.zeros(batch_size + 1, np.int64)
    for start in range(0, n, batch_size):
        if stop[0] != 0:
            break
        m = min(batch_size, n - start)
        for r in range(m):
            i = order[start + r]
            bptr[r + 1] = bptr[r] + indptr[i + 1] - indptr[i]
        bdata = np.empty(bptr[m], data.dtype)
        bindices = np.empty(bptr[m], np.int64)
        yb = layout.targets(buf, m)
        for r in range(m):
            i = order[start + r]
            q = bptr[r]
            for p in range(indptr[i], indptr[i + 1]):
                bdata[q] = data[p]
                bindices[q] = indices[p]
                q += 1
            y, yr = Y[i], yb[r]
            for j in range(y.shape[0]):
                yr[j] = y[j]
            if W.shape[0] > 0:
                buf.weights[r] = W[i]
        ptr = bptr[:m + 1]
        forward_sparse_into(net, buf, m, bdata, bindices, ptr)
        J = gradients_sparse_into(net, buf, m, bdata, bindices, ptr)
        _optimizer_update_into(update.code, net.theta, net.grad, update.state, net.decay, update.hyper, t0 + k + 1)
        total += float(J) * m
        k += 1
    return total, k

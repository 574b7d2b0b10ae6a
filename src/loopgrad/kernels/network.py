"""The whole network over the buffers of ``loopgrad.layout``: forward, backward, the fused step, the epoch.

One compiled call runs a mini-batch's forward (F1-F3), loss, backward (B8, B6, B2, B3) and
optimizer update over the parameter block; one more runs a whole epoch of them. No Python runs
per layer, per kernel or per mini-batch. The batch's X sits in the slot A[0] of ``Buffers`` and
its targets in ``Buffers.y``; every offset comes from ``layout``.
"""
import math

import numpy as np

from .. import layout
from .._numba import jit
from ..layout import ACT
from ..tables import H_CLIP
from .dense import _bias_grad_into, _dense_act_forward_into, _input_grad_act_into, _per_example_sq_norms_into, _weight_grad_into
from .losses import _loss_rows_into, _mean, _output_delta_into
from .noise import _dp_noise_into
from .sparse import _sparse_forward_into, _sparse_weight_grad_into
from .optim import _optimizer_update_into


@jit
def forward_into(net, buf, m):
    """F1 then F2/F3 for l = 1..L: ``Z[l] = A[l-1] W[l] + b[l]``, ``A[l] = g_l(Z[l])``, on the
    ``m`` rows loaded in A[0]."""
    _dense_forward_from(net, buf, m, 1)


@jit
def _dense_forward_from(net, buf, m, first):
    for l in range(first, net.layers.shape[0] + 1):
        W, b = layout.params(net.theta, net.layers, l - 1)
        _dense_act_forward_into(layout.a(buf, l - 1, m), W, b, net.layers[l - 1, ACT], layout.z(buf, l, m),
                                layout.a(buf, l, m))


@jit
def forward_sparse_into(net, buf, m, data, indices, indptr):
    """``forward_into`` for a CSR input (``data``, ``indices``, ``indptr`` of the m rows): F1 of layer 1
    over the stored entries (``kernels.sparse``), then F1-F3 dense for l = 2..L."""
    W, b = layout.params(net.theta, net.layers, 0)
    _sparse_forward_into(data, indices, indptr, W, b, net.layers[0, ACT], layout.z(buf, 1, m), layout.a(buf, 1, m))
    _dense_forward_from(net, buf, m, 2)


@jit
def cost(net, buf, m):
    """After ``forward_into``: the cost of the B8 pairs, J = (1/m) sum_i L(i), from the logits Z[L] and the
    targets Y; with sample weights, J = sum_i w_i L(i) / sum_i w_i (0 when the weights sum to 0)."""
    L = net.layers.shape[0]
    losses = buf.losses[:m]
    _loss_rows_into(net.loss, layout.z(buf, L, m), layout.targets(buf, m), losses)
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
def _weight_rows(weights, m, dZ):
    """dZ[L][i] *= m w_i / sum_j w_j: by linearity every later delta, and so B2 and B3's (1/m) sums,
    become the weighted means sum_i w_i g(i) / sum_i w_i."""
    s = _weight_sum(weights, m)
    for i in range(m):
        c = weights[i] * dZ.dtype.type(m) / s if s > 0.0 else dZ.dtype.type(0.0)
        for k in range(dZ.shape[1]):
            dZ[i, k] *= c


@jit
def _scale_rows(c, dZ):
    # serial: O(m n) work, and one parallel kernel less to compile
    for i in range(dZ.shape[0]):
        for k in range(dZ.shape[1]):
            dZ[i, k] *= c[i]


@jit
def _clip_rows(net, buf, m, clip_norm):
    """Scale every example's delta rows so that its whole gradient has norm <= clip_norm: N1 gives
    the norms without forming any dW(i), and by N2 the clipped sum is B2 on the scaled rows."""
    L = net.layers.shape[0]
    norms, sq = buf.norms[:m], buf.losses[:m]
    zero = norms.dtype.type(0.0)
    for i in range(m):
        norms[i] = zero
    for l in range(1, L + 1):
        _per_example_sq_norms_into(layout.a(buf, l - 1, m), layout.dz(buf, l, m), sq)
        for i in range(m):
            norms[i] += sq[i]
    for i in range(m):
        # c_i = min(1, C / ||g(i)||)
        nrm = math.sqrt(norms[i])
        norms[i] = 1.0 if nrm <= clip_norm else clip_norm / nrm
    for l in range(1, L + 1):
        _scale_rows(norms, layout.dz(buf, l, m))


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
        _clip_rows(net, buf, m, clip_norm)
    _dense_grads_from(net, buf, m, 1)
    return J


@jit
def _deltas(net, buf, m):
    """J, then B8 (the weighted rows with sample weights) and B6 down to dZ[1]."""
    L = net.layers.shape[0]
    J = cost(net, buf, m)
    _output_delta_into(layout.a(buf, L, m), layout.targets(buf, m), layout.dz(buf, L, m))
    if buf.weights.shape[0] > 0:
        _weight_rows(buf.weights, m, layout.dz(buf, L, m))
    for l in range(L, 1, -1):
        W, _ = layout.params(net.theta, net.layers, l - 1)
        _input_grad_act_into(layout.dz(buf, l, m), W, net.layers[l - 2, ACT], layout.z(buf, l - 1, m),
                             layout.a(buf, l - 1, m), layout.dz(buf, l - 1, m))
    return J


@jit
def _dense_grads_from(net, buf, m, first):
    for l in range(first, net.layers.shape[0] + 1):
        dW, db = layout.params(net.grad, net.layers, l - 1)
        dZ = layout.dz(buf, l, m)
        _weight_grad_into(layout.a(buf, l - 1, m), dZ, dW)
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


# Inlined into the epoch at numba's IR level: one step body in the source, but no compiled level of
# its own on the training path (it cost 3.6 s of the 56 s cold compile measured on the AVX2 machine).
@jit(inline=True)
def train_step_into(net, buf, m, update, t, noise):
    """One mini-batch, fused: ``forward_into`` (F1-F3), ``gradients_into`` (B8, B6, B2, B3; N1, N2
    when the optimizer clips), for DP-SGD the noisy mean (``noise._dp_noise_into``: the
    counter-based noise of step ``t``, or the row ``noise`` (P,) when it is not empty), then the
    update of ``net.theta`` in place at step ``t``. Returns J of the batch before the update."""
    forward_into(net, buf, m)
    J = gradients_into(net, buf, m, update.hyper[H_CLIP])
    if update.hyper[H_CLIP] > 0.0:
        _dp_noise_into(net.grad, noise, update.hyper, t, m)
    _optimizer_update_into(update.code, net.theta, net.grad, update.state, net.decay, update.hyper, t)
    return J


@jit
def train_epoch_into(net, buf, X, Y, W, order, batch_size, update, t0, noise, stop):
    """An epoch of fused steps (F1-F3, B8, B6, B2, B3 and the update per mini-batch): the rows
    ``order[s:s + batch_size]`` of (X, Y) (and their sample weights W (n,) when W is not empty, into
    ``buf.weights``) are gathered into the slots A[0] and Y and trained by
    ``train_step_into`` at step ``t0 + k + 1`` (k counts the batches of this call),
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
        xb = layout.a(buf, 0, m)
        yb = layout.targets(buf, m)
        for r in range(m):
            x, y = X[order[start + r]], Y[order[start + r]]
            xr, yr = xb[r], yb[r]
            for j in range(x.shape[0]):
                xr[j] = x[j]
            for j in range(y.shape[0]):
                yr[j] = y[j]
            if W.shape[0] > 0:
                buf.weights[r] = W[order[start + r]]
        row = noise[k] if noise.shape[1] > 0 else noise[0]
        total += float(train_step_into(net, buf, m, update, t0 + k + 1, row)) * m
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

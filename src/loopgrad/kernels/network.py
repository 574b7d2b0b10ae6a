"""The whole network over flat buffers: forward, backward and the fused step.

One compiled call runs a mini-batch's forward (F1-F3), loss, backward (B8, B6,
B2, B3) and optimizer update over the parameter block ``theta``; no Python runs
per layer or per kernel. Buffer layouts are described in ``loopgrad.layout``.
"""
import math

from .._numba import jit
from ..tables import (
    ADAM_CODE, H_BETA1, H_BETA2, H_CLIP, H_EPS, H_LR, H_MOMENTUM, H_NESTEROV, H_T, H_WEIGHT_DECAY,
)
from .dense import _bias_grad_into, _dense_act_forward_into, _input_grad_act_into, _per_example_sq_norms_into, _weight_grad_into
from .losses import _loss_rows_into, _mean, _output_delta_into
from .optim import _adam_update_into, _sgd_update_into


@jit
def _params(theta, layers, l):
    n_in, n_out, w_off, b_off = layers[l, 0], layers[l, 1], layers[l, 2], layers[l, 3]
    return theta[w_off:w_off + n_in * n_out].reshape((n_in, n_out)), theta[b_off:b_off + n_out]


@jit
def _work(work, layers, m, l):
    o = 0
    for k in range(l):
        o += 3 * m * layers[k, 1]
    n = layers[l, 1]
    Z = work[o:o + m * n].reshape((m, n))
    A = work[o + m * n:o + 2 * m * n].reshape((m, n))
    dZ = work[o + 2 * m * n:o + 3 * m * n].reshape((m, n))
    return Z, A, dZ


@jit
def _layers_end(layers, m):
    """Offset in ``work`` just past the last layer's Z, A, dZ."""
    o = 0
    for l in range(layers.shape[0]):
        o += 3 * m * layers[l, 1]
    return o


@jit
def _tail(work, layers, m):
    o = _layers_end(layers, m)
    return work[o:o + m], work[o + m:o + 2 * m]


@jit
def _scratch(work, layers, m):
    return work[_layers_end(layers, m) + 2 * m:]


@jit
def forward_into(theta, layers, X, work):
    """F1 then F2/F3 for each layer: ``Z[l] = A[l-1] W[l] + b[l]``, ``A[l] = g_l(Z[l])``, into ``work``.

    theta (P,), layers (L, 5), X (m, n_0), work (3 m sum(n_l) + 2m,).
    """
    m = X.shape[0]
    # X and the work views differ in numba's type (an argument vs a reshape), so X is never put
    # in a loop variable with them: unifying the two would give a non-contiguous type and
    # kernels that do not vectorise.
    W, b = _params(theta, layers, 0)
    Z, A, _ = _work(work, layers, m, 0)
    scratch = _scratch(work, layers, m)
    _dense_act_forward_into(X, W, b, layers[0, 4], Z, A, scratch)
    for l in range(1, layers.shape[0]):
        W, b = _params(theta, layers, l)
        _, A_prev, _ = _work(work, layers, m, l - 1)
        Z, A, _ = _work(work, layers, m, l)
        _dense_act_forward_into(A_prev, W, b, layers[l, 4], Z, A, scratch)


@jit
def _scale_rows(c, dZ):
    # serial, like _add_noise: O(m n) work, and one parallel kernel less to compile
    for i in range(dZ.shape[0]):
        for k in range(dZ.shape[1]):
            dZ[i, k] *= c[i]


@jit
def gradients_into(theta, layers, X, Y, loss, work, grad, clip_norm):
    """After ``forward_into``: J, then B8 ``dZ[L] = A[L] - Y``, B6 ``dZ[l] = (dZ[l+1] W[l+1]^T) * g'(Z[l])``,
    B2 ``dW[l] = A[l-1]^T dZ[l] / m`` and B3 ``db[l] = sum_i dZ[l] / m`` into the block ``grad``.

    With ``clip_norm > 0`` each example's gradient is scaled to norm at most ``clip_norm`` first:
    N1 gives the norms without forming dW(i), N2 turns the clipped sum into the batch kernel on
    scaled rows of dZ. Returns J (before clipping).
    """
    m = X.shape[0]
    L = layers.shape[0]
    losses, norms = _tail(work, layers, m)
    Z_L, A_L, dZ_L = _work(work, layers, m, L - 1)
    _loss_rows_into(loss, Z_L, Y, losses)
    J = _mean(losses)
    _output_delta_into(A_L, Y, dZ_L)
    for l in range(L - 1, 0, -1):
        W, _ = _params(theta, layers, l)
        _, _, dZ = _work(work, layers, m, l)
        Z_prev, A_prev, dZ_prev = _work(work, layers, m, l - 1)
        _input_grad_act_into(dZ, W, layers[l - 1, 4], Z_prev, A_prev, dZ_prev)
    if clip_norm > 0.0:
        zero = norms.dtype.type(0.0)
        for i in range(m):
            norms[i] = zero
        for l in range(L):
            _, _, dZ = _work(work, layers, m, l)
            if l == 0:
                _per_example_sq_norms_into(X, dZ, losses)
            else:
                _per_example_sq_norms_into(_work(work, layers, m, l - 1)[1], dZ, losses)
            for i in range(m):
                norms[i] += losses[i]
        for i in range(m):
            # c_i = min(1, C / ||g(i)||)
            nrm = math.sqrt(norms[i])
            norms[i] = 1.0 if nrm <= clip_norm else clip_norm / nrm
        for l in range(L):
            _, _, dZ = _work(work, layers, m, l)
            _scale_rows(norms, dZ)
    for l in range(L):
        dW, db = _params(grad, layers, l)
        _, _, dZ = _work(work, layers, m, l)
        if l == 0:
            _weight_grad_into(X, dZ, dW)
        else:
            _weight_grad_into(_work(work, layers, m, l - 1)[1], dZ, dW)
        _bias_grad_into(dZ, db)
    return J


@jit
def _add_noise(grad, noise, m):
    scale = grad.dtype.type(1.0) / grad.dtype.type(m)
    for p in range(grad.shape[0]):
        grad[p] += noise[p] * scale


@jit
def _update(theta, grad, opt, state, hyper, decay):
    if opt == ADAM_CODE:
        _adam_update_into(theta, grad, state[0], state[1], decay, hyper[H_LR], hyper[H_BETA1], hyper[H_BETA2],
                          hyper[H_EPS], hyper[H_WEIGHT_DECAY], hyper[H_T])
    else:
        _sgd_update_into(theta, grad, state[0], decay, hyper[H_LR], hyper[H_MOMENTUM], hyper[H_NESTEROV] != 0.0,
                         hyper[H_WEIGHT_DECAY])


@jit
def train_step_into(theta, grad, layers, X, Y, loss, work, opt, state, hyper, decay, noise):
    """One mini-batch, fused: ``forward_into`` (F1-F3), ``gradients_into`` (B8, B6, B2, B3),
    optional DP noise ``grad += noise / m``, then the SGD or Adam update of ``theta`` in place.

    state (2, P) holds velocity, or Adam's two moments; hyper (9,) float64, slots in ``loopgrad.tables``.
    Returns J of the batch before the update.
    """
    forward_into(theta, layers, X, work)
    J = gradients_into(theta, layers, X, Y, loss, work, grad, hyper[H_CLIP])
    if noise.shape[0] > 0:
        _add_noise(grad, noise, X.shape[0])
    _update(theta, grad, opt, state, hyper, decay)
    return J


@jit
def train_epoch_into(theta, grad, layers, X, Y, order, batch_size, loss, work, Xb, Yb, opt, state, hyper, decay,
                     noise):
    """One epoch of fused steps (F1-F3, B8, B6, B2, B3 and the update, per mini-batch).

    Rows ``order[s:s + batch_size]`` are gathered into ``Xb``/``Yb`` (flat buffers of
    ``batch_size`` rows) and the steps of ``train_step_into`` run on them, with ``hyper[H_T]``
    advanced by one per step. Returns sum over batches of ``m_b * J_b`` (float64).
    """
    n = order.shape[0]
    n0 = X.shape[1]
    nL = Y.shape[1]
    total = 0.0
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        xb = Xb[:m * n0].reshape((m, n0))
        yb = Yb[:m * nL].reshape((m, nL))
        for r in range(m):
            x, y = X[order[start + r]], Y[order[start + r]]
            xr, yr = xb[r], yb[r]
            for k in range(n0):
                xr[k] = x[k]
            for k in range(nL):
                yr[k] = y[k]
        hyper[H_T] += 1.0
        # the steps of train_step_into, called directly: one compiled level less on first use
        forward_into(theta, layers, xb, work)
        J = gradients_into(theta, layers, xb, yb, loss, work, grad, hyper[H_CLIP])
        if noise.shape[0] > 0:
            _add_noise(grad, noise, m)
        _update(theta, grad, opt, state, hyper, decay)
        total += float(J) * m
    return total

"""The whole network in matrix form (twin of ``loopgrad.kernels.network``).

Same buffers, same signatures; each layer is one vectorised NumPy expression.
"""
import numpy as np

from .. import layout
from ..tables import ACTIVATIONS, ADAM_CODE, H_BETA1, H_BETA2, H_CLIP, H_EPS, H_LR, H_MOMENTUM, H_NESTEROV, H_T, H_WEIGHT_DECAY, LOSSES
from .activations import activation_backward, activation_forward
from .dense import per_example_sq_norms
from .losses import LOSS
from .optim import adam_update, sgd_update


def forward_into(theta, layers, X, work):
    """F1-F3 per layer: ``Z = A_prev @ W + b``, ``A = g(Z)``."""
    views, _, _ = layout.work_views(work, layers, X.shape[0])
    A_prev = X
    for (W, b), (Z, A, _), code in zip(layout.param_views(theta, layers), views, layers[:, layout.ACT]):
        Z[...] = A_prev @ W + b
        A[...] = activation_forward(ACTIVATIONS[code], Z)
        A_prev = A


def gradients_into(theta, layers, X, Y, loss, work, grad, clip_norm):
    """B8, B6, (N1, N2 when clipping), B2, B3 into ``grad``; returns J."""
    m = X.shape[0]
    views, _, _ = layout.work_views(work, layers, m)
    params = layout.param_views(theta, layers)
    Z_L, A_L, dZ_L = views[-1]
    J = Z_L.dtype.type(LOSS[LOSSES[loss]](Z_L, Y).mean())
    dZ_L[...] = A_L - Y
    for l in range(len(views) - 1, 0, -1):
        Z, A, dZ = views[l - 1]
        dZ[...] = activation_backward(ACTIVATIONS[layers[l - 1, layout.ACT]], views[l][2] @ params[l][0].T, Z, A)
    inputs = [X] + [A for _, A, _ in views[:-1]]
    if clip_norm > 0:
        norms = np.sqrt(sum(per_example_sq_norms(A_prev, dZ) for A_prev, (_, _, dZ) in zip(inputs, views)))
        c = np.where(norms <= clip_norm, 1.0, clip_norm / np.maximum(norms, 1e-300)).astype(X.dtype)
        for _, _, dZ in views:
            dZ *= c[:, None]
    for (dW, db), A_prev, (_, _, dZ) in zip(layout.param_views(grad, layers), inputs, views):
        dW[...] = A_prev.T @ dZ / X.dtype.type(m)
        db[...] = dZ.sum(axis=0) / X.dtype.type(m)
    return J


def train_step_into(theta, grad, layers, X, Y, loss, work, opt, state, hyper, decay, noise):
    """forward, gradients, optional DP noise, then the optimizer update of ``theta`` in place."""
    forward_into(theta, layers, X, work)
    J = gradients_into(theta, layers, X, Y, loss, work, grad, hyper[H_CLIP])
    if noise.shape[0] > 0:
        grad += noise / X.dtype.type(X.shape[0])
    if opt == ADAM_CODE:
        theta[...], state[0], state[1] = adam_update(
            theta, grad, state[0], state[1], hyper[H_T], hyper[H_LR], hyper[H_BETA1], hyper[H_BETA2], hyper[H_EPS],
            hyper[H_WEIGHT_DECAY], decay)
    else:
        theta[...], state[0] = sgd_update(theta, grad, state[0], hyper[H_LR], hyper[H_MOMENTUM],
                                          hyper[H_NESTEROV] != 0, hyper[H_WEIGHT_DECAY], decay)
    return J


def train_epoch_into(theta, grad, layers, X, Y, order, batch_size, loss, work, Xb, Yb, opt, state, hyper, decay,
                     noise):
    """One epoch of ``train_step_into`` over ``order`` in batches; returns sum of ``m_b * J_b``."""
    total = 0.0
    for start in range(0, order.shape[0], batch_size):
        idx = order[start:start + batch_size]
        m = idx.size
        xb = Xb[:m * X.shape[1]].reshape(m, X.shape[1])
        yb = Yb[:m * Y.shape[1]].reshape(m, Y.shape[1])
        np.take(X, idx, axis=0, out=xb)
        np.take(Y, idx, axis=0, out=yb)
        hyper[H_T] += 1.0
        J = train_step_into(theta, grad, layers, xb, yb, loss, work, opt, state, hyper, decay, noise)
        total += float(J) * m
    return total

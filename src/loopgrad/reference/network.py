"""The whole network in matrix form (twin of ``loopgrad.kernels.network``).

Same buffers, same signatures; each layer is one vectorised NumPy expression.
"""
import numpy as np

from .. import layout
from ..tables import ACTIVATIONS, H_CLIP, LOSSES
from .activations import activation_backward, activation_forward
from .dense import per_example_sq_norms
from .losses import LOSS
from .noise import _dp_noise
from .optim import optimizer_update
from .sparse import _matrix


def forward_into(net, buf, m):
    """F1-F3 per layer: ``Z = A_prev @ W + b``, ``A = g(Z)``."""
    _dense_forward_from(net, buf, m, 1)


def _dense_forward_from(net, buf, m, first):
    views = layout.layer_views(buf, m)
    for l, (W, b) in enumerate(layout.param_views(net.theta, net.layers)[first - 1:], start=first):
        Z, A, _ = views[l]
        Z[...] = views[l - 1][1] @ W + b
        A[...] = activation_forward(ACTIVATIONS[net.layers[l - 1, layout.ACT]], Z)


def forward_sparse_into(net, buf, m, data, indices, indptr):
    """F1 for a CSR input on layer 1 (``A @ W + b`` by scipy), then F1-F3 dense for l = 2..L."""
    W, b = layout.param_views(net.theta, net.layers)[0]
    Z, A, _ = layout.layer_views(buf, m)[1]
    Z[...] = _matrix(data, indices, indptr, W.shape[0]) @ W + b
    A[...] = activation_forward(ACTIVATIONS[net.layers[0, layout.ACT]], Z)
    _dense_forward_from(net, buf, m, 2)


def gradients_sparse_into(net, buf, m, data, indices, indptr):
    """B8, B6, then B2 of layer 1 as ``A.T @ dZ / m`` on the CSR input, the rest dense; returns J."""
    J, pairs = _deltas(net, buf, m)
    (dW, db), = layout.param_views(net.grad, net.layers)[:1]
    dZ1 = pairs[0][1]
    T = net.theta.dtype.type
    dW[...] = _matrix(data, indices, indptr, dW.shape[0]).T @ dZ1 / T(m)
    db[...] = dZ1.sum(axis=0) / T(m)
    _dense_grads_from(net, m, pairs, 2)
    return J


def train_epoch_sparse_into(net, buf, data, indices, indptr, Y, W, order, batch_size, update, t0, stop):
    """Epochs of fused steps on a CSR X: each batch's rows taken from the CSR arrays; returns (sum m_b J_b, batches)."""
    X = _matrix(data, indices, indptr, int(net.layers[0, layout.N_IN]))
    total, k = 0.0, 0
    for k, start in enumerate(range(0, order.shape[0], batch_size)):
        if stop[0] != 0:
            return total, k
        idx = order[start:start + batch_size]
        rows = X[idx]
        layout.load_batch(buf, None, Y[idx], W[idx] if W.shape[0] > 0 else None, m=idx.size)
        forward_sparse_into(net, buf, idx.size, rows.data, rows.indices, rows.indptr)
        J = gradients_sparse_into(net, buf, idx.size, rows.data, rows.indices, rows.indptr)
        net.theta[...], update.state[...] = optimizer_update(update.code, net.theta, net.grad, update.state, net.decay,
                                                             update.hyper, t0 + k + 1)
        total += float(J) * idx.size
    return total, -(-order.shape[0] // batch_size)


def cost(net, buf, m):
    """The cost of the B8 pairs, J = mean_i L(i) (weighted by the sample weights when there are some),
    from the logits Z[L]."""
    Z_L = layout.layer_views(buf, m)[-1][0]
    losses = LOSS[LOSSES[net.loss]](Z_L, layout.target_view(buf, m))
    if buf.weights.shape[0] == 0:
        return Z_L.dtype.type(losses.mean())
    w = buf.weights[:m]
    s = w.sum()
    return Z_L.dtype.type((w * losses).sum() / s if s > 0 else 0.0)


def _deltas(net, buf, m):
    """J, B8 (weighted rows with sample weights) and B6: returns (J, [(A[l-1], dZ[l])] for l = 1..L)."""
    views = layout.layer_views(buf, m)
    params = layout.param_views(net.theta, net.layers)
    J = cost(net, buf, m)
    views[-1][2][...] = views[-1][1] - layout.target_view(buf, m)
    if buf.weights.shape[0] > 0:
        w = buf.weights[:m]
        s = w.sum()
        views[-1][2][...] *= (w * net.theta.dtype.type(m) / s if s > 0 else np.zeros_like(w))[:, None]
    for l in range(len(views) - 1, 1, -1):
        Z, A, dZ = views[l - 1]
        dZ[...] = activation_backward(ACTIVATIONS[net.layers[l - 2, layout.ACT]], views[l][2] @ params[l - 1][0].T, Z, A)
    return J, [(views[l - 1][1], views[l][2]) for l in range(1, len(views))]


def gradients_into(net, buf, m, clip_norm):
    """B8, B6, (N1, N2 when clipping), B2, B3 into ``net.grad``; returns J."""
    J, pairs = _deltas(net, buf, m)
    if clip_norm > 0:
        norms = np.sqrt(sum(per_example_sq_norms(A_prev, dZ) for A_prev, dZ in pairs))
        c = np.where(norms <= clip_norm, 1.0, clip_norm / np.maximum(norms, 1e-300)).astype(net.theta.dtype)
        for _, dZ in pairs:
            dZ *= c[:, None]
    _dense_grads_from(net, m, pairs, 1)
    return J


def _dense_grads_from(net, m, pairs, first):
    """B2, B3 for l = first..L from the (A[l-1], dZ[l]) pairs of ``_deltas``."""
    T = net.theta.dtype.type
    for (dW, db), (A_prev, dZ) in zip(layout.param_views(net.grad, net.layers)[first - 1:], pairs[first - 1:]):
        dW[...] = A_prev.T @ dZ / T(m)
        db[...] = dZ.sum(axis=0) / T(m)


def train_step_into(net, buf, m, update, t, noise):
    """forward, gradients, optional DP noise, then the optimizer update of ``net.theta`` in place."""
    forward_into(net, buf, m)
    J = gradients_into(net, buf, m, update.hyper[H_CLIP])
    if update.hyper[H_CLIP] > 0.0:
        net.grad[...] = _dp_noise(net.grad, noise, update.hyper, t, m)
    net.theta[...], update.state[...] = optimizer_update(update.code, net.theta, net.grad, update.state, net.decay,
                                                         update.hyper, t)
    return J


def train_epoch_into(net, buf, X, Y, W, order, batch_size, update, t0, noise, stop):
    """An epoch of fused steps (F1-F3, B8, B6, B2, B3, update) over ``order`` in batches (sample weights W
    gathered with them when W is not empty), ending early
    when ``stop[0]`` is set; returns (sum of ``m_b * J_b``, batches done)."""
    total = 0.0
    k = 0
    for k, start in enumerate(range(0, order.shape[0], batch_size)):
        if stop[0] != 0:
            return total, k
        idx = order[start:start + batch_size]
        layout.load_batch(buf, X[idx], Y[idx], W[idx] if W.shape[0] > 0 else None)
        row = noise[k] if noise.shape[1] > 0 else noise[0]
        total += float(train_step_into(net, buf, idx.size, update, t0 + k + 1, row)) * idx.size
    return total, -(-order.shape[0] // batch_size)

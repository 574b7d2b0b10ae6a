"""Optimizer updates as one loop over the parameter block.

They consume the gradients of B2 (weights) and B3 (biases); ``decay`` is 1 on
weights and 0 on biases so that weight decay (L2) never reaches a bias.
"""
import math

import numpy as np

from .. import _checks, _company
from .._numba import FIRST, jit, prange, refuse_in_forked_child
from ..tables import ADAM_CODE, H_BETA1, H_BETA2, H_EPS, H_LR, H_MOMENTUM, H_NESTEROV, H_WEIGHT_DECAY, N_HYPER


# Parameters per parallel task, fixed so that the split never depends on the thread count;
# blocks below SERIAL_PARAMS in all run on the calling thread.
PARAM_BLOCK = 8192
SERIAL_PARAMS = 1 << 16


@jit
def _sgd_range(theta, grad, velocity, decay, lr, momentum, nesterov, weight_decay, p0, p1):
    T = theta.dtype.type
    lr, mu, wd = T(lr), T(momentum), T(weight_decay)
    # views from p0, and loops from 0: numba then knows no index is negative and LLVM vectorises
    th, gr, vel, dec = theta[p0:p1], grad[p0:p1], velocity[p0:p1], decay[p0:p1]
    if momentum == 0.0:
        # no velocity, read nor written; plain SGD (the default) then reads theta and grad only: half
        # the general loop's memory traffic, which matters where the parameters outgrow L2
        if weight_decay == 0.0:
            for p in range(p1 - p0):
                th[p] -= lr * gr[p]
        else:
            for p in range(p1 - p0):
                th[p] -= lr * (gr[p] + wd * dec[p] * th[p])
        return
    for p in range(p1 - p0):
        # g = dJ/dtheta (B2, B3) + wd * theta on weights
        g = gr[p] + wd * dec[p] * th[p]
        v = mu * vel[p] + g
        vel[p] = v
        th[p] -= lr * (g + mu * v if nesterov else v)


@jit(parallel=True)
def _sgd_blocks(theta, grad, velocity, decay, lr, momentum, nesterov, weight_decay):
    P = theta.shape[0]
    for blk in prange((P + PARAM_BLOCK - 1) // PARAM_BLOCK):
        _sgd_range(theta, grad, velocity, decay, lr, momentum, nesterov, weight_decay, blk * PARAM_BLOCK,
                   min(P, (blk + 1) * PARAM_BLOCK))


@jit
def _sgd_update_into(theta, grad, velocity, decay, lr, momentum, nesterov, weight_decay):
    if theta.shape[0] < SERIAL_PARAMS:
        _sgd_range(theta, grad, velocity, decay, lr, momentum, nesterov, weight_decay, FIRST, theta.shape[0])
    else:
        _sgd_blocks(theta, grad, velocity, decay, lr, momentum, nesterov, weight_decay)


@jit
def _adam_range(theta, grad, m1, m2, decay, lr, beta1, beta2, eps, weight_decay, t, p0, p1):
    T = theta.dtype.type
    b1, b2, wd, e = T(beta1), T(beta2), T(weight_decay), T(eps)
    one = T(1.0)
    # bias corrections folded into the step size, computed once in float64
    step = T(lr / (1.0 - beta1 ** t))
    root_c2 = T(math.sqrt(1.0 - beta2 ** t))
    th, gr, mo1, mo2, dec = theta[p0:p1], grad[p0:p1], m1[p0:p1], m2[p0:p1], decay[p0:p1]
    for p in range(p1 - p0):
        g = gr[p] + wd * dec[p] * th[p]
        m = b1 * mo1[p] + (one - b1) * g
        v = b2 * mo2[p] + (one - b2) * g * g
        mo1[p] = m
        mo2[p] = v
        # theta -= lr * m_hat / (sqrt(v_hat) + eps)
        th[p] -= step * m / (math.sqrt(v) / root_c2 + e)


@jit(parallel=True)
def _adam_blocks(theta, grad, m1, m2, decay, lr, beta1, beta2, eps, weight_decay, t):
    P = theta.shape[0]
    for blk in prange((P + PARAM_BLOCK - 1) // PARAM_BLOCK):
        _adam_range(theta, grad, m1, m2, decay, lr, beta1, beta2, eps, weight_decay, t, blk * PARAM_BLOCK,
                    min(P, (blk + 1) * PARAM_BLOCK))


@jit
def _adam_update_into(theta, grad, m1, m2, decay, lr, beta1, beta2, eps, weight_decay, t):
    if theta.shape[0] < SERIAL_PARAMS:
        _adam_range(theta, grad, m1, m2, decay, lr, beta1, beta2, eps, weight_decay, t, FIRST, theta.shape[0])
    else:
        _adam_blocks(theta, grad, m1, m2, decay, lr, beta1, beta2, eps, weight_decay, t)


@jit
def _optimizer_range_into(opt, theta, grad, state, decay, hyper, t, p0, p1):
    """``_optimizer_update_into`` on the parameters p0 <= p < p1 alone: each parameter's update reads
    only its own numbers, so the fused step updates a block of rows as soon as their gradient is written."""
    if opt == ADAM_CODE:
        _adam_range(theta, grad, state[0], state[1], decay, hyper[H_LR], hyper[H_BETA1], hyper[H_BETA2], hyper[H_EPS],
                    hyper[H_WEIGHT_DECAY], t, p0, p1)
    else:
        _sgd_range(theta, grad, state[0], decay, hyper[H_LR], hyper[H_MOMENTUM], hyper[H_NESTEROV] != 0.0,
                   hyper[H_WEIGHT_DECAY], p0, p1)


@jit
def _optimizer_update_into(opt, theta, grad, state, decay, hyper, t):
    """The update of the fused step: SGD or Adam by ``opt``, constants from ``hyper``, step ``t >= 1``."""
    if opt == ADAM_CODE:
        _adam_update_into(theta, grad, state[0], state[1], decay, hyper[H_LR], hyper[H_BETA1], hyper[H_BETA2],
                          hyper[H_EPS], hyper[H_WEIGHT_DECAY], t)
    else:
        _sgd_update_into(theta, grad, state[0], decay, hyper[H_LR], hyper[H_MOMENTUM], hyper[H_NESTEROV] != 0.0,
                         hyper[H_WEIGHT_DECAY])


@refuse_in_forked_child
@_company.shares_cores(lambda theta, *args, **kwargs: np.size(theta))
def sgd_update(theta, grad, velocity, lr, momentum=0.0, nesterov=False, weight_decay=0.0, decay=None):
    """SGD with momentum on B2/B3 gradients: ``v = mu v + g``, ``theta -= lr (g + mu v if nesterov else v)``,
    with ``g = grad + weight_decay * decay * theta``. With momentum 0 there is no velocity:
    ``theta -= lr g``, and ``velocity`` is returned unchanged.

    theta, grad, velocity, decay (P,) -> (theta, velocity), new arrays.
    """
    decay = np.ones_like(theta) if decay is None else decay
    theta, grad, velocity, decay = _checks.param_blocks(theta, grad=grad, velocity=velocity, decay=decay)
    theta, velocity = theta.copy(), velocity.copy()
    _sgd_update_into(theta, grad, velocity, decay, float(lr), float(momentum), bool(nesterov), float(weight_decay))
    return theta, velocity


@refuse_in_forked_child
@_company.shares_cores(lambda theta, *args, **kwargs: np.size(theta))
def adam_update(theta, grad, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decay=None):
    """Adam on B2/B3 gradients, bias-corrected at step ``t >= 1``:
    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``, ``theta -= lr m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps)``.

    theta, grad, m, v, decay (P,) -> (theta, m, v), new arrays.
    """
    decay = np.ones_like(theta) if decay is None else decay
    theta, grad, m, v, decay = _checks.param_blocks(theta, grad=grad, m=m, v=v, decay=decay)
    theta, m, v = theta.copy(), m.copy(), v.copy()
    _adam_update_into(theta, grad, m, v, decay, float(lr), float(beta1), float(beta2), float(eps),
                      float(weight_decay), float(t))
    return theta, m, v


@refuse_in_forked_child
@_company.shares_cores(lambda opt, theta, *args: np.size(theta))
def optimizer_update(opt, theta, grad, state, decay, hyper, t):
    """The update on B2/B3 gradients that the fused step takes: ``sgd_update`` (``opt`` = 0) or
    ``adam_update`` (``opt`` = 1) with the constants of ``hyper`` (slots in ``loopgrad.tables``) at step ``t >= 1``.

    theta, grad, decay (P,), state (2, P) -> (theta, state), new arrays.
    """
    theta, grad, decay = _checks.param_blocks(theta, grad=grad, decay=decay)
    state = _checks.float_array("state", state, 2)
    _checks.shape("state", state, (2, theta.shape[0]), "(2, P)")
    hyper = _checks.float_array("hyper", np.asarray(hyper, dtype=np.float64), 1)
    _checks.shape("hyper", hyper, (N_HYPER,), "(N_HYPER,)")
    _checks.same_dtype(theta=theta, state=state)
    theta, state = theta.copy(), state.copy()
    _optimizer_update_into(_checks.integer("opt", opt, 0), theta, grad, state, decay, hyper,
                           _checks.number("t", t, 1.0))
    return theta, state

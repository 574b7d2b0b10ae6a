"""Optimizer updates in vector form (twin of ``loopgrad.kernels.optim``)."""
import math

import numpy as np

from .. import _checks
from ..tables import ADAM_CODE, H_BETA1, H_BETA2, H_EPS, H_LR, H_MOMENTUM, H_NESTEROV, H_WEIGHT_DECAY, N_HYPER


def sgd_update(theta, grad, velocity, lr, momentum=0.0, nesterov=False, weight_decay=0.0, decay=None):
    """``v = mu v + g``; ``theta -= lr (g + mu v if nesterov else v)``; with momentum 0, ``theta -= lr g``
    and the velocity unchanged."""
    decay = np.ones_like(theta) if decay is None else decay
    theta, grad, velocity, decay = _checks.param_blocks(theta, grad=grad, velocity=velocity, decay=decay)
    T = theta.dtype.type
    g = grad if weight_decay == 0.0 else grad + T(weight_decay) * decay * theta
    if momentum == 0.0:  # no velocity: read nor written
        return theta - T(lr) * g, velocity
    velocity = T(momentum) * velocity + g
    return theta - T(lr) * (g + T(momentum) * velocity if nesterov else velocity), velocity


def adam_update(theta, grad, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decay=None):
    """Bias-corrected Adam, the same arithmetic as the loop kernel."""
    decay = np.ones_like(theta) if decay is None else decay
    theta, grad, m, v, decay = _checks.param_blocks(theta, grad=grad, m=m, v=v, decay=decay)
    T = theta.dtype.type
    g = grad + T(weight_decay) * decay * theta
    m = T(beta1) * m + (1 - T(beta1)) * g
    v = T(beta2) * v + (1 - T(beta2)) * g * g
    step = T(lr / (1.0 - beta1 ** t))
    root_c2 = T(math.sqrt(1.0 - beta2 ** t))
    return theta - step * m / (np.sqrt(v) / root_c2 + T(eps)), m, v


def optimizer_update(opt, theta, grad, state, decay, hyper, t):
    """SGD or Adam by ``opt`` with the constants of ``hyper`` at step ``t``; returns (theta, state)."""
    theta, grad, decay = _checks.param_blocks(theta, grad=grad, decay=decay)
    state = _checks.float_array("state", state, 2)
    _checks.shape("state", state, (2, theta.shape[0]), "(2, P)")
    hyper = np.asarray(hyper, dtype=np.float64)
    _checks.shape("hyper", hyper, (N_HYPER,), "(N_HYPER,)")
    state = state.copy()
    if _checks.integer("opt", opt, 0) == ADAM_CODE:
        theta, state[0], state[1] = adam_update(theta, grad, state[0], state[1], _checks.number("t", t, 1.0),
                                                hyper[H_LR], hyper[H_BETA1], hyper[H_BETA2], hyper[H_EPS],
                                                hyper[H_WEIGHT_DECAY], decay)
    else:
        theta, state[0] = sgd_update(theta, grad, state[0], hyper[H_LR], hyper[H_MOMENTUM], hyper[H_NESTEROV] != 0,
                                     hyper[H_WEIGHT_DECAY], decay)
    return theta, state

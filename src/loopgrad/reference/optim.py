"""Optimizer updates in vector form (twin of ``loopgrad.kernels.optim``)."""
import math

import numpy as np

from ..kernels.optim import _check_block


def sgd_update(theta, grad, velocity, lr, momentum=0.0, nesterov=False, weight_decay=0.0, decay=None):
    """``v = mu v + g``; ``theta -= lr (g + mu v if nesterov else v)``."""
    decay = np.ones_like(theta) if decay is None else decay
    theta, grad, velocity, decay = _check_block(theta, grad=grad, velocity=velocity, decay=decay)
    T = theta.dtype.type
    g = grad + T(weight_decay) * decay * theta
    velocity = T(momentum) * velocity + g
    return theta - T(lr) * (g + T(momentum) * velocity if nesterov else velocity), velocity


def adam_update(theta, grad, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decay=None):
    """Bias-corrected Adam, the same arithmetic as the loop kernel."""
    decay = np.ones_like(theta) if decay is None else decay
    theta, grad, m, v, decay = _check_block(theta, grad=grad, m=m, v=v, decay=decay)
    T = theta.dtype.type
    g = grad + T(weight_decay) * decay * theta
    m = T(beta1) * m + (1 - T(beta1)) * g
    v = T(beta2) * v + (1 - T(beta2)) * g * g
    step = T(lr / (1.0 - beta1 ** t))
    root_c2 = T(math.sqrt(1.0 - beta2 ** t))
    return theta - step * m / (np.sqrt(v) / root_c2 + T(eps)), m, v

"""Optimizers: hyper-parameters and state for the fused step.

An optimizer here is a small description (its code, its constant hyper-parameter vector and,
for DP-SGD, the noise of each step); the update itself is one loop kernel
(``loopgrad.kernels.optim.optimizer_update``) run inside the fused step on the whole parameter
block, with the step count ``t`` passed to it explicitly.
"""
import numpy as np

from ._checks import number as _number
from .tables import ADAM_CODE, H_BETA1, H_BETA2, H_CLIP, H_EPS, H_LR, H_MOMENTUM, H_NESTEROV, H_WEIGHT_DECAY, N_HYPER, SGD_CODE


class SGD:
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay on weights."""
    code = SGD_CODE

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.lr = _number("lr", lr, 0.0, low_open=True)
        self.momentum = _number("momentum", momentum, 0.0, 1.0)
        self.nesterov = bool(nesterov)
        self.weight_decay = _number("weight_decay", weight_decay, 0.0)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0, got momentum=0.0")

    def hyper(self):
        """The constants of the update as the float64 vector the kernels read (slots in ``loopgrad.tables``)."""
        h = np.zeros(N_HYPER)
        h[H_LR], h[H_MOMENTUM], h[H_NESTEROV], h[H_WEIGHT_DECAY] = (
            self.lr, self.momentum, float(self.nesterov), self.weight_decay)
        return h

    per_step_noise = False

    def start(self):
        """Called once at the start of ``fit``."""

    def noise(self, steps, n_params, dtype):
        """Noise added to the summed gradient of each of the next ``steps`` steps, (steps, P);
        one row of length 0, (1, 0), when there is none."""
        return np.zeros((1, 0), dtype=dtype)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Adam(SGD):
    """Adam (Kingma & Ba 2015), bias-corrected, with L2 weight decay on weights."""
    code = ADAM_CODE

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        self.lr = _number("lr", lr, 0.0, low_open=True)
        self.beta1 = _number("beta1", beta1, 0.0, 1.0)
        self.beta2 = _number("beta2", beta2, 0.0, 1.0)
        self.eps = _number("eps", eps, 0.0, low_open=True)
        self.weight_decay = _number("weight_decay", weight_decay, 0.0)

    def hyper(self):
        h = np.zeros(N_HYPER)
        h[H_LR], h[H_BETA1], h[H_BETA2], h[H_EPS], h[H_WEIGHT_DECAY] = (
            self.lr, self.beta1, self.beta2, self.eps, self.weight_decay)
        return h


class DPSGD(SGD):
    """Differentially private SGD (Abadi et al. 2016).

    Each example's gradient is clipped to ``clip_norm`` (N1 for the norms, N2 for
    the clipped sum), Gaussian noise of std ``noise_multiplier * clip_norm`` is
    added to the summed gradient, and the mean takes a plain SGD step.
    """

    def __init__(self, lr=0.1, clip_norm=1.0, noise_multiplier=1.0, seed=0, momentum=0.0, weight_decay=0.0):
        super().__init__(lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.clip_norm = _number("clip_norm", clip_norm, 0.0, low_open=True)
        self.noise_multiplier = _number("noise_multiplier", noise_multiplier, 0.0)
        self.seed = seed
        self.start()

    def start(self):
        self._rng = np.random.default_rng(self.seed)

    @property
    def per_step_noise(self):
        return self.noise_multiplier > 0.0

    def hyper(self):
        h = super().hyper()
        h[H_CLIP] = self.clip_norm
        return h

    def noise(self, steps, n_params, dtype):
        """Gaussian noise of std ``noise_multiplier * clip_norm``, one row per step, drawn in the
        order of the steps (a block of k rows equals k draws of one row: the same stream)."""
        if self.noise_multiplier == 0.0:
            return super().noise(steps, n_params, dtype)
        return self._rng.normal(0.0, self.noise_multiplier * self.clip_norm, (steps, n_params)).astype(dtype)


def get(optimizer):
    if optimizer is None:
        return Adam()
    if isinstance(optimizer, SGD):
        return optimizer
    if isinstance(optimizer, str) and optimizer in ("sgd", "adam"):
        return SGD() if optimizer == "sgd" else Adam()
    raise ValueError(f"optimizer: expected 'sgd', 'adam' or an SGD/Adam/DPSGD instance, got {optimizer!r}")

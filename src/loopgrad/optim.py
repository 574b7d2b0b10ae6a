"""Optimizers: hyper-parameters and state for the fused step.

An optimizer here is a small description (its code, its constant hyper-parameter vector and,
for DP-SGD, the noise of each step); the update itself is one loop kernel
(``loopgrad.kernels.optim.optimizer_update``) run inside the fused step on the whole parameter
block, with the step count ``t`` passed to it explicitly.
"""
import hashlib
import logging
import os

import numpy as np

from ._checks import integer as _integer
from ._checks import number as _number
from .tables import (ADAM_CODE, H_BETA1, H_BETA2, H_CLIP, H_EPS, H_LR, H_MEAN_ROWS, H_MOMENTUM, H_NESTEROV, H_NOISE_KEY,
                     H_NOISE_STD, H_WEIGHT_DECAY, N_HYPER, SGD_CODE)


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

    per_step_noise = False  # True where the noise of each step is drawn in Python and passed as a block
    poisson = False

    def start(self, n_rows, batch_size):
        """Called by ``fit`` before its first step, with the rows it trains on and the batch size."""

    def record(self, steps):
        """Called by ``fit`` after every compiled call with the steps it took."""

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
    """Differentially private SGD (Abadi et al. 2016), with its privacy accounted.

    Each example's gradient is clipped to ``clip_norm`` (N1 for the norms, N2 for the clipped
    sum), Gaussian noise of std ``noise_multiplier * clip_norm`` is added to the sum, and the
    mean takes an SGD step. The noise is drawn inside the compiled step by a counter-based
    generator (``loopgrad.kernels.noise``): deterministic for a ``seed``, the same on 1 and 2
    threads, and new for every step of every ``fit`` the optimizer runs.

    ``epsilon(delta)`` is the privacy spent by the steps taken so far, from Google's
    ``dp-accounting`` RDP accountant (a Poisson-subsampled Gaussian mechanism composed over the
    steps). With ``poisson=True`` each batch takes every training row independently with
    probability ``batch_size / n`` (what the accountant assumes) and the noisy sum is divided by
    that expected batch size; by default batches are shuffled and of fixed size, and the reported
    epsilon is the usual approximation made for them (it assumes Poisson sampling).
    ``target_epsilon`` stops ``fit`` before an epoch that would spend more (at ``delta``).

    ``secure=True`` draws the noise from the operating system's CSPRNG (``os.urandom``, Box-Muller
    in float64) in Python, block by block: slower, and not reproducible, for releases. Either way
    the noise is a floating-point approximation of a Gaussian; its lowest bits can in principle
    leak more than the analysis says (Mironov 2012), as in every floating-point DP-SGD.
    """

    def __init__(self, lr=0.1, clip_norm=1.0, noise_multiplier=1.0, seed=0, momentum=0.0, weight_decay=0.0,
                 poisson=False, delta=1e-5, target_epsilon=None, secure=False):
        super().__init__(lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.clip_norm = _number("clip_norm", clip_norm, 0.0, low_open=True)
        self.noise_multiplier = _number("noise_multiplier", noise_multiplier, 0.0)
        self.seed = _integer("seed", seed, 0, 2 ** 32 - 1)
        self.poisson = bool(poisson)
        self.delta = _number("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
        self.target_epsilon = None if target_epsilon is None else _number("target_epsilon", target_epsilon, 0.0,
                                                                          low_open=True)
        self.secure = bool(secure)
        self.steps = 0
        self._segments = []  # [sample rate, steps] of each fit, for the accountant
        self._fits = 0
        self._key = 0
        self._expected_rows = 0.0

    def start(self, n_rows, batch_size):
        """A new fit: a new noise key (no step of any fit reuses another's noise) and the sample rate
        ``batch_size / n_rows`` the accountant composes."""
        self._fits += 1
        self._key = _derive_key(self.seed, self._fits)
        rate = min(1.0, batch_size / n_rows)
        self._expected_rows = rate * n_rows if self.poisson else 0.0
        self._segments.append([rate, 0])

    def record(self, steps):
        self.steps += steps
        if self._segments:
            self._segments[-1][1] += steps

    @property
    def per_step_noise(self):
        return self.secure and self.noise_multiplier > 0.0

    @property
    def sample_rate(self):
        return self._segments[-1][0] if self._segments else None

    @property
    def accounting(self):
        sampling = "Poisson sampling" if self.poisson else "shuffled batches, accounted as if Poisson-sampled"
        return f"RDP accountant of dp-accounting, {sampling}"

    def hyper(self):
        h = super().hyper()
        h[H_CLIP] = self.clip_norm
        if not self.secure:
            h[H_NOISE_STD] = self.noise_multiplier * self.clip_norm
            h[H_NOISE_KEY] = float(self._key)
        h[H_MEAN_ROWS] = self._expected_rows
        return h

    def noise(self, steps, n_params, dtype):
        """Secure mode only: Gaussian noise of std ``noise_multiplier * clip_norm`` from the operating
        system's CSPRNG, one row per step (Box-Muller on 53-bit uniforms)."""
        if not self.per_step_noise:
            return super().noise(steps, n_params, dtype)
        n = steps * n_params
        words = np.frombuffer(os.urandom(8 * 2 * ((n + 1) // 2)), dtype=np.uint64).reshape(2, -1)
        u1, u2 = (((w >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0 ** -53 for w in words)
        radius = np.sqrt(-2.0 * np.log(u1))
        z = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])[:n]
        return (z * (self.noise_multiplier * self.clip_norm)).astype(dtype).reshape(steps, n_params)

    def epsilon(self, delta=None, extra_steps=0):
        """The epsilon of (epsilon, delta)-DP spent by the steps taken so far (plus ``extra_steps`` more
        at the current sample rate), from dp-accounting's RDP accountant; inf without noise."""
        delta = self.delta if delta is None else _number("delta", delta, 0.0, 1.0, low_open=True)
        segments = [list(s) for s in self._segments]
        if extra_steps:
            if not segments:
                raise ValueError("extra_steps: no sample rate yet; fit once first")
            segments[-1][1] += extra_steps
        if not any(k for _, k in segments):
            return 0.0
        if self.noise_multiplier == 0.0:
            return float("inf")
        try:
            from dp_accounting import dp_event, rdp
        except ImportError:
            raise ImportError("DPSGD.epsilon needs Google's dp-accounting: pip install dp-accounting") from None
        # the accountant logs a warning for each RDP order whose series does not converge at small
        # sigma (while composing) and leaves that order out (the epsilon stays an upper bound): not
        # the user's concern
        quiet = logging.getLogger("absl")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            accountant = rdp.RdpAccountant()
            for rate, k in segments:
                if k:
                    accountant.compose(
                        dp_event.PoissonSampledDpEvent(rate, dp_event.GaussianDpEvent(self.noise_multiplier)), int(k))
            return float(accountant.get_epsilon(delta))
        finally:
            quiet.setLevel(level)


def _derive_key(seed, fit):
    """A noise key below 2^53 (exact in the float64 hyper-parameter vector) for fit number ``fit``."""
    digest = hashlib.blake2b(f"loopgrad-dpsgd:{seed}:{fit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 11


class OptimizerState:
    """An optimizer's state carried from one ``fit`` to the next (``fit(..., optimizer_state=s)``):
    the velocity or Adam's two moments, in ``theta``'s layout, and the steps taken ``t``. Without
    one, every ``fit`` starts its optimizer from zero; with one, a later ``fit`` (``partial_fit``, a
    warm start, an epoch-by-epoch schedule) continues where the last stopped."""

    def __init__(self):
        self.moments = None  # (2, P), or None before the first fit
        self.t = 0

    def reset(self):
        self.moments, self.t = None, 0


def get(optimizer):
    if optimizer is None:
        return Adam()
    if isinstance(optimizer, SGD):
        return optimizer
    if isinstance(optimizer, str) and optimizer in ("sgd", "adam"):
        return SGD() if optimizer == "sgd" else Adam()
    raise ValueError(f"optimizer: expected 'sgd', 'adam' or an SGD/Adam/DPSGD instance, got {optimizer!r}")

"""DP-SGD's counter-based Gaussian noise in vector form (twin of ``loopgrad.kernels.noise``).

The same words and the same ziggurat: the words and the fast path for every parameter at once,
then the few draws that miss it one by one, with the kernel's scalar arithmetic.
"""
import math

import numpy as np

from .. import _checks
from ..tables import (GAMMA, H_MEAN_ROWS, H_NOISE_KEY, H_NOISE_STD, HALF_SIGNED_UNIT, TO_UNIT, ZIG_F, ZIG_FAST,
                      ZIG_BITS, ZIG_LAYERS, ZIG_R)

_D_STEP = np.uint64(0xD1B54A32D192ED03)
_LOW_HALF = np.uint64(0xFFFFFFFF)


def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _word(key, c, d):
    """Word ``d`` of the counters ``c`` (uint64 arrays throughout: NumPy wraps them silently)."""
    k = np.array([key], np.uint64)
    if d:
        k = _mix(k ^ (np.array([d], np.uint64) * _D_STEP))
    return _mix(k + c * GAMMA)


def _unit(w):
    return ((w >> np.uint64(11)).astype(np.float64) + 1.0) * TO_UNIT


def _half_unit(h):
    return (h >> np.uint64(ZIG_BITS)).astype(np.float64) * HALF_SIGNED_UNIT - 1.0


def _normals(key, t, P, p):
    """Standard normal deviates of the parameters ``p`` (int array) of a block of ``P`` at step ``t``."""
    # 1-element arrays, which wrap silently where scalar uint64 products would warn
    key, t, P = np.uint64(key), np.array([t], np.uint64), np.array([P], np.uint64)
    p = np.asarray(p, np.uint64)
    w = _word(key, t * ((P + np.uint64(1)) // np.uint64(2)) + (p >> np.uint64(1)), 0)
    h = np.where(p & np.uint64(1), w >> np.uint64(32), w & _LOW_HALF)
    u = _half_unit(h)
    i = (h & np.uint64(ZIG_LAYERS - 1)).astype(np.int64)
    out = u * ZIG_FAST[i, 0]
    for q in np.flatnonzero(~(np.abs(u) < ZIG_FAST[i, 1])):  # about 1.5% of draws
        out[q] = _slow_normal(key, t * P + p[q:q + 1], h[q])
    return out


def _slow_normal(key, c, h):
    """The kernel's slow path for one draw: counter ``c`` (1,) uint64, failed half-word ``h``."""
    d = 0
    while True:
        u = _half_unit(np.array([h], np.uint64))[0]
        i = int(h & np.uint64(ZIG_LAYERS - 1))
        if abs(u) < ZIG_FAST[i, 1]:
            return u * ZIG_FAST[i, 0]
        if i == 0:
            while True:
                d += 1
                x = math.log(_unit(_word(key, c, d))[0]) / ZIG_R
                d += 1
                y = math.log(_unit(_word(key, c, d))[0])
                if -2.0 * y >= x * x:
                    return x - ZIG_R if u < 0.0 else ZIG_R - x
        x = u * ZIG_FAST[i, 0]
        d += 1
        if ZIG_F[i + 1] + _unit(_word(key, c, d))[0] * (ZIG_F[i] - ZIG_F[i + 1]) < math.exp(-0.5 * x * x):
            return x
        d += 1
        h = _word(key, c, d)[0] & _LOW_HALF


def gaussian_noise(key, t, n):
    """z_p(t), p = 0..n-1: the deviates that DP-SGD's step ``t`` adds to N2's clipped sum; (n,) float64."""
    key = _checks.integer("key", key, 0, 2 ** 53 - 1)
    t = _checks.integer("t", t, 0, 2 ** 53 - 1)
    n = _checks.integer("n", n, 0)
    return _normals(key, t, n, np.arange(n))


def _add_noise(grad, std, key, t, m, rows):
    """``(m grad + std z(t)) / rows`` (rows 0: m), the kernel's arithmetic in the gradient's dtype."""
    T = grad.dtype.type
    z = gaussian_noise(key, t, grad.shape[0])
    rescale = T(m / rows) if rows > 0.0 else T(1.0)
    return (grad + (std / m * z).astype(grad.dtype)) * rescale


def _dp_noise(grad, noise_row, hyper, t, m):
    """DP-SGD's noisy mean ``(m grad + noise) / rows``: the row given, or std times z(t)."""
    T = grad.dtype.type
    rows = hyper[H_MEAN_ROWS]
    rescale = T(m / rows) if rows > 0.0 else T(1.0)
    if noise_row.shape[0] > 0:
        return (grad + noise_row * (T(1.0) / T(m))) * rescale
    if hyper[H_NOISE_STD] > 0.0:
        return _add_noise(grad, hyper[H_NOISE_STD], int(hyper[H_NOISE_KEY]), t, m, rows)
    return grad * rescale

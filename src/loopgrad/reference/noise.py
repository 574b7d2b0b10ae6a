"""DP-SGD's counter-based Gaussian noise in vector form (twin of ``loopgrad.kernels.noise``).

The same words and the same ziggurat, over all parameters at once: the fast path for every
counter in one expression, then the few draws that miss it, again all at once, round by round.
"""
import numpy as np

from .. import _checks
from ..tables import GAMMA, H_MEAN_ROWS, H_NOISE_KEY, H_NOISE_STD, SIGNED_UNIT, TO_UNIT, ZIG_R, ZIG_RATIO, ZIG_X

_D_STEP = np.uint64(0xD1B54A32D192ED03)


def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _word(key, c, d):
    """Word ``d`` of the counters ``c`` (arrays throughout: NumPy wraps uint64 arrays silently)."""
    k = np.array([key], np.uint64)
    if d:
        k = _mix(k ^ (np.array([d], np.uint64) * _D_STEP))
    return _mix(k + c * GAMMA)


def _unit(w):
    return ((w >> np.uint64(11)).astype(np.float64) + 1.0) * TO_UNIT


def _normals(key, counters):
    """Standard normal deviates for the uint64 ``counters``, the kernel's ziggurat drawn per array."""
    key = np.uint64(key)
    c = np.asarray(counters, np.uint64)
    out = np.empty(c.shape, np.float64)
    todo = np.arange(c.size)
    w = _word(key, c, 0)
    d = np.zeros(c.size, np.int64)
    while todo.size:
        u = (w >> np.uint64(12)).astype(np.float64) * SIGNED_UNIT - 1.0
        i = (w & np.uint64(127)).astype(np.int64)
        inside = np.abs(u) < ZIG_RATIO[i]
        out[todo[inside]] = u[inside] * ZIG_X[i[inside]]
        tail = ~inside & (i == 0)
        for j in np.flatnonzero(tail):  # about 1 draw in 4000
            out[todo[j]] = _tail(key, c[todo[j]], d[todo[j]], u[j] < 0.0)
        wedge = ~inside & (i > 0)
        x = u[wedge] * ZIG_X[i[wedge]]
        f0 = np.exp(-0.5 * (ZIG_X[i[wedge]] ** 2 - x * x))
        f1 = np.exp(-0.5 * (ZIG_X[i[wedge] + 1] ** 2 - x * x))
        rows = todo[wedge]
        d[rows] += 1
        accept = f1 + np.array([_unit(_word(key, c[r:r + 1], d[r]))[0] for r in rows]) * (f0 - f1) < 1.0
        out[rows[accept]] = x[accept]
        todo = rows[~accept]
        d[todo] += 1
        w = np.array([_word(key, c[r:r + 1], d[r])[0] for r in todo], np.uint64)
    return out


def _tail(key, c, d, negative):
    while True:
        d += 1
        x = np.log(_unit(_word(key, np.asarray([c]), d)))[0] / ZIG_R
        d += 1
        y = np.log(_unit(_word(key, np.asarray([c]), d)))[0]
        if -2.0 * y >= x * x:
            return x - ZIG_R if negative else ZIG_R - x


def gaussian_noise(key, t, n):
    """z_p(t), p = 0..n-1: the deviates that DP-SGD's step ``t`` adds to N2's clipped sum; (n,) float64."""
    key = _checks.integer("key", key, 0, 2 ** 53 - 1)
    t = _checks.integer("t", t, 0, 2 ** 53 - 1)
    n = _checks.integer("n", n, 0)
    return _normals(key, np.array([t], np.uint64) * np.uint64(n) + np.arange(n, dtype=np.uint64))


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

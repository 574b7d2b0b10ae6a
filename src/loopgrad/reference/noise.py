"""DP-SGD's counter-based Gaussian noise in vector form (twin of ``loopgrad.kernels.noise``).

The same words and the same Box-Muller arithmetic in float32, operation for operation (NumPy
rounds each one as the kernel, compiled without fastmath, does): every pair at once, then the
few pairs whose radius takes the slow path one by one.
"""
import math

import numpy as np

from .. import _checks
from ..tables import (ANGLE_MASK, ANGLE_SHIFT, COS_POLY, FLOAT32_BIAS, FLOAT32_MANTISSA, FLOAT32_ONE_BITS,
                      FLOAT32_SQRT_HALF_BITS, GAMMA, H_MEAN_ROWS, H_NOISE_KEY, H_NOISE_STD, LOG_POLY, QUADRANT_SHIFT,
                      RADIUS_FAST_BITS, RADIUS_SHIFT, SIN_POLY, TO_UNIT)

_D_STEP = np.uint64(0xD1B54A32D192ED03)
_F = np.float32
_LN2 = _F(math.log(2.0))
_ANGLE_STEP = _F(math.pi * 2.0 ** -24)


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


def _horner(coefficients, x):
    p = coefficients[-1]
    for c in coefficients[-2::-1]:
        p = p * x + c
    return p


def _radius(k):
    """sqrt(-2 ln(k 2^-31)), float32, for int32 k >= 2^16 (the kernel's exponent/mantissa split)."""
    bits = k.astype(np.float32).view(np.int32) + np.int32(FLOAT32_ONE_BITS - FLOAT32_SQRT_HALF_BITS)
    e = (bits >> 23).astype(np.float32) - _F(FLOAT32_BIAS + 31)
    f = ((bits & np.int32(FLOAT32_MANTISSA)) + np.int32(FLOAT32_SQRT_HALF_BITS)).view(np.float32) - _F(1.0)
    ff = f * f
    ln_u = e * _LN2 + ((f - _F(0.5) * ff) + ff * f * _horner(LOG_POLY, f))
    return np.sqrt(_F(-2.0) * ln_u)


def _polar(a, r):
    """The pairs r (cos, sin) of the 24-bit angles ``a``, as (pairs, 2) float32."""
    quadrant = a >> QUADRANT_SHIFT
    n = ((a & np.int32((1 << QUADRANT_SHIFT) - 1)) << 1) + 1 - (1 << QUADRANT_SHIFT)  # odd, in (-2^22, 2^22)
    psi = n.astype(np.float32) * _ANGLE_STEP
    s2 = psi * psi
    sin = psi + psi * s2 * _horner(SIN_POLY, s2)
    cos = _F(1.0) + s2 * _horner(COS_POLY, s2)
    odd = (quadrant & 1) != 0
    x_sign = np.where((quadrant == 1) | (quadrant == 2), _F(-1.0), _F(1.0))
    y_sign = np.where(quadrant >= 2, _F(-1.0), _F(1.0))
    return np.stack([(r * x_sign) * np.where(odd, sin, cos), (r * y_sign) * np.where(odd, cos, sin)], axis=1)


def _normals(key, t, P, p):
    """Standard normal deviates of the parameters ``p`` (int array) of a block of ``P`` at step ``t``."""
    # 1-element arrays, which wrap silently where scalar uint64 products would warn
    key, t, P = np.uint64(key), np.array([t], np.uint64), np.array([P], np.uint64)
    p = np.asarray(p, np.uint64)
    pair, index = np.unique(p >> np.uint64(1), return_inverse=True)
    c = t * ((P + np.uint64(1)) // np.uint64(2)) + pair
    w = _word(key, c, 0)
    k = (w >> np.uint64(RADIUS_SHIFT)).astype(np.int32)
    a = ((w >> np.uint64(ANGLE_SHIFT)) & np.uint64(ANGLE_MASK)).astype(np.int32)
    slow = k < (1 << RADIUS_FAST_BITS)  # one pair in 32,768
    r = _radius(np.where(slow, np.int32(1 << RADIUS_FAST_BITS), k))
    for j in np.flatnonzero(slow):
        u = (float(k[j]) + _unit(_word(key, c[j:j + 1], 1))[0]) * 2.0 ** -31
        r[j] = _F(math.sqrt(-2.0 * math.log(u)))
    return _polar(a, r)[index, (p & np.uint64(1)).astype(np.int64)].astype(np.float64)


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
    return (grad + T(std / m) * z.astype(grad.dtype)) * rescale


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

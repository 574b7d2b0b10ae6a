"""DP-SGD's Gaussian noise, drawn inside the compiled step by a counter-based generator.

The noise of parameter ``p`` at step ``t`` is a pure function of ``(key, t, p)``: no generator
state is carried from one draw to the next, so the noise is the same whichever thread draws
which parameters, on 1 or 2 threads, and a step can be redrawn alone.

* Uniform bits: word ``d`` of the draw with counter ``c`` is SplitMix64's output function (Steele,
  Lea and Flood 2014) applied to ``key_d + c * GAMMA``; for ``d = 0`` this is exactly SplitMix64's
  ``c``-th output for the seed ``key_0``.
* Normal deviates: Box and Muller's transform, one 64-bit word per pair. Parameters ``2j`` and
  ``2j + 1`` of a block of ``P`` share word 0 of counter ``t ceil(P/2) + j``: its high 31 bits k
  give the radius ``sqrt(-2 ln u)``, ``u = k 2^-31``, and its bits 8..31 the angle (2 bits of
  quadrant, 22 of angle within it); the pair is the radius times the angle's cosine and sine.
* Float32 arithmetic throughout, written so that LLVM vectorises it (8 pairs per AVX2 instruction):
  the logarithm splits ``float32(k)`` into exponent and mantissa by its bits and takes a polynomial
  of the mantissa; sine and cosine are polynomials on a quarter turn. Compiled without fastmath
  (``jit(exact=True)``), the NumPy twin repeats every rounding and equals it bit for bit.
* The tail stays exact: where ``k < 2^16`` (``u < 2^-15``, a radius beyond 4.56; one pair in
  32,768) the slow path extends ``u`` by the 53 bits of word ``d = 1`` of the pair's counter and
  takes the radius in float64, so the radius is not truncated short of about 10.8 sigma. Elsewhere a
  deviate carries float32's precision: ``float32(k)`` keeps 24 of k's bits, the angle has 24.

These are not cryptographic draws: ``DPSGD(secure=True)`` draws from the operating system's
CSPRNG instead (in NumPy, slower; see ``loopgrad.optim``).
"""
import math

import numpy as np

from .. import _checks
from .._numba import FIRST, bits_float32, float32_bits, jit, prange, shift_to_float32
from .optim import PARAM_BLOCK, SERIAL_PARAMS  # the parameter block's one fixed partition into tasks
from ..tables import (ANGLE_MASK, ANGLE_SHIFT, COS_POLY, FLOAT32_BIAS, FLOAT32_MANTISSA, FLOAT32_ONE_BITS,
                      FLOAT32_SQRT_HALF_BITS, GAMMA, H_MEAN_ROWS, H_NOISE_KEY, H_NOISE_STD, LOG_POLY, QUADRANT_SHIFT,
                      RADIUS_FAST_BITS, RADIUS_SHIFT, SIN_POLY, TO_UNIT)

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_D_STEP = np.uint64(0xD1B54A32D192ED03)
_RADIUS_SHIFT, _ANGLE_SHIFT, _ANGLE_MASK = np.uint64(RADIUS_SHIFT), np.uint64(ANGLE_SHIFT), np.uint64(ANGLE_MASK)
_K_FAST = 1 << RADIUS_FAST_BITS
# Deviates drawn per round of a range: its scratch (about 10 KiB) stays in L1.
NOISE_CHUNK = 1024
_PAIRS = NOISE_CHUNK // 2 + 1

_F = np.float32
_L0, _L1, _L2, _L3, _L4, _L5, _L6 = (_F(c) for c in LOG_POLY)
_S3, _S5, _S7, _S9 = (_F(c) for c in SIN_POLY)
_C2, _C4, _C6, _C8, _C10 = (_F(c) for c in COS_POLY)
_ONE, _HALF, _MINUS_TWO, _MINUS_ONE = _F(1.0), _F(0.5), _F(-2.0), _F(-1.0)
_LN2 = _F(math.log(2.0))
# the angle within a quadrant: psi = n pi 2^-24 for the odd n in (-2^22, 2^22), in [-pi/4, pi/4)
_IN_QUADRANT = (1 << QUADRANT_SHIFT) - 1
_ANGLE_STEP = _F(math.pi * 2.0 ** -24)


@jit
def _mix(z):
    # SplitMix64's output function: a bijection of the 64-bit words with full avalanche
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@jit
def _word(key, c, d):
    """Word ``d`` of counter ``c``: d = 0 is SplitMix64 itself, d > 0 a stream of its own key."""
    k = key if d == 0 else _mix(key ^ (np.uint64(d) * _D_STEP))
    return _mix(k + c * GAMMA)


@jit
def _unit(w):
    # a uniform in (0, 1]: the high 53 bits, plus one so that log() never sees 0 (through int64,
    # which converts in one instruction where uint64 does not)
    return (float(np.int64(w >> _S11)) + 1.0) * TO_UNIT


@jit(exact=True)
def _radius(k):
    """sqrt(-2 ln(k 2^-31)) in float32 for an int32 k >= 2^16: k 2^-31 = 2^e m, m in [sqrt(1/2), sqrt(2)),
    from the bits of float32(k); then ln = e ln 2 + ln(1 + f), f = m - 1 (exact), by LOG_POLY."""
    # adding 1.0's bits less sqrt(1/2)'s moves a mantissa at or above sqrt(2)'s into the next octave
    bits = float32_bits(_F(k)) + (FLOAT32_ONE_BITS - FLOAT32_SQRT_HALF_BITS)
    # the exponent less float32's bias and the 31 of 2^-31 (exact in float32); shifted in 32-bit
    # lanes, a third cheaper than through numba's int64
    e = shift_to_float32(bits, 23) - _F(FLOAT32_BIAS + 31)
    f = bits_float32((bits & FLOAT32_MANTISSA) + FLOAT32_SQRT_HALF_BITS) - _ONE
    ff = f * f
    p = (((((_L6 * f + _L5) * f + _L4) * f + _L3) * f + _L2) * f + _L1) * f + _L0
    ln_u = e * _LN2 + ((f - _HALF * ff) + ff * f * p)
    return np.sqrt(_MINUS_TWO * ln_u)


@jit(exact=True)
def _slow_radius(key, c, k):
    """The radius of a pair whose k < 2^16: u = (k + v) 2^-31 with v the 53-bit uniform of word 1 of
    the pair's counter ``c``, its logarithm in float64; rounded to float32 as the fast path's is."""
    u = (float(k) + _unit(_word(key, c, 1))) * 2.0 ** -31
    return _F(math.sqrt(-2.0 * math.log(u)))


@jit(exact=True)
def _polar(a, r, zz, j):
    """zz[2j], zz[2j+1] = r (cos, sin) of the angle ``a`` (24 bits): quadrant a >> 22, and within it
    psi in [-pi/4, pi/4) where the two polynomials need no further reduction."""
    quadrant = a >> QUADRANT_SHIFT
    psi = _F(np.int32(((a & _IN_QUADRANT) << 1) + 1 - (1 << QUADRANT_SHIFT))) * _ANGLE_STEP
    s2 = psi * psi
    sin = psi + psi * s2 * (((_S9 * s2 + _S7) * s2 + _S5) * s2 + _S3)
    cos = _ONE + s2 * ((((_C10 * s2 + _C8) * s2 + _C6) * s2 + _C4) * s2 + _C2)
    # a quarter turn per quadrant: (cos, sin) -> (-sin, cos) -> (-cos, -sin) -> (sin, -cos)
    odd = (quadrant & 1) != 0
    x_sign = _MINUS_ONE if quadrant == 1 or quadrant == 2 else _ONE
    y_sign = _MINUS_ONE if quadrant >= 2 else _ONE
    zz[2 * j] = (r * x_sign) * (sin if odd else cos)
    zz[2 * j + 1] = (r * y_sign) * (cos if odd else sin)


@jit(exact=True)
def _radii(kk, r, pairs):
    for j in range(pairs):
        r[j] = _radius(kk[j])


@jit(exact=True)
def _deviates(aa, r, zz, pairs):
    for j in range(pairs):
        _polar(aa[j], r[j], zz, j)


@jit
def _normals_chunk(key, t, P, first, n, kk, aa, r, zz):
    """zz[(first & 1) + q] = the deviate of parameter first + q, q < n <= NOISE_CHUNK, at step t for a
    block of P parameters: the words (scalar: 64-bit products), then the radii and the angles (each
    one vectorised loop), then the rare pairs whose radius takes the slow path."""
    pairs = ((first & 1) + n + 1) >> 1
    # SplitMix64: its state advances by GAMMA per counter; word 0 is the mixed state
    c0 = np.uint64(t) * np.uint64((P + 1) // 2) + np.uint64(first >> 1)
    state = key + c0 * GAMMA
    slow = 0
    for j in range(pairs):
        w = _mix(state)
        state += GAMMA
        k = np.int32(w >> _RADIUS_SHIFT)
        kk[j] = k
        aa[j] = np.int32((w >> _ANGLE_SHIFT) & _ANGLE_MASK)
        slow += k < _K_FAST
    _radii(kk, r, pairs)
    if slow:
        for j in range(pairs):
            if kk[j] < _K_FAST:
                r[j] = _slow_radius(key, c0 + np.uint64(j), kk[j])
    _deviates(aa, r, zz, pairs)


@jit
def _chunk_scratch():
    """_normals_chunk's scratch (k, angle bits, radii, deviates) for one chunk, not a whole range:
    small enough that malloc serves it from its free lists without touching fresh pages each step."""
    return (np.empty(_PAIRS, np.int32), np.empty(_PAIRS, np.int32), np.empty(_PAIRS, np.float32),
            np.empty(2 * _PAIRS, np.float32))


@jit
def _normals_range(key, t, P, z, p0):
    """z[q] = the deviate of parameter p0 + q at step t, for a block of P parameters."""
    kk, aa, r, zz = _chunk_scratch()
    for c0 in range(0, z.shape[0], NOISE_CHUNK):
        n = min(NOISE_CHUNK, z.shape[0] - c0)
        first = p0 + c0
        _normals_chunk(key, t, P, first, n, kk, aa, r, zz)
        odd = first & 1
        for q in range(n):
            z[c0 + q] = zz[odd + q]


@jit
def _noise_range(grad, std, key, t, m, rows, p0, p1):
    T = grad.dtype.type
    kk, aa, r, zz = _chunk_scratch()
    # in the gradient's dtype: a float64 product here kept float32 gradients' loop 3x slower
    noise_scale = T(std / m)
    rescale = T(m / rows) if rows > 0.0 else T(1.0)
    for c0 in range(p0, p1, NOISE_CHUNK):
        n = min(NOISE_CHUNK, p1 - c0)
        _normals_chunk(key, t, grad.shape[0], c0, n, kk, aa, r, zz)
        g, z = grad[c0:c0 + n], zz[c0 & 1:(c0 & 1) + n]
        for q in range(n):
            # g_p = (sum_i clip(g_p(i)) + std z_p(t)) / rows, given grad_p = sum_i clip(g_p(i)) / m
            g[q] = (g[q] + noise_scale * T(z[q])) * rescale


@jit(parallel=True)
def _noise_blocks(grad, std, key, t, m, rows):
    P = grad.shape[0]
    for blk in prange((P + PARAM_BLOCK - 1) // PARAM_BLOCK):
        _noise_range(grad, std, key, t, m, rows, blk * PARAM_BLOCK, min(P, (blk + 1) * PARAM_BLOCK))


@jit
def _add_noise_into(grad, std, key, t, m, rows):
    """DP-SGD's noisy mean in place: ``grad <- (m grad + std z(t)) / rows`` with ``z(t)`` (P,) the
    deviates of step ``t``; ``rows`` is the expected batch size under Poisson sampling (0: m)."""
    if grad.shape[0] < SERIAL_PARAMS:
        _noise_range(grad, std, key, t, m, rows, FIRST, grad.shape[0])
    else:
        _noise_blocks(grad, std, key, t, m, rows)


@jit
def _dp_noise_into(grad, noise_row, hyper, t, m):
    """The noisy mean of DP-SGD's step ``t`` in place, given ``grad`` = the clipped sum / m (N2):
    ``grad <- (m grad + noise) / rows``. The noise is ``noise_row`` (P,) when one was drawn outside
    (the secure mode), else the counter-based deviates times ``hyper[H_NOISE_STD]`` (none when 0);
    ``rows`` is ``hyper[H_MEAN_ROWS]``, the expected batch size under Poisson sampling, or m when 0."""
    rows = hyper[H_MEAN_ROWS]
    if noise_row.shape[0] > 0:
        T = grad.dtype.type
        inv_m = T(1.0) / T(m)
        rescale = T(m / rows) if rows > 0.0 else T(1.0)
        for p in range(grad.shape[0]):
            grad[p] = (grad[p] + noise_row[p] * inv_m) * rescale
    elif hyper[H_NOISE_STD] > 0.0:
        _add_noise_into(grad, hyper[H_NOISE_STD], np.uint64(hyper[H_NOISE_KEY]), t, m, rows)
    elif rows > 0.0:
        _rescale_into(grad, grad.dtype.type(m / rows))


@jit
def _rescale_into(grad, c):
    for p in range(grad.shape[0]):
        grad[p] *= c


@jit
def _normals_into(key, t, out):
    _normals_range(key, t, out.shape[0], out, FIRST)


def gaussian_noise(key, t, n):
    """The standard normal deviates z_p(t), p = 0..n-1, that DP-SGD's step ``t`` adds (times its std)
    to N2's clipped sum over a block of ``n`` parameters: a pure function of (key, t, p).
    key, t integers in [0, 2^53); -> (n,) float64 (each a float32 value)."""
    key = _checks.integer("key", key, 0, 2 ** 53 - 1)
    t = _checks.integer("t", t, 0, 2 ** 53 - 1)
    out = np.empty(_checks.integer("n", n, 0), np.float64)
    _normals_into(np.uint64(key), t, out)
    return out

"""DP-SGD's Gaussian noise, drawn inside the compiled step by a counter-based generator.

The noise of parameter ``p`` at step ``t`` is a pure function of ``(key, t, p)``: no generator
state is carried from one draw to the next, so the noise is the same whichever thread draws
which parameters, on 1 or 2 threads, and a step can be redrawn alone.

* Uniform bits: word ``d`` of the draw with counter ``c = t P + p`` is SplitMix64's output
  function (Steele, Lea and Flood 2014) applied to ``key_d + c * GAMMA``; for ``d = 0`` this is
  exactly SplitMix64's ``c``-th output for the seed ``key_0``.
* Normal deviates: the ziggurat of Marsaglia and Tsang (2000) in Doornik's form (2005), 256
  layers. Each 64-bit word gives two draws, its low and high 32-bit halves: parameter ``p`` of a
  block of ``P`` takes half ``p mod 2`` of word ``d = 0`` of counter ``t ceil(P/2) + floor(p/2)``. A
  half's low 8 bits choose the layer and its high 24 bits a uniform in [-1, 1); about 98.5% of
  draws take this fast path, where the deviate is one product. The rest, the wedges and the tail,
  draw further uniforms (53 bits each) from the words ``d = 1, 2, ...`` of the parameter's own
  counter ``t P + p``: a wedge's height, a redrawn half-word, or the tail's two logarithms. So a
  deviate carries 24 random bits (float32's precision) unless it lies in the tail beyond R = 3.65.

These are not cryptographic draws: ``DPSGD(secure=True)`` draws from the operating system's
CSPRNG instead (in NumPy, slower; see ``loopgrad.optim``).
"""
import math

import numpy as np

from .. import _checks
from .._numba import FIRST, jit, prange
from .optim import PARAM_BLOCK, SERIAL_PARAMS  # the parameter block's one fixed partition into tasks
from ..tables import (GAMMA, H_MEAN_ROWS, H_NOISE_KEY, H_NOISE_STD, HALF_SIGNED_UNIT, TO_UNIT, ZIG_F, ZIG_FAST,
                      ZIG_BITS, ZIG_LAYERS, ZIG_R)

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11), np.uint64(32)
_D_STEP = np.uint64(0xD1B54A32D192ED03)
_LOW_HALF = np.uint64(0xFFFFFFFF)
_LAYER_BITS, _LAYER_MASK = np.uint32(ZIG_BITS), np.uint32(ZIG_LAYERS - 1)
# Deviates drawn per round of _normals_range: its scratch (12 KiB with the caller's) stays in L1.
NOISE_CHUNK = 1024


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


@jit
def _half_unit(h):
    # the fast path's uniform in [-1, 1): a half-word's high 24 bits as k 2^-23 - 1, exact in
    # float64 (its low 8 bits choose the layer)
    return float(np.int32(h >> _LAYER_BITS)) * HALF_SIGNED_UNIT - 1.0


@jit
def _slow_normal(key, c, h, zig_fast, zig_f):
    """The ~1.5% of draws outside the layers' rectangles: the wedge test or the tail, with the words
    d = 1, 2, ... of the parameter's counter ``c`` (``h`` is the half-word that chose the layer and
    failed the fast test)."""
    d = 0
    while True:
        u = _half_unit(h)
        i = int(h & _LAYER_MASK)
        if abs(u) < zig_fast[i, 1]:
            return u * zig_fast[i, 0]
        if i == 0:
            # the tail beyond R (Marsaglia 1964)
            while True:
                d += 1
                x = math.log(_unit(_word(key, c, d))) / ZIG_R
                d += 1
                y = math.log(_unit(_word(key, c, d)))
                if -2.0 * y >= x * x:
                    return x - ZIG_R if u < 0.0 else ZIG_R - x
        x = u * zig_fast[i, 0]
        d += 1
        # the wedge: a height uniform between the density at the layer's two edges, kept if it lies
        # under the density at x (one exp; the edges' densities are tabled)
        if zig_f[i + 1] + _unit(_word(key, c, d)) * (zig_f[i] - zig_f[i + 1]) < math.exp(-0.5 * x * x):
            return x
        d += 1
        h = np.uint32(_word(key, c, d) & _LOW_HALF)


@jit
def _normals_chunk(key, t, P, first, z, halves, zig_fast, zig_f):
    """z[q] = the deviate of parameter first + q at step t, for a block of P parameters (z at most
    NOISE_CHUNK long, so that it and ``halves`` stay in L1): the words, then the fast path for
    every draw (misses marked NaN, which no fast-path deviate is), then the misses by the slow path."""
    n = z.shape[0]
    odd = first & 1
    # SplitMix64: its state advances by GAMMA per counter; word 0 is the mixed state
    c = key + (np.uint64(t) * np.uint64((P + 1) // 2) + np.uint64(first >> 1)) * GAMMA
    for j in range((odd + n + 1) >> 1):
        w = _mix(c)
        c += GAMMA
        halves[2 * j] = np.uint32(w & _LOW_HALF)
        halves[2 * j + 1] = np.uint32(w >> _S32)
    h = halves[odd:odd + n]
    for q in range(n):
        u = _half_unit(h[q])
        i = h[q] & _LAYER_MASK
        # z = u x_i inside layer i's rectangle
        z[q] = u * zig_fast[i, 0] if abs(u) < zig_fast[i, 1] else np.nan
    for q in range(n):
        if z[q] != z[q]:
            z[q] = _slow_normal(key, np.uint64(t) * np.uint64(P) + np.uint64(first + q), h[q], zig_fast, zig_f)


@jit
def _normals_range(key, t, P, z, p0):
    """z[q] = the deviate of parameter p0 + q at step t, for a block of P parameters."""
    halves = np.empty(NOISE_CHUNK + 2, np.uint32)
    # the tables as ordinary arrays: indexing numba's frozen global constants measured ~1 ns slower a draw
    zig_fast, zig_f = ZIG_FAST.copy(), ZIG_F.copy()
    for c0 in range(0, z.shape[0], NOISE_CHUNK):
        _normals_chunk(key, t, P, p0 + c0, z[c0:min(c0 + NOISE_CHUNK, z.shape[0])], halves, zig_fast, zig_f)


@jit
def _noise_range(grad, std, key, t, m, rows, p0, p1):
    T = grad.dtype.type
    # scratch for one chunk (12 KiB with the tables), not for the whole range: small enough that
    # malloc serves it from its free lists without touching fresh pages each step
    z = np.empty(NOISE_CHUNK, np.float64)
    halves = np.empty(NOISE_CHUNK + 2, np.uint32)
    zig_fast, zig_f = ZIG_FAST.copy(), ZIG_F.copy()
    noise_scale = std / m
    rescale = T(m / rows) if rows > 0.0 else T(1.0)
    for c0 in range(p0, p1, NOISE_CHUNK):
        n = min(NOISE_CHUNK, p1 - c0)
        zc, g = z[:n], grad[c0:c0 + n]
        _normals_chunk(key, t, grad.shape[0], c0, zc, halves, zig_fast, zig_f)
        for q in range(n):
            # g_p = (sum_i clip(g_p(i)) + std z_p(t)) / rows, given grad_p = sum_i clip(g_p(i)) / m
            g[q] = (g[q] + T(noise_scale * zc[q])) * rescale


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
    key, t integers in [0, 2^53); -> (n,) float64."""
    key = _checks.integer("key", key, 0, 2 ** 53 - 1)
    t = _checks.integer("t", t, 0, 2 ** 53 - 1)
    out = np.empty(_checks.integer("n", n, 0), np.float64)
    _normals_into(np.uint64(key), t, out)
    return out

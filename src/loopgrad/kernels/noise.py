"""DP-SGD's Gaussian noise, drawn inside the compiled step by a counter-based generator.

The noise of parameter ``p`` at step ``t`` is a pure function of ``(key, t, p)``: no generator
state is carried from one draw to the next, so the noise is the same whichever thread draws
which parameters, on 1 or 2 threads, and a step can be redrawn alone.

* Uniform bits: word ``d`` of the draw with counter ``c = t P + p`` is SplitMix64's output
  function (Steele, Lea and Flood 2014) applied to ``key_d + c * GAMMA``; for ``d = 0`` this is
  exactly SplitMix64's ``c``-th output for the seed ``key_0``.
* Normal deviates: the ziggurat of Marsaglia and Tsang (2000) in Doornik's form (2005), 128
  layers. About 98.8% of draws take the fast path: one word gives the layer (its low 7 bits) and
  a uniform in (-1, 1) (its high 53 bits), and the deviate is a product. The rest use further
  words ``d = 1, 2, ...`` of the same counter.

These are not cryptographic draws: ``DPSGD(secure=True)`` draws from the operating system's
CSPRNG instead (in NumPy, slower; see ``loopgrad.optim``).
"""
import math

import numpy as np

from .. import _checks
from .._numba import FIRST, jit, prange
from .optim import PARAM_BLOCK, SERIAL_PARAMS  # the parameter block's one fixed partition into tasks
from ..tables import GAMMA, H_MEAN_ROWS, H_NOISE_KEY, H_NOISE_STD, SIGNED_UNIT, TO_UNIT, ZIG_R, ZIG_RATIO, ZIG_X

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11, _S12 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11), np.uint64(12)
_D_STEP = np.uint64(0xD1B54A32D192ED03)
_LAYER_MASK = np.uint64(127)
# Deviates drawn per round of _normals_range: its three scratch rows (24 KiB) stay in L1.
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
def _signed_unit(w):
    # the fast path's uniform in [-1, 1): the high 52 bits as k 2^-51 - 1 (the low 7 bits choose the layer)
    return float(np.int64(w >> _S12)) * SIGNED_UNIT - 1.0


@jit
def _slow_normal(key, c, w):
    """The 1.2% of draws outside the layers' rectangles: the wedge test or the tail, with the words
    d = 1, 2, ... of counter ``c`` (``w`` is word 0, which chose the layer and failed the fast test)."""
    d = 0
    while True:
        u = _signed_unit(w)
        i = int(w & _LAYER_MASK)
        if abs(u) < ZIG_RATIO[i]:
            return u * ZIG_X[i]
        if i == 0:
            # the tail beyond R (Marsaglia 1964)
            while True:
                d += 1
                x = math.log(_unit(_word(key, c, d))) / ZIG_R
                d += 1
                y = math.log(_unit(_word(key, c, d)))
                if -2.0 * y >= x * x:
                    return x - ZIG_R if u < 0.0 else ZIG_R - x
        x = u * ZIG_X[i]
        f0 = math.exp(-0.5 * (ZIG_X[i] * ZIG_X[i] - x * x))
        f1 = math.exp(-0.5 * (ZIG_X[i + 1] * ZIG_X[i + 1] - x * x))
        d += 1
        if f1 + _unit(_word(key, c, d)) * (f0 - f1) < 1.0:
            return x
        d += 1
        w = _word(key, c, d)


@jit
def _normals_range(key, base, z, p0):
    """z[q] = the deviate of counter base + p0 + q, in chunks that stay in L1: word 0 of every
    counter and the fast path for all (one product; the misses noted), then the ~1.2% of misses by
    the slow path."""
    miss = np.empty(NOISE_CHUNK, np.int64)
    # the tables as ordinary arrays: indexing numba's frozen global constants measured ~1 ns slower a draw
    zig_x, zig_ratio = ZIG_X.copy(), ZIG_RATIO.copy()
    for c0 in range(0, z.shape[0], NOISE_CHUNK):
        n = min(NOISE_CHUNK, z.shape[0] - c0)
        zc = z[c0:c0 + n]
        c = key + (base + np.uint64(p0 + c0)) * GAMMA
        n_miss = 0
        for q in range(n):
            # SplitMix64: its state advances by GAMMA per counter; word 0 is the mixed state
            w = _mix(c)
            c += GAMMA
            u = _signed_unit(w)
            i = w & _LAYER_MASK
            zc[q] = u * zig_x[i]
            # branch-free bookkeeping: the slot is overwritten unless the point lies outside the rectangle
            miss[n_miss] = q
            n_miss += 0 if abs(u) < zig_ratio[i] else 1
        for k in range(n_miss):
            q = miss[k]
            counter = base + np.uint64(p0 + c0 + q)
            zc[q] = _slow_normal(key, counter, _mix(key + counter * GAMMA))


@jit
def _noise_range(grad, std, key, t, m, rows, p0, p1):
    T = grad.dtype.type
    base = np.uint64(t) * np.uint64(grad.shape[0])
    z = np.empty(p1 - p0, np.float64)
    _normals_range(key, base, z, p0)
    noise_scale = std / m
    rescale = T(m / rows) if rows > 0.0 else T(1.0)
    g = grad[p0:p1]
    for q in range(p1 - p0):
        # g_p = (sum_i clip(g_p(i)) + std z_p(t)) / rows, given grad_p = sum_i clip(g_p(i)) / m
        g[q] = (g[q] + T(noise_scale * z[q])) * rescale


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
    _normals_range(key, np.uint64(t) * np.uint64(out.shape[0]), out, FIRST)


def gaussian_noise(key, t, n):
    """The standard normal deviates z_p(t), p = 0..n-1, that DP-SGD's step ``t`` adds (times its std)
    to N2's clipped sum over a block of ``n`` parameters: a pure function of (key, t, p).
    key, t integers in [0, 2^53); -> (n,) float64."""
    key = _checks.integer("key", key, 0, 2 ** 53 - 1)
    t = _checks.integer("t", t, 0, 2 ** 53 - 1)
    out = np.empty(_checks.integer("n", n, 0), np.float64)
    _normals_into(np.uint64(key), t, out)
    return out

"""Activations as index loops: F2, F3 forward; B5, B7 backward.

Each layer's activation is applied to a block of rows (examples) i0 <= i < i1, because a
block of rows is what one task owns: element-wise functions and the row-wise softmax
then share one code path, and the dense kernels can fuse them into their
stores (see ``dense._dense_act_forward_into``).
"""
import math

import numpy as np

from .. import _checks, _company
from .._numba import jit, pow2, prange, refuse_in_forked_child, rows_flat
from ._gemm import ROW_BLOCK
from ..tables import (
    EXP, EXP_MAX, GELU, IDENTITY, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID, SOFTMAX, SOFTPLUS, TANH, activation_code,
)

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)

# Without SVML, math.tanh and math.log1p are scalar library calls (about 10-13 ns each here,
# against 1-2 ns for math.exp and 0.2 ns for NumPy's SIMD tanh). tanh and softplus are
# therefore written with exp and polynomials, which LLVM vectorises around the exp calls.
# tanh: Taylor series for |z| < 0.3 (x^2 <= 0.09, twelve terms leave < 1e-17 relative), else
# (1 - e) / (1 + e) with e = exp(-2|z|) <= 0.55, where no cancellation happens.
# Coefficients 2^2n (2^2n - 1) B_2n / (2n)! of z^(2n-1), n = 2..12.
_TANH_SMALL = 0.3
_TANH_C = (-1.0 / 3.0, 2.0 / 15.0, -17.0 / 315.0, 62.0 / 2835.0, -1382.0 / 155925.0, 21844.0 / 6081075.0,
           -929569.0 / 638512875.0, 6404582.0 / 10854718875.0, -443861162.0 / 1856156927625.0,
           18888466084.0 / 194896477400625.0, -113927491862.0 / 2900518163668125.0)
# log1p(e) for e = exp(-|z|) in (0, 1]: 2 atanh(s) with s = e / (2 + e) <= 1/3, as the odd
# series 2 s sum_k s^2k / (2k + 1); seventeen terms leave < 1e-16 relative.
_LOG1P_TERMS = 17


# One call covers a block of rows, with the code's branch outside the row loop: a call per row cost
# 30-60 ns here (a large function's prologue, and NRT's atomic incref/decref of each row view), which
# was 2.4 of the 22.6 us step of 64-64-10 at batch 32 for ReLU alone (AVX-512 Xeon).
@jit
def _act_rows_forward(code, Z, A, i0, i1):
    """F2/F3 on rows i0 <= i < i1: ``A[i,j] = g(Z[i,j])``, or each row's softmax (F3)."""
    n = Z.shape[1]
    zero = Z.dtype.type(0.0)
    one = Z.dtype.type(1.0)
    if code == IDENTITY:
        for i in range(i0, i1):
            z, a = Z[i], A[i]
            for j in range(n):
                a[j] = z[j]
    elif code == RELU:
        for i in range(i0, i1):
            z, a = Z[i], A[i]
            for j in range(n):
                # written so that a NaN passes through, as np.maximum lets it
                a[j] = zero if z[j] <= zero else z[j]
    elif code == LEAKY_RELU:
        slope = Z.dtype.type(LEAKY_SLOPE)
        for i in range(i0, i1):
            z, a = Z[i], A[i]
            for j in range(n):
                a[j] = slope * z[j] if z[j] <= zero else z[j]
    elif code == SIGMOID:
        for i in range(i0, i1):
            z, a = Z[i], A[i]
            for j in range(n):
                # exp of a non-positive argument only: no overflow for large |z|
                e = math.exp(-abs(z[j]))
                a[j] = one / (one + e) if z[j] >= zero else e / (one + e)
    elif code == TANH:
        for i in range(i0, i1):
            _tanh_row(Z[i], A[i])
    elif code == SOFTPLUS:
        two = Z.dtype.type(2.0)
        for i in range(i0, i1):
            z, a = Z[i], A[i]
            for j in range(n):
                # log(1 + e^z) = max(z, 0) + log1p(e^-|z|)
                e = math.exp(-abs(z[j]))
                a[j] = max(z[j], zero) + _log1p_unit(e / (two + e))
    elif code == GELU:
        half = Z.dtype.type(0.5)
        c = Z.dtype.type(_INV_SQRT2)
        for i in range(i0, i1):
            z, a = Z[i], A[i]
            for j in range(n):
                a[j] = half * z[j] * (one + math.erf(z[j] * c))
    elif code == EXP:
        top = Z.dtype.type(EXP_MAX)
        for i in range(i0, i1):
            z, a = Z[i], A[i]
            for j in range(n):
                a[j] = math.exp(min(z[j], top))
    elif code == SOFTMAX:
        for i in range(i0, i1):
            z, a = Z[i], A[i]
            # F3: subtracting the row max M_i keeps every exp in (0, 1]
            mx = z[0]
            for j in range(1, n):
                mx = max(mx, z[j])
            for j in range(n):
                a[j] = z[j] - mx
        # the exponentials of the whole block in one loop, vectorised across rows (a classifier's row of
        # 10 is shorter than one vector of 16, and its own loop would run as scalars)
        flat = rows_flat(A, i0, i1)
        if flat.shape[0] == (i1 - i0) * n:
            _exp_nonpositive(flat)
        else:
            for i in range(i0, i1):
                _exp_nonpositive(A[i])
        for i in range(i0, i1):
            a = A[i]
            s = zero
            for j in range(n):
                s += a[j]
            inv = one / s  # one division per row, n multiplications
            for j in range(n):
                a[j] = a[j] * inv


# F3's exponentials without a library call per element, which LLVM cannot vectorise (math.exp cost
# 1.8 of the 14.5 us compiled step of 64-64-10 at batch 32 on the AVX-512 Xeon, in the softmax of 32
# rows of 10). e^x = 2^k e^r with k = round(x / ln 2) and r = x - k ln 2 in [-ln2/2, ln2/2], ln 2 in
# two parts (Cody and Waite: k times the short high part is exact); e^r by its Taylor polynomial (degree
# 7 for float32, 13 for float64: a remainder below half an ulp); 2^k from the exponent bits
# (``_numba.pow2``).
@jit(exact=True)
def _exp_nonpositive(x):
    """x[p] = e^x[p] in place, for x <= 0 (F3's Z[i,j] - M_i): within 2 ulp of e^x; below the log of the
    smallest normal number, 0; a NaN stays NaN. Exact (no fastmath flags): reassociation would undo both
    the rounding trick and ln 2's split."""
    T = x.dtype.type
    if x.itemsize == 4:
        # low: ln of the smallest normal number; rounder: adding and subtracting 1.5 2^23 rounds a float32
        # of magnitude below 2^22 to a whole number
        low, rounder, hi, lo = T(-87.336544), T(1.5 * 2.0 ** 23), T(0.693359375), T(-2.12194440e-4)
    else:
        low, rounder, hi, lo = T(-708.39641853226), T(1.5 * 2.0 ** 52), T(6.93147180369123816490e-01), T(
            1.90821492927058770002e-10)
    log2e, one, zero = T(1.0 / math.log(2.0)), T(1.0), T(0.0)
    c2, c3, c4, c5, c6, c7 = T(1 / 2), T(1 / 3), T(1 / 4), T(1 / 5), T(1 / 6), T(1 / 7)
    c8, c9, c10, c11, c12, c13 = T(1 / 8), T(1 / 9), T(1 / 10), T(1 / 11), T(1 / 12), T(1 / 13)
    for p in range(x.shape[0]):
        v = x[p]
        vc = low if v < low else v  # a NaN passes
        k = (vc * log2e + rounder) - rounder
        r = (vc - k * hi) - k * lo
        # e^r = 1 + r (1 + r/2 (1 + r/3 (...))), from the inside out: from r/13 in float64, r/7 in float32
        # (the branch is on the type, so it folds away and the loop stays one body that LLVM vectorises)
        e = one
        if x.itemsize == 8:
            e = e * (r * c13) + one
            e = e * (r * c12) + one
            e = e * (r * c11) + one
            e = e * (r * c10) + one
            e = e * (r * c9) + one
            e = e * (r * c8) + one
        e = e * (r * c7) + one
        e = e * (r * c6) + one
        e = e * (r * c5) + one
        e = e * (r * c4) + one
        e = e * (r * c3) + one
        e = e * (r * c2) + one
        e = e * r + one
        x[p] = zero if v < low else e * pow2(k)


@jit
def _tanh_row(z, a):
    T = z.dtype.type
    c3, c5, c7, c9, c11, c13 = T(_TANH_C[0]), T(_TANH_C[1]), T(_TANH_C[2]), T(_TANH_C[3]), T(_TANH_C[4]), T(_TANH_C[5])
    c15, c17, c19, c21, c23 = T(_TANH_C[6]), T(_TANH_C[7]), T(_TANH_C[8]), T(_TANH_C[9]), T(_TANH_C[10])
    one, two, small = T(1.0), T(2.0), T(_TANH_SMALL)
    for j in range(z.shape[0]):
        x = z[j]
        # the series is taken for every x (no branch, so the loop vectorises) and kept only where |x| < small;
        # clamped there, it cannot overflow (the same numbers where it is kept; no overflow warning with the
        # JIT off)
        xs = min(max(x, -small), small)
        x2 = xs * xs
        p = c23 * x2 + c21
        p = p * x2 + c19
        p = p * x2 + c17
        p = p * x2 + c15
        p = p * x2 + c13
        p = p * x2 + c11
        p = p * x2 + c9
        p = p * x2 + c7
        p = p * x2 + c5
        p = p * x2 + c3
        series = xs + xs * (x2 * p)
        e = math.exp(-two * abs(x))
        t = (one - e) / (one + e)
        a[j] = series if abs(x) < small else (t if x >= 0 else -t)


@jit
def _log1p_unit(s):
    """log1p(e) from s = e / (2 + e), 0 < s <= 1/3: 2 atanh(s) = 2 s sum_k s^2k / (2k + 1)."""
    T = type(s)
    s2 = s * s
    acc = T(1.0) / T(2 * _LOG1P_TERMS - 1)
    for k in range(_LOG1P_TERMS - 2, -1, -1):
        acc = acc * s2 + T(1.0) / T(2 * k + 1)
    return T(2.0) * s * acc


@jit
def _act_rows_backward(code, dZ, Z, A, i0, i1):
    """B5/B7 on rows i0 <= i < i1, in place: ``dZ`` holds dA on entry and dZ on exit."""
    n = Z.shape[1]
    zero = Z.dtype.type(0.0)
    one = Z.dtype.type(1.0)
    if code == RELU:
        for i in range(i0, i1):
            d, z = dZ[i], Z[i]
            for j in range(n):
                # dZ[i,p] = dA[i,p] * g'(Z[i,p]); the sum over r collapsed on delta(r, p)
                d[j] = d[j] if z[j] > zero else zero
    elif code == LEAKY_RELU:
        slope = Z.dtype.type(LEAKY_SLOPE)
        for i in range(i0, i1):
            d, z = dZ[i], Z[i]
            for j in range(n):
                d[j] = d[j] if z[j] > zero else slope * d[j]
    elif code == SIGMOID:
        for i in range(i0, i1):
            d, a = dZ[i], A[i]
            for j in range(n):
                d[j] = d[j] * a[j] * (one - a[j])
    elif code == EXP:
        for i in range(i0, i1):
            d, a = dZ[i], A[i]
            for j in range(n):
                # g'(z) = exp(z) = a
                d[j] = d[j] * a[j]
    elif code == TANH:
        for i in range(i0, i1):
            d, a = dZ[i], A[i]
            for j in range(n):
                d[j] = d[j] * (one - a[j] * a[j])
    elif code == SOFTPLUS:
        for i in range(i0, i1):
            d, z = dZ[i], Z[i]
            for j in range(n):
                # g'(z) = sigmoid(z), in the overflow-free form
                e = math.exp(-abs(z[j]))
                d[j] = d[j] * (one / (one + e) if z[j] >= zero else e / (one + e))
    elif code == GELU:
        half = Z.dtype.type(0.5)
        c = Z.dtype.type(_INV_SQRT2)
        cpdf = Z.dtype.type(_INV_SQRT2PI)
        for i in range(i0, i1):
            d, z = dZ[i], Z[i]
            for j in range(n):
                # g'(z) = Phi(z) + z * phi(z)
                cdf = half * (one + math.erf(z[j] * c))
                pdf = cpdf * math.exp(-half * z[j] * z[j])
                d[j] = d[j] * (cdf + z[j] * pdf)
    elif code == SOFTMAX:
        for i in range(i0, i1):
            d, a = dZ[i], A[i]
            # B7: the Jacobian A_j (delta(j,k) - A_k) is not diagonal; s is taken before d is overwritten
            s = zero
            for j in range(n):
                s += d[j] * a[j]
            for k in range(n):
                d[k] = a[k] * (d[k] - s)


@jit(parallel=True)
def _activation_forward_into(code, Z, A):
    m = Z.shape[0]
    for blk in prange((m + ROW_BLOCK - 1) // ROW_BLOCK):
        _act_rows_forward(code, Z, A, blk * ROW_BLOCK, min(m, (blk + 1) * ROW_BLOCK))


@jit(parallel=True)
def _activation_backward_into(code, dA, Z, A, dZ):
    m = Z.shape[0]
    for blk in prange((m + ROW_BLOCK - 1) // ROW_BLOCK):
        i0, i1 = blk * ROW_BLOCK, min(m, (blk + 1) * ROW_BLOCK)
        for i in range(i0, i1):
            d, g = dZ[i], dA[i]
            for j in range(d.shape[0]):
                d[j] = g[j]
        _act_rows_backward(code, dZ, Z, A, i0, i1)


@refuse_in_forked_child
@_company.shares_cores(lambda name, Z: np.size(Z))
def activation_forward(name, Z):
    """F2 ``A[i,j] = g(Z[i,j])``; F3 for softmax ``A[i,j] = exp(Z[i,j]-M_i) / sum_k exp(Z[i,k]-M_i)``.

    Z (m, n) -> A (m, n), same dtype.

    Textbook loop: ``kernels/textbook.py`` ``activation_forward`` (the literal loop nest of the same sum).
    """
    code = activation_code(name)
    Z = _checks.float_array("Z", Z, 2)
    A = np.empty_like(Z)
    _activation_forward_into(code, Z, A)
    return A


@refuse_in_forked_child
@_company.shares_cores(lambda name, dA, Z, A: np.size(Z))
def activation_backward(name, dA, Z, A):
    """B5 ``dZ[i,p] = dA[i,p] * g'(Z[i,p])``; B7 for softmax ``dZ[i,k] = A[i,k] (dA[i,k] - sum_j dA[i,j] A[i,j])``.

    dA, Z, A (m, n) -> dZ (m, n). ``A = g(Z)`` is passed so that sigmoid, tanh
    and softmax reuse the forward's values.

    Textbook loop: ``kernels/textbook.py`` ``activation_backward`` (the literal loop nest of the same sum).
    """
    code = activation_code(name)
    dA, Z, A = _checks.activation_pair(dA, Z, A)
    dZ = np.empty_like(Z)
    _activation_backward_into(code, dA, Z, A, dZ)
    return dZ

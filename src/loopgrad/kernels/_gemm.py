"""The tuned matrix products behind F1, B2 and B4, kept apart from the equations.

``kernels/dense.py`` writes each equation as its own loop and calls these for the sum over k.
Each tuned form has its naive form beside it (as llm.c keeps ``matmul_forward_naive`` beside
``matmul_forward``): the same sum as the literal loop nest, which the tests hold the tuned form
against over many shapes.

How the tuned forms get their speed (measured on the 2-core AVX-512 machine; see the README):
- "axpy" form (``nn_rows``): the innermost loop runs along a row of B and of C, four rows of C
  take four rows of B at a time, so each load of B feeds 16 multiply-adds.
- "dot" form (``nt_rows``): both operands contiguous along k, a 4 x 4 block of outputs in 16
  scalar accumulators that LLVM keeps in vector registers (fastmath reassociation splits each
  sum across SIMD lanes).
- Row blocks of ``ROW_BLOCK`` at fixed boundaries, so each output is summed by one thread in one
  order: the same bits on 1 or 2 threads.
"""
from .._numba import jit, prange

# Rows of an output that one parallel task owns. Fixed, so each output element is summed by one
# thread in one order whatever the number of threads: the same bits on 1 or 2 threads.
ROW_BLOCK = 16
# Below this many multiply-adds a product runs serially: waking the thread pool costs more.
SERIAL_WORK = 1 << 18


@jit
def nn_rows(X, B, C, i0, i1):
    """C[i,:] = sum_k X[i,k] * B[k,:] for rows i0 <= i < i1 (overwrites C's rows): the product of F1 and B2.

    The "axpy" form: the innermost loop runs along a row of B and of C (contiguous), and four
    rows of C take four rows of B at a time, so each load of B feeds 16 multiply-adds.
    X may be any layout (it is read one scalar at a time): A_prev for F1, A_prev.T for B2.
    """
    K = X.shape[1]
    N = B.shape[1]
    zero = C.dtype.type(0.0)
    i = i0
    while i + 4 <= i1:
        c0 = C[i]
        c1 = C[i + 1]
        c2 = C[i + 2]
        c3 = C[i + 3]
        for j in range(N):
            c0[j] = zero
            c1[j] = zero
            c2[j] = zero
            c3[j] = zero
        k = 0
        while k + 4 <= K:
            b0 = B[k]
            b1 = B[k + 1]
            b2 = B[k + 2]
            b3 = B[k + 3]
            x00, x01, x02, x03 = X[i, k], X[i, k + 1], X[i, k + 2], X[i, k + 3]
            x10, x11, x12, x13 = X[i + 1, k], X[i + 1, k + 1], X[i + 1, k + 2], X[i + 1, k + 3]
            x20, x21, x22, x23 = X[i + 2, k], X[i + 2, k + 1], X[i + 2, k + 2], X[i + 2, k + 3]
            x30, x31, x32, x33 = X[i + 3, k], X[i + 3, k + 1], X[i + 3, k + 2], X[i + 3, k + 3]
            # C[i+r,j] += sum_{q<4} X[i+r,k+q] * B[k+q,j]
            for j in range(N):
                y0 = b0[j]
                y1 = b1[j]
                y2 = b2[j]
                y3 = b3[j]
                c0[j] += x00 * y0 + x01 * y1 + x02 * y2 + x03 * y3
                c1[j] += x10 * y0 + x11 * y1 + x12 * y2 + x13 * y3
                c2[j] += x20 * y0 + x21 * y1 + x22 * y2 + x23 * y3
                c3[j] += x30 * y0 + x31 * y1 + x32 * y2 + x33 * y3
            k += 4
        while k < K:
            b0 = B[k]
            x0, x1, x2, x3 = X[i, k], X[i + 1, k], X[i + 2, k], X[i + 3, k]
            for j in range(N):
                y = b0[j]
                c0[j] += x0 * y
                c1[j] += x1 * y
                c2[j] += x2 * y
                c3[j] += x3 * y
            k += 1
        i += 4
    while i < i1:
        c = C[i]
        for j in range(N):
            c[j] = zero
        for k in range(K):
            x = X[i, k]
            b = B[k]
            # C[i,j] += X[i,k] * B[k,j]
            for j in range(N):
                c[j] += x * b[j]
        i += 1


@jit
def nt_rows_4x4(X, Y, C, i0, i1, acc):
    """C[i,j] = sum_k X[i,k] * Y[j,k] for rows i0 <= i < i1 (overwrites C's rows, or adds to
    them when ``acc``): the product of B4, and of F1 and B2 on transposed operands. For CPUs with
    32 vector registers (AVX-512); ``nt_rows`` names this or ``nt_rows_4x3``.

    The "dot" form: both operands are contiguous along the summed index k, and a 4 x 4 block of
    outputs is kept in 16 scalar accumulators, which LLVM turns into vector registers (fastmath
    reassociation lets it split each sum across SIMD lanes). Columns of C are the outer loop so
    that Y streams through the cache once per task while the task's rows of X stay in L2.
    """
    K = X.shape[1]
    N = Y.shape[0]
    zero = C.dtype.type(0.0)
    i4 = i0 + (i1 - i0) // 4 * 4
    j = 0
    while j + 4 <= N:
        b0 = Y[j]
        b1 = Y[j + 1]
        b2 = Y[j + 2]
        b3 = Y[j + 3]
        for i in range(i0, i4, 4):
            a0 = X[i]
            a1 = X[i + 1]
            a2 = X[i + 2]
            a3 = X[i + 3]
            c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = zero
            c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = zero
            # C[i+r,j+s] = sum_k X[i+r,k] * Y[j+s,k]
            for k in range(K):
                x0 = a0[k]
                x1 = a1[k]
                x2 = a2[k]
                x3 = a3[k]
                y0 = b0[k]
                y1 = b1[k]
                y2 = b2[k]
                y3 = b3[k]
                c00 += x0 * y0
                c01 += x0 * y1
                c02 += x0 * y2
                c03 += x0 * y3
                c10 += x1 * y0
                c11 += x1 * y1
                c12 += x1 * y2
                c13 += x1 * y3
                c20 += x2 * y0
                c21 += x2 * y1
                c22 += x2 * y2
                c23 += x2 * y3
                c30 += x3 * y0
                c31 += x3 * y1
                c32 += x3 * y2
                c33 += x3 * y3
            if acc:
                c00 += C[i, j]
                c01 += C[i, j + 1]
                c02 += C[i, j + 2]
                c03 += C[i, j + 3]
                c10 += C[i + 1, j]
                c11 += C[i + 1, j + 1]
                c12 += C[i + 1, j + 2]
                c13 += C[i + 1, j + 3]
                c20 += C[i + 2, j]
                c21 += C[i + 2, j + 1]
                c22 += C[i + 2, j + 2]
                c23 += C[i + 2, j + 3]
                c30 += C[i + 3, j]
                c31 += C[i + 3, j + 1]
                c32 += C[i + 3, j + 2]
                c33 += C[i + 3, j + 3]
            C[i, j], C[i, j + 1], C[i, j + 2], C[i, j + 3] = c00, c01, c02, c03
            C[i + 1, j], C[i + 1, j + 1], C[i + 1, j + 2], C[i + 1, j + 3] = c10, c11, c12, c13
            C[i + 2, j], C[i + 2, j + 1], C[i + 2, j + 2], C[i + 2, j + 3] = c20, c21, c22, c23
            C[i + 3, j], C[i + 3, j + 1], C[i + 3, j + 2], C[i + 3, j + 3] = c30, c31, c32, c33
        for i in range(i4, i1):
            a0 = X[i]
            c0 = c1 = c2 = c3 = zero
            for k in range(K):
                x = a0[k]
                c0 += x * b0[k]
                c1 += x * b1[k]
                c2 += x * b2[k]
                c3 += x * b3[k]
            if acc:
                c0 += C[i, j]
                c1 += C[i, j + 1]
                c2 += C[i, j + 2]
                c3 += C[i, j + 3]
            C[i, j], C[i, j + 1], C[i, j + 2], C[i, j + 3] = c0, c1, c2, c3
        j += 4
    while j < N:
        b0 = Y[j]
        for i in range(i0, i1):
            a0 = X[i]
            c = zero
            # C[i,j] = sum_k X[i,k] * Y[j,k]
            for k in range(K):
                c += a0[k] * b0[k]
            C[i, j] = C[i, j] + c if acc else c
        j += 1


@jit
def nt_rows_4x3(X, Y, C, i0, i1, acc):
    """``nt_rows_4x4`` (B4; F1 and B2 on transposed operands) with a 4 x 3 block, for CPUs with 16
    vector registers (AVX2): 12 accumulators
    and 7 operands stay in registers where 16 + 8 would spill. On a 2-core AVX2 EPYC, one thread:
    52-54 GFLOP/s at 256x784x256 and 1024^3 against 35-37 for the 4 x 4 block (OpenBLAS: 68-70)."""
    K = X.shape[1]
    N = Y.shape[0]
    zero = C.dtype.type(0.0)
    i4 = i0 + (i1 - i0) // 4 * 4
    j = 0
    while j + 3 <= N:
        b0 = Y[j]
        b1 = Y[j + 1]
        b2 = Y[j + 2]
        for i in range(i0, i4, 4):
            a0 = X[i]
            a1 = X[i + 1]
            a2 = X[i + 2]
            a3 = X[i + 3]
            c00 = c01 = c02 = c10 = c11 = c12 = zero
            c20 = c21 = c22 = c30 = c31 = c32 = zero
            # C[i+r,j+s] = sum_k X[i+r,k] * Y[j+s,k]
            for k in range(K):
                x0 = a0[k]
                x1 = a1[k]
                x2 = a2[k]
                x3 = a3[k]
                y0 = b0[k]
                y1 = b1[k]
                y2 = b2[k]
                c00 += x0 * y0
                c01 += x0 * y1
                c02 += x0 * y2
                c10 += x1 * y0
                c11 += x1 * y1
                c12 += x1 * y2
                c20 += x2 * y0
                c21 += x2 * y1
                c22 += x2 * y2
                c30 += x3 * y0
                c31 += x3 * y1
                c32 += x3 * y2
            if acc:
                c00 += C[i, j]
                c01 += C[i, j + 1]
                c02 += C[i, j + 2]
                c10 += C[i + 1, j]
                c11 += C[i + 1, j + 1]
                c12 += C[i + 1, j + 2]
                c20 += C[i + 2, j]
                c21 += C[i + 2, j + 1]
                c22 += C[i + 2, j + 2]
                c30 += C[i + 3, j]
                c31 += C[i + 3, j + 1]
                c32 += C[i + 3, j + 2]
            C[i, j], C[i, j + 1], C[i, j + 2] = c00, c01, c02
            C[i + 1, j], C[i + 1, j + 1], C[i + 1, j + 2] = c10, c11, c12
            C[i + 2, j], C[i + 2, j + 1], C[i + 2, j + 2] = c20, c21, c22
            C[i + 3, j], C[i + 3, j + 1], C[i + 3, j + 2] = c30, c31, c32
        for i in range(i4, i1):
            a0 = X[i]
            c0 = c1 = c2 = zero
            for k in range(K):
                x = a0[k]
                c0 += x * b0[k]
                c1 += x * b1[k]
                c2 += x * b2[k]
            if acc:
                c0 += C[i, j]
                c1 += C[i, j + 1]
                c2 += C[i, j + 2]
            C[i, j], C[i, j + 1], C[i, j + 2] = c0, c1, c2
        j += 3
    while j < N:
        b0 = Y[j]
        for i in range(i0, i1):
            a0 = X[i]
            c = zero
            # C[i,j] = sum_k X[i,k] * Y[j,k]
            for k in range(K):
                c += a0[k] * b0[k]
            C[i, j] = C[i, j] + c if acc else c
        j += 1


def _wide_vector_registers():
    """Whether numba compiles for a CPU with AVX-512 (32 vector registers): the target numba was
    told (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES) or else the host. Unknown: assume it has them."""
    try:
        from numba import config
        from llvmlite import binding

        if config.CPU_FEATURES:
            return "+avx512f" in config.CPU_FEATURES
        return bool(binding.get_host_cpu_features().get("avx512f", False))
    except Exception:  # noqa: BLE001 - the 4 x 4 block is correct everywhere, only slower on AVX2
        return True


# The dot form that F1, B2 and B4 call, chosen once at import for the CPU numba compiles for
# (numba's disk cache is per CPU too, so a cached kernel always matches this choice).
nt_rows = nt_rows_4x4 if _wide_vector_registers() else nt_rows_4x3


@jit
def _transpose_rows(X, XT, r0, j0, j1):
    m = XT.shape[1]
    i = 0
    while i < m:
        i1 = min(i + 16, m)
        for j in range(j0, j1):
            t = XT[j]
            for ii in range(i, i1):
                t[ii] = X[r0 + ii, j]
        i = i1


@jit(parallel=True)
def transpose_into(X, XT, r0):
    """XT = X[r0:r0 + XT.shape[1]].T (the operands of F1's and B2's dot forms) in 16 x 16 tiles; each task owns a block of rows of XT."""
    n = X.shape[1]
    for blk in prange((n + ROW_BLOCK - 1) // ROW_BLOCK):
        _transpose_rows(X, XT, r0, blk * ROW_BLOCK, min(n, (blk + 1) * ROW_BLOCK))


@jit
def nn_rows_naive(X, B, C, i0, i1):
    """The naive form of ``nn_rows`` (F1, B2): C[i,j] = sum_k X[i,k] * B[k,j], three plain loops."""
    for i in range(i0, i1):
        for j in range(B.shape[1]):
            s = C.dtype.type(0.0)
            # C[i,j] = sum_k X[i,k] * B[k,j]
            for k in range(X.shape[1]):
                s += X[i, k] * B[k, j]
            C[i, j] = s


@jit
def nt_rows_naive(X, Y, C, i0, i1, acc):
    """The naive form of ``nt_rows_4x4`` and ``nt_rows_4x3`` (B4): C[i,j] (+)= sum_k X[i,k] * Y[j,k], three plain loops."""
    for i in range(i0, i1):
        for j in range(Y.shape[0]):
            s = C.dtype.type(0.0)
            # C[i,j] = sum_k X[i,k] * Y[j,k]
            for k in range(X.shape[1]):
                s += X[i, k] * Y[j, k]
            C[i, j] = C[i, j] + s if acc else s

"""The tuned matrix products behind F1, B2 and B4, kept apart from the equations.

``kernels/dense.py`` writes each equation as its own loop and calls these for the sum over k.
Each tuned form has its naive form beside it (as llm.c keeps ``matmul_forward_naive`` beside
``matmul_forward``): the same sum as the literal loop nest, which the tests hold the tuned form
against over many shapes.

How the tuned forms get their speed (see the README for the figures):
- "outer-product" form (``nn_rows``, F1 and B2): a block of up to BLOCK_ROWS rows by two vectors of C
  (6 by two 256-bit vectors on AVX2, 14 by two 512-bit ones on AVX-512: ``_numba``; a task's rows cut
  into blocks of nearly equal rows, ``row_blocks``) stays in registers while k runs, and each k adds
  X[i+r,k] times a row of B to it (``_numba.outer_rows``, written in LLVM's vector IR; a last vector
  that the row ends inside is masked). Neither operand is copied or transposed: F1 reads W as stored,
  B2 reads A_prev in place as A_prev.T.
- "dot" form (``nt_rows``, B4): both operands contiguous along k, a 4 x 4 (AVX-512) or 4 x 3
  (AVX2) block of outputs in scalar accumulators that LLVM keeps in vector registers (fastmath
  reassociation splits each sum across SIMD lanes).
- "packed" outer-product form (``nn_packed_rows``, large F1, B2 and B4): the same register block and
  the same sums in the same order (so the same bits as ``nn_rows``), over copies of the operands laid
  out as the block reads them: B cut into panels of two vectors' width, each panel's rows one after
  another (``pack_panel_rows``, ``pack_panel``), and X's rows interleaved up to BLOCK_ROWS at a time
  (``pack_rows``), so that both come as one stream each, from L1 and L2, as BLAS kernels have them.
  B4 takes this form over W^T packed straight from W, with no transposed copy.
- Parallel tasks own blocks of rows of C (``task_rows``, ``packed_task_rows``), so each output is summed
  by one thread in one order: the same bits on 1 or 2 threads, however the rows are cut.
"""
import numpy as np

from .. import layout
from .._numba import BLOCK_ROWS, VECTOR_BITS, WIDE_VECTORS, jit, outer_rows, pool_threads, transpose_tile
from .. import tables
from ..tables import K_CHUNK  # noqa: F401  (the chunk rule's bound; re-exported for the tests)

# Rows of an output that one parallel task owns in the elementwise passes, B4's unpacked products and the
# fused row pass.
ROW_BLOCK = 16
# Rows of C a task of an unpacked product aims at, per 128 columns of C (``task_rows``).
TASK_ROWS = 64
# Below this many multiply-adds a product runs serially: waking the thread pool costs more.
SERIAL_WORK = 1 << 18

@jit
def k_chunking(K):
    """(count, length) of the chunks the sum over k of F1 and B2 (length K) is taken in: ``tables.k_chunks(K)`` chunks of
    length ceil(K / that), the last cut at K; count is how many of them hold any k (it can fall short of
    ``tables.k_chunks`` for a very long K). (0, 0) for K = 0."""
    n = layout.k_chunks(K)
    if n == 0:
        return 0, 0
    length = -(-K // n)
    return -(-K // length), length


@jit
def row_blocks(n):
    """How ``nn_rows_chunks`` and ``nn_packed_rows`` (F1, B2, B4) cut n rows of C into register blocks:
    (count, rows, extra), count = ceil(n / BLOCK_ROWS) blocks, the first ``extra`` of rows + 1 rows and the
    others of ``rows``, so that no block is left with a few rows (a block costs one pass over B whatever
    its rows: 32 rows go as 11 + 11 + 10, not 14 + 14 + 4). Block rb starts at rb * rows + min(rb, extra)."""
    if n <= 0:
        return 0, 0, 0
    count = -(-n // BLOCK_ROWS)
    return count, n // count, n % count


@jit
def nn_rows(X, B, C, i0, i1):
    """C[i,:] = sum_k X[i,k] * B[k,:C.shape[1]] for rows i0 <= i < i1 (overwrites C's rows): the product of F1
    (X = A_prev, B = W) and B2 (X = A_prev.T, B = dZ), with no transposed copy of either.

    The "outer-product" form: ``outer_rows`` keeps a block of BLOCK_ROWS rows by two vectors of C in
    registers and adds X[i+r,k] times B's row k to it for each k; X may be any layout (it is read
    one scalar at a time). The last block of columns may end inside a vector (masked). Where B's or
    C's rows are not contiguous, a plain loop sums every column instead. k runs in the chunks of
    ``tables.k_chunks``, in order: ``nn_rows_chunks`` over all of them.
    """
    K = X.shape[1]
    if K == 0 or B.strides[1] != B.itemsize or C.strides[1] != C.itemsize:
        nn_rows_naive(X, B, C, i0, i1)
        return
    count, length = k_chunking(K)
    nn_rows_chunks(X, B, C, i0, i1, 0, count, length)


@jit
def nn_rows_chunks(X, B, C, i0, i1, q0, q1, chunk):
    """``nn_rows`` over the chunks q0 <= q < q1 of k (chunk q is q * chunk <= k < (q + 1) * chunk, cut at
    K): C[i,j] = S_q0 + S_q0+1 + ..., where each S_q is its chunk's sum from zero, added to the sum so
    far when done. ``nn_rows`` is this over every chunk; the fused step runs layer 1's F1 a chunk per task
    (chunk 0 into C, each later chunk into a partial of its own, added in order after), which gives the
    same bits. B's and C's rows must be contiguous."""
    K = X.shape[1]
    N = C.shape[1]  # B may have more columns (a padded copy, ``unaliased``): they are not read
    width = 2 * VECTOR_BITS // (8 * C.itemsize)
    n_blocks, rows, extra = row_blocks(i1 - i0)
    # chunks outermost: a chunk's panel of B (up to K_CHUNK rows by two vectors) stays in L1 while every
    # block of rows of the range goes by
    for q in range(q0, q1):
        k0 = q * chunk
        k1 = min(K, k0 + chunk)
        add = q > q0
        for j in range(0, N, width):
            for rb in range(n_blocks):
                i = i0 + rb * rows + min(rb, extra)
                outer_rows(X, B, C, i, rows + 1 if rb < extra else rows, j, min(width, N - j), k0, k1, add)


@jit
def nn_rows_panels(X, B, C, i0, i1, P):
    """``nn_rows`` (C[i,:] = sum_k X[i,k] B[k,:] for rows i0 <= i < i1; F1 with B = W, B2 with B = dZ) reading B
    from its packed panels P (``pack_panel_rows``: every panel, all K rows) where P holds them, X in place;
    with P empty (no rows) B as stored, ``nn_rows`` itself. The same multiply-adds in the same order as
    ``nn_rows``, so the same bits.

    Rows of B at a stride of a power of two bytes (W or dZ of 128 columns in float32: 512 B) fall into a few
    of L1's sets, so a chunk's panel cannot stay in L1 while the register blocks go by; a panel's rows,
    64 B each one after another, can. Packed once per product (``tables.reads_panels``,
    ``tables.f1_reads_panels``) and read by every task."""
    if P.shape[1] != X.shape[1] or P.shape[0] == 0:
        nn_rows(X, B, C, i0, i1)
        return
    K = X.shape[1]
    N = C.shape[1]
    w = P.shape[2]
    count, chunk = k_chunking(K)
    n_blocks, rows, extra = row_blocks(i1 - i0)
    for q in range(count):
        k0 = q * chunk
        k1 = min(K, k0 + chunk)
        add = q > 0
        for j in range(0, N, w):
            # a panel of P, then every register block of the task over it
            panel, Cj = P[j // w], C[:, j:]
            for rb in range(n_blocks):
                i = i0 + rb * rows + min(rb, extra)
                outer_rows(X, panel, Cj, i, rows + 1 if rb < extra else rows, 0, min(w, N - j), k0, k1, add)


# Numbers in a panel's row (two vectors) in each dtype.
PANEL_FLOAT32, PANEL_FLOAT64 = 2 * VECTOR_BITS // 32, 2 * VECTOR_BITS // 64
# Rows of B per parallel task of the packing where B's rows are contiguous.
PACK_ROWS = 16
# Columns of X per tile when ``pack_rows`` gathers them (X = A_prev.T, for B2).
PACK_K_TILE = 8
# Panels of C per pass of ``nn_packed_rows``.
PASS_PANELS = 8
# The most bytes of C one task of a packed product owns (``packed_task_rows``).
PACKED_TASK_BYTES = 1 << 21


# Whether a product takes the packed form: the rule of ``tables`` (which ``b4_transposed`` also reads),
# compiled for the layer functions that choose by it.
packs = jit(tables.packs)
# Whether B2 reads dZ's packed panels (``nn_rows_panels``): the rule of ``tables``, compiled.
reads_panels = jit(tables.reads_panels)
f1_reads_panels = jit(tables.f1_reads_panels)


@jit
def panel_shape(B):
    """The shape of every panel of B (of F1, B2 or B4) that ``pack_panel_rows`` fills: (panels, rows of B,
    two vectors' width)."""
    width = 2 * VECTOR_BITS // (8 * B.itemsize)
    return -(-B.shape[1] // width), B.shape[0], width


@jit
def pack_panel_rows(B, P, k0, k1):
    """P[jb, k, c] = B[k, jb * w + c] for k0 <= k < k1, every panel jb and the columns c < w that B has
    (w = P.shape[2], two vectors): B's rows k0..k1 cut into every panel, so that the register block
    reads its panel as one stream from L1 instead of a row of B per k (whose K_CHUNK rows at B's
    stride miss the TLB and, at a 4 KB stride, share L1's sets). B's rows must be contiguous (W for
    F1, dZ for B2); each row is read once, start to end."""
    N = B.shape[1]
    w = P.shape[2]
    # panels wholly inside B, copied by a count the compiler knows (a few vector moves, where a loop over
    # 16 numbers costs more in overhead than in copying: W of 784 x 256 float32, one thread, 243 -> 81 us)
    single = B.itemsize == 4
    full = N // w if w == (PANEL_FLOAT32 if single else PANEL_FLOAT64) else 0
    for k in range(k0, k1):
        row = B[k]
        for jb in range(full):
            j0 = jb * w
            p = P[jb, k]
            # P[jb, k, c] = B[k, j0 + c]
            if single:
                for c in range(PANEL_FLOAT32):
                    p[c] = row[j0 + c]
            else:
                for c in range(PANEL_FLOAT64):
                    p[c] = row[j0 + c]
        for jb in range(full, P.shape[0]):
            j0 = jb * w
            p = P[jb, k]
            # P[jb, k, c] = B[k, j0 + c], the last panel cut at B's last column
            for c in range(min(w, N - j0)):
                p[c] = row[j0 + c]


@jit
def pack_panel(B, P, jb):
    """Panel jb of ``pack_panel_rows`` alone, for a B whose columns are contiguous (W.T for B4): row k of the
    panel is w numbers from w columns of B (rows of W). Square tiles of one vector's width are transposed
    in registers (``transpose_tile``); the edges that no whole tile covers go number by number, each row
    k of the panel gathered from the w rows of W. Two threads on the AVX-512 Xeon, W.T of 784 x 256 (B4 at
    256x784x256): 71 us number by number against 33-40 by tiles; float64 99-104 against 56-73, where the
    tiles move the operand at about the speed memory gives."""
    K, N = B.shape
    w = P.shape[2]
    j0 = jb * w
    p = P[jb]
    n = min(w, N - j0)
    t = w // 2  # one vector's numbers: a tile is t x t
    k_tiles = K // t * t if B.strides[0] == B.itemsize else 0
    c_tiles = n // t * t
    Wt = B.T
    for k0 in range(0, k_tiles, t):
        for c0 in range(0, c_tiles, t):
            # P[jb, k0 + r, c0 + c] = B[k0 + r, j0 + c0 + c] = W[j0 + c0 + c, k0 + r]
            transpose_tile(Wt, p, j0 + c0, k0, k0, c0)
    for k in range(K):
        # the numbers outside the tiles: columns c_tiles..n of every row, all n below the last tile
        for c in range(c_tiles if k < k_tiles else 0, n):
            p[k, c] = B[k, j0 + c]


@jit
def pack_rows(X, T, i0, i1, k0, k1):
    """T[rb, k - k0, r] = X[i0 + s + r, k] for k0 <= k < k1, block rb of ``row_blocks(i1 - i0)`` starting s
    rows after i0 and r below its rows: the rows of one register block interleaved, so that its
    broadcasts per k come from one contiguous stream (T.shape[2] = BLOCK_ROWS). X is any layout: A_prev
    for F1, A_prev.T for B2 (there the numbers of one k are contiguous).

    A block of fewer than BLOCK_ROWS rows still gets BLOCK_ROWS numbers per k where X has the rows (the
    next block's first rows, never read): a copy whose count the compiler knows is a few vector moves,
    where a loop over 5 or 6 numbers costs more in overhead than in copying."""
    count, rows, extra = row_blocks(i1 - i0)
    n = X.shape[0]
    if X.strides[1] == X.itemsize or n == 1:
        for rb in range(count):
            i = i0 + rb * rows + min(rb, extra)
            t = T[rb]
            if i + BLOCK_ROWS <= n:
                for k in range(k0, k1):
                    tk = t[k - k0]
                    # T[rb, k - k0, r] = X[i + r, k]
                    for r in range(BLOCK_ROWS):
                        tk[r] = X[i + r, k]
            else:
                for r in range(rows + 1 if rb < extra else rows):
                    x = X[i + r]
                    for k in range(k0, k1):
                        t[k - k0, r] = x[k]
    else:
        # PACK_K_TILE columns of X (rows of A_prev, for B2) at a time, every block's numbers of them: the
        # tile stays in L1 while each block's stretch of T is written in one piece (k outermost wrote
        # every block's T a row at a time; one thread, 784 x 256 float32: 241 -> 140 us). Never a block
        # at a time down all of k: that reads each column once per block, each time on another page
        # (B2 at 4096x1024x1024, one thread: 7 ms of packing against 4.3 k outermost)
        for kt in range(k0, k1, PACK_K_TILE):
            ke = min(k1, kt + PACK_K_TILE)
            for rb in range(count):
                i = i0 + rb * rows + min(rb, extra)
                whole = i + BLOCK_ROWS <= n
                for k in range(kt, ke):
                    t = T[rb, k - k0]
                    if whole:
                        for r in range(BLOCK_ROWS):
                            t[r] = X[i + r, k]
                    else:
                        # T[rb, k - k0, r] = X[i + r, k]
                        for r in range(rows + 1 if rb < extra else rows):
                            t[r] = X[i + r, k]


@jit
def nn_packed_rows(X, P, C, i0, i1):
    """``nn_rows`` (C[i,:] = sum_k X[i,k] B[k,:] for rows i0 <= i < i1; F1, B2, B4) over packed operands: P holds
    every panel of B (``pack_panel_rows``), and these rows of X are packed here, chunk by chunk of k
    (``pack_rows``). The same multiply-adds in the same order as ``nn_rows`` (each chunk of k summed
    from zero by ``outer_rows``, then added to the sum so far), so the same bits; only where the
    operands are read from, and how many rows a register block holds (up to BLOCK_ROWS), differ.

    Chunks of k outermost: a chunk's rows of X are packed (``pack_rows``) into a scratch that stays in L2 and
    used at once, for every column of C; then the columns go by in passes of PASS_PANELS panels, as BLAS
    kernels block a product: a pass's block of C and the chunk's PASS_PANELS panels stay in L2, and one
    register block's packed rows (BLOCK_ROWS x K_CHUNK) stay in L1 while the pass's panels go by. One
    thread, float32, GFLOP/s of the loops over X packed beforehand, against passes outermost with every
    chunk of X packed first: B2 at 4096x1024x1024 (X = A_prev.T 1024 x 4096, whose packed rows, 2 MB a
    task, then came back from memory in every pass) 126-132 -> 130-136, F1 1024^3 147-150 -> 149-158;
    and the packing of X no longer writes those 2 MB."""
    K = X.shape[1]
    N = C.shape[1]
    w = P.shape[2]
    count, length = k_chunking(K)
    n_blocks, rows, extra = row_blocks(i1 - i0)
    T = np.empty((n_blocks, length, BLOCK_ROWS), C.dtype)
    for q in range(count):
        k0 = q * length
        k1 = min(K, k0 + length)
        add = q > 0
        pack_rows(X, T, i0, i1, k0, k1)
        for jc in range(0, P.shape[0], PASS_PANELS):
            for rb in range(n_blocks):
                i = i0 + rb * rows + min(rb, extra)
                r = rows + 1 if rb < extra else rows
                block = T[rb, :k1 - k0].T
                for jb in range(jc, min(P.shape[0], jc + PASS_PANELS)):
                    j = jb * w
                    outer_rows(block, P[jb, k0:k1], C[i:, j:], 0, r, 0, min(w, N - j), 0, k1 - k0, add)


@jit
def even_tasks(m, most):
    """Rows per task where the m rows of a product's C (F1, B2, B4) are cut into tasks of at most ``most``
    rows: as few tasks as that allows, in a multiple of the pool's threads (``pool_threads``), so that each
    thread gets an even share (49 tasks on two threads leave one waiting for the 49th). The threads set
    only how the rows are cut, never what an output sums (each output's sum runs in one task, in one
    order, whatever its rows), so the bits do not depend on them."""
    threads = max(1, pool_threads())
    tasks = -(-(-(-m // max(1, most))) // threads) * threads
    return max(1, -(-m // tasks))


@jit
def packed_task_rows(m, n_cols, itemsize):
    """Rows of C per parallel task of ``nn_packed_rows`` (F1, B2, B4): tasks of at most PACKED_TASK_BYTES of C,
    in a multiple of the pool's threads (``even_tasks``), and never under BLOCK_ROWS rows. Each task reads
    every panel of B, so fewer and taller tasks read them fewer times; and a block of C of 2 MB or less,
    with a chunk's packed rows and panels, is what one core's L2 holds. Two threads, float32, GFLOP/s of
    the packed loops (panels packed beforehand), tasks of 128 rows against 512 (2 MB of C): B2 at
    4096x1024x1024 221-228 -> 264-272 (NumPy 265-279); at 1024^3 250-254 -> 268-273 (NumPy 273-281)."""
    most = max(BLOCK_ROWS, PACKED_TASK_BYTES // max(1, n_cols * itemsize))
    return max(BLOCK_ROWS, even_tasks(m, most))


# Rows of B (or of A_prev, read as A_prev.T) whose length in bytes is a multiple of this all map to
# the same few sets of L1 and L2 (4 KB stride: one set of L1, 16 of L2 here), so a K_CHUNK-long panel
# of them cannot stay in cache. Products at least UNALIAS_MIN_REUSE wide on the other side read a
# copy with UNALIAS_PAD_BYTES more per row instead (``unaliased``). One or two threads on the AVX2
# machine, same process: F1 1024^3 1.1-1.5x, F1 4096x1024x1024 1.3x, float64 F1 and B2 at 1024^3
# 1.2-1.8x; the copy costs 1-3% of the product.
UNALIAS_ROW_BYTES = 4096
UNALIAS_PAD_BYTES = 64
UNALIAS_MIN_REUSE = 256


@jit
def aliases(B, reuse):
    """Whether ``unaliased`` copies B, an operand of F1 (W) or B2 (A_prev, dZ): rows at a stride of a multiple
    of UNALIAS_ROW_BYTES, each number used at least UNALIAS_MIN_REUSE times (``reuse``)."""
    return reuse >= UNALIAS_MIN_REUSE and B.shape[0] >= 2 and B.strides[0] % UNALIAS_ROW_BYTES == 0


@jit
def unaliased(B, reuse):
    """An operand of F1 (W) or B2 (A_prev, dZ) as it is, or a copy of it whose rows are
    UNALIAS_PAD_BYTES longer when their stride is a multiple of UNALIAS_ROW_BYTES and each of its
    numbers is used at least UNALIAS_MIN_REUSE times (``reuse``) by the product; the copy's first
    B.shape[1] columns equal B, the rest are never read."""
    if not aliases(B, reuse):
        return B
    P = np.empty((B.shape[0], B.shape[1] + UNALIAS_PAD_BYTES // B.itemsize), B.dtype)
    for k in range(B.shape[0]):
        p, b = P[k], B[k]
        for j in range(b.shape[0]):
            p[j] = b[j]
    return P


@jit
def task_rows(m, n_cols):
    """Rows of C per parallel task of ``nn_rows`` with m rows and ``n_cols`` columns: tasks of at most TASK_ROWS
    rows, times n_cols / 128 for wider products, in a multiple of the pool's threads (``even_tasks``). A task
    reads B whole (F1: W from L2, once per task), so taller tasks read it fewer times, and up to BLOCK_ROWS
    rows share a register block. Two threads, float32, GFLOP/s, the step's products of layer 1 at batch
    1024, tasks of 16 rows in blocks of 8 against this rule's (64 and 56 rows in blocks of up to 14): F1 at
    1024x784x128 274-284 -> 294-305, B2 at 784x1024x128 (49 tasks) 182-190 -> 223-229; NumPy 259-263 and
    245-253."""
    return even_tasks(m, TASK_ROWS * max(1, n_cols // 128))


@jit
def nt_rows_4x4(X, Y, C, i0, i1, acc):
    """C[i,j] = sum_k X[i,k] * Y[j,k] for rows i0 <= i < i1 (overwrites C's rows, or adds to
    them when ``acc``): the product of B4, where W's rows already run along the summed index. For CPUs with
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
    """``nt_rows_4x4`` (B4) with a 4 x 3 block, for CPUs with 16
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


# The dot form that B4 calls, chosen once at import for the CPU numba compiles for
# (numba's disk cache is per CPU too, so a cached kernel always matches this choice).
nt_rows = nt_rows_4x4 if WIDE_VECTORS else nt_rows_4x3


@jit
def nn_rows_naive(X, B, C, i0, i1):
    """The naive form of ``nn_rows`` (F1, B2): C[i,j] = sum_k X[i,k] * B[k,j], three plain loops."""
    for i in range(i0, i1):
        for j in range(C.shape[1]):
            s = C.dtype.type(0.0)
            # C[i,j] = sum_k X[i,k] * B[k,j]
            for k in range(X.shape[1]):
                s += X[i, k] * B[k, j]
            C[i, j] = s


@jit
def nt_rows_naive(X, Y, C, i0, i1, acc):
    """The naive form of ``nt_rows_4x4`` and ``nt_rows_4x3`` (B4): C[i,j] (+)= sum_k X[i,k] * Y[j,k],
    three plain loops."""
    for i in range(i0, i1):
        for j in range(Y.shape[0]):
            s = C.dtype.type(0.0)
            # C[i,j] = sum_k X[i,k] * Y[j,k]
            for k in range(X.shape[1]):
                s += X[i, k] * Y[j, k]
            C[i, j] = C[i, j] + s if acc else s

"""Every loop kernel against its NumPy twin, from the one table in loopgrad.twins.

Tolerance (stated in loopgrad.twins): |loop - numpy| <= 4 eps(dtype) n_terms magnitude,
eps = 1.19e-7 (float32) or 2.22e-16 (float64).
"""
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import loopgrad as lg
from loopgrad import kernels, layout, reference
from loopgrad.kernels import _gemm
from loopgrad.twins import CASES, IMPLEMENTATIONS, LAYOUTS, applies, compare

dims = st.integers(min_value=1, max_value=40)


PAIRS = [(impl, name) for impl in IMPLEMENTATIONS for name in sorted(CASES) if applies(name, impl)]


@pytest.mark.parametrize("impl,name", PAIRS)
@given(m=dims, n_in=dims, n_out=dims, dtype=st.sampled_from(["float32", "float64"]),
       layout=st.sampled_from(LAYOUTS), scale=st.sampled_from([1.0, 1e-3, 1e3]), seed=st.integers(0, 2**16))
def test_kernel_matches_twin(impl, name, m, n_in, n_out, dtype, layout, scale, seed):
    diff, tol, shapes = compare(name, m, n_in, n_out, dtype, layout, scale, seed, impl=impl)
    assert diff <= tol, f"{impl} {name} {dtype} {layout} {shapes}: max |diff| {diff:.3e} > tol {tol:.3e}"


@pytest.mark.parametrize("name", [n for n in sorted(CASES) if applies(n, "textbook")])
@given(m=dims, n_in=dims, n_out=dims, dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_textbook_loops_match_the_tuned_kernels(name, m, n_in, n_out, dtype, seed):
    diff, tol, shapes = compare(name, m, n_in, n_out, dtype, seed=seed, impl="textbook", against="kernels")
    assert diff <= tol, f"textbook vs tuned {name} {dtype} {shapes}: max |diff| {diff:.3e} > tol {tol:.3e}"


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 3), (5, 1, 1), (3, 4, 1),
                                   # across the kernels' switches: threads from 2^18 multiply-adds (SERIAL_WORK),
                                   # 6-row and 4 x 4 blocks and vectors of 8 and 4 lanes with remainders
                                   (63, 9, 5), (64, 9, 5), (67, 33, 70), (130, 40, 30), (257, 70, 9),
                                   (2, 300, 250),  # optimizer blocks run in parallel from 2^16 parameters
                                   (1100, 5, 3), (2100, 20, 10),  # B2 sums over k in chunks of 256 (K_CHUNK)
                                   (40, 600, 17)])
def test_edge_shapes(name, shape):
    for dtype in ("float32", "float64"):
        for layout in LAYOUTS:
            diff, tol, _ = compare(name, *shape, dtype, layout)
            assert diff <= tol, f"{name} {dtype} {layout} {shape}: {diff:.3e} > {tol:.3e}"


def test_twin_packages_export_the_same_names_and_signatures():
    import inspect
    assert kernels.__all__ == reference.__all__
    for name in kernels.__all__:
        assert inspect.signature(getattr(kernels, name)) == inspect.signature(getattr(reference, name)), name


@pytest.mark.parametrize("m", [8, 100])  # the axpy and the dot form of F1
def test_float32_is_accumulated_in_float32(rng, m):
    """Over 4096 terms a float32 sum is off the exact sum by many ulp, while a float64 sum rounded
    once to float32 is within half an ulp of it. So most entries must differ from the rounded
    float64 result (they would all equal it with float64 accumulation), yet stay within the
    float32 bound 4 eps n sum|terms|."""
    n_in = 4096
    A = rng.standard_normal((m, n_in)).astype(np.float32)
    W = rng.standard_normal((n_in, 6)).astype(np.float32)
    b = np.zeros(6, np.float32)
    Z = kernels.dense_forward(A, W, b)
    assert Z.dtype == np.float32
    exact = A.astype(np.float64) @ W.astype(np.float64)
    assert np.mean(Z != exact.astype(np.float32)) > 0.5
    bound = 4 * np.finfo(np.float32).eps * n_in * (np.abs(A).astype(np.float64) @ np.abs(W))
    assert (np.abs(Z - exact) <= bound).all()
    assert all(g.dtype == np.float32 for g in kernels.dense_backward(Z, A, W))


@pytest.mark.parametrize("nt_rows", [_gemm.nt_rows_4x4, _gemm.nt_rows_4x3], ids=["4x4", "4x3"])
@given(m=dims, k=st.integers(1, 70), n=dims, dtype=st.sampled_from(["float32", "float64"]),
       acc=st.booleans(), seed=st.integers(0, 2**16))
def test_tuned_products_match_their_naive_forms(nt_rows, m, k, n, dtype, acc, seed):
    """The tuned products of _gemm against the literal triple loops beside them, over row ranges
    that start inside the matrix and across the 4 x 4 blocks' remainders."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, n)).astype(dtype)
    i0 = int(rng.integers(0, m))
    tol = 4 * np.finfo(dtype).eps * k * (np.abs(X) @ np.abs(B)).max()
    C1, C2 = np.zeros((m, n), dtype), np.zeros((m, n), dtype)
    _gemm.nn_rows(X, B, C1, i0, m)
    _gemm.nn_rows_naive(X, B, C2, i0, m)
    assert np.abs(C1 - C2).max() <= tol
    C1[...] = C2[...] = rng.standard_normal((m, n))
    BT = np.ascontiguousarray(B.T)
    nt_rows(X, BT, C1, i0, m, acc)
    _gemm.nt_rows_naive(X, BT, C2, i0, m, acc)
    assert np.abs(C1 - C2).max() <= tol + 4 * np.finfo(dtype).eps * np.abs(C2).max()
    assert (C1[:i0] == C2[:i0]).all()  # rows outside the range are left alone


@given(m=dims, k=st.integers(1, 3 * _gemm.K_CHUNK), n=st.integers(1, 40), dtype=st.sampled_from(["float32", "float64"]),
       layout=st.sampled_from(["C", "F", "strided"]), seed=st.integers(0, 2**16))
def test_outer_product_form_matches_its_naive_form(m, k, n, dtype, layout, seed):
    """``nn_rows`` (the vector-IR block of ``_numba.outer_rows``) against the triple loop: sums longer
    than one chunk of k (K_CHUNK); X row-major as F1 reads A_prev, through a transposed view ('F') as
    B2 reads it, or with no contiguous axis at all (X and B every other column of a wider array: the
    block then takes both strides at run time instead of one as a constant); every number of
    BLOCK_ROWS-row blocks and of vectors with their remainders; rows outside [i0, m) untouched.
    Tolerance: 4 eps(dtype) k max_ij (|X| |B|)_ij, the bound of a k-term sum in any order."""
    rng = np.random.default_rng(seed)
    if layout == "F":
        X = rng.standard_normal((k, m)).astype(dtype).T
    elif layout == "strided":
        X = rng.standard_normal((m, 2 * k)).astype(dtype)[:, ::2]
    else:
        X = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, 2 * n)).astype(dtype)[:, ::2] if layout == "strided" else rng.standard_normal((k, n)).astype(dtype)
    i0 = int(rng.integers(0, m))
    C1 = rng.standard_normal((m, n)).astype(dtype)
    C2 = C1.copy()
    _gemm.nn_rows(X, B, C1, i0, m)
    _gemm.nn_rows_naive(X, B, C2, i0, m)
    assert np.abs(C1 - C2).max() <= 4 * np.finfo(dtype).eps * k * (np.abs(X) @ np.abs(B)).max()
    assert (C1[:i0] == C2[:i0]).all()


def test_the_chunks_of_a_sum_over_k_are_even_in_count_and_leave_none_empty():
    """``tables.k_chunks``: one chunk up to K_CHUNK, else an even count of chunks of one length (so two
    threads can take half each), none empty and none longer than K_CHUNK."""
    from loopgrad import tables

    assert _gemm.k_chunking(0) == (0, 0)
    assert _gemm.k_chunking(784) == (4, 196)  # not 256 + 256 + 256 + 16
    assert _gemm.k_chunking(1024) == (4, 256)
    for K in list(range(1, 3000)) + [65535, 100000]:
        count, length = _gemm.k_chunking(K)
        assert count <= tables.k_chunks(K) and length <= _gemm.K_CHUNK
        assert (count - 1) * length < K <= count * length  # every chunk holds some k
        assert count == 1 if K <= _gemm.K_CHUNK else tables.k_chunks(K) % 2 == 0


@given(m=dims, k=st.integers(_gemm.K_CHUNK + 1, 5 * _gemm.K_CHUNK), n=st.integers(1, 40),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_a_product_split_by_its_chunks_and_added_in_order_gives_the_same_bits(m, k, n, dtype, seed):
    """What the fused step does to layer 1's F1 (``network._first_layer_chunk_sums``): chunk 0 into C,
    every later chunk from zero into a partial of its own, the partials then added in chunk order; the
    bits of ``nn_rows`` over all of k, exactly."""
    rng = np.random.default_rng(seed)
    X, B = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    whole, split = np.empty((m, n), dtype), np.empty((m, n), dtype)
    _gemm.nn_rows(X, B, whole, 0, m)
    count, length = _gemm.k_chunking(k)
    partials = np.empty((count, m, n), dtype)
    for q in range(count):
        _gemm.nn_rows_chunks(X, B, split if q == 0 else partials[q], 0, m, q, q + 1, length)
    for q in range(1, count):
        split += partials[q]
    np.testing.assert_array_equal(split, whole)


def _operand(rng, rows, cols, dtype, layout):
    """A (rows, cols) operand stored row-major ('C'), as the transposed view of a row-major array ('F',
    as B2 reads A_prev and B4 reads W), or as every other column of a wider array ('strided')."""
    if layout == "F":
        return rng.standard_normal((cols, rows)).astype(dtype).T
    if layout == "strided":
        return rng.standard_normal((rows, 2 * cols)).astype(dtype)[:, ::2]
    return rng.standard_normal((rows, cols)).astype(dtype)


@given(m=st.integers(1, 70), k=st.integers(1, 3 * _gemm.K_CHUNK), n=st.integers(1, 300),
       dtype=st.sampled_from(["float32", "float64"]), x_layout=st.sampled_from(["C", "F", "strided"]),
       b_layout=st.sampled_from(["C", "F", "strided"]), form=st.sampled_from(["packed", "panels", "no panels"]),
       seed=st.integers(0, 2**16))
def test_the_packed_products_give_the_bits_of_the_outer_product_form(m, k, n, dtype, x_layout, b_layout, form, seed):
    """``nn_packed_rows`` over ``dense._panels(B)`` (X packed too), and ``nn_rows_panels`` over the same panels
    with X read in place (or over no panels: B as stored), against ``nn_rows`` over B's values row-major:
    the same multiply-adds in the same order, so exactly the same bits, for X and B in any layout
    (packing copies them, it does not round), over every number of register blocks, panels (a last one
    cut inside a vector), passes of PASS_PANELS panels and chunks of k; rows outside [i0, i1) untouched."""
    from loopgrad.kernels import dense

    rng = np.random.default_rng(seed)
    X, B = _operand(rng, m, k, dtype, x_layout), _operand(rng, k, n, dtype, b_layout)
    i0 = int(rng.integers(0, m))
    i1 = int(rng.integers(i0 + 1, m + 1))
    packed = rng.standard_normal((m, n)).astype(dtype)
    plain = packed.copy()
    B_rows = B.copy(order="C")  # unit strides even where a dimension is 1
    if form == "packed":
        _gemm.nn_packed_rows(X, dense._panels(B), packed, i0, i1)
    else:
        _gemm.nn_rows_panels(X, B_rows, packed, i0, i1, dense._panels(B) if form == "panels" else dense._no_panels(B))
    _gemm.nn_rows(X, B_rows, plain, i0, i1)
    np.testing.assert_array_equal(packed, plain)


def test_a_product_reads_panels_where_each_number_of_b_serves_many_rows_over_a_long_sum():
    """``tables.reads_panels`` (compiled in ``_gemm``): from PANELS_MIN_ROWS rows of C and a sum of PANELS_MIN_K
    (B2 of 784-128-64-10's layers at batch 1024); ``tables.f1_reads_panels`` from F1_PANELS_MIN_ROWS rows of
    a batch and PANELS_MIN_K inputs (F1 of its layer 1 at batch 512 and up). ``dense._panels_in`` packs B into the room it is given where
    the room has the panels' shape, into new memory where not, and gives none where the rule says no or
    B's rows are not contiguous."""
    from loopgrad.kernels import dense

    rows, K = _gemm.tables.PANELS_MIN_ROWS, _gemm.tables.PANELS_MIN_K
    assert _gemm.reads_panels(rows, K) and not _gemm.reads_panels(rows - 1, 4096) and not _gemm.reads_panels(4096, K - 1)
    f1_rows = _gemm.tables.F1_PANELS_MIN_ROWS
    assert _gemm.f1_reads_panels(f1_rows, K) and not _gemm.f1_reads_panels(f1_rows - 1, 4096)
    assert not _gemm.f1_reads_panels(4096, K - 1)
    B = np.random.default_rng(0).standard_normal((K, 40)).astype(np.float32)
    room = np.full(dense.panel_shape(B), np.nan, np.float32)
    w = room.shape[2]

    def holds_b(P):  # every panel's columns that B has (the last panel's other lanes are never read)
        assert P.shape == room.shape
        for jb in range(P.shape[0]):
            np.testing.assert_array_equal(P[jb, :, :min(w, 40 - jb * w)], B[:, jb * w:jb * w + w])

    P = dense._panels_in(B, True, room)
    assert np.shares_memory(P, room)
    holds_b(P)
    P = dense._panels_in(B, True, np.zeros((0, 0, w), np.float32))
    assert not np.shares_memory(P, room)
    holds_b(P)
    assert dense._panels_in(B, False, room).shape[0] == 0
    assert dense._panels_in(np.asfortranarray(B), True, room).shape[0] == 0


@given(k=st.integers(1, 100), n=st.integers(1, 100), dtype=st.sampled_from(["float32", "float64"]),
       layout=st.sampled_from(["C", "F", "strided"]), seed=st.integers(0, 2**16))
def test_panels_hold_the_operand_panel_by_panel(k, n, dtype, layout, seed):
    """``dense._panels(B)``: panel jb holds B's columns jb w .. jb w + w - 1, row by row, whatever B's layout
    (an 'F' operand, as B4's W.T, goes by register tiles, ``transpose_tile``, and its edges number by
    number; k and n run past whole tiles, up to several)."""
    from loopgrad.kernels import dense

    B = _operand(np.random.default_rng(seed), k, n, dtype, layout)
    P = dense._panels(B)
    w = P.shape[2]
    assert P.shape == (-(-n // w), k, w)
    for jb in range(P.shape[0]):
        cols = min(w, n - jb * w)
        np.testing.assert_array_equal(P[jb, :, :cols], B[:, jb * w:jb * w + cols])


@given(n_in=st.integers(1, 70), n_out=st.integers(1, 70), dtype=st.sampled_from(["float32", "float64"]),
       layout=st.sampled_from(["C", "F", "strided"]), seed=st.integers(0, 2**16))
def test_transposed_copy_of_w_holds_every_number(n_in, n_out, dtype, layout, seed):
    """``dense._transpose_into``, the W^T that B4 reads (``tables.b4_transposed``): WT[q, p] = W[p, q] exactly,
    for sizes that run past whole register tiles (16 numbers in float32, 8 in float64, on AVX-512; 8 and 4
    on AVX2) or stop short of one, and for a W whose rows are not contiguous ('F', 'strided': number by
    number throughout). Every number of WT is written (it starts as NaN)."""
    from loopgrad.kernels import dense

    W = _operand(np.random.default_rng(seed), n_in, n_out, dtype, layout)
    WT = np.full((n_out, n_in), np.nan, dtype)
    dense._transpose_into(W, WT)
    np.testing.assert_array_equal(WT, W.T)


@given(m=st.integers(1, 40), k=st.integers(1, 40), dtype=st.sampled_from(["float32", "float64"]),
       layout=st.sampled_from(["C", "F", "strided"]), seed=st.integers(0, 2**16))
def test_packed_rows_hold_each_register_blocks_rows_interleaved(m, k, dtype, layout, seed):
    """``_gemm.pack_rows``: block rb of ``row_blocks(i1 - i0)`` holds X[i + r, k] at T[rb, k - k0, r] for each of
    its rows r, whatever X's layout (the 'F' operand, as B2 reads A_prev.T, goes by tiles of PACK_K_TILE
    columns), for any range of rows and of k, including blocks cut short by the end of X."""
    rng = np.random.default_rng(seed)
    X = _operand(rng, m, k, dtype, layout)
    i0 = int(rng.integers(0, m))
    i1 = int(rng.integers(i0 + 1, m + 1))
    k0 = int(rng.integers(0, k))
    k1 = int(rng.integers(k0 + 1, k + 1))
    count, rows, extra = _gemm.row_blocks(i1 - i0)
    T = np.full((count, k1 - k0, _gemm.BLOCK_ROWS), np.nan, dtype)
    _gemm.pack_rows(X, T, i0, i1, k0, k1)
    for rb in range(count):
        i = i0 + rb * rows + min(rb, extra)
        r = rows + 1 if rb < extra else rows
        np.testing.assert_array_equal(T[rb, :, :r], X[i:i + r, k0:k1].T)


def test_products_are_cut_into_tasks_of_bounded_size_in_a_multiple_of_the_threads():
    """``packed_task_rows``: never under BLOCK_ROWS rows; a task's block of C within PACKED_TASK_BYTES wherever
    BLOCK_ROWS rows allow it; a count of tasks that is a multiple of the pool's threads, as few as those
    rules allow. ``task_rows`` (unpacked): at most TASK_ROWS rows per 128 columns, likewise. Whatever the
    count, the bits are the same: the test of the packed layer products below runs on one thread and two,
    and ``test_training`` holds a step's bits on both."""
    import numba

    before = numba.get_num_threads()
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            for m in (1, 7, 8, 100, 256, 1000, 1024, 4096):
                for n in (10, 128, 256, 784, 1024, 70000):
                    for itemsize in (4, 8):
                        rows = _gemm.packed_task_rows(m, n, itemsize)
                        tasks = -(-m // rows)
                        assert rows >= _gemm.BLOCK_ROWS
                        assert rows * n * itemsize <= _gemm.PACKED_TASK_BYTES or rows == _gemm.BLOCK_ROWS
                        # as few tasks as the rules allow: a multiple of the threads fewer would break the cap
                        fewer = tasks - threads
                        assert fewer < 1 or -(-m // fewer) * n * itemsize > _gemm.PACKED_TASK_BYTES or tasks <= threads
                    rows = _gemm.task_rows(m, n)
                    most = _gemm.TASK_ROWS * max(1, n // 128)
                    tasks = -(-m // rows)
                    # at most ``most`` rows, and the fewest tasks, in a multiple of the threads, that allows
                    assert rows <= most and tasks <= -(-(-(-m // most)) // threads) * threads
        numba.set_num_threads(before)
        if before == 2:
            # the step's layer-1 products at batch 1024: 16 tasks of F1's 1024 rows, 14 of B2's 784 (not 13)
            assert _gemm.task_rows(1024, 128) == 64 and _gemm.task_rows(784, 128) == 56
            assert _gemm.packed_task_rows(1024, 1024, 4) == 512 and _gemm.packed_task_rows(4096, 1024, 4) == 512
            assert _gemm.packed_task_rows(1024, 1024, 8) == 256 and _gemm.packed_task_rows(256, 784, 4) == 128
    finally:
        numba.set_num_threads(before)


def test_a_task_is_cut_into_register_blocks_of_nearly_equal_rows():
    """``row_blocks``: the blocks tile the n rows in order, none over BLOCK_ROWS, and their rows differ by
    at most one, so none is left with a few rows where n allows a full one (32 rows: 11 + 11 + 10)."""
    assert _gemm.row_blocks(0) == (0, 0, 0)
    for n in range(1, 400):
        count, rows, extra = _gemm.row_blocks(n)
        sizes = [rows + 1 if rb < extra else rows for rb in range(count)]
        assert sum(sizes) == n and max(sizes) <= _gemm.BLOCK_ROWS and max(sizes) - min(sizes) <= 1
        assert count == -(-n // _gemm.BLOCK_ROWS)
        starts = [rb * rows + min(rb, extra) for rb in range(count)]
        assert starts == [sum(sizes[:rb]) for rb in range(count)]
    if _gemm.BLOCK_ROWS == 14:
        assert _gemm.row_blocks(32) == (3, 10, 2)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (9, 300, 33), (70, 600, 17), (40, 5, 300), (300, 40, 70)])
def test_the_packed_layer_products_equal_the_unpacked_ones(dtype, shape, threads, rng):
    """F1 (bias and activation fused), B2 (with its 1/m) and B4 (with g' fused) through the packed
    parallel functions, at shapes far below the sizes where the layer picks them: F1 and B2 give the
    bits of the unpacked path exactly (the same sums in the same order); B4 is the outer-product form
    over W^T there, which also gives the bits of the unpacked path where that reads W's transposed copy.
    On one thread and on two, whose tasks (``packed_task_rows``) and register blocks cut the rows
    differently."""
    import numba

    from loopgrad.kernels import dense

    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"the pool has {numba.config.NUMBA_NUM_THREADS} thread(s)")
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        _packed_layer_products_equal_the_unpacked_ones(dtype, shape, rng)
    finally:
        numba.set_num_threads(before)


def _packed_layer_products_equal_the_unpacked_ones(dtype, shape, rng):
    from loopgrad.kernels import dense

    m, n_in, n_out = shape
    A, W = rng.standard_normal((m, n_in)).astype(dtype), rng.standard_normal((n_in, n_out)).astype(dtype)
    b, dZ = rng.standard_normal(n_out).astype(dtype), rng.standard_normal((m, n_out)).astype(dtype)
    relu = lg.tables.activation_code("relu")
    Z1, A1, Z2, A2 = (np.empty((m, n_out), dtype) for _ in range(4))
    dense._forward_packed(A, dense._panels(W), b, relu, Z1, A1)
    dense._forward_rows(A, W, b, relu, Z2, A2, 0, m, dense._no_panels(W))
    np.testing.assert_array_equal(Z1, Z2)
    np.testing.assert_array_equal(A1, A2)
    inv_m = np.dtype(dtype).type(1.0) / np.dtype(dtype).type(m)
    dW1, dW2 = np.empty_like(W), np.empty_like(W)
    dense._weight_grad_packed(A, dense._panels(dZ), dW1, inv_m)
    dense._weight_grad_rows(A, dZ, dW2, 0, n_in, inv_m, dense._no_panels(dZ))
    np.testing.assert_array_equal(dW1, dW2)
    # and over dZ's panels with A_prev in place (``nn_rows_panels``), as large layers read it; F1 over W's
    dense._weight_grad_rows(A, dZ, dW1, 0, n_in, inv_m, dense._panels(dZ))
    np.testing.assert_array_equal(dW1, dW2)
    dense._forward_blocks(A, W, dense._panels(W), b, relu, Z1, A1)
    np.testing.assert_array_equal(Z1, Z2)
    np.testing.assert_array_equal(A1, A2)
    Zp = rng.standard_normal((m, n_in)).astype(dtype)
    Ap = np.maximum(Zp, 0)
    d1, d2 = np.empty((m, n_in), dtype), np.empty((m, n_in), dtype)
    WT = np.ascontiguousarray(W.T)
    dense._input_grad_packed(dZ, dense._panels(W.T), relu, Zp, Ap, d1)
    dense._input_grad_rows(dZ, W, WT, relu, Zp, Ap, d2, 0, m)
    np.testing.assert_array_equal(d1, d2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_layer_products_switch_to_the_packed_form_where_they_are_large(dtype, rng):
    """``dense_backward`` at 256x512x256 (B2 and B4 take the packed form: ``packs``) and
    ``dense_forward`` at 512x1024x512 against NumPy, within 4 eps(dtype) k max(|X| |B|),
    and the same bits on one thread and on two."""
    import numba

    assert _gemm.packs(256, 256, 512) and _gemm.packs(512, 256, 256) and _gemm.packs(512, 1024, 512)
    eps = np.finfo(dtype).eps
    A, W = rng.standard_normal((256, 512)).astype(dtype), rng.standard_normal((512, 256)).astype(dtype)
    dZ = rng.standard_normal((256, 256)).astype(dtype)
    dA, dW, db = kernels.dense_backward(dZ, A, W)
    assert np.abs(dA - dZ @ W.T).max() <= 4 * eps * 256 * (np.abs(dZ) @ np.abs(W.T)).max()
    assert np.abs(dW - A.T @ dZ / 256).max() <= 4 * eps * 256 * (np.abs(A.T) @ np.abs(dZ)).max() / 256
    A2, W2 = rng.standard_normal((512, 1024)).astype(dtype), rng.standard_normal((1024, 512)).astype(dtype)
    b2 = rng.standard_normal(512).astype(dtype)
    Z = kernels.dense_forward(A2, W2, b2)
    assert np.abs(Z - (A2 @ W2 + b2)).max() <= 4 * eps * 1024 * (np.abs(A2) @ np.abs(W2) + np.abs(b2)).max()
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = kernels.dense_backward(dZ, A, W) + (kernels.dense_forward(A2, W2, b2),)
    finally:
        numba.set_num_threads(before)
    for x, y in zip(one, (dA, dW, db, Z)):
        np.testing.assert_array_equal(x, y)


_AVX2_BLOCK = """
import numpy as np
from loopgrad import _numba
from loopgrad.kernels import _gemm
assert (_numba.VECTOR_BITS, _numba.BLOCK_ROWS) == (256, 6) and _gemm.nt_rows is _gemm.nt_rows_4x3
rng = np.random.default_rng(0)
for dtype in ('float32', 'float64'):
    for m, k, n in [(1, 1, 1), (13, 300, 10), (40, 7, 37), (64, 784, 128)]:
        X, B = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
        C1, C2 = np.empty((m, n), dtype), np.empty((m, n), dtype)
        _gemm.nn_rows(X, B, C1, 0, m)
        _gemm.nn_rows_naive(X, B, C2, 0, m)
        assert np.abs(C1 - C2).max() <= 4 * np.finfo(dtype).eps * k * (np.abs(X) @ np.abs(B)).max()
print('ok')
"""


@pytest.mark.own_cache
def test_the_avx2_register_block_on_a_cpu_with_avx512(tmp_path):
    """Each CPU compiles one register block (``_numba.BLOCK_ROWS`` by two ``VECTOR_BITS`` vectors). Where
    the host has AVX-512, numba is told to compile for the same CPU without it, so that the AVX2 block
    is held against the naive form too (with the other tolerance of the test above)."""
    import os
    import subprocess
    import sys

    from llvmlite import binding

    binding.initialize_native_target()
    features = binding.get_host_cpu_features()
    if not features.get("avx512f", False):
        pytest.skip("the host has no AVX-512: the AVX2 block is the one every other test runs")
    off = ",".join(f"-{name}" if on and name.startswith(("avx512", "amx", "evex512")) else f"{'+' if on else '-'}{name}"
                   for name, on in features.items())
    env = dict(os.environ, NUMBA_CPU_FEATURES=off, NUMBA_CPU_NAME="znver3", NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", _AVX2_BLOCK], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


@pytest.mark.parametrize("dtype, width", [("float32", 1024), ("float64", 512)])
def test_products_on_rows_4kb_long(dtype, width, rng):
    """Rows of W, A_prev or dZ that are 4 KB long are read from a padded copy (``_gemm.unaliased``):
    the public kernels and a network's gradient at such sizes against the NumPy twin. Tolerance: 4
    eps(dtype) times the summed length times max |reference|, a sum's bound in any order."""
    m = 256
    A = rng.standard_normal((m, width)).astype(dtype)
    W = rng.standard_normal((width, 256)).astype(dtype)
    W_wide = rng.standard_normal((16, width)).astype(dtype)
    dZ = rng.standard_normal((m, 256)).astype(dtype)
    eps = np.finfo(dtype).eps
    assert _gemm.unaliased(A, 256).shape[1] > width  # the padded path is the one under test
    A16, b = A[:, :16], W_wide[0]
    pairs = ((kernels.dense_forward(A16, W_wide, b), reference.dense_forward(A16, W_wide, b), 16),
             (kernels.dense_backward(dZ, A, W)[1], reference.dense_backward(dZ, A, W)[1], m))
    for got, want, n in pairs:
        assert np.abs(got - want).max() <= 4 * eps * n * np.abs(want).max()
    model = lg.MLP([16, width, 256], dtype=dtype, seed=0)
    X, y = rng.standard_normal((m, 16)).astype(dtype), rng.integers(0, 256, m)
    (_, loops), (_, twin) = model.gradient_block(X, y, "loops"), model.gradient_block(X, y, "numpy")
    assert np.abs(loops - twin).max() <= 4 * eps * width * np.abs(twin).max()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m", [32, 63, 64, 511, 512])  # either side of both dtypes' lines of rows
def test_b4_of_a_narrow_layer_reads_a_transposed_copy(dtype, m, rng):
    """B4 of a layer whose rows of W are at most tables.B4_TRANSPOSED_BYTES long, or of any layer whose W
    is at most B4_TRANSPOSED_MAX_BYTES in batches of B4_TRANSPOSED_ROWS or more (B4_TRANSPOSED_ROWS_FLOAT32
    in float32), runs the outer-product
    form over W^T (copied once per backward pass), other layers the dot form over W: widths either side
    of the line, for the public kernel and for a network's gradient against the NumPy twin (test_training
    holds the fused step to this gradient, bit for bit). Tolerance: 4 eps(dtype) times the summed length
    times max |reference|."""
    from loopgrad import tables

    eps = np.finfo(dtype).eps
    line = tables.B4_TRANSPOSED_BYTES // np.dtype(dtype).itemsize
    size = np.dtype(dtype).itemsize
    least = tables.B4_TRANSPOSED_ROWS_FLOAT32 if size == 4 else tables.B4_TRANSPOSED_ROWS
    assert not tables.b4_transposed(1024, 1024, size, 4096)  # the copy would cost more than it saves
    # where B4 packs its operands it packs W^T's panels straight from W: no copy, neither in a network's
    # buffers nor in the public kernel
    assert tables.packs(1024, 256, 784) and not tables.b4_transposed(784, 256, size, 1024)
    assert layout.make_buffers(lg.MLP([20, 784, 256], dtype=dtype).layers, 1024, dtype).slots[2, layout.WT_OFF] < 0
    for n_out in (2, 10, line, line + 1):
        slots = layout.make_buffers(lg.MLP([20, 64, n_out], dtype=dtype).layers, m, dtype).slots
        assert list(slots[:, layout.WT_OFF] >= 0) == [False, False, n_out <= line or m >= least]
        A, W = rng.standard_normal((m, 64)).astype(dtype), rng.standard_normal((64, n_out)).astype(dtype)
        dZ = rng.standard_normal((m, n_out)).astype(dtype)
        got, want = kernels.dense_backward(dZ, A, W)[0], reference.dense_backward(dZ, A, W)[0]
        assert np.abs(got - want).max() <= 4 * eps * n_out * np.abs(want).max()
        model = lg.MLP([20, 64, n_out], dtype=dtype, seed=0)
        X, y = rng.standard_normal((m, 20)).astype(dtype), rng.integers(0, n_out, m)
        (_, loops), (_, twin) = model.gradient_block(X, y, "loops"), model.gradient_block(X, y, "numpy")
        assert np.abs(loops - twin).max() <= 4 * eps * m * np.abs(twin).max()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_block_and_slot_starts_on_a_cache_line(dtype):
    # the tuned products load 64-byte vectors; a model copied or unpickled is re-aligned too
    model = lg.MLP([784, 100, 10, 3], dtype=dtype)
    opt = lg.Adam()
    opt.start(1000, 33)
    net, buf, update = model.training_buffers(33, opt)
    for block in (model.theta, net.grad, update.state, buf.work):
        assert block.ctypes.data % layout.ALIGN_BYTES == 0
    for Z, A, dZ in layout.layer_views(buf, 33):
        for view in (Z, A, dZ):
            assert view is None or view.ctypes.data % layout.ALIGN_BYTES == 0
    # room for the partial sums of layer 1's chunks (784 = 4 chunks of 196: three partials)
    assert layout.partials(buf).shape == (3, 33, 100)
    assert layout.partials(buf).ctypes.data % layout.ALIGN_BYTES == 0
    for again in (model.copy(), pickle.loads(pickle.dumps(model))):
        assert again.theta.ctypes.data % layout.ALIGN_BYTES == 0
        assert np.array_equal(again.theta, model.theta)
        assert np.shares_memory(again.params[0][0], again.theta)


def test_kernels_reject_mixed_or_bad_dtypes(rng):
    A = rng.standard_normal((4, 3))
    with pytest.raises(TypeError, match="share one dtype"):
        kernels.dense_forward(A, A.T.astype(np.float32).copy(), np.zeros(4))
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.dense_forward(A.astype(np.int64), A.T.copy(), np.zeros(4))
    with pytest.raises(ValueError, match=r"W: expected shape \(n_in, n_out\) = \(3, \*\), got \(4, 4\)"):
        kernels.dense_forward(A, np.zeros((4, 4)), np.zeros(4))
    with pytest.raises(ValueError, match="activation"):
        kernels.activation_forward("swish", A)

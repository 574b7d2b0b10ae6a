"""Every numba option loopgrad uses, in one place.

* ``cache=True``: compiled kernels are written to disk and reloaded by the next
  process. numba stores them beside the source in ``__pycache__`` and, where the
  install folder is read-only, falls back to a per-user cache directory by itself
  (``NUMBA_CACHE_DIR`` overrides both).
* ``fastmath={"reassoc", "contract"}``: the two flags LLVM needs to vectorise a
  sum and to fuse multiply-adds. Never ``nnan``/``ninf``: NaN checks must keep
  working, so the full ``fastmath=True`` is not used. ``jit(exact=True)`` drops even these for
  the few kernels that must round as their NumPy twin does, operation for operation (DP-SGD's
  noise: a fused multiply-add or a reordered sum would change its bits).
* ``error_model="numpy"``: a division by zero gives inf/nan as NumPy does instead
  of raising, which also lets LLVM vectorise loops that divide.
* ``parallel=True`` only for kernels whose ``prange`` index owns its outputs, so
  the result does not depend on the number of threads.

* The disk cache (``_KernelCache``) is numba's own with two changes. It goes stale when *any*
  source file that kernel code is built from changes (numba watches only the function's own file,
  so an edit to ``kernels/_gemm.py`` would leave ``dense.py``'s cached kernels running the old
  product). And it heals: an entry that cannot be read (a truncated or corrupted file) is dropped
  with one warning and the kernel compiles again; a cache that cannot be written warns once. A
  cached kernel calls the register blocks by their symbols (``outer_rows``: compiled once, not copied
  into every caller), so the cache registers the leaves an entry names before numba links it.

* Fork: GNU OpenMP (numba's default threading layer on Linux) cannot run a parallel region in a
  process forked after its pool started; numba kills such a child. ``forked_child()`` tells, so
  that the model runs the NumPy twin there (with one warning) and the public kernels that may go
  parallel refuse with a clear error (``refuse_in_forked_child``) instead of the process dying.
  With TBB installed (``NUMBA_THREADING_LAYER=tbb``) forks are safe; it was measured about 20%
  slower on the batch-32 training step, so loopgrad does not choose it by itself.

Set ``NUMBA_DISABLE_JIT=1`` to run every kernel as plain Python (for coverage of
loop bodies); ``prange`` then is ``range``.
"""
import functools
import os
import warnings

import numpy as np
from numba import config, njit, prange  # noqa: F401  (prange re-exported for the kernels)

from ._aot import ENV_BUILD
from ._stamp import source_stamp  # noqa: F401  (the cache's staleness key; also read by _aot)

# Set in the process that builds loopgrad's ahead-of-time module (``loopgrad._aot``): every kernel
# compiles serial (prange is range; the fixed partition into blocks is kept, so the results are the
# same bits) and nothing is read from or written to numba's cache, whose entries are parallel code.
AOT_BUILD = os.environ.get(ENV_BUILD) == "1"

if not config.DISABLE_JIT and not AOT_BUILD:
    # A serial kernel loaded from the disk cache that calls a parallel one needs the
    # parallel runtime's symbols (allocate_sched, ...) already registered; they are only
    # registered once the thread pool starts, so start it before any kernel loads.
    from numba.np.ufunc.parallel import _launch_threads

    _launch_threads()
_POOL_PID = os.getpid()


def forked_child():
    """True in a process forked after loopgrad started a GNU OpenMP thread pool, where a parallel
    region would be killed."""
    if config.DISABLE_JIT or os.getpid() == _POOL_PID:
        return False
    try:
        import numba
        return numba.threading_layer() == "omp"
    except ValueError:  # no pool started
        return False


def refuse_in_forked_child(fn):
    """For public kernels that may run a parallel region: in a forked child, a clear error instead
    of numba's fork check killing the process."""
    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        if forked_child():
            raise RuntimeError(
                f"{fn.__name__}: this process was forked after loopgrad started GNU OpenMP's thread pool, where a "
                f"parallel loop kernel cannot run; use its NumPy twin loopgrad.reference.{fn.__name__} here, start "
                f"workers with multiprocessing's 'spawn' or 'forkserver' context, or install tbb and set "
                f"NUMBA_THREADING_LAYER=tbb")
        return fn(*args, **kwargs)
    return guarded

FASTMATH = frozenset({"reassoc", "contract"})

# Start index for the serial call of a kernel's row-range body. A literal 0 would be typed
# Literal[int](0) and compile a second copy of the body beside the int64 one that the parallel
# blocks call; an int64 value shares it (and halves those kernels' compile time).
FIRST = np.int64(0)
# Likewise for a bool argument: a literal False would compile a second copy beside the bool one.
OVERWRITE = np.bool_(False)

_OPTIONS = dict(cache=True, fastmath=set(FASTMATH), error_model="numpy", nogil=True)

class CacheWarning(UserWarning):
    """loopgrad's kernel cache could not be read or written; the kernels still run (compiled anew)."""


class ForkWarning(UserWarning):
    """A process forked after the OpenMP pool started runs the NumPy twin instead of the loops."""


_warned = set()


def _warn_once(key, message, category=CacheWarning):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, category, stacklevel=3)


def _kernel_cache_class():
    from numba.core.caching import FunctionCache

    stamp = ("loopgrad", source_stamp())

    class _KernelCache(FunctionCache):
        """numba's function cache, stale with any kernel source and healing from unreadable entries."""

        # a kernel's cached code may call the register-block leaves by their symbols (EXTERN_BLOCKS): they
        # are registered before numba links it (an unresolved symbol resolves to address 0: a segfault)
        scans_for_leaves = True

        def __init__(self, py_func):
            super().__init__(py_func)
            self._cache_file._source_stamp = stamp
            rebuild = self._impl.rebuild

            def rebuild_with_leaves(target_context, payload):
                if self.scans_for_leaves and EXTERN_BLOCKS:
                    register_leaves_in(payload)
                return rebuild(target_context, payload)
            self._impl.rebuild = rebuild_with_leaves

        def load_overload(self, sig, target_context):
            try:
                return super().load_overload(sig, target_context)
            except Exception as e:  # noqa: BLE001 - any unreadable entry: start this function's index afresh
                _warn_once(("load", self._cache_path),
                           f"loopgrad: unreadable kernel cache entries in {self._cache_path} (first: "
                           f"{self._py_func.__qualname__}, {type(e).__name__}: {e}); they are dropped and "
                           f"those kernels compile again")
                try:
                    self._cache_file.flush()
                except OSError:
                    pass
                return None

        def save_overload(self, sig, data):
            try:
                super().save_overload(sig, data)
            except OSError as e:
                _warn_once(("save", self._cache_path),
                           f"loopgrad: cannot write the kernel cache in {self._cache_path} ({e}); compiled kernels "
                           f"will not be reused by the next process (set NUMBA_CACHE_DIR to a writable folder)")

    return _KernelCache


def _check_cache_dir(folder):
    """Warn once when NUMBA_CACHE_DIR names a folder that cannot be written: numba then caches
    elsewhere or not at all, and every run may compile from scratch without a word."""
    import os
    import tempfile

    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        _warn_once(("dir", folder), f"loopgrad: NUMBA_CACHE_DIR={folder} cannot be written ({e}); compiled "
                                    f"kernels may not be kept for the next process")


if config.CACHE_DIR and not config.DISABLE_JIT:
    _check_cache_dir(config.CACHE_DIR)

try:
    _KERNEL_CACHE = None if config.DISABLE_JIT else _kernel_cache_class()
except Exception:  # noqa: BLE001 - numba's caching internals moved: keep numba's own cache
    _KERNEL_CACHE = None


def jit(fn=None, *, parallel=False, inline=False, exact=False):
    """Compile ``fn`` with loopgrad's options; ``parallel`` enables ``prange``. ``exact`` drops the
    fastmath flags, for a kernel whose floating-point results must equal its NumPy twin's bit for bit
    (reassociation or a fused multiply-add would round differently); it still vectorises loops
    without reductions, and its instructions keep their flags when inlined into a fastmath caller."""
    options = dict(_OPTIONS, parallel=parallel and not AOT_BUILD)
    if exact:
        options["fastmath"] = False
    if AOT_BUILD:
        options["cache"] = False
    if inline:
        options["inline"] = "always"

    def compile_(f):
        dispatcher = njit(**options)(f)
        if _KERNEL_CACHE is not None and not config.DISABLE_JIT and not AOT_BUILD:
            try:
                dispatcher._cache = _KERNEL_CACHE(dispatcher.py_func)
            except Exception:  # noqa: BLE001 - e.g. no writable cache location
                # numba's own cache would link cached code without registering the leaves it calls
                from numba.core.caching import NullCache

                dispatcher._cache = NullCache()
        return dispatcher
    return compile_ if fn is None else compile_(fn)



def _pool_threads():
    """``pool_threads()``: the threads a parallel region of the calling thread runs on (numba's
    ``get_num_threads``: NUMBA_NUM_THREADS or ``numba.set_num_threads``), callable from compiled code; 1 in
    the serial ahead-of-time build. Only for choices that leave the bits alone: how big a packed product's
    tasks are, never what any output sums.

    An intrinsic that calls the threading layer's ``get_num_threads`` by its symbol (registered when the
    pool starts, above), because numba's own overload reaches it through a ctypes pointer, a dynamic
    global that keeps every kernel calling it out of the disk cache."""
    if config.DISABLE_JIT:
        from numba import get_num_threads

        return get_num_threads
    if AOT_BUILD:
        @jit
        def pool_threads():
            return 1
        return pool_threads
    _get_num_threads = c_int_function("get_num_threads")

    @jit
    def pool_threads():
        return _get_num_threads()
    return pool_threads


def c_int_function(symbol):
    """An intrinsic that calls the C function ``int symbol(void)`` of the process (found by its symbol when
    the compiled code is linked, so kernels calling it stay in the disk cache) and returns an int64."""
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.core.extending import intrinsic

    @intrinsic
    def call(typingctx):
        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), symbol)
            return builder.sext(builder.call(fn, []), ir.IntType(64))
        return types.int64(), codegen
    return call


pool_threads = _pool_threads()

def _bit_intrinsics():
    """float32 <-> int32 reinterpretation of the same 32 bits (a log's exponent and mantissa), and an
    int32 shift converted to float32, as numba intrinsics in 32-bit lanes that LLVM vectorises
    (numba's own integer arithmetic widens to int64, which AVX2 converts to float only one lane at
    a time); NumPy's ``view`` and int32 arithmetic where the JIT is off."""
    if config.DISABLE_JIT:
        return ((lambda x: np.float32(x).view(np.int32)), (lambda i: np.int32(i).view(np.float32)),
                (lambda i, n: np.float32(np.int32(i) >> np.int32(n))))
    from llvmlite import ir
    from numba.core import types
    from numba.core.extending import intrinsic

    int32 = ir.IntType(32)

    def as_int32(builder, value, typ):
        # numba widens int32 arithmetic to int64; the value fits 32 bits by the caller's contract
        return value if typ.bitwidth == 32 else builder.trunc(value, int32)

    @intrinsic
    def float32_bits(typingctx, x):
        if x != types.float32:
            return None
        return types.int32(types.float32), lambda context, builder, sig, args: builder.bitcast(args[0], int32)

    @intrinsic
    def bits_float32(typingctx, i):
        if not isinstance(i, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            return builder.bitcast(as_int32(builder, args[0], i), ir.FloatType())
        return types.float32(i), codegen

    @intrinsic
    def shift_to_float32(typingctx, i, n):
        """float32(i >> n), i an int32 value, n a constant shift."""
        if not isinstance(i, types.Integer) or not isinstance(n, types.IntegerLiteral):
            return None

        def codegen(context, builder, sig, args):
            shifted = builder.ashr(as_int32(builder, args[0], i), ir.Constant(int32, n.literal_value))
            return builder.sitofp(shifted, ir.FloatType())
        return types.float32(i, n), codegen

    return float32_bits, bits_float32, shift_to_float32


float32_bits, bits_float32, shift_to_float32 = _bit_intrinsics()


def _pow2_intrinsic():
    """``pow2(k)``: 2^k in the float type of ``k``, a float holding a whole number, built from the
    exponent bits (k clamped to the normal range: -126..127 for float32, -1022..1023 for float64; a NaN
    k gives the lowest, so that the NaN the caller multiplies it with stays the result). Through a 32-bit
    integer, which the vector units convert from a float in one instruction; math.ldexp would be a
    library call per element. ``math.ldexp`` where the JIT is off."""
    if config.DISABLE_JIT:
        import math

        def pow2(k):
            low, high = (-126, 127) if np.asarray(k).dtype == np.float32 else (-1022, 1023)
            return type(k)(math.ldexp(1.0, int(min(max(k, low), high)) if k == k else low))
        return pow2
    from llvmlite import ir
    from numba.core import types
    from numba.core.extending import intrinsic

    @intrinsic
    def pow2(typingctx, k):
        if k not in (types.float32, types.float64):
            return None

        def codegen(context, builder, sig, args):
            x = args[0]
            single = k == types.float32
            fty = ir.FloatType() if single else ir.DoubleType()
            mantissa, bias = (23, 127) if single else (52, 1023)
            low, high = ir.Constant(fty, 1.0 - bias), ir.Constant(fty, float(bias))
            # "not (x >= low)" holds for a NaN too
            x = builder.select(builder.fcmp_unordered("<", x, low), low, x)
            x = builder.select(builder.fcmp_ordered(">", x, high), high, x)
            n = builder.fptosi(x, ir.IntType(32))
            if not single:
                n = builder.sext(n, ir.IntType(64))
            n = builder.shl(builder.add(n, ir.Constant(n.type, bias)), ir.Constant(n.type, mantissa))
            return builder.bitcast(n, fty)
        return k(k), codegen

    return pow2


pow2 = _pow2_intrinsic()


def _flat_view_intrinsic():
    """``flat_view(x, offset, shape)``: the ``shape`` array (C order) whose numbers start ``offset``
    numbers after the first of the C-contiguous array x (the ``x.reshape(-1)[offset:offset + size]``
    that ``reshape`` would give), built directly, for compiled code only.

    numba's ``reshape`` calls a runtime helper that checks the strides (18 ns a view on the AVX-512 Xeon)
    and keeps LLVM from moving a view out of a loop; the fused step made some forty views per step
    through ``layout``, 2-3 us of the 14 us step of 64-64-10 at batch 32. The offsets and shapes come
    from ``layout``'s tables, which fit every view inside its block (tests/test_training.py holds each
    compiled view to the NumPy slice of the same block), so nothing is checked here, as nothing is by a
    compiled index."""
    if config.DISABLE_JIT:
        return None
    from numba.core import cgutils, types
    from numba.core.extending import intrinsic
    from numba.core.imputils import impl_ret_borrowed

    @intrinsic
    def flat_view(typingctx, x, offset, shape):
        if not (isinstance(x, types.Array) and x.layout == "C" and isinstance(offset, types.Integer)
                and isinstance(shape, types.BaseTuple) and all(isinstance(t, types.Integer) for t in shape.types)):
            return None
        ndim = len(shape.types)
        retty = types.Array(x.dtype, ndim, "C")

        def codegen(context, builder, sig, args):
            x_, offset_, shape_ = args
            intp = types.intp
            src = context.make_array(sig.args[0])(context, builder, x_)
            dst = context.make_array(retty)(context, builder)
            itemsize = context.get_constant(intp, context.get_abi_sizeof(context.get_data_type(x.dtype)))
            dims = [context.cast(builder, d, t, intp) for d, t in zip(cgutils.unpack_tuple(builder, shape_, ndim), shape.types)]
            strides = [itemsize]
            for d in dims[:0:-1]:
                strides.insert(0, builder.mul(strides[0], d))
            data = builder.gep(src.data, [context.cast(builder, offset_, sig.args[1], intp)])
            context.populate_array(dst, data=data, shape=cgutils.pack_array(builder, dims),
                                   strides=cgutils.pack_array(builder, strides), itemsize=itemsize,
                                   meminfo=src.meminfo)
            return impl_ret_borrowed(context, builder, retty, dst._getvalue())
        return retty(x, offset, shape), codegen

    return flat_view


flat_view = _flat_view_intrinsic()


def rows_flat(A, i0, i1):
    """Rows i0 <= i < i1 of the 2-D array A as one 1-D view (A[i0:i1].reshape(-1)) where A is C-contiguous
    (for compiled code: where its type's layout is 'C'), else an empty view: a loop over it is one loop
    that LLVM vectorises across the rows, where a row may be shorter than a vector."""
    if A.flags.c_contiguous:
        return A[i0:i1].reshape(-1)
    return A[0, 0:0]


def _overload_views():
    """Compiled ``rows_flat`` and ``layout.block_view``, through ``flat_view``."""
    if config.DISABLE_JIT:
        return
    from numba.extending import overload

    from . import layout

    @overload(rows_flat)
    def _rows_flat(A, i0, i1):
        if A.layout == "C":
            return lambda A, i0, i1: flat_view(A, i0 * A.shape[1], ((i1 - i0) * A.shape[1],))
        return lambda A, i0, i1: A[0, 0:0]

    @overload(layout.block_view)
    def _view(flat, offset, shape):
        if flat.layout == "C":
            return lambda flat, offset, shape: flat_view(flat, offset, shape)
        return None  # numba's reshape refuses a block not known to be contiguous, as before


_overload_views()

def _wide_vector_registers():
    """Whether numba compiles for a CPU with AVX-512 (32 vector registers of 512 bits): the target numba
    was told (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES) or else the host. Unknown: assume it has them (the
    code is correct everywhere: LLVM splits vectors wider than the CPU's)."""
    try:
        from llvmlite import binding

        if config.CPU_FEATURES:
            return "+avx512f" in config.CPU_FEATURES
        return bool(binding.get_host_cpu_features().get("avx512f", False))
    except Exception:  # noqa: BLE001 - only the speed depends on it
        return True


# The register block of ``outer_rows`` for the CPU numba compiles for (numba's disk cache and the
# ahead-of-time module are both kept per CPU, so compiled code always matches this choice): at most
# BLOCK_ROWS rows by two vectors.
# - AVX2 (16 registers of 256 bits): 6 rows by two 256-bit vectors, 12 accumulators + 3 operands.
# - AVX-512 (32 of 512 bits): 14 rows by two 512-bit vectors, 28 accumulators + 2 vectors of B + 1
#   broadcast = 31 registers. Each k reads B's two vectors once for 2 x BLOCK_ROWS multiply-adds, so more
#   rows read fewer bytes of B per multiply-add. On a 2-core Xeon with AVX-512 (Sapphire Rapids), one
#   thread, GFLOP/s at 8 / 12 / 14 rows: the packed loops alone, 1024^3 float32 121-124 / 133-141 /
#   136-150, float64 57-59 / 60-64 / 65-68, 1024x4096x1024 float32 117-122 / 126-131 / 131-133 (OpenBLAS's
#   whole sgemm 137, dgemm 66); unpacked, F1 at 1024x784x128 127-134 / 136-139 / 137-143 and B2 116-123 /
#   118-124 / 121-135. (6 x 2 x 512 bits gave 92-140 in an earlier form of the product.)
WIDE_VECTORS = _wide_vector_registers()
VECTOR_BITS = 512 if WIDE_VECTORS else 256
BLOCK_ROWS = 14 if WIDE_VECTORS else 6
# A register block of at least PREFETCH_MIN_ROWS rows asks for B's row k + PREFETCH_K while it works on row k
# (``llvm.prefetch`` into L1): those blocks are the large products', whose B (a panel from L2, or W's rows at
# their stride) the hardware prefetchers bring in late; the smaller blocks of small batches find B in L1.
# Two threads on the AVX-512 Xeon, float32, NumPy's time over the loops' (3 alternating processes a side),
# without -> with: F1 / B2 / B4 at 256x784x256 0.96-0.99 / 1.04 / 0.98-1.02 -> 1.08 / 1.07-1.12 / 1.03-1.13,
# at 1024^3 0.93-1.00 / 0.96-0.99 / 0.93-0.96 -> 1.00-1.02 / 1.02-1.07 / 0.95-0.98, at 4096x1024^2
# 0.95-1.00 / 0.91-0.95 / 0.91-0.96 -> 0.97-1.03 / 0.95-0.99 / 0.92-0.97; the unpacked B2 of layer 1 at
# batch 1024 (784x1024x128) 216-236 -> 242-247 GFLOP/s. One thread, packed loops at 1024^3, GFLOP/s at a
# distance of 0 / 4 / 8 / 12 rows: 161-164 / 159-166 / 167-170 / 170-176.
PREFETCH_K = 12
PREFETCH_MIN_ROWS = 9

def _outer_rows_intrinsics():
    """``outer_rows(X, B, C, i, r, j, cols, k0, k1, add)``: the register block of the matrix product
    C[i + s, j:j + cols] (+)= sum_{k0 <= k < k1} X[i + s, k] * B[k, j:j + cols] for s < r, with
    1 <= cols <= 2 w, w = VECTOR_BITS / the dtype's bits (8 float32, 4 float64 on AVX2), 1 <= r <= BLOCK_ROWS.
    B's and C's rows are read and written as whole vectors: the caller sees that they are contiguous.

    Written in LLVM vector IR because numba's loops leave the block to LLVM's vectorisers, which on
    AVX2 spill the 4 x 4 axpy form's 16 broadcasts and 4 rows of C out of 16 registers. Here the
    R x 2 accumulators, two vectors of B's row k and one broadcast of X[i + r, k] take at most 15
    registers on AVX2 (R = 6) and 31 on AVX-512 (R = 14), and each k costs one multiply-add per
    accumulator. A block of at most w columns keeps one vector per row; where ``cols`` ends inside a
    vector, that vector's loads and stores are masked (the 10 columns of a classifier's output layer:
    two vectors, the second with 2 lanes), so no column is left to a scalar loop. Every element's sum
    runs over k in order, so the result does not depend on the thread that runs the block. ``add`` adds
    to C instead of overwriting it (a later chunk of k). A block of PREFETCH_MIN_ROWS rows or more also
    prefetches B's row k + PREFETCH_K, which changes no number. With the JIT off, NumPy computes the same
    block.

    Compiled once, called by every kernel: the blocks for every r (a switch over r, each case with its
    k loops for one or two vectors, whole or masked) are one function per dtype and X's layout
    (``_outer_rows_leaf``), a C function the kernels call by its symbol. numba otherwise copies a
    callee's code into every caller's module and has LLVM optimise and emit it again there, once per
    level of calls; inlined, these blocks made up most of each kernel's compile (a cold ``dense_forward``
    went through some twenty modules of about 20,000 instructions each, 17,000 of them the blocks).
    Where numba's cache cannot be hooked (``_KERNEL_CACHE`` is None) the kernels inline the blocks instead;
    the ahead-of-time module defines the leaves itself (``define_leaves``).
    """
    if config.DISABLE_JIT:
        def outer_rows(X, B, C, i, r, j, cols, k0, k1, add):
            # k in order, one rank-1 update at a time, as the compiled block sums: a BLAS product's bits
            # would depend on the operands' layout (packed or not) and on r
            r = min(max(r, 1), BLOCK_ROWS)
            block = np.zeros((r, cols), C.dtype)
            for k in range(k0, k1):
                block += X[i:i + r, k:k + 1] * B[k, j:j + cols]
            C[i:i + r, j:j + cols] = C[i:i + r, j:j + cols] + block if add else block
        return outer_rows, None, None
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.core.extending import intrinsic

    i32, i64 = ir.IntType(32), ir.IntType(64)
    i8p = ir.IntType(8).as_pointer()
    # the leaf's C signature: X's base, row and column strides (bytes); B's base and row stride; C's;
    # then i, r, j, cols, k0, k1 and add (0 or 1)
    leaf_type = ir.FunctionType(ir.VoidType(), [i8p, i64, i64, i8p, i64, i8p, i64] + [i64] * 7)

    def emit_block(builder, dtype, xp, bp, cp, i_, j_, cols_, k0_, k1_, add_, rows):
        # xp, bp, cp: (base as i8*, row stride, column stride), strides in bytes
        size, bits = dtype.bitwidth // 8, dtype.bitwidth
        fty = ir.FloatType() if bits == 32 else ir.DoubleType()
        w = VECTOR_BITS // bits
        # mask lanes as wide as the numbers (vmaskmovps takes 32-bit lanes): built from 64-bit lanes,
        # the mask cost a compare and pack sequence that LLVM redid inside the k loop
        lane_int = ir.IntType(bits)
        vty, mty, lty = ir.VectorType(fty, w), ir.VectorType(ir.IntType(1), w), ir.VectorType(lane_int, w)
        fmuladd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                                 f"llvm.fmuladd.v{w}f{bits}")
        masked_load = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty.as_pointer(), i32, mty, vty]),
            f"llvm.masked.load.v{w}f{bits}.p0")
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
        masked_store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), i32, mty]),
            f"llvm.masked.store.v{w}f{bits}.p0")

        def at(array, r, col, ty):
            base, s0, s1 = array
            offset = builder.add(builder.mul(r, s0), builder.mul(col, s1))
            return builder.bitcast(builder.gep(base, [offset]), ty.as_pointer())

        def splat(value, ty):
            undef = ir.Constant(ty, ir.Undefined)
            return builder.shuffle_vector(builder.insert_element(undef, value, lane0), undef,
                                          ir.Constant(ir.VectorType(i32, w), [0] * w))

        row = [builder.add(i_, ir.Constant(i64, r)) for r in range(rows)]
        col = [builder.add(j_, ir.Constant(i64, h * w)) for h in range(2)]
        lane0 = ir.Constant(i32, 0)
        zero = ir.Constant(vty, None)
        align = ir.Constant(i32, size)

        def block(nvec, masked):
            # the lanes of the last vector that lie inside the block's cols (the vectors before it are whole)
            last = nvec - 1
            left = builder.sub(cols_, ir.Constant(i64, last * w))
            if bits < 64:
                left = builder.trunc(left, lane_int)
            mask = builder.icmp_signed("<", ir.Constant(lty, list(range(w))), splat(left, lty)) if masked else None

            def load(ptr, h):
                if masked and h == last:
                    return builder.call(masked_load, [ptr, align, mask, zero])
                return builder.load(ptr, align=size)

            # accumulators in stack slots, which LLVM promotes to registers
            acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(nvec)] for _ in range(rows)]
            with cgutils.for_range_slice(builder, k0_, k1_, ir.Constant(i64, 1)) as (k, _):
                bk = [load(at(bp, k, col[h], vty), h) for h in range(nvec)]
                if rows >= PREFETCH_MIN_ROWS:
                    # B's row k + PREFETCH_K into L1 (read, keep, data); a prefetch never faults, so past B's
                    # last row it is only wasted
                    ahead = builder.add(k, ir.Constant(i64, PREFETCH_K))
                    for h in range(nvec):
                        ptr = builder.bitcast(at(bp, ahead, col[h], vty), i8p)
                        builder.call(prefetch, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
                for r in range(rows):
                    xs = splat(builder.load(at(xp, row[r], k, fty)), vty)
                    for h in range(nvec):
                        # C[i+r, j+h*w : j+(h+1)*w] += X[i+r,k] * B[k, j+h*w : j+(h+1)*w]
                        builder.store(builder.call(fmuladd, [xs, bk[h], builder.load(acc[r][h])]), acc[r][h])
                latch = builder.basic_block
            if rows >= PREFETCH_MIN_ROWS:
                # LLVM unrolled the k loop of the 9- to 11-row blocks by two (the larger ones' bodies exceed its
                # threshold): with the prefetch's addresses that takes more than x86's 16 general registers, and
                # the spilled row pointers were reloaded at every k. One thread, F1 of 14 x 784 x 128 with X in
                # rows (C), GFLOP/s at 8 / 9 / 10 / 11 / 12 rows on the Zen 5 guest: 239 / 173 / 164 / 154 / 244
                # unrolled, 235 / 239 / 240 / 241 / 240 not; float64 9-11 rows 78-91 -> 119-122 (8: 112-119)
                latch.terminator.set_metadata("llvm.loop", no_unroll(builder.module))
            for r in range(rows):
                for h in range(nvec):
                    ptr = at(cp, row[r], col[h], vty)
                    with builder.if_then(add_):
                        builder.store(builder.fadd(builder.load(acc[r][h]), load(ptr, h)), acc[r][h])
                    total = builder.load(acc[r][h])
                    if masked and h == last:
                        builder.call(masked_store, [total, ptr, align, mask])
                    else:
                        builder.store(total, ptr, align=size)

        # one k loop per case, chosen once per block: two vectors or one, whole or ending in a masked one
        with builder.if_else(builder.icmp_signed(">", cols_, ir.Constant(i64, w))) as (two, one):
            for nvec, branch in ((2, two), (1, one)):
                with branch:
                    whole = builder.icmp_signed("==", cols_, ir.Constant(i64, nvec * w))
                    with builder.if_else(whole) as (unmasked, masked):
                        with unmasked:
                            block(nvec, False)
                        with masked:
                            block(nvec, True)

    def no_unroll(module):
        # a loop's ID (a node whose first operand is itself) that asks LLVM not to unroll it
        from llvmlite.ir import values

        hint = module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])
        loop_id = values.MDValue(module, [hint], name=str(len(module.metadata)))
        loop_id.operands = (loop_id, hint)
        return loop_id

    def emit_rows(builder, dtype, xp, bp, cp, i_, r_, j_, cols_, k0_, k1_, add_):
        # one block per row count, r clamped into 1..BLOCK_ROWS (the callers never pass others)
        one, most = ir.Constant(i64, 1), ir.Constant(i64, BLOCK_ROWS)
        r_ = builder.select(builder.icmp_signed("<", r_, one), one, r_)
        r_ = builder.select(builder.icmp_signed(">", r_, most), most, r_)
        fn = builder.function
        end = fn.append_basic_block("outer_rows.end")
        cases = [fn.append_basic_block(f"outer_rows.r{rows}") for rows in range(1, BLOCK_ROWS + 1)]
        switch = builder.switch(r_, cases[-1])
        for rows, case in enumerate(cases[:-1], 1):
            switch.add_case(ir.Constant(i64, rows), case)
        for rows, case in enumerate(cases, 1):
            builder.position_at_end(case)
            emit_block(builder, dtype, xp, bp, cp, i_, j_, cols_, k0_, k1_, add_, rows)
            builder.branch(end)
        builder.position_at_end(end)

    def constant_strides(layout, s0, s1, size):
        # a contiguous axis's stride as a constant: the loads then share one moving index instead of a
        # chain of pointer additions per k (X read as X.T is 'F')
        if layout == "C":
            return s0, size
        if layout == "F":
            return size, s1
        return s0, s1

    def emit_leaf_body(builder, dtype, layout, args):
        # the leaf's arguments (``leaf_type``) to the blocks; B's and C's rows are contiguous
        size = ir.Constant(i64, dtype.bitwidth // 8)
        x, xs0, xs1, b, bs0, c, cs0 = args[:7]
        add = builder.icmp_signed("!=", args[13], ir.Constant(i64, 0))
        emit_rows(builder, dtype, (builder.bitcast(x, i8p), *constant_strides(layout, xs0, xs1, size)),
                  (builder.bitcast(b, i8p), bs0, size), (builder.bitcast(c, i8p), cs0, size), *args[7:13], add)

    def array_parts(context, builder, aty, value):
        a = context.make_array(aty)(context, builder, value)
        s0, s1 = cgutils.unpack_tuple(builder, a.strides, 2)
        return (builder.bitcast(a.data, i8p),
                *constant_strides(aty.layout, s0, s1, ir.Constant(i64, aty.dtype.bitwidth // 8)))

    def typed_ok(X, B, C, add):
        arrays = (X, B, C)
        return (all(isinstance(a, types.Array) and a.ndim == 2 and a.dtype == C.dtype for a in arrays)
                and C.dtype in (types.float32, types.float64) and isinstance(add, types.Boolean))

    def int64_args(context, builder, sig, args):
        return [context.cast(builder, v, t, types.int64) for v, t in zip(args, sig.args)]

    @intrinsic
    def outer_rows(typingctx, X, B, C, i, r, j, cols, k0, k1, add):
        if not typed_ok(X, B, C, add):
            return None
        symbol = _outer_rows_leaf(str(C.dtype), X.layout) if EXTERN_BLOCKS else None

        def codegen(context, builder, sig, args):
            x, b, c = args[:3]
            ints = int64_args(context, builder, sig.replace(args=sig.args[3:9]), args[3:9])
            xp, bp, cp = [array_parts(context, builder, t, v) for t, v in zip(sig.args[:3], (x, b, c))]
            if symbol is None:
                emit_rows(builder, C.dtype, xp, bp, cp, *ints, args[9])
            else:
                leaf = cgutils.get_or_insert_function(builder.module, leaf_type, symbol)
                builder.call(leaf, [*xp, *bp[:2], *cp[:2], *ints, builder.zext(args[9], i64)])
            return context.get_dummy_value()
        return types.void(X, B, C, i, r, j, cols, k0, k1, add), codegen

    @intrinsic
    def outer_rows_raw(typingctx, x, xs0, xs1, b, bs0, c, cs0, i, r, j, cols, k0, k1, add, layout):
        # the leaf's body: the arrays as pointers and byte strides (B's and C's rows contiguous)
        if not (isinstance(x, types.CPointer) and x.dtype in (types.float32, types.float64)
                and isinstance(layout, types.IntegerLiteral)):
            return None
        dtype, code = x.dtype, layout.literal_value

        def codegen(context, builder, sig, args):
            emit_leaf_body(builder, dtype, LEAF_LAYOUTS[code], args)
            return context.get_dummy_value()
        return types.void(x, xs0, xs1, b, bs0, c, cs0, i, r, j, cols, k0, k1, add, layout), codegen

    def define_leaves(module):
        """Define every leaf (both dtypes, the three layouts of X) in the llvmlite ``module``, under the
        symbols the kernels call: for the ahead-of-time module, which must hold them itself."""
        for dtype in LEAF_DTYPES:
            for layout in LEAF_LAYOUTS:
                fn = ir.Function(module, leaf_type, f"{LEAF_PREFIX}{dtype}_{layout}")
                builder = ir.IRBuilder(fn.append_basic_block("entry"))
                emit_leaf_body(builder, getattr(types, dtype), layout, fn.args)
                builder.ret_void()

    return outer_rows, outer_rows_raw, define_leaves


# The leaves: one per dtype and layout of X (``LEAF_LAYOUTS[code]`` for the code the bodies below pass),
# each named LEAF_PREFIX + dtype + "_" + layout.
LEAF_PREFIX = "loopgrad_outer_rows_"
LEAF_DTYPES = ("float32", "float64")
LEAF_LAYOUTS = "CFA"

# Whether the kernels call the register blocks as compiled leaves (``_outer_rows_leaf``) instead of
# inlining them: a cached kernel then needs its leaves' symbols registered before numba links it, which
# ``_KernelCache`` sees to; without that hook they inline. The ahead-of-time build calls them too: its
# kernels compile in that process (leaves registered as here), and the module it writes holds the
# leaves' definitions (``define_leaves``; ``_aot._build_here``).
EXTERN_BLOCKS = (_KERNEL_CACHE is not None or AOT_BUILD) and not config.DISABLE_JIT
outer_rows, outer_rows_raw, define_leaves = _outer_rows_intrinsics()


# the leaves' bodies, one per layout of X (0 'C', 1 'F', 2 'A'): its contiguous axis's stride is a constant
def _outer_rows_leaf_c(x, xs0, xs1, b, bs0, c, cs0, i, r, j, cols, k0, k1, add):
    outer_rows_raw(x, xs0, xs1, b, bs0, c, cs0, i, r, j, cols, k0, k1, add, 0)


def _outer_rows_leaf_f(x, xs0, xs1, b, bs0, c, cs0, i, r, j, cols, k0, k1, add):
    outer_rows_raw(x, xs0, xs1, b, bs0, c, cs0, i, r, j, cols, k0, k1, add, 1)


def _outer_rows_leaf_a(x, xs0, xs1, b, bs0, c, cs0, i, r, j, cols, k0, k1, add):
    outer_rows_raw(x, xs0, xs1, b, bs0, c, cs0, i, r, j, cols, k0, k1, add, 2)


_LEAF_BODIES = {"C": _outer_rows_leaf_c, "F": _outer_rows_leaf_f, "A": _outer_rows_leaf_a}
_leaves = {}  # symbol -> its compiled C function (kept alive: the kernels call into its code)


def _outer_rows_leaf(dtype, layout):
    """The symbol of the compiled register blocks for X of ``layout`` ('C', 'F' or 'A') and ``dtype``
    ('float32' or 'float64'), compiled (or loaded from the disk cache) and registered with LLVM on first
    use in the process."""
    symbol = f"{LEAF_PREFIX}{dtype}_{layout}"
    if symbol in _leaves:
        return symbol
    from llvmlite import binding
    from numba.core import types
    from numba.core.ccallback import CFunc
    from numba.core.compiler_lock import global_compiler_lock

    with global_compiler_lock:
        if symbol in _leaves:
            return symbol
        pointer = types.CPointer(getattr(types, dtype))
        sig = types.void(pointer, types.int64, types.int64, pointer, types.int64, pointer, *[types.int64] * 8)
        leaf = CFunc(_LEAF_BODIES[layout], (sig.args, sig.return_type), locals={},
                     options=dict(nogil=True, error_model="numpy"))
        try:
            leaf._cache = _KERNEL_CACHE(leaf._pyfunc)
            leaf._cache.scans_for_leaves = False
        except Exception:  # noqa: BLE001 - no cache location: compile it in this process only
            pass
        leaf.compile()
        binding.add_symbol(symbol, leaf.address)
        _leaves[symbol] = leaf
    return symbol


def register_leaves_in(payload):
    """Compile or load, and register, every register-block leaf that a cached kernel's compiled code
    (``payload``, numba's cache entry) calls: LLVM must resolve the symbols when numba links it."""
    import re

    pattern = re.compile(f"{LEAF_PREFIX}({'|'.join(LEAF_DTYPES)})_([{LEAF_LAYOUTS}])".encode())
    found, code_seen = set(), False
    stack = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, (bytes, bytearray, memoryview)):
            code_seen = True
            found.update(pattern.findall(bytes(item)))
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    if not code_seen:
        # an entry of a shape this walk does not know (another numba): register every leaf, since a call
        # to an unresolved symbol would jump to address 0
        found = {(d.encode(), l.encode()) for d in LEAF_DTYPES for l in LEAF_LAYOUTS}
    for dtype, layout in sorted(found):
        _outer_rows_leaf(dtype.decode(), layout.decode())


def _transpose_tile_intrinsic():
    """``transpose_tile(S, D, r0, c0, dr0, dc0)``: D[dr0 + c, dc0 + r] = S[r0 + r, c0 + c] for r, c < w, w the
    numbers in one vector (VECTOR_BITS / the dtype's bits: 16 float32 or 8 float64 on AVX-512). S's and D's
    rows must be contiguous (the caller sees to it); their row strides are read.

    The w x w tile is loaded as w row vectors and transposed in registers by log2(w) rounds of a perfect
    shuffle: each round pairs row i with row i + w/2 and interleaves them, the first halves into row 2i and
    the second halves into row 2i + 1; after log2(w) rounds row j holds column j. That is w log2(w)
    two-vector shuffles per w^2 numbers, where a plain loop moves each number by itself (it packs B4's
    panels of W^T, a transpose of all of W, every backward pass). With the JIT off, NumPy moves the tile."""
    if config.DISABLE_JIT:
        def transpose_tile(S, D, r0, c0, dr0, dc0):
            w = VECTOR_BITS // (8 * S.itemsize)
            D[dr0:dr0 + w, dc0:dc0 + w] = S[r0:r0 + w, c0:c0 + w].T
        return transpose_tile
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.core.extending import intrinsic

    i32, i64 = ir.IntType(32), ir.IntType(64)
    i8p = ir.IntType(8).as_pointer()

    @intrinsic
    def transpose_tile(typingctx, S, D, r0, c0, dr0, dc0):
        if not all(isinstance(a, types.Array) and a.ndim == 2 for a in (S, D)) or S.dtype != D.dtype:
            return None
        if D.dtype not in (types.float32, types.float64):
            return None

        def codegen(context, builder, sig, args):
            s_, d_, r0_, c0_, dr0_, dc0_ = args
            r0_, c0_, dr0_, dc0_ = [context.cast(builder, v, t, types.int64) for v, t in zip(args[2:], sig.args[2:])]
            bits = D.dtype.bitwidth
            size = bits // 8
            w = VECTOR_BITS // bits
            fty = context.get_value_type(D.dtype)
            vty = ir.VectorType(fty, w)

            def row_pointer(aty, value, r, c):
                a = context.make_array(aty)(context, builder, value)
                stride = cgutils.unpack_tuple(builder, a.strides, 2)[0]
                offset = builder.add(builder.mul(r, stride), builder.mul(c, ir.Constant(i64, size)))
                return builder.bitcast(builder.gep(builder.bitcast(a.data, i8p), [offset]), vty.as_pointer())

            rows = [builder.load(row_pointer(S, s_, builder.add(r0_, ir.Constant(i64, r)), c0_), align=size)
                    for r in range(w)]
            half = w // 2
            lo = ir.Constant(ir.VectorType(i32, w), [x for p in range(half) for x in (p, p + w)])
            hi = ir.Constant(ir.VectorType(i32, w), [x for p in range(half, w) for x in (p, p + w)])
            for _ in range(w.bit_length() - 1):
                shuffled = []
                for i in range(half):
                    shuffled += [builder.shuffle_vector(rows[i], rows[i + half], lo),
                                 builder.shuffle_vector(rows[i], rows[i + half], hi)]
                rows = shuffled
            for c in range(w):
                builder.store(rows[c], row_pointer(D, d_, builder.add(dr0_, ir.Constant(i64, c)), dc0_), align=size)
            return context.get_dummy_value()
        return types.void(S, D, r0, c0, dr0, dc0), codegen

    return transpose_tile


transpose_tile = _transpose_tile_intrinsic()


def _compile_layout():
    """Compile ``layout``'s views for compiled code in place (they are plain functions until now, so
    that ``layout`` imports without numba)."""
    from . import layout

    for name in layout.COMPILED:
        fn = getattr(layout, name)
        if not hasattr(fn, "py_func"):
            setattr(layout, name, jit(fn))


_compile_layout()

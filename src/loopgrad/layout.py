"""Where every number lives: the one owner of loopgrad's buffers (as in llm.c).

Parameters: one contiguous block ``theta``. Layer ``l`` (row ``l - 1`` of the table ``layers``)
holds ``W[l]`` (n_in * n_out, row-major, so the view is ``(n_in, n_out)``) followed by ``b[l]``.
The gradient, the optimizer state and the decay mask are blocks of the same layout, so an
update is one loop over the block.

Work: ``Buffers``, made by ``make_buffers`` for a batch capacity of ``rows``, is one flat
block ``work`` with views into it. The table ``slots`` has one row per layer ``l = 0..L``
with the width ``n_l`` and the offsets of ``Z[l]``, ``A[l]`` and ``dZ[l]``, each room for
``rows * n_l`` numbers. Layer 0 is the input: ``A[0] = X`` (scikit-learn's
``activations = [X] + ...``), so no kernel treats the first layer specially, and the epoch
gathers a mini-batch's rows straight into it. The tuned products read W, A_prev and dZ where they
lie, with two exceptions: B4 of a narrow layer (``tables.b4_transposed``, a classifier's output
layer; any layer of a modest W in batches of many rows) reads W^T, copied once per backward pass
into room after the slots (column WT_OFF gives its offset per layer l >= 2, -1 where B4 reads W as
stored); and B2 of a layer with many inputs, in batches of many rows (``tables.reads_panels``), reads
dZ packed into panels once per step, in room of its own (column PANEL_OFF, ``dz_panels``), as F1 of
layer 1 reads W[1] (``tables.f1_reads_panels``, column W_PANEL_OFF, ``w_panels``). Then come
the targets ``Y`` and two vectors of ``rows`` (per-example losses, per-example norms).

Offsets are computed here, once, and nowhere else: the compiled accessors below
(``params``, ``param_rows``, ``z``, ``a``, ``dz``, ``targets``) and the Python ``layer_views`` read the tables.
"""
from typing import NamedTuple

import numpy as np

from .tables import ROW_PASS_ROWS, b4_transposed, f1_reads_panels, k_chunks, reads_panels

# Every block (theta, its gradient and optimizer state, the work block) and every slot in the work
# block starts on a 64-byte cache line: the tuned products move 64-byte vectors on AVX-512, and one
# that straddles two lines costs two accesses. Measured on the AVX-512 Xeon, 64-64-10 at batch 32:
# F1 of layer 1 took 2.8 us on the 16-byte-aligned blocks NumPy happened to give, 2.3 us aligned.
ALIGN_BYTES = 64

# columns of the parameter table ``layers`` (one row per layer l = 1..L)
N_IN, N_OUT, W_OFF, B_OFF, ACT = range(5)
# columns of the work table ``slots`` (one row per layer l = 0..L; row 0 is the input X = A[0]); WT_OFF
# is the offset of W[l]^T (n_l, n_{l-1}), or -1; PART_OFF, in row 1 only, that of the partial sums of
# F1 of layer 1 (``partials``), or -1; PANEL_OFF that of the room for dZ[l]'s packed panels, which B2
# reads in batches of many rows (``dz_panels``), or -1; W_PANEL_OFF, in row 1 only, that of the room for
# W[1]'s packed panels, which the step's F1 of layer 1 reads in batches of many rows (``w_panels``), or -1
WIDTH, Z_OFF, A_OFF, DZ_OFF, WT_OFF, PART_OFF, PANEL_OFF, W_PANEL_OFF = range(8)
# The widest panel of a packed operand, in bytes (two 512-bit vectors, AVX-512): the room for dZ's panels
# holds any narrower panel width too.
WIDEST_PANEL_BYTES = 128


class Net(NamedTuple):
    """The parameter side of a network, as the compiled step receives it."""
    layers: np.ndarray  # (L, 5) int64: n_in, n_out, offset of W, offset of b, activation code
    loss: int           # code of the output's matched loss (B8)
    theta: np.ndarray   # (P,) parameters
    grad: np.ndarray    # (P,) gradient of the last backward pass (overwritten, never accumulated)
    decay: np.ndarray   # (P,) 1 on weights, 0 on biases: weight decay never touches a bias


class Update(NamedTuple):
    """The optimizer side: which update, its constants, and its state in the parameters' layout."""
    code: int           # SGD_CODE or ADAM_CODE (``loopgrad.tables``)
    hyper: np.ndarray   # (N_HYPER,) float64 constants; the step count t is passed on its own
    state: np.ndarray   # (2, P): velocity, or Adam's two moments


class Buffers(NamedTuple):
    """The work side: every activation, delta and scratch of a batch of up to ``rows`` examples."""
    work: np.ndarray    # the one flat block; all fields below are views into it
    slots: np.ndarray   # (L + 1, 8) int64: n_l and the offsets of Z[l], A[l], dZ[l], W[l]^T, F1's partials,
                        # dZ[l]'s panels, W[1]'s panels
    rows: int           # capacity in examples
    y: np.ndarray       # (rows * n_L,) targets of the batch
    losses: np.ndarray  # (rows,) per-example losses L(i)
    norms: np.ndarray   # (rows,) per-example gradient norms (N1) or clipping factors (N2)
    weights: np.ndarray # (rows,) the batch's sample weights; (0,) when the examples are not weighted


def aligned_zeros(shape, dtype):
    """Zeros of ``shape`` and ``dtype`` whose first number starts on an ALIGN_BYTES boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.zeros(nbytes + ALIGN_BYTES, np.uint8)
    start = -raw.ctypes.data % ALIGN_BYTES
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def aligned(array):
    """``array`` itself when it is C-contiguous and starts on an ALIGN_BYTES boundary, else an aligned copy."""
    if array.flags.c_contiguous and array.ctypes.data % ALIGN_BYTES == 0:
        return array
    out = aligned_zeros(array.shape, array.dtype)
    out[...] = array
    return out


def layer_table(sizes, codes):
    """int64 (L, 5): n_in, n_out, offset of W, offset of b, activation code."""
    L = len(sizes) - 1
    table = np.zeros((L, 5), dtype=np.int64)
    off = 0
    for l in range(L):
        n_in, n_out = sizes[l], sizes[l + 1]
        table[l] = (n_in, n_out, off, off + n_in * n_out, codes[l])
        off += n_in * n_out + n_out
    return table


def n_params(layers):
    last = layers[-1]
    return int(last[B_OFF] + last[N_OUT])


def decay_mask(layers, dtype):
    """1 on weights, 0 on biases: weight decay (L2) never touches a bias."""
    mask = np.zeros(n_params(layers), dtype=dtype)
    for n_in, n_out, w_off, _, _ in layers:
        mask[w_off:w_off + n_in * n_out] = 1
    return mask


def param_views(theta, layers):
    """[(W[l], b[l])] for l = 1..L, views into ``theta`` (or any block of its layout)."""
    return [(theta[w:w + i * o].reshape(i, o), theta[b:b + o]) for i, o, w, b, _ in layers]


def make_net(layers, loss, theta):
    """A ``Net`` over ``theta`` (shared, not copied) with a fresh gradient block and decay mask."""
    return Net(layers, np.int64(loss), theta, aligned_zeros(theta.shape, theta.dtype), decay_mask(layers, theta.dtype))


def make_update(optimizer, theta):
    """An ``Update`` for ``optimizer`` (an ``SGD``/``Adam``/``DPSGD``) with zeroed state beside ``theta``."""
    return Update(np.int64(optimizer.code), optimizer.hyper(), aligned_zeros((2, theta.size), theta.dtype))


def make_buffers(layers, rows, dtype, weighted=False, sparse_input=False):
    """``Buffers`` for batches of up to ``rows`` examples through the network ``layers``; with
    ``weighted``, room for a sample weight per example (a weighted mean in J, B2 and B3). With
    ``sparse_input`` the input is a CSR batch passed beside the buffers (``kernels.sparse``): no room
    for a dense A[0]."""
    rows = int(rows)
    if rows < 1:
        raise ValueError(f"rows: expected a batch capacity >= 1, got {rows}")
    widths = [int(layers[0, N_IN])] + [int(n) for n in layers[:, N_OUT]]
    slots = np.full((len(widths), 8), -1, dtype=np.int64)
    line = ALIGN_BYTES // np.dtype(dtype).itemsize

    def room(size):
        nonlocal off
        at = off
        off += -(-size // line) * line  # the next slot starts on a cache line too
        return at

    off = 0
    for l, n in enumerate(widths):
        slots[l, WIDTH] = n
        if l == 0 and sparse_input:
            continue  # no dense A[0]: its slot stays -1 (layer_views gives None)
        for col in ((A_OFF,) if l == 0 else (Z_OFF, A_OFF, DZ_OFF)):
            slots[l, col] = room(rows * n)
    # B4 runs for l >= 2 only: dZ[1] W[1]^T would be dA[0], which nothing needs
    for l in range(2, len(widths)):
        if b4_transposed(widths[l - 1], widths[l], np.dtype(dtype).itemsize, rows):
            slots[l, WT_OFF] = room(widths[l] * widths[l - 1])
    # B2 of a layer whose dW has many rows reads dZ packed into panels, in batches of many rows
    # (``tables.reads_panels``): room for them, so that the step allocates nothing
    widest = WIDEST_PANEL_BYTES // np.dtype(dtype).itemsize
    for l in range(1, len(widths)):
        if reads_panels(widths[l - 1], rows):
            slots[l, PANEL_OFF] = room(-(-widths[l] // widest) * widest * rows)
    # and F1 of layer 1 reads W[1] packed into panels (``tables.f1_reads_panels``): room for them too
    if not sparse_input and f1_reads_panels(rows, widths[0]):
        slots[1, W_PANEL_OFF] = room(-(-widths[1] // widest) * widest * widths[0])
    # the fused step of a small batch may split layer 1's sum over k between threads, by its chunks
    # (``kernels.network``): every chunk but the first then needs a partial sum of its own
    if not sparse_input and k_chunks(widths[0]) > 1:
        slots[1, PART_OFF] = room((k_chunks(widths[0]) - 1) * min(rows, ROW_PASS_ROWS) * widths[1])
    sizes = {"y": rows * widths[-1], "losses": rows, "norms": rows, "weights": rows if weighted else 0}
    work = aligned_zeros(off + sum(sizes.values()), dtype)
    tail = {}
    for name, size in sizes.items():
        tail[name] = work[off:off + size]
        off += size
    return Buffers(work, slots, np.int64(rows), **tail)


def layer_views(buf, m):
    """[(Z[l], A[l], dZ[l])] for l = 0..L, each (m, n_l); Z[0] and dZ[0] are None (A[0] is X)."""
    if not 1 <= m <= buf.rows:
        raise ValueError(f"m: expected 1 <= m <= {buf.rows} rows (the buffers' capacity), got {m}")
    out = []
    for row in buf.slots:
        n = row[WIDTH]
        out.append(tuple(None if o < 0 else buf.work[o:o + m * n].reshape(m, n) for o in row[[Z_OFF, A_OFF, DZ_OFF]]))
    return out


def target_view(buf, m):
    n = int(buf.slots[-1, WIDTH])
    return buf.y[:m * n].reshape(m, n)


def load_batch(buf, X, Y=None, weights=None, m=None):
    """Copy the rows of X (and Y, and their sample weights) into the slots A[0] (and Y, weights); returns m.
    X None (a sparse input, passed beside the buffers): only Y and the weights, of ``m`` rows."""
    m = X.shape[0] if X is not None else m
    if X is not None:
        layer_views(buf, m)[0][1][...] = X
    if Y is not None:
        target_view(buf, m)[...] = Y
    if weights is not None:
        buf.weights[:m] = weights
    return m


# ---- the same views for compiled code ----------------------------------------------------------
# Plain functions here, so that importing layout needs no numba (the ahead-of-time tier, ``_aot``,
# runs without it); ``_numba`` compiles each in place (``COMPILED``) when the kernels load, before
# any kernel that calls them compiles. Each is a compiled function of its own, and together they cost
# a few seconds of a cold compile. Inlining them at numba's IR level was measured on the textbook
# epoch only (18.5 -> 15 s to compile), not on the tuned path: an open lead for cold starts.

def block_view(flat, offset, shape):
    """The numbers ``flat[offset:offset + prod(shape)]`` of a 1-D block as an array of ``shape`` (C order).
    Compiled code builds the view directly (``_numba.flat_view``): numba's ``reshape`` costs a runtime
    call per view."""
    size = 1
    for n in shape:
        size *= n
    return flat[offset:offset + size].reshape(shape)


def params(theta, layers, l):
    """(W, b) of layer ``l + 1`` (row ``l`` of ``layers``) as views into ``theta``."""
    n_in, n_out, w_off, b_off = layers[l, N_IN], layers[l, N_OUT], layers[l, W_OFF], layers[l, B_OFF]
    return block_view(theta, w_off, (n_in, n_out)), theta[b_off:b_off + n_out]


def param_rows(layers, l, j0, j1):
    """The range [p0, p1) of rows j0 <= j < j1 of W of layer ``l + 1`` in theta's layout; b follows W, so
    row j = n_in is b (the fused step updates each block of rows of dW as soon as it is written)."""
    n_out, w_off = layers[l, N_OUT], layers[l, W_OFF]
    return w_off + j0 * n_out, w_off + j1 * n_out


def _slot(buf, l, col, m):
    n = buf.slots[l, WIDTH]
    return block_view(buf.work, buf.slots[l, col], (m, n))


def z(buf, l, m):
    """Z[l] (m, n_l), l = 1..L."""
    return _slot(buf, l, Z_OFF, m)


def a(buf, l, m):
    """A[l] (m, n_l), l = 0..L; A[0] is the batch's X."""
    return _slot(buf, l, A_OFF, m)


def dz(buf, l, m):
    """dZ[l] (m, n_l), l = 1..L."""
    return _slot(buf, l, DZ_OFF, m)


def wt(buf, l):
    """W[l]^T (n_l, n_{l-1}), l = 2..L: the room for the copy that B4 of a narrow layer reads
    (``tables.b4_transposed``); (0, n_{l-1}) where B4 reads W[l] as stored."""
    n, n_prev, o = buf.slots[l, WIDTH], buf.slots[l - 1, WIDTH], buf.slots[l, WT_OFF]
    if o < 0:
        return block_view(buf.work, 0, (0, n_prev))
    return block_view(buf.work, o, (n, n_prev))


def dz_panels(buf, l, m, w):
    """The room for the panels of dZ[l] (m rows) that B2 reads (``kernels.dense._panels_in``), as (ceil(n_l / w),
    m, w) for panels w numbers wide (w divides WIDEST_PANEL_BYTES' numbers); (0, 0, w) where there is none."""
    n, o = buf.slots[l, WIDTH], buf.slots[l, PANEL_OFF]
    if o < 0:
        return block_view(buf.work, 0, (0, 0, w))
    return block_view(buf.work, o, (-(-n // w), m, w))


def w_panels(buf, l, w):
    """The room for the panels of W[l] (n_{l-1} rows) that the step's F1 reads (``kernels.dense._panels_in``), as
    (ceil(n_l / w), n_{l-1}, w) for panels w numbers wide; (0, 0, w) where there is none (only layer 1 has room)."""
    n, n_prev, o = buf.slots[l, WIDTH], buf.slots[l - 1, WIDTH], buf.slots[l, W_PANEL_OFF]
    if o < 0:
        return block_view(buf.work, 0, (0, 0, w))
    return block_view(buf.work, o, (-(-n // w), n_prev, w))


def partials(buf):
    """The partial sums of F1 of layer 1, (k_chunks(n_0) - 1, min(rows, ROW_PASS_ROWS), n_1): row q - 1 for
    chunk q of the sum over k; the first m rows of each serve a batch of m. (0, 0, n_1) when there is no room."""
    n, o = buf.slots[1, WIDTH], buf.slots[1, PART_OFF]
    if o < 0:
        return block_view(buf.work, 0, (0, 0, n))
    cap = min(buf.rows, ROW_PASS_ROWS)
    q = k_chunks(buf.slots[0, WIDTH]) - 1
    return block_view(buf.work, o, (q, cap, n))


def targets(buf, m):
    """Y (m, n_L) of the batch."""
    n = buf.slots[buf.slots.shape[0] - 1, WIDTH]
    return block_view(buf.y, 0, (m, n))


# (``k_chunks`` is the rule of ``tables``, compiled here with the views that read it)
COMPILED = ("params", "param_rows", "_slot", "z", "a", "dz", "wt", "dz_panels", "w_panels", "partials", "targets",
            "k_chunks")

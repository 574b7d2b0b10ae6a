"""Argument checks: the one foundation that the kernels, their NumPy twins and the model all import.

The reference twins import nothing from ``loopgrad.kernels``: an oracle must not depend on what it
checks, so everything both sides validate lives here. Messages follow the dimension checks of
``docs/math.md``: they name the argument, the shape (or dtype, or value) expected and the one received.
"""
import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _fmt_shape(shape):
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def float_array(arg, x, ndim):
    """``x`` as a C-contiguous float32/float64 array of ``ndim`` dims, or a clear error."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{arg}: expected a numpy.ndarray of float32 or float64, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{arg}: expected dtype float32 or float64, got {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{arg}: expected a {ndim}-D array, got {x.ndim}-D with shape {x.shape}")
    if not x.flags.writeable:
        # a read-only array is another type to numba: copy rather than compile every kernel again
        return np.array(x, order="C")
    return np.ascontiguousarray(x)


def float_dtype_name(arg, dtype):
    """'float32' or 'float64' for ``dtype`` given by that name or as a NumPy dtype; else a TypeError."""
    name = str(dtype)
    if name not in tuple(d.name for d in FLOAT_DTYPES):
        raise TypeError(f"{arg}: expected float32 or float64, got {dtype!r}")
    return name


def same_dtype(**arrays):
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} {dt}" for name, dt in dtypes.items())
        raise TypeError(f"arrays must share one dtype (float32 or float64), got {listed}")
    return next(iter(dtypes.values()))


def shape(arg, x, expected, formula):
    """Check ``x.shape`` against ``expected`` (None matches any size).

    ``formula`` is the symbolic shape, e.g. ``"(n_in, n_out)"``.
    """
    ok = len(x.shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape))
    if not ok:
        raise ValueError(f"{arg}: expected shape {formula} = {_fmt_shape(expected)}, got {_fmt_shape(x.shape)}")


def positive_rows(arg, x):
    if x.shape[0] == 0:
        raise ValueError(f"{arg}: expected at least one example (m >= 1), got an empty batch with shape {x.shape}")


def finite(arg, x, block=1 << 16):
    """NaN/inf check in blocks of rows: a whole-array np.isfinite would allocate a boolean copy of x
    (a quarter of a float32 X)."""
    x = np.asarray(x)
    rows = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(-1, 1)
    bad = 0
    for start in range(0, rows.shape[0], block):
        part = rows[start:start + block]
        bad += int(part.size - np.count_nonzero(np.isfinite(part)))
    if bad:
        raise ValueError(f"{arg}: expected finite values, got {bad} NaN or infinite entries")


def real_array(arg, x):
    """``x`` as a NumPy array of real numbers, with a clear word for what users pass instead:
    masked arrays (the mask would be ignored), scipy.sparse matrices, pandas frames with missing
    values (they become object arrays)."""
    if isinstance(x, np.ma.MaskedArray):
        masked = int(np.ma.count_masked(x))
        if masked:
            raise ValueError(f"{arg}: expected plain numbers, got a masked array with {masked} masked entries; "
                             f"fill them (x.filled(value)) or drop those rows")
        x = x.data
    if hasattr(x, "tocsr") and hasattr(x, "nnz"):
        raise TypeError(f"{arg}: expected a dense array, got a scipy.sparse {type(x).__name__}; convert it with "
                        f".toarray() (sparse input is not supported)")
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        if a.dtype.kind == "O" and type(x).__module__.split(".")[0] == "pandas":
            raise TypeError(f"{arg}: expected real numbers, got a pandas {type(x).__name__} that becomes an object "
                            f"array (missing values such as pd.NA, or mixed types); convert with "
                            f".to_numpy(dtype=float, na_value=np.nan) and fill or drop the missing values")
        kind = "complex" if a.dtype.kind == "c" else str(a.dtype)
        raise TypeError(f"{arg}: expected real numbers (int or float), got dtype {kind}")
    return a


def numeric_matrix(arg, x, dtype, n_cols=None, col_name="n_0"):
    """User data (any array-like) as a finite 2-D ``dtype`` array with ``n_cols`` columns."""
    a = real_array(arg, x)
    if a.ndim != 2:
        raise ValueError(f"{arg}: expected a 2-D array (m, {col_name}), got {a.ndim}-D with shape {a.shape}")
    positive_rows(arg, a)
    if n_cols is not None and a.shape[1] != n_cols:
        raise ValueError(f"{arg}: expected shape (m, {col_name}) = (*, {n_cols}), got {_fmt_shape(a.shape)}")
    finite(arg, a)
    a = fits(arg, a, dtype)
    if not a.flags.writeable:
        a = a.copy()
    return a


def in_range(arg, a, dtype):
    """Finite float ``a`` that will be cast to ``dtype`` block by block: an error now for values that
    the cast would turn into inf (min and max need no temporary copy of ``a``)."""
    if a.size and np.dtype(dtype).itemsize < a.dtype.itemsize:
        big = max(abs(float(a.min())), abs(float(a.max())))
        if big > float(np.finfo(dtype).max):
            raise ValueError(f"{arg}: values as large as {big:g} overflow {np.dtype(dtype).name} (largest "
                             f"{float(np.finfo(dtype).max):g}); scale the data or use dtype='float64'")
    return a


def fits(arg, a, dtype):
    """Finite ``a`` as a C-contiguous ``dtype`` array, or an error naming the values that overflow it
    (1e39 is finite in float64 and infinite in float32)."""
    with np.errstate(over="ignore"):  # the overflow is reported below, in words
        out = np.ascontiguousarray(a, dtype=dtype)
    if out.dtype != a.dtype and out.dtype.kind == "f" and not np.isfinite(out).all():
        big = float(np.max(np.abs(a[~np.isfinite(out)])))
        raise ValueError(f"{arg}: values as large as {big:g} overflow {np.dtype(dtype).name} (largest "
                         f"{float(np.finfo(dtype).max):g}); scale the data or use dtype='float64'")
    return out


def integer(name, value, low, high=None):
    """``value`` as an int in [low, high] (no upper bound when ``high`` is None), or a
    TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name}: expected an integer <= {high}, got {value}")
    return int(value)


def number(name, value, low, high=None, low_open=False, high_open=True):
    """``value`` as a finite float in [low, high) (or (low, ...) with ``low_open``; high None: no bound)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = high is not None and (value >= high if high_open else value > high)
    if not np.isfinite(value) or too_low or too_high:
        top = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
        raise ValueError(f"{name}: expected a value in {'(' if low_open else '['}{low}, {top}, got {value}")
    return value


# ---- the kernels' arguments (row convention unless named col) -------------------------------------

def _layer(A_prev, W, b, col):
    """A layer's A_prev, W (and b) in either convention: ``col`` puts units first (W (n_out, n_in),
    A_prev (n_in, m)), the row convention puts them last (W (n_in, n_out), A_prev (m, n_in))."""
    A_prev = float_array("A_prev", A_prev, 2)
    W = float_array("W", W, 2)
    n_in = A_prev.shape[0 if col else 1]
    shape("W", W, (None, n_in) if col else (n_in, None), "(n_out, n_in)" if col else "(n_in, n_out)")
    if b is None:
        same_dtype(A_prev=A_prev, W=W)
        return A_prev, W
    b = float_array("b", b, 1)
    shape("b", b, (W.shape[0 if col else 1],), "(n_out,)")
    same_dtype(A_prev=A_prev, W=W, b=b)
    return A_prev, W, b


def dense_layer(A_prev, W, b=None):
    """A_prev (m, n_in), W (n_in, n_out), b (n_out,) of one float dtype."""
    return _layer(A_prev, W, b, col=False)


def _delta(dZ, A_prev, W, col):
    """dZ of a layer in either convention: (m, n_out) in rows, (n_out, m) in columns."""
    A_prev, W = _layer(A_prev, W, None, col)
    dZ = float_array("dZ", dZ, 2)
    expected = (W.shape[0], A_prev.shape[1]) if col else (A_prev.shape[0], W.shape[1])
    shape("dZ", dZ, expected, "(n_out, m)" if col else "(m, n_out)")
    same_dtype(dZ=dZ, W=W)
    return dZ, A_prev, W


def dense_delta(dZ, A_prev, W):
    """dZ (m, n_out) for a layer A_prev (m, n_in), W (n_in, n_out)."""
    return _delta(dZ, A_prev, W, col=False)


def example_pair(A_prev, dZ):
    """A_prev (m, n_in) and dZ (m, n_out): one row per example in both."""
    A_prev = float_array("A_prev", A_prev, 2)
    dZ = float_array("dZ", dZ, 2)
    shape("dZ", dZ, (A_prev.shape[0], None), "(m, n_out)")
    same_dtype(A_prev=A_prev, dZ=dZ)
    return A_prev, dZ


def activation_pair(dA, Z, A):
    """dA, Z and A = g(Z), all (m, n)."""
    dA, Z, A = (float_array(n, x, 2) for n, x in (("dA", dA), ("Z", Z), ("A", A)))
    same_dtype(dA=dA, Z=Z, A=A)
    shape("dA", dA, Z.shape, "(m, n) of Z")
    shape("A", A, Z.shape, "(m, n) of Z")
    return dA, Z, A


def targets(arg, Z, Y):
    """Output-layer values ``arg`` (m, n_L) and targets Y of the same shape."""
    Z = float_array(arg, Z, 2)
    Y = float_array("Y", Y, 2)
    shape("Y", Y, Z.shape, "(m, n_L)")
    same_dtype(**{arg: Z, "Y": Y})
    return Z, Y


def param_blocks(theta, **blocks):
    """theta (P,) and blocks of the same layout (grad, optimizer state, decay mask)."""
    theta = float_array("theta", theta, 1)
    out = [theta]
    for name, x in blocks.items():
        x = float_array(name, x, 1)
        shape(name, x, theta.shape, "(P,) of theta")
        out.append(x)
    same_dtype(theta=theta, **dict(zip(blocks, out[1:])))
    return out


def col_layer(A_prev, W, b=None):
    """Column convention: A_prev (n_in, m), W (n_out, n_in), b (n_out,)."""
    return _layer(A_prev, W, b, col=True)


def col_delta(dZ, A_prev, W):
    """Column convention: dZ (n_out, m) for A_prev (n_in, m), W (n_out, n_in)."""
    return _delta(dZ, A_prev, W, col=True)


def csr(arg, data, indices, indptr, n_cols=None):
    """The three arrays of a CSR matrix, checked: data a finite float vector, indices int64 in
    [0, n_cols), indptr int64 non-decreasing from 0 to len(data). Returns them contiguous."""
    data = float_array(f"{arg}.data", data, 1)
    finite(f"{arg}.data", data)
    indices, indptr = np.asarray(indices), np.asarray(indptr)
    for name, a in (("indices", indices), ("indptr", indptr)):
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise TypeError(f"{arg}.{name}: expected a 1-D integer array, got {a.dtype} of shape {a.shape}")
    if indices.shape != data.shape:
        raise ValueError(f"{arg}.indices: expected shape {data.shape} to match {arg}.data, got {indices.shape}")
    if indptr.size < 1 or indptr[0] != 0 or indptr[-1] != data.size or (np.diff(indptr) < 0).any():
        raise ValueError(f"{arg}.indptr: expected non-decreasing offsets from 0 to nnz = {data.size}, got "
                         f"{indptr[:3].tolist()}...{indptr[-1:].tolist()}")
    if indices.size and (indices.min() < 0 or (n_cols is not None and indices.max() >= n_cols)):
        raise ValueError(f"{arg}.indices: expected column indices in [0, {n_cols}), got {int(indices.min())}.."
                         f"{int(indices.max())}")
    return (np.ascontiguousarray(data), np.ascontiguousarray(indices, dtype=np.int64),
            np.ascontiguousarray(indptr, dtype=np.int64))


def listing(values, n=8):
    """``values`` as a short list for a message: all of them, or the first ``n`` and the count."""
    values = list(np.asarray(values).tolist())
    return str(values) if len(values) <= n else str(values[:n])[:-1] + f", ... ({len(values)} in all)]"

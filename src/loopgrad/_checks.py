"""Argument checks shared by the kernels, their twins and the model.

Messages follow the dimension checks of MATH.md: they name the argument, the
shape (or dtype, or value) expected and the one received.
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


def finite(arg, x):
    if not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(f"{arg}: expected finite values, got {bad} NaN or infinite entries")


def numeric_matrix(arg, x, dtype, n_cols=None, col_name="n_0"):
    """User data (any array-like) as a finite 2-D ``dtype`` array with ``n_cols`` columns."""
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        kind = "complex" if a.dtype.kind == "c" else str(a.dtype)
        raise TypeError(f"{arg}: expected real numbers (int or float), got dtype {kind}")
    if a.ndim != 2:
        raise ValueError(f"{arg}: expected a 2-D array (m, {col_name}), got {a.ndim}-D with shape {a.shape}")
    positive_rows(arg, a)
    if n_cols is not None and a.shape[1] != n_cols:
        raise ValueError(f"{arg}: expected shape (m, {col_name}) = (*, {n_cols}), got {_fmt_shape(a.shape)}")
    a = np.ascontiguousarray(a, dtype=dtype)
    if not a.flags.writeable:
        a = a.copy()
    finite(arg, a)
    return a

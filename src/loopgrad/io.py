"""Model files, both ways: ``write_model`` (atomic) and ``read_model`` (untrusted input).

A model file is an ``.npz`` archive of plain arrays (never a pickle): format version, layer
sizes, activations, dtype, seed and the parameter block ``theta``. Reading validates every field,
with bounds, before anything is allocated; every failure is a ValueError that names the file and
the field.
"""
import os
import tempfile
import zipfile

import numpy as np

from .tables import ACTIVATIONS, DTYPES, OUTPUT_LOSS

FORMAT_VERSION = 1
_KEYS = {"format_version", "sizes", "hidden", "output", "dtype", "theta"}
# A file may describe at most this many parameters (4 GiB of float64): checked before allocating.
MAX_PARAMS = 1 << 29


def write_model(model, path):
    """Write ``model`` to exactly ``path``, atomically: a temporary file in the same folder is
    written, flushed and fsync'ed, then renamed over the target, so a crash or a full disk leaves
    the previous file as it was."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".loopgrad-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, format_version=np.int64(FORMAT_VERSION), sizes=np.asarray(model.sizes, np.int64),
                     hidden=np.str_(model.hidden), output=np.str_(model.output), dtype=np.str_(model.dtype.name),
                     seed=np.int64(model.seed if model.seed is not None else -1), theta=model.theta)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fields(path):
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ValueError("expected an .npz archive written by MLP.save, got a single array")
        with f:
            missing = _KEYS - set(f.files)
            if missing:
                raise ValueError(f"expected the keys {sorted(_KEYS)}, missing {sorted(missing)}")
            return {k: f[k] for k in _KEYS | ({"seed"} & set(f.files))}
    except ValueError as e:
        raise ValueError(f"{path}: not a loopgrad model file: {e}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"{path}: not a loopgrad model file (unreadable or truncated: {e})") from None


def _scalar(path, data, key, kind):
    value = data[key]
    if value.shape != () or value.dtype.kind not in kind:
        raise ValueError(f"{path}: field {key!r}: expected a scalar of kind {kind!r}, got {value.dtype} "
                         f"of shape {value.shape}")
    return value.item()


def read_model(cls, path):
    """Restore a model written by ``write_model``; never unpickles."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file")
    data = _fields(path)
    version = _scalar(path, data, "format_version", "iu")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: field 'format_version': format version {version} is not supported "
                         f"(expected {FORMAT_VERSION})")
    dtype = _scalar(path, data, "dtype", "U")
    if dtype not in DTYPES:
        raise ValueError(f"{path}: field 'dtype': expected float32 or float64, got {dtype!r}")
    hidden, output = _scalar(path, data, "hidden", "U"), _scalar(path, data, "output", "U")
    if hidden not in ACTIVATIONS or output not in OUTPUT_LOSS:
        raise ValueError(f"{path}: fields 'hidden'/'output': expected an activation of {ACTIVATIONS} and an "
                         f"output of {tuple(OUTPUT_LOSS)}, got {hidden!r}, {output!r}")
    sizes = data["sizes"]
    if sizes.ndim != 1 or sizes.dtype.kind not in "iu" or sizes.size < 2 or (sizes < 1).any():
        raise ValueError(f"{path}: field 'sizes': expected at least two layer widths >= 1, got {sizes!r}")
    # count the parameters in Python integers before building anything: a crafted file cannot
    # make the reader allocate more than the theta it actually carries
    sizes = [int(n) for n in sizes]
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    theta = data["theta"]
    if n_params > MAX_PARAMS or theta.shape != (n_params,) or theta.dtype != np.dtype(dtype):
        raise ValueError(f"{path}: field 'theta': parameters of shape {theta.shape} {theta.dtype} do not match "
                         f"the architecture {sizes}, which needs ({n_params},) {dtype}")
    if not np.isfinite(theta).all():
        raise ValueError(f"{path}: field 'theta': expected finite parameters, got "
                         f"{int(theta.size - np.isfinite(theta).sum())} NaN or infinite values")
    seed = _scalar(path, data, "seed", "iu") if "seed" in data else 0
    model = cls(sizes, hidden=hidden, output=output, dtype=dtype, seed=None if seed < 0 else seed)
    model.theta[...] = theta
    return model

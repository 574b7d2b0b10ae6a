"""Reading model files: every failure is a ValueError that names the file and what is wrong."""
import os
import zipfile

import numpy as np

from .tables import DTYPES

_KEYS = {"format_version", "sizes", "hidden", "output", "dtype", "theta"}


def read_model(cls, path):
    from .model import FORMAT_VERSION

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ValueError("expected an .npz archive written by MLP.save, got a single array")
        with f:
            missing = _KEYS - set(f.files)
            if missing:
                raise ValueError(f"expected the keys {sorted(_KEYS)}, missing {sorted(missing)}")
            data = {k: f[k] for k in _KEYS}
    except ValueError as e:
        raise ValueError(f"{path}: not a loopgrad model file: {e}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"{path}: not a loopgrad model file (unreadable or truncated: {e})") from None
    version = int(data["format_version"])
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version} is not supported (expected {FORMAT_VERSION})")
    dtype = str(data["dtype"])
    if dtype not in DTYPES:
        raise ValueError(f"{path}: dtype {dtype!r} is not float32 or float64")
    try:
        model = cls([int(n) for n in data["sizes"]], hidden=str(data["hidden"]), output=str(data["output"]),
                    dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: invalid architecture: {e}") from None
    theta = data["theta"]
    if theta.shape != model.theta.shape or theta.dtype != model.dtype:
        raise ValueError(f"{path}: parameters of shape {theta.shape} {theta.dtype} do not match the architecture "
                         f"{model.sizes}, which needs ({model.theta.size},) {model.dtype}")
    model.theta[...] = theta
    return model

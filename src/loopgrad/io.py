"""Model files, both ways: ``write_model`` (atomic) and ``read_model`` (untrusted input).

A model file is an ``.npz`` archive of plain arrays (never a pickle). Format 2 holds: format
version, layer sizes, one activation per layer, dtype, seed and the parameter block ``theta``;
and, where the model has them, ``classes`` (the labels of the outputs: numbers or strings),
``metadata`` (one JSON text: feature names, input and target scaling, training configuration,
data fingerprint, split seed, package version, ...) and ``training_rows`` (a sorted uint64
fingerprint of every training row, so that ``predict`` can tell which rows the model saw).
Format 1 files (no activations list, classes or metadata) still load.

Reading validates every field, with bounds, before anything is allocated; every failure is a
ValueError that names the file and the field.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from .tables import DTYPES, OUTPUT_LOSS
from .tables import HIDDEN_ACTIVATIONS as ACTIVATIONS

FORMAT_VERSION = 2
_KEYS = {"format_version", "sizes", "output", "dtype", "theta"}
_OPTIONAL = {"seed", "hidden", "activations", "classes", "metadata", "training_rows"}
# The JSON metadata and the training-row fingerprints are bounded too (a crafted file must not
# make the reader parse gigabytes).
MAX_METADATA_CHARS = 1 << 24
MAX_TRAINING_ROWS = 1 << 27
# A file may describe at most this many parameters (4 GiB of float64): checked before allocating.
MAX_PARAMS = 1 << 29


def atomic_write(path, write):
    """Call ``write(f)`` on a temporary file in ``path``'s folder, flush and fsync it, then rename it
    over ``path``: a crash or a full disk leaves the previous file as it was, never half a file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".loopgrad-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_model(model, path):
    """Write ``model`` to exactly ``path``, atomically (``atomic_write``)."""
    fields = dict(format_version=np.int64(FORMAT_VERSION), sizes=np.asarray(model.sizes, np.int64),
                  activations=np.asarray(model.activations, dtype=str), output=np.str_(model.output),
                  dtype=np.str_(model.dtype.name), seed=np.int64(model.seed if model.seed is not None else -1),
                  theta=model.theta, metadata=np.str_(json.dumps(model.metadata, allow_nan=False)))
    if model.classes is not None:
        fields["classes"] = np.asarray(model.classes)
    if getattr(model, "training_rows", None) is not None:
        fields["training_rows"] = np.asarray(model.training_rows, np.uint64)
    atomic_write(path, lambda f: np.savez(f, **fields))


def _fields(path):
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ValueError("expected an .npz archive written by MLP.save, got a single array")
        with f:
            missing = _KEYS - set(f.files)
            if missing:
                raise ValueError(f"expected the keys {sorted(_KEYS)}, missing {sorted(missing)}")
            return {k: f[k] for k in _KEYS | (_OPTIONAL & set(f.files))}
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
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path += ".npz"
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file")
    data = _fields(path)
    version = _scalar(path, data, "format_version", "iu")
    if version not in (1, FORMAT_VERSION):
        raise ValueError(f"{path}: field 'format_version': format version {version} is not supported "
                         f"(expected 1 or {FORMAT_VERSION}; a newer loopgrad wrote it?)")
    dtype = _scalar(path, data, "dtype", "U")
    if dtype not in DTYPES:
        raise ValueError(f"{path}: field 'dtype': expected float32 or float64, got {dtype!r}")
    output = _scalar(path, data, "output", "U")
    if output not in OUTPUT_LOSS:
        raise ValueError(f"{path}: field 'output': expected one of {tuple(OUTPUT_LOSS)}, got {output!r}")
    sizes = data["sizes"]
    if sizes.ndim != 1 or sizes.dtype.kind not in "iu" or sizes.size < 2 or sizes.size > 10_000 or (sizes < 1).any():
        raise ValueError(f"{path}: field 'sizes': expected at least two layer widths >= 1, got {sizes!r}")
    # count the parameters in Python integers before building anything: a crafted file cannot
    # make the reader allocate more than the theta it actually carries
    sizes = [int(n) for n in sizes]
    hidden = _hidden(path, data, len(sizes) - 1, output)
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
    model.classes = _classes(path, data, model)
    model.metadata = _metadata(path, data, sizes[0])
    model.training_rows = _training_rows(path, data)
    return model


def _hidden(path, data, L, output):
    """The hidden activations: one name (format 1, field 'hidden') or one per layer (format 2)."""
    if "activations" in data:
        acts = data["activations"]
        if acts.ndim != 1 or acts.dtype.kind != "U" or acts.size != L or acts[-1] != output:
            raise ValueError(f"{path}: field 'activations': expected {L} names ending in the output {output!r}, "
                             f"got {acts.tolist() if acts.size <= 16 else acts.shape}")
        names = [str(a) for a in acts[:-1]]
    elif "hidden" in data:
        hidden = _scalar(path, data, "hidden", "U")
        if hidden not in ACTIVATIONS:
            raise ValueError(f"{path}: field 'hidden': expected an activation of {ACTIVATIONS}, got {hidden!r}")
        names = [hidden] * (L - 1)
    else:
        raise ValueError(f"{path}: expected the field 'activations' (or 'hidden' in format 1), found neither")
    bad = [a for a in names if a not in ACTIVATIONS]
    if bad:
        raise ValueError(f"{path}: field 'activations': expected names of {ACTIVATIONS}, got {bad[0]!r}")
    return names[0] if len(set(names)) == 1 else names if names else "relu"


def _classes(path, data, model):
    if "classes" not in data:
        return None
    classes = data["classes"]
    if not model.is_classifier or classes.ndim != 1 or classes.dtype.kind not in "iufUb" \
            or classes.size != model.n_classes:
        raise ValueError(f"{path}: field 'classes': expected {model.n_classes} labels (numbers or strings) for "
                         f"this {model.output} output, got {classes.dtype} of shape {classes.shape}")
    if classes.size != np.unique(classes).size or np.any(classes[1:] < classes[:-1]):
        raise ValueError(f"{path}: field 'classes': expected sorted distinct labels")
    return classes


def _metadata(path, data, n_features):
    if "metadata" not in data:
        return {}
    text = data["metadata"]
    if text.shape != () or text.dtype.kind != "U" or len(str(text)) > MAX_METADATA_CHARS:
        raise ValueError(f"{path}: field 'metadata': expected one JSON text of at most {MAX_METADATA_CHARS} "
                         f"characters")
    try:
        meta = json.loads(str(text))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: field 'metadata': not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: field 'metadata': expected a JSON object, got {type(meta).__name__}")
    names = meta.get("feature_names")
    if names is not None and (not isinstance(names, list) or len(names) != n_features
                              or not all(isinstance(n, str) for n in names)):
        raise ValueError(f"{path}: metadata 'feature_names': expected {n_features} column names")
    for key in ("input_mean", "input_scale"):
        values = meta.get(key)
        if values is not None and (not isinstance(values, list) or len(values) != n_features or not all(
                isinstance(v, (int, float)) and np.isfinite(v) for v in values)):
            raise ValueError(f"{path}: metadata {key!r}: expected {n_features} finite numbers")
    if meta.get("input_scale") is not None and min(meta["input_scale"]) <= 0:
        raise ValueError(f"{path}: metadata 'input_scale': expected positive scales")
    for key in ("target_mean", "target_scale"):
        values = meta.get(key)
        if values is not None and (not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and np.isfinite(v) for v in values)):
            raise ValueError(f"{path}: metadata {key!r}: expected a list of finite numbers")
    return meta


def _training_rows(path, data):
    if "training_rows" not in data:
        return None
    rows = data["training_rows"]
    if rows.ndim != 1 or rows.dtype != np.uint64 or rows.size > MAX_TRAINING_ROWS:
        raise ValueError(f"{path}: field 'training_rows': expected a 1-D uint64 array of at most "
                         f"{MAX_TRAINING_ROWS} row fingerprints, got {rows.dtype} of shape {rows.shape}")
    return rows

"""Your own data: reading a table, standardising it, and recognising rows a model was trained on.

``read_table`` reads CSV (with a header row), ``.npz`` (arrays ``X`` and ``y``), ``.npy`` (one
matrix; the target is a column index) and Parquet (where pandas and pyarrow are installed).
Features must be numbers; the target may be anything (string labels, 1..K, real values).

A model trained by ``loopgrad train`` on such a table keeps in its file what using it safely
needs (``MLP.metadata``): the feature names, each feature's mean and scale, the target's scaling,
the classes, the configuration, a fingerprint of the data and the split seed; and
``MLP.training_rows``, a fingerprint of every training row (``row_fingerprints``), so that
``predict`` can leave the rows the model saw out of any score it reports.
"""
import csv
import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from . import _checks

SUFFIXES = (".csv", ".npz", ".npy", ".parquet")


@dataclass
class Table:
    """Rows of numeric features ``X`` (m, n) float64, their ``feature_names``, and the target
    column ``y`` (m,) as read (None when the table has no target column)."""
    X: np.ndarray
    y: object
    feature_names: list
    target: object
    path: str
    ignored: list = field(default_factory=list)  # columns present but not used as features

    @property
    def fingerprint(self):
        """sha256 (first 16 hex digits) of the features and the target as read."""
        h = hashlib.sha256(np.ascontiguousarray(self.X).tobytes())
        h.update("\0".join(self.feature_names).encode())
        if self.y is not None:
            h.update(np.asarray(self.y).astype(str).tobytes())
        return h.hexdigest()[:16]


def read_table(path, target=None, features=None, target_optional=False):
    """Read ``path`` into a ``Table``. ``target`` names the target column (for ``.npy``, its index;
    ``.npz`` files carry ``y`` instead). With ``features`` (the names a model was trained on) the
    feature columns are taken by name, in that order: a missing one is an error, an extra one is
    listed in ``Table.ignored``. With ``target_optional`` a table without the target column is
    read with ``y = None`` (predictions for new rows)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such data file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".csv":
        names, columns = _csv_columns(path)
    elif suffix == ".parquet":
        names, columns = _parquet_columns(path)
    elif suffix == ".npz":
        return _npz_table(path, features)
    elif suffix == ".npy":
        return _npy_table(path, target, features)
    else:
        raise ValueError(f"{path}: expected a data file ending in one of {', '.join(SUFFIXES)}, got {suffix!r}")
    if target_optional and target is not None and str(target) not in names:
        target = None
    return _from_columns(path, names, columns, target, features)


def _csv_columns(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise ValueError(f"{path}: the file is empty; expected a header row of column names") from None
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}: line {line}: expected {len(header)} fields as in the header, got {len(row)}")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no data rows after the header")
    return header, [list(col) for col in zip(*rows)]


def _parquet_columns(path):
    try:
        import pandas as pd
        frame = pd.read_parquet(path)
    except ImportError as e:
        raise ImportError(f"{path}: reading Parquet needs pandas and pyarrow (pip install pandas pyarrow): {e}") from None
    return [str(c) for c in frame.columns], [frame[c].to_numpy() for c in frame.columns]


def _from_columns(path, names, columns, target, features):
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{path}: duplicate column names {dup}")
    if target is not None and str(target) not in names:
        raise ValueError(f"--target: column {target!r} is not in {path}; its columns are {names}")
    y = _target_values(columns[names.index(str(target))]) if target is not None else None
    if features is None:
        chosen, ignored = [n for n in names if n != target], []
    else:
        missing = [n for n in features if n not in names]
        if missing:
            raise ValueError(f"{path}: the model was trained on columns missing here: {missing} "
                             f"(expected the {len(features)} feature columns {list(features)})")
        chosen, ignored = list(features), [n for n in names if n not in features and n != target]
    if not chosen:
        raise ValueError(f"{path}: no feature columns besides the target {target!r}")
    X = np.empty((len(columns[0]), len(chosen)), np.float64)
    for j, name in enumerate(chosen):
        X[:, j] = _numeric_column(path, name, columns[names.index(name)])
    return Table(X, y, chosen, target, path, ignored)


def _numeric_column(path, name, values):
    try:
        col = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(col)
    except (ValueError, TypeError):
        col, bad = None, None
    if bad is None or bad.any():
        for i, v in enumerate(values):
            try:
                ok = np.isfinite(float(v))
            except (ValueError, TypeError):
                ok = False
            if not ok:
                raise ValueError(f"{path}: column {name!r}, data row {i + 1}: expected a finite number, got {v!r} "
                                 f"(features must be numeric and complete: encode categories as numbers and fill "
                                 f"missing values first, or leave the column out)")
    return col


def _target_values(values):
    """The target as numbers when every entry is one (int64 when all are whole), else as strings."""
    try:
        y = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError):
        return np.asarray([str(v).strip() for v in values])
    if np.all(np.isfinite(y)) and np.all(y == np.round(y)) and np.all(np.abs(y) < 2 ** 53):
        return y.astype(np.int64)
    return y


def _npz_table(path, features):
    with np.load(path, allow_pickle=False) as f:
        keys = {k.lower(): k for k in f.files}
        if "x" not in keys:
            raise ValueError(f"{path}: expected an array named 'X' (and 'y' for the targets), found {f.files}")
        X = np.asarray(f[keys["x"]])
        y = np.asarray(f[keys["y"]]) if "y" in keys else None
        names = [str(n) for n in f[keys["feature_names"]]] if "feature_names" in keys else None
    if X.ndim != 2:
        raise ValueError(f"{path}: array 'X': expected a matrix (m, n), got shape {X.shape}")
    names = names or [f"x{j}" for j in range(X.shape[1])]
    if y is not None and (y.ndim not in (1, 2) or y.shape[0] != X.shape[0]):
        raise ValueError(f"{path}: array 'y': expected {X.shape[0]} rows to match 'X', got shape {y.shape}")
    if y is not None and y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    columns = [X[:, j] for j in range(X.shape[1])]
    table = _from_columns(path, names, columns, None, features)
    table.y, table.target = (None if y is None else _target_values(y) if y.ndim == 1 else y), ("y" if y is not None else None)
    return table


def _npy_table(path, target, features):
    A = np.load(path, allow_pickle=False)
    if A.ndim != 2:
        raise ValueError(f"{path}: expected a matrix (m, n), got shape {A.shape}")
    names = [f"x{j}" for j in range(A.shape[1])]
    if target is not None and isinstance(target, str) and target in names:
        target = names.index(target)
    if features is not None and not set(features) <= set(names):
        # a model trained on named columns: an .npy file has no names, so its columns are taken by position
        if A.shape[1] != len(features):
            raise ValueError(f"{path}: the model expects {len(features)} feature columns {list(features)}, the file "
                             f"has {A.shape[1]} (an .npy file has no column names: columns are taken by position)")
        names, target = list(features), None
    elif target is not None and features is not None and A.shape[1] == len(features):
        target = None  # predictions for new rows: only the feature columns
    if target is not None:
        try:
            index = int(target)
        except ValueError:
            raise ValueError(f"--target: for an .npy file, the target is a column index in [0, {A.shape[1]}), "
                             f"got {target!r}") from None
        if not -A.shape[1] <= index < A.shape[1]:
            raise ValueError(f"--target: column index {index} is outside [0, {A.shape[1]}) for {path}")
        target = names[index]
    return _from_columns(path, names, [A[:, j] for j in range(A.shape[1])], target, features)


def row_fingerprints(X):
    """One uint64 per row of X (as float64), equal for equal rows: FNV-1a over the bits of each
    value (-0.0 counted as 0.0) with a final mix. Collisions between distinct rows are ~2^-64."""
    bits = (np.ascontiguousarray(X, dtype=np.float64) + 0.0).view(np.uint64)
    h = np.full(bits.shape[0], 0xCBF29CE484222325, np.uint64)
    prime, shift = np.uint64(0x100000001B3), np.uint64(31)
    for j in range(bits.shape[1]):
        h ^= bits[:, j]
        h *= prime
        h ^= h >> shift
    return h


def seen_rows(model, X):
    """Boolean (m,): which rows of X (raw features, float64) the model was trained on, by the
    fingerprints its file keeps; all False when it keeps none."""
    if model.training_rows is None or len(model.training_rows) == 0:
        return np.zeros(len(X), bool)
    return np.isin(row_fingerprints(X), model.training_rows)


def standardiser(X):
    """(mean, scale) per column; a constant column gets scale 1."""
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale == 0] = 1.0
    return mean, scale


def model_inputs(model, table):
    """The table's features as the model takes them: checked against its feature names and
    standardised with the scaling kept in its file."""
    meta = model.metadata
    if table.X.shape[1] != model.sizes[0]:
        names = _checks.listing(meta["feature_names"]) if meta.get("feature_names") else ""
        raise ValueError(f"{table.path}: the model expects {model.sizes[0]} features {names}, the file has "
                         f"{table.X.shape[1]}")
    X = table.X
    if meta.get("input_mean") is not None:
        X = (X - np.asarray(meta["input_mean"])) / np.asarray(meta["input_scale"])
    return X


def targets_out(model, values):
    """A regression model's outputs in the target's own units (undoing the scaling kept in its file)."""
    meta = model.metadata
    if meta.get("target_mean") is None:
        return values
    mean, scale = np.asarray(meta["target_mean"]), np.asarray(meta["target_scale"])
    return values * (scale[0] if values.ndim == 1 else scale) + (mean[0] if values.ndim == 1 else mean)


def confusion_matrix(y_true, y_pred, labels):
    """counts[i, j]: rows of class labels[i] predicted as labels[j]."""
    index = {label: i for i, label in enumerate(np.asarray(labels).tolist())}
    counts = np.zeros((len(index), len(index)), np.int64)
    for t, p in zip(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist()):
        counts[index[t], index[p]] += 1
    return counts


def format_confusion(counts, labels):
    names = [str(v) for v in np.asarray(labels).tolist()]
    width = max(6, *(len(n) for n in names), len(str(int(counts.max(initial=0)))))
    lines = ["confusion matrix (rows: true class, columns: predicted)",
             " " * (width + 2) + " ".join(f"{n:>{width}}" for n in names)]
    for name, row in zip(names, counts):
        lines.append(f"{name:>{width}}  " + " ".join(f"{c:>{width}}" for c in row))
    return "\n".join(lines)

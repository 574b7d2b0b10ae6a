"""Real data sets shipped inside the package (no download, and no scikit-learn import at run time).

``load(name)`` returns a ``Dataset`` with a fixed-seed train/test split (stratified by class for
classification); inputs are standardised with the training split's mean and std (and regression
targets too, so that a squared-error loss starts near 1). digits, iris, breast_cancer, wine and
diabetes are scikit-learn's copies of the UCI sets, stored in ``data/builtin.npz`` by
``tools/make_datasets.py``; moons is drawn here, two interleaved half circles with Gaussian noise.
"""
import pathlib
from dataclasses import dataclass

import numpy as np

NAMES = ("digits", "iris", "breast_cancer", "wine", "diabetes", "moons")
_BUILTIN = pathlib.Path(__file__).parent / "data" / "builtin.npz"


@dataclass
class Dataset:
    name: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    task: str              # "classification" or "regression"
    n_classes: int         # 0 for regression
    y_mean: float = 0.0    # regression targets were standardised with these
    y_scale: float = 1.0
    raw_train: np.ndarray = None  # the features as stored, before standardising (float64)
    raw_test: np.ndarray = None
    x_mean: np.ndarray = None     # the training split's mean and std that standardised them
    x_scale: np.ndarray = None

    @property
    def n_features(self):
        return self.X_train.shape[1]


def _moons(n, noise, seed):
    rng = np.random.default_rng(seed)
    n_out = n // 2
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n - n_out)
    X = np.concatenate([np.c_[np.cos(t_out), np.sin(t_out)], np.c_[1 - np.cos(t_in), 0.5 - np.sin(t_in)]])
    y = np.r_[np.zeros(n_out, np.int64), np.ones(n - n_out, np.int64)]
    return X + rng.normal(0.0, noise, X.shape), y


def _raw(name, seed):
    if name == "moons":
        return _moons(1000, 0.2, seed)
    with np.load(_BUILTIN) as f:
        return f[f"{name}_X"].astype(np.float64), f[f"{name}_y"]


def split(y, test_size, seed, stratify):
    """(train rows, test rows): a seeded shuffle; with ``stratify`` each class gives its share of
    round(test_size * n_class) test rows, so both splits keep the class proportions."""
    rng = np.random.default_rng(seed)
    if not stratify:
        order = rng.permutation(len(y))
        n_test = int(round(test_size * len(y)))
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    test = []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        test.append(rows[:int(round(test_size * rows.size))])
    test = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(y)), test), test


def load(name, test_size=0.2, seed=0, dtype="float64"):
    """Load ``name`` (one of ``NAMES``) split into train/test with ``seed``."""
    if name not in NAMES:
        raise ValueError(f"dataset: expected one of {', '.join(NAMES)}, got {name!r}")
    X, y = _raw(name, seed)
    regression = name == "diabetes"
    tr, te = split(y, test_size, seed, stratify=not regression)
    X_tr, X_te, y_tr, y_te = X[tr], X[te], y[tr], y[te]
    mu, sd = X_tr.mean(axis=0), X_tr.std(axis=0)
    sd[sd == 0] = 1.0
    data = dict(name=name, X_train=((X_tr - mu) / sd).astype(dtype), X_test=((X_te - mu) / sd).astype(dtype),
                raw_train=X_tr, raw_test=X_te, x_mean=mu, x_scale=sd)
    if regression:
        y_mean, y_scale = float(y_tr.mean()), float(y_tr.std())
        return Dataset(**data, y_train=((y_tr - y_mean) / y_scale).astype(dtype),
                       y_test=((y_te - y_mean) / y_scale).astype(dtype), task="regression", n_classes=0,
                       y_mean=y_mean, y_scale=y_scale)
    return Dataset(**data, y_train=y_tr.astype(np.int64), y_test=y_te.astype(np.int64), task="classification",
                   n_classes=int(np.max(y)) + 1)


def model_for(data, hidden=(64,), activation="relu", dtype="float32", seed=0):
    """An MLP shaped for ``data``: softmax over the classes, one sigmoid unit for two, identity for regression."""
    from .model import MLP

    if data.task == "regression":
        out, n_out = "identity", 1
    elif data.n_classes == 2:
        out, n_out = "sigmoid", 1
    else:
        out, n_out = "softmax", data.n_classes
    return MLP([data.n_features, *hidden, n_out], hidden=activation, output=out, dtype=dtype, seed=seed)

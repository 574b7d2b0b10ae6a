"""Real data sets that ship inside installed packages (no download at run time).

``load(name)`` returns a ``Dataset`` with a fixed-seed train/test split; inputs
are standardised with the training split's mean and std (and regression targets
too, so that a squared-error loss starts near 1).
"""
from dataclasses import dataclass

import numpy as np

NAMES = ("digits", "iris", "breast_cancer", "wine", "diabetes", "moons")


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

    @property
    def n_features(self):
        return self.X_train.shape[1]


def _raw(name, seed):
    from sklearn import datasets as skd

    if name == "moons":
        return skd.make_moons(n_samples=1000, noise=0.2, random_state=seed)
    loader = {"digits": skd.load_digits, "iris": skd.load_iris, "breast_cancer": skd.load_breast_cancer,
              "wine": skd.load_wine, "diabetes": skd.load_diabetes}[name]
    return loader(return_X_y=True)


def load(name, test_size=0.2, seed=0, dtype="float64"):
    """Load ``name`` (one of ``NAMES``) split into train/test with ``seed``."""
    from sklearn.model_selection import train_test_split

    if name not in NAMES:
        raise ValueError(f"dataset: expected one of {', '.join(NAMES)}, got {name!r}")
    X, y = _raw(name, seed)
    regression = name == "diabetes"
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, random_state=seed,
                                              stratify=None if regression else y)
    mu, sd = X_tr.mean(axis=0), X_tr.std(axis=0)
    sd[sd == 0] = 1.0
    X_tr, X_te = ((a - mu) / sd for a in (X_tr, X_te))
    data = dict(name=name, X_train=X_tr.astype(dtype), X_test=X_te.astype(dtype))
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

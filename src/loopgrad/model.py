"""The multi-layer perceptron: composes the kernels and owns the buffers."""
import time
from dataclasses import dataclass, field

import numpy as np

from . import _checks, kernels, layout, reference
from . import optim as _optim
from .kernels import network as loop_network
from .reference import network as numpy_network
from .tables import ACTIVATIONS, DTYPES, HE_INIT, LOSS_CODE, OUTPUT_LOSS, activation_code

FORMAT_VERSION = 1
BACKENDS = {"loops": (kernels, loop_network), "numpy": (reference, numpy_network)}


def _backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected 'loops' or 'numpy', got {backend!r}")
    return BACKENDS[backend]


def _int_arg(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value}")
    return int(value)


@dataclass
class History:
    """Per-epoch record of a ``fit``: training loss and, with validation data, its loss and
    accuracy (classifiers) or R^2 (regression)."""
    loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    val_r2: list = field(default_factory=list)
    epochs: int = 0
    best_epoch: int = -1
    stopped_early: bool = False
    seconds: float = 0.0


class MLP:
    """A fully connected network ``sizes = [n_0, ..., n_L]``.

    ``hidden`` is the activation of every hidden layer; ``output`` (softmax,
    sigmoid or identity) picks the matched loss (cross-entropy, binary
    cross-entropy, squared error). All weights and biases live in one contiguous
    block ``theta``; ``params`` hands out ``(W, b)`` views into it.
    """

    def __init__(self, sizes, hidden="relu", output="softmax", dtype="float64", seed=0):
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
            raise TypeError(f"sizes: expected a list of layer widths [n_0, ..., n_L], got {sizes!r}")
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected at least two sizes [n_0, n_L], got {list(sizes)}")
        for l, n in enumerate(sizes):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
                raise TypeError(f"sizes[{l}]: expected an integer width, got {n!r}")
            if n < 1:
                raise ValueError(f"sizes[{l}]: expected a width >= 1, got {n} (a layer of zero units)")
        activation_code(hidden)
        if output not in OUTPUT_LOSS:
            raise ValueError(f"output: expected one of {', '.join(OUTPUT_LOSS)}, got {output!r}")
        if str(dtype) not in DTYPES:
            raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}")
        self.sizes = [int(n) for n in sizes]
        self.hidden, self.output, self.loss_name = hidden, output, OUTPUT_LOSS[output]
        self.dtype = np.dtype(str(dtype))
        self.seed = seed
        L = len(self.sizes) - 1
        self.activations = [hidden] * (L - 1) + [output]
        self.layers = layout.layer_table(self.sizes, [activation_code(a) for a in self.activations])
        self.theta = np.zeros(layout.n_params(self.layers), dtype=self.dtype)
        self.params = layout.param_views(self.theta, self.layers)
        rng = np.random.default_rng(seed)
        for (W, _), act in zip(self.params, self.activations):
            n_in, n_out = W.shape
            if act in HE_INIT:
                W[...] = rng.normal(0.0, np.sqrt(2.0 / n_in), W.shape)
            else:
                limit = np.sqrt(6.0 / (n_in + n_out))
                W[...] = rng.uniform(-limit, limit, W.shape)

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["params"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.params = layout.param_views(self.theta, self.layers)

    def __repr__(self):
        return (f"MLP({self.sizes}, hidden={self.hidden!r}, output={self.output!r}, "
                f"dtype={self.dtype.name!r}, seed={self.seed!r})")

    @property
    def col_params(self):
        """The same parameters in the column convention: ``(W_col, b)`` with ``W_col = W.T`` of shape
        ``(n_l, n_{l-1})``, still writable views into ``theta``."""
        return [(W.T, b) for W, b in self.params]

    @property
    def n_params(self):
        return self.theta.size

    @property
    def is_classifier(self):
        return self.output != "identity"

    # ---- validation at the public boundary -------------------------------------------------

    def _inputs(self, X, arg="X"):
        return _checks.numeric_matrix(arg, X, self.dtype, self.sizes[0], "n_0")

    def _targets(self, Y, m, arg="Y"):
        """Y as a (m, n_L) float array: one-hot/targets as given, or expanded from labels (m,)."""
        n_L = self.sizes[-1]
        Y = np.asarray(Y)
        if Y.dtype.kind not in "biuf":
            raise TypeError(f"{arg}: expected numeric targets or integer labels, got dtype {Y.dtype}")
        if Y.ndim == 0 or Y.ndim > 2:
            raise ValueError(f"{arg}: expected labels (m,) or targets (m, n_L) = (m, {n_L}), got shape {Y.shape}")
        if Y.shape[0] != m:
            raise ValueError(f"{arg}: expected {m} rows to match X (m = {m}), got {Y.shape[0]}")
        if Y.dtype.kind == "f":
            _checks.finite(arg, Y)
        if Y.ndim == 2:
            if Y.shape[1] != n_L:
                raise ValueError(f"{arg}: expected shape (m, n_L) = ({m}, {n_L}), got {Y.shape}")
            return np.ascontiguousarray(Y, dtype=self.dtype)
        if not self.is_classifier:
            if n_L != 1:
                raise ValueError(f"{arg}: expected targets (m, n_L) = ({m}, {n_L}), got shape {Y.shape}")
            return np.ascontiguousarray(Y.reshape(m, 1), dtype=self.dtype)
        if Y.dtype.kind == "f" and not np.all(Y == np.round(Y)):
            raise ValueError(f"{arg}: expected integer class labels, got non-integer values")
        labels = Y.astype(np.int64)
        n_classes = 2 if (self.output == "sigmoid" and n_L == 1) else n_L
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            bad = labels[(labels < 0) | (labels >= n_classes)][0]
            raise ValueError(f"{arg}: expected class labels in [0, {n_classes}), got {bad}")
        if n_classes == 2 and n_L == 1:
            return np.ascontiguousarray(labels.reshape(m, 1), dtype=self.dtype)
        onehot = np.zeros((m, n_L), dtype=self.dtype)
        onehot[np.arange(m), labels] = 1
        return onehot

    # ---- forward, loss, gradients ---------------------------------------------------------------

    def _work(self, m):
        return np.empty(layout.work_size(self.layers, m), dtype=self.dtype)

    def _forward(self, X, backend="loops"):
        work = self._work(X.shape[0])
        _backend(backend)[1].forward_into(self.theta, self.layers, X, work)
        return work

    def forward(self, X):
        """A[L] for inputs X (m, n_0), computed by the loop kernels."""
        X = self._inputs(X)
        views, _, _ = layout.work_views(self._forward(X), self.layers, X.shape[0])
        return views[-1][1].copy()

    def loss(self, X, Y):
        """J = (1/m) sum_i L(i) for inputs X (m, n_0) and labels/targets Y."""
        X = self._inputs(X)
        Y = self._targets(Y, X.shape[0])
        views, _, _ = layout.work_views(self._forward(X), self.layers, X.shape[0])
        return kernels.loss_forward(self.loss_name, views[-1][0], Y)

    def gradients(self, X, Y, backend="loops"):
        """(J, [(dW1, db1), ..., (dWL, dbL)]) by backpropagation on the chosen backend."""
        _, network = _backend(backend)
        X = self._inputs(X)
        Y = self._targets(Y, X.shape[0])
        work = self._forward(X, backend)
        grad = np.empty_like(self.theta)
        J = network.gradients_into(self.theta, self.layers, X, Y, LOSS_CODE[self.loss_name], work, grad, 0.0)
        return self.dtype.type(J), [(dW, db) for dW, db in layout.param_views(grad, self.layers)]

    def per_example_gradients(self, X, Y):
        """B1 for every layer: [(dW (m, n_in, n_out), db (m, n_out))]; their mean is ``gradients``."""
        return [(kernels.per_example_weight_grads(A_prev, dZ), dZ.copy()) for A_prev, dZ in self._layer_deltas(X, Y)]

    def per_example_grad_norms(self, X, Y):
        """N1 over all layers: the norm of each example's whole gradient, (m,), never forming dW(i)."""
        return np.sqrt(sum(kernels.per_example_sq_norms(A_prev, dZ) for A_prev, dZ in self._layer_deltas(X, Y)))

    def _layer_deltas(self, X, Y):
        """[(A[l-1], dZ[l])] per layer after a backward pass: the two factors of B1 and N1."""
        X = self._inputs(X)
        Y = self._targets(Y, X.shape[0])
        work = self._forward(X)
        loop_network.gradients_into(self.theta, self.layers, X, Y, LOSS_CODE[self.loss_name], work,
                                    np.empty_like(self.theta), 0.0)
        views = layout.work_views(work, self.layers, X.shape[0])[0]
        inputs = [X] + [A for _, A, _ in views[:-1]]
        return [(A_prev, dZ) for A_prev, (_, _, dZ) in zip(inputs, views)]

    # ---- prediction ---------------------------------------------------------------------------------

    def predict_proba(self, X):
        """Class probabilities (m, n_classes); a single sigmoid unit gives [1 - p, p]."""
        if not self.is_classifier:
            raise ValueError("predict_proba: this model has an identity output (regression); use predict")
        A = self.forward(X)
        if self.output == "sigmoid" and A.shape[1] == 1:
            return np.hstack([1 - A, A])
        return A

    def predict(self, X):
        """Class labels (m,) for classifiers, values (m,) or (m, n_L) for regression."""
        A = self.forward(X)
        if not self.is_classifier:
            return A[:, 0] if A.shape[1] == 1 else A
        if self.output == "sigmoid" and A.shape[1] == 1:
            return (A[:, 0] > 0.5).astype(np.int64)
        return A.argmax(axis=1)

    def score(self, X, y):
        """Accuracy for classifiers, R^2 for regression."""
        X = self._inputs(X)
        Y = self._targets(y, X.shape[0])
        return _score(self, self.forward(X), Y)

    # ---- training -------------------------------------------------------------------------------------

    def fit(self, X, y, epochs=10, batch_size=32, optimizer=None, shuffle=True, seed=None,
            validation_data=None, validation_split=0.0, early_stopping=False, patience=5, progress=True,
            backend="loops", tol=0.0):
        """Mini-batch training; returns a ``History``. Same seed, same result, bit for bit.

        Each mini-batch is one fused call (forward, backward, update) of the chosen backend.
        ``early_stopping`` watches the validation loss (the training loss without validation
        data), stops after ``patience`` epochs without improvement and restores the best parameters.
        """
        epochs = _int_arg("epochs", epochs, 0)
        batch_size = _int_arg("batch_size", batch_size, 1)
        patience = _int_arg("patience", patience, 1)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
            raise ValueError(f"tol: expected a number >= 0, got {tol!r}")
        _, network = _backend(backend)
        opt = _optim.get(optimizer)
        X = self._inputs(X)
        Y = self._targets(y, X.shape[0], "y")
        if isinstance(validation_split, bool) or not (isinstance(validation_split, (int, float)) and 0.0 <= validation_split < 1.0):
            raise ValueError(f"validation_split: expected a fraction in [0, 1), got {validation_split!r}")
        rng = np.random.default_rng(self.seed if seed is None else seed)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data: expected a pair (X_val, y_val)")
            Xv = self._inputs(validation_data[0], "validation_data[0]")
            Yv = self._targets(validation_data[1], Xv.shape[0], "validation_data[1]")
        elif validation_split > 0.0:
            n_val = int(round(validation_split * X.shape[0]))
            if n_val < 1 or n_val >= X.shape[0]:
                raise ValueError(f"validation_split: {validation_split} of {X.shape[0]} rows leaves an empty split")
            order = rng.permutation(X.shape[0])
            Xv, Yv = X[order[:n_val]], Y[order[:n_val]]
            X, Y = np.ascontiguousarray(X[order[n_val:]]), np.ascontiguousarray(Y[order[n_val:]])
        else:
            Xv = Yv = None
        return _train(self, network, opt, X, Y, Xv, Yv, epochs, batch_size, shuffle, rng, early_stopping,
                      patience, progress, float(tol))

    def warmup(self, batch_size=32, backend="loops"):
        """Run one throw-away epoch of one batch so that the kernels ``fit`` uses are compiled
        (or loaded from the disk cache); returns the seconds it took."""
        _, network = _backend(backend)
        m = max(1, int(batch_size))
        theta = self.theta.copy()
        X = np.zeros((m, self.sizes[0]), self.dtype)
        Y = np.zeros((m, self.sizes[-1]), self.dtype)
        opt = _optim.Adam()
        t0 = time.perf_counter()
        network.train_epoch_into(theta, np.empty_like(theta), self.layers, X, Y, np.arange(m), m,
                                 LOSS_CODE[self.loss_name], self._work(m), X.ravel().copy(), Y.ravel().copy(),
                                 opt.code, np.zeros((2, theta.size), self.dtype), opt.hyper(0),
                                 layout.decay_mask(self.layers, self.dtype), opt.noise(0, self.dtype))
        return time.perf_counter() - t0

    # ---- save / load ----------------------------------------------------------------------------------

    def save(self, path):
        """Write architecture, dtype, format version and parameters to an ``.npz`` file (no pickle)."""
        np.savez(path, format_version=np.int64(FORMAT_VERSION), sizes=np.asarray(self.sizes, np.int64),
                 hidden=np.str_(self.hidden), output=np.str_(self.output), dtype=np.str_(self.dtype.name),
                 seed=np.int64(self.seed if isinstance(self.seed, (int, np.integer)) else 0), theta=self.theta)

    @classmethod
    def load(cls, path):
        """Restore a model written by ``save``; never unpickles."""
        from .io import read_model
        return read_model(cls, path)


def _score(model, A, Y):
    if model.is_classifier:
        if A.shape[1] == 1:
            return float(np.mean((A[:, 0] > 0.5) == (Y[:, 0] > 0.5)))
        return float(np.mean(A.argmax(axis=1) == Y.argmax(axis=1)))
    ss_res = float(((Y - A) ** 2).sum())
    ss_tot = float(((Y - Y.mean(axis=0)) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)


def _evaluate(model, X, Y):
    """(loss, score) of the current parameters on a held-out set."""
    work = model._forward(X)
    views, _, _ = layout.work_views(work, model.layers, X.shape[0])
    Z, A, _ = views[-1]
    return float(kernels.loss_forward(model.loss_name, Z, Y)), _score(model, A, Y)


def _train(model, network, opt, X, Y, Xv, Yv, epochs, batch_size, shuffle, rng, early_stopping, patience, progress,
           tol):
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    n = X.shape[0]
    batch_size = min(batch_size, n)
    n_batches = -(-n // batch_size)
    P = model.theta.size
    grad = np.empty_like(model.theta)
    state = np.zeros((2, P), dtype=model.dtype)
    decay = layout.decay_mask(model.layers, model.dtype)
    work = model._work(batch_size)
    Xb = np.empty(batch_size * X.shape[1], dtype=model.dtype)
    Yb = np.empty(batch_size * Y.shape[1], dtype=model.dtype)
    loss = LOSS_CODE[model.loss_name]
    opt.start()
    hyper = opt.hyper(0)  # the backend advances hyper[H_T] by one per step
    history = History()
    best, best_theta, since_best = np.inf, None, 0
    start_theta = model.theta.copy()
    bar = tqdm(total=epochs * n_batches, disable=not progress, unit="batch", leave=True, dynamic_ncols=True)
    try:
        for epoch in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            if not opt.per_step_noise:
                # the whole epoch in one call of the backend: no Python per mini-batch
                total = network.train_epoch_into(model.theta, grad, model.layers, X, Y, order, batch_size, loss, work,
                                                 Xb, Yb, opt.code, state, hyper, decay, opt.noise(P, model.dtype))
                bar.update(n_batches)
            else:
                # DP-SGD draws fresh noise in Python (numpy's Generator) for every step
                total = 0.0
                for start in range(0, n, batch_size):
                    total += network.train_epoch_into(model.theta, grad, model.layers, X, Y,
                                                      order[start:start + batch_size], batch_size, loss, work, Xb, Yb,
                                                      opt.code, state, hyper, decay, opt.noise(P, model.dtype))
                    bar.update(1)
            epoch_loss = total / n
            if not np.isfinite(epoch_loss):
                model.theta[...] = start_theta  # a failed fit leaves the model as it was
                raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss {epoch_loss}); the "
                                         f"parameters were restored; lower the learning rate")
            history.loss.append(epoch_loss)
            monitored = epoch_loss
            if Xv is not None:
                v_loss, v_score = _evaluate(model, Xv, Yv)
                history.val_loss.append(v_loss)
                (history.val_accuracy if model.is_classifier else history.val_r2).append(v_score)
                monitored = v_loss
            history.epochs = epoch + 1
            bar.set_postfix(epoch=epoch + 1, loss=f"{epoch_loss:.4f}",
                            **({"val_loss": f"{monitored:.4f}"} if Xv is not None else {}))
            if monitored < best - tol:
                best, since_best, history.best_epoch = monitored, 0, epoch
                if early_stopping:
                    best_theta = model.theta.copy()
            else:
                since_best += 1
                if early_stopping and since_best >= patience:
                    history.stopped_early = True
                    break
    finally:
        bar.close()
    if early_stopping and best_theta is not None:
        model.theta[...] = best_theta
    history.seconds = time.perf_counter() - t_start
    return history

"""The multi-layer perceptron: composes the kernels and owns the buffers.

Every pass (forward, loss, gradients, evaluation, training) runs on the chosen backend:
``"loops"`` (``loopgrad.kernels.network``) or its NumPy twin ``"numpy"``
(``loopgrad.reference.network``), over buffers that ``loopgrad.layout`` makes.
"""
import copy
import sys
import time
import types
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

from . import _aot, _checks, _compute, _threads, io, layout, tiers
from . import optim as _optim
from .reference import network as numpy_network
from .tables import CLASSIFIER_OUTPUTS, HE_INIT, HIDDEN_ACTIVATIONS, LOSS_CODE, OUTPUT_LOSS, activation_code

BACKENDS = ("loops", "numpy")
# Rows per pass of forward, loss and gradients: the buffers of a pass hold 3 sum(n_l) numbers per
# row, so a large X costs a fraction of a copy of itself, not several.
PASS_ROWS = 4096
# DP-SGD's noise for one compiled call is a block (steps, P); an epoch whose block would pass this
# many numbers runs as several calls.
NOISE_BLOCK = 1 << 22


def _check_backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected 'loops' or 'numpy', got {backend!r}")


def network(backend):
    """The network module of a backend name: ``"loops"`` (the tuned kernels) or ``"numpy"``."""
    _check_backend(backend)
    if backend == "numpy":
        return numpy_network
    from .kernels import network as loop_network  # imports numba: only when the loops run through it

    return loop_network


def running(backend, dtype, n_params=None):
    """The module that runs ``backend`` for ``dtype`` now: for ``"loops"`` the tuned kernels; for a
    network of ``n_params`` small enough, the same kernels built ahead of time where that module
    exists (``loopgrad._aot``: same bits, no numba to load); or their NumPy twin while the tuned
    kernels compile in the background on a cold machine (``loopgrad.tiers``) or in a process forked
    after the loops' OpenMP thread pool started (``_numba.forked_child``)."""
    _check_backend(backend)
    if backend != "loops":
        return numpy_network
    ahead = tiers.aot_backend(dtype, n_params)
    if ahead is not None:
        return ahead  # serial code, so safe in a forked child too
    from . import _numba

    if _numba.forked_child():
        _numba._warn_once("fork", "loopgrad: this process was forked after GNU OpenMP's thread pool started, where "
                                  "the parallel loop kernels cannot run; it trains and predicts with their NumPy twin "
                                  "(use multiprocessing's 'spawn' or 'forkserver' context to keep the loops)",
                          _numba.ForkWarning)
        return numpy_network
    return tiers.loops_backend(dtype, n_params)


def _kernels():
    from . import kernels

    return kernels


def _is_sparse(X):
    return type(X).__module__.startswith("scipy.sparse")


class SparseRows(NamedTuple):
    """A CSR matrix as the loop kernels take it: ``data`` of the model's dtype, int64 ``indices`` and
    ``indptr`` (row i's stored entries are ``data[indptr[i]:indptr[i + 1]]`` at those columns)."""
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple

    @classmethod
    def from_scipy(cls, arg, X, n_cols, dtype):
        X = X.tocsr()
        if X.ndim != 2 or X.shape[1] != n_cols:
            raise ValueError(f"{arg}: expected shape (m, n_0) = (*, {n_cols}), got {X.shape}")
        if X.shape[0] < 1:
            raise ValueError(f"{arg}: expected at least one example (m >= 1), got shape {X.shape}")
        if X.dtype.kind not in "iuf":
            raise TypeError(f"{arg}: expected real numbers (int or float), got dtype {X.dtype}")
        data = np.asarray(X.data)
        _checks.finite(f"{arg}.data", data)
        data = _checks.fits(arg, data, dtype)
        return cls(np.ascontiguousarray(data, dtype=dtype), np.ascontiguousarray(X.indices, dtype=np.int64),
                   np.ascontiguousarray(X.indptr, dtype=np.int64), X.shape)

    def rows(self, start, stop):
        """Rows start..stop-1, sharing the arrays."""
        lo, hi = self.indptr[start], self.indptr[stop]
        return SparseRows(self.data[lo:hi], self.indices[lo:hi], self.indptr[start:stop + 1] - lo,
                          (stop - start, self.shape[1]))

    def take(self, rows):
        """The rows ``rows`` (an index array), copied into new arrays."""
        lengths = self.indptr[rows + 1] - self.indptr[rows]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        src = np.repeat(self.indptr[rows] - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseRows(self.data[src], self.indices[src], indptr, (len(rows), self.shape[1]))


class Training(NamedTuple):
    """Everything one compiled training step takes besides the batch: built by ``MLP.training_buffers``."""
    net: layout.Net
    buf: layout.Buffers
    update: layout.Update


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
    epoch_seconds: list = field(default_factory=list)  # the training call of each epoch (no evaluation)
    epsilon: list = field(default_factory=list)  # DP-SGD: (epsilon, delta) spent after each epoch
    compute_seconds: list = field(default_factory=list)  # fit_distributed: the slowest chunk's training per round
    stop_reason: str = ""
    # steps run on each thread count (the numba kernels: ``_threads.ThreadChoice`` picks, same bits)
    thread_steps: dict = field(default_factory=dict)

    def to_dict(self):
        """Plain lists and numbers (JSON-ready), one entry per epoch where a field is per epoch."""
        d = asdict(self)
        d["epsilon"] = [list(pair) for pair in self.epsilon]
        return d

    def plot(self, path=None, title=None):
        """Loss per epoch and, with validation data, accuracy or R^2, the restored best epoch marked.
        Writes a PNG to ``path`` when given; returns the matplotlib figure (needs the ``plot`` extra)."""
        from .plots import plot_history
        return plot_history(self, path, title=title)


class MLP:
    """A fully connected network ``sizes = [n_0, ..., n_L]``.

    ``hidden`` is the activation of every hidden layer, or a list of one name per hidden layer
    (``["relu", "tanh"]``); ``output`` (softmax, sigmoid or identity) picks the matched loss
    (cross-entropy, binary cross-entropy, squared error). All weights and biases live in one
    contiguous block ``theta``; ``params`` hands out ``(W, b)`` views into it.

    ``classes`` are the labels of a classifier's outputs (any labels: strings, 1..K, ...); ``fit``
    learns them from ``y`` unless the labels are 0..K-1. ``metadata`` is a JSON-ready dict that
    ``save`` writes with the parameters (the CLI records the features, scaling, training
    configuration and data fingerprint there).
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
        L = len(sizes) - 1
        hidden_list = _hidden_activations(hidden, L)
        if output not in OUTPUT_LOSS:
            raise ValueError(f"output: expected one of {', '.join(OUTPUT_LOSS)}, got {output!r}")
        dtype = _checks.float_dtype_name("dtype", dtype)
        self.sizes = [int(n) for n in sizes]
        self.hidden = hidden if isinstance(hidden, str) else list(hidden)
        self.output, self.loss_name = output, OUTPUT_LOSS[output]
        self.dtype = np.dtype(str(dtype))
        self.seed = seed
        self.classes = None
        self.metadata = {}
        self.training_rows = None  # sorted uint64 fingerprints of the rows it was trained on (see loopgrad.tabular)
        self.activations = hidden_list + [output]
        self.layers = layout.layer_table(self.sizes, [activation_code(a) for a in self.activations])
        self.theta = layout.aligned_zeros(layout.n_params(self.layers), self.dtype)
        self.params = layout.param_views(self.theta, self.layers)
        rng = np.random.default_rng(_seed("seed", seed))
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
        state.setdefault("classes", None)
        state.setdefault("metadata", {})
        state.setdefault("training_rows", None)
        self.__dict__.update(state)
        self.theta = layout.aligned(self.theta)  # an unpickled or copied block starts where NumPy put it
        self.params = layout.param_views(self.theta, self.layers)

    def __repr__(self):
        return (f"MLP({self.sizes}, hidden={self.hidden!r}, output={self.output!r}, "
                f"dtype={self.dtype.name!r}, seed={self.seed!r})")

    def copy(self, theta=None):
        """A new model of the same architecture with a copy of ``theta`` (this model's by default)."""
        state = self.__getstate__()
        source = np.asarray(self.theta if theta is None else theta, dtype=self.dtype)
        if source.shape != self.theta.shape:
            raise ValueError(f"theta: expected shape ({self.n_params},), got {source.shape}")
        # copied once, straight into an aligned block (__setstate__ then keeps it as it is)
        state["theta"] = layout.aligned_zeros(source.shape, self.dtype)
        state["theta"][...] = source
        state["metadata"] = copy.deepcopy(self.metadata)
        new = object.__new__(type(self))
        new.__setstate__(state)
        return new

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
        return self.output in CLASSIFIER_OUTPUTS

    @property
    def n_classes(self):
        """Classes a classifier tells apart (2 for one sigmoid unit); 0 for regression."""
        if not self.is_classifier:
            return 0
        return 2 if self.output == "sigmoid" and self.sizes[-1] == 1 else self.sizes[-1]

    @classmethod
    def from_data(cls, X, y, hidden=(64,), activation="relu", task="auto", dtype="float64", seed=0):
        """A model shaped for (X, y): one sigmoid unit for two classes, softmax over K > 2 classes,
        identity outputs for regression (``task`` "auto" infers it: labels that are not numbers, or
        few distinct integers, are classes). ``hidden`` lists the hidden widths; ``activation`` is one
        name or one per hidden layer. A classifier's ``classes`` are the sorted distinct labels."""
        X = _checks.real_array("X", X)
        if X.ndim != 2:
            raise ValueError(f"X: expected a matrix (m, n_0), got shape {X.shape}")
        y = np.asarray(y)
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise ValueError(f"y: expected {X.shape[0]} labels (m,) or targets (m, n_L) to match X, got shape {y.shape}")
        task = infer_task(y) if task == "auto" else task
        if task not in ("classification", "regression"):
            raise ValueError(f"task: expected 'auto', 'classification' or 'regression', got {task!r}")
        widths = [hidden] if isinstance(hidden, (int, np.integer)) else list(hidden)
        if task == "regression":
            out, n_out, classes = "identity", (1 if y.ndim == 1 else y.shape[1]), None
        else:
            if y.ndim != 1:
                raise ValueError(f"y: expected one label per row (m,) for classification, got shape {y.shape}")
            classes = np.unique(y)
            if classes.size < 2:
                raise ValueError(f"y: expected at least two classes to classify, got only {classes.tolist()}")
            out, n_out = ("sigmoid", 1) if classes.size == 2 else ("softmax", classes.size)
        model = cls([X.shape[1], *widths, n_out], hidden=activation, output=out, dtype=dtype, seed=seed)
        model.classes = classes
        return model

    def summary(self):
        """A table of the layers: widths, activation, parameters, and the totals."""
        lines = [f"{'layer':>5}  {'W shape':>14}  {'b':>6}  {'activation':<11} {'parameters':>11}"]
        for l, ((W, b), act) in enumerate(zip(self.params, self.activations), start=1):
            lines.append(f"{l:>5}  {str(W.shape):>14}  {b.shape[0]:>6}  {act:<11} {W.size + b.size:>11,}")
        task = (f"classifier, {self.n_classes} classes" + (f" {_checks.listing(self.classes)}" if self.classes is not None
                                                          else "")) if self.is_classifier else "regression"
        lines.append(f"{self.n_params:,} parameters ({self.n_params * self.dtype.itemsize:,} bytes of "
                     f"{self.dtype.name}); {self.loss_name} loss; {task}")
        return "\n".join(lines)

    # ---- validation at the public boundary -------------------------------------------------

    def validate(self, X, y=None, arg="X", y_arg="y", any_float=False, allow_sparse=None):
        """``X`` as a finite (m, n_0) array of the model's dtype and, given ``y``, the targets as
        (m, n_L): one-hot rows from integer labels (m,), or targets as given. Clear errors otherwise.
        Returns X, or (X, Y). ``any_float`` keeps float32/float64 X as it is (the passes of forward,
        loss and gradients convert each block of rows instead of a copy of all of X). A scipy sparse
        X becomes ``SparseRows`` (CSR arrays of the model's dtype) where ``allow_sparse`` (by default
        where ``any_float``): fit, forward, predict, score, loss, gradient_block and objective."""
        if _is_sparse(X):
            if not (any_float if allow_sparse is None else allow_sparse):
                raise TypeError(f"{arg}: a sparse matrix is taken by fit, predict, score, loss, gradient_block and "
                                f"objective; densify it (X.toarray()) for this method")
            X = SparseRows.from_scipy(arg, X, self.sizes[0], self.dtype)
            return X if y is None else (X, self._targets(y, X.shape[0], y_arg))
        keep = any_float and isinstance(X, np.ndarray) and X.dtype in _checks.FLOAT_DTYPES
        X = _checks.numeric_matrix(arg, X, X.dtype if keep else self.dtype, self.sizes[0], "n_0")
        if keep:
            _checks.in_range(arg, X, self.dtype)
        if y is None:
            return X
        return X, self._targets(y, X.shape[0], y_arg)

    def _targets(self, Y, m, arg):
        n_L = self.sizes[-1]
        if self.classes is not None and np.asarray(Y).ndim == 1:
            Y = np.asarray(Y)
            if Y.dtype.kind == "O":
                Y = Y.astype(np.asarray(self.classes).dtype)
        else:
            try:
                Y = _checks.real_array(arg, Y)
            except TypeError as e:
                raise TypeError(str(e).replace("expected real numbers", "expected numeric targets or integer labels"))

        if Y.ndim == 0 or Y.ndim > 2:
            raise ValueError(f"{arg}: expected labels (m,) or targets (m, n_L) = (m, {n_L}), got shape {Y.shape}")
        if Y.shape[0] != m:
            raise ValueError(f"{arg}: expected {m} rows to match X (m = {m}), got {Y.shape[0]}")
        if Y.dtype.kind == "f" and self.classes is None:
            _checks.finite(arg, Y)
        if Y.ndim == 2:
            if Y.shape[1] != n_L:
                raise ValueError(f"{arg}: expected shape (m, n_L) = ({m}, {n_L}), got {Y.shape}")
            Y = _checks.fits(arg, Y, self.dtype)
            if self.is_classifier:
                _probability_targets(arg, Y, self.output)
            else:
                _regression_range(arg, Y, self.output)
            return Y
        if not self.is_classifier:
            if n_L != 1:
                raise ValueError(f"{arg}: expected targets (m, n_L) = ({m}, {n_L}), got shape {Y.shape}")
            Y = _checks.fits(arg, Y.reshape(m, 1), self.dtype)
            _regression_range(arg, Y, self.output)
            return Y
        n_classes = self.n_classes
        if self.classes is not None:
            labels = self._label_indices(arg, Y)
        else:
            if Y.dtype.kind == "f" and not np.all(Y == np.round(Y)):
                raise ValueError(f"{arg}: expected integer class labels, got non-integer values")
            outside = (Y < 0) | (Y >= n_classes)  # on the values as given: 1e20 must not wrap around in int64
            if outside.any():
                raise ValueError(f"{arg}: expected class labels in [0, {n_classes}), got {Y[outside][0]:g}")
            labels = Y.astype(np.int64)
        if n_classes == 2 and n_L == 1:
            return np.ascontiguousarray(labels.reshape(m, 1), dtype=self.dtype)
        onehot = np.zeros((m, n_L), dtype=self.dtype)
        onehot[np.arange(m), labels] = 1
        return onehot

    def _label_indices(self, arg, y):
        """Positions of the labels ``y`` in ``classes``; a label the model does not know is an error."""
        classes = np.asarray(self.classes)
        try:
            pos = np.clip(np.searchsorted(classes, y), 0, classes.size - 1)
            known = classes[pos] == y
        except TypeError:  # e.g. numbers against string classes
            known = np.zeros(len(y), bool)
        if not np.all(known):
            bad = np.asarray(y)[~known][0]
            bad = bad.item() if isinstance(bad, np.generic) else bad
            raise ValueError(f"{arg}: label {bad!r} is not one of the model's classes {_checks.listing(classes)}")
        return pos.astype(np.int64)

    def _classes_of(self, y):
        """Before the first ``fit`` of a classifier: the labels to learn from ``y``, or None when they
        are the integers 0..K-1 (output positions) or are not labels at all (``validate`` then says why)."""
        if not self.is_classifier or self.classes is not None:
            return None
        y = np.asarray(y)
        if y.ndim != 1 or y.size == 0:
            return None
        if y.dtype.kind == "O" and all(isinstance(v, str) for v in y):
            y = y.astype(str)
        if y.dtype.kind not in "iufUS":
            return None
        if y.dtype.kind in "iuf":
            numeric = y.astype(np.float64)
            if not np.all(np.isfinite(numeric)) or not np.all(numeric == np.round(numeric)):
                return None
            if numeric.min() >= 0 and numeric.max() < self.n_classes:
                return None
        classes = np.unique(y)
        if classes.size != self.n_classes:
            raise ValueError(f"y: labels {_checks.listing(classes)} are not the integers 0..{self.n_classes - 1}, and "
                             f"{classes.size} distinct labels do not name the model's {self.n_classes} classes "
                             f"(n_L = {self.sizes[-1]}, {self.output} output); set model.classes to the full "
                             f"sorted list of labels first")
        return classes

    # ---- buffers -------------------------------------------------------------------------------

    def training_buffers(self, batch_size, optimizer=None, weighted=False, sparse_input=False):
        """The step's arguments, built in this one place: ``Training(net, buf, update)`` for
        batches of up to ``batch_size`` rows (with room for sample weights when ``weighted``, and
        for a CSR input beside the buffers when ``sparse_input``); ``net.theta`` is this model's
        ``theta`` (trained in place)."""
        opt = _optim.get(optimizer)
        return Training(self._net(), layout.make_buffers(self.layers, batch_size, self.dtype, weighted, sparse_input),
                        layout.make_update(opt, self.theta))

    def warmup_arguments(self, batch_size=1):
        """Throw-away arguments of the compiled epoch for this architecture, typed exactly as ``fit``
        passes them: (net, buf, X, Y, W, order, batch_size, update, t0, noise, stop). ``warmup`` runs
        them; ``loopgrad.tiers`` asks numba's cache for their signature."""
        m = max(1, int(batch_size))
        probe = MLP(self.sizes, self.hidden, self.output, self.dtype.name)
        net, buf, update = probe.training_buffers(m, _optim.Adam())
        X = np.zeros((m, self.sizes[0]), self.dtype)
        Y = np.zeros((m, self.sizes[-1]), self.dtype)
        return (net, buf, X, Y, np.zeros(0, self.dtype), np.arange(m), m, update, 0,
                _optim.SGD().noise(1, probe.n_params, self.dtype), np.zeros(1, np.int64))

    def _net(self):
        return layout.make_net(self.layers, LOSS_CODE[self.loss_name], self.theta)

    def _passes(self, X, Y, backend, weights=None):
        """Forward passes over blocks of at most PASS_ROWS rows: yields (backend module, net, buf, start, m,
        block) with the block's forward done (and its targets and sample weights loaded when given);
        ``block`` is the block's ``SparseRows`` for a sparse X, else None."""
        net = self._net()
        sparse = isinstance(X, SparseRows)
        buf = layout.make_buffers(self.layers, min(X.shape[0], PASS_ROWS), self.dtype, weights is not None, sparse)
        backend = running(backend, self.dtype.name, self.n_params)
        for start in range(0, X.shape[0], buf.rows):
            stop = min(X.shape[0], start + buf.rows)
            Yb = None if Y is None else Y[start:stop]
            Wb = None if weights is None else weights[start:stop]
            if sparse:
                block = X.rows(start, stop)
                m = layout.load_batch(buf, None, Yb, Wb, m=stop - start)
                _on_compute(backend, lambda: backend.forward_sparse_into(net, buf, m, block.data, block.indices,
                                                                         block.indptr))
            else:
                block = None
                m = layout.load_batch(buf, X[start:stop], Yb, Wb)
                _on_compute(backend, lambda: backend.forward_into(net, buf, m))
            yield backend, net, buf, start, m, block

    # ---- forward, loss, gradients ---------------------------------------------------------------

    def forward(self, X, backend="loops"):
        """A[L] (m, n_L) for inputs X (m, n_0)."""
        X = self.validate(X, any_float=True)
        out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        for _, _, buf, start, m, _ in self._passes(X, None, backend):
            out[start:start + m] = layout.layer_views(buf, m)[-1][1]
        return out

    def _outputs(self, X, Y, backend="loops"):
        """(J, A[L]) over validated X, Y in passes of PASS_ROWS rows."""
        out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        total = 0.0
        for backend_net, net, buf, start, m, _ in self._passes(X, Y, backend):
            total += float(backend_net.cost(net, buf, m)) * m
            out[start:start + m] = layout.layer_views(buf, m)[-1][1]
        return self.dtype.type(total / X.shape[0]), out

    def loss(self, X, Y, backend="loops"):
        """J = (1/m) sum_i L(i) for inputs X (m, n_0) and labels/targets Y."""
        return self._outputs(*self.validate(X, Y, y_arg="Y", any_float=True), backend)[0]

    def gradients(self, X, Y, backend="loops"):
        """(J, [(dW1, db1), ..., (dWL, dbL)]) by backpropagation on the chosen backend; the arrays
        are views into one block of ``theta``'s layout (``gradient_block``)."""
        J, grad = self.gradient_block(X, Y, backend)
        return J, layout.param_views(grad, self.layers)

    def gradient_block(self, X, Y, backend="loops", sample_weight=None):
        """(J, grad) with grad (P,) in ``theta``'s layout; with ``sample_weight`` (m,) the weighted means.
        Rows are taken in passes of PASS_ROWS; with several passes each pass's mean gradient is weighted
        by its rows (or by the sum of its sample weights)."""
        X, Y = self.validate(X, Y, y_arg="Y", any_float=True)
        weights = self._sample_weight(sample_weight, X.shape[0])
        grad = None
        J, total = 0.0, 0.0
        for backend_net, net, buf, start, m, block in self._passes(X, Y, backend, weights):
            J_b = _on_compute(backend_net, lambda: (
                backend_net.gradients_into(net, buf, m, 0.0) if block is None
                else backend_net.gradients_sparse_into(net, buf, m, block.data, block.indices, block.indptr)))
            if m == X.shape[0]:
                return self.dtype.type(J_b), net.grad
            share = float(m if weights is None else weights[start:start + m].sum(dtype=np.float64))
            grad = net.grad * self.dtype.type(share) if grad is None else grad + net.grad * self.dtype.type(share)
            J += float(J_b) * share
            total += share
        return self.dtype.type(J / total), grad / self.dtype.type(total)

    def objective(self, X, Y, sample_weight=None, backend="loops"):
        """``f(theta) -> (J, grad)`` over fixed (X, Y) for full-batch optimisers (scipy's L-BFGS): the
        data are checked and loaded into the buffers once, and each call runs one forward and one
        backward pass (F1-F3, B8, B6, B2, B3) at ``theta``, which it writes into this model. ``grad``
        is this model's gradient block, overwritten by the next call."""
        X, Y = self.validate(X, Y, y_arg="Y", any_float=True)
        weights = self._sample_weight(sample_weight, X.shape[0])
        if X.shape[0] > PASS_ROWS:
            def in_passes(theta):
                self.theta[...] = theta
                return self.gradient_block(X, Y, backend, weights)
            return in_passes
        net = self._net()
        sparse = isinstance(X, SparseRows)
        buf = layout.make_buffers(self.layers, X.shape[0], self.dtype, weights is not None, sparse)
        m = layout.load_batch(buf, None if sparse else X, Y, weights, m=X.shape[0])
        module = running(backend, self.dtype.name, self.n_params)

        def one_pass(theta):
            self.theta[...] = theta
            return _on_compute(module, forward_backward)

        def forward_backward():
            if sparse:
                module.forward_sparse_into(net, buf, m, X.data, X.indices, X.indptr)
                return self.dtype.type(module.gradients_sparse_into(net, buf, m, X.data, X.indices, X.indptr)), net.grad
            module.forward_into(net, buf, m)
            return self.dtype.type(module.gradients_into(net, buf, m, 0.0)), net.grad
        return one_pass

    def _sample_weight(self, sample_weight, m):
        """Sample weights as (m,) of the model's dtype: finite, >= 0, not all 0; None stays None."""
        if sample_weight is None:
            return None
        w = _checks.real_array("sample_weight", sample_weight)
        if w.ndim == 0:
            w = np.full(m, float(w))
        if w.shape != (m,):
            raise ValueError(f"sample_weight: expected shape ({m},) to match X, got {w.shape}")
        _checks.finite("sample_weight", w)
        if (w < 0).any():
            raise ValueError(f"sample_weight: expected weights >= 0, got {w[w < 0][0]:g}")
        if not (w > 0).any():
            raise ValueError("sample_weight: expected at least one weight > 0, got all zeros")
        return np.ascontiguousarray(w, dtype=self.dtype)

    def per_example_gradients(self, X, Y):
        """B1 for every layer: [(dW (m, n_in, n_out), db (m, n_out))]; their mean is ``gradients``."""
        return [(_kernels().per_example_weight_grads(A_prev, dZ), dZ.copy()) for A_prev, dZ in self._layer_deltas(X, Y)]

    def per_example_grad_norms(self, X, Y):
        """N1 over all layers: the norm of each example's whole gradient, (m,), never forming dW(i)."""
        return np.sqrt(sum(_kernels().per_example_sq_norms(A_prev, dZ) for A_prev, dZ in self._layer_deltas(X, Y)))

    def _layer_deltas(self, X, Y):
        """[(A[l-1], dZ[l])] per layer after one backward pass over all rows: the two factors of B1 and N1."""
        X, Y = self.validate(X, Y, y_arg="Y")
        net = self._net()
        buf = layout.make_buffers(self.layers, X.shape[0], self.dtype)
        m = layout.load_batch(buf, X, Y)
        backend = running("loops", self.dtype.name, self.n_params)
        backend.forward_into(net, buf, m)
        backend.gradients_into(net, buf, m, 0.0)
        views = layout.layer_views(buf, m)
        return [(views[l - 1][1], views[l][2]) for l in range(1, len(views))]

    # ---- prediction ---------------------------------------------------------------------------------

    def predict_proba(self, X, backend="loops"):
        """Class probabilities (m, n_classes); a single sigmoid unit gives [1 - p, p]."""
        if not self.is_classifier:
            raise ValueError("predict_proba: this model has an identity output (regression); use predict")
        A = self.forward(X, backend)
        if self.output == "sigmoid" and A.shape[1] == 1:
            return np.hstack([1 - A, A])
        return A

    def predict(self, X, backend="loops"):
        """Class labels (m,) for classifiers, values (m,) or (m, n_L) for regression."""
        A = self.forward(X, backend)
        if not self.is_classifier:
            return A[:, 0] if A.shape[1] == 1 else A
        index = (A[:, 0] > 0.5).astype(np.int64) if self.output == "sigmoid" and A.shape[1] == 1 else A.argmax(axis=1)
        return index if self.classes is None else np.asarray(self.classes)[index]

    def predict_log_proba(self, X, backend="loops"):
        """log of ``predict_proba``, without -inf warnings for probabilities that round to 0."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X, backend))

    def score(self, X, y, backend="loops"):
        """Accuracy for classifiers, R^2 for regression."""
        X, Y = self.validate(X, y, any_float=True)
        return _score(self, self._outputs(X, Y, backend)[1], Y)

    # ---- training -------------------------------------------------------------------------------------

    def fit(self, X, y, epochs=10, batch_size=32, optimizer=None, shuffle=True, seed=None,
            validation_data=None, validation_split=0.0, early_stopping=False, patience=5, progress=True,
            backend="loops", tol=0.0, optimizer_state=None, sample_weight=None):
        """Mini-batch training; returns a ``History``. Same seed, same result, bit for bit.

        Each epoch is one compiled call of the chosen backend (forward, backward and update of
        every mini-batch). ``early_stopping`` watches the validation loss (the training loss
        without validation data), stops after ``patience`` epochs without improvement and
        restores the best parameters.

        Memory: X is used as given when its dtype is the model's (the epoch gathers mini-batches by
        index; ``validation_split`` copies only the held-out rows). X of another dtype is converted
        once, whole (a float64 model on 2,000,000 x 100 float32 rows: 2.25 copies of X at the peak):
        converting per mini-batch inside the compiled epoch would need a second compiled copy of
        the tuned kernels for each pair of dtypes, about a minute of compiling each. ``predict``,
        ``score``, ``loss`` and ``gradients`` convert per block of 4096 rows instead.
        
        ``optimizer_state`` (an ``optim.OptimizerState``) carries the optimizer's moments and step
        count into this fit and out of it, so that consecutive fits continue one run.
        ``sample_weight`` (m,): each mini-batch's J, B2 and B3 become weighted means
        sum_i w_i L(i) / sum_i w_i (a batch whose weights sum to 0 leaves the parameters alone).
        """
        if progress not in (True, False, "bar", "lines", None, 0, 1):
            raise ValueError(f"progress: expected True (a bar), False or 'lines' (one printed line per epoch), "
                             f"got {progress!r}")
        plan = _Plan(epochs=_checks.integer("epochs", epochs, 0), batch_size=_checks.integer("batch_size", batch_size, 1),
                     shuffle=bool(shuffle), early_stopping=bool(early_stopping),
                     patience=_checks.integer("patience", patience, 1), progress=progress,
                     tol=_checks.number("tol", tol, 0.0), backend=backend, carry=optimizer_state)
        _check_backend(backend)  # a clear error for an unknown name, before any work
        validation_split = _checks.number("validation_split", validation_split, 0.0, 1.0)
        opt = _optim.get(optimizer)
        learning = self.classes is None
        if learning:
            self.classes = self._classes_of(y)
        try:
            X, Y = self.validate(X, y, allow_sparse=True)
            weights = self._sample_weight(sample_weight, X.shape[0])
            if isinstance(X, SparseRows) and getattr(opt, "clip_norm", None) is not None:
                raise ValueError("X: DP-SGD takes dense X (its per-example norms, N1, need the dense first layer)")
            if weights is not None and getattr(opt, "clip_norm", None) is not None:
                raise ValueError("sample_weight: DP-SGD bounds each example's contribution by clipping; weighted "
                                 "examples would break its privacy analysis")
        except (TypeError, ValueError):
            if learning:
                self.classes = None  # a refused fit leaves the model as it was
            raise
        rng = np.random.default_rng(_seed("seed", self.seed if seed is None else seed))
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data: expected a pair (X_val, y_val)")
            val = self.validate(*validation_data, arg="validation_data[0]", y_arg="validation_data[1]",
                                allow_sparse=True)
        rows = np.arange(X.shape[0])
        if validation_data is None and validation_split > 0.0:
            n_val = int(round(validation_split * X.shape[0]))
            if n_val < 1 or n_val >= X.shape[0]:
                raise ValueError(f"validation_split: {validation_split} of {X.shape[0]} rows leaves an empty split")
            order = rng.permutation(X.shape[0])
            # the held-out rows are copied (a fraction of X); the training rows stay where they are and the
            # compiled epoch gathers them by index
            held = X.take(order[:n_val]) if isinstance(X, SparseRows) else X[order[:n_val]]
            val, rows = (held, Y[order[:n_val]]), order[n_val:]
        elif validation_data is None:
            val = None
        return _train(self, opt, X, Y, rows, val, plan, rng, weights)

    def warmup(self, batch_size=32, backend="loops"):
        """Compile (or load from the disk cache) every kernel of ``backend`` that ``fit``, ``predict``
        and ``gradients`` run, on throw-away buffers; returns the seconds it took. For ``"loops"`` these
        are the tuned kernels, whatever tier this process runs (``loopgrad.tiers``)."""
        args = self.warmup_arguments(batch_size)
        net, buf, m = args[0], args[1], args[6]
        t0 = time.perf_counter()
        module = network(backend)

        def every_kernel():
            module.train_epoch_into(*args)
            module.forward_into(net, buf, m)
            module.cost(net, buf, m)
            module.gradients_into(net, buf, m, 0.0)
            if _numba_kernels(module):
                from . import _company

                _company.free_threads(sys.modules["numba"].get_num_threads())  # its own small kernel
        _on_compute(module, every_kernel)
        return time.perf_counter() - t0

    # ---- save / load ----------------------------------------------------------------------------------

    def save(self, path):
        """Write architecture, dtype, parameters, classes and ``metadata`` to exactly ``path``, an
        ``.npz`` archive of plain arrays (no pickle), atomically. ``load`` reads the same path."""
        io.write_model(self, path)

    @classmethod
    def load(cls, path):
        """Restore a model written by ``save``; never unpickles. ``path`` as given to ``save``; a path
        without its ``.npz`` suffix finds the file with it."""
        return io.read_model(cls, path)


def _probability_targets(arg, Y, output):
    """Targets of a sigmoid output are probabilities (entries in [0, 1]); those of a softmax output
    are distributions (rows of such entries summing to 1). Anything else gives a negative or
    meaningless cross-entropy, so it is refused."""
    bad = np.argwhere((Y < 0) | (Y > 1))
    if bad.size:
        i, k = bad[0]
        raise ValueError(f"{arg}: expected targets in [0, 1] for a {output} output, got {Y[i, k]} at row {i}, "
                         f"column {k}")
    if output == "softmax":
        sums = Y.sum(axis=1, dtype=np.float64)
        off = np.flatnonzero(np.abs(sums - 1.0) > 1e-6 * Y.shape[1] + (1e-3 if Y.dtype == np.float32 else 0.0))
        if off.size:
            raise ValueError(f"{arg}: expected each row of softmax targets to sum to 1 (a one-hot row or a "
                             f"distribution), row {off[0]} sums to {sums[off[0]]:g}")


def _regression_range(arg, Y, output):
    """Squared-error targets must not overflow their square; Poisson targets (exp output) are counts
    or rates, so >= 0."""
    if output == "exp":
        if (Y < 0).any():
            raise ValueError(f"{arg}: expected targets >= 0 for a Poisson (exp) output, got {float(Y.min()):g}")
        return
    _squared_error_range(arg, Y)


def _squared_error_range(arg, Y):
    """Regression targets whose square overflows the dtype make J infinite from the first step."""
    limit = float(np.sqrt(np.finfo(Y.dtype).max)) / 4
    big = float(np.max(np.abs(Y), initial=0.0))
    if big > limit:
        raise ValueError(f"{arg}: targets as large as {big:g} overflow the squared-error loss in {Y.dtype.name} "
                         f"(|y| must stay below about {limit:.1g}); standardise the targets")


def _hidden_activations(hidden, L):
    """One activation name per hidden layer, from one name or a list of L - 1 names."""
    if isinstance(hidden, str):
        _hidden_name(hidden)
        return [hidden] * (L - 1)
    if not isinstance(hidden, (list, tuple)):
        raise TypeError(f"hidden: expected an activation name or a list of {L - 1} names, got {hidden!r}")
    if len(hidden) != L - 1:
        raise ValueError(f"hidden: expected one activation per hidden layer, {L - 1} names for sizes of "
                         f"{L + 1} layers, got {len(hidden)}: {list(hidden)}")
    for name in hidden:
        _hidden_name(name)
    return list(hidden)


def _hidden_name(name):
    activation_code(name)
    if name not in HIDDEN_ACTIVATIONS:
        raise ValueError(f"hidden: {name!r} is an output activation (Poisson rates); expected one of "
                         f"{', '.join(HIDDEN_ACTIVATIONS)}")


def infer_task(y):
    """"classification" for labels that are not numbers, booleans, or integers with at most 20
    distinct values (and fewer than half as many as rows); "regression" otherwise."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return "regression"
    y = y.reshape(-1)
    if y.dtype.kind in "bUSO":
        return "classification"
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        return "regression"
    n_unique = np.unique(y).size
    return "classification" if n_unique <= 20 and n_unique <= max(2, y.size // 2) else "regression"


def _seed(name, seed):
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        return seed
    raise TypeError(f"{name}: expected None or an integer >= 0, got {seed!r}")


def _score(model, A, Y):
    if model.is_classifier:
        if A.shape[1] == 1:
            return float(np.mean((A[:, 0] > 0.5) == (Y[:, 0] > 0.5)))
        return float(np.mean(A.argmax(axis=1) == Y.argmax(axis=1)))
    ss_res = float(((Y - A) ** 2).sum())
    ss_tot = float(((Y - Y.mean(axis=0)) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)


def _evaluate(model, X, Y, backend="loops"):
    """(loss, score) of the current parameters on a held-out set (validated X, Y)."""
    J, A = model._outputs(X, Y, backend)
    return float(J), _score(model, A, Y)


@dataclass
class _Plan:
    """The options of one ``fit``, checked."""
    epochs: int
    batch_size: int
    shuffle: bool
    early_stopping: bool
    patience: int
    progress: bool
    tol: float
    backend: str
    carry: object = None  # an optim.OptimizerState, or None


class _Watch:
    """What follows every epoch (or round of ``fit_distributed``): its loss and, with validation data,
    the validation loss and score into the ``History``; then early stopping's bookkeeping on the
    monitored loss (validation loss, else training loss): the best so far, how long since, and with
    ``early_stopping`` the best parameters, which ``restore`` puts back."""

    def __init__(self, early_stopping, patience, tol, unit="epochs"):
        self.early_stopping, self.patience, self.tol, self.unit = early_stopping, patience, tol, unit
        self.best, self.best_theta, self.since_best = np.inf, None, 0

    def record(self, model, history, epoch, loss, val, backend="loops"):
        """Record epoch ``epoch`` (0-based); returns True when early stopping ends the training here."""
        history.loss.append(loss)
        monitored = loss
        if val is not None:
            monitored, score = _evaluate(model, *val, backend)
            history.val_loss.append(monitored)
            (history.val_accuracy if model.is_classifier else history.val_r2).append(score)
        history.epochs = epoch + 1
        if monitored < self.best - self.tol:
            self.best, self.since_best, history.best_epoch = monitored, 0, epoch
            if self.early_stopping:
                self.best_theta = model.theta.copy()
            return False
        self.since_best += 1
        if self.early_stopping and self.since_best >= self.patience:
            history.stopped_early = True
            history.stop_reason = f"early stopping: no improvement for {self.patience} {self.unit}"
            return True
        return False

    def restore(self, model):
        if self.early_stopping and self.best_theta is not None:
            model.theta[...] = self.best_theta


def _over_budget(opt, n, batch_size):
    """True when DP-SGD's next epoch would take epsilon past its target."""
    if getattr(opt, "target_epsilon", None) is None:
        return False
    steps = max(1, int(round(n / batch_size))) if opt.poisson else -(-n // batch_size)
    return opt.epsilon(extra_steps=steps) > opt.target_epsilon


def _epoch_fields(model, history, validated):
    """What the bar (or the per-epoch line) shows of the last epoch."""
    shown = {"loss": f"{history.loss[-1]:.4f}"}
    if validated:
        shown["val_loss"] = f"{history.val_loss[-1]:.4f}"
        if model.is_classifier:
            shown["val_acc"] = f"{100 * history.val_accuracy[-1]:.2f}%"
        else:
            shown["val_r2"] = f"{history.val_r2[-1]:.4f}"
    if history.epsilon:
        shown["epsilon"] = f"{history.epsilon[-1][0]:.3g}"
    return shown


def _interruptible(call):
    """Run a compiled call ``call(stop)`` on the compute thread (``_compute``), so that the caller's thread
    stays free to take Ctrl-C: it then sets the call's stop flag, waits for the mini-batch in progress
    to finish (the model stays consistent) and raises KeyboardInterrupt."""
    stop = np.zeros(1, np.int64)
    return _compute.run(lambda: call(stop), stop)


def _run_epoch(model, training, opt, X, Y, W, order, batch_size, t, backend, rng, threads=None):
    """One epoch as one compiled call (several when DP-SGD's noise block would be too large, and
    chunks of about 50 ms: on the numba kernels each on the number of threads that ``threads``, a
    ``_threads.ThreadChoice``, picks; on the ahead-of-time module on the calling thread,
    ``_chunks_here``); returns (sum of m_b J_b, steps taken, training buffers). On a
    cold machine the first epochs may run on the NumPy twin while the tuned kernels compile
    (``loopgrad.tiers``)."""
    if opt.poisson:
        return _run_poisson_epoch(model, training, opt, X, Y, W, order, batch_size, t, backend, rng)
    n_batches = -(-order.size // batch_size)
    per_call = max(1, NOISE_BLOCK // model.n_params) if opt.per_step_noise else n_batches
    total = 0.0
    first = 0
    while first < n_batches:
        steps = min(per_call, n_batches - first)
        module = running(backend, model.dtype.name, model.n_params)
        if threads is not None and _numba_kernels(module) and not isinstance(X, SparseRows):
            threads.resolve()
            part_total, done = _interruptible(lambda stop: _chunks_on_threads(
                threads, module, model, training, opt, X, Y, W, order, batch_size, t, first, n_batches, per_call, stop))
            total += part_total
            first += done
            continue
        part = order[first * batch_size:(first + steps) * batch_size]
        if isinstance(X, SparseRows):
            part_total, _ = _interruptible(lambda stop: module.train_epoch_sparse_into(
                training.net, training.buf, X.data, X.indices, X.indptr, Y, W, part, batch_size, training.update,
                t + first, stop))
            total += part_total
            opt.record(steps)
            first += steps
            continue
        if isinstance(module, _aot.Network):
            total += _chunks_here(module, model, training, opt, X, Y, W, part, batch_size, t + first)
            first += steps
            continue
        noise = opt.noise(steps, model.n_params, model.dtype)
        part_total, _ = _interruptible(lambda stop: module.train_epoch_into(
            training.net, training.buf, X, Y, W, part, batch_size, training.update, t + first, noise, stop))
        total += part_total
        opt.record(steps)
        first += steps
    return total, n_batches, training


# Multiply-adds per chunk of an epoch on the ahead-of-time module (about 50 ms at its serial speed here).
CHUNK_MULTIPLY_ADDS = 1.5e9


def _chunks_here(module, model, training, opt, X, Y, W, rows, batch_size, t):
    """The steps over ``rows`` on the ahead-of-time module (``_aot``), on the calling thread, in chunks of
    about CHUNK_MULTIPLY_ADDS: its code is serial, so it makes no OpenMP team that would need the compute
    thread (``_compute``), and the handoff to that thread, which may then run on the other core, away
    from the data in this one's cache, cost 64-64-10 at batch 32 about 2% (17.8 against 17.4 us a step,
    medians of 6 alternating fresh processes on the AVX-512 Xeon). Ctrl-C
    raises KeyboardInterrupt between two chunks (the compiled call releases the GIL), so the model is
    never left inside a mini-batch. Returns the sum of m_b J_b."""
    per_step = 3 * batch_size * model.n_params  # F1, B4 and B2 over every weight, once each
    chunk = max(1, int(CHUNK_MULTIPLY_ADDS // per_step))
    stop = np.zeros(1, np.int64)
    total = 0.0
    for start in range(0, -(-rows.size // batch_size), chunk):
        part = rows[start * batch_size:(start + chunk) * batch_size]
        steps = -(-part.size // batch_size)
        noise = opt.noise(steps, model.n_params, model.dtype)
        part_total, _ = module.train_epoch_into(training.net, training.buf, X, Y, W, part, batch_size,
                                                training.update, t + start, noise, stop)
        total += part_total
        opt.record(steps)
    return total


def _on_compute(module, call):
    """``call()`` on the compute thread (``_compute``: one OpenMP team for the process) when ``module`` is the
    numba kernels, whose calls may open parallel regions, on the threads that other running threads of
    the process leave free (``_company``); at once for the NumPy twin and the ahead-of-time module, which
    open none."""
    if not _numba_kernels(module):
        return call()
    from . import _company

    return _compute.run(lambda: _company.on_free_threads(call))


def _numba_kernels(module):
    """Whether ``module`` is the numba-compiled ``kernels.network`` (whose parallel regions take a thread
    count), not its NumPy twin nor the ahead-of-time module, whose attributes may load numba."""
    return isinstance(module, types.ModuleType) and module.__name__ == "loopgrad.kernels.network"


def _chunks_on_threads(threads, module, model, training, opt, X, Y, W, order, batch_size, t, first, n_batches,
                       per_call, stop):
    """The epoch's steps from ``first`` on, in chunks, each on the number of threads that ``threads`` (a
    ``_threads.ThreadChoice``) picks and timed for it; runs on the compute thread (``_compute``), whose one
    team of OpenMP threads serves every chunk. Returns (sum of m_b J_b, steps done)."""
    import numba

    from . import _company  # loads numba's parts: only on this path

    total, done = 0.0, 0
    while first + done < n_batches and stop[0] == 0:
        n_threads, steps = threads.plan(min(per_call, n_batches - first - done))
        # fewer threads while other threads of the process hold the cores (a spinning BLAS pool, ...)
        n_threads = _company.free_threads(n_threads)
        at = first + done
        part = order[at * batch_size:(at + steps) * batch_size]
        noise = opt.noise(steps, model.n_params, model.dtype)
        numba.set_num_threads(n_threads)
        t0 = time.perf_counter()
        part_total, _ = module.train_epoch_into(training.net, training.buf, X, Y, W, part, batch_size,
                                                training.update, t + at, noise, stop)
        threads.record(n_threads, steps, time.perf_counter() - t0)
        if stop[0] != 0:
            break  # interrupted inside the chunk: the caller raises KeyboardInterrupt
        total += part_total
        done += steps
        opt.record(steps)
    return total, done


def _run_poisson_epoch(model, training, opt, X, Y, W, rows, batch_size, t, backend, rng):
    """DP-SGD with Poisson sampling: n / batch_size steps, each on the rows that an independent coin
    of probability batch_size / n picked (a batch of varying size; an empty one is skipped, with
    probability about e^-batch_size). One compiled call per step; the buffers grow when a batch is
    larger than they hold."""
    rate = min(1.0, batch_size / rows.size)
    steps = max(1, int(round(rows.size / batch_size)))
    stop = np.zeros(1, np.int64)
    total, done, visited = 0.0, 0, 0
    for _ in range(steps):
        batch = rows[rng.random(rows.size) < rate]
        if batch.size == 0:
            continue
        if batch.size > training.buf.rows:
            training = Training(training.net, layout.make_buffers(model.layers, batch.size + batch.size // 4,
                                                                  model.dtype, W.shape[0] > 0), training.update)
        module = running(backend, model.dtype.name, model.n_params)
        noise = opt.noise(1, model.n_params, model.dtype)
        part, _ = module.train_epoch_into(training.net, training.buf, X, Y, W, batch, batch.size, training.update,
                                          t + done, noise, stop)
        total, done, visited = total + part, done + 1, visited + batch.size
        opt.record(1)
    # scaled so that the caller's total / n is the mean loss over the rows the batches visited
    return total * rows.size / max(1, visited), done, training


def _train(model, opt, X, Y, rows, val, plan, rng, weights=None):
    """Epochs over the rows ``rows`` of (X, Y) (indices; shuffled each epoch with ``rng`` when asked)."""
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    n = rows.size
    batch_size = min(plan.batch_size, n)
    opt.start(n, batch_size)
    W = np.zeros(0, model.dtype) if weights is None else weights
    training = model.training_buffers(batch_size + (4 * int(np.sqrt(batch_size)) + 8 if opt.poisson else 0), opt,
                                      weighted=weights is not None, sparse_input=isinstance(X, SparseRows))
    carry = plan.carry
    if carry is not None and carry.moments is not None:
        if carry.moments.shape != training.update.state.shape:
            raise ValueError(f"optimizer_state: moments of shape {carry.moments.shape} do not fit this model's "
                             f"{training.update.state.shape}")
        training.update.state[...] = carry.moments
    history = History()
    threads = _threads.ThreadChoice()
    watch = _Watch(plan.early_stopping, plan.patience, plan.tol)
    t = carry.t if carry is not None else 0
    start_theta = model.theta.copy()
    lines = plan.progress == "lines"
    bar = tqdm(total=plan.epochs * -(-n // batch_size), disable=lines or not plan.progress, unit="batch",
               leave=True, dynamic_ncols=True)
    # while the NumPy twin stands in for compiling loops: one BLAS thread, the compile has the other core
    blas = tiers.blas_for(plan.backend, running(plan.backend, model.dtype.name, model.n_params))
    try:
        with blas:
            for epoch in range(plan.epochs):
                if _over_budget(opt, n, batch_size):
                    history.stopped_early = True
                    history.stop_reason = (f"target_epsilon: one more epoch would spend more than epsilon = "
                                           f"{opt.target_epsilon:g} at delta = {opt.delta:g}")
                    break
                order = rng.permutation(rows) if plan.shuffle else rows
                t_epoch = time.perf_counter()
                total, steps, training = _run_epoch(model, training, opt, X, Y, W, order, batch_size, t,
                                                    plan.backend, rng, threads)
                history.epoch_seconds.append(time.perf_counter() - t_epoch)
                history.thread_steps = dict(threads.steps)
                t += steps
                bar.update(steps)
                epoch_loss = total / n
                if not np.isfinite(epoch_loss):
                    model.theta[...] = start_theta  # a failed fit leaves the model as it was
                    raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss {epoch_loss}); the "
                                             f"parameters were restored; lower the learning rate")
                if isinstance(opt, _optim.DPSGD):
                    history.epsilon.append((opt.epsilon(), opt.delta))
                stop = watch.record(model, history, epoch, epoch_loss, val, plan.backend)
                shown = _epoch_fields(model, history, val is not None)
                if lines:
                    print(f"epoch {epoch + 1}/{plan.epochs} " + " ".join(f"{k} {v}" for k, v in shown.items())
                          + f" ({history.epoch_seconds[-1]:.2f} s)", flush=True)
                else:
                    bar.set_postfix(epoch=epoch + 1, **shown)
                if stop:
                    break
    finally:
        bar.close()
        if carry is not None:
            carry.moments, carry.t = training.update.state.copy(), t
    watch.restore(model)
    history.seconds = time.perf_counter() - t_start
    return history

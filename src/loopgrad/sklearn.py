"""scikit-learn estimators backed by loopgrad's fused loop step.

``MLPClassifier`` and ``MLPRegressor`` take every parameter of scikit-learn's own MLPs with the
same meaning and defaults (solvers "adam", "sgd" with the "constant", "invscaling" and
"adaptive" learning rates, and "lbfgs" through scipy on the fused loss and gradient;
``warm_start``, ``partial_fit``, early stopping on a stratified validation score), initialise the
weights as scikit-learn does (Glorot-uniform, drawn from ``random_state`` in the same order), and
expose the same fitted attributes (``coefs_``/``intercepts_`` as writable views, ``loss_`` with
the L2 term, ``t_`` in samples, ...). Extras: ``dtype`` (default: X's float32 or float64), more
activations, and DP-SGD (``dp_clip``/``dp_noise`` with ``solver="sgd"``, setting ``dp_epsilon_``,
the epsilon spent at ``dp_delta``). ``alpha`` is scikit-learn's L2 term ``alpha/(2 m) ||W||^2`` per
batch of ``m``, which is weight decay ``alpha / m`` on the weights.
"""
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from . import layout
from .model import MLP
from .optim import DPSGD, SGD, Adam, OptimizerState

_SKLEARN_ACTIVATION = {"logistic": "sigmoid"}


class _BaseMLP(BaseEstimator):
    # Declarative constraints, checked by scikit-learn before any work: errors name the estimator's
    # own parameters (not loopgrad's fit arguments) and the allowed values.
    _parameter_constraints = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu", "leaky_relu", "softplus", "gelu"})],
        "solver": [StrOptions({"lbfgs", "adam", "sgd"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "dtype": [None, StrOptions({"float32", "float64"})],
        "dp_clip": [None, Interval(Real, 0, None, closed="neither")],
        "dp_noise": [None, Interval(Real, 0, None, closed="left")],
        "dp_delta": [Interval(Real, 0, 1, closed="neither")],
        "dp_target_epsilon": [None, Interval(Real, 0, None, closed="neither")],
        "dp_poisson": ["boolean"],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype=None, dp_clip=None, dp_noise=None,
                 dp_delta=1e-5, dp_target_epsilon=None, dp_poisson=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.dp_clip = dp_clip
        self.dp_noise = dp_noise
        self.dp_delta = dp_delta
        self.dp_target_epsilon = dp_target_epsilon
        self.dp_poisson = dp_poisson

    def fit(self, X, y, sample_weight=None):
        """Fit to (X, y) (from the current weights with ``warm_start``), each example's loss weighted by
        ``sample_weight`` (m,) when given; if anything fails, the estimator keeps the fitted state it
        had before."""
        return self._guarded(lambda: self._fit_data(X, y, incremental=False, sample_weight=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # CSR X runs the sparse loops of F1 and B2 (kernels/sparse.py)
        return tags

    def _guarded(self, work):
        saved = dict(self.__dict__)
        model = getattr(self, "model_", None)
        theta = None if model is None else model.theta.copy()
        try:
            self._validate_params()
            return work()
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            if theta is not None:
                model.theta[...] = theta
            raise

    # ---- the training loop ------------------------------------------------------------------------

    def _fit(self, X, Y, output, incremental, stratify=None, sample_weight=None):
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if np.isscalar(hidden) else list(hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
            raise ValueError(f"hidden_layer_sizes: expected positive integers, got {self.hidden_layer_sizes!r}")
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        if incremental and self.solver == "lbfgs":
            raise ValueError("partial_fit is only available for stochastic optimizers; solver='lbfgs' is not")
        self._random_state = check_random_state(self.random_state)
        sizes = [X.shape[1], *hidden, Y.shape[1]]
        resume = hasattr(self, "model_") and (incremental or self.warm_start)
        if resume and self.model_.sizes != sizes:
            raise ValueError(f"X, y: a {'partial_fit' if incremental else 'warm start'} continues the network "
                             f"{self.model_.sizes}; these data need {sizes}")
        if not resume:
            self._initialize(sizes, output, Y.dtype.name)  # Y is built in the model's dtype (_dtype)
        model = self.model_
        if sample_weight is not None:
            sample_weight = model._sample_weight(sample_weight, X.shape[0])
        if self.solver == "lbfgs":
            self._fit_lbfgs(model, X, Y, sample_weight)
        else:
            self._fit_stochastic(model, X, Y, incremental, stratify, sample_weight)
        self.n_layers_ = len(model.sizes)
        self.n_outputs_ = Y.shape[1]
        self.out_activation_ = {"sigmoid": "logistic"}.get(output, output)
        return self

    def _initialize(self, sizes, output, dtype):
        """A new network of ``dtype`` with scikit-learn's initialisation: per layer, W then b drawn uniform
        in +-sqrt(f / (fan_in + fan_out)) from ``random_state``, f = 2 for logistic units and 6 otherwise."""
        activation = _SKLEARN_ACTIVATION.get(self.activation, self.activation)
        model = MLP(sizes, hidden=activation, output=output, dtype=dtype, seed=None)
        factor = 2.0 if self.activation == "logistic" else 6.0
        for W, b in model.params:
            bound = np.sqrt(factor / (W.shape[0] + W.shape[1]))
            W[...] = self._random_state.uniform(-bound, bound, W.shape)
            b[...] = self._random_state.uniform(-bound, bound, b.shape)
        self.model_ = model
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self.best_loss_ = None if self.early_stopping else np.inf
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = -np.inf if self.early_stopping else None
        self._carry = OptimizerState()
        self._learning_rate = float(self.learning_rate_init)
        self._optimizer = None

    def _make_optimizer(self, batch, mean_weight=1.0):
        # scikit-learn's alpha/(2 s) ||W||^2 per batch, s its rows or the sum of their sample weights:
        # weight decay alpha/s, with s taken as batch x the mean weight (exact when one batch is all rows)
        decay = self.alpha / (batch * mean_weight)
        private = self.dp_clip is not None or self.dp_noise is not None
        if private and self.solver != "sgd":
            raise ValueError(f"solver: differential privacy (dp_clip/dp_noise) trains with DP-SGD; set solver='sgd', "
                             f"got solver={self.solver!r}")
        if private:
            return DPSGD(self._learning_rate, clip_norm=1.0 if self.dp_clip is None else self.dp_clip,
                         noise_multiplier=1.0 if self.dp_noise is None else self.dp_noise,
                         seed=int(self._random_state.randint(np.iinfo(np.int32).max)), momentum=self.momentum,
                         weight_decay=decay, poisson=self.dp_poisson, delta=self.dp_delta,
                         target_epsilon=self.dp_target_epsilon)
        if self.solver == "adam":
            return Adam(self._learning_rate, self.beta_1, self.beta_2, self.epsilon, weight_decay=decay)
        return SGD(self._learning_rate, self.momentum, self.nesterovs_momentum and self.momentum > 0,
                   weight_decay=decay)

    def _fit_stochastic(self, model, X, Y, incremental, stratify, sample_weight):
        if self.early_stopping:
            from sklearn.model_selection import train_test_split
            parts = (X, Y) if sample_weight is None else (X, Y, sample_weight)
            split = train_test_split(*parts, random_state=self._random_state, test_size=self.validation_fraction,
                                     stratify=stratify)
            X_train, X_val, Y_train, Y_val = split[:4]
            sample_weight = None if sample_weight is None else split[4]
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                                 "your dataset.")
        else:
            X_train, Y_train, X_val, Y_val = X, Y, None, None
        n = X_train.shape[0]
        if self.batch_size == "auto":
            batch = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch = min(int(self.batch_size), n)
        mean_weight = 1.0 if sample_weight is None else float(np.mean(sample_weight))
        if self._optimizer is None or not incremental:
            self._optimizer = self._make_optimizer(batch, mean_weight)
        opt = self._optimizer
        weights = [W for W, _ in model.params]
        n_batches = -(-n // batch)
        self.n_iter_ = 0 if not incremental else self.n_iter_
        stopped = False
        for _ in range(1 if incremental else self.max_iter):
            opt.lr = self._learning_rate
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                history = model.fit(X_train, Y_train, epochs=1, batch_size=batch, optimizer=opt, shuffle=self.shuffle,
                                    seed=int(self._random_state.randint(np.iinfo(np.int32).max)), progress=False,
                                    optimizer_state=self._carry, sample_weight=sample_weight)
            self.n_iter_ += 1
            # scikit-learn's loss: the data term plus alpha/(2 m_b) ||W||^2 for each of the epoch's batches
            l2 = 0.5 * self.alpha * sum(float(np.dot(W.ravel(), W.ravel())) for W in weights)
            self.loss_ = history.loss[0] + l2 * n_batches / (n * mean_weight)
            self.t_ += n
            self.loss_curve_.append(self.loss_)
            if history.epsilon:
                self.dp_epsilon_ = history.epsilon[-1][0]
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            self._count_no_improvement(X_val, Y_val)
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                self._learning_rate = self.learning_rate_init / (self.t_ + 1) ** self.power_t
            if self._no_improvement_count > self.n_iter_no_change:
                if self.solver == "sgd" and self.learning_rate == "adaptive" and self._learning_rate > 1e-6:
                    self._learning_rate /= 5.0
                    self._no_improvement_count = 0
                else:
                    stopped = True
                    break
        if not hasattr(self, "dp_epsilon_"):
            self.dp_epsilon_ = None
        if not stopped and not incremental and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the optimization "
                          f"hasn't converged yet.", ConvergenceWarning)
        if self.early_stopping and getattr(self, "_best_theta", None) is not None:
            model.theta[...] = self._best_theta

    def _count_no_improvement(self, X_val, Y_val):
        if self.early_stopping:
            score = self._validation_score(X_val, Y_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            self._no_improvement_count = (self._no_improvement_count + 1
                                          if score < self.best_validation_score_ + self.tol else 0)
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_theta = self.model_.theta.copy()
        else:
            self._no_improvement_count = (self._no_improvement_count + 1
                                          if self.loss_curve_[-1] > self.best_loss_ - self.tol else 0)
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    def _fit_lbfgs(self, model, X, Y, sample_weight):
        """L-BFGS (scipy.optimize.minimize, L-BFGS-B) on loopgrad's fused loss and gradient over all
        rows (weighted means with ``sample_weight``), with scikit-learn's L2 term alpha/(2n) ||W||^2."""
        from scipy.optimize import minimize

        n = X.shape[0] if sample_weight is None else float(np.sum(sample_weight, dtype=np.float64))
        decay = layout.decay_mask(model.layers, np.float64)

        objective = model.objective(X, Y, sample_weight)

        def loss_and_grad(theta):
            J, grad = objective(theta)
            w = theta * decay
            return float(J) + 0.5 * self.alpha * float(np.dot(w, w)) / n, grad.astype(np.float64) + self.alpha * w / n

        result = minimize(loss_and_grad, model.theta.astype(np.float64), jac=True, method="L-BFGS-B",
                          options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        model.theta[...] = result.x
        self.n_iter_ = int(result.nit)
        self.loss_ = float(result.fun)
        if result.status == 1:
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iterations ({result.message}); increase "
                          f"max_iter or max_fun, or scale the data", ConvergenceWarning)

    # ---- fitted attributes -------------------------------------------------------------------------

    @property
    def coefs_(self):
        """W[l] (n_{l-1}, n_l) per layer: views into the model's parameter block (writable)."""
        check_is_fitted(self, "model_")
        return [W for W, _ in self.model_.params]

    @coefs_.setter
    def coefs_(self, values):
        self._assign(values, 0, "coefs_")

    @property
    def intercepts_(self):
        """b[l] (n_l,) per layer: views into the model's parameter block (writable)."""
        check_is_fitted(self, "model_")
        return [b for _, b in self.model_.params]

    @intercepts_.setter
    def intercepts_(self, values):
        self._assign(values, 1, "intercepts_")

    def _assign(self, values, k, name):
        check_is_fitted(self, "model_")
        params = [p[k] for p in self.model_.params]
        if len(values) != len(params) or any(np.shape(v) != p.shape for v, p in zip(values, params)):
            raise ValueError(f"{name}: expected arrays of shapes {[p.shape for p in params]}, got "
                             f"{[np.shape(v) for v in values]}")
        for v, p in zip(values, params):
            p[...] = v

    def _forward(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], accept_sparse="csr")
        return self.model_.forward(X)


def _dtype(estimator, X):
    """The model's dtype: the ``dtype`` parameter, or X's (float32 stays float32, as in scikit-learn)."""
    if hasattr(estimator, "model_") and (estimator.warm_start or getattr(estimator, "_incremental", False)):
        return estimator.model_.dtype.name
    return estimator.dtype or ("float32" if X.dtype == np.float32 else "float64")


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: softmax output, or one logistic unit for two classes."""

    def _validation_score(self, X, Y):
        if getattr(self, "_multilabel", False):  # scikit-learn's: the share of rows with every label right
            return float(np.mean(np.all((self.model_.forward(X) > 0.5) == (Y > 0.5), axis=1)))
        return float(self.model_.score(X, Y if Y.shape[1] > 1 else Y[:, 0]))

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y) from the current weights, optimizer state kept from the last call.
        ``classes`` (every label of all calls) is required on the first call."""
        def work():
            first = not hasattr(self, "model_")
            if first and classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            return self._fit_data(X, y, incremental=True, classes=classes if first else None,
                                  sample_weight=sample_weight)
        return self._guarded(work)

    def _fit_data(self, X, y, incremental, classes=None, sample_weight=None):
        reset = not (incremental and hasattr(self, "model_"))
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], accept_sparse="csr", y_numeric=False,
                             reset=reset, multi_output=True)
        check_classification_targets(y)
        if type_of_target(y) == "multilabel-indicator":
            return self._fit_multilabel(X, y, incremental, sample_weight)
        if reset:
            self._multilabel = False
        y = column_or_1d(y, warn=True)
        if reset or not hasattr(self, "_encoder"):
            encoder = LabelEncoder().fit(y if classes is None else classes)
            if self.warm_start and hasattr(self, "classes_") and not incremental \
                    and not np.array_equal(encoder.classes_, self.classes_):
                raise ValueError(f"warm_start can only be used where y has the same classes as in the previous "
                                 f"call to fit. Previously got {self.classes_}, y has {encoder.classes_}")
            self._encoder = encoder
            self.classes_ = encoder.classes_
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y: labels {unknown.tolist()} are not in classes {self.classes_.tolist()}")
        codes = self._encoder.transform(y)
        k = len(self.classes_)
        self._incremental = incremental
        dtype = _dtype(self, X)
        if k == 2:
            return self._fit(X, codes.reshape(-1, 1).astype(dtype), "sigmoid", incremental, stratify=codes,
                             sample_weight=sample_weight)
        Y = np.zeros((len(codes), k), dtype=dtype)
        Y[np.arange(len(codes)), codes] = 1
        return self._fit(X, Y, "softmax", incremental, stratify=codes, sample_weight=sample_weight)

    def _fit_multilabel(self, X, y, incremental, sample_weight):
        """A multilabel indicator y (m, K): K sigmoid units, each with its binary cross-entropy."""
        if hasattr(self, "model_") and (incremental or self.warm_start) and not getattr(self, "_multilabel", False):
            raise ValueError("y: a multilabel indicator matrix cannot continue a model fitted on class labels")
        self._multilabel = True
        self.classes_ = np.arange(y.shape[1])
        Y = np.asarray(y, dtype=_dtype(self, X))
        return self._fit(X, Y, "sigmoid", incremental, sample_weight=sample_weight)

    def predict_proba(self, X):
        """Class probabilities (m, n_classes); for a multilabel fit, each label's probability (m, K)."""
        A = self._forward(X)
        if A.shape[1] == 1 and len(self.classes_) == 2 and not getattr(self, "_multilabel", False):
            return np.hstack([1 - A, A])
        return A

    def predict_log_proba(self, X):
        """log of ``predict_proba`` (probabilities that round to 0 give -inf, without a warning)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        proba = self.predict_proba(X)
        if getattr(self, "_multilabel", False):
            return (proba > 0.5).astype(np.int64)
        return self.classes_[np.argmax(proba, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor; y may have several columns.

    ``loss``: "squared_error" (identity output, 0.5 (a - y)^2 per output) or "poisson" (exp output,
    half the Poisson deviance y log(y / a) - y + a per output); both pair with their output so that
    B8 gives dZ[L] = A[L] - Y."""

    _parameter_constraints = {**_BaseMLP._parameter_constraints, "loss": [StrOptions({"squared_error", "poisson"})]}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype=None, dp_clip=None,
                 dp_noise=None, dp_delta=1e-5, dp_target_epsilon=None, dp_poisson=False):
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
                         learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t,
                         max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
                         warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
                         early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
                         beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
                         dtype=dtype, dp_clip=dp_clip, dp_noise=dp_noise, dp_delta=dp_delta,
                         dp_target_epsilon=dp_target_epsilon, dp_poisson=dp_poisson)
        self.loss = loss

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y) from the current weights, optimizer state kept from the last call."""
        return self._guarded(lambda: self._fit_data(X, y, incremental=True, sample_weight=sample_weight))

    def _fit_data(self, X, y, incremental, sample_weight=None):
        reset = not (incremental and hasattr(self, "model_"))
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], accept_sparse="csr", y_numeric=True, multi_output=True,
                             reset=reset)
        self._y_1d = y.ndim == 1
        self._incremental = incremental
        Y = np.asarray(y, dtype=_dtype(self, X)).reshape(len(y), -1)
        if self.loss == "poisson" and (Y < 0).any():
            raise ValueError("Some value(s) of y are negative which is not allowed for Poisson regression.")
        return self._fit(X, Y, "exp" if self.loss == "poisson" else "identity", incremental,
                         sample_weight=sample_weight)

    def _validation_score(self, X, Y):
        return float(self.model_.score(X, Y))

    def predict(self, X):
        A = self._forward(X)
        return A[:, 0] if self._y_1d else A

"""scikit-learn estimators backed by loopgrad's fused loop step.

``MLPClassifier`` and ``MLPRegressor`` take the options of scikit-learn's own
estimators where they overlap, and expose the same fitted attributes
(``coefs_``, ``intercepts_``, ``loss_curve_``, ``classes_``, ``n_features_in_``...).
``dp_clip``/``dp_noise`` (with ``solver="sgd"``) train with DP-SGD and set ``dp_epsilon_``, the
epsilon spent at ``dp_delta``. ``alpha`` is scikit-learn's L2 term ``alpha/(2 m) ||W||^2`` per batch of ``m``,
which is weight decay ``alpha / m`` on the weights.
"""
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from .model import MLP
from .optim import DPSGD, SGD, Adam

_SKLEARN_ACTIVATION = {"logistic": "sigmoid"}


class _BaseMLP(BaseEstimator):
    # Declarative constraints, checked by scikit-learn before any work: errors name the estimator's
    # own parameters (not loopgrad's fit arguments) and the allowed values.
    _parameter_constraints = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu", "leaky_relu", "softplus", "gelu"})],
        "solver": [StrOptions({"adam", "sgd"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "dtype": [StrOptions({"float32", "float64"})],
        "dp_clip": [None, Interval(Real, 0, None, closed="neither")],
        "dp_noise": [None, Interval(Real, 0, None, closed="left")],
        "dp_delta": [Interval(Real, 0, 1, closed="neither")],
        "dp_target_epsilon": [None, Interval(Real, 0, None, closed="neither")],
        "dp_poisson": ["boolean"],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.001, max_iter=200, shuffle=True, random_state=None,
                 tol=1e-4, verbose=False, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, momentum=0.9, nesterovs_momentum=True, dtype="float64",
                 dp_clip=None, dp_noise=None, dp_delta=1e-5, dp_target_epsilon=None, dp_poisson=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.dtype = dtype
        self.dp_clip = dp_clip
        self.dp_noise = dp_noise
        self.dp_delta = dp_delta
        self.dp_target_epsilon = dp_target_epsilon
        self.dp_poisson = dp_poisson

    def fit(self, X, y):
        """Fit to (X, y); if anything fails, the estimator keeps the fitted state it had before."""
        saved = dict(self.__dict__)
        try:
            self._validate_params()
            return self._fit_data(X, y)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _fit(self, X, Y, output):
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if np.isscalar(hidden) else list(hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
            raise ValueError(f"hidden_layer_sizes: expected positive integers, got {self.hidden_layer_sizes!r}")
        n = X.shape[0]
        batch = min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)
        decay = self.alpha / batch
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        private = self.dp_clip is not None or self.dp_noise is not None
        if private and self.solver != "sgd":
            raise ValueError(f"solver: differential privacy (dp_clip/dp_noise) trains with DP-SGD; set solver='sgd', "
                             f"got solver={self.solver!r}")
        if private:
            opt = DPSGD(self.learning_rate_init, clip_norm=1.0 if self.dp_clip is None else self.dp_clip,
                        noise_multiplier=1.0 if self.dp_noise is None else self.dp_noise,
                        seed=seed, momentum=self.momentum, weight_decay=decay, poisson=self.dp_poisson, delta=self.dp_delta,
                        target_epsilon=self.dp_target_epsilon)
        elif self.solver == "adam":
            opt = Adam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon, weight_decay=decay)
        else:
            opt = SGD(self.learning_rate_init, self.momentum, self.nesterovs_momentum and self.momentum > 0,
                      weight_decay=decay)
        activation = _SKLEARN_ACTIVATION.get(self.activation, self.activation)
        model = MLP([X.shape[1], *hidden, Y.shape[1]], hidden=activation, output=output, dtype=self.dtype, seed=seed)
        val = self.validation_fraction if self.early_stopping else 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            history = model.fit(X, Y, epochs=self.max_iter, batch_size=batch, optimizer=opt, shuffle=self.shuffle,
                                seed=seed, validation_split=val, early_stopping=True,
                                patience=self.n_iter_no_change, progress=bool(self.verbose), tol=self.tol)
        self.model_ = model
        self.loss_curve_ = list(history.loss)
        self.n_iter_ = history.epochs
        # DP-SGD: the (epsilon, delta) spent, from dp-accounting's RDP accountant (None without DP)
        self.dp_epsilon_ = history.epsilon[-1][0] if history.epsilon else None
        self.loss_ = history.loss[-1] if history.loss else np.nan
        self.best_loss_ = min(history.loss) if history.loss and not self.early_stopping else None
        if self.early_stopping:
            self.validation_scores_ = list(history.val_accuracy or history.val_r2)
            self.best_validation_score_ = max(self.validation_scores_) if self.validation_scores_ else None
        self.t_ = history.epochs * -(-n // batch)
        self.n_layers_ = len(model.sizes)
        self.n_outputs_ = Y.shape[1]
        self.out_activation_ = {"sigmoid": "logistic"}.get(output, output)
        if not history.stopped_early and self.max_iter > 0:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the optimization "
                          f"hasn't converged yet.", ConvergenceWarning)
        return self

    @property
    def coefs_(self):
        check_is_fitted(self, "model_")
        return [W.copy() for W, _ in self.model_.params]

    @property
    def intercepts_(self):
        check_is_fitted(self, "model_")
        return [b.copy() for _, b in self.model_.params]

    def _forward(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.model_.forward(X)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: softmax output, or one logistic unit for two classes."""

    def _fit_data(self, X, y):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=False)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        self._encoder = LabelEncoder().fit(y)
        self.classes_ = self._encoder.classes_
        codes = self._encoder.transform(y)
        k = len(self.classes_)
        if k == 2:
            Y = codes.reshape(-1, 1).astype(self.dtype)
            return self._fit(X, Y, "sigmoid")
        Y = np.zeros((len(codes), k), dtype=self.dtype)
        Y[np.arange(len(codes)), codes] = 1
        return self._fit(X, Y, "softmax")

    def predict_proba(self, X):
        A = self._forward(X)
        if A.shape[1] == 1 and len(self.classes_) == 2:
            return np.hstack([1 - A, A])
        return A

    def predict(self, X):
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: identity output, squared error; y may have several columns."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _fit_data(self, X, y):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=True, multi_output=True)
        self._y_1d = y.ndim == 1
        Y = np.asarray(y, dtype=self.dtype).reshape(len(y), -1)
        return self._fit(X, Y, "identity")

    def predict(self, X):
        A = self._forward(X)
        return A[:, 0] if self._y_1d else A

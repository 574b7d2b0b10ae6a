import numpy as np
import pytest
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from loopgrad import datasets
from loopgrad.sklearn import MLPClassifier, MLPRegressor


@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_drop_in_for_scikit_learn_on_digits():
    d = datasets.load("digits")
    params = dict(hidden_layer_sizes=(64,), batch_size=32, max_iter=15, random_state=0, learning_rate_init=2e-3)
    ours = MLPClassifier(**params).fit(d.X_train, d.y_train)
    theirs = SkMLPClassifier(**params).fit(d.X_train, d.y_train)
    assert ours.score(d.X_test, d.y_test) >= theirs.score(d.X_test, d.y_test) - 0.02
    assert [c.shape for c in ours.coefs_] == [c.shape for c in theirs.coefs_]
    assert [c.shape for c in ours.intercepts_] == [c.shape for c in theirs.intercepts_]
    assert len(ours.loss_curve_) == ours.n_iter_ and ours.n_features_in_ == 64
    np.testing.assert_array_equal(ours.classes_, np.arange(10))


def test_string_classes_and_binary():
    X = np.random.default_rng(0).standard_normal((60, 3))
    y = np.where(X[:, 0] > 0, "yes", "no")
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=100, random_state=0, learning_rate_init=1e-2).fit(X, y)
    assert set(clf.predict(X)) <= {"yes", "no"} and clf.score(X, y) > 0.9
    assert clf.predict_proba(X).shape == (60, 2) and clf.out_activation_ == "logistic"


def test_sgd_solver_and_early_stopping():
    d = datasets.load("wine")
    clf = MLPClassifier(solver="sgd", learning_rate_init=0.05, momentum=0.9, early_stopping=True, max_iter=300,
                        n_iter_no_change=5, random_state=0).fit(d.X_train, d.y_train)
    assert clf.n_iter_ < 300 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.score(d.X_test, d.y_test) > 0.9


def test_bad_solver():
    with pytest.raises(ValueError, match="solver"):
        MLPRegressor(solver="lbfgs").fit(np.ones((4, 2)), np.ones(4))


@pytest.mark.parametrize("param,value", [("alpha", "x"), ("max_iter", 0), ("learning_rate_init", -1.0),
                                         ("batch_size", 0), ("activation", "swish")])
def test_bad_parameters_are_named_in_scikit_learn_terms(param, value):
    from sklearn.utils._param_validation import InvalidParameterError
    with pytest.raises(InvalidParameterError, match=f"'{param}' parameter of MLPClassifier") as e:
        MLPClassifier(**{param: value}).fit(np.ones((6, 2)), [0, 1] * 3)
    for internal in ("epochs", "patience", "lr", "beta1", "validation_split"):
        assert f"'{internal}'" not in str(e.value)


def test_a_failed_refit_keeps_the_fitted_state():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), np.array(["a", "b"] * 20)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=20, random_state=0).fit(X, y)
    before = clf.predict(X), clf.classes_.copy(), clf.n_features_in_, clf.coefs_[0].copy()
    with pytest.raises(ValueError):
        clf.fit(np.full((30, 5), np.nan), np.arange(30) % 3)  # new shape, new classes, bad values
    np.testing.assert_array_equal(clf.predict(X), before[0])
    np.testing.assert_array_equal(clf.classes_, before[1])
    assert clf.n_features_in_ == before[2]
    np.testing.assert_array_equal(clf.coefs_[0], before[3])

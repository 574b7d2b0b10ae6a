"""Bad input at the public boundary: a clear ValueError/TypeError naming the argument, and no change."""
import numpy as np
import pytest

import loopgrad as lg


@pytest.fixture
def model():
    return lg.MLP([4, 5, 3], hidden="relu", output="softmax")


X_OK = np.arange(12.0).reshape(3, 4) / 10
Y_OK = np.array([0, 1, 2])

BAD_CALLS = [
    # (description, X, Y, exception, words in the message)
    ("wrong feature count", np.ones((3, 5)), Y_OK, ValueError, r"X: expected shape \(m, n_0\) = \(\*, 4\), got \(3, 5\)"),
    ("label width", X_OK, np.ones((3, 4)), ValueError, r"Y: expected shape \(m, n_L\) = \(3, 3\)"),
    ("row count", X_OK, np.array([0, 1]), ValueError, "Y: expected 3 rows to match X"),
    ("NaN input", np.where(X_OK > 0.5, np.nan, X_OK), Y_OK, ValueError, "X: expected finite values"),
    ("inf input", np.where(X_OK > 0.5, np.inf, X_OK), Y_OK, ValueError, "X: expected finite values"),
    ("1-D input", np.ones(4), Y_OK, ValueError, "X: expected a 2-D array"),
    ("3-D input", np.ones((3, 4, 1)), Y_OK, ValueError, "X: expected a 2-D array"),
    ("complex input", X_OK + 1j, Y_OK, TypeError, "X: expected real numbers.*complex"),
    ("string input", np.array([["a"] * 4] * 3), Y_OK, TypeError, "X: expected real numbers"),
    ("empty batch", np.ones((0, 4)), np.array([], dtype=int), ValueError, "X: expected at least one example"),
    ("label too large", X_OK, np.array([0, 1, 3]), ValueError, r"Y: expected class labels in \[0, 3\), got 3"),
    ("negative label", X_OK, np.array([0, -1, 2]), ValueError, r"Y: expected class labels in \[0, 3\), got -1"),
    ("NaN labels", X_OK, np.array([0.0, np.nan, 1.0]), ValueError, "Y: expected finite values"),
    ("fractional labels", X_OK, np.array([0.0, 0.5, 1.0]), ValueError, "Y: expected integer class labels"),
    ("string labels", X_OK, np.array(["a", "b", "c"]), TypeError, "Y: expected numeric targets"),
]


# ``fit`` learns labels that are not 0..K-1 as the model's classes (strings, 1..K, -1/0/1): for it
# these three are labels, not errors; a count of distinct labels that is not K still is one.
LABELS_FOR_FIT = {"label too large", "negative label", "string labels"}


@pytest.mark.parametrize("what,X,Y,exc,words", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
@pytest.mark.parametrize("method", ["loss", "gradients", "fit"])
def test_bad_input_is_rejected_and_model_unchanged(model, method, what, X, Y, exc, words):
    before = model.theta.copy()
    if method == "fit":
        if what in LABELS_FOR_FIT:
            X, Y = np.r_[X, X[:1]], np.r_[Y, ["d"] if Y.dtype.kind == "U" else [7]]  # four labels for three classes
            exc, words = ValueError, "y: labels .* 4 distinct labels do not name the model's 3 classes"
        words = words.replace("Y:", "y:")
    with pytest.raises(exc, match=words):
        getattr(model, method)(X, Y)
    np.testing.assert_array_equal(model.theta, before)
    assert model.classes is None


BAD_X = [c for c in BAD_CALLS if c[4].startswith("X:")]


@pytest.mark.parametrize("what,X", [(c[0], c[1]) for c in BAD_X], ids=[c[0] for c in BAD_X])
def test_forward_rejects_bad_input(model, what, X):
    with pytest.raises((ValueError, TypeError), match="X:"):
        model.forward(X)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(sizes=[4]), ValueError, "at least two sizes"),
    (dict(sizes=[4, 0, 3]), ValueError, r"sizes\[1\]: expected a width >= 1, got 0"),
    (dict(sizes=[4, 2.5]), TypeError, r"sizes\[1\]: expected an integer"),
    (dict(sizes="43"), TypeError, "sizes"),
    (dict(sizes=[4, 3], hidden="swish"), ValueError, "activation: expected one of"),
    (dict(sizes=[4, 3], output="relu"), ValueError, "output: expected one of softmax, sigmoid, identity"),
    (dict(sizes=[4, 3], dtype="float16"), TypeError, "dtype: expected float32 or float64, got 'float16'"),
    (dict(sizes=[4, 3], dtype="int64"), TypeError, "dtype"),
])
def test_bad_architecture(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        lg.MLP(**kwargs)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(epochs=-1), ValueError, "epochs: expected an integer >= 0, got -1"),
    (dict(batch_size=0), ValueError, "batch_size: expected an integer >= 1, got 0"),
    (dict(batch_size=2.5), TypeError, "batch_size: expected an integer"),
    (dict(backend="gpu"), ValueError, "backend: expected 'loops' or 'numpy'"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer: expected"),
    (dict(validation_split=1.5), ValueError, "validation_split"),
    (dict(optimizer=lg.SGD(0.1), validation_data=(np.ones((2, 3)), [0, 1])), ValueError, "validation_data"),
])
def test_bad_fit_arguments_leave_model_unchanged(model, kwargs, exc, words):
    before = model.theta.copy()
    with pytest.raises(exc, match=words):
        model.fit(X_OK, Y_OK, progress=False, **kwargs)
    np.testing.assert_array_equal(model.theta, before)


@pytest.mark.parametrize("make,words", [
    (lambda: lg.SGD(lr=0), r"lr: expected a value in \(0.0, inf\)"),
    (lambda: lg.SGD(lr=0.1, momentum=1.5), "momentum"),
    (lambda: lg.Adam(beta1=1.0), "beta1"),
    (lambda: lg.DPSGD(clip_norm=-1), "clip_norm"),
])
def test_bad_optimizer_settings(make, words):
    with pytest.raises(ValueError, match=words):
        make()


def test_sigmoid_single_unit_takes_binary_labels():
    m = lg.MLP([2, 1], output="sigmoid")
    X = np.ones((2, 2))
    assert np.isfinite(m.loss(X, [0, 1]))
    with pytest.raises(ValueError, match=r"labels in \[0, 2\), got 2"):
        m.loss(X, [0, 2])


def test_regression_targets_shape():
    m = lg.MLP([2, 2], output="identity")
    with pytest.raises(ValueError, match=r"Y: expected targets \(m, n_L\) = \(3, 2\)"):
        m.loss(np.ones((3, 2)), np.ones(3))


@pytest.mark.parametrize("output,Y,words", [
    ("sigmoid", [[0.0], [7.0], [1.0]], r"targets in \[0, 1\] for a sigmoid output, got 7.0 at row 1"),
    ("sigmoid", [[0.0], [-1.0], [1.0]], r"targets in \[0, 1\] for a sigmoid output, got -1.0 at row 1"),
    ("softmax", [[1, 0], [0, 1], [5, 5]], r"targets in \[0, 1\] for a softmax output, got 5.0 at row 2"),
    ("softmax", [[1, 0], [0, 1], [0.5, 0.6]], "row 2 sums to 1.1"),
])
def test_two_d_classification_targets_are_range_checked(output, Y, words):
    m = lg.MLP([2, len(Y[0])], output=output)
    with pytest.raises(ValueError, match=words):
        m.loss(np.ones((3, 2)), np.array(Y, dtype=float))


def test_soft_targets_that_are_distributions_are_accepted():
    m = lg.MLP([2, 2], output="softmax")
    assert np.isfinite(m.loss(np.ones((2, 2)), np.array([[0.25, 0.75], [1.0, 0.0]])))


def test_inputs_that_numpy_would_misread_get_their_own_words():
    import pandas as pd
    import scipy.sparse as sp
    m = lg.MLP([2, 3], dtype="float32")
    X, y = np.ones((3, 2)), [0, 1, 2]
    with pytest.raises(ValueError, match="masked array with 1 masked entries"):
        m.loss(np.ma.array(X, mask=[[1, 0], [0, 0], [0, 0]]), y)
    assert np.isfinite(m.loss(np.ma.array(X), y))  # nothing masked: the data as they are
    assert m.loss(sp.csr_matrix(X), y) == m.loss(X, y)  # sparse X runs the CSR loops (kernels/sparse.py)
    with pytest.raises(TypeError, match=r"X: a sparse matrix is taken by fit.*densify it"):
        m.per_example_grad_norms(sp.csr_matrix(X), y)
    with pytest.raises(TypeError, match="pandas DataFrame.*pd.NA"):
        m.loss(pd.DataFrame({"a": [1, pd.NA, 2], "b": [1, 2, 3]}, dtype=object), y)
    with pytest.raises(ValueError, match=r"Y: expected class labels in \[0, 3\), got 1e\+20"):
        m.loss(X, np.array([0, 1e20, 2]))
    with pytest.raises(ValueError, match=r"X: values as large as 1e\+39 overflow float32"):
        m.loss(np.array([[1e39, 1.0], [1, 1], [1, 1]]), y)
    with pytest.raises(ValueError, match=r"X: values as large as 1e\+39 overflow float32"):
        m.predict(np.array([[1e39, 1.0]]))  # the path that converts per block of rows
    with pytest.raises(ValueError, match=r"X: values as large as 1e\+39 overflow float32"):
        m.fit(np.array([[1e39, 1.0], [1, 1], [1, 1]]), y, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"y: targets as large as 1e\+200 overflow the squared-error loss"):
        lg.MLP([2, 1], output="identity").fit(X, np.array([1e200, 1, 2]), epochs=1, progress=False)


@pytest.mark.parametrize("argv,words", [(["explain", "--m", "0"], "--m: expected an integer >= 1, got 0"),
                                        (["explain", "--m", "-3"], "--m: expected an integer >= 1, got -3"),
                                        (["check", "--m", "0"], "--m: expected a size >= 1, got 0")])
def test_cli_sizes_below_one_are_one_line_errors(argv, words, capsys):
    from loopgrad.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err

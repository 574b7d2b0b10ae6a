"""Sparse CSR input: F1 and B2 over the stored entries (kernels/sparse.py) against their twin, and
training on a CSR X against training on the same X made dense."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

import loopgrad as lg
from loopgrad.kernels import sparse as loops
from loopgrad.reference import sparse as twin
from loopgrad.sklearn import MLPClassifier, MLPRegressor

# float32: sums of up to n_in products; 64 eps covers the longest row here (density x n_in < 64 terms)
TOL = {np.float32: 64 * np.finfo(np.float32).eps, np.float64: 64 * np.finfo(np.float64).eps}


@given(m=st.integers(1, 40), n_in=st.integers(1, 60), n_out=st.integers(1, 40),
       density=st.sampled_from([0.0, 0.05, 0.3, 1.0]), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 1000))
def test_sparse_kernels_equal_their_twin(m, n_in, n_out, density, dtype, seed):
    """Empty rows, one unit, fully dense rows; magnitudes O(1), so the tolerance is relative to 1."""
    rng = np.random.default_rng(seed)
    A = sp.random(m, n_in, density=density, format="csr", random_state=seed, dtype=dtype)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    dZ = rng.standard_normal((m, n_out)).astype(dtype)
    tol = TOL[dtype] * max(1, n_in)
    Z = loops.sparse_dense_forward(A.data, A.indices, A.indptr, W, b)
    assert np.abs(Z - twin.sparse_dense_forward(A.data, A.indices, A.indptr, W, b)).max() <= tol
    assert np.abs(Z - (A.toarray() @ W + b)).max() <= tol
    dW = loops.sparse_weight_grad(A.data, A.indices, A.indptr, n_in, dZ)
    assert np.abs(dW - twin.sparse_weight_grad(A.data, A.indices, A.indptr, n_in, dZ)).max() <= tol


def test_the_big_sparse_case_takes_the_parallel_blocks_and_agrees():
    A = sp.random(3000, 5000, density=0.01, format="csr", random_state=0)
    rng = np.random.default_rng(0)
    W, b, dZ = rng.standard_normal((5000, 70)), rng.standard_normal(70), rng.standard_normal((3000, 70))
    np.testing.assert_allclose(loops.sparse_dense_forward(A.data, A.indices, A.indptr, W, b), A @ W + b,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loops.sparse_weight_grad(A.data, A.indices, A.indptr, 5000, dZ), A.T @ dZ / 3000,
                               rtol=1e-12, atol=1e-14)


def test_bad_csr_arrays_are_named():
    with pytest.raises(ValueError, match=r"A.indices: expected column indices in \[0, 3\)"):
        loops.sparse_dense_forward(np.ones(2), np.array([0, 5]), np.array([0, 2]), np.ones((3, 2)), np.ones(2))
    with pytest.raises(ValueError, match="A.indptr: expected non-decreasing offsets"):
        loops.sparse_dense_forward(np.ones(2), np.array([0, 1]), np.array([0, 3]), np.ones((3, 2)), np.ones(2))


@pytest.mark.parametrize("backend", ["loops", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_on_csr_equals_training_on_the_dense_matrix(backend, dtype):
    """Same batches, same arithmetic up to summation order: float64 to 1e-12, float32 to 1e-5."""
    rng = np.random.default_rng(1)
    A = sp.random(300, 200, density=0.05, format="csr", random_state=3, dtype=dtype)
    y = rng.integers(0, 3, 300)
    w = rng.uniform(0.5, 2.0, 300)
    a, b = lg.MLP([200, 16, 3], dtype=dtype, seed=2), lg.MLP([200, 16, 3], dtype=dtype, seed=2)
    kwargs = dict(epochs=3, batch_size=32, progress=False, backend=backend, validation_split=0.1, sample_weight=w)
    ha, hb = a.fit(A, y, **kwargs), b.fit(A.toarray(), y, **kwargs)
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert np.abs(a.theta - b.theta).max() < tol and abs(ha.val_loss[-1] - hb.val_loss[-1]) < tol
    assert np.array_equal(a.predict(A), b.predict(A.toarray()))
    J_s, g_s = a.gradient_block(A, y)
    J_d, g_d = a.gradient_block(A.toarray(), y)
    assert abs(J_s - J_d) < tol and np.abs(g_s - g_d).max() < tol


def test_sparse_input_errors():
    model = lg.MLP([5, 3])
    with pytest.raises(ValueError, match=r"X: expected shape \(m, n_0\) = \(\*, 5\)"):
        model.predict(sp.random(4, 6, density=0.5, format="csr"))
    with pytest.raises(TypeError, match="densify it"):
        model.per_example_gradients(sp.random(4, 5, density=0.5, format="csr"), np.zeros(4, int))
    with pytest.raises(ValueError, match="DP-SGD takes dense X"):
        model.fit(sp.random(4, 5, density=0.5, format="csr"), np.zeros(4, int), optimizer=lg.DPSGD(), progress=False)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_estimators_take_csr_and_match_dense(solver):
    rng = np.random.default_rng(0)
    A = sp.random(200, 100, density=0.1, format="csr", random_state=1)
    y = (A @ rng.standard_normal(100) > 0).astype(int)
    kwargs = dict(hidden_layer_sizes=(8,), solver=solver, max_iter=20, random_state=0)
    s, d = MLPClassifier(**kwargs).fit(A, y), MLPClassifier(**kwargs).fit(A.toarray(), y)
    np.testing.assert_allclose(s.coefs_[0], d.coefs_[0], rtol=1e-9, atol=1e-12)
    assert np.array_equal(s.predict(A), d.predict(A.toarray()))
    r = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3).fit(A.tocsc(), A @ np.ones(100))  # any sparse format
    assert r.predict(A).shape == (200,)

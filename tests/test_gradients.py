import itertools

import numpy as np
import pytest

import loopgrad as lg
from loopgrad import kernels, reference
from loopgrad.tables import HIDDEN_ACTIVATIONS as ACTIVATIONS
from loopgrad.tables import OUTPUT_LOSS


def _targets(output, rng, m, n):
    if output == "identity":
        return rng.standard_normal((m, n))
    if output == "exp":
        return rng.poisson(1.0, (m, n)).astype(float)
    return rng.integers(0, n, m)


@pytest.mark.parametrize("hidden,output", list(itertools.product(ACTIVATIONS, OUTPUT_LOSS)))
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_gradcheck_every_pairing(hidden, output, depth, rng):
    sizes = [4] + [5] * depth + [3]
    model = lg.MLP(sizes, hidden=hidden, output=output, seed=depth)
    X = rng.standard_normal((6, 4))
    Y = _targets(output, rng, 6, 3)
    # central differences in float64 with eps=1e-6: truncation ~1e-12, rounding ~1e-10 relative
    assert lg.gradcheck(model, X, Y) < 1e-6


def test_gradcheck_detects_a_wrong_gradient(rng, monkeypatch):
    model = lg.MLP([3, 4, 2], hidden="tanh", output="softmax")
    X, y = rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
    correct = lg.MLP.gradients

    def off_by_a_little(self, X, Y, backend="loops"):
        J, grads = correct(self, X, Y, backend)
        grads[0][0][0, 0] += 1e-3
        return J, grads

    monkeypatch.setattr(lg.MLP, "gradients", off_by_a_little)
    assert lg.gradcheck(model, X, y) > 1e-4


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_loop_and_numpy_backends_agree(dtype, tol, rng):
    model = lg.MLP([6, 8, 7, 4], hidden="gelu", output="softmax", dtype=dtype)
    X, y = rng.standard_normal((11, 6)), rng.integers(0, 4, 11)
    J1, g1 = model.gradients(X, y)
    J2, g2 = model.gradients(X, y, backend="numpy")
    assert abs(J1 - J2) <= tol * abs(J2)
    for (a, b), (c, d) in zip(g1, g2):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, c, rtol=0, atol=tol * 10)
        np.testing.assert_allclose(b, d, rtol=0, atol=tol * 10)


def test_hand_worked_network():
    """2-2-1 ReLU network, squared error, one example, worked out on paper:
    Z1 = [1, 2] W1 + b1 = [0.7, 1.1] = A1;  Z2 = 0.35 - 0.66 + 0.2 = -0.11;  J = 0.5 (-0.11 - 1)^2 = 0.61605
    dZ2 = -1.11;  dW2 = A1^T dZ2 = [-0.777, -1.221];  dA1 = dZ2 W2^T = [-0.555, 0.666] = dZ1 (Z1 > 0)
    dW1 = X^T dZ1 = [[-0.555, 0.666], [-1.11, 1.332]];  db1 = [-0.555, 0.666]
    """
    model = lg.MLP([2, 2, 1], hidden="relu", output="identity")
    (W1, b1), (W2, b2) = model.params
    W1[...] = [[0.1, 0.2], [0.3, 0.4]]
    b1[...] = [0.0, 0.1]
    W2[...] = [[0.5], [-0.6]]
    b2[...] = [0.2]
    X, Y = np.array([[1.0, 2.0]]), np.array([[1.0]])
    np.testing.assert_allclose(model.forward(X), [[-0.11]], atol=1e-15)
    J, ((dW1, db1), (dW2, db2)) = model.gradients(X, Y)
    assert J == pytest.approx(0.61605, abs=1e-15)
    np.testing.assert_allclose(dW2, [[-0.777], [-1.221]], atol=1e-15)
    np.testing.assert_allclose(db2, [-1.11], atol=1e-15)
    np.testing.assert_allclose(dW1, [[-0.555, 0.666], [-1.11, 1.332]], atol=1e-15)
    np.testing.assert_allclose(db1, [-0.555, 0.666], atol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_per_example_norms_and_mean(dtype, rng):
    tol = 1e-5 if dtype == "float32" else 1e-12
    A = rng.standard_normal((7, 5)).astype(dtype)
    dZ = rng.standard_normal((7, 3)).astype(dtype)
    G = kernels.per_example_weight_grads(A, dZ)
    sq = kernels.per_example_sq_norms(A, dZ)
    expect = (G ** 2).sum(axis=(1, 2)) + (dZ ** 2).sum(axis=1)  # plus the bias term ||db(i)||^2
    np.testing.assert_allclose(sq, expect, rtol=tol)
    W = rng.standard_normal((5, 3)).astype(dtype)
    _, dW, db = kernels.dense_backward(dZ, A, W)
    np.testing.assert_allclose(G.mean(axis=0), dW, rtol=tol, atol=tol)
    np.testing.assert_allclose(dZ.mean(axis=0), db, rtol=tol, atol=tol)


def test_model_per_example_gradients_equal_single_example_gradients(rng):
    model = lg.MLP([4, 6, 5, 3], hidden="tanh", output="softmax")
    X, y = rng.standard_normal((5, 4)), rng.integers(0, 3, 5)
    per = model.per_example_gradients(X, y)
    norms = model.per_example_grad_norms(X, y)
    _, batch = model.gradients(X, y)
    for i in range(5):
        _, single = model.gradients(X[i:i + 1], y[i:i + 1])
        total = 0.0
        for (G, g), (dW, db) in zip(per, single):
            np.testing.assert_allclose(G[i], dW, atol=1e-13)
            np.testing.assert_allclose(g[i], db, atol=1e-13)
            total += (dW ** 2).sum() + (db ** 2).sum()
        assert norms[i] == pytest.approx(np.sqrt(total), rel=1e-12)
    for (G, g), (dW, db) in zip(per, batch):
        np.testing.assert_allclose(G.mean(axis=0), dW, atol=1e-13)
        np.testing.assert_allclose(g.mean(axis=0), db, atol=1e-13)


@pytest.mark.parametrize("output", list(OUTPUT_LOSS))
def test_huge_logits_are_finite_and_silent(output, rng):
    model = lg.MLP([3, 4], output=output)
    model.params[0][0][...] = 1e4 * rng.standard_normal((3, 4))
    X = rng.standard_normal((5, 3))
    Y = _targets(output, rng, 5, 4)
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow to 0 is exact enough
        J, grads = model.gradients(X, Y)
        Jn, gn = model.gradients(X, Y, backend="numpy")
    assert np.isfinite(J) and np.isfinite(Jn)
    assert all(np.isfinite(g).all() for pair in grads + gn for g in pair)
    np.testing.assert_allclose(J, Jn, rtol=1e-12)


def test_softmax_and_sigmoid_saturate_without_overflow():
    Z = np.array([[1e4, -1e4, 0.0], [-1e30, 1e30, 5.0]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow to 0 is exact enough
        for mod in (kernels, reference):
            A = mod.activation_forward("softmax", Z)
            S = mod.activation_forward("sigmoid", Z)
            P = mod.activation_forward("softplus", Z)
            assert np.isfinite(A).all() and np.isfinite(S).all() and np.isfinite(P).all()
            assert mod.loss_forward("cross_entropy", Z, np.eye(3)[[1, 0]]) == pytest.approx((2e4 + 2e30) / 2, rel=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("order", ["C", "F"])  # C: one loop of exponentials over the block; F: row by row
def test_softmax_exponentials_are_accurate(dtype, order):
    """F3 takes its exponentials with a polynomial (``activations._exp_nonpositive``), not libm: every
    A[i,j] within (4 + |Z[i,j] - M_i|) eps of the softmax computed in float64, relative: an ulp each from
    the exp, the row sum and the division, and the rounding of Z[i,j] - M_i in the dtype (eps/2 times its
    size, which the exp turns into a relative error as large), over rows of 1 to 40 logits spread over
    hundreds of units, -inf logits and rows that underflow to a single 1."""
    rng = np.random.default_rng(0)
    eps = np.finfo(dtype).eps
    for n in (1, 3, 10, 16, 17, 40):
        Z = (rng.standard_normal((50, n)) * rng.choice([0.1, 3.0, 30.0, 300.0], (50, 1))).astype(dtype)
        Z[0, 0] = -np.inf if n > 1 else Z[0, 0]
        Z = np.asfortranarray(Z) if order == "F" else Z
        got = kernels.activation_forward("softmax", Z)
        z = Z.astype(np.float64)
        shifted = z - z.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        exact = e / e.sum(axis=1, keepdims=True)
        spread = np.where(np.isfinite(shifted), -shifted, 0.0)  # a -inf logit: exact 0, and so is A
        assert np.all(np.abs(got - exact) <= (4 + spread) * eps * exact + np.finfo(dtype).tiny), n
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=n * eps)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_exponential_of_nonpositive_numbers_is_within_an_ulp(dtype):
    """``activations._exp_nonpositive`` against float64's exp rounded to the dtype: within 1 eps relative
    down to the smallest normal result, 0 below it and for -inf, NaN kept, e^0 = 1 and e^-0 = 1."""
    from loopgrad.kernels import activations

    x = -np.abs(np.random.default_rng(1).standard_normal(20000) * 40).astype(dtype)
    x = np.concatenate([x, np.array([0.0, -0.0, -1e-30, -80.0, -700.0, -800.0, -np.inf, np.nan], dtype)])
    got = x.copy()
    activations._exp_nonpositive(got)
    want = np.exp(x.astype(np.float64))
    normal = want >= np.finfo(dtype).tiny
    assert np.all(np.abs(got[normal] - want[normal]) <= np.finfo(dtype).eps * want[normal])
    assert np.all(got[~normal & ~np.isnan(x)] == 0.0)
    assert np.isnan(got[-1]) and got[-8] == got[-7] == 1.0


def test_nan_propagates_through_kernels():
    Z = np.array([[np.nan, 1.0]])
    for name in ("relu", "sigmoid", "tanh", "softmax"):
        assert np.isnan(kernels.activation_forward(name, Z)).any(), name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,exact", [("tanh", np.tanh), ("softplus", lambda x: np.logaddexp(0.0, x)),
                                        ("sigmoid", lambda x: 1.0 / (1.0 + np.exp(-x)))])
def test_vectorisable_activations_are_accurate(name, exact, dtype):
    """tanh and softplus avoid scalar libm calls (series + exp); they stay within 4 ulp of the exact value,
    across the switch points (|z| = 0.3 for tanh), tiny and huge arguments."""
    grid = np.concatenate([np.linspace(-40, 40, 200_001), np.geomspace(1e-30, 2, 50_000), -np.geomspace(1e-30, 2, 50_000),
                           np.nextafter(np.float32(0.3), [0, 1]).astype(np.float64), [0.0, 0.3, -0.3]])
    Z = grid.astype(dtype).reshape(1, -1)
    got = kernels.activation_forward(name, Z)
    ref = exact(Z.astype(np.float64))
    rel = np.abs(got - ref) / np.maximum(np.abs(ref), np.finfo(dtype).tiny)
    assert rel.max() <= 4 * np.finfo(dtype).eps

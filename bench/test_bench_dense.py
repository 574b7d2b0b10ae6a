"""Dense-layer kernels (F1, B2, B4): loops vs NumPy's BLAS vs PyTorch, at each size."""
import numpy as np
import pytest

from loopgrad.kernels.dense import _dense_act_forward_into, _input_grad_act_into, _weight_grad_into
from conftest import DENSE_SIZES, sized, torch_or_skip


def _data(rng, m, n_in, n_out, dtype):
    A = rng.standard_normal((m, n_in)).astype(dtype)
    W = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    dZ = rng.standard_normal((m, n_out)).astype(dtype)
    return A, W, b, dZ


def _tol(dtype, n):
    return 4 * np.finfo(dtype).eps * n * 10


KERNELS = {
    # name: (loops(A, W, b, dZ, out), numpy(A, W, b, dZ, out), torch(...), out shape, n_terms)
    "forward": (lambda A, W, b, dZ, out: _dense_act_forward_into(A, W, b, -1, out, out, np.empty(W.size, W.dtype)),
                lambda A, W, b, dZ, out: np.add(np.matmul(A, W, out=out), b, out=out),
                lambda t, A, W, b, dZ: t.addmm(b, A, W), lambda m, i, o: (m, o), lambda m, i, o: i),
    "dW": (lambda A, W, b, dZ, out: _weight_grad_into(A, dZ, out),
           lambda A, W, b, dZ, out: np.divide(np.matmul(A.T, dZ, out=out), A.shape[0], out=out),
           lambda t, A, W, b, dZ: (A.T @ dZ) / A.shape[0], lambda m, i, o: (i, o), lambda m, i, o: m),
    "dA_prev": (lambda A, W, b, dZ, out: _input_grad_act_into(dZ, W, -1, A, A, out),
                lambda A, W, b, dZ, out: np.matmul(dZ, W.T, out=out),
                lambda t, A, W, b, dZ: dZ @ W.T, lambda m, i, o: (m, i), lambda m, i, o: o),
}


@pytest.mark.parametrize("size", sized(DENSE_SIZES))
@pytest.mark.parametrize("impl", ["loops", "numpy", "torch"])
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_dense(benchmark, kernel, impl, size, dtype, rng):
    m, n_in, n_out = size
    loops, numpy, torch_fn, out_shape, n_terms = KERNELS[kernel]
    A, W, b, dZ = _data(rng, m, n_in, n_out, dtype)
    expect = np.empty(out_shape(m, n_in, n_out), dtype)
    numpy(A, W, b, dZ, expect)
    benchmark.group = f"dense {kernel} {dtype.name} m={m} n_in={n_in} n_out={n_out}"
    benchmark.extra_info["gflop"] = 2 * m * n_in * n_out / 1e9
    if impl == "torch":
        t = torch_or_skip()
        tA, tW, tb, tdZ = (t.from_numpy(x) for x in (A, W, b, dZ))
        got = torch_fn(t, tA, tW, tb, tdZ).numpy()
        run = lambda: torch_fn(t, tA, tW, tb, tdZ)  # noqa: E731
    else:
        out = np.empty_like(expect)
        fn = loops if impl == "loops" else numpy
        fn(A, W, b, dZ, out)
        got = out
        run = lambda: fn(A, W, b, dZ, out)  # noqa: E731
    assert np.abs(got - expect).max() <= _tol(dtype, n_terms(m, n_in, n_out)) * max(1.0, np.abs(expect).max())
    benchmark(run)

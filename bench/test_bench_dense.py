"""Dense-layer kernels (F1, B2, B4): loops vs NumPy's BLAS vs PyTorch, at each size."""
import numpy as np
import pytest

from loopgrad.bench_cli import dense_products, product_scratch
from conftest import DENSE_SIZES, sized, torch_or_skip


def _data(rng, m, n_in, n_out, dtype):
    A = rng.standard_normal((m, n_in)).astype(dtype)
    W = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    dZ = rng.standard_normal((m, n_out)).astype(dtype)
    return A, W, b, dZ


def _tol(dtype, n):
    return 4 * np.finfo(dtype).eps * n * 10


KERNELS = dense_products()


@pytest.mark.parametrize("size", sized(DENSE_SIZES))
@pytest.mark.parametrize("impl", ["loops", "numpy", "torch"])
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_dense(benchmark, kernel, impl, size, dtype, rng):
    m, n_in, n_out = size
    loops, numpy, torch_fn, out_shape, n_terms = KERNELS[kernel]
    A, W, b, dZ = _data(rng, m, n_in, n_out, dtype)
    scratch = product_scratch(m, n_in, n_out, dtype)  # outside the timed call, as the fused step has it
    expect = np.empty(out_shape(m, n_in, n_out), dtype)
    numpy(A, W, b, dZ, expect, scratch)
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
        fn(A, W, b, dZ, out, scratch)
        got = out
        run = lambda: fn(A, W, b, dZ, out, scratch)  # noqa: E731
    assert np.abs(got - expect).max() <= _tol(dtype, n_terms(m, n_in, n_out)) * max(1.0, np.abs(expect).max())
    benchmark(run)

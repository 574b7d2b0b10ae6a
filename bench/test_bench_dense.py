"""Dense-layer kernels (F1, B2, B4): loops vs NumPy's BLAS vs PyTorch, at each size."""
import numpy as np
import pytest

from loopgrad.bench_cli import dense_products, settle
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


@pytest.mark.small
@pytest.mark.parametrize("company", ["alone", "after-numpy-product", "after-numpy-product-not-giving-way",
                                     "after-numpy-product-blas-1-thread"])
def test_dense_in_company(benchmark, company, rng, monkeypatch):
    """The public F1 kernel (``loopgrad.kernels.dense_forward``) at 256 x 784 x 256, float32, timed right
    after a NumPy product of the same size (untimed, in pedantic's setup) or with none. OpenBLAS's
    workers spin for a while after a product (about 2^28 cycles by default) and take a core; by default
    the kernel sees them and runs on the threads left free (``loopgrad._company``); "not-giving-way"
    turns that off, and the loops' static share on the taken core then waits for a time slice;
    limiting NumPy's BLAS to one thread (threadpoolctl, as the README describes) leaves nobody
    spinning. PyTorch's pool joins in where PyTorch is installed (conftest imports it with 2 threads)."""
    import contextlib

    from threadpoolctl import threadpool_limits

    from loopgrad import _company, kernels

    m, n_in, n_out = 256, 784, 256
    A, W, b, _ = _data(rng, m, n_in, n_out, np.dtype("float32"))
    benchmark.group = "dense forward F1 float32 256x784x256 in company of NumPy's BLAS"
    if company.endswith("not-giving-way"):
        monkeypatch.setattr(_company, "ENABLED", False)
    limit = threadpool_limits(1, user_api="blas") if company.endswith("1-thread") else contextlib.nullcontext()
    scratch_product = np.empty((m, n_out), np.float32)

    def setup():
        if company != "alone":
            np.matmul(A, W, out=scratch_product)

    expect = A @ W + b
    with limit:
        out = kernels.dense_forward(A, W, b)
        assert np.abs(out - expect).max() <= _tol(np.float32, n_in) * np.abs(out).max()
        settle()  # the product above left NumPy's workers spinning: "alone" starts once they stopped
        benchmark.pedantic(lambda: kernels.dense_forward(A, W, b), setup=setup, rounds=200, warmup_rounds=5)

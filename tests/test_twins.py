"""Every loop kernel against its NumPy twin, from the one table in loopgrad.twins.

Tolerance (stated in loopgrad.twins): |loop - numpy| <= 4 eps(dtype) n_terms magnitude,
eps = 1.19e-7 (float32) or 2.22e-16 (float64).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopgrad import kernels, reference
from loopgrad.twins import CASES, LAYOUTS, compare

dims = st.integers(min_value=1, max_value=40)


@pytest.mark.parametrize("name", sorted(CASES))
@given(m=dims, n_in=dims, n_out=dims, dtype=st.sampled_from(["float32", "float64"]),
       layout=st.sampled_from(LAYOUTS), scale=st.sampled_from([1.0, 1e-3, 1e3]), seed=st.integers(0, 2**16))
def test_kernel_matches_twin(name, m, n_in, n_out, dtype, layout, scale, seed):
    diff, tol, shapes = compare(name, m, n_in, n_out, dtype, layout, scale, seed)
    assert diff <= tol, f"{name} {dtype} {layout} {shapes}: max |diff| {diff:.3e} > tol {tol:.3e}"


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 3), (5, 1, 1), (3, 4, 1),
                                   # across the kernels' switches: dot-form forward from m = 64 (DOT_FORWARD_ROWS),
                                   # threads from 2^18 multiply-adds (SERIAL_WORK), 4 x 4 blocks with remainders
                                   (63, 9, 5), (64, 9, 5), (67, 33, 70), (130, 40, 30), (257, 70, 9),
                                   (2, 300, 250),  # optimizer blocks run in parallel from 2^16 parameters
                                   (1100, 5, 3), (2100, 20, 10)])  # B2 sums chunks of 1024 examples
def test_edge_shapes(name, shape):
    for dtype in ("float32", "float64"):
        for layout in LAYOUTS:
            diff, tol, _ = compare(name, *shape, dtype, layout)
            assert diff <= tol, f"{name} {dtype} {layout} {shape}: {diff:.3e} > {tol:.3e}"


def test_twins_export_the_same_names_and_signatures():
    import inspect
    assert kernels.__all__ == reference.__all__
    for name in kernels.__all__:
        assert inspect.signature(getattr(kernels, name)) == inspect.signature(getattr(reference, name)), name


def test_float32_is_computed_in_float32(rng):
    A = rng.standard_normal((9, 5)).astype(np.float32)
    W = rng.standard_normal((5, 3)).astype(np.float32)
    b = np.zeros(3, np.float32)
    Z = kernels.dense_forward(A, W, b)
    assert Z.dtype == np.float32
    # float32 accumulation differs from a float64 product by rounding; float64 accumulation would not
    exact = A.astype(np.float64) @ W.astype(np.float64)
    assert np.abs(Z - exact).max() < 1e-5 * np.abs(exact).max() + 1e-6
    assert all(g.dtype == np.float32 for g in kernels.dense_backward(Z, A, W))


def test_kernels_reject_mixed_or_bad_dtypes(rng):
    A = rng.standard_normal((4, 3))
    with pytest.raises(TypeError, match="share one dtype"):
        kernels.dense_forward(A, A.T.astype(np.float32).copy(), np.zeros(4))
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.dense_forward(A.astype(np.int64), A.T.copy(), np.zeros(4))
    with pytest.raises(ValueError, match=r"W: expected shape \(n_in, n_out\) = \(3, \*\), got \(4, 4\)"):
        kernels.dense_forward(A, np.zeros((4, 4)), np.zeros(4))
    with pytest.raises(ValueError, match="activation"):
        kernels.activation_forward("swish", A)

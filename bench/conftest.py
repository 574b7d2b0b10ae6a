"""Benchmarks: ``pytest bench/ --benchmark-only``; ``--bench-sizes small`` keeps the smallest sizes (CI runs
that with ``--benchmark-disable`` so the suite cannot rot).

Every timing is preceded by a correctness check against the NumPy twin. PyTorch joins each group where
it is installed (``pip install torch==2.13.0``). One runtime is busy at a time: numba, OpenBLAS and
PyTorch each use 2 threads, one after the other, in the same process, each benchmark after the others'
pools have gone idle (``settled_pools``).
"""
import os

# Tests and benchmarks run the tuned kernels from the first call (compiling them in the process),
# never the NumPy stand-in of a cold start: loopgrad.tiers is tested on its own, in subprocesses.
os.environ.setdefault("LOOPGRAD_TIER", "tuned")

import numpy as np  # noqa: E402
import pytest

try:
    import torch
    torch.set_num_threads(2)
except ImportError:  # optional extra
    torch = None

DENSE_SIZES = [(32, 784, 128), (256, 784, 256), (1024, 1024, 1024), (4096, 1024, 1024)]
STEP_CASES = [([784, 128, 64, 10], 32), ([784, 128, 64, 10], 128), ([784, 128, 64, 10], 1024), ([64, 64, 10], 32)]


def pytest_addoption(parser):
    parser.addoption("--bench-sizes", choices=("small", "all"), default="all",
                     help="'small': only the smallest size of each group (for CI)")


def pytest_configure(config):
    config.addinivalue_line("markers", "small: the smallest size of a group, run by CI")
    config.addinivalue_line("markers", "user_thread: the body runs on pytest's thread, as a user's code does")


@pytest.fixture(autouse=True)
def settled_pools(request):
    """Each benchmark starts once the thread pools of the one before (OpenBLAS's, PyTorch's) have
    stopped spinning; else the loops timed after a NumPy product lose a core to them. The company
    case (test_bench_dense.py -k company) sets that up on purpose, inside its timing."""
    if not request.config.getoption("benchmark_disable", False):
        from loopgrad.bench_cli import settle
        settle()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Each benchmark's body runs on loopgrad's compute thread (``loopgrad._compute``), where ``fit``,
    the forward passes and the gradients run: one GNU OpenMP team in the process, as in a user's.
    Timed from the main thread, the loops' direct calls made a second team beside the one of any fit
    before them, and with more teams than CPUs libgomp stops its idle workers from spinning between
    parallel regions: every region of the process then woke them from sleep."""
    from loopgrad import _compute

    if pyfuncitem.get_closest_marker("user_thread"):
        return None  # the body is a user's code calling fit, which hands its steps to the compute thread
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    _compute.run(lambda: pyfuncitem.obj(**args))
    return True


def pytest_collection_modifyitems(config, items):
    if config.getoption("--bench-sizes") == "small":
        keep = [i for i in items if "small" in i.keywords]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


def sized(cases, key=lambda c: c):
    """Parametrize values, the first marked 'small'."""
    return [pytest.param(c, marks=pytest.mark.small if k == 0 else ()) for k, c in enumerate(cases)]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def torch_or_skip():
    if torch is None:
        pytest.skip("PyTorch not installed (pip install torch==2.13.0)")
    return torch

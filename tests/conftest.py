import os

# Tests and benchmarks run the tuned kernels from the first call (compiling them in the process),
# never the NumPy stand-in of a cold start: loopgrad.tiers is tested on its own, in subprocesses.
os.environ.setdefault("LOOPGRAD_TIER", "tuned")

import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest
from hypothesis import settings

# Kernels compile once per dtype; after that each example is microseconds, so many examples are cheap.
settings.register_profile("loopgrad", max_examples=40, deadline=None)
settings.load_profile("loopgrad")


# The test command runs two pytest-xdist workers (``-n 2 --dist loadgroup``), because most of a run
# on an empty kernel cache is numba compiling, on one core. Tests marked ``own_cache`` start processes
# that compile into caches of their own (a cold start, a read-only install, a corrupted cache); every
# other test compiles into, or loads from, the session's cache. Each group runs on one worker, side by
# side: more workers, or the session's tests split between two, would compile the same kernels twice.
def pytest_configure(config):
    config.addinivalue_line("markers", "own_cache: the test's processes compile into kernel caches of their own")
    # registered here too, so that a run without pytest-xdist knows the marker
    config.addinivalue_line("markers", "xdist_group(name): run the tests of one group on one xdist worker")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups from the markers
def pytest_collection_modifyitems(items):
    for item in items:
        own = item.get_closest_marker("own_cache") is not None
        item.add_marker(pytest.mark.xdist_group("own-cache" if own else "session-cache"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


_CTRL_C = """
import os, signal, threading, time, numpy as np, loopgrad as lg
from loopgrad import model
# Python's own Ctrl-C handler, even where this process was started with SIGINT ignored (a shell's
# background job inherits that, and the signal below would then do nothing)
signal.signal(signal.SIGINT, signal.default_int_handler)
sizes = {sizes}
X = np.random.default_rng(0).standard_normal((400_000, sizes[0]), dtype=np.float32)
y = np.arange(400_000) % sizes[-1]
m = lg.MLP(sizes, dtype='float32')
m.fit(X[:256], y[:256], epochs=1, batch_size=64, progress=False)  # compiled or loaded before the clock starts
print(type(model.running('loops', 'float32', m.n_params)).__name__)
threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
t0 = time.perf_counter()
try:
    m.fit(X, y, epochs=50, batch_size=64, progress=False)
    print('not interrupted')
except KeyboardInterrupt:
    print(f'interrupted after {{time.perf_counter() - t0:.2f}} s; finite {{bool(np.isfinite(m.theta).all())}}')
"""


@pytest.fixture
def ctrl_c_after_a_second():
    """Run 50 epochs of 400,000 rows through an MLP of ``sizes`` in a new process (environment ``env``)
    and send it Ctrl-C after 1 s; returns (the class of what ran the loops, seconds until fit stopped,
    whether the parameters stayed finite)."""
    def run(sizes, env=None):
        out = subprocess.run([sys.executable, "-c", _CTRL_C.format(sizes=list(sizes))], env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        words = out.stdout.split()
        assert words[1] == "interrupted", out.stdout
        return words[0], float(words[3]), words[-1] == "True"
    return run

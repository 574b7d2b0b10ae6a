import os

# Tests and benchmarks run the tuned kernels from the first call (compiling them in the process),
# never the NumPy stand-in of a cold start: loopgrad.tiers is tested on its own, in subprocesses.
os.environ.setdefault("LOOPGRAD_TIER", "tuned")

import numpy as np  # noqa: E402
import pytest
from hypothesis import settings

# Kernels compile once per dtype; after that each example is microseconds, so many examples are cheap.
settings.register_profile("loopgrad", max_examples=40, deadline=None)
settings.load_profile("loopgrad")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

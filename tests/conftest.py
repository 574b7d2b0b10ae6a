import numpy as np
import pytest
from hypothesis import settings

# Kernels compile once per dtype; after that each example is microseconds, so many examples are cheap.
settings.register_profile("loopgrad", max_examples=40, deadline=None)
settings.load_profile("loopgrad")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

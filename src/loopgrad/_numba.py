"""Every numba option loopgrad uses, in one place.

* ``cache=True``: compiled kernels are written to disk and reloaded by the next
  process. numba stores them beside the source in ``__pycache__`` and, where the
  install folder is read-only, falls back to a per-user cache directory by itself
  (``NUMBA_CACHE_DIR`` overrides both).
* ``fastmath={"reassoc", "contract"}``: the two flags LLVM needs to vectorise a
  sum and to fuse multiply-adds. Never ``nnan``/``ninf``: NaN checks must keep
  working, so the full ``fastmath=True`` is not used.
* ``error_model="numpy"``: a division by zero gives inf/nan as NumPy does instead
  of raising, which also lets LLVM vectorise loops that divide.
* ``parallel=True`` only for kernels whose ``prange`` index owns its outputs, so
  the result does not depend on the number of threads.

Set ``NUMBA_DISABLE_JIT=1`` to run every kernel as plain Python (for coverage of
loop bodies); ``prange`` then is ``range``.
"""
import numpy as np
from numba import config, njit, prange  # noqa: F401  (prange re-exported for the kernels)

if not config.DISABLE_JIT:
    # A serial kernel loaded from the disk cache that calls a parallel one needs the
    # parallel runtime's symbols (allocate_sched, ...) already registered; they are only
    # registered once the thread pool starts, so start it before any kernel loads.
    from numba.np.ufunc.parallel import _launch_threads

    _launch_threads()

FASTMATH = frozenset({"reassoc", "contract"})

# Start index for the serial call of a kernel's row-range body. A literal 0 would be typed
# Literal[int](0) and compile a second copy of the body beside the int64 one that the parallel
# blocks call; an int64 value shares it (and halves those kernels' compile time).
FIRST = np.int64(0)
# Likewise for a bool argument: a literal False would compile a second copy beside the bool one.
OVERWRITE = np.bool_(False)

_OPTIONS = dict(cache=True, fastmath=set(FASTMATH), error_model="numpy", nogil=True)


def jit(fn=None, *, parallel=False, inline=False):
    """Compile ``fn`` with loopgrad's options; ``parallel`` enables ``prange``."""
    options = dict(_OPTIONS, parallel=parallel)
    if inline:
        options["inline"] = "always"
    if fn is None:
        return lambda f: njit(**options)(f)
    return njit(**options)(fn)

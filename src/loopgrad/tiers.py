"""Tiered start: a first result in seconds while the tuned loop kernels compile once, in the background.

The tuned kernels (``loopgrad.kernels.network``) take 20-60 s to compile on a 2-core machine, once
per dtype; numba then keeps them in its disk cache and later processes load them in under a
second. On a machine where they are not cached yet, ``backend="loops"`` answers with their NumPy
twin (``loopgrad.reference.network``: same buffers, same signatures, nothing to compile) and
starts one detached ``loopgrad warmup`` process that compiles the tuned kernels into the cache.
``fit`` switches to the tuned kernels at the next epoch boundary after they are ready.

So a cold first run's numbers come from the NumPy twin: they agree with the tuned kernels' within
the twin tolerance (``loopgrad.twins``), not bit for bit; every run after it uses the tuned
kernels and is bitwise reproducible. Set ``LOOPGRAD_TIER=tuned`` to always compile the tuned
kernels in the process itself (the behaviour before tiers), or run ``loopgrad warmup`` once after
installing (for deployments and benchmarks).

The warm-up then builds the ahead-of-time module (``loopgrad._aot``): the same kernels, serial, as an
extension module that a later process loads without importing numba. Networks of at most
``_aot.MAX_PARAMS`` parameters run on it (the main job's start goes from about 2.5 s to under 1 s);
the results are the tuned kernels' bit for bit. ``LOOPGRAD_AOT=0`` turns this tier off.
"""
import os
import subprocess
import sys
import tempfile
import time

ENV = "LOOPGRAD_TIER"
AOT_ENV = "LOOPGRAD_AOT"
MODES = ("auto", "tuned")
BACKGROUND_NICE = 10
_state = {}  # dtype name -> "tuned" | subprocess.Popen of the background compile | "compile-here"


def mode():
    value = os.environ.get(ENV, "auto")
    if value not in MODES:
        raise ValueError(f"{ENV}: expected one of {', '.join(MODES)}, got {value!r}")
    return value


def _probe(dtype):
    """Arguments of the tuned epoch for a tiny network of ``dtype``: numba's types depend on the dtype
    and layouts only, not on the sizes, so these stand for any model."""
    from .model import MLP

    return MLP([1, 1, 1], dtype=dtype).warmup_arguments(1)


def _loaded(dispatcher, args):
    """Whether ``dispatcher`` has machine code for ``args``: compiled in this process, or loaded
    now from numba's disk cache (the steps numba's own dispatcher takes before compiling)."""
    from numba.core.typing.typeof import Purpose, typeof

    sig = tuple(typeof(a, Purpose.argument) for a in args)
    if sig in dispatcher.overloads:
        return True
    cres = dispatcher._cache.load_overload(sig, dispatcher.targetctx)
    if cres is None:
        return False
    dispatcher.targetctx.insert_user_function(cres.entry_point, cres.fndesc, [cres.library])
    dispatcher.add_overload(cres)
    return True


def tuned_ready(dtype):
    """True when the tuned epoch for ``dtype`` is compiled or in the disk cache. A warm-up compiles it
    first and the other entry points (forward, cost, gradients) right after; numba loads those from
    the cache on their first call (each load costs about 0.3 s, so none is loaded before it is needed).
    Where this cannot be told (numba's internals changed, or ``NUMBA_DISABLE_JIT``), True: the
    kernels then compile in the process on first use, as they would without tiers."""
    from .kernels import network

    try:
        return _loaded(network.train_epoch_into, _probe(dtype))
    except Exception:  # noqa: BLE001 - any failure means: do not guess, compile as usual
        return True


def lock_path(dtype, what="warmup"):
    """The file a warm-up holds locked while it compiles the tuned kernels (``what="warmup"``) or
    builds the ahead-of-time module (``"aot"``), so that concurrent cold starts do each once."""
    folder = os.environ.get("NUMBA_CACHE_DIR") or tempfile.gettempdir()
    return os.path.join(folder, f"loopgrad-{what}-{dtype}-{os.getuid() if hasattr(os, 'getuid') else 0}.lock")


def _under_lock(path, wait, work):
    """``work()`` run while holding the file lock ``path``: (seconds, its result), or None when another
    process holds the lock and ``wait`` is False."""
    import fcntl

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return None
        t0 = time.perf_counter()
        result = work()
        return time.perf_counter() - t0, result


def warmup(dtype, wait=True):
    """Compile (or load) the tuned kernels for ``dtype`` under the warm-up lock; returns the seconds
    it took, or None when another process holds the lock and ``wait`` is False."""
    from .model import MLP

    done = _under_lock(lock_path(dtype), wait, lambda: MLP([2, 3, 2], dtype=dtype).warmup())
    return None if done is None else done[0]


def warmup_running(dtype):
    """True while some process's warm-up holds the lock for ``dtype`` (compiling into the shared cache)."""
    import fcntl

    try:
        with open(lock_path(dtype), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def aot_enabled():
    return os.environ.get(AOT_ENV, "1") != "0"


def aot_serves(n_params):
    """Whether the ahead-of-time tier is on and serves a network of ``n_params`` parameters."""
    from . import _aot

    return n_params is not None and n_params <= _aot.MAX_PARAMS and aot_enabled()


def aot_backend(dtype, n_params):
    """The ahead-of-time module's network (``_aot.Network``) for a model of ``n_params`` parameters,
    or None: where it is not built, the network is larger than ``_aot.MAX_PARAMS``, the tier is off,
    or ``LOOPGRAD_TIER=tuned`` asks for numba's kernels in the process."""
    from . import _aot

    if not aot_serves(n_params) or mode() == "tuned":
        return None
    return _aot.network(dtype)


def build_aot(dtype, wait=True):
    """Build the ahead-of-time module for ``dtype`` under its own lock (so that concurrent warm-ups
    build it once, and a run waiting on the tuned kernels' lock is not held up by it); returns
    (seconds, path or None when the build failed), or None when another process is building it and
    ``wait`` is False."""
    from . import _aot

    return _under_lock(lock_path(dtype, "aot"), wait, lambda: _aot.build(dtype))


_aot_requested = set()


def _request_aot(dtype, n_params):
    from . import _aot

    if dtype in _aot_requested or not aot_serves(n_params):
        return
    _aot_requested.add(dtype)
    if _aot.network(dtype) is None:
        _start_background(dtype)  # loads the tuned kernels from the cache (seconds), then builds the module


def _start_background(dtype):
    try:
        # at low priority: the run that started it, training on the twin meanwhile, keeps the cores
        return subprocess.Popen([sys.executable, "-m", "loopgrad", "warmup", "--dtype", dtype, "--if-free",
                                 "--nice", str(BACKGROUND_NICE)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
    except OSError:
        return "compile-here"


def loops_backend(dtype, n_params=None):
    """The module that runs ``backend="loops"`` for ``dtype`` now: the tuned kernels once they are
    compiled or cached, else their NumPy twin while a background process compiles them. When the
    kernels are cached but the ahead-of-time module that a network of ``n_params`` would run on is
    not built yet, a background warm-up builds it (once per process) for the next run."""
    from .kernels import network
    from .reference import network as numpy_network

    dtype = str(dtype)
    state = _state.get(dtype)
    if state in ("tuned", "compile-here") or mode() == "tuned":
        return network
    if state is None:
        if tuned_ready(dtype):
            _state[dtype] = "tuned"
            _request_aot(dtype, n_params)
            return network
        _state[dtype] = state = _start_background(dtype)
        if state == "compile-here":
            return network
    if state.poll() is None:
        return numpy_network
    # Our background warm-up has ended. It may have stepped aside (--if-free) for another process's
    # warm-up, still compiling into the same cache: keep the twin until that one ends (a lock probe,
    # not a read of the cache, at each epoch boundary). Then the kernels are in the cache, or no
    # warm-up got them there and they compile here.
    if warmup_running(dtype):
        return numpy_network
    _state[dtype] = "tuned" if tuned_ready(dtype) else "compile-here"
    return network


def blas_for(backend, module):
    """The context ``fit``'s epochs run in: one BLAS thread while the NumPy twin stands in for the
    loops (``backend="loops"``, ``module`` the twin) during a cold start, so that the background
    compile keeps the other core and the twin's small products do not wake a second thread (the cold
    main job's training took 0.96-1.18 s so, against 1.2-3.0 s with NumPy's two); otherwise nothing
    changes. An explicit ``backend="numpy"`` keeps NumPy's own threads."""
    import contextlib

    from .reference import network as numpy_network

    if backend != "loops" or module is not numpy_network:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


def describe(dtype, n_params=None):
    """One line for the CLI on how ``backend="loops"`` will run for ``dtype`` in this process."""
    if aot_backend(dtype, n_params) is not None:
        return None
    from .kernels import network

    if loops_backend(dtype, n_params) is network:
        return None
    return (f"First run on this machine: the tuned loop kernels for {dtype} are compiling in the background "
            f"(a few minutes on 2 cores, once); this run trains with their NumPy twin (same results within the twin "
            f"tolerance).")

"""Cold start: the NumPy twin trains while the tuned kernels compile once, in the background."""
import os
import re
import subprocess
import sys

import pytest

from loopgrad import tiers

# every test here runs on one worker: the module's fixture fills a cache of its own (conftest.py)
pytestmark = pytest.mark.own_cache

MAIN_JOB = [sys.executable, "-m", "loopgrad", "train", "--data", "iris", "--hidden", "8", "--epochs", "15",
            "--quiet"]


def _can_build_aot():
    """numba's pycc needs a C compiler, Python's headers and setuptools; where one is missing the AOT
    tier is simply absent (everything runs through numba) and its tests are skipped."""
    import importlib.util
    import os.path
    import shutil
    import sysconfig

    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return bool(shutil.which(compiler) and os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
                and importlib.util.find_spec("setuptools"))


AOT = pytest.mark.skipif(not _can_build_aot(), reason="no C compiler, Python headers or setuptools for numba's pycc")


def _env(cache):
    env = {k: v for k, v in os.environ.items() if k != tiers.ENV}  # the default tier, as a user has it
    env["NUMBA_CACHE_DIR"] = str(cache)
    return env


def _result(out):
    """The summary's accuracy and final loss, e.g. ('96.67%', '0.1234')."""
    m = re.search(r"test accuracy (\S+) on iris after 15 epochs \(final train loss ([0-9.]+)", out)
    assert m, out
    return m.groups()


@pytest.fixture(scope="module")
def cold_then_warm(tmp_path_factory):
    """Three processes start the main job at the same time on one empty kernel cache; then a blocking
    warm-up, which queues behind the (one) background compile and then builds the ahead-of-time
    module. Returns (cache folder, the cold runs' outputs, the warm-up's output)."""
    cache = tmp_path_factory.mktemp("cache")
    env = _env(cache)
    procs = [subprocess.Popen(MAIN_JOB, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    warmup = subprocess.run([sys.executable, "-m", "loopgrad", "warmup", "--dtype", "float32"], env=env,
                            check=True, timeout=900, capture_output=True, text=True).stdout
    return cache, [out for out, _ in outs], warmup


def test_cold_starts_train_at_once_and_the_warm_run_agrees(cold_then_warm):
    """All three cold runs finish with the same result from the NumPy twin, without waiting for a
    compile. After the warm-up a new run uses the ahead-of-time module, never imports numba, and
    agrees with the cold runs within the twin tolerance."""
    cache, outs, warmup = cold_then_warm
    assert all("First run on this machine" in out for out in outs)
    cold = {_result(out) for out in outs}
    assert len(cold) == 1
    warm = subprocess.run([sys.executable, "-X", "importtime", *MAIN_JOB[1:]], env=_env(cache), capture_output=True,
                          text=True, timeout=300, check=True)
    assert "First run" not in warm.stdout
    if _can_build_aot():
        assert "ahead-of-time module for small networks ready" in warmup, warmup
        assert "Preparing compiled kernels" not in warm.stdout
        assert not re.search(r"\bnumba\b", warm.stderr), "the warm run imported numba"
    (acc_cold, loss_cold), = cold
    acc_warm, loss_warm = _result(warm.stdout)
    assert acc_warm == acc_cold
    assert abs(float(loss_warm) - float(loss_cold)) <= 1e-3 * float(loss_cold)  # within float32 twin tolerance
    # without the ahead-of-time module the same run loads numba's cached kernels: the same numbers
    numba_run = subprocess.run(MAIN_JOB, env=dict(_env(cache), LOOPGRAD_AOT="0"), capture_output=True, text=True,
                               timeout=300, check=True).stdout
    assert "kernels ready" in numba_run and _result(numba_run) == (acc_warm, loss_warm)


_SAME_BITS = """
import hashlib, os, numpy as np, loopgrad as lg
from loopgrad import _aot, model, tiers
rng = np.random.default_rng(0)
X = rng.standard_normal((301, 20)).astype(np.float32)
y = rng.integers(0, 3, 301)
w = rng.random(301).astype(np.float32)
def run(opt, weighted):
    m = lg.MLP([20, 16, 3], hidden="tanh", dtype="float32", seed=2)
    kind = type(model.running("loops", "float32", m.n_params)).__name__
    m.fit(X, y, epochs=3, batch_size=32, optimizer=opt(), sample_weight=w if weighted else None, progress=False)
    out = [m.theta, m.predict_proba(X), np.array([m.loss(X, y)])]
    return kind, hashlib.sha256(b"".join(a.tobytes() for a in out)).hexdigest()
opts = [lambda: lg.Adam(0.01), lambda: lg.SGD(0.1, momentum=0.9), lambda: lg.DPSGD(0.1, 1.0, 1.0, seed=3)]
for i, opt in enumerate(opts):
    for weighted in (False, True) if i == 0 else (False,):
        os.environ[tiers.ENV] = "auto"
        ahead = run(opt, weighted)
        os.environ[tiers.ENV] = "tuned"
        tuned = run(opt, weighted)
        print(ahead[0], tuned[0], ahead[1] == tuned[1])
"""


@AOT
def test_the_ahead_of_time_module_gives_the_tuned_kernels_bits(cold_then_warm):
    """The serial AOT build of the kernels and numba's parallel build (from the cache) train, predict
    and score to the same bits: Adam with and without sample weights, SGD with momentum, DP-SGD."""
    cache, _, _ = cold_then_warm
    out = subprocess.run([sys.executable, "-c", _SAME_BITS], env=_env(cache), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[:-1] == ["Network module True"] * 4, out.stdout


@AOT
def test_ctrl_c_stops_an_epoch_on_the_ahead_of_time_module(cold_then_warm, ctrl_c_after_a_second):
    """The AOT module's epoch releases the GIL as numba's does, so fit's Ctrl-C handler runs and stops
    it at the next mini-batch: 50 epochs of 400,000 rows on a 28k-parameter network (seconds each,
    serial), interrupted after 1 s."""
    cache, _, _ = cold_then_warm
    kind, seconds, finite = ctrl_c_after_a_second([100, 256, 10], env=_env(cache))
    assert kind == "Network" and seconds < 2.0 and finite


def test_a_corrupt_or_foreign_ahead_of_time_module_is_ignored(monkeypatch, tmp_path):
    """A file where the AOT module should be is loaded only when it matches the checksum written
    beside it, and one that fails to load is ignored (the kernels run through numba); the tier never
    serves a network above its size limit or when turned off."""
    from loopgrad import _aot

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(tiers.ENV, raising=False)
    monkeypatch.setattr(_aot, "_loaded", {})
    monkeypatch.setattr(_aot, "_networks", {})
    os.makedirs(_aot.folder())
    module = _aot.path("float32")
    with open(module, "wb") as f:
        f.write(b"\x7fELF truncated")
    assert _aot.load("float32") is None  # no checksum beside it
    with open(module + ".sha256", "w") as f:
        f.write(_aot._digest(module))
    assert _aot.intact(module)
    with open(module, "r+b") as f:
        f.seek(5)
        f.write(b"X")  # one byte altered on disk: never handed to the loader
    assert not _aot.intact(module)
    monkeypatch.setattr(_aot, "_loaded", {})
    assert _aot.load("float32") is None
    with open(module, "r+b") as f:
        f.seek(5)
        f.write(b"t")  # intact again, but no loadable module: the loader's error is caught
    monkeypatch.setattr(_aot, "_loaded", {})
    assert _aot.intact(module) and _aot.load("float32") is None
    assert tiers.aot_backend("float32", 100) is None
    monkeypatch.setattr(_aot, "_networks", {"float32": "a built module"})
    assert tiers.aot_backend("float32", 100) == "a built module"
    assert tiers.aot_backend("float32", _aot.MAX_PARAMS + 1) is None
    monkeypatch.setenv(tiers.AOT_ENV, "0")
    assert tiers.aot_backend("float32", 100) is None


def test_an_unknown_tier_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(tiers.ENV, "fast")
    with pytest.raises(ValueError, match="LOOPGRAD_TIER: expected one of auto, tuned, got 'fast'"):
        tiers.mode()


def test_compiled_tuned_kernels_are_seen_as_ready():
    import loopgrad as lg
    lg.MLP([2, 2], dtype="float64").warmup(4)
    assert tiers.tuned_ready("float64")


def test_a_warm_up_running_elsewhere_is_waited_for_not_repeated(monkeypatch, tmp_path):
    """A second cold run's own background warm-up steps aside (--if-free) when another process's
    warm-up holds the lock; the run must keep training on the twin while that one compiles, not
    conclude that nothing is coming and compile the tuned kernels itself (a minute on 2 cores)."""
    import fcntl

    from loopgrad.kernels import network
    from loopgrad.reference import network as numpy_network

    monkeypatch.delenv(tiers.ENV, raising=False)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiers, "tuned_ready", lambda dtype: False)
    stepped_aside = subprocess.Popen([sys.executable, "-c", "pass"])
    stepped_aside.wait()
    monkeypatch.setitem(tiers._state, "float32", stepped_aside)
    with open(tiers.lock_path("float32"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other process's warm-up, compiling
        assert tiers.warmup_running("float32")
        assert tiers.loops_backend("float32") is numpy_network
        assert tiers.loops_backend("float32") is numpy_network
    # it ended and left nothing in the cache: compile here
    assert not tiers.warmup_running("float32")
    assert tiers.loops_backend("float32") is network
    assert tiers._state["float32"] == "compile-here"


def test_cached_kernels_without_the_ahead_of_time_module_start_its_build_once(monkeypatch):
    """A process that finds the tuned kernels cached but no AOT module for a small network starts
    one background warm-up (it builds the module for the next run), once per process; never for a
    network above the tier's size limit."""
    from loopgrad import _aot
    from loopgrad.kernels import network

    monkeypatch.delenv(tiers.ENV, raising=False)
    monkeypatch.setattr(tiers, "tuned_ready", lambda dtype: True)
    monkeypatch.setattr(tiers, "_state", {})
    monkeypatch.setattr(tiers, "_aot_requested", set())
    monkeypatch.setattr(_aot, "_networks", {"float32": None})
    started = []
    monkeypatch.setattr(tiers, "_start_background", started.append)
    assert tiers.loops_backend("float32", _aot.MAX_PARAMS + 1) is network
    assert started == []
    for _ in range(2):
        tiers._state.clear()
        assert tiers.loops_backend("float32", 100) is network
    assert started == ["float32"]


def test_the_twin_standing_in_for_the_loops_runs_on_one_blas_thread():
    """While the NumPy twin stands in for the compiling loops, its training calls run with one BLAS
    thread (the compile has the other core); the tuned kernels and an explicit backend="numpy" leave
    NumPy's threads alone, and the limit ends with the call."""
    from threadpoolctl import threadpool_info

    from loopgrad.kernels import network
    from loopgrad.reference import network as numpy_network

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    before = blas_threads()
    assert before, "NumPy's BLAS should be loaded"
    with tiers.blas_for("loops", numpy_network):
        assert blas_threads() == {1}
    assert blas_threads() == before
    for backend, module in (("loops", network), ("numpy", numpy_network)):
        with tiers.blas_for(backend, module):
            assert blas_threads() == before


def test_fresh_process_workers_run_the_loops_as_a_warmed_machine_does(monkeypatch):
    """``loopgrad bench --fresh`` times the loops the way ``fit`` runs them after a warm-up: through the
    ahead-of-time module where it is built and serves the network, else numba's kernels from the
    first call (never the NumPy twin of a cold start)."""
    from loopgrad import _aot, bench_fresh

    monkeypatch.setattr(_aot, "network", lambda dtype: object())
    assert bench_fresh.worker_tier([64, 64, 10], "float32") == "auto"
    assert bench_fresh.worker_tier([784, 128, 64, 10], "float32") == "tuned"  # beyond _aot.MAX_PARAMS
    monkeypatch.setenv(tiers.AOT_ENV, "0")
    assert bench_fresh.worker_tier([64, 64, 10], "float32") == "tuned"
    monkeypatch.delenv(tiers.AOT_ENV)
    monkeypatch.setattr(_aot, "network", lambda dtype: None)  # not built
    assert bench_fresh.worker_tier([64, 64, 10], "float64") == "tuned"

"""Cold start: the NumPy twin trains while the tuned kernels compile once, in the background."""
import os
import re
import subprocess
import sys

import pytest

from loopgrad import tiers

MAIN_JOB = [sys.executable, "-m", "loopgrad", "train", "--data", "iris", "--hidden", "8", "--epochs", "15",
            "--quiet"]


def _env(cache):
    env = {k: v for k, v in os.environ.items() if k != tiers.ENV}  # the default tier, as a user has it
    env["NUMBA_CACHE_DIR"] = str(cache)
    return env


def _result(out):
    """The summary's accuracy and final loss, e.g. ('96.67%', '0.1234')."""
    m = re.search(r"test accuracy (\S+) on iris after 15 epochs \(final train loss ([0-9.]+)", out)
    assert m, out
    return m.groups()


def test_cold_starts_train_at_once_and_the_warm_run_agrees(tmp_path):
    """Three processes start the main job at the same time on one empty kernel cache: all finish
    with the same result from the NumPy twin, without waiting for a compile. After the (one)
    background compile, a new run uses the tuned kernels and agrees with the cold runs."""
    env = _env(tmp_path)
    procs = [subprocess.Popen(MAIN_JOB, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    assert all("First run on this machine" in out for out, _ in outs)
    cold = {_result(out) for out, _ in outs}
    assert len(cold) == 1
    # wait for the background compile (a blocking warm-up queues behind its lock, then loads the cache)
    subprocess.run([sys.executable, "-m", "loopgrad", "warmup", "--dtype", "float32"], env=env, check=True,
                   timeout=900, capture_output=True)
    warm = subprocess.run(MAIN_JOB, env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    assert "kernels ready" in warm and "First run" not in warm
    (acc_cold, loss_cold), = cold
    acc_warm, loss_warm = _result(warm)
    assert acc_warm == acc_cold
    assert abs(float(loss_warm) - float(loss_cold)) <= 1e-3 * float(loss_cold)  # within float32 twin tolerance


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

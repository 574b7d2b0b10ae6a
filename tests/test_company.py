"""Parallel loops that give way (``loopgrad._company``): fewer threads while other threads of the process
run, the same bits on any count."""
import hashlib
import os
import threading
import time

import numpy as np
import pytest

from loopgrad import _company, kernels

pytestmark = pytest.mark.skipif(not _company.ENABLED, reason="Linux with the JIT on only (no parallel regions else)")


def _numba():
    import numba
    return numba


def _states():
    """native id -> scheduler state letter of every thread of this process."""
    states = {}
    for name in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        states[int(name)] = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3].decode()
    return states


class _Busy:
    """A thread that keeps a core busy outside the GIL (hashing large buffers) until stopped."""

    def __enter__(self):
        self.stop, self.started = threading.Event(), threading.Event()
        data = os.urandom(1 << 22)

        def spin():
            self.tid = threading.get_native_id()
            self.started.set()
            while not self.stop.is_set():
                hashlib.sha256(data).digest()  # releases the GIL for the whole 4 MiB
        self.thread = threading.Thread(target=spin, daemon=True)
        self.thread.start()
        self.started.wait()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@pytest.fixture(params=["syscall", "stat"])
def state_file(request, monkeypatch):
    """Each way of reading a thread's state: ``syscall`` (preferred) and ``stat`` (where the first cannot
    be read), the files of the threads already seen closed so that they are opened again."""
    def reset():
        for fd in _company._others.values():
            _company._close(fd)
        _company._others.clear()
        monkeypatch.setattr(_company, "_listed_at", -1.0)
    monkeypatch.setattr(_company, "_STATE_FILES", ("no-such-file", request.param))
    monkeypatch.setattr(_company, "_state_file", None)
    reset()
    yield request.param
    reset()


def test_the_state_is_read_from_either_file():
    assert _company._is_running(b"running\n")
    assert not _company._is_running(b"202 0x7f94653e5ae0 0x189 0x0 0x0 0x0 0xffffffff 0x7f9 0x7f9\n")
    assert not _company._is_running(b"-1 0x7ffd 0x7f94\n")  # stopped in user space: not R
    assert _company._is_running(b"8085 (python) R 8041 8041 1294 0 -1")
    assert not _company._is_running(b"8085 (python) S 8041 8041 1294 0 -1")
    # a thread's name may hold ") R": the state follows the last ')'
    assert not _company._is_running(b"8085 (a) R (b)) S 8041 8041")
    assert not _company._is_running(b"")


def test_a_running_thread_of_the_process_is_counted_and_loopgrads_own_team_is_not(state_file):
    threads = _numba().get_num_threads()
    if threads < 2:
        pytest.skip("one numba thread: no team to learn")
    assert _company.free_threads(threads) >= 1
    me = threading.get_native_id()
    team = {t for t in _company._ours if t != me}
    assert team and team <= set(_states())  # the workers are threads of this process
    with _Busy() as busy:
        time.sleep(2 * _company.REFRESH_SECONDS)  # the list of threads is read again at most this often
        # the busy thread runs nearly all the time (a sample may catch it in one of the hash's short
        # moments with the GIL, so several are taken)
        seen = [_company.running_others() for _ in range(50)]
        given = [_company.free_threads(threads) for _ in range(50)]
    assert busy.tid not in _company._ours
    assert _company._state_file == state_file
    assert max(seen) >= 1
    assert min(given) <= max(1, len(os.sched_getaffinity(0)) - 1)


def _csr(rng, m, n, density):
    A = rng.standard_normal((m, n)).astype(np.float32) * (rng.random((m, n)) < density)
    rows, cols = np.nonzero(A)
    indptr = np.searchsorted(rows, np.arange(m + 1)).astype(np.int64)
    return A[rows, cols], cols.astype(np.int64), indptr


def _calls(rng):
    """Every public kernel that may open a parallel region, on arguments past WORK_MIN."""
    from loopgrad.kernels import optim, sparse

    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    A, W, b, dZ = f32(256, 784), f32(784, 256), f32(256), f32(256, 256)
    Z = f32(2048, 1024)
    data, indices, indptr = _csr(rng, 512, 784, 0.05)
    P = 1 << 21
    theta, grad, state = f32(P), f32(P), f32(P)
    return {
        "dense_forward": lambda: kernels.dense_forward(A, W, b),
        "dense_backward": lambda: kernels.dense_backward(dZ, A, W),
        "per_example_weight_grads": lambda: kernels.per_example_weight_grads(A[:64, :256], dZ[:64, :128]),
        "activation_forward": lambda: kernels.activation_forward("tanh", Z),
        "activation_backward": lambda: kernels.activation_backward("tanh", Z, Z, np.tanh(Z)),
        "sparse_dense_forward": lambda: sparse.sparse_dense_forward(data, indices, indptr, W, b),
        "sparse_weight_grad": lambda: sparse.sparse_weight_grad(data, indices, indptr, 784, dZ[:, :256].repeat(2, 0)),
        "sgd_update": lambda: optim.sgd_update(theta, grad, state, 0.1, momentum=0.9),
        "adam_update": lambda: optim.adam_update(theta, grad, state, np.abs(state), 3),
    }


@pytest.mark.parametrize("name", list(_calls(np.random.default_rng(0))))
def test_every_parallel_kernel_gives_way_to_busy_threads_with_the_same_bits(monkeypatch, name):
    numba = _numba()
    threads = numba.get_num_threads()
    call = _calls(np.random.default_rng(1))[name]
    alone = call()
    counts = []
    real = _company.free_threads
    monkeypatch.setattr(_company, "running_others", lambda: 64)  # every core taken
    monkeypatch.setattr(_company, "free_threads", lambda wanted: counts.append(real(wanted)) or counts[-1])
    given_way = call()
    assert counts == [1]
    assert numba.get_num_threads() == threads  # restored after the call
    for got, expect in zip(*(x if isinstance(x, tuple) else (x,) for x in (given_way, alone))):
        np.testing.assert_array_equal(got, expect)


def test_small_calls_and_bad_arguments_are_not_checked(monkeypatch):
    calls = []
    monkeypatch.setattr(_company, "free_threads", lambda wanted: calls.append(wanted) or wanted)
    small = np.ones((4, 4), np.float32)
    kernels.dense_forward(small, small, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="W"):
        kernels.dense_forward(small, np.ones((5, 4), np.float32), np.zeros(4, np.float32))
    with pytest.raises((ValueError, TypeError)):
        kernels.dense_forward([[1.0]], None, None)
    assert calls == []


def test_a_forked_child_forgets_the_parents_threads():
    _company.free_threads(max(2, _numba().get_num_threads()))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        ok = not _company._others and not _company._ours and not _company._teams
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.waitpid(pid, 0)
    assert got == b"1"

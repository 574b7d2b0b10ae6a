"""Parallel loops that give way: how many threads a parallel region takes, given who else runs now.

A parallel region of the loop kernels splits its work at fixed boundaries, one static share per
thread, and ends when the last share is done. If another thread of the process is running when the
region starts and the machine has no core to spare, one share waits for the scheduler's next time
slice (milliseconds) and the region with it. The usual neighbour: NumPy's OpenBLAS keeps its worker
threads spinning for about 2^28 cycles (some 0.1 s) after every multithreaded product, and they do
not yield. Measured on the 2-core Xeon, F1 at 256 x 784 x 256 float32, medians of 150 calls: 0.30-0.34
ms alone; right after a NumPy product 4.1-7.4 ms on two threads, 0.68 ms on one.

So before each large call of a public kernel that may run in parallel (``shares_cores``), each chunk
of ``fit``'s steps and each other compiled call of a model (forward passes, gradients), loopgrad
counts the threads of this process that are running right now (state R: ``running`` in
``/proc/self/task/<tid>/syscall``, or the state field of its ``stat`` where that file cannot be read),
other than the caller and the OpenMP workers of loopgrad's own teams, and runs on at most (CPUs this
process may use - that count) threads, one at least. The partition is fixed, so the results are the
same bits on any number of threads; only the time changes. Linux only (elsewhere nothing changes);
under ``NUMBA_DISABLE_JIT`` there is nothing parallel to protect.

What it cannot do: give the core back. On one thread beside a spinning BLAS worker the kernel takes
about twice its two-thread time; limiting NumPy's BLAS to one thread with threadpoolctl (README, "In
company") stops the spinning itself.
"""
import functools
import os
import sys
import threading
import time

import numpy as np
from numba import config

from ._numba import AOT_BUILD, c_int_function, jit, prange

_TASKS = "/proc/self/task"
# Public kernel calls below this many multiply-adds (elements, for the elementwise ones) are not
# checked: the check (a few microseconds) would cost them more than it can save on average. Above it a
# kernel takes some 30 us or more on two threads.
WORK_MIN = 1 << 21
# How often the list of the process's threads is read again (new threads are rare; their states are
# read at every check).
REFRESH_SECONDS = 0.1

ENABLED = (sys.platform.startswith("linux") and os.path.isdir(_TASKS) and not config.DISABLE_JIT
           and not AOT_BUILD)

# The per-thread file a check reads: ``syscall`` says "running" for a thread in state R (on a CPU or
# waiting for one) and the system call it sleeps in otherwise; the kernel writes it for about half
# the cost of ``stat``'s 52 fields. Per other thread, a pread of 512 bytes: on the 2-core AVX2 EPYC
# (a KVM guest), syscall 2.6 us against stat 4.7-5.2 us. Where ``syscall`` cannot be read (a kernel
# without it, a sandbox), ``stat``.
_STATE_FILES = ("syscall", "stat")
_state_file = None

_lock = threading.Lock()
_ours = set()    # native ids of the threads in loopgrad's OpenMP teams (the thread that opens them too)
_teams = set()   # (native id of the thread that opens the regions, team size) already recorded
_others = {}     # native id -> file descriptor of its state file (_state_file), every other thread
_listed_at = -1.0


if ENABLED:
    _gettid = c_int_function("gettid")  # glibc's: the calling thread's native id

    @jit(parallel=True)
    def _team_ids(out):
        # one iteration per thread of the team (numba's schedule gives each thread an equal share)
        for i in prange(out.shape[0]):
            out[i] = _gettid()


def _learn_team(n):
    """Record the native ids of the OpenMP team that the calling thread's regions run on with n threads;
    False where they cannot be learned (no ``gettid`` in an old C library): then nothing is checked."""
    global ENABLED
    key = (threading.get_native_id(), n)
    if key in _teams:
        return True
    out = np.zeros(n, np.int64)
    try:
        _team_ids(out)
    except Exception:  # noqa: BLE001 - a missing symbol at link time; the kernels themselves still run
        ENABLED = False
        return False
    with _lock:
        _ours.update(int(t) for t in out if t > 0)
        _teams.add(key)
    return True


def _refresh(now):
    global _listed_at
    try:
        names = os.listdir(_TASKS)
    except OSError:
        names = []
    alive = {int(name) for name in names}
    with _lock:
        for tid in [t for t in _others if t not in alive or t in _ours]:
            _close(_others.pop(tid))
        for tid in alive - _ours - set(_others):
            try:
                _others[tid] = os.open(f"{_TASKS}/{tid}/{_state_file or _choose_state_file()}", os.O_RDONLY)
            except OSError:
                pass
        _listed_at = now


def _choose_state_file():
    """The first of ``_STATE_FILES`` that the calling thread can read of itself."""
    global _state_file
    for name in _STATE_FILES:
        try:
            fd = os.open(f"{_TASKS}/{threading.get_native_id()}/{name}", os.O_RDONLY)
        except OSError:
            continue
        try:
            if os.pread(fd, 512, 0):
                _state_file = name
                return name
        except OSError:
            pass
        finally:
            _close(fd)
    _state_file = "stat"
    return _state_file


def _is_running(text):
    """Whether a thread is in state R, from what its ``syscall`` or ``stat`` file reads."""
    if text.startswith(b"running"):
        return True
    # stat: the state is the first field after the thread's name, which ends with the last ')'
    end = text.rfind(b")")
    return end >= 0 and text[end + 2:end + 3] == b"R"


def running_others():
    """How many threads of this process, other than the caller and loopgrad's OpenMP workers, are running
    (or ready to run) now."""
    now = time.monotonic()
    if now - _listed_at > REFRESH_SECONDS:
        _refresh(now)
    me, n, gone = threading.get_native_id(), 0, []
    for tid, fd in list(_others.items()):
        if tid == me or tid in _ours:
            continue
        try:
            text = os.pread(fd, 512, 0)
        except OSError:  # the thread ended
            gone.append(tid)
            continue
        n += _is_running(text)
    if gone:
        _refresh(now)
    return n


def free_threads(wanted):
    """How many of ``wanted`` threads the calling thread's next parallel region should take: ``wanted``
    unless other threads of the process hold the cores, then the CPUs left to it, one at least."""
    if wanted <= 1 or not ENABLED:
        return wanted
    if not _learn_team(wanted):
        return wanted
    busy = running_others()
    if busy == 0:
        return wanted
    return max(1, min(wanted, len(os.sched_getaffinity(0)) - busy))


def on_free_threads(call):
    """``call()`` with the calling thread's numba thread count cut to ``free_threads`` of it, restored after."""
    numba = sys.modules["numba"]
    wanted = numba.get_num_threads()
    n = free_threads(wanted)
    if n == wanted:
        return call()
    numba.set_num_threads(n)
    try:
        return call()
    finally:
        numba.set_num_threads(wanted)


def shares_cores(work):
    """For public kernels that run parallel regions: run the call on ``free_threads`` threads when
    ``work(*args)`` (its multiply-adds) reaches ``WORK_MIN``. Arguments the kernel's own checks will
    reject pass through unchecked."""
    def wrap(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            if not ENABLED:
                return fn(*args, **kwargs)
            try:
                big = work(*args, **kwargs) >= WORK_MIN
            except Exception:  # noqa: BLE001 - not arrays of the expected rank: the kernel raises the clear error
                big = False
            if not big:
                return fn(*args, **kwargs)
            return on_free_threads(lambda: fn(*args, **kwargs))
        return call
    return wrap


def _close(fd):
    try:
        os.close(fd)
    except OSError:  # already closed
        pass


def _forget_in_child():
    # a forked child has one thread, and the open state files are its parent's threads'
    global _lock, _listed_at
    _lock, _listed_at = threading.Lock(), -1.0
    for fd in _others.values():
        _close(fd)
    _others.clear()
    _ours.clear()
    _teams.clear()


os.register_at_fork(after_in_child=_forget_in_child)

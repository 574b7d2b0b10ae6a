"""One long-lived thread runs the compiled calls of ``fit``, the forward passes and the gradients.

Why one thread: GNU OpenMP (numba's ``omp`` threading layer) keeps a team of worker threads for each
thread that opens a parallel region, and once it manages more threads than the machine has CPUs it
cuts the time its idle workers spin before they sleep to almost nothing (libgomp's
``gomp_throttled_spin_count_var``). From then on every parallel region wakes its workers from sleep,
and the step has several regions. ``fit`` used to run each epoch in a new thread (so that the caller
stays free to take Ctrl-C), and a second team came with the first epoch that ran beside one the
caller's thread had made. Measured on a 2-core Xeon with AVX-512 (784-128-64-10, batch 128, float32,
median us per step of 12 epochs; ``train_epoch_into`` called directly):

    every epoch on the calling thread                 439-464
    every epoch on a new thread                       565-630  (single epochs 480-803)
    the same, after one epoch on the calling thread   700-707
    every epoch on one long-lived thread              446-484

So all of loopgrad's compiled calls that may open a parallel region go through ``run``, which hands
them to one thread that lives as long as the process (a new one after a fork) and waits for them in
steps of 50 ms, so that the caller's thread still takes Ctrl-C.
"""
import os
import queue
import sys
import threading

# How often the waiting caller wakes up: the latency of Ctrl-C while a call runs.
POLL_SECONDS = 0.05

_lock = threading.Lock()
_worker = None  # (pid, thread, queue of (call, threads, box, done))


def _serve(jobs):
    while True:
        call, threads, box, done = jobs.get()
        try:
            if threads is not None:
                sys.modules["numba"].set_num_threads(threads)
            box["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = e
        done.set()


def _jobs():
    global _worker
    with _lock:
        if _worker is None or _worker[0] != os.getpid() or not _worker[1].is_alive():
            jobs = queue.SimpleQueue()
            thread = threading.Thread(target=_serve, args=(jobs,), name="loopgrad-compute", daemon=True)
            thread.start()
            _worker = (os.getpid(), thread, jobs)
        return _worker[2]


def _forget_in_child():
    # the child of a fork has only the thread that forked: a new lock (the old one may have been held by
    # another thread) and, at its first call, a new compute thread
    global _lock, _worker
    _lock, _worker = threading.Lock(), None


os.register_at_fork(after_in_child=_forget_in_child)


def on_compute_thread():
    """Whether the current thread is the compute thread."""
    return _worker is not None and _worker[1] is threading.current_thread()


def run(call, stop=None):
    """``call()`` on the compute thread, with the caller's numba thread count (numba keeps it per thread);
    returns its value or raises its exception. Calls from several threads take turns.

    Ctrl-C in the waiting thread sets ``stop[0] = 1`` (an int64 array the call reads between mini-batches)
    when given, waits for the call to finish (so the model stays consistent) and raises
    KeyboardInterrupt. On the compute thread itself, ``call()`` runs at once."""
    if on_compute_thread():
        return call()
    numba = sys.modules.get("numba")  # not loaded by the ahead-of-time tier: then there is no count to pass
    threads = numba.get_num_threads() if numba is not None else None
    box, done = {}, threading.Event()
    _jobs().put((call, threads, box, done))
    try:
        while not done.wait(POLL_SECONDS):
            pass
    except KeyboardInterrupt:
        if stop is not None:
            stop[0] = 1
        done.wait()
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]

"""How many threads the next steps of ``fit`` run on: all of numba's, or one, chosen by timing both.

The kernels split their work at fixed boundaries, so the numbers are the same bits on one thread or
on all of them; only the time differs. Most of the time two threads win (1.3-1.8x on the 2-core AVX2
machine). But on a shared machine the second thread sometimes does not come when a parallel region
starts: in some fresh processes the two-thread step at batch 32 took 8.5 ms against 0.47 ms on one
thread (784-128-64-10, ``loopgrad bench --fresh``), for as long as that phase of the machine lasted.
So ``fit`` runs an epoch in chunks of about ``CHUNK_SECONDS``, times each, and runs the next chunk
on the setting whose best of its last ``RECENT`` chunks was faster (one thread only when it wins by
``BIAS``: two threads are the rule, and a single slow chunk is often a passing moment); now and then
it tries the other one again, less often while the choice keeps winning by a clear margin.
"""
# Target length of one chunk of steps: long enough that Python's few hundred microseconds between
# chunks do not count, short enough to leave a bad phase of the machine within a fraction of a second.
CHUNK_SECONDS = 0.05
# Chunks between two tries of the setting not chosen: from FIRST_INTERVAL, four times longer after
# each try that the choice won by more than MARGIN, up to MAX_INTERVAL (about 6 s): a try costs the
# slower setting's time, which at first cost a short fit 12-13% at batch 128 and 1024 with tries
# every 4 to 64 chunks of half length.
FIRST_INTERVAL, MAX_INTERVAL = 8, 128
MARGIN = 1.25
# A setting's speed is the best seconds per step of its last RECENT chunks; one thread is chosen only
# when it beats all threads by BIAS, and only once all threads have run RECENT timed chunks: the first
# one is short (8 steps) and comes right after the warm-up, and a transient in it alone (784-128-64-10
# at batch 32 on the 2-core Zen 5 guest: one fresh process in about twenty) once put a whole fit on one
# thread, 113 us a step where two ran 63.
RECENT = 3
BIAS = 1.2


class ThreadChoice:
    """Chunk by chunk, one or ``threads`` threads for the next steps, from the seconds per step that
    each setting took in its latest chunk.

    ``plan(remaining)`` gives (threads, steps) for the next chunk; ``record(threads, steps, seconds)``
    takes its time. The first chunk is one step on all threads and is not timed (it may still load
    compiled code). ``threads`` defaults to numba's thread count in the thread that makes the choice
    (``numba.set_num_threads`` there is respected: ``resolve`` reads it); with one there is nothing
    to choose.
    """

    def __init__(self, threads=None):
        self.threads = threads
        self.rates = {}  # threads -> seconds per step of its last RECENT timed chunks
        self.steps = {}  # threads -> steps run on it
        self.warm = False
        self.interval = FIRST_INTERVAL
        self.since_try = 0

    def _rate(self, threads):
        return min(self.rates[threads]) if threads in self.rates else None

    def _preferred(self):
        if len(self.rates) < 2 or len(self.rates[self.threads]) < RECENT:
            return self.threads
        return 1 if BIAS * self._rate(1) < self._rate(self.threads) else self.threads

    def resolve(self):
        """Read numba's thread count now, in the thread that called ``fit`` (the chunks run in another)."""
        if self.threads is None:
            import numba

            self.threads = numba.get_num_threads()

    def plan(self, remaining):
        self.resolve()
        if self.threads == 1:
            return 1, remaining
        if not self.warm:
            return self.threads, 1
        if self.threads not in self.rates:  # a first chunk of the usual length on all threads
            return self.threads, self._steps(remaining, self.threads, trying=False)
        if 1 not in self.rates:  # then one thread, once
            return 1, self._steps(remaining, 1, trying=True)
        best = self._preferred()
        if self.since_try >= self.interval:
            other = 1 if best == self.threads else self.threads
            return other, self._steps(remaining, other, trying=True)
        return best, self._steps(remaining, best, trying=False)

    def _steps(self, remaining, threads, trying):
        rate = self._rate(threads) or self._rate(self._preferred())
        steps = 8 if rate is None else max(1, int(CHUNK_SECONDS / rate))
        if trying:
            steps = max(1, steps // 4)  # a try is short: it may be the slow setting
        return min(remaining, steps)

    def record(self, threads, steps, seconds):
        self.steps[threads] = self.steps.get(threads, 0) + steps
        if not self.warm:
            self.warm = True
            return
        before = self._preferred()
        self.rates[threads] = (self.rates.get(threads, []) + [seconds / max(1, steps)])[-RECENT:]
        if len(self.rates) < 2:
            return
        if threads == before:
            self.since_try += 1
            return
        self.since_try = 0
        best, other = self._preferred(), 1 if self._preferred() == self.threads else self.threads
        clear = self._rate(other) > MARGIN * self._rate(best)
        self.interval = min(MAX_INTERVAL, 4 * self.interval) if clear else FIRST_INTERVAL

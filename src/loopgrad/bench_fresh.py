"""Training steps timed the way a user meets them: every runtime in several fresh processes.

One process times one runtime on one case: an epoch of mini-batch steps (ReLU hidden layers,
softmax output, plain SGD, no shuffle) after one warm-up epoch (compilation, caches), then the
median over at least ``EPOCHS`` timed epochs and ``MIN_SECONDS`` of them, printed as microseconds per
step. ``measure`` runs ``processes`` such processes per runtime, the runtimes taking turns (never two at
once on the 2 cores), and reports the median over processes and the spread (max / min). One warm process can
sit in a lucky or an unlucky mode for its whole life, which only several processes show.

Runtimes: ``loops`` (the tuned kernels, 2 threads; for a network the ahead-of-time module serves,
that module where it is built, as on a user's machine after ``loopgrad warmup`` or a first run:
``worker_tier``), ``loops-1t`` (one thread), ``numpy`` (their
NumPy twin), ``torch`` (PyTorch eager, 2 threads) and ``jax`` (``jit`` of a ``lax.scan`` over the
epoch's steps: value_and_grad and the SGD update, the fairest compiled rival), each where
installed. ``sgemm_peak`` is NumPy's 1024^3 product in the same dtype (sgemm for float32, dgemm for
float64), the best over a second in a fresh process of the same run, so that steps can be given as a
share of what the machine's BLAS reaches; a step's operations are counted by ``step_flop``.
``two_thread_scaling`` says what the host gave the second thread during the run. Cases: the
784-128-64-10 network at batch 32, 128 and 1024, and the 64-64-10 digits network at batch 32; every
runtime in float32 or in float64.

``dp_ratio`` times DP-SGD's step (per-example clipping and the noise drawn in the step) against the
plain SGD step on the same network. Each fresh process alternates rounds of the two, so that a
drift of the machine's speed during the process falls on both alike, and reports the ratio of their
median rounds; timing one after the other, as pytest-benchmark's groups do, leaves the ratio at the
mercy of that drift.
"""
import json
import math
import os
import statistics
import subprocess
import sys

CASES = [([784, 128, 64, 10], 32), ([784, 128, 64, 10], 128), ([784, 128, 64, 10], 1024), ([64, 64, 10], 32)]
RUNTIMES = ("loops", "loops-1t", "numpy", "torch", "jax")
EPOCHS = 5
# A process times at least this many seconds of epochs. On a shared host the second core is now and
# then missing for about half a second (``two_thread_scaling``); five epochs of 20-30 ms each fell
# wholly in or out of such a stretch, and the process's median with them.
MIN_SECONDS = 2.0
LR = 0.01


def _steps_per_epoch(batch):
    return max(20, 6400 // batch)


def _data(sizes, batch, dtype="float32"):
    import numpy as np

    rng = np.random.default_rng(0)
    n = batch * _steps_per_epoch(batch)
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], n)
    return X, y


def _more_epochs(times):
    """How many more epochs a process times after ``times``: up to EPOCHS, and on until MIN_SECONDS of
    timed epochs (0 once both are reached)."""
    if not times:
        return EPOCHS
    return max(EPOCHS - len(times), math.ceil((MIN_SECONDS - sum(times)) / statistics.median(times)), 0)


def _time_epochs(epoch):
    import time

    epoch()  # warm-up: compilation and caches
    times = []
    while _more_epochs(times) > 0:
        t0 = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _loopgrad_seconds(sizes, batch, backend, dtype):
    """Median epoch of ``fit`` calls of ``_more_epochs`` epochs each, plus one that warms up and is left out
    (the first call's: compilation, caches; a later call's: its thread choice starting over), until
    EPOCHS and MIN_SECONDS are reached: ``History.epoch_seconds`` times each epoch's training call,
    without fit's one-off input checks."""
    import loopgrad as lg

    X, y = _data(sizes, batch, dtype)
    model = lg.MLP(sizes, hidden="relu", output="softmax", dtype=dtype)
    times = []
    while (epochs := _more_epochs(times)) > 0:
        history = model.fit(X, y, epochs=epochs + 1, batch_size=batch, optimizer=lg.SGD(LR), shuffle=False,
                            progress=False, backend=backend)
        times += history.epoch_seconds[1:]
    return statistics.median(times)


def _torch_epoch(sizes, batch, dtype):
    import torch

    torch.set_num_threads(2)
    X, y = _data(sizes, batch, dtype)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1]).to(getattr(torch, dtype))
    sgd = torch.optim.SGD(net.parameters(), lr=LR)
    loss = torch.nn.CrossEntropyLoss()
    batches = [(torch.from_numpy(X[s:s + batch]), torch.from_numpy(y[s:s + batch])) for s in range(0, len(X), batch)]

    def epoch():
        for xb, yb in batches:
            sgd.zero_grad()
            loss(net(xb), yb).backward()
            sgd.step()
    return epoch


def _jax_epoch(sizes, batch, dtype):
    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)  # else JAX quietly computes in float32
    import jax.numpy as jnp
    import numpy as np

    X, y = _data(sizes, batch, dtype)
    steps = len(X) // batch
    Xb = jnp.asarray(X.reshape(steps, batch, sizes[0]))
    Yb = jnp.asarray(np.eye(sizes[-1], dtype=dtype)[y].reshape(steps, batch, sizes[-1]))
    rng = np.random.default_rng(0)
    params = [(jnp.asarray(rng.normal(0, np.sqrt(2 / a), (a, b)).astype(dtype)), jnp.zeros(b, dtype))
              for a, b in zip(sizes[:-1], sizes[1:])]

    def loss(p, xb, yb):
        a = xb
        for W, b in p[:-1]:
            a = jax.nn.relu(a @ W + b)
        logits = a @ p[-1][0] + p[-1][1]
        return -jnp.mean(jnp.sum(yb * jax.nn.log_softmax(logits), axis=1))

    def step(p, xy):
        value, grads = jax.value_and_grad(loss)(p, *xy)
        return jax.tree_util.tree_map(lambda w, g: w - LR * g, p, grads), value

    run = jax.jit(lambda p: jax.lax.scan(step, p, (Xb, Yb)))
    return lambda: jax.block_until_ready(run(params))


def _worker(runtime, sizes, batch, dtype="float32"):
    """One fresh process: median seconds per epoch of ``runtime`` on the case, as microseconds per step."""
    if runtime in ("loops", "loops-1t", "numpy"):
        seconds = _loopgrad_seconds(sizes, batch, "numpy" if runtime == "numpy" else "loops", dtype)
    else:
        epoch = _torch_epoch if runtime == "torch" else _jax_epoch
        seconds = _time_epochs(epoch(sizes, batch, dtype))
    return seconds / _steps_per_epoch(batch) * 1e6


DP_CASE = ([784, 128, 64, 10], 64)
DP_ROUNDS, DP_STEPS = 40, 20


def _dp_worker(sizes, batch):
    """One fresh process: {plain, dp: median us per step over alternating rounds, ratio: dp / plain}."""
    import time

    from .bench_cli import step_case
    from .optim import DPSGD, SGD

    plain = step_case(sizes, batch, "float32", optimizer=SGD(LR))[0]
    dp = step_case(sizes, batch, "float32", optimizer=DPSGD(LR, noise_multiplier=1.0))[0]
    for step in (plain, dp):  # warm-up: compilation and caches
        for _ in range(2 * DP_STEPS):
            step()
    rounds = {"plain": [], "dp": []}
    for _ in range(DP_ROUNDS):
        for name, step in (("plain", plain), ("dp", dp)):
            t0 = time.perf_counter()
            for _ in range(DP_STEPS):
                step()
            rounds[name].append((time.perf_counter() - t0) / DP_STEPS * 1e6)
    out = {name: statistics.median(times) for name, times in rounds.items()}
    return dict(out, ratio=out["dp"] / out["plain"])


def dp_ratio(processes=5, case=DP_CASE):
    """DP-SGD's step over the plain one in ``processes`` fresh processes: {ratio: median over processes,
    low, high: their range, plain, dp: median us per step, per_process: each process's result}."""
    from ._checks import integer

    runs = [_spawn(["dp", json.dumps(case[0]), str(case[1])]) for _ in range(integer("processes", processes, 1))]
    ratios = [r["ratio"] for r in runs]
    return {"ratio": statistics.median(ratios), "low": min(ratios), "high": max(ratios),
            "plain": statistics.median(r["plain"] for r in runs), "dp": statistics.median(r["dp"] for r in runs),
            "per_process": runs}


def dp_table(result, case=DP_CASE):
    return (f"DP-SGD step over the plain SGD step ({'-'.join(map(str, case[0]))}, batch {case[1]}, float32, noise "
            f"multiplier 1.0; {len(result['per_process'])} fresh processes, each alternating {DP_ROUNDS} rounds of "
            f"{DP_STEPS} steps of each): {result['ratio']:.2f}x [{result['low']:.2f}-{result['high']:.2f}]; "
            f"plain {result['plain']:.0f} us, DP {result['dp']:.0f} us per step (medians)")


def _peak_worker(dtype="float32"):
    import time

    import numpy as np

    A = np.random.default_rng(0).standard_normal((1024, 1024)).astype(dtype)
    C = A @ A
    # the best product over a second: what the BLAS reaches. A median of 20 products (0.2 s) once fell
    # in one of a shared host's half-second stretches where the second core is not there (107 GFLOP/s
    # against 208 in the run before)
    best = float("inf")
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        np.matmul(A, A, out=C)
        best = min(best, time.perf_counter() - t0)
    return 2 * 1024 ** 3 / best / 1e9


PROBE_SECONDS = 4.0
PROBE_SLOW = 1.25


def _scaling_worker(seconds=PROBE_SECONDS):
    """One fresh process: pairs of calls of the public F1 kernel at 256 x 784 x 256 float32 (its operands
    in L2, so memory cannot be what limits it), one call on one thread then one on all, for ``seconds``;
    the one-thread time over the all-threads time of each pair."""
    import time

    import numba
    import numpy as np

    from . import kernels

    rng = np.random.default_rng(0)
    A = rng.standard_normal((256, 784)).astype(np.float32)
    W = rng.standard_normal((784, 256)).astype(np.float32)
    b = np.zeros(256, np.float32)
    threads = numba.get_num_threads()
    speedups = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(speedups) < 3:
        took = []
        for n in (1, threads):
            numba.set_num_threads(n)
            t0 = time.perf_counter()
            kernels.dense_forward(A, W, b)
            took.append(time.perf_counter() - t0)
        speedups.append(took[0] / took[1])
    return speedups


def two_thread_scaling(seconds=PROBE_SECONDS):
    """What the machine gave two threads during the run: {median, p10: of the speedup of all threads over
    one, slow: the share of pairs where it was below PROBE_SLOW, pairs}, from ``_scaling_worker`` in a fresh
    process. On a shared host (a KVM guest's two virtual CPUs) the second thread is sometimes not a core
    of its own (both run on one physical core, or one waits for the host), for stretches of about half a
    second; a two-thread runtime's fresh processes then differ by that, not by anything in the runtime."""
    import numpy as np

    speedups = np.array(_spawn(["scaling", repr(float(seconds))]))
    return {"median": float(np.median(speedups)), "p10": float(np.percentile(speedups, 10)),
            "slow": float(np.mean(speedups < PROBE_SLOW)), "pairs": int(speedups.size)}


def scaling_line(probe):
    return (f"two-thread probe (F1 256x784x256, one thread then two, {probe['pairs']} pairs in a fresh process): "
            f"speedup median {probe['median']:.2f}x, p10 {probe['p10']:.2f}x; below {PROBE_SLOW}x in "
            f"{100 * probe['slow']:.0f}% of pairs (the second core taken by the host)")


def available(runtime):
    import importlib.util

    return runtime not in ("torch", "jax") or importlib.util.find_spec(runtime) is not None


def worker_tier(sizes, dtype):
    """``LOOPGRAD_TIER`` for the loops' workers on a network of ``sizes``: "auto" where the ahead-of-time
    module is built and serves the network, so that they run it as ``fit`` does on a warmed machine;
    else "tuned": numba's kernels from the first call (compiled in the worker when not cached), never
    the NumPy twin that stands in during a cold start's background compile."""
    from . import _aot, tiers

    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    return "auto" if tiers.aot_serves(n_params) and _aot.network(dtype) is not None else "tuned"


def _spawn(args, runtime=None, tier="tuned"):
    from .tiers import ENV

    env = dict(os.environ, **{ENV: tier})
    if runtime == "loops-1t":
        env["NUMBA_NUM_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-m", "loopgrad.bench_fresh", *args], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def sgemm_peak(dtype="float32"):
    """GFLOP/s of NumPy's 1024^3 product in ``dtype`` (sgemm or dgemm) in a fresh process."""
    from ._checks import float_dtype_name

    return _spawn(["peak", float_dtype_name("dtype", dtype)])


def step_flop(sizes, batch):
    """Floating-point operations one training step needs: per layer F1, B2 and B4, 2 * batch * n_in * n_out
    each, except layer 1's B4 (the gradient with respect to the data, which no runtime computes: loopgrad
    skips it, autodiff prunes it). Counting it too would put a step above the BLAS peak."""
    layers = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 2.0 * batch * (3 * layers - sizes[0] * sizes[1])


def measure(cases=CASES, processes=5, runtimes=RUNTIMES, dtype="float32"):
    """[(runtime, sizes, batch, median us/step, spread max/min, GFLOP/s)] over ``processes`` fresh processes
    each, every runtime in ``dtype``. The runtimes take turns, one process each per round, so that a drift
    of the machine's speed during the run (a shared host's) falls on every runtime alike, and the ratios
    between them, measured in the same rounds, keep their meaning."""
    from ._checks import float_dtype_name, integer

    processes = integer("processes", processes, 1)
    dtype = float_dtype_name("dtype", dtype)
    rows = []
    for sizes, batch in cases:
        here = [runtime for runtime in runtimes if available(runtime)]
        tiers = {runtime: worker_tier(sizes, dtype) if runtime.startswith("loops") else "tuned" for runtime in here}
        per_step = {runtime: [] for runtime in here}
        for _ in range(processes):
            for runtime in here:
                per_step[runtime].append(_spawn(["worker", runtime, json.dumps(sizes), str(batch), dtype], runtime,
                                                tiers[runtime]))
        for runtime, times in per_step.items():
            med = statistics.median(times)
            rows.append((runtime, sizes, batch, med, max(times) / min(times), step_flop(sizes, batch) / med / 1e3))
    return rows


def table(rows, peak, dtype="float32"):
    from ._checks import float_dtype_name

    gemm = "sgemm" if float_dtype_name("dtype", dtype) == "float32" else "dgemm"
    out = [f"training steps in fresh processes ({dtype}, SGD; median over processes, spread = max/min; "
           f"{gemm} peak {peak:.0f} GFLOP/s)",
           f"{'case':22} {'runtime':9} {'us/step':>9} {'spread':>7} {'% peak':>7} {'loops faster by':>16}"]
    loops = {(tuple(s), b): med for r, s, b, med, _, _ in rows if r == "loops"}
    for runtime, sizes, batch, med, spread, gflops in rows:
        base = loops.get((tuple(sizes), batch))
        ratio = "" if runtime == "loops" or base is None else f"{med / base:.2f}x"
        out.append(f"{'-'.join(map(str, sizes)) + f' m={batch}':22} {runtime:9} {med:9.1f} {spread:7.2f} "
                   f"{100 * gflops / peak:6.0f}% {ratio:>16}")
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1] == "peak":
        print(json.dumps(_peak_worker(*sys.argv[2:3])))
    elif sys.argv[1] == "scaling":
        print(json.dumps(_scaling_worker(float(sys.argv[2]))))
    elif sys.argv[1] == "dp":
        print(json.dumps(_dp_worker(json.loads(sys.argv[2]), int(sys.argv[3]))))
    else:
        print(json.dumps(_worker(sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:6])))

"""``loopgrad bench``: a compact benchmark in one process, ratios measured in the same run.

Runtimes take turns (numba, then OpenBLAS, then PyTorch where installed), each with its own
threads, and each timing waits until the pools of the one before have stopped spinning (``settle``),
so they do not fight over the two cores.
"""
import time

import numpy as np

from . import bench_fresh

SIZES = [(32, 784, 128), (256, 784, 256), (1024, 1024, 1024)]
STEPS = [([784, 128, 64, 10], 32), ([784, 128, 64, 10], 128), ([784, 128, 64, 10], 1024), ([64, 64, 10], 32)]
# Seconds to wait before each timing: after a product, OpenBLAS's workers spin for about 2^28 cycles
# (0.1 s here), and PyTorch's do the same; on 2 cores a spinning worker takes a core from whichever
# runtime is timed next (measured: the in-place F1 timed here, which does not give way as the public
# kernels do, up to 4-25x slower; see the README's "In company").
# Each runtime is timed alone; bench/test_bench_dense.py -k company times the company itself.
SETTLE = 0.25


def settle():
    """Let the thread pools of the runtime timed before go idle (``SETTLE``)."""
    time.sleep(SETTLE)


def _median_seconds(fn, budget=0.3, min_runs=5):
    fn()
    settle()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < budget:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 1000:
            break
    return float(np.median(times))


def _torch():
    try:
        import torch
        torch.set_num_threads(2)
        return torch
    except ImportError:
        return None


def dense_products():
    """The three products of a dense layer, for ``loopgrad bench`` and ``bench/`` alike:
    name -> (loops, numpy, torch, output shape, terms per sum). ``loops`` and ``numpy`` take
    (A, W, b, dZ, out) and write ``out``; ``torch`` takes (torch, A, W, b, dZ) tensors.

    The loops are the in-place variants that the fused step runs (no allocation inside the timed
    call but B4's copy of a narrow W, which the step makes too), so this module, alone outside
    ``loopgrad.kernels``, names them."""
    from .kernels.dense import _b4_copy, _dense_act_forward_into, _input_grad_act_into, _weight_grad_into

    return {
        "forward": (lambda A, W, b, dZ, out: _dense_act_forward_into(A, W, b, -1, out, out),
                    lambda A, W, b, dZ, out: np.add(np.matmul(A, W, out=out), b, out=out),
                    lambda t, A, W, b, dZ: t.addmm(b, A, W), lambda m, i, o: (m, o), lambda m, i, o: i),
        "dW": (lambda A, W, b, dZ, out: _weight_grad_into(A, dZ, out),
               lambda A, W, b, dZ, out: np.divide(np.matmul(A.T, dZ, out=out), A.shape[0], out=out),
               lambda t, A, W, b, dZ: (A.T @ dZ) / A.shape[0], lambda m, i, o: (i, o), lambda m, i, o: m),
        "dA_prev": (lambda A, W, b, dZ, out: _input_grad_act_into(dZ, W, _b4_copy(W, dZ.shape[0]), -1, A, A, out),
                    lambda A, W, b, dZ, out: np.matmul(dZ, W.T, out=out),
                    lambda t, A, W, b, dZ: dZ @ W.T, lambda m, i, o: (m, i), lambda m, i, o: o),
    }


def run(dtype="float32", quick=False):
    torch = _torch()
    rng = np.random.default_rng(0)
    rows = []
    cases = dense_products()
    for m, n_in, n_out in SIZES[:2] if quick else SIZES:
        A = rng.standard_normal((m, n_in)).astype(dtype)
        W = rng.standard_normal((n_in, n_out)).astype(dtype)
        b = rng.standard_normal(n_out).astype(dtype)
        dZ = rng.standard_normal((m, n_out)).astype(dtype)
        flop = 2.0 * m * n_in * n_out
        for name, (loops, numpy, tfn, out_shape, _) in cases.items():
            out = np.empty(out_shape(m, n_in, n_out), dtype)
            t_l = _median_seconds(lambda: loops(A, W, b, dZ, out))
            t_n = _median_seconds(lambda: numpy(A, W, b, dZ, out))
            t_t = None
            if torch is not None:
                args = [torch.from_numpy(x) for x in (A, W, b, dZ)]
                t_t = _median_seconds(lambda: tfn(torch, *args))
            rows.append((f"dense {name}", f"{m}x{n_in}x{n_out}", flop / t_l / 1e9, t_n / t_l,
                         None if t_t is None else t_t / t_l, flop))
    rows += _steps(dtype, torch, quick)
    return rows


def step_case(sizes, m, dtype, backend="loops", seed=1, optimizer=None):
    """A ready training step of an MLP ``sizes`` (ReLU/softmax, ``optimizer``: SGD lr 0.01 by default)
    on a random batch of ``m`` rows: returns (step, model, X, y) where ``step()`` runs one fused step
    in place (for DP-SGD with the noise of a fit over m * 100 rows)."""
    from .model import MLP, network
    from .optim import SGD
    from . import layout

    rng = np.random.default_rng(seed)
    model = MLP(sizes, dtype=dtype)
    X = rng.standard_normal((m, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], m)
    opt = SGD(0.01) if optimizer is None else optimizer
    opt.start(100 * m, m)
    net, buf, update = model.training_buffers(m, opt)
    layout.load_batch(buf, *model.validate(X, y))
    noise = opt.noise(1, model.n_params, dtype)[0]
    run = network(backend).train_step_into
    return (lambda: run(net, buf, m, update, 1, noise)), model, X, y


def _steps(dtype, torch, quick):
    rows = []
    for sizes, m in STEPS[::3] if quick else STEPS:
        loops, _, X, y = step_case(sizes, m, dtype, "loops")
        numpy_step, _, _, _ = step_case(sizes, m, dtype, "numpy")
        t_l = _median_seconds(loops)
        t_n = _median_seconds(numpy_step)
        t_t = None
        if torch is not None:
            layers = []
            for a, b in zip(sizes[:-1], sizes[1:]):
                layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
            net = torch.nn.Sequential(*layers[:-1]).to(getattr(torch, dtype))
            sgd = torch.optim.SGD(net.parameters(), lr=0.01)
            tX, ty, ce = torch.from_numpy(X), torch.from_numpy(y), torch.nn.CrossEntropyLoss()

            def step():
                sgd.zero_grad()
                ce(net(tX), ty).backward()
                sgd.step()
            t_t = _median_seconds(step)
        flop = bench_fresh.step_flop(sizes, m)
        rows.append(("train step", f"{'-'.join(map(str, sizes))} m={m}", flop / t_l / 1e9, t_n / t_l,
                     None if t_t is None else t_t / t_l, flop))
    return rows


def table(rows, dtype):
    out = [f"loopgrad bench ({dtype}; ratios = other time / loop time, > 1 means loops are faster)",
           f"{'what':16} {'size':22} {'loops GFLOP/s':>13} {'vs NumPy':>9} {'vs PyTorch':>10}"]
    for what, size, gflops, r_np, r_t, _ in rows:
        rt = "n/a" if r_t is None else f"{r_t:.2f}x"
        out.append(f"{what:16} {size:22} {gflops:13.1f} {r_np:8.2f}x {rt:>10}")
    return "\n".join(out)


def plot(rows, path):
    from .plots import _pyplot
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for what in dict.fromkeys(r[0] for r in rows):
        sel = [r for r in rows if r[0] == what]
        ax.plot([r[5] for r in sel], [r[3] for r in sel], "o-", label=f"{what} vs NumPy")
        if sel[0][4] is not None:
            ax.plot([r[5] for r in sel], [r[4] for r in sel], "s--", label=f"{what} vs PyTorch")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("FLOP per call")
    ax.set_ylabel("speed-up of the loops")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


_FIRST_STEP = """
import time, numpy as np
t0 = time.perf_counter()
import loopgrad
m = loopgrad.MLP([784, 128, 64, 10], dtype="{dtype}")
m.fit(np.zeros((32, 784)), np.zeros(32, dtype=int), epochs=1, batch_size=32, progress=False)
print(time.perf_counter() - t0)
"""


def _env(cache_dir, tier):
    import os

    from .tiers import ENV
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    if tier is not None:
        env[ENV] = tier
    return env


def first_step_seconds(dtype, cache_dir, tier="tuned"):
    """Seconds from a new process's ``import loopgrad`` to its first training step done, with the
    kernel cache in ``cache_dir`` (by default compiling the tuned kernels in the process)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _FIRST_STEP.format(dtype=dtype)], env=_env(cache_dir, tier),
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main_job_seconds(cache_dir, aot=True):
    """Wall seconds of the main job ``loopgrad train --data digits`` in a new process, as a user runs it
    (``aot`` False: without the ahead-of-time module, through numba's cache)."""
    import subprocess
    import sys
    import time

    env = _env(cache_dir, None)
    if not aot:
        env["LOOPGRAD_AOT"] = "0"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "loopgrad", "train", "--data", "digits", "--quiet"], env=env,
                   capture_output=True, check=True)
    return time.perf_counter() - t0


def import_seconds(runs=3):
    """Median seconds of ``import loopgrad`` inside new processes (interpreter start not counted)."""
    import statistics
    import subprocess
    import sys

    code = "import time; t0 = time.perf_counter(); import loopgrad; print(time.perf_counter() - t0)"
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                  check=True).stdout.split()[-1]) for _ in range(runs))


def compile_times(dtype="float32"):
    """Fresh processes on an empty kernel cache: the main job cold (NumPy twin while the tuned kernels
    compile in the background), then warm (after that compile); and the tuned kernels compiled in
    the process itself: the first training step cold, then warm. Returns a dict of seconds (warm main
    jobs: the median of 3 new processes)."""
    import statistics
    import subprocess
    import sys
    import tempfile

    out = {"import loopgrad (median of 3 new processes)": import_seconds()}
    with tempfile.TemporaryDirectory() as cache:
        out["main job, cold cache"] = main_job_seconds(cache)
        subprocess.run([sys.executable, "-m", "loopgrad", "warmup", "--dtype", "float32"], env=_env(cache, None),
                       capture_output=True, check=True)
        # a blocking warm-up queues behind the background one, then builds the ahead-of-time module
        out["main job, warm cache"] = statistics.median(main_job_seconds(cache) for _ in range(3))
        out["main job, warm cache, numba only (LOOPGRAD_AOT=0)"] = statistics.median(
            main_job_seconds(cache, aot=False) for _ in range(3))
    with tempfile.TemporaryDirectory() as cache:
        out[f"first {dtype} step, tuned kernels compiled in the process"] = first_step_seconds(dtype, cache)
        out[f"first {dtype} step, tuned kernels from the cache"] = first_step_seconds(dtype, cache)
    return out


def _cmd_bench(args):
    if args.dp:
        print(bench_fresh.dp_table(bench_fresh.dp_ratio(processes=args.processes)))
        return 0
    if args.fresh:
        peak = bench_fresh.sgemm_peak(args.dtype)
        cases = bench_fresh.CASES[:1] if args.quick else bench_fresh.CASES
        rows = bench_fresh.measure(cases, processes=args.processes, dtype=args.dtype)
        probe = bench_fresh.two_thread_scaling()
        print(bench_fresh.table(rows, peak, args.dtype))
        print(bench_fresh.scaling_line(probe))
        return 0
    if args.compile_time:
        targets = {"main job, cold cache": "target <= 5 s", "main job, warm cache": "target <= 1 s",
                   "import loopgrad (median of 3 new processes)": "target <= 0.3 s"}
        print("fresh processes (main job: loopgrad train --data digits, whole process wall time; "
              "first step: import + one training step)")
        for what, seconds in compile_times(args.dtype).items():
            print(f"  {what:58} {seconds:6.2f} s  {targets.get(what, '')}")
        return 0
    rows = run(args.dtype, args.quick)
    print(table(rows, args.dtype))
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}")
    return 0


def register(sub):
    b = sub.add_parser("bench", help="compact benchmark: GFLOP/s and ratios vs NumPy (and PyTorch) in one run",
                       description="Times the dense kernels and fused training steps against NumPy's BLAS and, "
                                   "where installed, PyTorch, in the same process, and prints a table; "
                                   "the full suite is 'pytest bench/ --benchmark-only'.")
    b.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    b.add_argument("--quick", action="store_true", help="only the smaller sizes")
    b.add_argument("--plot", metavar="PNG", default="bench.png", help="ratio-vs-size plot (default bench.png)")
    b.add_argument("--fresh", action="store_true",
                   help="instead: training steps of every runtime (loops on 2 and 1 threads, NumPy, PyTorch, JAX jit) "
                        "in several fresh processes each, in --dtype: median, spread, share of the BLAS peak")
    b.add_argument("--dp", action="store_true",
                   help="instead: DP-SGD's step over the plain SGD step (784-128-64-10, batch 64), alternating the "
                        "two in each of several fresh processes")
    b.add_argument("--processes", type=int, default=5,
                   help="fresh processes per runtime with --fresh or --dp (default 5)")
    b.add_argument("--compile-time", action="store_true",
                   help="instead: time the main job and the first training step in new processes, cold and warm "
                        "kernel cache")
    b.set_defaults(func=_cmd_bench)

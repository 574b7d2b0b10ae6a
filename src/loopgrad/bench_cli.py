"""``loopgrad bench``: a compact benchmark in one process, ratios measured in the same run.

Runtimes take turns (numba, then OpenBLAS, then PyTorch where installed), each with its own
threads, so they do not fight over the two cores.
"""
import time

import numpy as np

SIZES = [(32, 784, 128), (256, 784, 256), (1024, 1024, 1024)]
STEPS = [([784, 128, 64, 10], 32), ([784, 128, 64, 10], 128), ([784, 128, 64, 10], 1024), ([64, 64, 10], 32)]


def _median_seconds(fn, budget=0.3, min_runs=5):
    fn()
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


def _dense_cases():
    """The three products of a dense layer, for ``loopgrad bench`` and ``bench/`` alike:
    name -> (loops, numpy, torch, output shape, terms per sum). ``loops`` and ``numpy`` take
    (A, W, b, dZ, out, scratch) and write ``out``; ``scratch`` (n_in * n_out) is allocated by
    the caller, outside the timed call; ``torch`` takes (torch, A, W, b, dZ) tensors."""
    from .kernels.dense import _dense_act_forward_into, _input_grad_act_into, _weight_grad_into

    return {
        "forward": (lambda A, W, b, dZ, out, s: _dense_act_forward_into(A, W, b, -1, out, out, s),
                    lambda A, W, b, dZ, out, s: np.add(np.matmul(A, W, out=out), b, out=out),
                    lambda t, A, W, b, dZ: t.addmm(b, A, W), lambda m, i, o: (m, o), lambda m, i, o: i),
        "dW": (lambda A, W, b, dZ, out, s: _weight_grad_into(A, dZ, out),
               lambda A, W, b, dZ, out, s: np.divide(np.matmul(A.T, dZ, out=out), A.shape[0], out=out),
               lambda t, A, W, b, dZ: (A.T @ dZ) / A.shape[0], lambda m, i, o: (i, o), lambda m, i, o: m),
        "dA_prev": (lambda A, W, b, dZ, out, s: _input_grad_act_into(dZ, W, -1, A, A, out),
                    lambda A, W, b, dZ, out, s: np.matmul(dZ, W.T, out=out),
                    lambda t, A, W, b, dZ: dZ @ W.T, lambda m, i, o: (m, i), lambda m, i, o: o),
    }


def run(dtype="float32", quick=False):
    torch = _torch()
    rng = np.random.default_rng(0)
    rows = []
    cases = _dense_cases()
    for m, n_in, n_out in SIZES[:2] if quick else SIZES:
        A = rng.standard_normal((m, n_in)).astype(dtype)
        W = rng.standard_normal((n_in, n_out)).astype(dtype)
        b = rng.standard_normal(n_out).astype(dtype)
        dZ = rng.standard_normal((m, n_out)).astype(dtype)
        scratch = np.empty(n_in * n_out, dtype)
        flop = 2.0 * m * n_in * n_out
        for name, (loops, numpy, tfn, out_shape, _) in cases.items():
            out = np.empty(out_shape(m, n_in, n_out), dtype)
            t_l = _median_seconds(lambda: loops(A, W, b, dZ, out, scratch))
            t_n = _median_seconds(lambda: numpy(A, W, b, dZ, out, scratch))
            t_t = None
            if torch is not None:
                args = [torch.from_numpy(x) for x in (A, W, b, dZ)]
                t_t = _median_seconds(lambda: tfn(torch, *args))
            rows.append((f"dense {name}", f"{m}x{n_in}x{n_out}", flop / t_l / 1e9, t_n / t_l,
                         None if t_t is None else t_t / t_l, flop))
    rows += _steps(dtype, torch, quick)
    return rows


def _steps(dtype, torch, quick):
    from . import layout
    from .kernels import network as loop_network
    from .model import MLP
    from .optim import SGD
    from .reference import network as numpy_network
    from .tables import LOSS_CODE

    rng = np.random.default_rng(1)
    rows = []
    for sizes, m in STEPS[::3] if quick else STEPS:
        model = MLP(sizes, dtype=dtype)
        X = rng.standard_normal((m, sizes[0])).astype(dtype)
        y = rng.integers(0, sizes[-1], m)
        Y = model._targets(y, m)
        opt = SGD(0.01)
        args = (np.empty_like(model.theta), model.layers, X, Y, LOSS_CODE["cross_entropy"],
                np.empty(layout.work_size(model.layers, m), dtype), opt.code,
                np.zeros((2, model.theta.size), dtype), opt.hyper(1), layout.decay_mask(model.layers, dtype),
                opt.noise(0, dtype))
        theta = model.theta.copy()
        t_l = _median_seconds(lambda: loop_network.train_step_into(theta, *args))
        t_n = _median_seconds(lambda: numpy_network.train_step_into(theta, *args))
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
        flop = 6.0 * m * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def compile_times(dtype="float32"):
    """Seconds from a new process's start of ``import loopgrad`` to its first training step done:
    once with an empty kernel cache (cold compile), once more with the cache that run left (warm)."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        code = _FIRST_STEP.format(dtype=dtype)
        return [float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                     check=True).stdout.split()[-1]) for _ in range(2)]


def _cmd_bench(args):
    if args.compile_time:
        cold, warm = compile_times(args.dtype)
        print(f"import + first training step in a new process ({args.dtype}): cold cache {cold:.1f} s "
              f"(compiles every kernel it needs), warm cache {warm:.2f} s")
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
    b.add_argument("--compile-time", action="store_true",
                   help="instead: time import + first training step in new processes, cold and warm kernel cache")
    b.set_defaults(func=_cmd_bench)

"""The ``loopgrad`` command: check, train, predict, bench, explain."""
import argparse
import sys
import time

EPILOG = "Run 'loopgrad COMMAND --help' for the options of each command."


def _cmd_check(args):
    from .twins import CASES, IMPLEMENTATIONS, applies, compare

    for m, name in ((args.m, "--m"), (args.n_in, "--n-in"), (args.n_out, "--n-out")):
        if m < 1:
            raise ValueError(f"{name}: expected a size >= 1, got {m}")
    shapes = [(1, 1, 1), (args.m, args.n_in, args.n_out)]
    print(f"{'implementation':9} {'kernel':34} {'eq':8} {'dtype':7} {'shapes (m, n_in, n_out)':24} "
          f"{'max |diff|':>10} {'tol':>9}  ok")
    failed = total = 0
    for impl in IMPLEMENTATIONS:
        for name, case in CASES.items():
            if not applies(name, impl):
                continue
            for dtype in ("float32", "float64"):
                for layout in ("C", "strided"):
                    for m, n_in, n_out in shapes:
                        diff, tol, _ = compare(name, m, n_in, n_out, dtype, layout, seed=args.seed, impl=impl)
                        ok = diff <= tol
                        failed += not ok
                        total += 1
                        if layout == "C" or not ok:
                            print(f"{impl:9} {name:34} {case.equation:8} {dtype:7} {str((m, n_in, n_out)):24} "
                                  f"{diff:10.2e} {tol:9.1e}  {'ok' if ok else 'FAIL'}")
    print(f"{total - failed} of {total} comparisons within tolerance (tuned, textbook and column-convention loops "
          f"against their NumPy twins; C-ordered and strided inputs; tol = 4 eps n_terms magnitude)")
    return 1 if failed else 0


def _print_compile_note(model, batch_size, backend):
    from . import tiers

    note = tiers.describe(model.dtype.name) if backend == "loops" else None
    if note:
        print(note, flush=True)
        return
    print(f"Preparing compiled kernels for {model.dtype.name} (compiled on first use: 20-60 s by CPU; "
          f"loaded from the disk cache afterwards)...", flush=True)
    seconds = model.warmup(batch_size, backend)
    print(f"  kernels ready in {seconds:.1f} s", flush=True)


def _cmd_train(args):
    from . import datasets
    from .optim import SGD, Adam

    t0 = time.perf_counter()
    data = datasets.load(args.data, seed=args.seed, dtype=args.dtype)
    model = datasets.model_for(data, hidden=args.hidden, activation=args.activation, dtype=args.dtype,
                               seed=args.seed)
    if args.optimizer == "adam":
        opt = Adam(args.lr, weight_decay=args.weight_decay)
    else:
        opt = SGD(args.lr, momentum=args.momentum, nesterov=args.momentum > 0, weight_decay=args.weight_decay)
    print(f"{model!r}: {model.n_params} parameters; {data.name}: {data.X_train.shape[0]} train / "
          f"{data.X_test.shape[0]} test rows; {opt!r}")
    _print_compile_note(model, args.batch_size, args.backend)
    history = model.fit(data.X_train, data.y_train, epochs=args.epochs, batch_size=args.batch_size, optimizer=opt,
                        seed=args.seed, validation_split=args.validation_split, progress=not args.quiet,
                        backend=args.backend)
    score = model.score(data.X_test, data.y_test)
    wall = time.perf_counter() - t0
    failed = []
    if args.save:
        try:
            model.save(args.save)
            print(f"saved {args.save}")
        except OSError as e:
            rescue = _rescue_save(model)
            failed.append(f"--save {args.save}: {e.strerror or e}; the trained model was saved to {rescue} instead")
    if args.plot:
        from .plots import plot_history
        try:
            plot_history(history, args.plot, title=f"{data.name}: {model.sizes} {model.hidden}")
            print(f"wrote {args.plot}")
        except OSError as e:
            failed.append(f"--plot {args.plot}: {e.strerror or e}")
    what = "test accuracy" if data.task == "classification" else "test R^2"
    shown = f"{100 * score:.2f}%" if data.task == "classification" else f"{score:.4f}"
    final = f"final train loss {history.loss[-1]:.4f}" if history.loss else "untrained: --epochs 0"
    print(f"{what} {shown} on {data.name} after {history.epochs} epochs "
          f"({final}); wall time {wall:.1f} s, training {history.seconds:.2f} s")
    for message in failed:
        print(f"loopgrad train: error: {message}", file=sys.stderr)
    return 2 if failed else 0


def _rescue_save(model):
    """Where a trained model goes when --save cannot write: a new file in the temporary folder."""
    import os
    import tempfile

    fd, path = tempfile.mkstemp(prefix="loopgrad-model-", suffix=".npz")
    os.close(fd)
    model.save(path)
    return path


def _cmd_warmup(args):
    from . import tiers

    for dtype in args.dtype:
        seconds = tiers.warmup(dtype, wait=not args.if_free)
        if seconds is None:
            print(f"{dtype}: another warm-up is compiling these kernels now; skipped")
        else:
            print(f"{dtype}: tuned kernels ready in {seconds:.1f} s (numba's disk cache)")
    return 0


def _cmd_predict(args):
    from . import datasets
    from .model import MLP

    model = MLP.load(args.model)
    data = datasets.load(args.data, seed=args.seed, dtype=model.dtype.name)
    if data.n_features != model.sizes[0]:
        raise ValueError(f"{args.model}: the model expects {model.sizes[0]} features, "
                         f"data set {data.name!r} has {data.n_features}")
    if model.is_classifier != (data.task == "classification"):
        kind = "classifier" if model.is_classifier else "regression model"
        raise ValueError(f"{args.model}: a {kind} ({model.output} output) cannot be scored on {data.name!r}, "
                         f"a {data.task} data set")
    n_out = 2 if model.output == "sigmoid" and model.sizes[-1] == 1 else model.sizes[-1]
    if model.is_classifier and n_out != data.n_classes:
        raise ValueError(f"{args.model}: the model has {n_out} classes, data set {data.name!r} has "
                         f"{data.n_classes}")
    score = model.score(data.X_test, data.y_test)
    if data.task == "classification":
        print(f"{args.model}: test accuracy {100 * score:.2f}% on {data.name} ({data.X_test.shape[0]} rows)")
    else:
        print(f"{args.model}: test R^2 {score:.4f} on {data.name} ({data.X_test.shape[0]} rows)")
    return 0


def build_parser():
    from .datasets import NAMES
    from .tables import ACTIVATIONS

    p = argparse.ArgumentParser(prog="loopgrad", epilog=EPILOG,
                                description="Train and inspect MLPs whose backpropagation is written as "
                                            "compiled index loops, each held against a NumPy twin.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser("check", help="run every loop kernel against its NumPy twin and print a table",
                       description="Runs every kernel of loopgrad.kernels against its twin in loopgrad.reference "
                                   "on random data, float32 and float64, and prints kernel, equation, shapes, "
                                   "max abs diff, tolerance and ok. Exit status 1 if any row fails.")
    c.add_argument("--m", type=int, default=64, help="batch rows (default 64)")
    c.add_argument("--n-in", type=int, default=50, help="input width (default 50)")
    c.add_argument("--n-out", type=int, default=10, help="output width (default 10)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=_cmd_check)

    t = sub.add_parser("train", help="train an MLP on a data set that ships with scikit-learn",
                       description="Train on a real data set with a fixed-seed train/test split, print progress "
                                   "and the test score, optionally save the model and plot loss curves.")
    t.add_argument("--data", choices=NAMES, default="digits", help="data set (default digits)")
    t.add_argument("--hidden", type=int, nargs="+", default=[64], help="hidden layer widths (default 64)")
    t.add_argument("--activation", choices=ACTIVATIONS, default="relu", help="hidden activation (default relu)")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    t.add_argument("--lr", type=float, default=2e-3, help="learning rate (default 2e-3)")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9, Nesterov)")
    t.add_argument("--weight-decay", type=float, default=1e-3, help="L2 on weights (default 1e-3)")
    t.add_argument("--validation-split", type=float, default=0.1, help="fraction held out for validation curves")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    t.add_argument("--backend", choices=("loops", "numpy"), default="loops")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save", metavar="PATH", help="write the trained model to PATH (.npz)")
    t.add_argument("--plot", metavar="PNG", help="write training/validation loss curves to PNG")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    r = sub.add_parser("predict", help="score a saved model on a data set's test split",
                       description="Load a model written by 'loopgrad train --save' and report its test accuracy "
                                   "(or R^2) on the same fixed-seed split.")
    r.add_argument("model", help="path of the .npz model file")
    r.add_argument("--data", choices=NAMES, default="digits")
    r.add_argument("--seed", type=int, default=0, help="split seed used at training (default 0)")
    r.set_defaults(func=_cmd_predict)

    w = sub.add_parser("warmup", help="compile the tuned loop kernels into numba's disk cache now",
                       description="Compile (or load) the tuned kernels that fit, predict and gradients run, "
                                   "for each dtype, into numba's disk cache, so that no later run waits for them "
                                   "(for deployments; a cold 'loopgrad train' starts one in the background).")
    w.add_argument("--dtype", nargs="+", choices=("float32", "float64"), default=["float32", "float64"])
    w.add_argument("--if-free", action="store_true", help="skip a dtype that another warm-up is compiling now")
    w.set_defaults(func=_cmd_warmup)

    from . import bench_cli, explain
    bench_cli.register(sub)
    explain.register(sub)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as e:
        print(f"loopgrad {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The ``loopgrad`` command: check, train, predict, bench, explain."""
import argparse
import os
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

    if backend == "loops" and tiers.aot_backend(model.dtype.name, model.n_params) is not None:
        return  # the ahead-of-time module: nothing to compile or load from numba's cache
    note = tiers.describe(model.dtype.name, model.n_params) if backend == "loops" else None
    if note:
        print(note, flush=True)
        return
    print(f"Preparing compiled kernels for {model.dtype.name} (compiled on first use: 20-60 s by CPU; "
          f"loaded from the disk cache afterwards)...", flush=True)
    seconds = model.warmup(batch_size, backend)
    print(f"  kernels ready in {seconds:.1f} s", flush=True)


class _Prepared:
    """What a training run needs, from a built-in set or a user's file: standardised splits, the
    raw training rows (for their fingerprints) and what the model file should record."""

    def __init__(self, name, task, X_train, y_train, X_test, y_test, raw_train, meta, classes=None):
        self.name, self.task = name, task
        self.X_train, self.y_train, self.X_test, self.y_test = X_train, y_train, X_test, y_test
        self.raw_train, self.meta, self.classes = raw_train, meta, classes


def _builtin_data(args):
    from . import datasets

    data = datasets.load(args.data, seed=args.seed, dtype=args.dtype)
    meta = {"data": args.data, "feature_names": None, "input_mean": None, "input_scale": None}
    if data.task == "regression":
        meta.update(target_mean=[data.y_mean], target_scale=[data.y_scale])
    return _Prepared(data.name, data.task, data.X_train, data.y_train, data.X_test, data.y_test, data.raw_train, meta)


def _file_data(args):
    import numpy as np

    from . import datasets, tabular
    from .model import infer_task

    path = args.csv or args.input
    table = tabular.read_table(path, target=args.target)
    if table.y is None:
        raise ValueError(f"--target: name the column of {path} to predict (one of {table.feature_names})")
    task = infer_task(table.y) if args.task == "auto" else args.task
    if task == "regression" and np.asarray(table.y).dtype.kind not in "iuf":
        raise ValueError(f"--task regression: the target column {table.target!r} holds non-numeric values "
                         f"such as {np.asarray(table.y)[0]!r}")
    if args.validation:
        held = tabular.read_table(args.validation, target=table.target, features=table.feature_names)
        if held.y is None:
            raise ValueError(f"--validation {args.validation}: expected the target column {table.target!r}")
        X_tr, y_tr, X_te, y_te = table.X, table.y, held.X, held.y
        split = {"test": "file", "test_file": os.path.basename(args.validation), "test_fingerprint": held.fingerprint}
    else:
        tr, te = datasets.split(table.y, args.test_fraction, args.seed, stratify=task == "classification")
        if tr.size < 2 or te.size < 1:
            raise ValueError(f"--test-fraction {args.test_fraction}: {table.X.shape[0]} rows leave {tr.size} to train "
                             f"and {te.size} to test; expected at least 2 and 1")
        X_tr, y_tr, X_te, y_te = table.X[tr], table.y[tr], table.X[te], table.y[te]
        split = {"test": "split", "test_fraction": args.test_fraction}
    mean, scale = tabular.standardiser(X_tr)
    meta = {"data": os.path.basename(path), "data_fingerprint": table.fingerprint, "split_seed": args.seed, **split,
            "target": table.target, "feature_names": table.feature_names,
            "input_mean": mean.tolist(), "input_scale": scale.tolist()}
    classes = None
    if task == "regression":
        y_tr, y_te = np.asarray(y_tr, np.float64), np.asarray(y_te, np.float64)
        y_mean, y_scale = float(y_tr.mean()), float(y_tr.std()) or 1.0
        meta.update(target_mean=[y_mean], target_scale=[y_scale])
        y_tr, y_te = (y_tr - y_mean) / y_scale, (y_te - y_mean) / y_scale
    else:
        classes = np.unique(table.y if args.validation is None else np.concatenate([y_tr, y_te]))
    raw_train = X_tr
    X_tr, X_te = ((a - mean) / scale for a in (X_tr, X_te))
    return _Prepared(os.path.basename(path), task, X_tr.astype(args.dtype), y_tr, X_te.astype(args.dtype), y_te,
                     raw_train, meta, classes)


def _optimizer(args):
    from .optim import DPSGD, SGD, Adam

    if args.dp_noise is not None or args.dp_clip is not None:
        if args.optimizer == "adam" and args.optimizer_given:
            raise ValueError("--dp-noise/--dp-clip train with DP-SGD; --optimizer adam cannot be combined with them")
        return DPSGD(args.lr if args.lr is not None else 0.1, clip_norm=args.dp_clip if args.dp_clip is not None else 1.0,
                     noise_multiplier=args.dp_noise if args.dp_noise is not None else 1.0, seed=args.seed,
                     momentum=args.momentum if args.momentum_given else 0.0, weight_decay=args.weight_decay,
                     poisson=args.dp_poisson, delta=args.dp_delta, target_epsilon=args.dp_target_epsilon,
                     secure=args.dp_secure)
    lr = args.lr if args.lr is not None else 2e-3
    if args.optimizer == "adam":
        return Adam(lr, weight_decay=args.weight_decay)
    return SGD(lr, momentum=args.momentum, nesterov=args.momentum > 0, weight_decay=args.weight_decay)


def _cmd_train(args):
    import contextlib
    import json

    import numpy as np

    from . import __version__
    from .model import MLP

    t0 = time.perf_counter()
    args.optimizer_given = args.optimizer is not None
    args.optimizer = args.optimizer or "adam"
    args.momentum_given = args.momentum is not None
    args.momentum = 0.9 if args.momentum is None else args.momentum
    # with --json, stdout carries only the result: everything else goes to stderr
    say = sys.stderr if args.json else sys.stdout
    if args.csv is None and args.input is None and (args.target or args.validation):
        raise ValueError("--target/--validation: these name a column and a file of your own data; add --csv FILE")
    prepared = _file_data(args) if (args.csv or args.input) else _builtin_data(args)
    model = _model_for(prepared, args)
    opt = _optimizer(args)
    print(f"{model!r}: {model.n_params} parameters; {prepared.name}: {prepared.X_train.shape[0]} train / "
          f"{prepared.X_test.shape[0]} test rows ({prepared.task}); {opt!r}", file=say)
    with contextlib.redirect_stdout(say):
        _print_compile_note(model, args.batch_size, args.backend)
    progress = False if args.quiet else ("bar" if say.isatty() else "lines")
    with contextlib.redirect_stdout(say):
        history = model.fit(prepared.X_train, prepared.y_train, epochs=args.epochs, batch_size=args.batch_size,
                            optimizer=opt, seed=args.seed, validation_split=args.validation_split, progress=progress,
                            backend=args.backend, early_stopping=args.early_stopping, patience=args.patience)
    from .tabular import confusion_matrix, format_confusion, row_fingerprints

    model.metadata = {**prepared.meta, "task": prepared.task, "package_version": __version__,
                      "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "training": _training_config(args, opt, history), "split_seed": args.seed}
    model.training_rows = np.unique(row_fingerprints(prepared.raw_train))
    result = {"data": prepared.name, "task": prepared.task, "rows": {"train": int(prepared.X_train.shape[0]),
              "test": int(prepared.X_test.shape[0])}, "model": {"sizes": model.sizes, "activations": model.activations,
              "dtype": model.dtype.name, "parameters": model.n_params},
              "optimizer": repr(opt), "epochs": history.epochs, "best_epoch": history.best_epoch + 1,
              "stopped_early": history.stopped_early, "history": history.to_dict()}
    if prepared.task == "classification":
        score = model.score(prepared.X_test, prepared.y_test)
        labels = model.classes if model.classes is not None else np.arange(model.n_classes)
        counts = confusion_matrix(prepared.y_test, model.predict(prepared.X_test), labels)
        result["test"] = {"accuracy": score, "confusion_matrix": {"labels": np.asarray(labels).tolist(),
                                                                  "counts": counts.tolist()}}
    else:
        score = model.score(prepared.X_test, prepared.y_test)
        result["test"] = {"r2": score}
    if history.epsilon:
        result["privacy"] = {"epsilon": history.epsilon[-1][0], "delta": history.epsilon[-1][1],
                             "accounting": opt.accounting}
    failed = []
    if args.save:
        try:
            model.save(args.save)
            print(f"saved {args.save}", file=say)
            result["saved"] = args.save
        except OSError as e:
            rescue = _rescue_save(model)
            failed.append(f"--save {args.save}: {e.strerror or e}; the trained model was saved to {rescue} instead")
            result["saved"] = rescue
    if args.plot:
        try:
            history.plot(args.plot, title=f"{prepared.name}: {model.sizes} {model.hidden}")
            print(f"wrote {args.plot}", file=say)
        except (OSError, ImportError) as e:
            failed.append(f"--plot {args.plot}: {getattr(e, 'strerror', None) or e}")
    wall = time.perf_counter() - t0
    result["wall_seconds"], result["train_seconds"] = wall, history.seconds
    what = "test accuracy" if prepared.task == "classification" else "test R^2"
    shown = f"{100 * score:.2f}%" if prepared.task == "classification" else f"{score:.4f}"
    final = f"final train loss {history.loss[-1]:.4f}" if history.loss else "untrained: --epochs 0"
    val = ""
    if history.val_accuracy:
        val = f", validation accuracy {100 * history.val_accuracy[history.best_epoch]:.2f}%"
    elif history.val_r2:
        val = f", validation R^2 {history.val_r2[history.best_epoch]:.4f}"
    if prepared.task == "classification":
        print(format_confusion(counts, labels), file=say)
    if history.epsilon:
        eps, delta = history.epsilon[-1]
        print(f"privacy: ({eps:.3g}, {delta:g})-DP for the {opt.steps} steps taken ({opt.accounting})", file=say)
    stop = f", stopped early (best epoch {history.best_epoch + 1} restored)" if history.stopped_early else ""
    print(f"{what} {shown} on {prepared.name} after {history.epochs} epochs ({final}{val}{stop}); "
          f"wall time {wall:.1f} s, training {history.seconds:.2f} s", file=say)
    for message in failed:
        print(f"loopgrad train: error: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, default=_json_default))
    return 2 if failed else 0


def _json_default(value):
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _model_for(prepared, args):
    """One sigmoid unit for two classes, softmax over more, identity outputs for regression."""
    import numpy as np

    from .model import MLP

    if prepared.task == "regression":
        out, n_out = "identity", 1 if np.ndim(prepared.y_train) == 1 else prepared.y_train.shape[1]
    else:
        n_classes = (prepared.classes.size if prepared.classes is not None
                     else int(max(np.max(prepared.y_train), np.max(prepared.y_test))) + 1)
        out, n_out = ("sigmoid", 1) if n_classes == 2 else ("softmax", n_classes)
    activation = args.activation if len(args.activation) > 1 else args.activation[0]
    model = MLP([prepared.X_train.shape[1], *args.hidden, n_out], hidden=activation, output=out, dtype=args.dtype,
                seed=args.seed)
    model.classes = prepared.classes
    return model


def _training_config(args, opt, history):
    config = {k: getattr(args, k) for k in ("hidden", "activation", "epochs", "batch_size", "optimizer", "lr",
                                            "momentum", "weight_decay", "validation_split", "early_stopping",
                                            "patience", "dtype", "backend", "seed")}
    config.update(optimizer_repr=repr(opt), epochs_run=history.epochs, best_epoch=history.best_epoch + 1)
    if history.epsilon:
        config.update(dp_epsilon=history.epsilon[-1][0], dp_delta=history.epsilon[-1][1])
    return config


def _rescue_save(model):
    """Where a trained model goes when --save cannot write: a new file in the temporary folder."""
    import tempfile

    fd, path = tempfile.mkstemp(prefix="loopgrad-model-", suffix=".npz")
    os.close(fd)
    model.save(path)
    return path


def _cmd_warmup(args):
    from . import tiers

    if args.nice:
        os.nice(args.nice)
    for dtype in args.dtype:
        seconds = tiers.warmup(dtype, wait=not args.if_free)
        if seconds is None:
            print(f"{dtype}: another warm-up is compiling these kernels now; skipped")
        else:
            print(f"{dtype}: tuned kernels ready in {seconds:.1f} s (numba's disk cache)", flush=True)
        if args.no_aot or not tiers.aot_enabled():
            continue
        done = tiers.build_aot(dtype, wait=not args.if_free)
        if done is None:
            print(f"{dtype}: another warm-up is building the ahead-of-time module now; skipped")
        elif done[1] is None:
            print(f"{dtype}: the ahead-of-time module could not be built (numba's pycc needs a C compiler, "
                  f"Python's headers and setuptools); small networks load the tuned kernels through numba instead")
        else:
            print(f"{dtype}: ahead-of-time module for small networks ready in {done[0]:.1f} s ({done[1]})")
    return 0


def _cmd_predict(args):
    import json

    import numpy as np

    from . import tabular
    from .model import MLP

    model = MLP.load(args.model)
    say = sys.stderr if args.json or (args.input and not args.output) else sys.stdout
    if args.input and args.data:
        raise ValueError("--input/--data: give one source of rows, a file of your own or a built-in set")
    if args.input:
        meta = model.metadata
        table = tabular.read_table(args.input, target=meta.get("target"), features=meta.get("feature_names"),
                                   target_optional=True)
        if table.ignored:
            print(f"loopgrad predict: warning: {args.input}: columns the model was not trained on are ignored: "
                  f"{table.ignored}", file=sys.stderr)
        X, y, raw, name = tabular.model_inputs(model, table), table.y, table.X, os.path.basename(args.input)
        if y is not None and not model.is_classifier:
            y = (np.asarray(y, np.float64) - meta["target_mean"][0]) / meta["target_scale"][0] \
                if meta.get("target_mean") else np.asarray(y, np.float64)
    else:
        X, y, raw, name = _builtin_rows(model, args)
    X = X.astype(model.dtype)
    result = {"model": args.model, "data": name, "rows": int(X.shape[0])}
    seen = tabular.seen_rows(model, raw)
    if seen.any():
        print(f"loopgrad predict: warning: {int(seen.sum())} of the {X.shape[0]} rows of {name} were used to train "
              f"this model; they are left out of the score", file=sys.stderr)
    result["training_rows"] = int(seen.sum())
    if y is not None:
        fresh = ~seen
        if not fresh.any():
            print(f"{args.model}: no score: every row of {name} was a training row of this model", file=say)
        else:
            score = model.score(X[fresh], np.asarray(y)[fresh])
            what = "accuracy" if model.is_classifier else "R^2"
            shown = f"{100 * score:.2f}%" if model.is_classifier else f"{score:.4f}"
            print(f"{args.model}: test {what} {shown} on {name} ({int(fresh.sum())} rows the model did not train "
                  f"on)", file=say)
            result["accuracy" if model.is_classifier else "r2"] = score
            result["scored_rows"] = int(fresh.sum())
    if args.output or args.input:
        _write_predictions(model, X, args)
        if args.output:
            print(f"wrote {X.shape[0]} predictions to {args.output}", file=say)
            result["output"] = args.output
    if args.json:
        print(json.dumps(result, default=_json_default))
    return 0


def _builtin_rows(model, args):
    """The test split of a built-in set, with the split seed the model was trained with unless
    --seed says otherwise (rows the model trained on are then left out of the score)."""
    from . import datasets

    meta = model.metadata
    name = args.data or meta.get("data") or "digits"
    if name not in datasets.NAMES:
        raise ValueError(f"--data: expected one of {', '.join(datasets.NAMES)}, got {name!r} (the model was trained on "
                         f"a file; score it with --input FILE)")
    seed = args.seed if args.seed is not None else meta.get("split_seed", 0)
    data = datasets.load(name, seed=seed, dtype=model.dtype.name)
    if data.n_features != model.sizes[0]:
        raise ValueError(f"{args.model}: the model expects {model.sizes[0]} features, "
                         f"data set {data.name!r} has {data.n_features}")
    if model.is_classifier != (data.task == "classification"):
        kind = "classifier" if model.is_classifier else "regression model"
        raise ValueError(f"{args.model}: a {kind} ({model.output} output) cannot be scored on {data.name!r}, "
                         f"a {data.task} data set")
    if model.is_classifier and model.n_classes != data.n_classes:
        raise ValueError(f"{args.model}: the model has {model.n_classes} classes, data set {data.name!r} has "
                         f"{data.n_classes}")
    return data.X_test, data.y_test, data.raw_test, f"{data.name} test split (seed {seed})"


def _write_predictions(model, X, args):
    """Predictions as CSV (to --output atomically, or to stdout): the label (or value) of each row
    and, with --proba, one probability column per class."""
    import csv
    import io as _io

    import numpy as np

    from . import io, tabular

    target = model.metadata.get("target") or "prediction"
    text = _io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if model.is_classifier:
        proba = model.predict_proba(X)
        labels = model.classes if model.classes is not None else np.arange(model.n_classes)
        index = proba.argmax(axis=1)
        predicted = np.asarray(labels)[index]
        header = [target] + ([f"p_{label}" for label in np.asarray(labels).tolist()] if args.proba else [])
        writer.writerow(header)
        for i in range(X.shape[0]):
            writer.writerow([predicted[i].item()] + ([f"{p:.6g}" for p in proba[i]] if args.proba else []))
    else:
        if args.proba:
            raise ValueError("--proba: a regression model predicts values, not class probabilities")
        values = tabular.targets_out(model, model.predict(X).astype(np.float64))
        values = values.reshape(X.shape[0], -1)
        writer.writerow([target] if values.shape[1] == 1 else [f"{target}_{k}" for k in range(values.shape[1])])
        for row in values:
            writer.writerow([f"{v:.9g}" for v in row])
    if args.output:
        io.atomic_write(args.output, lambda f: f.write(text.getvalue().encode()))
    else:
        sys.stdout.write(text.getvalue())


def _cmd_info(args):
    import json

    from .model import MLP

    model = MLP.load(args.model)
    if args.json:
        print(json.dumps({"sizes": model.sizes, "activations": model.activations, "output": model.output,
                          "dtype": model.dtype.name, "parameters": model.n_params,
                          "classes": None if model.classes is None else model.classes.tolist(),
                          "training_rows": 0 if model.training_rows is None else int(model.training_rows.size),
                          "metadata": model.metadata}, default=_json_default))
        return 0
    print(f"{args.model}: {model!r}")
    print(model.summary())
    meta = model.metadata
    if not meta:
        print("no metadata (saved from Python without it, or by loopgrad before format 2)")
    for key in ("data", "data_fingerprint", "task", "target", "split_seed", "test", "test_fraction", "test_file",
                "package_version", "created"):
        if meta.get(key) is not None:
            print(f"  {key}: {meta[key]}")
    names = meta.get("feature_names")
    if names:
        print(f"  features ({len(names)}): {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}")
    if meta.get("input_mean") is not None:
        print("  inputs are standardised with the training rows' mean and std (kept in the file)")
    if meta.get("target_mean") is not None:
        print(f"  target standardised: mean {meta['target_mean'][0]:.6g}, scale {meta['target_scale'][0]:.6g}")
    if meta.get("training"):
        print("  training: " + ", ".join(f"{k}={v}" for k, v in meta["training"].items()))
    if model.training_rows is not None:
        print(f"  fingerprints of the {model.training_rows.size} distinct training rows (predict leaves them out of "
              f"scores)")
    return 0


def _fraction(text):
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text}")
    return value


def build_parser():
    from .datasets import NAMES
    from .tables import HIDDEN_ACTIVATIONS as ACTIVATIONS

    from . import __version__

    p = argparse.ArgumentParser(prog="loopgrad", epilog=EPILOG,
                                description="Train and inspect MLPs whose backpropagation is written as "
                                            "compiled index loops, each held against a NumPy twin.")
    p.add_argument("--version", action="version", version=f"loopgrad {__version__}")
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

    t = sub.add_parser("train", help="train an MLP on your own CSV/array file or a built-in data set",
                       description="Train on your own table (--csv FILE --target COLUMN; .npz, .npy and Parquet "
                                   "with --input) or a built-in set (--data), with a fixed-seed held-out test split, "
                                   "print progress (a bar on a terminal, one line per epoch otherwise) and the test "
                                   "score, optionally save a self-describing model file and plot the curves.")
    source = t.add_mutually_exclusive_group()
    source.add_argument("--data", choices=NAMES, default="digits", help="built-in data set (default digits)")
    source.add_argument("--csv", metavar="FILE", help="your own CSV file with a header row")
    source.add_argument("--input", metavar="FILE", help="your own .csv, .npz (X, y), .npy or .parquet file")
    t.add_argument("--target", metavar="COLUMN", help="the column to predict (for .npy: its index)")
    t.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                   help="auto (default): classes when the target holds non-numbers or few distinct integers")
    t.add_argument("--validation", metavar="FILE", help="held-out rows from a file of the same columns "
                                                        "(instead of --test-fraction of the rows)")
    t.add_argument("--test-fraction", type=_fraction, default=0.2,
                   help="rows held out for the final test score (default 0.2, stratified by class)")
    t.add_argument("--hidden", type=int, nargs="+", default=[64], help="hidden layer widths (default 64)")
    t.add_argument("--activation", choices=ACTIVATIONS, nargs="+", default=["relu"],
                   help="hidden activation, or one per hidden layer (default relu)")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--optimizer", choices=("adam", "sgd"), default=None, help="adam (default) or sgd")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default 2e-3; 0.1 with DP-SGD)")
    t.add_argument("--momentum", type=float, default=None, help="SGD momentum (default 0.9, Nesterov; 0 with DP-SGD)")
    t.add_argument("--weight-decay", type=float, default=1e-3, help="L2 on weights (default 1e-3)")
    t.add_argument("--validation-split", type=float, default=0.1,
                   help="fraction of the training rows held out for validation curves and early stopping")
    t.add_argument("--early-stopping", action="store_true",
                   help="stop when the validation loss has not improved for --patience epochs; keep the best")
    t.add_argument("--patience", type=int, default=5)
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    t.add_argument("--backend", choices=("loops", "numpy"), default="loops")
    t.add_argument("--seed", type=int, default=0, help="initialisation, shuffling and split seed (default 0)")
    dp = t.add_argument_group("differential privacy (DP-SGD; any of these turns it on)")
    dp.add_argument("--dp-clip", type=float, metavar="C", help="per-example gradient norm bound (default 1.0)")
    dp.add_argument("--dp-noise", type=float, metavar="SIGMA", help="noise multiplier: std = SIGMA * C (default 1.0)")
    dp.add_argument("--dp-delta", type=float, default=1e-5, metavar="DELTA", help="delta of the reported epsilon")
    dp.add_argument("--dp-target-epsilon", type=float, metavar="EPS", help="stop before epsilon would pass EPS")
    dp.add_argument("--dp-poisson", action="store_true",
                    help="Poisson sampling of each batch (what the accountant assumes) instead of shuffled batches")
    dp.add_argument("--dp-secure", action="store_true",
                    help="noise from the operating system's CSPRNG (slower; for releases)")
    t.add_argument("--save", metavar="PATH", help="write the trained model to PATH (.npz)")
    t.add_argument("--plot", metavar="PNG", help="write loss and accuracy (or R^2) curves to PNG")
    t.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout "
                                                       "(everything else goes to stderr)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    t.set_defaults(func=_cmd_train)

    r = sub.add_parser("predict", help="predict with a saved model: a file of predictions, and a score",
                       description="Load a model written by 'loopgrad train --save', read rows from --input (the "
                                   "feature columns by name, standardised as at training) and write predictions "
                                   "to --output (stdout without it). Where the rows carry the target, print the "
                                   "score over the rows the model did not train on. Without --input, score the "
                                   "built-in set's test split, made with the model's own split seed.")
    r.add_argument("model", help="path of the .npz model file")
    r.add_argument("--input", metavar="FILE", help="rows to predict: .csv, .npz, .npy or .parquet")
    r.add_argument("--output", metavar="CSV", help="write predictions here (CSV)")
    r.add_argument("--proba", action="store_true", help="add one probability column per class")
    r.add_argument("--data", choices=NAMES, help="a built-in set's test split (default: the model's own data)")
    r.add_argument("--seed", type=int, default=None, help="split seed (default: the one the model was trained with)")
    r.add_argument("--json", action="store_true", help="print the result as one JSON object")
    r.set_defaults(func=_cmd_predict)

    i = sub.add_parser("info", help="print what a model file describes",
                       description="Architecture, classes, features, scaling, training configuration, data "
                                   "fingerprint and versions recorded in a model file.")
    i.add_argument("model", help="path of the .npz model file")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_info)

    w = sub.add_parser("warmup", help="compile the tuned loop kernels into numba's disk cache now",
                       description="Compile (or load) the tuned kernels that fit, predict and gradients run, "
                                   "for each dtype, into numba's disk cache, so that no later run waits for them "
                                   "(for deployments; a cold 'loopgrad train' starts one in the background). Then "
                                   "build the same kernels, serial, as an extension module that small networks run on "
                                   "without loading numba (a C compiler is needed).")
    w.add_argument("--no-aot", action="store_true", help="only numba's cache, no ahead-of-time module")
    w.add_argument("--dtype", nargs="+", choices=("float32", "float64"), default=["float32", "float64"])
    w.add_argument("--if-free", action="store_true", help="skip a dtype that another warm-up is compiling now")
    w.add_argument("--nice", type=int, default=0, metavar="N",
                   help="lower this process's priority by N first (a cold run's background warm-up uses 10)")
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
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError, ImportError) as e:
        print(f"loopgrad {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

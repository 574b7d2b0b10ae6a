"""Data-parallel training and gradients on Dask (optional extra: ``pip install loopgrad[dask]``).

Two modes of ``fit_distributed``:

* Local SGD with model averaging (``batch_size=`` given; McMahan et al. 2017, Zinkevich et al.
  2010). The row chunks are persisted on the workers once. Each round broadcasts the parameters;
  every chunk trains its own copy for ``sync_every`` local epochs of mini-batches through the fused
  compiled epoch (its rows shuffled with its own seed); the driver averages the returned parameters
  weighted by the chunks' rows, in chunk order (so the same seed and cluster shape give the same
  parameters, bit for bit). Optimizer state is local and starts from zero every round (for plain
  SGD this is exactly FedAvg; momentum and Adam's moments warm up again within each round).
* Full-batch gradient descent (``batch_size=None``): each epoch sums the exact gradients of all
  chunks (``gradients``) and takes one step on the driver. Fewer, more exact steps: use it for
  small data or to check against ``MLP.fit`` with one batch.

The cost and its gradients are means over examples (``J = (1/m) sum_i L(i)``, B2, B3), so for
``gradients`` each task runs loopgrad's loop kernels on one row chunk and returns the
*un-normalised* sums ``(m_c J_c, m_c grad_c, m_c)``; a tree reduction adds them and the driver
divides by the total ``m``. Uneven chunks are weighted correctly because every chunk reports its
own ``m_c``. Dask moves data, schedules tasks and recomputes what a lost worker held; loopgrad
does all the arithmetic.
"""
import copy
import hashlib
import time

import numpy as np

from . import _checks, layout
from .kernels.optim import optimizer_update
from .model import History, _Watch
from .optim import DPSGD
from .optim import get as _get_optimizer


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("loopgrad.distributed needs dask: pip install 'loopgrad[dask]'") from e
    return dask, da


def _chunk_sums(spec, theta, X, Y):
    """Loop kernels on one chunk: (m_c * J_c, m_c * grad_c, m_c); an empty chunk adds nothing."""
    m = len(X)
    if m == 0:
        return 0.0, np.zeros_like(theta), 0
    J, grad = _rebuild(spec, theta).gradient_block(X, Y)
    return float(J) * m, grad * m, m


def _add(a, b):
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def _row_blocks(X, Y):
    dask, da = _dask()
    if not isinstance(X, da.Array) or not isinstance(Y, da.Array):
        raise TypeError(f"X, Y: expected dask.array.Array chunked along rows, got {type(X).__name__}, "
                        f"{type(Y).__name__}")
    if X.ndim != 2:
        raise ValueError(f"X: expected a 2-D dask array (m, n_0), got shape {X.shape}")
    for name, a in (("X", X), ("Y", Y)):
        if any(np.isnan(c) for c in a.chunks[0]):
            raise ValueError(f"{name}: the sizes of its row chunks are unknown (nan), as after boolean indexing; "
                             f"call {name}.compute_chunk_sizes() first")
    if X.shape[0] == 0:
        raise ValueError(f"X: expected at least one example (m >= 1), got an empty array with shape {X.shape}")
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"Y: expected {X.shape[0]} rows to match X, got {Y.shape[0]}")
    X = X.rechunk({1: -1})
    Y = Y.rechunk({0: X.chunks[0], **({1: -1} if Y.ndim == 2 else {})})
    xs = X.to_delayed().ravel()
    ys = Y.to_delayed().ravel()
    return dask, list(zip(xs, ys))


def _tree_sum(dask, parts):
    while len(parts) > 1:
        parts = [dask.delayed(_add)(parts[k], parts[k + 1]) if k + 1 < len(parts) else parts[k]
                 for k in range(0, len(parts), 2)]
    return parts[0]


def _graph(model, theta, X, Y):
    # the architecture and the parameters enter the graph once each as data (see _fit_local_sgd)
    dask, blocks = _row_blocks(X, Y)
    spec, theta = dask.delayed(_spec(model), pure=True), dask.delayed(theta, pure=True)
    return dask, _tree_sum(dask, [dask.delayed(_chunk_sums)(spec, theta, x, y) for x, y in blocks])


def _compute(dask, graph, client):
    """The value of a delayed object, or of a list or tuple of them (as a list), on the client if any."""
    if client is not None:
        return client.gather(client.compute(graph))
    return dask.compute(graph)[0]


def _finish(model, total):
    J_sum, grad_sum, m = total
    grad = grad_sum / model.dtype.type(m)
    return model.dtype.type(J_sum / m), grad


def gradients(model, X, Y, client=None):
    """``(J, [(dW1, db1), ...])`` of ``model`` over dask arrays X (m, n_0) and Y (labels or targets),
    equal to ``model.gradients`` on the gathered arrays; each chunk runs the loop kernels."""
    dask, graph = _graph(model, model.theta.copy(), X, Y)
    J, grad = _finish(model, _compute(dask, graph, client))
    return J, layout.param_views(grad, model.layers)


def fit_distributed(model, X, Y, epochs, optimizer=None, client=None, batch_size=None, sync_every=1, seed=None,
                    shuffle=True, validation_data=None, validation_split=0.0, early_stopping=False, patience=5,
                    tol=0.0, progress=False):
    """Train ``model`` on rows spread over Dask workers; returns a ``History`` (one entry per round).

    X (m, n_0), Y (labels or targets): dask arrays chunked along rows, or NumPy arrays (chunked here,
    one chunk per worker of ``client``, or per CPU without one). ``batch_size``: the local mini-batch
    of local SGD with model averaging; None runs full-batch gradient descent. ``sync_every``: local
    epochs per round (each chunk passes over its own rows that often between two averagings);
    ``epochs`` counts passes over the data, so there are ``ceil(epochs / sync_every)`` rounds.
    ``validation_data`` (NumPy, on the driver) or ``validation_split`` (a seeded random fraction of
    the rows, gathered to the driver and left out of training), ``early_stopping``/``patience``/``tol``
    and ``progress`` mean what they mean in ``MLP.fit``, per round. DP-SGD is refused: its privacy
    accounting assumes one sampler over all rows.
    """
    epochs = _checks.integer("epochs", epochs, 0)
    sync_every = _checks.integer("sync_every", sync_every, 1)
    patience = _checks.integer("patience", patience, 1)
    tol = _checks.number("tol", tol, 0.0)
    validation_split = _checks.number("validation_split", validation_split, 0.0, 1.0)
    opt = _get_optimizer(optimizer)
    if isinstance(opt, DPSGD):
        raise ValueError("optimizer: DPSGD is not supported by fit_distributed (its privacy accounting assumes one "
                         "sampler over all rows); use SGD or Adam")
    if batch_size is None:
        if validation_split or validation_data is not None or early_stopping:
            raise ValueError("validation_data/validation_split/early_stopping: available with local SGD; pass "
                             "batch_size= (full-batch mode has only its training loss)")
        return _fit_full_batch(model, X, Y, epochs, opt, client)
    batch_size = _checks.integer("batch_size", batch_size, 1)
    dask, da = _dask()
    X, Y = _as_dask(da, X, Y, client)
    rng = np.random.default_rng(model.seed if seed is None else seed)
    keep, val = None, None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data: expected a pair (X_val, y_val) of NumPy arrays")
        val = model.validate(*validation_data, arg="validation_data[0]", y_arg="validation_data[1]")
    elif validation_split > 0.0:
        n_val = int(round(validation_split * X.shape[0]))
        if n_val < 1 or n_val >= X.shape[0]:
            raise ValueError(f"validation_split: {validation_split} of {X.shape[0]} rows leaves an empty split")
        rows = np.sort(rng.choice(X.shape[0], n_val, replace=False))
        val = model.validate(*_compute(dask, (X[rows], Y[rows]), client), arg="X", y_arg="Y")
        mask = np.ones(X.shape[0], bool)
        mask[rows] = False
        keep = da.from_array(mask, chunks=(X.chunks[0],))
    if client is not None:
        X, Y = client.persist([X, Y])  # read from the source once; later rounds find the chunks on the workers
        if keep is not None:
            keep = client.persist(keep)
    _, blocks = _row_blocks(X, Y)
    masks = [None] * len(blocks) if keep is None else list(keep.to_delayed().ravel())
    return _fit_local_sgd(model, dask, blocks, masks, epochs, opt, client, batch_size, sync_every, rng, shuffle, val,
                          early_stopping, patience, tol, progress)


def _as_dask(da, X, Y, client):
    """NumPy inputs as dask arrays of one row chunk per worker (per CPU without a client)."""
    if isinstance(X, da.Array) and isinstance(Y, da.Array):
        return X, Y
    if isinstance(X, da.Array) or isinstance(Y, da.Array):
        raise TypeError(f"X, Y: expected both dask arrays or both NumPy arrays, got {type(X).__name__}, "
                        f"{type(Y).__name__}")
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim != 2:
        raise ValueError(f"X: expected a matrix (m, n_0), got shape {X.shape}")
    if Y.shape[:1] != X.shape[:1]:
        raise ValueError(f"Y: expected {X.shape[0]} rows to match X, got shape {Y.shape}")
    import os
    parts = len(client.scheduler_info()["workers"]) if client is not None else (os.cpu_count() or 1)
    chunk = max(1, -(-X.shape[0] // max(1, parts)))
    return da.from_array(X, chunks=(chunk, X.shape[1])), da.from_array(Y, chunks=(chunk,) + Y.shape[1:])


def _chunk_seed(seed, round_, chunk):
    """The shuffling seed of one chunk in one round: fixed by the run's seed, independent of workers."""
    digest = hashlib.blake2b(f"{seed}:{round_}:{chunk}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _spec(model):
    """What a worker needs to rebuild the architecture: sizes, activations, output, dtype, classes."""
    return model.sizes, model.activations[:-1], model.output, model.dtype.name, model.classes


def _rebuild(spec, theta):
    from .model import MLP

    sizes, hidden, output, dtype, classes = spec
    model = MLP(sizes, hidden=hidden if hidden else "relu", output=output, dtype=dtype, seed=None)
    model.theta[...] = theta
    model.classes = classes
    return model


def _local_round(spec, theta, X, Y, keep, epochs, batch_size, optimizer, seed, shuffle):
    """One chunk's part of a round: ``epochs`` local epochs of the fused compiled epoch from ``theta``,
    optimizer state from zero. Returns (theta_c, m_c, m_c * mean loss of its last local epoch, seconds
    of its own training), or None for a chunk without rows."""
    if keep is not None:
        X, Y = X[keep], Y[keep]
    m = len(X)
    if m == 0:
        return None
    local = _rebuild(spec, theta)
    t0 = time.perf_counter()
    history = local.fit(X, Y, epochs=epochs, batch_size=min(batch_size, m), optimizer=copy.deepcopy(optimizer),
                        shuffle=shuffle, seed=seed, progress=False)
    return local.theta, m, history.loss[-1] * m, time.perf_counter() - t0


def _average(model, results):
    """The row-weighted mean of the chunks' parameters, summed in chunk order in float64."""
    total = np.zeros(model.n_params, np.float64)
    rows, loss = 0, 0.0
    for r in results:
        if r is not None:
            total += r[0].astype(np.float64) * r[1]
            rows += r[1]
            loss += r[2]
    if rows == 0:
        raise ValueError("X: every chunk is empty (no rows left to train on)")
    return (total / rows).astype(model.dtype), loss / rows


def _fit_local_sgd(model, dask, blocks, masks, epochs, opt, client, batch_size, sync_every, rng, shuffle, val,
                   early_stopping, patience, tol, progress):
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    seed = int(rng.integers(2 ** 62))
    # The architecture and each round's parameters enter the graph as data (one key each, shared by
    # every task), not scattered: a scattered value dies with the worker that holds it, while a key
    # in the graph is sent again to whichever worker recomputes a lost task.
    spec = dask.delayed(_spec(model), pure=True)
    history = History()
    watch = _Watch(early_stopping, patience, tol, unit="rounds")
    start_theta = model.theta.copy()
    rounds = -(-epochs // sync_every)
    bar = tqdm(total=rounds, disable=not progress, unit="round", leave=True, dynamic_ncols=True)
    try:
        for r in range(rounds):
            local_epochs = min(sync_every, epochs - r * sync_every)
            t_round = time.perf_counter()
            theta = dask.delayed(model.theta.copy(), pure=True)
            tasks = [dask.delayed(_local_round)(spec, theta, x, y, k, local_epochs, batch_size, opt,
                                               _chunk_seed(seed, r, c), shuffle)
                     for c, ((x, y), k) in enumerate(zip(blocks, masks))]
            results = _compute(dask, tasks, client)
            new_theta, loss = _average(model, results)
            history.epoch_seconds.append(time.perf_counter() - t_round)
            history.compute_seconds.append(max((r[3] for r in results if r is not None), default=0.0))
            if not np.isfinite(loss) or not np.isfinite(new_theta).all():
                model.theta[...] = start_theta
                raise FloatingPointError(f"training diverged in round {r + 1} (loss {loss}); the parameters were "
                                         f"restored; lower the learning rate")
            model.theta[...] = new_theta
            stop = watch.record(model, history, r, float(loss), val)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", **({"val_loss": f"{history.val_loss[-1]:.4f}"} if val is not None
                                                   else {}))
            if stop:
                break
    finally:
        bar.close()
    watch.restore(model)
    history.seconds = time.perf_counter() - t_start
    return history


def _fit_full_batch(model, X, Y, epochs, opt, client):
    """Synchronous data-parallel full-batch descent: each epoch broadcasts the parameters, sums the
    per-chunk gradients in a tree, and takes one optimizer step on the driver."""
    dask, da = _dask()
    X, Y = _as_dask(da, X, Y, client)
    decay = layout.decay_mask(model.layers, model.dtype)
    update = layout.make_update(opt, model.theta)
    state = update.state
    start_theta = model.theta.copy()
    history = History()
    t_start = time.perf_counter()
    for t in range(1, epochs + 1):
        _, graph = _graph(model, model.theta.copy(), X, Y)
        J, grad = _finish(model, _compute(dask, graph, client))
        if not np.isfinite(J):
            model.theta[...] = start_theta  # as fit does: a failed run leaves the model as it was
            raise FloatingPointError(f"training diverged at epoch {t} (loss {float(J)}); the parameters were "
                                     f"restored; lower the learning rate")
        model.theta[...], state = optimizer_update(update.code, model.theta, grad, state, decay, update.hyper, t)
        history.loss.append(float(J))
        history.epochs = t
    history.seconds = time.perf_counter() - t_start
    return history

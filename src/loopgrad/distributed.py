"""Data-parallel gradients and training on Dask (optional extra: ``pip install loopgrad[dask]``).

The cost and its gradients are means over examples (``J = (1/m) sum_i L(i)``, B2, B3), so each
task runs loopgrad's loop kernels on one row chunk and returns the *un-normalised* sums
``(m_c J_c, m_c grad_c, m_c)``; a tree reduction adds them and the driver divides by the total
``m``. Uneven chunks are weighted correctly because every chunk reports its own ``m_c``.
Dask moves data and schedules tasks; loopgrad does all the arithmetic.
"""
import numpy as np

from . import _checks, layout
from .kernels.optim import optimizer_update
from .model import History
from .optim import get as _get_optimizer


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("loopgrad.distributed needs dask: pip install 'loopgrad[dask]'") from e
    return dask, da


def _chunk_sums(model, theta, X, Y):
    """Loop kernels on one chunk: (m_c * J_c, m_c * grad_c, m_c); an empty chunk adds nothing."""
    m = len(X)
    if m == 0:
        return 0.0, np.zeros_like(theta), 0
    J, grad = model.copy(theta).gradient_block(X, Y)
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
    dask, blocks = _row_blocks(X, Y)
    return dask, _tree_sum(dask, [dask.delayed(_chunk_sums)(model, theta, x, y) for x, y in blocks])


def _compute(dask, graph, client):
    if client is not None:
        return client.compute(graph).result()
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


def fit_distributed(model, X, Y, epochs, optimizer=None, client=None):
    """Synchronous data-parallel full-batch training: each epoch broadcasts the parameters, sums the
    per-chunk gradients in a tree, and takes one optimizer step on the driver. Returns a ``History``."""
    epochs = _checks.integer("epochs", epochs, 0)
    opt = _get_optimizer(optimizer)
    if getattr(opt, "clip_norm", None) is not None:
        raise ValueError("optimizer: DPSGD is not supported by fit_distributed; use SGD or Adam")
    dask, _ = _dask()
    decay = layout.decay_mask(model.layers, model.dtype)
    update = layout.make_update(opt, model.theta)
    state = update.state
    start_theta = model.theta.copy()
    history = History()
    for t in range(1, epochs + 1):
        theta = model.theta.copy()
        if client is not None:
            theta = client.scatter(theta, broadcast=True)
        _, graph = _graph(model, theta, X, Y)
        J, grad = _finish(model, _compute(dask, graph, client))
        if not np.isfinite(J):
            model.theta[...] = start_theta  # as fit does: a failed run leaves the model as it was
            raise FloatingPointError(f"training diverged at epoch {t} (loss {float(J)}); the parameters were "
                                     f"restored; lower the learning rate")
        model.theta[...], state = optimizer_update(update.code, model.theta, grad, state, decay, update.hyper, t)
        history.loss.append(float(J))
        history.epochs = t
    return history

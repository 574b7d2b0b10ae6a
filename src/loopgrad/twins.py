"""One table of every loop kernel and how to hold it against its NumPy twin.

Used by ``loopgrad check`` and by the test suite, so both check the same thing.

Tolerance: two ways of summing ``n`` terms differ by at most about ``2 n eps``
times the sum of the terms' magnitudes (recursive summation bound; fastmath
reassociation only changes the order). So a case passes when
``max |loop - numpy| <= 4 * eps(dtype) * n_terms * magnitude``, where
``magnitude`` is the twin evaluated on ``|inputs|`` for kernels that are
multilinear in their inputs (a bound on the sum of |terms|), or ``max |output|``
otherwise (``max |dA|`` for activation backward, where ``1 - A^2`` cancels); the factor 4 leaves room for the 1-2 ulp of exp/tanh/erf/log1p.
eps is 1.19e-7 for float32 and 2.22e-16 for float64.
"""
from dataclasses import dataclass

import numpy as np

from . import kernels, reference
from .kernels import col as kernels_col
from .kernels import optim as kernels_optim
from .kernels import textbook as kernels_textbook
from .reference import col as reference_col
from .reference import optim as reference_optim
from .reference import textbook as reference_textbook
from .optim import SGD, Adam
from .tables import ACTIVATIONS, ADAM_CODE, LOSSES, OPTIMIZERS, SGD_CODE

LAYOUTS = ("C", "F", "strided")


@dataclass(frozen=True)
class Case:
    name: str
    equation: str
    inputs: object      # (rng, m, n_in, n_out, dtype, scale) -> tuple of arrays
    call: object        # (module, *inputs) -> tuple of arrays
    n_terms: object     # (m, n_in, n_out) -> int
    multilinear: bool   # magnitude from |inputs| (True) or from |output| (False)
    optim: bool = False
    magnitude: object = None  # (inputs) -> float, where |output| understates the terms' size


def _poisson_terms(Z, Y):
    """The largest row sum of |y log y| + |y z| + exp(z) + y: the size of the Poisson loss's terms."""
    Z, Y = Z.astype(np.float64), Y.astype(np.float64)
    ylogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1.0)), 0.0)
    return float(np.max((np.abs(ylogy) + np.abs(Y * Z) + np.exp(np.minimum(Z, 80.0)) + Y).sum(axis=1), initial=0.0))


def _largest_input(*arrays):
    return max(float(np.max(np.abs(a), initial=0.0)) for a in arrays)


def _std(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _onehot(rng, m, n, dtype):
    return np.eye(n, dtype=dtype)[rng.integers(0, n, m)]


def _targets(loss):
    if loss == "cross_entropy":
        return _onehot
    if loss == "binary_cross_entropy":
        return lambda rng, m, n, dtype: rng.integers(0, 2, (m, n)).astype(dtype)
    return lambda rng, m, n, dtype: _std(rng, (m, n), dtype)


def _cases():
    cases = [
        Case("dense_forward", "F1",
             lambda r, m, i, o, dt, s: (_std(r, (m, i), dt, s), _std(r, (i, o), dt), _std(r, o, dt)),
             lambda mod, A, W, b: (mod.dense_forward(A, W, b),), lambda m, i, o: i + 1, True),
        Case("dense_backward", "B2 B3 B4",
             lambda r, m, i, o, dt, s: (_std(r, (m, o), dt, s), _std(r, (m, i), dt), _std(r, (i, o), dt)),
             lambda mod, dZ, A, W: mod.dense_backward(dZ, A, W), lambda m, i, o: max(m, o), True),
        Case("per_example_weight_grads", "B1",
             lambda r, m, i, o, dt, s: (_std(r, (m, i), dt, s), _std(r, (m, o), dt)),
             lambda mod, A, dZ: (mod.per_example_weight_grads(A, dZ),), lambda m, i, o: 1, True),
        Case("per_example_sq_norms", "N1",
             lambda r, m, i, o, dt, s: (_std(r, (m, i), dt, s), _std(r, (m, o), dt)),
             lambda mod, A, dZ: (mod.per_example_sq_norms(A, dZ),), lambda m, i, o: max(i, o) + 2, True),
    ]
    for act in ACTIVATIONS:
        wide = act == "softmax"
        cases.append(Case(
            f"activation_forward[{act}]", "F3" if wide else "F2",
            lambda r, m, i, o, dt, s: (_std(r, (m, o), dt, s),),
            lambda mod, Z, act=act: (mod.activation_forward(act, Z),),
            (lambda m, i, o: o + 2) if wide else (lambda m, i, o: 2), False))
        cases.append(Case(
            f"activation_backward[{act}]", "B7" if wide else "B5",
            lambda r, m, i, o, dt, s, act=act: _backward_inputs(r, m, o, dt, s, act),
            lambda mod, dA, Z, A, act=act: (mod.activation_backward(act, dA, Z, A),),
            (lambda m, i, o: o + 2) if wide else (lambda m, i, o: 2), False,
            # dA * (1 - A^2) and the like cancel: the error is relative to |dA|, not to the small result
            magnitude=lambda dA, Z, A: float(np.max(np.abs(dA)))))
    for loss in LOSSES:
        make_y = _targets(loss)
        cases.append(Case(
            f"loss_forward[{loss}]", "J",
            lambda r, m, i, o, dt, s, make_y=make_y: (_std(r, (m, o), dt, s), make_y(r, m, o, dt)),
            lambda mod, Z, Y, loss=loss: (np.asarray(mod.loss_forward(loss, Z, Y)),),
            lambda m, i, o: m * o + o + 2, False,
            # the Poisson deviance's four terms per output can cancel to far below their size (a
            # hypothesis example gave J ~ 0.01 from O(1) terms): its error is relative to the terms
            magnitude=_poisson_terms if loss == "poisson" else None))
        cases.append(Case(
            f"output_delta[{loss}]", "B8",
            lambda r, m, i, o, dt, s, make_y=make_y: (reference.activation_forward("softmax", _std(r, (m, o), dt, s)),
                                                      make_y(r, m, o, dt)),
            lambda mod, A, Y, loss=loss: (mod.output_delta(loss, A, Y),), lambda m, i, o: 1, False))
    cases += [
        Case("sgd_update", "B2 B3",
             lambda r, m, i, o, dt, s: (_std(r, i * o, dt, s), _std(r, i * o, dt), _std(r, i * o, dt),
                                        (r.random(i * o) < 0.8).astype(dt)),
             lambda mod, th, g, v, d: mod.sgd_update(th, g, v, 0.1, 0.9, True, 1e-2, d),
             # theta - lr (g + mu v) can cancel to far below its terms (hypothesis found 0.005 from O(1) terms):
             # the tolerance scales with the inputs, not the result
             lambda m, i, o: 4, False, True, _largest_input),
        Case("adam_update", "B2 B3",
             lambda r, m, i, o, dt, s: (_std(r, i * o, dt, s), _std(r, i * o, dt), _std(r, i * o, dt),
                                        np.abs(_std(r, i * o, dt)), (r.random(i * o) < 0.8).astype(dt)),
             lambda mod, th, g, m1, m2, d: mod.adam_update(th, g, m1, m2, 3, 1e-2, 0.9, 0.999, 1e-8, 1e-2, d),
             lambda m, i, o: 8, False, True, _largest_input),  # theta - step can cancel, as in SGD
    ]
    for opt, hyper in ((SGD_CODE, SGD(0.1, 0.9, True, 1e-2).hyper()), (ADAM_CODE, Adam(1e-2, weight_decay=1e-2).hyper())):
        cases.append(Case(
            f"optimizer_update[{OPTIMIZERS[opt]}]", "B2 B3",
            lambda r, m, i, o, dt, s: (_std(r, i * o, dt, s), _std(r, i * o, dt), (r.random(i * o) < 0.8).astype(dt),
                                       np.abs(_std(r, (2, i * o), dt))),
            lambda mod, th, g, d, st, opt=opt, hyper=hyper: mod.optimizer_update(opt, th, g, st, d, hyper, 3),
            lambda m, i, o: 8, False, True))
    return {c.name: c for c in cases}


def _backward_inputs(rng, m, n, dtype, scale, act):
    Z = _std(rng, (m, n), dtype, scale)
    return _std(rng, (m, n), dtype), Z, reference.activation_forward(act, Z)


CASES = _cases()


def relayout(x, layout, rng=None):
    """The same values as a C-ordered, Fortran-ordered or strided (sliced, non-contiguous) array."""
    if layout == "C":
        return np.ascontiguousarray(x)
    if layout == "F":
        return np.asfortranarray(x)
    big = np.zeros(tuple(2 * s for s in x.shape), dtype=x.dtype)
    view = big[tuple(slice(None, None, 2) for _ in x.shape)]
    view[...] = x
    return view


class _ColumnConvention:
    """A column-convention module seen through row-convention arrays: 2-D arguments go in
    transposed and results come back transposed (per-example (m, n_out, n_in) to (m, n_in, n_out)),
    so the one table of cases checks the column kernels too. Transposing is exact."""

    def __init__(self, module):
        self.module = module

    def __getattr__(self, name):
        fn = getattr(self.module, name)

        def as_rows(*args):
            out = fn(*(np.ascontiguousarray(a.T) if isinstance(a, np.ndarray) and a.ndim == 2 else a for a in args))
            many = out if isinstance(out, tuple) else (out,)
            back = tuple(o.T if o.ndim == 2 else o.transpose(0, 2, 1) if o.ndim == 3 else o for o in map(np.asarray, many))
            return back if isinstance(out, tuple) else back[0]
        return as_rows


# Implementations of the same equations, each with its NumPy twin: the tuned kernels, the textbook
# loops (literal loop nests, kernels/textbook.py), and the column-convention loops (kernels/col.py).
IMPLEMENTATIONS = {
    "kernels": (kernels, reference),
    "textbook": (kernels_textbook, reference_textbook),
    "col": (_ColumnConvention(kernels_col), _ColumnConvention(reference_col)),
}


def applies(name, impl):
    """The optimizer updates exist in the tuned kernels only."""
    return impl == "kernels" or not CASES[name].optim


def compare(name, m, n_in, n_out, dtype, layout="C", scale=1.0, seed=0, impl="kernels", against="twin"):
    """Run case ``name`` on implementation ``impl`` and on its NumPy twin (or, with
    ``against="kernels"``, on the tuned kernels); returns (max abs diff, tolerance, shapes of the inputs)."""
    case = CASES[name]
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    args = case.inputs(rng, m, n_in, n_out, dtype, scale)
    loops_mod, twin_mod = IMPLEMENTATIONS[impl]
    if case.optim:
        loops_mod, twin_mod = kernels_optim, reference_optim
    if against == "kernels":
        twin_mod = kernels
    loops = case.call(loops_mod, *(relayout(a, layout) for a in args))
    numpy = case.call(twin_mod, *args)
    if case.multilinear:
        bound = case.call(reference, *(np.abs(a) for a in args))
    else:
        bound = numpy
    diff, tol = 0.0, 0.0
    eps = float(np.finfo(dtype).eps)
    n_terms = case.n_terms(m, n_in, n_out)
    for lo, ref, mag in zip(loops, numpy, bound):
        if lo.dtype != dtype or lo.shape != ref.shape:
            raise AssertionError(f"{name}: loop result {lo.shape} {lo.dtype} vs twin {ref.shape} {ref.dtype}")
        d = float(np.max(np.abs(lo.astype(np.float64) - ref.astype(np.float64)), initial=0.0))
        size = float(np.max(np.abs(mag), initial=0.0))
        if case.magnitude is not None:
            size = max(size, case.magnitude(*args))
        t = 4 * eps * n_terms * size
        if d > t:
            return d, t, [a.shape for a in args]
        diff, tol = max(diff, d), max(tol, t)
    return diff, tol, [a.shape for a in args]

"""Walk a small network equation by equation: each index sum (loop kernel) beside its matrix
formula (NumPy twin), with the shapes and the dimension check written out.

``explain(model, X, Y)`` returns the walk as a list of ``Step``; ``loopgrad explain`` prints it
(80 columns) or writes it as Markdown. ``convention="col"`` runs the column-convention kernels
(W (n_l, n_{l-1}), activations (n_l, m)) on the same parameters.
"""
import textwrap
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import kernels, reference
from .kernels import col as kernels_col
from .reference import col as reference_col


@dataclass
class Step:
    equation: str
    what: str
    index_form: str
    matrix_form: str
    shapes: str
    loop: np.ndarray
    vector: np.ndarray

    @property
    def max_abs_diff(self):
        return float(np.max(np.abs(np.asarray(self.loop, float) - np.asarray(self.vector, float)), initial=0.0))


class _Row:
    name = "row"
    K, R = kernels, reference

    @staticmethod
    def data(x):
        return x

    def f1(self, l, n0, n1, m):
        return (f"Z[{l}][i,j] = sum_k A[{l-1}][i,k] * W[{l}][k,j] + b[{l}][j]", f"Z[{l}] = A[{l-1}] @ W[{l}] + b[{l}]",
                f"(m, n_{l-1}) x (n_{l-1}, n_{l}) -> (m, n_{l}): ({m}, {n0}) x ({n0}, {n1}) -> ({m}, {n1})")

    def b2(self, l, n0, n1, m):
        return (f"dW[{l}][j,k] = (1/m) sum_i A[{l-1}][i,j] * dZ[{l}][i,k]", f"dW[{l}] = A[{l-1}].T @ dZ[{l}] / m",
                f"(n_{l-1}, m) x (m, n_{l}) -> (n_{l-1}, n_{l}): ({n0}, {m}) x ({m}, {n1}) -> ({n0}, {n1}) "
                f"= shape of W[{l}]")

    def b3(self, l, n1, m):
        return (f"db[{l}][k] = (1/m) sum_i dZ[{l}][i,k]", f"db[{l}] = dZ[{l}].sum(axis=0) / m",
                f"(m, n_{l}) -> (n_{l},): ({m}, {n1}) -> ({n1},) = shape of b[{l}]")

    def b4(self, l, n0, n1, m):
        return (f"dA[{l-1}][i,p] = sum_q dZ[{l}][i,q] * W[{l}][p,q]", f"dA[{l-1}] = dZ[{l}] @ W[{l}].T",
                f"(m, n_{l}) x (n_{l}, n_{l-1}) -> (m, n_{l-1}): ({m}, {n1}) x ({n1}, {n0}) -> ({m}, {n0}) "
                f"= shape of A[{l-1}]")

    def weights(self, W):
        return W


class _Col(_Row):
    name = "col"
    K, R = kernels_col, reference_col

    @staticmethod
    def data(x):
        return np.ascontiguousarray(x.T)

    def f1(self, l, n0, n1, m):
        return (f"Z[{l}][j,i] = sum_k W[{l}][j,k] * A[{l-1}][k,i] + b[{l}][j]", f"Z[{l}] = W[{l}] @ A[{l-1}] + b[{l}]",
                f"(n_{l}, n_{l-1}) x (n_{l-1}, m) -> (n_{l}, m): ({n1}, {n0}) x ({n0}, {m}) -> ({n1}, {m})")

    def b2(self, l, n0, n1, m):
        return (f"dW[{l}][j,k] = (1/m) sum_i dZ[{l}][j,i] * A[{l-1}][k,i]", f"dW[{l}] = dZ[{l}] @ A[{l-1}].T / m",
                f"(n_{l}, m) x (m, n_{l-1}) -> (n_{l}, n_{l-1}): ({n1}, {m}) x ({m}, {n0}) -> ({n1}, {n0}) "
                f"= shape of W[{l}]")

    def b3(self, l, n1, m):
        return (f"db[{l}][j] = (1/m) sum_i dZ[{l}][j,i]", f"db[{l}] = dZ[{l}].sum(axis=1) / m",
                f"(n_{l}, m) -> (n_{l},): ({n1}, {m}) -> ({n1},) = shape of b[{l}]")

    def b4(self, l, n0, n1, m):
        return (f"dA[{l-1}][k,i] = sum_j W[{l}][j,k] * dZ[{l}][j,i]", f"dA[{l-1}] = W[{l}].T @ dZ[{l}]",
                f"(n_{l-1}, n_{l}) x (n_{l}, m) -> (n_{l-1}, m): ({n0}, {n1}) x ({n1}, {m}) -> ({n0}, {m}) "
                f"= shape of A[{l-1}]")

    def weights(self, W):
        return np.ascontiguousarray(W.T)


CONVENTIONS = {"row": _Row(), "col": _Col()}


class _Layer(NamedTuple):
    """What the backward walk needs of one layer's forward, on both sides (loops and NumPy)."""
    A_prev: tuple   # (loops, numpy) input of the layer
    Z: tuple        # (loops, numpy) linear output
    A: tuple        # (loops, numpy) activation
    W: np.ndarray   # the weights in the convention's layout
    act: str


def explain(model, X, Y, convention="row"):
    """The forward and backward walk of ``model`` on (X, Y) as a list of ``Step``."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: expected 'row' or 'col', got {convention!r}")
    c = CONVENTIONS[convention]
    X, Y = model.validate(X, Y, y_arg="Y")
    m = X.shape[0]
    steps = []
    A_loop = A_vec = c.data(X)
    cache = []
    for l, ((W, b), act) in enumerate(zip(model.params, model.activations), start=1):
        Wc = c.weights(W)
        n0, n1 = W.shape
        Z_loop, Z_vec = c.K.dense_forward(A_loop, Wc, b), c.R.dense_forward(A_vec, Wc, b)
        steps.append(Step("F1", f"layer {l} linear step", *c.f1(l, n0, n1, m), Z_loop, Z_vec))
        nxt_loop, nxt_vec = c.K.activation_forward(act, Z_loop), c.R.activation_forward(act, Z_vec)
        if act == "softmax":
            idx = (f"A[{l}][i,j] = exp(Z[i,j] - M_i) / sum_k exp(Z[i,k] - M_i)", f"A[{l}] = softmax(Z[{l}])")
        else:
            idx = (f"A[{l}][i,j] = {act}(Z[{l}][i,j])", f"A[{l}] = {act}(Z[{l}])")
        steps.append(Step("F3" if act == "softmax" else "F2", f"layer {l} activation ({act})", *idx,
                          "element-wise: same shape as Z" if act != "softmax" else "one softmax per example",
                          nxt_loop, nxt_vec))
        cache.append(_Layer((A_loop, A_vec), (Z_loop, Z_vec), (nxt_loop, nxt_vec), Wc, act))
        A_loop, A_vec = nxt_loop, nxt_vec
    Yc = c.data(Y)
    Z_L_loop, Z_L_vec = cache[-1].Z
    steps.append(Step("J", f"cost ({model.loss_name}, from the logits)", "J = (1/m) sum_i L(i)",
                      "J = mean(L)", "scalar", np.asarray(c.K.loss_forward(model.loss_name, Z_L_loop, Yc)),
                      np.asarray(c.R.loss_forward(model.loss_name, Z_L_vec, Yc))))
    dZ_loop = c.K.output_delta(model.loss_name, A_loop, Yc)
    dZ_vec = c.R.output_delta(model.loss_name, A_vec, Yc)
    L = len(cache)
    steps.append(Step("B8", f"output delta ({model.output} + {model.loss_name})", f"dZ[{L}][i,k] = A[{L}][i,k] - Y[i,k]",
                      f"dZ[{L}] = A[{L}] - Y", "same shape as A[L]", dZ_loop, dZ_vec))
    norms_loop = np.zeros(m, model.dtype)
    norms_vec = np.zeros(m, model.dtype)
    for l in range(L, 0, -1):
        (Ap_loop, Ap_vec), Wc = cache[l - 1].A_prev, cache[l - 1].W
        n0, n1 = model.params[l - 1][0].shape
        dA_loop, dW_loop, db_loop = c.K.dense_backward(dZ_loop, Ap_loop, Wc)
        dA_vec, dW_vec, db_vec = c.R.dense_backward(dZ_vec, Ap_vec, Wc)
        steps.append(Step("B2", f"layer {l} weight gradient", *c.b2(l, n0, n1, m), dW_loop, dW_vec))
        steps.append(Step("B3", f"layer {l} bias gradient", *c.b3(l, n1, m), db_loop, db_vec))
        norms_loop += c.K.per_example_sq_norms(Ap_loop, dZ_loop)
        norms_vec += c.R.per_example_sq_norms(Ap_vec, dZ_vec)
        if l == 1:
            break
        steps.append(Step("B4", f"layer {l} back to layer {l-1}", *c.b4(l, n0, n1, m), dA_loop, dA_vec))
        below = cache[l - 2]
        (Zp_loop, Zp_vec), (Ap2_loop, Ap2_vec), act = below.Z, below.A, below.act
        dZ_loop = c.K.activation_backward(act, dA_loop, Zp_loop, Ap2_loop)
        dZ_vec = c.R.activation_backward(act, dA_vec, Zp_vec, Ap2_vec)
        if act == "softmax":
            idx = (f"dZ[{l-1}][i,k] = A[i,k] (dA[i,k] - sum_j dA[i,j] A[i,j])", f"dZ[{l-1}] = A * (dA - rowsum(dA * A))")
        else:
            idx = (f"dZ[{l-1}][i,p] = dA[{l-1}][i,p] * g'(Z[{l-1}][i,p])  (delta(r,p) collapses the sum)",
                   f"dZ[{l-1}] = dA[{l-1}] * {act}'(Z[{l-1}])")
        steps.append(Step("B7" if act == "softmax" else "B5", f"layer {l-1} activation backward ({act})", *idx,
                          "element-wise: same shape as Z" if act != "softmax" else "per example (Jacobian)",
                          dZ_loop, dZ_vec))
    steps.append(Step("N1", "per-example gradient norms, all layers",
                      "||g(i)||^2 = sum_l (||A[l-1][i]||^2 + 1) * ||dZ[l][i]||^2",
                      "((A * A).sum(1) + 1) * (dZ * dZ).sum(1), summed over l", "(m,)",
                      np.sqrt(norms_loop), np.sqrt(norms_vec)))
    return steps


def _fmt(a, width=7):
    a = np.atleast_2d(np.asarray(a, dtype=float))
    rows = a[:6]
    lines = [" ".join(f"{v:{width}.4f}" for v in r[:5]) + (" ..." if r.size > 5 else "") for r in rows]
    if a.shape[0] > 6:
        lines.append("...")
    return lines


def render_text(steps, convention="row"):
    out = [f"loopgrad explain ({convention} convention): every loop result beside its matrix formula", ""]
    for s in steps:
        out.append(f"[{s.equation}] {s.what}")
        for label, text in (("index ", s.index_form), ("matrix", s.matrix_form), ("shapes", s.shapes)):
            out += textwrap.wrap(text, 80, initial_indent=f"  {label}: ", subsequent_indent=" " * 12,
                                 break_on_hyphens=False)
        left, right = _fmt(s.loop), _fmt(s.vector)
        w = max(len(x) for x in left)
        out.append(f"  {'loops'.ljust(w)} | numpy")
        for a, b in zip(left, right):
            out.append(f"  {a.ljust(w)} | {b}")
        out.append(f"  max |loops - numpy| = {s.max_abs_diff:.1e}")
        out.append("")
    return "\n".join(out)


def render_markdown(steps, convention="row"):
    out = [f"# loopgrad explain ({convention} convention)", ""]
    for s in steps:
        out += [f"## {s.equation}: {s.what}", "", f"- index form: `{s.index_form}`",
                f"- matrix form: `{s.matrix_form}`", f"- shapes: `{s.shapes}`",
                f"- max |loops - numpy| = {s.max_abs_diff:.1e}", "", "| loops | numpy |", "|---|---|"]
        for a, b in zip(_fmt(s.loop), _fmt(s.vector)):
            out.append(f"| `{a.strip()}` | `{b.strip()}` |")
        out.append("")
    return "\n".join(out)


def _cmd_explain(args):
    from . import _checks
    from .model import MLP

    _checks.integer("--m", args.m, 1)
    rng = np.random.default_rng(_checks.integer("--seed", args.seed, 0))
    sizes = args.sizes
    output = args.output or ("sigmoid" if sizes[-1] == 1 else "softmax")
    model = MLP(sizes, hidden=args.activation, output=output, seed=args.seed)
    X = rng.standard_normal((args.m, sizes[0]))
    Y = rng.integers(0, max(2, sizes[-1]) if output != "identity" else 1, args.m)
    if output == "identity":
        Y = rng.standard_normal((args.m, sizes[-1]))
    steps = explain(model, X, Y, convention=args.convention)
    render = render_markdown if args.format == "markdown" else render_text
    print(render(steps, args.convention))
    return 0 if all(s.max_abs_diff <= 1e-12 * max(1.0, float(np.abs(s.vector).max())) for s in steps) else 1


def register(sub):
    from .tables import ACTIVATIONS, OUTPUT_LOSS

    e = sub.add_parser("explain", help="walk a small network equation by equation, loops beside matrices",
                       description="For a small network (default 3 inputs, 2 hidden units, 1 output, m = 4), prints "
                                   "each equation of docs/math.md used forward and backward: its number, index form, "
                                   "matrix form, shapes with the dimension check, the loop result beside the NumPy "
                                   "result, and their max abs difference.")
    e.add_argument("--sizes", type=int, nargs="+", default=[3, 2, 1], help="layer widths (default 3 2 1)")
    e.add_argument("--activation", choices=ACTIVATIONS, default="sigmoid", help="hidden activation")
    e.add_argument("--output", choices=list(OUTPUT_LOSS), help="output (default sigmoid for 1 unit, else softmax)")
    e.add_argument("--m", type=int, default=4, help="examples in the batch (default 4)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--convention", choices=("row", "col"), default="row")
    e.add_argument("--format", choices=("text", "markdown"), default="text")
    e.set_defaults(func=_cmd_explain)

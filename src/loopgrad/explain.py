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



@dataclass
class Step:
    equation: str
    what: str
    index_form: str
    matrix_form: str
    shapes: str
    loop: np.ndarray
    vector: np.ndarray
    notes: tuple = ()    # worked lines (B1's terms, the 1/m placements...)
    data: bool = False   # an input or parameter, printed once (loop and vector are the same array)

    @property
    def max_abs_diff(self):
        return float(np.max(np.abs(np.asarray(self.loop, float) - np.asarray(self.vector, float)), initial=0.0))


class _Row:
    """The row convention's loops (K) and twins (R), imported when first walked: the ``loopgrad``
    command builds its parser from this module and should not import numba to print its help."""
    name = "row"

    @property
    def K(self):
        from . import kernels
        return kernels

    @property
    def R(self):
        from . import reference
        return reference

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

    def scale_examples(self, dZ, c):
        """Each example's delta times c_i (N2): rows here."""
        return dZ * c[:, None]

    def element(self, M, i, u):
        """Entry of example i, unit u of an (examples x units) quantity."""
        return M[i, u]

    def f2(self, l, act):
        if act == "softmax":
            return (f"A[{l}][i,j] = exp(Z[{l}][i,j] - M_i) / sum_k exp(Z[{l}][i,k] - M_i), M_i = max_k Z[{l}][i,k]",
                    f"A[{l}] = softmax(Z[{l}]) along each row")
        return f"A[{l}][i,j] = {act}(Z[{l}][i,j])", f"A[{l}] = {act}(Z[{l}])"

    def b1(self, l):
        return (f"dW(i)[j,k] = sum_p dZ[{l}][i,p] sum_q A[{l-1}][i,q] delta(q,j) delta(p,k) = A[{l-1}][i,j] dZ[{l}][i,k]",
                f"dW(i) = outer(A[{l-1}][i], dZ[{l}][i])")

    def b5(self, l, act):
        if act == "softmax":
            return (f"dZ[{l}][i,k] = A[{l}][i,k] (dA[{l}][i,k] - sum_j dA[{l}][i,j] A[{l}][i,j])",
                    f"dZ[{l}] = A * (dA - (dA * A).sum(axis=1, keepdims=True))")
        return (f"dZ[{l}][i,p] = sum_r dA[{l}][i,r] g'(Z[{l}][i,p]) delta(r,p) = dA[{l}][i,p] g'(Z[{l}][i,p])",
                f"dZ[{l}] = dA[{l}] * {act}'(Z[{l}])")

    def b6(self, l, act):
        return (f"dZ[{l}] = (dZ[{l+1}] @ W[{l+1}].T) * g'(Z[{l}]): B4 then B5, with the weights of layer {l+1}",
                f"dZ[{l}] = {act}_backward(dZ[{l+1}] @ W[{l+1}].T, Z[{l}], A[{l}])")

    def b8(self, L):
        return f"dZ[{L}][i,k] = A[{L}][i,k] - Y[i,k]", f"dZ[{L}] = A[{L}] - Y"

    def n1(self):
        return ("||g(i)||^2 = sum_l (||A[l-1][i]||^2 + 1) * ||dZ[l][i]||^2",
                "((A * A).sum(axis=1) + 1) * (dZ * dZ).sum(axis=1), summed over l")

    def n2(self, L):
        return (f"sum_i c_i dW(i)[j,k] = sum_i A[{L-1}][i,j] (c_i dZ[{L}][i,k]), c_i = min(1, C / ||g(i)||)",
                f"A[{L-1}].T @ (c[:, None] * dZ[{L}])")


class _Col(_Row):
    name = "col"

    @property
    def K(self):
        from .kernels import col
        return col

    @property
    def R(self):
        from .reference import col
        return col

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

    def scale_examples(self, dZ, c):
        """Each example's delta times c_i (N2): columns here."""
        return dZ * c[None, :]

    def element(self, M, i, u):
        return M[u, i]

    def f2(self, l, act):
        if act == "softmax":
            return (f"A[{l}][j,i] = exp(Z[{l}][j,i] - M_i) / sum_k exp(Z[{l}][k,i] - M_i), M_i = max_k Z[{l}][k,i]",
                    f"A[{l}] = softmax(Z[{l}]) down each column")
        return f"A[{l}][j,i] = {act}(Z[{l}][j,i])", f"A[{l}] = {act}(Z[{l}])"

    def b1(self, l):
        return (f"dW(i)[k,j] = sum_p dZ[{l}][p,i] sum_q A[{l-1}][q,i] delta(q,j) delta(p,k) = dZ[{l}][k,i] A[{l-1}][j,i]",
                f"dW(i) = outer(dZ[{l}][:, i], A[{l-1}][:, i])")

    def b5(self, l, act):
        if act == "softmax":
            return (f"dZ[{l}][k,i] = A[{l}][k,i] (dA[{l}][k,i] - sum_j dA[{l}][j,i] A[{l}][j,i])",
                    f"dZ[{l}] = A * (dA - (dA * A).sum(axis=0, keepdims=True))")
        return (f"dZ[{l}][p,i] = sum_r dA[{l}][r,i] g'(Z[{l}][p,i]) delta(r,p) = dA[{l}][p,i] g'(Z[{l}][p,i])",
                f"dZ[{l}] = dA[{l}] * {act}'(Z[{l}])")

    def b6(self, l, act):
        return (f"dZ[{l}] = (W[{l+1}].T @ dZ[{l+1}]) * g'(Z[{l}]): B4 then B5, with the weights of layer {l+1}",
                f"dZ[{l}] = {act}_backward(W[{l+1}].T @ dZ[{l+1}], Z[{l}], A[{l}])")

    def b8(self, L):
        return f"dZ[{L}][k,i] = A[{L}][k,i] - Y[k,i]", f"dZ[{L}] = A[{L}] - Y"

    def n1(self):
        return ("||g(i)||^2 = sum_l (||A[l-1][:, i]||^2 + 1) * ||dZ[l][:, i]||^2",
                "((A * A).sum(axis=0) + 1) * (dZ * dZ).sum(axis=0), summed over l")

    def n2(self, L):
        return (f"sum_i c_i dW(i)[k,j] = sum_i (c_i dZ[{L}][k,i]) A[{L-1}][j,i], c_i = min(1, C / ||g(i)||)",
                f"(dZ[{L}] * c[None, :]) @ A[{L-1}].T")


CONVENTIONS = {"row": _Row(), "col": _Col()}


class _Layer(NamedTuple):
    """What the backward walk needs of one layer's forward, on both sides (loops and NumPy)."""
    A_prev: tuple   # (loops, numpy) input of the layer
    Z: tuple        # (loops, numpy) linear output
    A: tuple        # (loops, numpy) activation
    W: np.ndarray   # the weights in the convention's layout
    act: str


def explain(model, X, Y, convention="row"):
    """The forward and backward walk of ``model`` on (X, Y) as a list of ``Step``: the inputs and
    parameters, then every equation used (F1-F3, J, B8, B1, B2-B7 with B6 as B4 then B5, N1, N2),
    the row/column transposition map and the 1/m placement."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: expected 'row' or 'col', got {convention!r}")
    c = CONVENTIONS[convention]
    X, Y = model.validate(X, Y, y_arg="Y")
    m = X.shape[0]
    units = "(n_0, m)" if convention == "col" else "(m, n_0)"
    steps = [Step("X", f"inputs A[0] = X, {units}", "", "", str(c.data(X).shape), c.data(X), c.data(X), data=True),
             Step("Y", "targets", "", "", str(c.data(Y).shape), c.data(Y), c.data(Y), data=True)]
    for l, (W, b) in enumerate(model.params, start=1):
        Wc = c.weights(W)
        steps.append(Step(f"W[{l}]", f"weights of layer {l}", "", "", str(Wc.shape), Wc, Wc, data=True))
        steps.append(Step(f"b[{l}]", f"biases of layer {l}", "", "", str(b.shape), b, b, data=True))
    A_loop = A_vec = c.data(X)
    cache = []
    for l, ((W, b), act) in enumerate(zip(model.params, model.activations), start=1):
        Wc = c.weights(W)
        n0, n1 = W.shape
        Z_loop, Z_vec = c.K.dense_forward(A_loop, Wc, b), c.R.dense_forward(A_vec, Wc, b)
        steps.append(Step("F1", f"layer {l} linear step", *c.f1(l, n0, n1, m), Z_loop, Z_vec))
        nxt_loop, nxt_vec = c.K.activation_forward(act, Z_loop), c.R.activation_forward(act, Z_vec)
        steps.append(Step("F3" if act == "softmax" else "F2", f"layer {l} activation ({act})", *c.f2(l, act),
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
    steps.append(Step("B8", f"output delta ({model.output} + {model.loss_name})", *c.b8(L), "same shape as A[L]",
                      dZ_loop, dZ_vec))
    steps.append(_b1_step(c, L, cache[-1].A_prev, (dZ_loop, dZ_vec)))
    top = (cache[-1].A_prev, (dZ_loop, dZ_vec), cache[-1].W)
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
        dZ_up_vec = dZ_vec
        dZ_loop = c.K.activation_backward(act, dA_loop, Zp_loop, Ap2_loop)
        dZ_vec = c.R.activation_backward(act, dA_vec, Zp_vec, Ap2_vec)
        steps.append(Step("B7" if act == "softmax" else "B5", f"layer {l-1} activation backward ({act})",
                          *c.b5(l - 1, act),
                          "element-wise: same shape as Z" if act != "softmax" else "per example (Jacobian)",
                          dZ_loop, dZ_vec))
        # B6: the same delta in one composed formula, from the layer above (numpy), beside the two loop steps
        chain = c.R.activation_backward(act, c.R.dense_backward(dZ_up_vec, Ap_vec, Wc)[0], Zp_vec, Ap2_vec)
        steps.append(Step("B6", f"layer {l} to layer {l-1}, B4 and B5 composed", *c.b6(l - 1, act),
                          "same shape as Z", dZ_loop, chain))
    steps.append(Step("N1", "per-example gradient norms, all layers", *c.n1(), "(m,)",
                      np.sqrt(norms_loop), np.sqrt(norms_vec)))
    steps.append(_n2_step(c, model, L, top, np.sqrt(norms_vec)))
    steps.append(_transposition_step(model, X))
    steps.append(_one_over_m_step(model, X, Y))
    return steps


def _b1_step(c, L, A_prev, dZ, i=0, j=0, k=0):
    """B1 for one entry: every term of the double sum, which deltas vanish, and the survivor."""
    (Ap_loop, Ap_vec), (dZ_loop, dZ_vec) = A_prev, dZ
    n_in = Ap_vec.shape[0 if c.name == "col" else 1]
    n_out = dZ_vec.shape[0 if c.name == "col" else 1]
    entry = f"[{k},{j}]" if c.name == "col" else f"[{j},{k}]"
    notes = [f"entry {entry} of example i = {i}: the terms of the double sum over p < {n_out}, q < {n_in}"]
    shown = 0
    for p in range(n_out):
        for q in range(n_in):
            if shown == 8:
                notes.append(f"... {n_out * n_in - shown} more terms, each with a zero delta")
                break
            d = float(c.element(dZ_vec, i, p))
            a = float(c.element(Ap_vec, i, q))
            keep = q == j and p == k
            notes.append(f"p={p} q={q}: dZ {d:+.4f} * A {a:+.4f} * delta({q},{j}) delta({p},{k}) = "
                         f"{d * a if keep else 0.0:+.4f}" + ("  <- survives" if keep else ""))
            shown += 1
        else:
            continue
        break
    loop = c.K.per_example_weight_grads(Ap_loop, dZ_loop)[i]
    vec = c.R.per_example_weight_grads(Ap_vec, dZ_vec)[i]
    notes.append(f"so dW(0){entry} = {float(c.element(Ap_vec, i, j)) * float(c.element(dZ_vec, i, k)):+.4f}; "
                 f"the whole dW(0) below")
    return Step("B1", f"layer {L} per-example weight gradient, example 0", *c.b1(L), "(n_in, n_out) per example"
                if c.name == "row" else "(n_out, n_in) per example", loop, vec, notes=tuple(notes))


def _n2_step(c, model, L, top, norms):
    """N2: the sum of clipped per-example gradients is B2 on scaled deltas (loops) against the sum of
    the per-example outer products (numpy)."""
    (Ap_loop, Ap_vec), (dZ_loop, dZ_vec), Wc = top
    C = float(np.median(norms))
    scale = np.minimum(1.0, C / np.maximum(norms, 1e-300)).astype(model.dtype)
    m = norms.size
    loop = c.K.dense_backward(c.scale_examples(dZ_loop, scale), Ap_loop, Wc)[1] * model.dtype.type(m)
    vec = (c.R.per_example_weight_grads(Ap_vec, dZ_vec) * scale[:, None, None]).sum(axis=0)
    notes = (f"clip C = median ||g(i)|| = {C:.4f}; c = " + " ".join(f"{v:.3f}" for v in scale[:6]) +
             (" ..." if m > 6 else ""),)
    return Step("N2", f"layer {L} clipped sum of per-example gradients (DP-SGD)", *c.n2(L),
                "shape of W", loop, vec, notes=notes)


def _transposition_step(model, X):
    """The same numbers in both conventions: the row loops' Z[1] beside the column loops' Z[1], transposed."""
    (W, b), = model.params[:1]
    row, col = CONVENTIONS["row"].K, CONVENTIONS["col"].K
    Z_row = row.dense_forward(X, W, b)
    Z_col = col.dense_forward(np.ascontiguousarray(X.T), np.ascontiguousarray(W.T), b)
    notes = ("row: X (m, n_0), W (n_0, n_1), Z = X @ W + b;  column: X.T (n_0, m), W.T (n_1, n_0),",
             "Z_col = W.T @ X.T + b[:, None] = (X @ W + b).T: every column quantity is its row twin transposed")
    return Step("T", "row <-> column convention, layer 1", "Z_col[j,i] = Z[i,j]", "Z_col = Z.T", str(Z_row.shape),
                Z_row, Z_col.T, notes=notes)


def _one_over_m_step(model, X, Y):
    """Where the 1/m of J = (1/m) sum_i L(i) goes: in B2/B3 (loopgrad), or once in dZ[L] (same dW), or at
    every layer (wrong: layer l is scaled by m^-(L-l+1))."""
    from .reference import activations as ref_act

    m = X.shape[0]
    As, Zs = [X], []
    for (W, b), act in zip(model.params, model.activations):
        Zs.append(As[-1] @ W + b)
        As.append(ref_act.activation_forward(act, Zs[-1]))

    def dW1(scale_output, scale_each):
        dZ = (As[-1] - Y) * (1.0 / m if scale_output else 1.0)
        for l in range(len(model.params) - 1, 0, -1):
            dA = dZ @ model.params[l][0].T
            dZ = ref_act.activation_backward(model.activations[l - 1], dA, Zs[l - 1], As[l]) * (1.0 / m if scale_each
                                                                                                else 1.0)
        return As[0].T @ dZ

    _, grads = model.gradients(X, Y)
    once_at_output = dW1(True, False)
    every_layer = dW1(True, True)
    L = len(model.params)
    ratio = float(np.abs(every_layer).sum() / max(np.abs(once_at_output).sum(), 1e-300))
    notes = ("loops: 1/m in B2 and B3 only (the deltas stay per example); numpy: 1/m once in dZ[L] and none in "
             "B2: the same dW[1], since B4-B6 are linear in dZ. Applying 1/m at every layer instead scales dW[1] "
             f"by m^-(L-1) = {float(m) ** -(L - 1):.4g} (measured here: {ratio:.4g}): wrong below the top layer.",)
    return Step("1/m", "placement of 1/m, layer 1 weight gradient (row convention)", "dW[1] = (1/m) A[0].T @ dZ[1]",
                "dW[1] = A[0].T @ dZ'[1], dZ'[L] = (A[L] - Y) / m", str(grads[0][0].shape), grads[0][0],
                once_at_output, notes=notes)


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
        out.append(f"[{s.equation}] {s.what}  {s.shapes}" if s.data else f"[{s.equation}] {s.what}")
        if s.data:
            out += [f"  {line}" for line in _fmt(s.loop)] + [""]
            continue
        for label, text in (("index ", s.index_form), ("matrix", s.matrix_form), ("shapes", s.shapes)):
            out += textwrap.wrap(text, 80, initial_indent=f"  {label}: ", subsequent_indent=" " * 12,
                                 break_on_hyphens=False)
        for note in s.notes:
            out += textwrap.wrap(note, 80, initial_indent="  ", subsequent_indent="      ", break_on_hyphens=False)
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
        if s.data:
            out += [f"## {s.equation}: {s.what} {s.shapes}", "", "```"] + _fmt(s.loop) + ["```", ""]
            continue
        out += [f"## {s.equation}: {s.what}", "", f"- index form: `{s.index_form}`",
                f"- matrix form: `{s.matrix_form}`", f"- shapes: `{s.shapes}`"]
        out += [f"- {note}" for note in s.notes]
        out += [f"- max |loops - numpy| = {s.max_abs_diff:.1e}", "", "| loops | numpy |", "|---|---|"]
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
    elif output == "exp":
        Y = rng.poisson(1.0, (args.m, sizes[-1])).astype(float)
    steps = explain(model, X, Y, convention=args.convention)
    if args.equation:
        wanted = [e.strip() for e in args.equation.split(",")]
        known = sorted({st.equation for st in steps if not st.data})
        unknown = [e for e in wanted if e not in known]
        if unknown:
            raise ValueError(f"--equation: expected some of {', '.join(known)}, got {', '.join(unknown)}")
        steps = [st for st in steps if st.equation in wanted]
    render = render_markdown if args.format == "markdown" else render_text
    print(render(steps, args.convention))
    return 0 if all(s.max_abs_diff <= 1e-12 * max(1.0, float(np.abs(s.vector).max())) for s in steps) else 1


def register(sub):
    from .tables import HIDDEN_ACTIVATIONS as ACTIVATIONS
    from .tables import OUTPUT_LOSS

    e = sub.add_parser("explain", help="walk a small network equation by equation, loops beside matrices",
                       description="For a small network (default 3 inputs, 2 hidden units, 1 output, m = 4), prints "
                                   "its inputs and parameters, then each equation of docs/math.md forward and "
                                   "backward (F1-F3, J, B8, B1 with every term of its double sum, B2-B7, B6 as B4 "
                                   "then B5, N1, N2), the row/column transposition map and where 1/m goes: index "
                                   "form, matrix form, shapes with the dimension check, the loop result beside the "
                                   "NumPy result, and their max abs difference.")
    e.add_argument("--sizes", type=int, nargs="+", default=[3, 2, 1], help="layer widths (default 3 2 1)")
    e.add_argument("--activation", choices=ACTIVATIONS, default="sigmoid", help="hidden activation")
    e.add_argument("--output", choices=list(OUTPUT_LOSS), help="output (default sigmoid for 1 unit, else softmax)")
    e.add_argument("--m", type=int, default=4, help="examples in the batch (default 4)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--convention", choices=("row", "col"), default="row")
    e.add_argument("--format", choices=("text", "markdown"), default="text")
    e.add_argument("--equation", metavar="EQ", help="walk only these equations, e.g. B1 or B1,B6,N2")
    e.set_defaults(func=_cmd_explain)

"""Maintainer script: write docs/walkthrough.ipynb (cells only, no outputs) from the cells below.

The test suite executes the notebook with nbmake (tests/test_teaching.py). Run:
python tools/make_notebook.py
"""
import pathlib

import nbformat

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "walkthrough.ipynb"

CELLS = [
    ("md", """# Backpropagation as loops, in both conventions

Every equation here is numbered as in `docs/math.md`. Three implementations of each are set side by side:
the **textbook loops** (`loopgrad.kernels.textbook`: the literal loop nest of the index formula), the
**tuned loops** (`loopgrad.kernels`), and the **NumPy twin** (`loopgrad.reference`: the matrix formula).
The column convention (examples are columns) has its own loops in `loopgrad.kernels.col`.
Each cell checks what it shows: the notebook fails if two of them disagree."""),
    ("code", """import numpy as np
import loopgrad as lg
from loopgrad import kernels, reference
from loopgrad.kernels import col, textbook

rng = np.random.default_rng(0)
model = lg.MLP([3, 4, 2], hidden="sigmoid", output="softmax", seed=0)
X, y = rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
(W1, b1), (W2, b2) = model.params
float64_tol = 1e-12  # float64 sums of a few terms: rounding is about 1e-16 per term"""),
    ("md", """## F1, the linear step: `Z[i,j] = sum_k A_prev[i,k] W[k,j] + b[j]`

Row convention: `X (m, n_0) @ W (n_0, n_1) -> (m, n_1)`."""),
    ("code", """Z_textbook = textbook.dense_forward(X, W1, b1)
Z_tuned = kernels.dense_forward(X, W1, b1)
Z_numpy = reference.dense_forward(X, W1, b1)
print(Z_textbook)
assert np.abs(Z_textbook - Z_numpy).max() < float64_tol and np.abs(Z_tuned - Z_numpy).max() < float64_tol"""),
    ("md", """The column convention computes the same numbers, transposed: `Z_col = W.T @ X.T + b[:, None] = Z.T`
(`(P @ Q).T = Q.T @ P.T`)."""),
    ("code", """Z_col = col.dense_forward(X.T.copy(), W1.T.copy(), b1)
print(Z_col.shape, "=", Z_textbook.T.shape)
assert np.abs(Z_col - Z_textbook.T).max() < float64_tol"""),
    ("md", """## B1, the Kronecker-delta collapse

`dW(i)[j,k] = sum_p dZ[i,p] sum_q A_prev[i,q] delta(q,j) delta(p,k) = A_prev[i,j] dZ[i,k]`: the two deltas
keep one term of the double sum, and the per-example gradient is an outer product. Its mean over the
examples is B2, `dW = A_prev.T @ dZ / m`."""),
    ("code", """A1 = textbook.activation_forward("sigmoid", Z_textbook)
Y = np.eye(2)[y]
dZ2 = textbook.output_delta("cross_entropy", reference.activation_forward("softmax", A1 @ W2 + b2), Y)  # B8
G = textbook.per_example_weight_grads(A1, dZ2)            # (m, n_1, n_2): one dW(i) per example
i, j, k = 0, 1, 0
terms = [dZ2[i, p] * A1[i, q] * (q == j) * (p == k) for p in range(2) for q in range(4)]
print("nonzero terms:", [t for t in terms if t != 0.0], "= A1[0,1] * dZ2[0,0] =", A1[i, j] * dZ2[i, k])
_, dW2, _ = textbook.dense_backward(dZ2, A1, W2)          # B2
assert np.abs(G.mean(axis=0) - dW2).max() < float64_tol
assert np.abs(G - reference.per_example_weight_grads(A1, dZ2)).max() < float64_tol"""),
    ("md", """## B4 and B5, and B6 their composition

B4 carries the delta down through the weights of the layer above, `dA[1] = dZ[2] @ W[2].T`; B5 multiplies by
`g'(Z[1])` element by element (the sum over `r` collapses on `delta(r,p)`). Column convention:
`dA_col = W_col.T @ dZ_col`."""),
    ("code", """dA1, _, _ = textbook.dense_backward(dZ2, A1, W2)            # B4
dZ1 = textbook.activation_backward("sigmoid", dA1, Z_textbook, A1)  # B5
dZ1_numpy = (dZ2 @ W2.T) * A1 * (1 - A1)                       # B6 in one matrix formula
dA1_col, _, _ = col.dense_backward(dZ2.T.copy(), A1.T.copy(), W2.T.copy())
assert np.abs(dZ1 - dZ1_numpy).max() < float64_tol and np.abs(dA1_col - dA1.T).max() < float64_tol
print(dZ1)"""),
    ("md", """## The whole walk, and the gradients against finite differences

`loopgrad.explain.explain` runs every equation of a model forward and backward, loops beside NumPy."""),
    ("code", """from loopgrad.explain import explain

for convention in ("row", "col"):
    steps = [s for s in explain(model, X, y, convention=convention) if not s.data]
    print(convention, " ".join(f"{s.equation}:{s.max_abs_diff:.0e}" for s in steps))
    assert all(s.max_abs_diff < float64_tol for s in steps)
print("gradcheck:", lg.gradcheck(model, X, y))
assert lg.gradcheck(model, X, y) < 1e-6"""),
    ("md", """## A figure: per-example gradient norms (N1) while training

N1 gives each example's gradient norm, `(||A_prev[i]||^2 + 1) ||dZ[i]||^2` summed over layers, without forming
any `dW(i)`. On the digits, the norms shrink as the network learns."""),
    ("code", """import matplotlib.pyplot as plt
from loopgrad import datasets

d = datasets.load("digits", dtype="float64")
net = datasets.model_for(d, hidden=(32,), dtype="float64")
before = net.per_example_grad_norms(d.X_test, d.y_test)
net.fit(d.X_train, d.y_train, epochs=10, progress=False)
after = net.per_example_grad_norms(d.X_test, d.y_test)
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist([before, after], bins=30, label=["before training", "after 10 epochs"])
ax.set_xlabel("||g(i)||, per test example (N1)"); ax.set_yscale("log"); ax.legend()
assert np.median(after) < np.median(before)"""),
]


def main():
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in CELLS]
    nbformat.write(nb, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

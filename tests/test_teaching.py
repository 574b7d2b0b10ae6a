import doctest
import pathlib

import numpy as np
import pytest

import loopgrad as lg
from loopgrad import kernels, reference
from loopgrad.cli import main
from loopgrad.explain import explain
from loopgrad.kernels import col as kcol
from loopgrad.reference import col as rcol

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("m,n_in,n_out", [(1, 1, 1), (5, 4, 3), (17, 9, 6)])
def test_column_quantities_are_transposes_of_row_ones(dtype, tol, m, n_in, n_out):
    rng = np.random.default_rng(m)
    A = rng.standard_normal((m, n_in)).astype(dtype)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    dZ = rng.standard_normal((m, n_out)).astype(dtype)
    Y = np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, m)]
    for mod in (kcol, rcol):
        np.testing.assert_allclose(mod.dense_forward(A.T, W.T, b), kernels.dense_forward(A, W, b).T, atol=tol)
        for c, r in zip(mod.dense_backward(dZ.T, A.T, W.T), kernels.dense_backward(dZ, A, W)):
            np.testing.assert_allclose(c, r.T, atol=tol)
        for act in ("relu", "gelu", "softmax"):
            Z = kernels.dense_forward(A, W, b)
            Ar = kernels.activation_forward(act, Z)
            np.testing.assert_allclose(mod.activation_forward(act, Z.T), Ar.T, atol=tol)
            np.testing.assert_allclose(mod.activation_backward(act, dZ.T, Z.T, Ar.T),
                                       kernels.activation_backward(act, dZ, Z, Ar).T, atol=tol)
        assert abs(mod.loss_forward("cross_entropy", dZ.T, Y.T) - kernels.loss_forward("cross_entropy", dZ, Y)) < tol
        np.testing.assert_allclose(mod.output_delta("squared_error", dZ.T, Y.T), (dZ - Y).T, atol=tol)
        np.testing.assert_allclose(mod.per_example_weight_grads(A.T, dZ.T),
                                   kernels.per_example_weight_grads(A, dZ).transpose(0, 2, 1), atol=tol)
        np.testing.assert_allclose(mod.per_example_sq_norms(A.T, dZ.T), kernels.per_example_sq_norms(A, dZ),
                                   rtol=tol)


def test_col_params_are_writable_transposed_views():
    m = lg.MLP([3, 4, 2])
    (Wc, bc), _ = m.col_params
    assert Wc.shape == (4, 3)
    Wc[1, 2] = 7.0
    assert m.params[0][0][2, 1] == 7.0


@pytest.mark.parametrize("convention", ["row", "col"])
@pytest.mark.parametrize("hidden", ["sigmoid", "relu", "softmax"])
def test_explain_walk(convention, hidden):
    rng = np.random.default_rng(0)
    model = lg.MLP([3, 4, 2, 3], hidden=hidden, output="softmax")
    X, y = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    steps = explain(model, X, y, convention=convention)
    data = [s.equation for s in steps if s.data]
    assert data == ["X", "Y", "W[1]", "b[1]", "W[2]", "b[2]", "W[3]", "b[3]"]  # a student can redo any entry
    eqs = [s.equation for s in steps if not s.data]
    assert eqs[:2] == ["F1", "F3" if hidden == "softmax" else "F2"]
    assert eqs[eqs.index("B8") + 1] == "B1" and eqs[-4:] == ["N1", "N2", "T", "1/m"]
    assert eqs.count("B2") == 3 and eqs.count("B4") == 2 and eqs.count("B6") == 2
    # B6 follows its two halves, B4 then B5 (or B7 through a softmax)
    assert all(eqs[k - 2] == "B4" and eqs[k - 1] in ("B5", "B7") for k, e in enumerate(eqs) if e == "B6")
    assert all(s.max_abs_diff < 1e-12 for s in steps)
    J, grads = model.gradients(X, y)
    dW1 = [s for s in steps if s.equation == "B2"][-1].loop
    np.testing.assert_allclose(dW1 if convention == "row" else dW1.T, grads[0][0], atol=1e-14)
    np.testing.assert_allclose([s for s in steps if s.equation == "N1"][0].loop, model.per_example_grad_norms(X, y))


def test_explain_cli_fits_80_columns(capsys):
    for conv in ("row", "col"):
        assert main(["explain", "--convention", conv]) == 0
        out = capsys.readouterr().out
        assert "(m, n_0) x (n_0, n_1)" in out or "(n_1, n_0) x (n_0, m)" in out
        assert max(len(line) for line in out.splitlines()) <= 80
    assert main(["explain", "--format", "markdown", "--sizes", "4", "5", "3", "--activation", "gelu"]) == 0
    assert capsys.readouterr().out.startswith("# loopgrad explain")


def test_tutorial_runs():
    result = doctest.testfile(str(ROOT / "docs" / "tutorial.md"), module_relative=False,
                              optionflags=doctest.ELLIPSIS)
    assert result.attempted > 20 and result.failed == 0


def test_tutorial_figures(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "docs" / "make_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(tmp_path)
    for name in ("loss_curve.png", "per_example_norms.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("convention", ["row", "col"])
def test_explain_shows_the_kronecker_delta_collapse_with_numbers(convention):
    """B1 for one entry: every term of the double sum over p, q is listed; exactly one survives and
    it equals A_prev[i,j] * dZ[i,k]; the whole per-example gradient is the outer product."""
    rng = np.random.default_rng(1)
    model = lg.MLP([3, 4, 2], hidden="tanh", output="softmax")
    X, y = rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
    b1, = [s for s in explain(model, X, y, convention=convention) if s.equation == "B1"]
    terms = [n for n in b1.notes if n.strip().startswith("p=")]
    assert len(terms) == min(2 * 4, 8) and sum("survives" in t for t in terms) == 1
    survivor = float(next(t for t in terms if "survives" in t).split("= ")[1].split()[0])
    assert survivor == pytest.approx(float(b1.vector[0, 0]), abs=1e-4)
    assert all(float(t.split("= ")[1].split()[0]) == 0.0 for t in terms if "survives" not in t)
    assert b1.max_abs_diff < 1e-12


def test_explain_one_over_m_and_the_transposition_map():
    rng = np.random.default_rng(2)
    model = lg.MLP([3, 4, 5, 2], hidden="relu", output="softmax")
    X, y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    steps = {s.equation: s for s in explain(model, X, y)}
    assert steps["1/m"].max_abs_diff < 1e-14          # 1/m in B2, or once in dZ[L]: the same dW[1]
    assert "m^-(L-1) = 0.02778" in steps["1/m"].notes[0]  # at every layer: 6^-2
    assert steps["T"].max_abs_diff < 1e-14            # column loops' Z, transposed, is the row loops' Z
    assert steps["N2"].max_abs_diff < 1e-14


def test_explain_one_equation_from_the_cli(capsys):
    assert main(["explain", "--equation", "B1"]) == 0
    out = capsys.readouterr().out
    assert "[B1]" in out and "[F1]" not in out and "survives" in out
    assert main(["explain", "--equation", "Q1"]) == 2
    assert "--equation: expected some of" in capsys.readouterr().err


def test_the_walkthrough_notebook_runs():
    """docs/walkthrough.ipynb, executed cell by cell by nbmake; its cells assert what they show."""
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake",
                          str(root / "docs" / "walkthrough.ipynb")], capture_output=True, text=True, timeout=900,
                         cwd=root)
    assert out.returncode == 0, out.stdout[-4000:]

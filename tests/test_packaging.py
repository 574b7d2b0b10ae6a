"""Structure the brief asks for: no matrix products in the loop kernels, equations cited, caching."""
import ast
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import loopgrad

KERNELS = pathlib.Path(loopgrad.__file__).parent / "kernels"


def _kernel_files():
    return sorted(KERNELS.rglob("*.py"))


def test_no_matrix_products_or_axis_sums_in_loop_kernels():
    for f in _kernel_files():
        for node in ast.walk(ast.parse(f.read_text())):
            assert not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult)), f"{f}:{node.lineno} uses @"
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                assert name not in {"dot", "matmul", "einsum", "tensordot", "sum"}, f"{f}:{node.lineno} calls {name}"


def test_public_kernels_cite_an_equation():
    for f in _kernel_files():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                doc = ast.get_docstring(node) or ""
                assert re.search(r"\b[FBN][0-9]\b", doc), f"{f.name}:{node.name} cites no equation"


def _public_functions(path):
    """{name: (arg names, defaults)} of the module-level public functions of a file."""
    out = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            args = node.args
            out[node.name] = ([a.arg for a in args.posonlyargs + args.args + args.kwonlyargs],
                              [ast.dump(d) for d in args.defaults + [d for d in args.kw_defaults if d]])
    return out


def test_reference_mirrors_kernels_file_for_file_name_for_name():
    """Every public kernel file has a twin file; every public function in it has a twin of the same
    name and signature. Private modules (``_gemm.py``: the tuned products) keep their naive forms
    beside them instead."""
    ref = KERNELS.parent / "reference"
    public = {p.name for p in KERNELS.glob("*.py") if not p.name.startswith("_") or p.name == "__init__.py"}
    assert public == {p.name for p in ref.glob("*.py")}
    for name in sorted(public - {"__init__.py"}):
        assert _public_functions(KERNELS / name) == _public_functions(ref / name), name


def test_reference_imports_nothing_from_kernels():
    """An oracle must not depend on what it checks."""
    for f in (KERNELS.parent / "reference").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "kernels" not in (node.module or ""), f"{f.name}:{node.lineno} imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any("kernels" in a.name for a in node.names), f"{f.name}:{node.lineno}"


def test_only_layout_knows_buffer_offsets():
    """The offset columns of the buffer tables are read in layout.py and nowhere else."""
    names = re.compile(r"\b(W_OFF|B_OFF|Z_OFF|A_OFF|DZ_OFF|work_size|work_views)\b")
    for f in KERNELS.parent.rglob("*.py"):
        if f.name != "layout.py":
            assert not names.search(f.read_text()), f


def test_numba_options_live_in_one_place():
    for f in (KERNELS.parent).rglob("*.py"):
        if f.name != "_numba.py":
            text = f.read_text()
            assert "fastmath=" not in text and "cache=True" not in text and "@njit" not in text, f
    text = (KERNELS.parent / "_numba.py").read_text()
    assert '"nnan"' not in text.split('"""')[-1] and '"ninf"' not in text.split('"""')[-1]


@pytest.mark.own_cache
def test_runs_from_a_read_only_install(tmp_path):
    """Copy the package to a read-only folder: the kernels still compile and run (numba falls back to
    a user cache directory)."""
    site = tmp_path / "site"
    shutil.copytree(KERNELS.parent, site / "loopgrad", ignore=shutil.ignore_patterns("__pycache__"))
    for p in [site, *site.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    env = dict(os.environ, PYTHONPATH=str(site), NUMBA_CACHE_DIR=str(tmp_path / "user-cache"))
    code = ("import numpy as np, loopgrad; m = loopgrad.MLP([3, 4, 2], dtype='float32');"
            "print(m.loss(np.ones((2, 3)), [0, 1]), loopgrad.__file__)")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    finally:
        for p in [site, *site.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert out.returncode == 0, out.stderr[-2000:]
    assert str(site) in out.stdout
    assert not list(site.rglob("*.nbi"))  # nothing was written into the install
    assert list((tmp_path / "user-cache").rglob("*.nbi"))


def test_import_is_light_and_names_load_on_first_use():
    """``import loopgrad`` (and the command's parser: --help, --version) brings NumPy, not numba (about
    half a second here) nor scikit-learn; ``MLP`` and the other names resolve without numba too (the
    ahead-of-time tier runs without it), ``loopgrad.kernels`` imports it, and every documented name resolves."""
    code = ("import sys, loopgrad, loopgrad.cli\n"
            "loopgrad.cli.build_parser()\n"
            "light = not any(m in sys.modules for m in ('numba', 'sklearn', 'scipy', 'matplotlib', 'loopgrad.model'))\n"
            "names = [getattr(loopgrad, n) for n in loopgrad.__all__]\n"
            "no_numba_yet = 'numba' not in sys.modules  # MLP and the model run without it on the AOT tier\n"
            "print(light, no_numba_yet, loopgrad.kernels.__name__, 'numba' in sys.modules, callable(loopgrad.gradcheck),\n"
            "      sorted(set(loopgrad.__all__) - set(dir(loopgrad))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "loopgrad.kernels", "True", "True", "[]"], out
    try:
        loopgrad.no_such_name
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown attribute must raise AttributeError")

"""Every reference to the math and to files of the project resolves inside the repository."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MATH = ROOT / "docs" / "math.md"
CITING = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("src/loopgrad/**/*.py"),
                 *ROOT.glob("tests/*.py"), *ROOT.glob("bench/*.py")])
CITING.remove(pathlib.Path(__file__).resolve())  # this file names bad citations on purpose


def _defined_equations():
    """Equation numbers that docs/math.md defines: each appears in bold as **F1:** ... ."""
    return set(re.findall(r"\*\*([FBN]\d+)[:.]", MATH.read_text()))


def test_math_reference_defines_every_equation():
    assert _defined_equations() == {"F1", "F2", "F3", *(f"B{k}" for k in range(1, 9)), "N1", "N2"}


@pytest.mark.parametrize("path", CITING, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_equations_exist(path):
    defined = _defined_equations()
    cited = set(re.findall(r"(?<![\w/.-])([FBN]\d{1,2})(?![\w])", path.read_text()))
    assert cited <= defined, f"{path.name} cites {sorted(cited - defined)}, not in docs/math.md"


@pytest.mark.parametrize("path", CITING, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_files_exist(path):
    text = path.read_text()
    for ref in re.findall(r"(?<![\w/.])((?:docs|src|tests|bench|\.ci)/[\w./-]+\.(?:md|py|png|ipynb)|MATH\.md|math\.md)",
                          text):
        if ref in ("MATH.md", "math.md"):
            pytest.fail(f"{path.name} cites {ref} without its folder: the math is docs/math.md")
        assert (ROOT / ref).exists(), f"{path.name} cites {ref}, which does not exist"


def test_the_scikit_learn_parity_table_is_current():
    """docs/sklearn_parity.md is what tools/make_parity.py writes from the classes now, and it lists
    nothing as missing."""
    import importlib.util
    root = pathlib.Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("make_parity", root / "tools" / "make_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.render()
    assert "**missing**" not in text
    stored = (root / "docs" / "sklearn_parity.md").read_text()
    import sklearn
    if f"Against scikit-learn {sklearn.__version__}." in stored:  # another version: the table above still checks
        assert stored == text, "run python tools/make_parity.py"

"""pyproject.toml says what the requirement files say: `pip install .` gets what minivit needs."""

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def requirements(name: str) -> set[str]:
    """The requirements a file lists itself (comments and -r includes left out), spaces removed."""
    lines = (line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines())
    return {re.sub(r"\s+", "", line) for line in lines if line and not line.startswith("-r")}


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_dependencies_are_requirements_txt():
    assert set(project()["dependencies"]) == requirements("requirements.txt")


@pytest.mark.parametrize("extra,file_name", [("dev", "requirements-dev.txt"), ("gpu", "requirements-gpu.txt"),
                                             ("distributed", "requirements-distributed.txt"),
                                             ("lessons", "requirements-lessons.txt")])
def test_each_extra_is_its_requirement_file(extra, file_name):
    assert set(project()["optional-dependencies"][extra]) == requirements(file_name)


def test_the_cuda_sources_ship_with_the_package():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*.cu" in data["minivit.kernels.gpu"] and "*.cuh" in data["minivit.kernels.gpu"]
    assert list((ROOT / "minivit" / "kernels" / "gpu").glob("*.cu"))


# --- the lessons' light requirements ------------------------------------------------------------------

OPTIONAL_FOR_LESSONS = {"torch", "cupy", "cupyx", "mpi4py", "transformers", "timm"}  # each cell copes without
LOCAL_MODULES = {"minivit", "support", "build", "hf_reference", "synthetic_data"}
DISTRIBUTION = {"PIL": "pillow", "IPython": "ipython", "yaml": "pyyaml"}  # import name -> what pip installs


def all_requirements(name: str) -> set[str]:
    """The package names a requirement file installs, its -r includes followed."""
    names = set()
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r"):
            names |= all_requirements(line[2:].strip())
        elif line:
            names.add(re.split(r"[<>=!~\[;\s]", line)[0].lower())
    return names


def top_level_imports(path: Path) -> dict[str, bool]:
    """{module: whether some import of it at the top level is outside a try} for the imports a module
    (a lesson's cells) runs when it is run, not those inside functions."""
    found: dict[str, bool] = {}

    def visit(nodes, in_try: bool) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if node.level == 0 else []
                for name in names:
                    root = name.split(".")[0]
                    found[root] = found.get(root, False) or not in_try
            elif isinstance(node, ast.Try):
                copes = any(handler.type is None or "ImportError" in ast.unparse(handler.type)
                            or "Exception" in ast.unparse(handler.type) for handler in node.handlers)
                visit(node.body, in_try or copes)
                for part in (node.orelse, node.finalbody, *[handler.body for handler in node.handlers]):
                    visit(part, in_try)
            elif isinstance(node, (ast.If, ast.For, ast.While, ast.With)):
                visit(node.body, in_try)
                visit(getattr(node, "orelse", []), in_try)

    visit(ast.parse(path.read_text()).body, False)
    return found


LESSON_FILES = (sorted((ROOT / "lessons" / "src").glob("*.py")) + sorted((ROOT / "lessons").glob("*.py"))
                + sorted((ROOT / "lessons" / "support").glob("*.py")))


@pytest.mark.parametrize("path", LESSON_FILES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_requirements_lessons_holds_what_the_lessons_import(path):
    """A learner installs requirements-lessons.txt (no torch, CuPy or MPI: 2.3 GB less); a lesson may
    import those only where it copes without them (inside a try that catches the ImportError)."""
    installed = all_requirements("requirements-lessons.txt")
    assert not installed & OPTIONAL_FOR_LESSONS, "the lessons' requirements must stay light"
    for module, unguarded in top_level_imports(path).items():
        if module in sys.stdlib_module_names or module in LOCAL_MODULES:
            continue
        if module in OPTIONAL_FOR_LESSONS:
            assert not unguarded, f"{path.name} imports {module} at the top level: guard it (try/except ImportError)"
            continue
        assert DISTRIBUTION.get(module, module).lower() in installed, \
            f"{path.name} imports {module}, which requirements-lessons.txt does not install"


def test_the_import_scanner_tells_guarded_from_unguarded(tmp_path):
    source = tmp_path / "lesson.py"
    source.write_text("import numpy as np\nfrom matplotlib import pyplot\ntry:\n    import torch\nexcept ImportError:\n"
                      "    torch = None\nimport cupy\n\ndef later():\n    import mpi4py\n")
    assert top_level_imports(source) == {"numpy": True, "matplotlib": True, "torch": False, "cupy": True}
    lesson_10 = top_level_imports(ROOT / "lessons" / "src" / "10_pretrain_finetune.py")
    assert lesson_10["torch"] is False and lesson_10["numpy"] is True

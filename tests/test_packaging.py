"""pyproject.toml says what the requirement files say: `pip install .` gets what minivit needs."""

import re
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
                                             ("distributed", "requirements-distributed.txt")])
def test_each_extra_is_its_requirement_file(extra, file_name):
    assert set(project()["optional-dependencies"][extra]) == requirements(file_name)


def test_the_cuda_sources_ship_with_the_package():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*.cu" in data["minivit.kernels.gpu"] and "*.cuh" in data["minivit.kernels.gpu"]
    assert list((ROOT / "minivit" / "kernels" / "gpu").glob("*.cu"))

"""On PYTHONPATH, this makes a light environment (requirements-lessons.txt): the packages below
import as if they were not installed. tests/test_lessons_light.py runs lessons in it."""

import sys

HIDDEN = ("torch", "cupy", "cupyx", "mpi4py", "transformers", "timm", "nvidia")


class _Hidden:
    """A light environment: these packages are not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden: a light environment)", name=name)
        return None


sys.meta_path.insert(0, _Hidden())

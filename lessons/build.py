"""Build the lesson notebooks from their sources, and run them.

    python lessons/build.py              # build every .ipynb and run it top to bottom (real data)
    python lessons/build.py --no-run     # build without running
    python lessons/build.py 04 --fast    # one lesson, fast mode, solutions switched in

Sources live in lessons/src/NN_name.py in jupytext's "percent" format: a line ``# %%``
starts a code cell, ``# %% [markdown]`` a Markdown cell whose lines start with ``# ``.
jupytext (https://jupytext.readthedocs.io) reads them; with it installed, Jupyter also opens
a source as a notebook (right-click, "Open With", "Notebook"). The committed notebooks are
the output of ``python lessons/build.py`` with MINIVIT_SOLUTIONS=1, on real CIFAR-10.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def build(source: Path):
    """The notebook of one percent-format source, without outputs."""
    import jupytext
    import nbformat

    notebook = jupytext.reads(Path(source).read_text(), fmt="py:percent")
    notebook.metadata = nbformat.from_dict({
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    for cell in notebook.cells:
        cell.metadata = nbformat.from_dict({})  # jupytext's layout hints (blank lines) mean nothing here
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(notebook)
    return notebook


def run(notebook, timeout: int = 1800):
    """Execute ``notebook`` in place, from lessons/ (where a learner's Jupyter runs it)."""
    from nbclient import NotebookClient

    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(HERE)}})
    client.execute()
    return notebook


def main(argv=None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers or names (default: all)")
    parser.add_argument("--no-run", action="store_true")
    parser.add_argument("--fast", action="store_true", help="MINIVIT_FAST=1")
    parser.add_argument("--out", default=str(HERE), help="where to write the notebooks")
    args = parser.parse_args(argv)

    os.environ.setdefault("MINIVIT_SOLUTIONS", "1")
    if args.fast:
        os.environ["MINIVIT_FAST"] = "1"
    # the kernel imports minivit and lesson_support from this checkout (after an explicit PYTHONPATH)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []) + [str(REPO), str(HERE)])
    sources = sorted((HERE / "src").glob("[0-9][0-9]_*.py"))
    if args.lessons:
        sources = [s for s in sources if any(s.stem.startswith(k) or k in s.stem for k in args.lessons)]
    for source in sources:
        started = time.perf_counter()
        notebook = build(source)
        target = Path(args.out) / f"{source.stem}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not args.no_run:
                run(notebook)
        finally:  # a failed run is written too, to be read where it stopped
            nbformat.write(notebook, target)
        print(f"{target.name}: {len(notebook.cells)} cells, {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

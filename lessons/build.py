"""Build the lesson notebooks from their sources, and run them.

    python lessons/build.py              # build every .ipynb and run it top to bottom (real data)
    python lessons/build.py --no-run     # build without running
    python lessons/build.py 04 --fast    # one lesson, fast mode, solutions switched in

Sources live in lessons/src/NN_name.py in the "percent" format: a line ``# %%``
starts a code cell, ``# %% [markdown]`` a Markdown cell whose lines start with ``# ``.
The committed notebooks are the output of ``python lessons/build.py`` with
MINIVIT_SOLUTIONS=1, on real CIFAR-10.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_percent(text: str) -> list[tuple[str, str]]:
    cells, kind, lines = [], None, []

    def flush():
        if kind is not None:
            body = "\n".join(lines).strip("\n")
            if body:
                cells.append((kind, body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def build(source: Path):
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, body in parse_percent(source.read_text()):
        cell = nbformat.v4.new_markdown_cell(body) if kind == "markdown" else nbformat.v4.new_code_cell(body)
        notebook.cells.append(cell)
    return notebook


def run(notebook, timeout: int = 1800):
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
    sources = sorted((HERE / "src").glob("[0-9][0-9]_*.py"))
    if args.lessons:
        sources = [s for s in sources if any(s.stem.startswith(k) or k in s.stem for k in args.lessons)]
    for source in sources:
        started = time.perf_counter()
        notebook = build(source)
        if not args.no_run:
            run(notebook)
        target = Path(args.out) / f"{source.stem}.ipynb"
        nbformat.write(notebook, target)
        print(f"{target.name}: {len(notebook.cells)} cells, {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

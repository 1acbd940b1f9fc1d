"""Build the lesson notebooks from their sources, and run them.

    python lessons/build.py              # build every .ipynb and run it top to bottom (real data)
    python lessons/build.py --no-run     # build without running
    python lessons/build.py 04 --fast    # one lesson, fast mode, solutions switched in
    python lessons/build.py 07 --markdown-only   # prose only: new Markdown, code and outputs kept

Sources live in lessons/src/NN_name.py in jupytext's "percent" format: a line ``# %%``
starts a code cell, ``# %% [markdown]`` a Markdown cell whose lines start with ``# ``.
jupytext (https://jupytext.readthedocs.io) reads them; with it installed, Jupyter also opens
a source as a notebook (right-click, "Open With", "Notebook"). The committed notebooks are
the output of ``python lessons/build.py`` with MINIVIT_SOLUTIONS=1, on real CIFAR-10.

``--markdown-only`` lands a change of prose without a full run (some lessons take half an hour):
where a lesson's code cells are exactly those of its committed notebook, it copies the source's
Markdown cells into that notebook and keeps every code cell and its outputs. Where any code cell
differs, it refuses: outputs of other code would be wrong, so the lesson must be rebuilt in full.
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


class CodeChanged(ValueError):
    """A lesson's code differs from its committed notebook's: only a full build may update it."""


def sync_markdown(source: Path, committed):
    """``committed`` (a notebook with outputs) with the Markdown cells of ``source`` and its own code
    cells and outputs, unchanged. Raises CodeChanged unless the source's cells are the committed
    notebook's, in number, order and kind, with the same code-cell sources."""
    built = build(source)
    rebuild = f"rebuild it in full (python lessons/build.py {Path(source).stem[:2]})"
    if [cell.cell_type for cell in built.cells] != [cell.cell_type for cell in committed.cells]:
        raise CodeChanged(f"{Path(source).name} has {len(built.cells)} cells where its notebook has "
                          f"{len(committed.cells)}, or cells of another kind: {rebuild}.")
    for number, (new, old) in enumerate(zip(built.cells, committed.cells), start=1):
        if new.cell_type == "code" and new.source != old.source:
            first_line = next((line for line in new.source.splitlines() if line.strip()), "")
            raise CodeChanged(f"{Path(source).name}: code cell {number} ({first_line[:60]!r}) differs from its "
                              f"notebook's, whose outputs it would no longer match: {rebuild}.")
    for new, old in zip(built.cells, committed.cells):
        if new.cell_type == "markdown":
            old.source = new.source
    return committed


def run(notebook, timeout: int = 1800):
    """Execute ``notebook`` in place, from lessons/ (where a learner's Jupyter runs it)."""
    from nbclient import NotebookClient

    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(HERE)}})
    client.execute()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = settled_streams(cell.outputs)
    return notebook


def settled_streams(outputs: list) -> list:
    """The cell's outputs with each run of stream outputs (stdout or stderr) joined into one and every
    line reduced to what a terminal shows after its carriage returns: a progress bar redrawn hundreds
    of times is kept as its last state, as Jupyter displays it, not as hundreds of outputs."""
    settled = []
    for output in outputs:
        if (output.get("output_type") == "stream" and settled and settled[-1].get("output_type") == "stream"
                and settled[-1].get("name") == output.get("name")):
            settled[-1]["text"] += output["text"]
        else:
            settled.append(output)
    for output in settled:
        if output.get("output_type") == "stream" and "\r" in output["text"]:
            lines = output["text"].split("\n")
            output["text"] = "\n".join(line.rstrip("\r").split("\r")[-1] for line in lines)
    return settled


def main(argv=None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers or names (default: all)")
    parser.add_argument("--no-run", action="store_true")
    parser.add_argument("--fast", action="store_true", help="MINIVIT_FAST=1")
    parser.add_argument("--markdown-only", action="store_true",
                        help="copy the Markdown into the committed notebooks, keeping code and outputs; "
                             "refuses a lesson whose code changed")
    parser.add_argument("--out", default=str(HERE), help="where to write the notebooks")
    args = parser.parse_args(argv)
    if args.markdown_only and (args.no_run or args.fast):
        parser.error("--markdown-only runs nothing: it takes neither --no-run nor --fast")

    os.environ.setdefault("MINIVIT_SOLUTIONS", "1")
    if args.fast:
        os.environ["MINIVIT_FAST"] = "1"
    # the kernel imports minivit and the lessons' support package from this checkout (after an explicit PYTHONPATH)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []) + [str(REPO), str(HERE)])
    sources = sorted((HERE / "src").glob("[0-9][0-9]_*.py"))
    if args.lessons:
        sources = [s for s in sources if any(s.stem.startswith(k) or k in s.stem for k in args.lessons)]
    refused = 0
    for source in sources:
        target = Path(args.out) / f"{source.stem}.ipynb"
        if args.markdown_only:
            if not target.is_file():
                print(f"{target.name}: no notebook to update; build it in full", file=sys.stderr)
                refused += 1
                continue
            try:
                notebook = sync_markdown(source, nbformat.read(target, as_version=4))
            except CodeChanged as error:
                print(f"{target.name}: not updated. {error}", file=sys.stderr)
                refused += 1
                continue
            nbformat.write(notebook, target)
            print(f"{target.name}: Markdown copied from {source.name}; code and outputs kept", flush=True)
            continue
        started = time.perf_counter()
        notebook = build(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not args.no_run:
                run(notebook)
        finally:  # a failed run is written too, to be read where it stopped
            nbformat.write(notebook, target)
        print(f"{target.name}: {len(notebook.cells)} cells, {time.perf_counter() - started:.0f} s", flush=True)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())

"""How a data error names what its reader can change: ``--data-dir`` and ``--download`` on the
command line; in a notebook, where there are no flags, ``MINIVIT_DATA_DIR`` (the lessons' setting,
``lessons/support/data.py``) and the lessons' download into ``data/``.

    wording()      the Wording that fits the caller now (a Jupyter kernel, or anything else)
    shown(path)    a path as a message shows it: whole on the command line; in a notebook, whose
                   outputs are kept and shared, relative to the notebook's folder or as .../parent/name
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Wording:
    folder: str      # how a data folder is named: "--data-dir DIR"
    point_at: str    # "point --data-dir at"
    download: str    # how to have CIFAR-10 downloaded
    get_again: str   # how to download it again

    def name(self, folder) -> str:
        return self.folder.format(folder)


COMMAND_LINE = Wording(folder="--data-dir {}", point_at="point --data-dir at",
                       download="pass --download to fetch CIFAR-10 from its official address",
                       get_again="Download it again (--download)")
NOTEBOOK = Wording(folder="The data folder {}", point_at="set MINIVIT_DATA_DIR to",
                   download="leave MINIVIT_DATA_DIR unset to have the lessons download CIFAR-10 into data/",
                   get_again="Remove it and leave MINIVIT_DATA_DIR unset to download it again")


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (IPython's ZMQInteractiveShell)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def wording() -> Wording:
    return NOTEBOOK if in_notebook() else COMMAND_LINE


def shown(path) -> str:
    path = Path(path)
    if not in_notebook():
        return str(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return f".../{path.parent.name}/{path.name}"

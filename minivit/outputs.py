"""Files a command writes where its user says: never over an existing file without ``--overwrite``.

The same promise the run folders keep (``minivit.training.run_folder``): a figure, an
export or a report that would replace a file already there is refused before any work
starts, naming the file and the flag that allows it. The one exception is a file the
command itself names inside a minivit run folder (one holding ``minivit.lock``), such as
evaluate's ``confusion-test.png`` beside the checkpoint: that is the run's own output and
is refreshed.

    check_new_files(paths, option, overwrite)   refuse (WouldOverwrite) unless none exists
    in_run_folder(path)                         whether ``path`` lies directly in a run folder
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

RUN_FOLDER_MARK = "minivit.lock"  # minivit.training.run_folder.LOCK_NAME: every run leaves it behind


class WouldOverwrite(ValueError):
    """An output path that already holds a file, and no --overwrite."""


def in_run_folder(path: str | Path) -> bool:
    """Whether ``path`` sits directly in a minivit run folder."""
    return (Path(path).parent / RUN_FOLDER_MARK).is_file()


def check_new_files(paths: Iterable[str | Path], option: str, overwrite: bool = False,
                    flag: str = "--overwrite") -> list[Path]:
    """``paths`` as Paths, or WouldOverwrite naming those that exist (``option``: the option that
    chooses where they go, e.g. ``--out``). With ``overwrite`` everything is allowed."""
    paths = [Path(path) for path in paths]
    if overwrite:
        return paths
    existing = [path for path in paths if path.exists()]
    if existing:
        shown = ", ".join(str(path) for path in existing[:4]) + (" ..." if len(existing) > 4 else "")
        one = len(existing) == 1
        raise WouldOverwrite(f"{shown} already exist{'s' if one else ''}: nothing was written. Pass {flag} to "
                             f"replace {'it' if one else 'them'}, or choose another {option}.")
    return paths

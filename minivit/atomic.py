"""Replacing a file atomically: every file minivit writes goes through here.

    atomic_write(path, write)        write(file) fills a temporary file; it then replaces ``path``
    atomic_write_bytes / _text       the same for bytes or text
    atomic_write_path(path, write)   write(temporary_path), for libraries that want a path

(An .npz: ``atomic_write(path, lambda file: numpy.savez(file, **arrays))``.)

The temporary file sits in the target's folder (a rename across file systems is
not atomic), is named ``.<name>.<pid>.<random>.tmp``, is flushed to the disk, and
is renamed over ``path``: a reader sees the old file or the new one, never half
of one. A failed write removes its temporary file; a process killed mid-write
(kill -9, power loss) leaves one behind, and the next write of the same file
removes it, because the process it names is gone. So temporary files never
accumulate.

The new file gets the mode an ordinary ``open(path, "w")`` would give it (0666
less the umask), not mkstemp's private 0600; ``mode=`` overrides that (data
caches use ``readable_like(folder)``).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], mode: int | None = None) -> Path:
    """Fill a temporary file with ``write(file)`` (a binary file object), then rename it to ``path``.

    If ``write`` raises, ``path`` is untouched and the temporary file is removed.
    """
    path = Path(path)
    return atomic_write_path(path, lambda temporary: _write_file(temporary, write), mode)


def atomic_write_path(path: str | Path, write: Callable[[Path], None], mode: int | None = None) -> Path:
    """As ``atomic_write``, for writers that take a path: ``write(temporary_path)``."""
    path = Path(path)
    remove_stale_temporaries(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        _fsync(temporary)
        os.chmod(temporary, normal_file_mode() if mode is None else mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    return atomic_write(path, lambda file: file.write(data), mode)


def atomic_write_text(path: str | Path, text: str, mode: int | None = None) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), mode)


# --- temporary files left by killed processes ---------------------------------------------------

def _temporary_pattern(name: str) -> re.Pattern:
    return re.compile(r"\." + re.escape(name) + r"\.(?P<pid>\d+)\.[^/]*\.tmp")


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporary files of ``path`` whose writing process no longer runs; returns them."""
    path = Path(path)
    pattern = _temporary_pattern(path.name)
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob_escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match and not process_is_alive(int(match["pid"])):
            try:
                candidate.unlink()
                removed.append(candidate)
            except OSError:
                pass  # someone else's file, or already gone
    return removed


def remove_stale_temporaries_in(folder: str | Path) -> list[Path]:
    """Remove every stale temporary file (of any target) in ``folder``."""
    removed = []
    pattern = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]*\.tmp")
    for candidate in Path(folder).glob(".*.tmp"):
        match = pattern.fullmatch(candidate.name)
        if match and not process_is_alive(int(match["pid"])):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def process_is_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (ours counts as alive)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is someone else's
    except OSError:
        return False
    return True


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


# --- file modes ---------------------------------------------------------------------------------

def normal_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def readable_like(folder: str | Path) -> int:
    """A file mode for a file in ``folder`` that whoever may list ``folder`` may also read:
    the normal mode plus the read bits the folder grants (a cache in a shared data folder)."""
    try:
        folder_read_bits = os.stat(folder).st_mode & 0o444
    except OSError:
        folder_read_bits = 0
    return normal_file_mode() | folder_read_bits


# --- helpers ------------------------------------------------------------------------------------

def _write_file(path: Path, write: Callable[[BinaryIO], None]) -> None:
    with open(path, "wb") as file:
        write(file)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as file:
        os.fsync(file.fileno())

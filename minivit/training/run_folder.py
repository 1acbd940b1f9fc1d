"""The run folder: where a run writes, what it may overwrite, and who may write there.

A run writes only into a folder that is
  * new (it is made), or empty, or
  * a minivit run folder: one holding ``minivit.lock``, the file every run leaves behind;
    a new run may start over in it only while it holds no checkpoint, and a run with a
    checkpoint continues only with ``--resume``.
Anything else (a folder holding other files, the current folder given as ``--out ""``,
a file) is refused before any work starts, with the folder and the option named.

``minivit.lock`` also keeps a second run out: the run holds an exclusive lock on it
(``fcntl.flock``) while it runs. The operating system drops that lock when the process
ends, however it ends (kill -9 included), so a crash leaves no lock to clean up; the
file's text (process id, host, start time) is only there for the error message.
Temporary files of writes a killed run left behind are removed when the folder is
claimed again.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from minivit.atomic import atomic_write_text, remove_stale_temporaries_in
from minivit.checkpoint import CheckpointError

LOCK_NAME = "minivit.lock"
CHECKPOINT_NAMES = ("checkpoint-last.npz", "checkpoint-best.npz")


class RunFolderError(ValueError):
    """A run folder that a run may not write into (not a run's, or in use by another run).

    (A folder that already holds a run, or holds none to resume, is a CheckpointError.)
    """


class RunFolder:
    """The files of one run: checkpoints, logs (metrics.jsonl, steps.jsonl), train_config.json, curves.png.

    ``claim()`` checks the folder and locks it; ``release()`` unlocks it.
    """

    def __init__(self, path: str | Path, option: str = "--out"):
        self.given = str(path)
        self.path = Path(path).expanduser()
        self.option = option
        self._lock_file = None
        self._made_folders: list[Path] = []  # the run folder and the parents that claim() made, innermost first

    # --- names ---
    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoint-last.npz"

    @property
    def best_checkpoint(self) -> Path:
        return self.path / "checkpoint-best.npz"

    @property
    def metrics_log(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def steps_log(self) -> Path:
        return self.path / "steps.jsonl"

    @property
    def config_file(self) -> Path:
        return self.path / "train_config.json"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    def describe(self) -> str:
        """How the folder is named in messages: the option as given, and where that is."""
        shown = repr(self.given) if self.given in ("", ".") else self.given
        where = f" (the current folder, {Path.cwd()})" if self.path.resolve() == Path.cwd().resolve() else ""
        return f"{self.option} {shown}{where}"

    # --- claiming ---
    def claim(self, resume: bool) -> RunFolder:
        """Check that a run may write here (see the module docstring), then lock the folder."""
        if resume:
            self.check_resumable()
        else:
            self._check_new()
        if not self.path.exists():
            missing = [folder for folder in (self.path, *self.path.parents) if not folder.exists()]
            try:
                self.path.mkdir(parents=True)
            except OSError as error:
                raise RunFolderError(f"Cannot make the run folder {self.describe()}: {error}.") from error
            self._made_folders = missing
        self._lock()
        remove_stale_temporaries_in(self.path)
        return self

    def _check_new(self) -> None:
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise RunFolderError(f"{self.describe()} is a file, not a folder: choose a new folder for the run.")
        entries = sorted(entry.name for entry in self.path.iterdir())
        checkpoints = [name for name in CHECKPOINT_NAMES if name in entries]
        if checkpoints:
            raise CheckpointError(
                f"{self.describe()} already holds a run ({checkpoints[0]}): continue it with --resume, or choose "
                "another --out. Nothing was overwritten.")
        if entries and LOCK_NAME not in entries:
            shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
            raise RunFolderError(
                f"{self.describe()} is not empty and not a minivit run folder (it holds {shown}): a run writes only "
                "into a new or empty folder, or into its own. Choose another --out. Nothing was written.")

    def check_resumable(self) -> None:
        if not self.last_checkpoint.is_file():
            raise CheckpointError(f"--resume: no checkpoint at {self.last_checkpoint}. Start the run without "
                                 "--resume, or point --out at the run folder to continue.")

    def _lock(self) -> None:
        path = self.path / LOCK_NAME
        try:
            lock_file = open(path, "a+")
        except OSError as error:
            raise RunFolderError(f"Cannot write to the run folder {self.describe()}: {error}.") from error
        try:
            _lock_exclusively(lock_file)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "another process"
            lock_file.close()
            raise RunFolderError(f"{self.describe()} is in use by another run ({holder}): wait for it to end, "
                                 "or choose another --out.") from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                    "started": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
        lock_file.flush()
        self._lock_file = lock_file

    def release(self, failed: bool = False) -> None:
        """Unlock. ``failed``: the run never started; the folders it made (``runs/`` of ``runs/x`` too)
        and left empty are removed."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
            if failed and self._made_folders:
                lock = self.path / LOCK_NAME
                if [entry.name for entry in self.path.iterdir()] == [LOCK_NAME]:
                    lock.unlink(missing_ok=True)
                    for folder in self._made_folders:
                        if any(folder.iterdir()):
                            break
                        folder.rmdir()

    @property
    def locked(self) -> bool:
        return self._lock_file is not None

    # --- logs ---
    def start_logs(self, config: dict, fresh: bool) -> None:
        """Write train_config.json; a fresh run (step 0) also drops its folder's earlier logs."""
        if fresh:
            for path in (self.metrics_log, self.steps_log, self.curves):
                path.unlink(missing_ok=True)
        atomic_write_text(self.config_file, json.dumps(config, indent=2))

    def append_steps(self, rows: list[dict]) -> None:
        with open(self.steps_log, "a") as log:
            log.write("".join(json.dumps(row) + "\n" for row in rows))

    def append_metrics(self, row: dict) -> None:
        with open(self.metrics_log, "a") as log:
            log.write(json.dumps(row) + "\n")

    def history(self, up_to_step: int) -> list[dict]:
        """The rows of metrics.jsonl up to a step (a resumed run repeats what came after)."""
        return [row for row in _read_rows(self.metrics_log) if row["step"] <= up_to_step]

    def truncate_steps(self, up_to_step: int) -> None:
        """Keep steps.jsonl's rows up to a step: the steps after the checkpoint will be run again."""
        if self.steps_log.is_file():
            kept = [row for row in _read_rows(self.steps_log) if row["step"] <= up_to_step]
            atomic_write_text(self.steps_log, "".join(json.dumps(row) + "\n" for row in kept))


def _read_rows(path: Path) -> list[dict]:
    """The JSON rows of a log; a last line cut short by a crash is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [row for row in rows if isinstance(row, dict) and "step" in row]


def _lock_exclusively(lock_file) -> None:
    """An exclusive, non-blocking lock that the operating system drops when the process ends."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(lock_file.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError as error:
            raise BlockingIOError from error
        return
    fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

"""Checkpoints: one .npz file, no pickle inside, written atomically.

Layout:
    meta                  a JSON string: format version, model config, training
                          options, step, epoch, best accuracy, normalisation,
                          class names and random-generator states
    model/<name>          every parameter (NumPy arrays)
    optimizer/<key>       the optimizer's state (step and moment buffers)

Written to a temporary file in the same folder, flushed to disk, then renamed
over the old one: a crash mid-write leaves the previous checkpoint whole.
Read with ``allow_pickle=False``, so a checkpoint cannot run code.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from minivit.config import ViTConfig

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or does not match what was asked for."""


def save_checkpoint(path: str | Path, model, optimizer=None, meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full_meta = {"format_version": FORMAT_VERSION, "config": model.config.to_dict(),
                 "dtype": model.dtype, **(meta or {})}
    arrays = {"meta": np.array(json.dumps(full_meta))}
    arrays.update({f"model/{name}": array for name, array in model.state_dict().items()})
    if optimizer is not None:
        for key, value in optimizer.state_dict().items():
            arrays[f"optimizer/{key}"] = np.asarray(value)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path) -> tuple[dict, dict, dict]:
    """(meta, model_state, optimizer_state) from a checkpoint file, all on the host."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            model_state = {k[len("model/"):]: archive[k] for k in archive.files if k.startswith("model/")}
            optimizer_state = {k[len("optimizer/"):]: archive[k] for k in archive.files
                               if k.startswith("optimizer/")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as error:
        raise CheckpointError(f"{path} is not a readable minivit checkpoint (corrupt or truncated: "
                              f"{type(error).__name__}: {error}).") from error
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format_version')!r}; this "
                              f"minivit reads format {FORMAT_VERSION}.")
    if "step" in optimizer_state:
        optimizer_state["step"] = int(optimizer_state["step"])
    return meta, model_state, optimizer_state


def load_checkpoint(path: str | Path, dtype: str | None = None):
    """The model saved in ``path``, weights loaded, in eval mode, ready to use.

    The checkpoint's metadata (normalisation, class names, ...) is on ``model.checkpoint_meta``.
    """
    from minivit.model import ViTForImageClassification

    meta, model_state, _ = read_checkpoint(path)
    config = ViTConfig.from_dict(meta["config"])
    model = ViTForImageClassification(config, dtype=dtype or meta.get("dtype", "float32"))
    try:
        model.load_state_dict(model_state)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from error
    model.checkpoint_meta = meta
    return model.eval()

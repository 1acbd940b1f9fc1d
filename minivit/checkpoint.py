"""Checkpoints: one .npz file, no pickle inside, written atomically.

Layout:
    meta                  a JSON string: format version, model config, training
                          options, step, epoch, best accuracy, normalisation,
                          class names and the number of ranks (a run's random
                          draws are functions of its seed and step: no
                          generator state is kept)
    model/<name>          every parameter (NumPy arrays)
    optimizer/<key>       the optimizer's state (step and moment buffers)
    ema/<name>            the moving average of every parameter, if the run keeps one (--ema)

Written to a temporary file in the same folder, flushed to disk, then renamed
over the old one (``minivit.atomic``): a crash mid-write leaves the previous
checkpoint whole. Never written with a NaN or infinite value in it, and not
loaded with one unless asked (``allow_non_finite=True``, to inspect what went
wrong). Read with ``allow_pickle=False``, so a checkpoint cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from minivit.atomic import atomic_write
from minivit.config import ViTConfig
from minivit.weight_readers import WeightFileError, read_npz

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or does not match what was asked for."""


class NonFiniteWeights(CheckpointError):
    """Weights (or optimizer state) holding NaN or infinity, which no checkpoint keeps."""

    def __init__(self, message: str, names: list[str]):
        super().__init__(message)
        self.names = names

    def names_text(self) -> str:
        return "NaN or infinity in " + ", ".join(self.names[:4]) + (" ..." if len(self.names) > 4 else "")


def non_finite_names(arrays: dict) -> list[str]:
    """The names of the floating-point arrays (NumPy, on the host) that hold a NaN or an infinity."""
    return [name for name, array in arrays.items()
            if np.asarray(array).dtype.kind == "f" and not np.isfinite(array).all()]


def save_checkpoint(path: str | Path, model, optimizer=None, meta: dict | None = None,
                    ema_weights: dict | None = None) -> Path:
    """Write ``model``'s weights, ``optimizer``'s state, ``meta`` and (``ema_weights``, {name: array}) the
    moving average of the weights into one .npz file, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    master = getattr(optimizer, "master", None) is not None  # float16 training: the float32 weights are the truth
    full_meta = {"format_version": FORMAT_VERSION, "config": model.config.to_dict(),
                 "dtype": "float32" if master else model.dtype, **(meta or {})}
    arrays = {"meta": np.array(json.dumps(full_meta))}
    weights = optimizer.weights() if master else model.state_dict()
    arrays.update({f"model/{name}": array for name, array in weights.items()})
    if optimizer is not None:
        for key, value in optimizer.state_dict().items():
            arrays[f"optimizer/{key}"] = np.asarray(value)
    arrays.update({f"ema/{name}": array for name, array in (ema_weights or {}).items()})
    bad = non_finite_names(arrays)
    if bad:
        raise NonFiniteWeights(f"Not saving {path}: {', '.join(bad[:4])} hold NaN or infinity.", bad)
    atomic_write(path, lambda file: np.savez(file, **arrays))
    return path


def read_checkpoint(path: str | Path) -> tuple[dict, dict, dict]:
    """(meta, model_state, optimizer_state) from a checkpoint file, all on the host."""
    meta, model_state, optimizer_state, _ = read_checkpoint_with_ema(path)
    return meta, model_state, optimizer_state


def read_checkpoint_with_ema(path: str | Path) -> tuple[dict, dict, dict, dict]:
    """(meta, model_state, optimizer_state, ema_state) from one read of a checkpoint file: what a
    resumed run needs. ``ema_state`` is empty if the run kept no moving average of the weights."""
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise CheckpointError(f"{path} is a folder; give a checkpoint file, such as "
                                  f"{path / 'checkpoint-best.npz'}.")
        raise CheckpointError(f"No checkpoint at {path}.")
    try:
        archive = read_npz(path)
    except WeightFileError as error:
        raise CheckpointError(f"{path} is not a readable minivit checkpoint: {error}") from error
    if "meta" not in archive:
        raise CheckpointError(f"{path} is not a readable minivit checkpoint (corrupt or truncated, or another "
                              "kind of .npz: it has no 'meta' entry).")
    try:
        meta = json.loads(str(archive["meta"]))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not a readable minivit checkpoint: its meta is not JSON ({error}).") \
            from error
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not a readable minivit checkpoint: its meta is not a JSON object.")
    model_state = {key[len("model/"):]: array for key, array in archive.items() if key.startswith("model/")}
    optimizer_state = {key[len("optimizer/"):]: array for key, array in archive.items()
                       if key.startswith("optimizer/")}
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format_version')!r}; this "
                              f"minivit reads format {FORMAT_VERSION}.")
    if "step" in optimizer_state:
        optimizer_state["step"] = int(optimizer_state["step"])
    return meta, model_state, optimizer_state, _ema_state(archive)


def read_ema_weights(path: str | Path) -> dict:
    """{name: array}: the moving average of the weights saved in ``path``; empty if the run kept none."""
    return _ema_state(read_npz(Path(path)))


def _ema_state(archive: dict) -> dict:
    """The archive's "ema/<name>" arrays, as {name: array}."""
    return {key[len("ema/"):]: array for key, array in archive.items() if key.startswith("ema/")}


WEIGHTS = ("raw", "ema")  # which weights of a checkpoint to load: those that trained, or their moving average


def load_checkpoint(path: str | Path, dtype: str | None = None, allow_non_finite: bool = False,
                    weights: str = "raw"):
    """The model saved in ``path``, weights loaded, in eval mode, ready to use.

    ``weights="ema"`` loads the moving average of the weights (a run trained with --ema) instead.

    The checkpoint's metadata (normalisation, class names, ...) is on ``model.checkpoint_meta``.
    Weights holding NaN or infinity are refused (a model that computes nothing) unless
    ``allow_non_finite``.
    """
    from minivit.model import ViTForImageClassification

    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r}: choose one of {', '.join(WEIGHTS)}.")
    meta, model_state, _, ema_state = read_checkpoint_with_ema(path)
    if weights == "ema":
        model_state = ema_state
        if not model_state:
            raise CheckpointError(f"{path} holds no moving average of the weights: its run was trained without "
                                  "--ema. Evaluate its own weights (--weights raw).")
    bad = non_finite_names(model_state)
    if bad and not allow_non_finite:
        raise NonFiniteWeights(f"{path} holds non-finite weights (NaN or infinity in {', '.join(bad[:4])}"
                               f"{' ...' if len(bad) > 4 else ''}): it is no usable model. Use an earlier "
                               "checkpoint of the run.", bad)
    config = ViTConfig.from_dict(meta["config"])
    model = ViTForImageClassification(config, dtype=dtype or meta.get("dtype", "float32"))
    try:
        model.load_state_dict(model_state)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from error
    model.checkpoint_meta = meta
    return model.eval()

"""What a run starts from, besides its options: its own checkpoint (resuming) or pretrained weights (finetuning).

    saved = read_saved_run(run_folder)      checkpoint-last.npz, read once (by the command line, or the Trainer)
    check_continues(saved, config)          checked once: the same run, finite (on any number of ranks)
    pretrained = read_pretrained(source)    a Pretrained: config, weights and what the source says

``SavedRun`` and ``Pretrained`` name what a checkpoint holds (``saved.class_names``,
``pretrained.mean``), so that no code reads ``saved[0]["config"]``. On ranks other than 0 of a
distributed run they carry the metadata alone (a SavedRun's ``model_state``, ``optimizer_state`` and
``ema_state``, a Pretrained's ``state``, are None): rank 0 broadcasts the weights once the model is built.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from minivit.checkpoint import CheckpointError, non_finite_names, read_checkpoint_with_ema
from minivit.config import PRESETS, ViTConfig
from minivit.training.options import RESUMABLE_CHANGES, TrainConfig
from minivit.training.run_folder import RunFolder


@dataclass
class SavedRun:
    """checkpoint-last.npz of a run: its options, where it stopped, and (rank 0) its weights."""

    path: Path
    meta: dict  # the checkpoint's JSON metadata (minivit.checkpoint's layout)
    model_state: dict | None  # None on ranks other than 0
    optimizer_state: dict | None
    config: TrainConfig  # the options the run was started with
    file_stamp: tuple | None = None  # (size, modification time) when read: was it rewritten since?
    ema_state: dict | None = None  # the moving average of the weights ({} if the run kept none); None on ranks > 0

    @property
    def model_config(self) -> ViTConfig:
        return ViTConfig.from_dict(self.meta["config"])

    @property
    def class_names(self) -> list[str]:
        return self.meta["class_names"]

    @property
    def step(self) -> int:
        return self.meta["step"]

    @property
    def best_accuracy(self) -> float:
        return self.meta["best_accuracy"]

    @property
    def elapsed(self) -> float:
        return self.meta["elapsed"]

    @property
    def epoch_sums(self) -> dict:
        return self.meta["epoch_sums"]

    @property
    def mean(self) -> np.ndarray:  # the normalisation the run started with
        return np.array(self.meta["mean"], dtype=np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.array(self.meta["std"], dtype=np.float32)

    @property
    def ranks(self) -> int:
        return self.meta.get("ranks", 1)

    @property
    def loss_scale(self) -> dict | None:
        return self.meta.get("loss_scale")

    def metadata_only(self) -> SavedRun:
        """What the other ranks get: everything but the weights."""
        return replace(self, model_state=None, optimizer_state=None, ema_state=None)

    def is_current(self) -> bool:
        """Whether the file is still the one that was read (no other run rewrote it since)."""
        return self.file_stamp is None or self.file_stamp == _stamp(self.path)


def _stamp(path: Path) -> tuple | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def read_saved_run(run_folder: RunFolder) -> SavedRun:
    """checkpoint-last.npz of ``run_folder``, read and its options parsed (not yet checked: ``check_continues``)."""
    run_folder.check_resumable()
    path = run_folder.last_checkpoint
    stamp = _stamp(path)
    meta, model_state, optimizer_state, ema_state = read_checkpoint_with_ema(path)
    return SavedRun(path, meta, model_state, optimizer_state, TrainConfig.from_checkpoint_meta(meta, path), stamp,
                    ema_state)


def check_continues(saved: SavedRun, requested: TrainConfig) -> None:
    """Refuse to continue ``saved`` with options it was not trained with (other than RESUMABLE_CHANGES),
    or weights that are not finite."""
    from minivit.training import budget_recipe

    before = saved.config.to_dict()
    now = budget_recipe.keep_saved_choice(requested, before).to_dict()  # the recipe the budget chose stays
    differences = []
    for key in before:
        if key in RESUMABLE_CHANGES or before[key] == now.get(key):
            continue
        if key == "preset" and before.get("init_from"):  # a finetuned model's preset is its source's (a label)
            continue
        if isinstance(before[key], dict) and isinstance(now.get(key), dict):  # model, augment
            fields = sorted(set(before[key]) | set(now[key]), key=str)
            differences += [f"{key}.{field}: checkpoint {before[key].get(field)!r}, requested "
                            f"{now[key].get(field)!r}" for field in fields
                            if before[key].get(field) != now[key].get(field)]
        else:
            differences.append(f"{key}: checkpoint {before[key]!r}, requested {now.get(key)!r}")
    if differences:
        raise CheckpointError(f"{saved.path} does not match the requested run: " + "; ".join(differences)
                              + ". Resume with the same options, or start a new run folder (--out).")
    if saved.model_state is not None:
        bad = non_finite_names({**saved.model_state, **saved.optimizer_state,
                                **{f"ema/{name}": array for name, array in (saved.ema_state or {}).items()}})
        if bad:
            raise CheckpointError(f"{saved.path} holds non-finite values ({', '.join(bad[:4])}): it cannot be "
                                  "continued. Start a new run (another --out).")


def check_limits_leave_room(config: TrainConfig, step: int, elapsed: float, out: str) -> None:
    """A resumed run must be allowed at least one more step by --max-steps and --time-budget."""
    out = shlex.quote(out)
    if config.max_steps is not None and config.max_steps <= step:
        raise ValueError(f"--max-steps {config.max_steps}: the run in {out} is already at step {step}. "
                         f"Give a larger --max-steps (it counts the run's steps in all), or leave it out to "
                         "train to the end.")
    if config.time_budget and elapsed >= config.time_budget:
        raise ValueError(f"--time-budget {config.time_budget:g}: the run in {out} has already trained "
                         f"{elapsed:.1f} s of it (the budget counts the run's whole training time). "
                         "Give a larger budget, e.g. --time-budget "
                         f"{math.ceil(elapsed + config.time_budget)}.")


class Pretrained(NamedTuple):
    """Pretrained weights to finetune from: ``minivit.convert.read_pretrained``'s (config, state, meta)."""

    config: ViTConfig
    state: dict | None  # None on ranks other than 0
    meta: dict  # class names, normalisation, fields assumed, ... where the source records them

    @property
    def mean(self) -> np.ndarray | None:
        return np.array(self.meta["mean"], dtype=np.float32) if "mean" in self.meta else None

    @property
    def std(self) -> np.ndarray | None:
        return np.array(self.meta["std"], dtype=np.float32) if "std" in self.meta else None

    @property
    def class_names(self) -> list[str] | None:
        return self.meta.get("class_names")

    @property
    def preset(self) -> str | None:
        """The preset the weights were trained as: a minivit run's own, or the preset of the same shape."""
        recorded = (self.meta.get("train_config") or {}).get("preset")
        if recorded in PRESETS:
            return recorded
        shape = {**self.config.to_dict(), "num_labels": None}
        for name, fields in PRESETS.items():
            if {**ViTConfig(**fields).to_dict(), "num_labels": None} == shape:
                return name
        return None

    def metadata_only(self) -> Pretrained:
        return self._replace(state=None)


def read_pretrained(source: str, num_attention_heads: int | None) -> Pretrained:
    """The weights of ``--init-from`` (anything ``minivit.convert.read_pretrained`` reads)."""
    from minivit.convert import read_pretrained as read_any

    try:
        return Pretrained(*read_any(source, num_attention_heads))
    except (OSError, KeyError, ValueError, CheckpointError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise CheckpointError(f"--init-from {source}: {message}") from error

"""Train a ViT: ``python -m minivit.train`` or ``minivit.train.train(TrainConfig(...))``.

    python -m minivit.train --preset cifar-tiny --data-dir data/cifar10 --time-budget 600

One step: draw a batch (a seeded permutation per epoch), augment it on the
backend, forward, cross-entropy, backward, clip the gradient norm, set the
learning rate (warmup, then cosine), optimizer step. After each epoch: validate
on a held-out part of the training split, append a row to metrics.jsonl (steps.jsonl
has a row per step), redraw
curves.png, write checkpoint-last.npz (and checkpoint-best.npz). A run folder
can be resumed (``--resume``) from wherever it stopped: the end of an epoch,
Ctrl-C, or the time budget; on NumPy the resumed run ends with the same weights,
bit for bit, as one that never stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np  # host side: data indices, generator states, metrics

from minivit import backend
from minivit.augment import AugmentConfig, augment_batch, normalize
from minivit.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from minivit.config import PRESETS, ViTConfig
from minivit.data import DataError, download_cifar10, find_data, load_split, stratified_split
from minivit.dispatch import cross_entropy_backward, cross_entropy_forward
from minivit.finetune import FinetuneError, build_from_pretrained, frozen_names, layer_decay_scales
from minivit.model import ViTForImageClassification
from minivit.nn import no_grad
from minivit.optim import SGD, AdamW, clip_grad_norm, warmup_cosine
from minivit.profile import phase


@dataclass
class TrainConfig:
    """Everything a run depends on. ``model`` overrides fields of the preset's ViTConfig."""

    preset: str = "cifar-tiny"
    model: dict = field(default_factory=dict)
    data_dir: str | None = None
    download: bool = False
    out: str = "runs/cifar-tiny"
    backend: str = "numpy"
    seed: int = 0
    epochs: int = 50
    time_budget: float | None = None  # seconds of training; then evaluate, save and stop
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    momentum: float = 0.9
    warmup_epochs: float = 5.0
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    label_smoothing: float = 0.1
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    val_fraction: float = 0.1
    eval_batch_size: int = 500
    sync_every: int = 50  # steps between host reads of the loss on the GPU (1 on NumPy)
    max_steps: int | None = None  # stop after this many steps in all (as if interrupted)
    progress: bool = True
    # data subsets
    classes: list | None = None  # train on these classes only (names), relabelled 0, 1, ... in this order
    train_per_class: int | None = None  # keep this many training images per class (after the validation split)
    # finetuning
    init_from: str | None = None  # pretrained weights: a minivit checkpoint, transformers folder, Google .npz, timm
    freeze: str = ""  # name prefixes to hold fixed, comma-separated; "backbone": all but the classifier
    layer_decay: float = 1.0  # layer l of L learns at lr * layer_decay^(L + 1 - l); 1 turns it off

    def model_config(self, base: ViTConfig | None = None) -> ViTConfig:
        """The preset's ViTConfig (or ``base``, a pretrained model's) with ``model``'s overrides."""
        if base is not None:
            return base.replace(**self.model)
        if self.preset not in PRESETS:
            raise ValueError(f"Unknown preset {self.preset!r}: choose one of {', '.join(PRESETS)}.")
        return ViTConfig(**{**PRESETS[self.preset], **self.model})

    def validate(self) -> None:
        """Refuse bad values before any work starts."""
        problems = []
        if self.backend not in backend.BACKENDS:
            problems.append(f"--backend must be one of {', '.join(backend.BACKENDS)}, not {self.backend!r}")
        if self.optimizer not in ("adamw", "sgd"):
            problems.append(f"--optimizer must be adamw or sgd, not {self.optimizer!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "sync_every"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1; got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "momentum", "warmup_epochs", "grad_clip"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                problems.append(f"--{name.replace('_', '-')} must be a finite number >= 0; got {value}")
        if self.time_budget is not None and not self.time_budget > 0:
            problems.append(f"--time-budget must be positive seconds; got {self.time_budget}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"--label-smoothing must be in [0, 1); got {self.label_smoothing}")
        if not 0 < self.val_fraction < 1:
            problems.append(f"--val-fraction must be in (0, 1); got {self.val_fraction}")
        if not 0 < self.layer_decay <= 1:
            problems.append(f"--layer-decay must be in (0, 1]; got {self.layer_decay}")
        if self.train_per_class is not None and self.train_per_class < 1:
            problems.append(f"--train-per-class must be at least 1; got {self.train_per_class}")
        if self.init_from is not None and not Path(self.init_from).expanduser().exists() \
                and "/" not in self.init_from.strip("/"):
            problems.append(f"--init-from {self.init_from}: no such file or folder")
        if problems:
            raise ValueError("Bad training options: " + "; ".join(problems) + ".")
        self.model_config()  # raises on a bad model field

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        values = dict(values)
        values["augment"] = AugmentConfig(**values.get("augment", {}))
        return cls(**values)


# Training recipes. cifar-gpu follows "Vision Transformer for Small-Size Datasets"
# (Lee et al. 2021): AdamW, 100 epochs, warmup 10, label smoothing, mixup, cutmix, RandAugment.
RECIPES: dict[str, dict] = {
    "cifar-tiny": dict(epochs=50, batch_size=128, lr=1e-3, weight_decay=0.05, warmup_epochs=5,
                       label_smoothing=0.1, augment=AugmentConfig(crop_padding=4, horizontal_flip=True)),
    "cifar-gpu": dict(epochs=100, batch_size=128, lr=1e-3, weight_decay=0.05, warmup_epochs=10,
                      label_smoothing=0.1,
                      augment=AugmentConfig(crop_padding=4, horizontal_flip=True, randaugment_ops=2,
                                            randaugment_magnitude=9, mixup_alpha=0.8, cutmix_alpha=1.0)),
}

# Options that may differ when resuming a run; everything else must match the checkpoint.
RESUMABLE_CHANGES = {"data_dir", "download", "backend", "time_budget", "max_steps", "progress",
                     "eval_batch_size", "sync_every", "out", "init_from"}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


# --- data ------------------------------------------------------------------------------------

def resolve_data_dir(config: TrainConfig) -> str:
    if config.data_dir is not None:
        find_data(config.data_dir)  # raises DataError with instructions
        return config.data_dir
    default = Path("data")
    try:
        find_data(default)
        return str(default)
    except DataError:
        if config.download:
            download_cifar10(default)
            return str(default)
        raise


class Batches:
    """The training images on the backend, drawn in a seeded order per epoch.

    Only the batch's images are gathered each step; the data set is copied to the
    device once.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
        if len(labels) < batch_size:
            raise DataError(f"Only {len(labels)} training images for a batch size of {batch_size}: "
                            "lower --batch-size or use more data.")
        self.images = backend.asarray(images)
        self.labels = backend.asarray(labels)
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = len(labels) // batch_size  # the last, incomplete batch is dropped
        self._order_epoch, self._order = None, None

    def get(self, step: int):
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._order_epoch != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))
            self._order, self._order_epoch = backend.asarray(order), epoch
        chosen = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.images[chosen], self.labels[chosen]


def evaluate_model(model, images: np.ndarray, labels: np.ndarray, mean, std, batch_size: int = 500) -> dict:
    """Loss, accuracy and predictions over a whole data set, in eval mode, batch by batch."""
    xp = backend.xp
    model.eval()
    total_loss, predictions = 0.0, []
    for start in range(0, len(labels), batch_size):
        batch = backend.asarray(images[start:start + batch_size])
        batch_labels = backend.asarray(labels[start:start + batch_size])
        with no_grad():  # no backward follows
            logits = model.forward(normalize(batch, mean, std).astype(model.dtype))
        loss, _ = cross_entropy_forward(logits, batch_labels)
        total_loss += float(loss) * len(batch_labels)
        predictions.append(backend.to_numpy(xp.argmax(logits, axis=1)))
    predictions = np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)
    return {"loss": total_loss / max(1, len(labels)),
            "accuracy": float((predictions == labels).mean()) if len(labels) else 0.0,
            "predictions": predictions}


# --- generator states (JSON-safe) --------------------------------------------------------------

def _generator_state(generator):
    if backend.name == "numpy" or isinstance(generator, np.random.Generator):
        return generator.bit_generator.state
    return None  # CuPy's generators are not restored: resumption is exact on NumPy only


def _set_generator_state(generator, state) -> None:
    if state is not None and (backend.name == "numpy" or isinstance(generator, np.random.Generator)):
        generator.bit_generator.state = state


# --- the run ---------------------------------------------------------------------------------

class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False, on_step=None):
        config.validate()
        self.config = config
        self.on_step = on_step
        self.run_dir = Path(config.out)
        backend.use(config.backend)

        data_dir = resolve_data_dir(config)
        pretrained = self._read_pretrained() if config.init_from and not resume else None
        model_config = self._model_config(pretrained, resume)
        full_train = load_split(data_dir, "train", image_size=model_config.image_size)
        if config.classes:
            full_train = full_train.select_classes(config.classes)
        if "num_labels" not in config.model and not resume:  # as many outputs as the data has classes
            model_config = model_config.replace(num_labels=full_train.num_classes)
        self._check_data(full_train, model_config)
        train_idx, val_idx = stratified_split(full_train.labels, config.val_fraction, config.seed)
        self.train_set, self.val_set = full_train.subset(train_idx), full_train.subset(val_idx)
        if config.train_per_class:
            self.train_set = self.train_set.take_per_class(config.train_per_class, config.seed)
        self.class_names = full_train.class_names
        self.mean, self.std = self.train_set.channel_stats()
        if pretrained is not None and "mean" in pretrained[2]:  # keep the inputs the model was trained on
            self.mean = np.array(pretrained[2]["mean"], dtype=np.float32)
            self.std = np.array(pretrained[2]["std"], dtype=np.float32)
        self.batches = Batches(self.train_set.images, self.train_set.labels, config.batch_size, config.seed)

        if pretrained is not None:
            source_config, state, source_meta = pretrained
            # new classes need a new head, even when they are as many as the old ones
            new_head = (source_meta["class_names"] != self.class_names) if "class_names" in source_meta else None
            self.model = build_from_pretrained(source_config, state, model_config, seed=config.seed,
                                               new_head=new_head, verbose=True)
        else:
            self.model = ViTForImageClassification(model_config, seed=config.seed)
        names = [name for name, _ in self.model.named_parameters()]
        frozen = frozen_names(names, config.freeze)
        named = [(name, parameter) for name, parameter in self.model.named_parameters() if name not in frozen]
        self.trainable = [parameter for _, parameter in named]
        scales = (layer_decay_scales(names, model_config.num_hidden_layers, config.layer_decay)
                  if config.layer_decay != 1 else None)
        if config.optimizer == "adamw":
            self.optimizer = AdamW(named, lr=config.lr, weight_decay=config.weight_decay, lr_scales=scales)
        else:
            self.optimizer = SGD(named, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                                 lr_scales=scales)
        self.augment_rng = backend.default_rng(np.random.SeedSequence([config.seed, 2]).generate_state(1)[0])
        self.host_rng = np.random.default_rng([config.seed, 3])

        self.steps_per_epoch = self.batches.steps_per_epoch
        self.total_steps = config.epochs * self.steps_per_epoch
        self.warmup_steps = int(round(config.warmup_epochs * self.steps_per_epoch))
        self.step = 0
        self.best_accuracy = -1.0
        self.elapsed = 0.0  # training seconds, summed over resumptions
        self.epoch_sums = {"loss": 0.0, "correct": 0.0, "seen": 0}
        self.history: list[dict] = []
        if resume:
            self._resume()
        elif (self.run_dir / "checkpoint-last.npz").exists():
            raise CheckpointError(f"{self.run_dir} already holds a run (checkpoint-last.npz): continue it "
                                  "with --resume, or choose another --out. Nothing was overwritten.")

    def _read_pretrained(self) -> tuple:
        from minivit.convert import read_pretrained

        try:
            return read_pretrained(self.config.init_from, self.config.model.get("num_attention_heads"))
        except (OSError, KeyError) as error:
            raise CheckpointError(f"--init-from {self.config.init_from}: {error}") from error

    def _model_config(self, pretrained, resume: bool) -> ViTConfig:
        """The preset's config; a pretrained model's (with the overrides) when finetuning; the
        checkpoint's own when resuming."""
        if resume:
            path = self.run_dir / "checkpoint-last.npz"
            if path.is_file():
                return ViTConfig.from_dict(read_checkpoint(path)[0]["config"])
        if pretrained is not None:
            return self.config.model_config(base=pretrained[0])
        return self.config.model_config()

    def _check_data(self, dataset, model_config: ViTConfig) -> None:
        _, channels, height, width = dataset.images.shape
        if (channels, height, width) != (model_config.num_channels, model_config.image_size,
                                         model_config.image_size):
            raise DataError(f"The data's images are {channels}x{height}x{width} but the model expects "
                            f"{model_config.num_channels}x{model_config.image_size}x{model_config.image_size}: "
                            "set --image-size / --num-channels to match.")
        if dataset.num_classes > model_config.num_labels:
            raise DataError(f"The data has {dataset.num_classes} classes but the model {model_config.num_labels} "
                            f"labels: pass --num-labels {dataset.num_classes}.")

    # --- checkpoints ---
    def _meta(self) -> dict:
        return {
            "train_config": self.config.to_dict(), "step": self.step, "epoch": self.step / self.steps_per_epoch,
            "best_accuracy": self.best_accuracy, "elapsed": self.elapsed,
            "epoch_sums": self.epoch_sums, "mean": self.mean.tolist(), "std": self.std.tolist(),
            "class_names": self.class_names, "backend": backend.name,
            "rng": {"dropout": _generator_state(self.model.rng), "augment": _generator_state(self.augment_rng),
                    "host": _generator_state(self.host_rng)},
        }

    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> dict:
        return evaluate_model(self.model, images, labels, self.mean, self.std, self.config.eval_batch_size)

    def save(self, name: str = "checkpoint-last.npz") -> Path:
        return save_checkpoint(self.run_dir / name, self.model, self.optimizer, self._meta())

    def _resume(self) -> None:
        path = self.run_dir / "checkpoint-last.npz"
        if not path.is_file():
            raise CheckpointError(f"--resume: no checkpoint at {path}. Start the run without --resume, "
                                  "or point --out at the run folder to continue.")
        meta, model_state, optimizer_state = read_checkpoint(path)
        saved = TrainConfig.from_dict(meta["train_config"]).to_dict()
        requested = self.config.to_dict()
        differences = [f"{key}: checkpoint {saved[key]!r}, requested {requested[key]!r}"
                       for key in saved if key not in RESUMABLE_CHANGES and saved[key] != requested.get(key)]
        if differences:
            raise CheckpointError(f"{path} does not match the requested run: " + "; ".join(differences)
                                  + ". Resume with the same options, or start a new run folder (--out).")
        try:
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optimizer_state)
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from error
        self.step, self.best_accuracy, self.elapsed = meta["step"], meta["best_accuracy"], meta["elapsed"]
        # the normalisation the run started with (a finetuning run's came from its pretrained model)
        self.mean, self.std = np.array(meta["mean"], dtype=np.float32), np.array(meta["std"], dtype=np.float32)
        self.epoch_sums = meta["epoch_sums"]
        _set_generator_state(self.model.rng, meta["rng"]["dropout"])
        _set_generator_state(self.augment_rng, meta["rng"]["augment"])
        _set_generator_state(self.host_rng, meta["rng"]["host"])
        metrics = self.run_dir / "metrics.jsonl"
        if metrics.is_file():
            self.history = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
            self.history = [row for row in self.history if row["step"] <= self.step]
        steps_log = self.run_dir / "steps.jsonl"
        if steps_log.is_file():  # steps after the checkpoint will be run again
            kept = [line for line in steps_log.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= self.step]
            steps_log.write_text("".join(line + "\n" for line in kept))

    # --- the loop ---
    def learning_rate(self, step: int) -> float:
        """Warmup, then cosine decay, over the run's --epochs.

        With a time budget the schedule runs on the clock: the run is as far along the
        schedule as the larger of its share of the epochs done and its share of the budget
        spent (validation included). The whole warmup and decay then fit into the budget,
        and the rate reaches its minimum as the budget runs out, whatever the pace of the
        machine; without a budget the steps alone decide, so resumed runs repeat exactly.
        """
        position = step
        if self.config.time_budget:
            position = max(step, self.elapsed / self.config.time_budget * self.total_steps)
        return warmup_cosine(position, self.total_steps, min(self.warmup_steps, self.total_steps // 2),
                             self.config.lr, self.config.min_lr)

    def train_step(self):
        """One optimisation step; returns (loss, correct) as 0-d backend arrays (no host sync)."""
        xp = backend.xp
        config = self.config
        with phase("data"):
            images, labels = self.batches.get(self.step)
            if getattr(self, "_device_stats", None) is None or self._device_stats[0] is not self.mean:
                # the normalisation on the device once, not copied there every step
                self._device_stats = (self.mean, backend.asarray(self.mean, dtype="float32"),
                                      backend.asarray(self.std, dtype="float32"))
            _, mean, std = self._device_stats
        with phase("augment"):
            pixel_values, targets = augment_batch(images, labels, config.augment, mean, std,
                                                  self.model.config.num_labels, self.augment_rng, self.host_rng)
        self.model.train()
        with phase("zero_grad"):
            self.optimizer.zero_grad()
        with phase("forward"):
            logits = self.model.forward(pixel_values)
        with phase("loss"):
            loss, loss_cache = cross_entropy_forward(logits, targets, config.label_smoothing)
            dlogits = cross_entropy_backward(1.0, loss_cache)
        with phase("backward"):
            self.model.backward(dlogits)
        with phase("clip"):
            if config.grad_clip > 0:
                clip_grad_norm(self.trainable, config.grad_clip)
        with phase("optimizer"):
            self.optimizer.lr = self.learning_rate(self.step)
            self.optimizer.step()
        with phase("metrics"):
            hard_targets = targets if targets.ndim == 1 else xp.argmax(targets, axis=1)
            correct = xp.sum(xp.argmax(logits, axis=1) == hard_targets)
        return loss, correct

    def run(self) -> dict:
        config = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.step == 0:  # a fresh run starts fresh logs
            (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
            (self.run_dir / "steps.jsonl").unlink(missing_ok=True)
        (self.run_dir / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
        stop_reason = None
        interrupted = {"flag": False}

        def on_sigint(signum, frame):
            if interrupted["flag"]:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now
            interrupted["flag"] = True
            print("\nCtrl-C: finishing this step, then saving a checkpoint (Ctrl-C again to abort).",
                  file=sys.stderr)

        previous_handler = signal.signal(signal.SIGINT, on_sigint)
        sync_every = 1 if backend.name == "numpy" else config.sync_every
        pending = []  # (step, learning rate) of the steps whose loss is not yet read on the host
        self._step_values = backend.xp.empty((sync_every, 2), dtype="float64")
        session_start = time.perf_counter()
        elapsed_before = self.elapsed
        progress = self._progress_bar()
        try:
            while self.step < self.total_steps:
                loss, correct = self.train_step()
                with phase("metrics"):
                    self._step_values[len(pending), 0] = loss  # kept on the device until the next drain
                    self._step_values[len(pending), 1] = correct
                pending.append((self.step, self.optimizer.lr))
                self.step += 1
                self.elapsed = elapsed_before + time.perf_counter() - session_start
                if self.on_step is not None:
                    self.on_step(self, self.step)
                end_of_epoch = self.step % self.steps_per_epoch == 0
                if len(pending) >= sync_every or end_of_epoch:
                    self._drain(pending, progress)
                if end_of_epoch:
                    self._end_epoch(progress)
                if interrupted["flag"]:
                    stop_reason = "interrupted"
                elif config.time_budget and self.elapsed >= config.time_budget:
                    stop_reason = "time budget spent"
                elif config.max_steps is not None and self.step >= config.max_steps:
                    stop_reason = "max steps reached"
                if stop_reason:
                    break
            self._drain(pending, progress)
        finally:
            signal.signal(signal.SIGINT, previous_handler)
            if progress is not None:
                progress.close()

        if stop_reason and self.step % self.steps_per_epoch != 0:
            self._end_epoch(None, partial=True)
        path = self.save()
        finished = self.step >= self.total_steps
        message = (f"{'finished' if finished else stop_reason} at step {self.step} "
                   f"(epoch {self.step / self.steps_per_epoch:.2f}); checkpoint: {path}")
        if not finished:
            message += f"; continue with: python -m minivit.train --resume --out {self.run_dir}"
        print(message, file=sys.stderr)
        last = self.history[-1] if self.history else {}
        return {"run_dir": str(self.run_dir), "step": self.step, "finished": finished, "stop_reason": stop_reason,
                "val_accuracy": last.get("val_accuracy"), "best_val_accuracy": self.best_accuracy,
                "elapsed": self.elapsed, "checkpoint": str(path)}

    def _drain(self, pending: list, progress) -> None:
        """Read the pending losses on the host (one copy); stop on the first NaN or infinity."""
        if not pending:
            return
        values = backend.to_numpy(self._step_values[:len(pending)])
        step_rows = []
        for (step, lr), (loss, correct) in zip(pending, values):
            step_rows.append(json.dumps({"step": step + 1, "loss": round(float(loss), 5),
                                         "accuracy": round(float(correct) / self.config.batch_size, 5),
                                         "lr": lr}))
            if not math.isfinite(loss):
                last = self.run_dir / "checkpoint-last.npz"
                kept = f"the last good checkpoint, {last}, is kept" if last.is_file() else "no checkpoint was written"
                raise TrainingDiverged(
                    f"The loss became {loss} at step {step + 1} (epoch {step // self.steps_per_epoch + 1}): "
                    f"training stopped and {kept}. Lower --lr, keep --grad-clip on, or check the data.")
            self.epoch_sums["loss"] += float(loss) * self.config.batch_size
            self.epoch_sums["correct"] += float(correct)
            self.epoch_sums["seen"] += self.config.batch_size
        pending.clear()
        with open(self.run_dir / "steps.jsonl", "a") as steps_log:
            steps_log.write("\n".join(step_rows) + "\n")
        if progress is not None:
            progress.update(len(values))
            seen = max(1, self.epoch_sums["seen"])
            left = (self.config.time_budget - self.elapsed if self.config.time_budget
                    else self.elapsed / self.step * (self.total_steps - self.step))
            progress.set_postfix(loss=f"{self.epoch_sums['loss'] / seen:.3f}",
                                 acc=f"{self.epoch_sums['correct'] / seen:.3f}",
                                 img_s=f"{self.step * self.config.batch_size / max(self.elapsed, 1e-9):.0f}",
                                 lr=f"{self.optimizer.lr:.2e}", left=f"{left / 60:.1f}min", refresh=False)

    def _progress_bar(self):
        if not self.config.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                    desc=f"{self.config.preset} on {backend.name}")

    def _end_epoch(self, progress, partial: bool = False) -> None:
        seen = max(1, self.epoch_sums["seen"])
        val = self.evaluate(self.val_set.images, self.val_set.labels)
        row = {"epoch": round(self.step / self.steps_per_epoch, 4), "step": self.step,
               "train_loss": self.epoch_sums["loss"] / seen, "train_accuracy": self.epoch_sums["correct"] / seen,
               "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": self.optimizer.lr,
               "elapsed": round(self.elapsed, 2),
               "images_per_second": round(self.step * self.config.batch_size / max(self.elapsed, 1e-9), 1)}
        self.history.append(row)
        with open(self.run_dir / "metrics.jsonl", "a") as metrics:
            metrics.write(json.dumps(row) + "\n")
        from minivit.plots import training_curves

        training_curves(self.history, self.run_dir / "curves.png", title=f"{self.config.preset} ({backend.name})")
        if not partial:
            self.epoch_sums = {"loss": 0.0, "correct": 0.0, "seen": 0}
        if val["accuracy"] > self.best_accuracy:
            self.best_accuracy = val["accuracy"]
            self.save("checkpoint-best.npz")
        if not partial:
            self.save()
        summary = (f"epoch {row['epoch']:g}: train loss {row['train_loss']:.3f} acc {row['train_accuracy']:.3f} | "
                   f"val loss {row['val_loss']:.3f} acc {row['val_accuracy']:.3f} | {row['images_per_second']} img/s")
        if progress is not None:
            progress.write(summary)
        elif self.config.progress:
            print(summary, file=sys.stderr)


def train(config: TrainConfig, resume: bool = False, on_step=None) -> dict:
    """Train (or resume) a run; returns a summary dict. See the module docstring."""
    return Trainer(config, resume=resume, on_step=on_step).run()


# --- command line ----------------------------------------------------------------------------

def build_parser(prog: str = "python -m minivit.train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Train (or finetune) a minivit ViT on CIFAR-10 or an image folder.",
        argument_default=argparse.SUPPRESS)
    parser.add_argument("--preset", choices=sorted(RECIPES), help="model and recipe (default cifar-tiny)")
    parser.add_argument("--data-dir", help="CIFAR-10 (cifar-10-batches-py or its parent) or an image folder "
                                           "with train/ and test/ (default: ./data)")
    parser.add_argument("--download", action="store_true", help="download CIFAR-10 into ./data if missing")
    parser.add_argument("--out", help="run folder (default runs/<preset>)")
    parser.add_argument("--backend", choices=backend.BACKENDS,
                        help="numpy (CPU), cupy (NVIDIA GPU), or cupy-sim (the simulated GPU: counts what a GPU pays)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--classes", type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
                        help="train on these classes only, comma-separated (e.g. cat,dog)")
    finetune = parser.add_argument_group("finetuning")
    finetune.add_argument("--init-from", help="start from these weights: a minivit checkpoint, a transformers "
                                              "folder or hub name, a Google .npz or a timm .safetensors")
    finetune.add_argument("--freeze", help="name prefixes to hold fixed, comma-separated; 'backbone' = all but "
                                           "the classifier")
    finetune.add_argument("--layer-decay", type=float, help="layer-wise learning-rate decay in (0, 1]; default 1")
    for item in dataclasses.fields(TrainConfig):
        if item.name in ("preset", "model", "data_dir", "download", "out", "backend", "augment", "progress",
                         "classes", "init_from", "freeze", "layer_decay"):
            continue
        kind = float if item.name in ("time_budget",) else type(item.default) if item.default is not None else int
        parser.add_argument(f"--{item.name.replace('_', '-')}", type=kind, help=f"default: {item.default}")
    augment = parser.add_argument_group("augmentation")
    for item in dataclasses.fields(AugmentConfig):
        flag = f"--{item.name.replace('_', '-')}"
        if isinstance(item.default, bool):
            augment.add_argument(flag, action=argparse.BooleanOptionalAction)
        else:
            augment.add_argument(flag, type=type(item.default), help=f"default: {item.default}")
    model = parser.add_argument_group("model (overrides the preset's ViTConfig)")
    for item in dataclasses.fields(ViTConfig):
        flag = f"--{item.name.replace('_', '-')}"
        if isinstance(item.default, bool):
            model.add_argument(flag, dest=f"model.{item.name}", action=argparse.BooleanOptionalAction)
        elif item.name == "patch_stride":
            model.add_argument(flag, dest=f"model.{item.name}", type=int)
        else:
            model.add_argument(flag, dest=f"model.{item.name}", type=type(item.default))
    return parser


def config_from_args(argv=None, recipe: dict | None = None,
                     prog: str = "python -m minivit.train") -> tuple[TrainConfig, bool]:
    """``recipe`` overrides the preset's recipe (the finetuning one, for ``minivit.finetune``)."""
    args = vars(build_parser(prog).parse_args(argv))
    resume = args.pop("resume", False)
    preset = args.pop("preset", "cifar-tiny")
    values = {"preset": preset, "out": f"runs/{preset}", **RECIPES[preset]}
    if recipe is not None:
        values.update(recipe, out="runs/finetune")
    augment = dataclasses.asdict(values.pop("augment"))
    model = {}
    for key, value in args.items():
        if key.startswith("model."):
            model[key[len("model."):]] = value
        elif key in augment:
            augment[key] = value
        else:
            values[key] = value
    if resume:  # start from the run's own options; the command line may change only a few
        path = Path(values["out"]) / "checkpoint-last.npz"
        saved = TrainConfig.from_dict(read_checkpoint(path)[0]["train_config"])
        merged = saved.to_dict()
        for key, value in values.items():
            if key in RESUMABLE_CHANGES or key in args:
                merged[key] = value
        merged["model"] = {**merged["model"], **model}
        merged["augment"] = {**merged["augment"], **{k: v for k, v in augment.items() if k in args}}
        return TrainConfig.from_dict(merged), True
    return TrainConfig(**{**values, "model": model, "augment": AugmentConfig(**augment)}), False


def main(argv=None, recipe: dict | None = None, prog: str = "python -m minivit.train") -> int:
    from minivit.kernels import tune_process

    tune_process()  # the CPU kernels' process settings (importing minivit changes nothing)
    try:
        config, resume = config_from_args(argv, recipe, prog)
        result = train(config, resume=resume)
    except (ValueError, DataError, CheckpointError, FinetuneError, TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if not isinstance(error, TrainingDiverged) else 1
    print(json.dumps({k: v for k, v in result.items()}, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())

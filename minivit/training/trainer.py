"""The training run: ``Trainer(config, resume).run()``.

Setting up reads as these steps, in this order (``__init__`` and ``_set_up``):

    the run folder      checked and locked before anything else (minivit.training.run_folder)
    the starting point  rank 0 reads the run's checkpoint or the pretrained weights, once, and
                        checks them once (minivit.training.resume)
    the data            the train split, checked against the model, split for validation, batched
    the model           fresh from the seed, or pretrained weights adapted (minivit.adapt)
    the optimizer       over the parameters that train, at their rates (minivit.optim.build_optimizer),
                        and the step that uses it (minivit.training.step.TrainStep)
    the random streams  dropout, augmentation and mixing (``_set_up_random_streams``)
    the schedule        warmup and cosine over the run (minivit.training.schedule)
    step 0              the run's counters, history and divergence watch
    the resumption      weights, optimizer, EMA, step, clock and logs from the checkpoint (no generator state:
                        every draw is a function of seed, epoch, image and step)

The loop (``_train_until_stopped``): take a step (``train_step``: draw a batch, augment it,
then the TrainStep), read the losses on the host every so often (``_drain``), and end each
epoch (``_end_epoch``: validate, watch for divergence, checkpoint, log, draw). What the user
sees (the progress bar, the epoch lines, the curves, the last words) is minivit.training.report.

Nothing non-finite is kept: a NaN or infinite training loss, validation loss or weight
stops the run before a checkpoint is written, and the message names the step and the
checkpoint that really is the last good one. A loss that stays finite but far above a
guessing model's stops it the same way (minivit.training.divergence). A checkpoint or log
that cannot be written (a full disk, a file-size limit) stops it naming the file, the step,
the checkpoint that is intact, and the command that continues.

A distributed run (``--distributed``, under ``mpiexec -n N``; see minivit.distributed) runs
this same Trainer on every rank, with a communicator (``self.comm``; ``SingleProcess`` for
an ordinary run):
  * rank 0 alone claims the run folder and reads the checkpoint or pretrained weights, and
    broadcasts the parameters and optimizer state: every rank starts from the same values;
  * each setting-up step fails on every rank if it fails on one (``_on_every_rank``);
  * each rank draws its shard of every global batch, augmented and with dropout masks as one
    process draws them (minivit.training.randomness); one all-reduce of the flat gradient buffer
    averages the shards' gradients before clipping and the optimizer step (the "allreduce" phase);
  * the steps' losses and the validation counts are summed over the ranks, and the ranks
    agree on rank 0's clock and on Ctrl-C at every drain (every step on the CPU, every
    --sync-every steps on a GPU), so all take the same learning rates and stop at the same step;
  * rank 0 alone writes logs, figures and checkpoints. The run's randomness is a function of
    the seed and the step, so a run stopped on N ranks continues exactly on any number.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import signal
import sys
import time

import numpy as np  # host side: normalisation, metrics

from minivit import backend
from minivit.adapt import build_from_pretrained
from minivit.amp import LossScaler
from minivit.checkpoint import CheckpointError, NonFiniteWeights, save_checkpoint
from minivit.cli import RunFailed
from minivit.config import ViTConfig
from minivit.data import DataError
from minivit.distributed import Communicator, SingleProcess, connect, mark_raised_together
from minivit.distributed.sharding import evaluate_sharded
from minivit.ema import WeightAverage
from minivit.evaluate import evaluate_model
from minivit.model import ViTForImageClassification
from minivit.optim import build_optimizer
from minivit.profile import phase
from minivit.training import budget_recipe, report
from minivit.training.data import (
    Batches,
    check_fits_model,
    load_training_images,
    report_data_problems,
    resolve_data_dir,
    split_for_validation,
)
from minivit.training.divergence import DivergenceWatch, TrainingDiverged, stop_message
from minivit.training.options import TrainConfig
from minivit.training.randomness import RunRandomness
from minivit.training.resume import (
    Pretrained,
    SavedRun,
    check_continues,
    check_limits_leave_room,
    read_pretrained,
    read_saved_run,
)
from minivit.training.run_folder import RunFolder
from minivit.training.schedule import Schedule
from minivit.training.step import TrainStep

__all__ = ["SaveFailed", "Trainer", "TrainingDiverged"]

# errors that mean "no room": said as such, with what to do
_NO_ROOM = {errno.ENOSPC: "the disk is full", errno.EFBIG: "a limit on the size of files was reached",
            errno.EDQUOT: "the disk quota is used up"}


class SaveFailed(RunFailed):
    """A checkpoint or log of the run could not be written (a full disk, a file-size limit, ...)."""


class Trainer:
    """A training run. ``resume``: continue the run in ``config.out`` (True), or continue it from its
    checkpoint already read (a ``SavedRun``, as the command line reads it). ``communicator``: this rank's,
    for a distributed run started some other way than ``config.distributed`` (which connects through MPI);
    None for ``SingleProcess``."""

    def __init__(self, config: TrainConfig, resume: bool | SavedRun = False, on_step=None,
                 communicator: Communicator | None = None):
        config.validate()
        self.config = config
        self.on_step = on_step  # called as on_step(trainer, step) after every step (tests, notebooks)
        self._device_stats = None  # (host mean, device mean, device std): the normalisation on the device
        if communicator is None:
            communicator = connect(config.backend) if config.distributed else SingleProcess()
        self.comm = communicator
        self.writes = self.comm.is_root  # rank 0 alone writes logs, figures and checkpoints
        backend.use(config.backend)
        backend.use_tf32(config.tf32)
        self.run_folder = RunFolder(config.out)
        self.run_dir = self.run_folder.path
        self._has_run = False
        self._unwritten = None  # (rank 0) the message of a log that could not be written, said at the epoch's end
        try:  # (the stages run on every rank make no collective call: a rank that fails leaves none waiting)
            saved, pretrained = self._on_every_rank(lambda: self._read_on_rank_0(resume))
            saved, pretrained = self._share_what_rank_0_read(saved, pretrained)
            self._on_every_rank(lambda: self._set_up(saved, pretrained))
            self._share_state_of_rank_0()
        except BaseException:
            self.run_folder.release(failed=True)
            raise

    def _on_every_rank(self, stage):
        """Run a stage of setting up; if it fails on any rank, it fails on every rank (none is left waiting)."""
        failure, result = None, None
        try:
            result = stage()
        except Exception as error:
            failure = error
        self.comm.fail_together(failure)
        return result

    def _read_on_rank_0(self, resume: bool | SavedRun) -> tuple[SavedRun | None, Pretrained | None]:
        """Rank 0 claims the run folder, then reads and checks the checkpoint (or reads the pretrained weights)."""
        if not self.writes:
            return None, None
        self.run_folder.claim(bool(resume))
        saved = None
        if resume:  # read once: by the command line (a SavedRun), unless another run rewrote it since
            current = isinstance(resume, SavedRun) and resume.path == self.run_folder.last_checkpoint \
                and resume.is_current()
            saved = resume if current else read_saved_run(self.run_folder)
            check_continues(saved, self.config)
        pretrained = None
        if self.config.init_from and saved is None:
            pretrained = read_pretrained(self.config.init_from, self.config.model.get("num_attention_heads"))
        return saved, pretrained

    def _share_what_rank_0_read(self, saved, pretrained) -> tuple[SavedRun | None, Pretrained | None]:
        """The other ranks get what they need to build the same model: the metadata, not the weights
        (``_share_state_of_rank_0`` sends those once the model is built)."""
        if self.comm.size == 1:
            return saved, pretrained
        saved_meta = self.comm.broadcast_object(None if saved is None else saved.metadata_only())
        pretrained_meta = self.comm.broadcast_object(None if pretrained is None else pretrained.metadata_only())
        return (saved, pretrained) if self.writes else (saved_meta, pretrained_meta)

    def _set_up(self, saved: SavedRun | None, pretrained: Pretrained | None) -> None:
        if pretrained is not None and pretrained.preset and pretrained.preset != self.config.preset:
            # a finetuned model has its source's shape, whatever the preset: named for what it is
            self.config = dataclasses.replace(self.config, preset=pretrained.preset)
        if saved is not None:  # the budget recipe's choice, as the checkpoint holds it (budget_recipe)
            self.config = budget_recipe.keep_saved_choice(self.config, saved.config.to_dict())
        self._set_up_data(self._model_config(saved, pretrained), saved, pretrained)
        self._set_up_model(pretrained)
        self._set_up_optimizer()
        self._set_up_random_streams()
        self._set_up_schedule()
        self._start_at_step_0()
        self._set_up_ema()
        if saved is not None:
            self._resume_from(saved)

    def _share_state_of_rank_0(self) -> None:
        """Every rank takes rank 0's parameters and optimizer state (its fresh, pretrained or resumed ones)."""
        if self.comm.size == 1:
            return
        self.comm.broadcast(self.model.flat.data)
        for buffer in self.optimizer.state_buffers():
            self.comm.broadcast(buffer)
        if self.ema is not None:
            self.comm.broadcast(self.ema.average)
        self.optimizer.step_count = self.comm.broadcast_object(self.optimizer.step_count)
        self.history = self.comm.broadcast_object(self.history)  # a resumed run's rows so far

    # --- setting up ------------------------------------------------------------------------------

    def _model_config(self, saved: SavedRun | None, pretrained: Pretrained | None) -> ViTConfig:
        """The checkpoint's own config when resuming; a pretrained model's (with the overrides) when
        finetuning; else the preset's."""
        if saved is not None:
            return saved.model_config
        if pretrained is not None:
            return self.config.model_config(base=pretrained.config)
        return self.config.model_config()

    def _set_up_data(self, model_config: ViTConfig, saved: SavedRun | None, pretrained: Pretrained | None) -> None:
        config = self.config
        data_dir = resolve_data_dir(config.data_dir, config.download)
        self.data_dir = data_dir
        shows_progress = config.progress and self.writes  # decoding bars and the cache's line: rank 0's
        full_train = load_training_images(data_dir, model_config.image_size, config.classes, shows_progress)
        if saved is not None and full_train.class_names != saved.class_names:
            raise DataError(f"The data in {data_dir} has the classes {', '.join(full_train.class_names)}, but the "
                            f"run in {self.run_dir} was trained on {', '.join(saved.class_names)}: resume "
                            "with the run's own data (--data-dir).")
        if "num_labels" not in config.model and saved is None:  # as many outputs as the data has classes
            model_config = model_config.replace(num_labels=full_train.num_classes)
        check_fits_model(full_train, model_config)
        self.model_config = model_config
        self.class_names = full_train.class_names
        self.train_set, self.val_set = split_for_validation(full_train, config.val_fraction, config.seed)
        if config.train_per_class:
            self.train_set = self.train_set.take_per_class(config.train_per_class, config.seed)
        self.mean, self.std = self.train_set.channel_stats()
        if pretrained is not None and pretrained.mean is not None:  # keep the inputs the model was trained on
            self.mean, self.std = pretrained.mean, pretrained.std
        self.batches = Batches(self.train_set.images, self.train_set.labels, config.batch_size, config.seed,
                               self.comm.rank, self.comm.size)
        self.test_set = None  # evaluated after every epoch with --test-every-epoch (outside the training clock)
        if config.test_every_epoch:
            from minivit.data import load_split

            test_set = load_split(data_dir, "test", image_size=model_config.image_size, progress=shows_progress)
            if config.classes:
                test_set = test_set.select_classes([name for name in config.classes if name in test_set.class_names])
            # labelled by name as the training classes: a test split that lacks a class keeps the others' labels
            self.test_set = test_set.relabelled_as(self.class_names, f"The test split of {data_dir}")
        report_data_problems(self.train_set, self.val_set, data_dir, model_config.image_size, config.classes,
                             self.test_set, warn=self.writes, progress=shows_progress)

    def _set_up_model(self, pretrained: Pretrained | None) -> None:
        dtype = self.config.precision  # float16: a float16 model, float32 master weights in the optimizer
        if pretrained is None or pretrained.state is None:  # (pretrained: rank 0 alone holds the weights)
            self.model = ViTForImageClassification(self.model_config, seed=self.config.seed, dtype=dtype)
            return
        # new classes need a new head, even when they are as many as the old ones
        new_head = (pretrained.class_names != self.class_names) if pretrained.class_names is not None else None
        self.model = build_from_pretrained(pretrained.config, pretrained.state, self.model_config,
                                           seed=self.config.seed, dtype=dtype, new_head=new_head, verbose=True,
                                           assumed=tuple(pretrained.meta.get("assumed", ())))

    def _set_up_optimizer(self) -> None:
        config = self.config
        float16 = config.precision == "float16"
        self.optimizer = build_optimizer(self.model, config.optimizer, lr=config.lr,
                                         weight_decay=config.weight_decay, momentum=config.momentum,
                                         freeze=config.freeze, layer_decay=config.layer_decay,
                                         master_weights=float16)
        self.scaler = LossScaler() if float16 else None
        self.take_step = TrainStep(self.model, self.optimizer, label_smoothing=config.label_smoothing,
                                   grad_clip=config.grad_clip, scaler=self.scaler, communicator=self.comm)

    def _set_up_random_streams(self) -> None:
        """Augmentation, mixing and dropout draw as functions of (seed, epoch, image) and (seed, step), never
        of the rank or of earlier draws (minivit.training.randomness): any number of ranks trains the
        same model, and a checkpoint needs no generator state to continue exactly, on any number of ranks."""
        self.randomness = RunRandomness(self.config.seed, self.batches, self.model)

    def _set_up_schedule(self) -> None:
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.schedule, note = Schedule.for_run(self.config, self.steps_per_epoch)
        self.total_steps = self.schedule.total_steps
        if note and self.writes:  # said (by rank 0), not silently done
            print(note, file=sys.stderr)

    def _start_at_step_0(self) -> None:
        """Where a new run stands (a resumed one then takes its checkpoint's place: ``_resume_from``)."""
        self.step = 0
        self.best_accuracy = -1.0
        self.elapsed = 0.0  # training seconds, summed over resumptions
        self.epoch_sums = {"loss": 0.0, "correct": 0.0, "seen": 0}
        self.history: list[dict] = []
        self.last_good: tuple | None = None  # (checkpoint path, step) of the newest good checkpoint
        self.watch = DivergenceWatch(self.model_config.num_labels, len(self.val_set.labels))

    def _set_up_ema(self) -> None:
        """The moving average of the weights (--ema; minivit.ema): of the float32 master weights in float16."""
        weights = self.model.flat.data if self.optimizer.master is None else self.optimizer.master
        self.ema = WeightAverage(self.model.flat, weights, self.config.ema) if self.config.ema else None

    def _resume_from(self, saved: SavedRun) -> None:
        # (on any number of ranks: the run's randomness is a function of seed, epoch, image and step)
        if saved.model_state is not None:  # (on ranks other than 0, the metadata alone)
            try:
                self.model.load_state_dict(saved.model_state)
                self.optimizer.load_state_dict(saved.optimizer_state)
                if self.optimizer.master is not None:  # the float32 weights, not their float16 copy
                    self.optimizer.load_weights(saved.model_state)
            except ValueError as error:
                raise CheckpointError(f"{saved.path}: {error}") from error
        if self.ema is not None:  # (rank 0 reads it; _share_state_of_rank_0 sends it to the others)
            self.ema.updates = saved.step
            if saved.model_state is not None:
                try:
                    self.ema.load_state_dict(saved.ema_state, saved.step)
                except ValueError as error:
                    raise CheckpointError(f"{saved.path}: {error}") from error
        if self.scaler is not None and saved.loss_scale is not None:
            self.scaler.load_state_dict(saved.loss_scale)
        self.step, self.best_accuracy, self.elapsed = saved.step, saved.best_accuracy, saved.elapsed
        # the normalisation the run started with (a finetuning run's came from its pretrained model)
        self.mean, self.std = saved.mean, saved.std
        self.epoch_sums = saved.epoch_sums
        if self.writes:
            self.history = self.run_folder.history(self.step)
            self.run_folder.truncate_steps(self.step)  # steps after the checkpoint will be run again
        self.last_good = (self.run_folder.last_checkpoint, self.step)
        check_limits_leave_room(self.config, self.step, self.elapsed, self.run_folder.given)

    # --- checkpoints -----------------------------------------------------------------------------

    def _meta(self) -> dict:
        """What a checkpoint holds besides the arrays (read back as a minivit.training.resume.SavedRun)."""
        meta = {
            "train_config": self.config.to_dict(), "step": self.step, "epoch": self.step / self.steps_per_epoch,
            "best_accuracy": self.best_accuracy, "elapsed": self.elapsed,
            "epoch_sums": self.epoch_sums, "mean": self.mean.tolist(), "std": self.std.tolist(),
            "class_names": self.class_names, "backend": backend.name, "ranks": self.comm.size,
            **({"loss_scale": self.scaler.state_dict()} if self.scaler is not None else {}),
        }
        return meta

    def evaluate(self, images: np.ndarray, labels: np.ndarray, tta: bool = False) -> dict:
        """Loss and accuracy over a data set (in a distributed run, each rank evaluates its shard);
        ``tta``: with flip test-time augmentation."""
        if self.comm.size == 1:
            return evaluate_model(self.model, images, labels, self.mean, self.std, self.config.eval_batch_size,
                                  tta)
        return evaluate_sharded(self.model, images, labels, self.mean, self.std, self.config.eval_batch_size,
                                self.comm, tta)

    def save(self, name: str = "checkpoint-last.npz"):
        """Write a checkpoint (rank 0). Refused (TrainingDiverged, on every rank) if a weight or optimizer
        value is not finite; SaveFailed (on every rank) if the file cannot be written."""
        path = self.run_dir / name
        refused, unwritten = None, None
        if self.writes:
            try:
                save_checkpoint(path, self.model, self.optimizer, self._meta(),
                                ema_weights=self.ema.state_dict() if self.ema is not None else None)
            except NonFiniteWeights as error:
                refused = error.names_text()
            except OSError as error:
                unwritten = self._save_failure(path, error)
        refused, unwritten = self.comm.broadcast_object((refused, unwritten))
        if refused:
            self._diverged(f"The weights became non-finite ({refused})")
        if unwritten:
            self._raise_together(SaveFailed(unwritten))
        if name == "checkpoint-last.npz":
            self.last_good = (path, self.step)
        return path

    def _write_log(self, path, write) -> None:
        """A log or figure written by rank 0; a failure stops the run as a checkpoint's does (``_save_failure``)."""
        try:
            write()
        except OSError as error:
            raise SaveFailed(self._save_failure(path, error)) from error

    def _save_failure(self, path, error: OSError) -> str:
        """Which file could not be written, at which step, why; which checkpoint is intact; how to continue."""
        why = error.strerror or str(error)
        if error.errno in _NO_ROOM:
            why += f": {_NO_ROOM[error.errno]}"
        message = f"Could not write {path} at step {self.step} (epoch {self.step / self.steps_per_epoch:.2f}): {why}."
        if self.last_good is not None:
            session = getattr(self, "_session", {"step": self.step, "elapsed": self.elapsed})
            command = report.continue_command(self.config, self.run_folder.given, self.comm.size, self.last_good[1],
                                              self.elapsed, session)
            message += (f" The previous checkpoint, {self.last_good[0]} (step {self.last_good[1]}), is intact. Free "
                        f"some space (or raise the limit), then continue from it with: {command}")
        else:
            message += (" No checkpoint had been written yet. Free some space (or raise the limit), then start the "
                        "run again with the same command.")
        return message

    def _raise_together(self, error: BaseException):
        if self.comm.size > 1:  # the ranks hold the same values: every one of them stops here
            mark_raised_together(error, self.comm)
        raise error

    def _diverged(self, what: str, finite: bool = False):
        epoch = math.ceil(self.step / self.steps_per_epoch)
        self._raise_together(TrainingDiverged(stop_message(what, self.step, epoch, self.last_good, finite)))

    # --- the loop --------------------------------------------------------------------------------

    def learning_rate(self, step: int) -> float:
        """The schedule's rate at ``step`` (and, with a time budget, at the run's clock): minivit.training.schedule."""
        return self.schedule.learning_rate(step, self.elapsed)

    def schedule_position(self, step: int) -> float:
        """How far along the schedule the run is, in steps: ``step``, or under a time budget the larger of
        it and the budget's share spent times the schedule's steps (see ``learning_rate``)."""
        return self.schedule.position(step, self.elapsed)

    def train_step(self):
        """One optimisation step; returns (loss, correct) as 0-d backend arrays (no host sync).

        The batch is drawn ("data") and augmented ("augment") here; the rest is the run's
        ``TrainStep`` (minivit.training.step), at the schedule's learning rate. Each part runs
        inside a named ``profile.phase``: counted on the simulated GPU, timed by
        ``profile.Profiler``, free otherwise.
        """
        with phase("data"):
            images, labels = self.batches.get(self.step)
            mean, std = self._device_mean_std()
        with phase("augment"):
            mix = self.schedule_position(self.step) < self.config.mixing_stops_at * self.total_steps
            pixel_values, targets = self.randomness.augment_step(self.step, images, labels, self.config.augment,
                                                                 mean, std, self.model.config.num_labels, mix=mix)
        loss, correct = self.take_step(pixel_values, targets, self.learning_rate(self.step))
        if self.ema is not None:
            with phase("optimizer"):
                self.ema.update()
        return loss, correct

    def _device_mean_std(self):
        """The normalisation's mean and std on the device: copied there once, not every step."""
        if self._device_stats is None or self._device_stats[0] is not self.mean:
            self._device_stats = (self.mean, backend.asarray(self.mean, dtype="float32"),
                                  backend.asarray(self.std, dtype="float32"))
        return self._device_stats[1:]

    def _budget_costs(self) -> budget_recipe.Costs:
        """What the budget recipe times beside its measured steps (``budget_recipe.Costs``): the batch of the
        current step augmented with a row's options, from draws of its own, and one batch of validation."""
        def augment(augment_config, draw):
            images, labels = self.batches.get(self.step)
            mean, std = self._device_mean_std()
            self.randomness.probe_augment(self.step, images, labels, augment_config, mean, std,
                                          self.model.config.num_labels, draw)

        size = min(self.config.eval_batch_size, len(self.val_set.labels))

        def validate():
            if size:
                self.evaluate(self.val_set.images[:size], self.val_set.labels[:size])

        return budget_recipe.Costs(augment, validate, len(self.val_set.labels) / max(1, size))

    def run(self) -> dict:
        """Train until the end of the schedule or a stop (Ctrl-C, --time-budget, --max-steps); returns a summary."""
        if self._has_run:
            raise RuntimeError("This Trainer has already run: make a new one (with resume=True) to continue.")
        self._has_run = True
        try:
            return self._run()
        finally:
            self.run_folder.release()

    def _run(self) -> dict:
        if self.writes:
            self._write_log(self.run_folder.config_file,
                            lambda: self.run_folder.start_logs(self.config.to_dict(), fresh=self.step == 0))
        self._session = {"step": self.step, "elapsed": self.elapsed}
        stop_reason = self._train_until_stopped()
        if stop_reason and self.step % self.steps_per_epoch != 0:
            self._end_epoch(None, partial=True)
        path = self.run_folder.last_checkpoint
        finished = self.step >= self.total_steps
        if self.writes:
            continue_with = None if finished else report.continue_command(
                self.config, self.run_folder.given, self.comm.size, self.step, self.elapsed, self._session)
            print(report.end_message(None if finished else stop_reason, self.step, self.steps_per_epoch, path,
                                     continue_with), file=sys.stderr)
        last = self.history[-1] if self.history else {}
        return {"run_dir": str(self.run_dir), "step": self.step, "finished": finished, "stop_reason": stop_reason,
                "val_accuracy": last.get("val_accuracy"), "best_val_accuracy": self.best_accuracy,
                **({"ema_val_accuracy": last.get("ema_val_accuracy")} if self.ema is not None else {}),
                "elapsed": self.elapsed, "checkpoint": str(path)}

    def _compile_kernels(self) -> None:
        """Run one step of a tiny model of the same dtype before the clock starts: the CPU's compiled
        loops (numba, cached on disk after the first run) and the GPU's kernels (NVRTC) are built here,
        not inside the time budget (the run's own first step, which builds what depends on its shapes, is
        off the clock too). Its own model and generators: the run's state is untouched."""
        from minivit.optim import AdamW

        tiny = ViTForImageClassification(ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=16, num_labels=2,
                                                   hidden_act=self.model.config.hidden_act),
                                         dtype=self.model.dtype)
        float16 = self.optimizer.master is not None
        optimizer = AdamW(tiny.named_parameters(), master_weights=float16)
        take_step = TrainStep(tiny, optimizer, label_smoothing=0.1, grad_clip=1.0,
                              scaler=LossScaler() if float16 else None)
        take_step(backend.xp.zeros((2, 3, 8, 8), dtype="float32"), backend.asarray(np.array([0, 1])), 1e-3)
        backend.synchronize()

    def _train_until_stopped(self) -> str | None:
        """Steps until the schedule ends (None) or a stop; returns the stop's reason."""
        config = self.config
        interrupted = {"flag": False}

        def on_sigint(signum, frame):
            if interrupted["flag"]:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now
            interrupted["flag"] = True
            if self.writes:
                print("\nCtrl-C: finishing this step, then saving a checkpoint (Ctrl-C again to abort).",
                      file=sys.stderr)

        previous_handler = signal.signal(signal.SIGINT, on_sigint)
        self._compile_kernels()
        together = self.comm.size > 1  # the ranks agree on the clock and on Ctrl-C at each drain
        interrupted_somewhere = False  # (together) whether any rank was interrupted, as of the last drain
        sync_every = 1 if backend.name == "numpy" else config.sync_every
        pending = []  # (step, learning rate) of the steps whose loss is not yet read on the host
        self._step_values = backend.xp.empty((sync_every, 2), dtype="float64")  # their loss and correct count
        session_start = None  # the clock starts once this session's first step is done (below)
        elapsed_before = self.elapsed
        self._clock_paused = 0.0  # seconds of this session not counted as training (test evaluations)
        progress = None
        if config.progress and self.writes:
            progress = report.Progress.open(report.run_name(config.preset), self.total_steps, self.step,
                                            self.elapsed, config.time_budget)
        self._curves = report.CurvesPlotter(self.run_folder.curves, f"{config.preset} ({backend.name})")
        stop_reason = None
        chooser = budget_recipe.BudgetRecipe.for_run(config, len(self.train_set.labels), self.step, together,
                                                     costs=self._budget_costs(),
                                                     parameters=self.model.num_parameters())
        try:
            while self.step < self.total_steps:
                loss, correct = self.train_step()
                with phase("metrics"):  # kept on the device until the next drain
                    self._step_values[len(pending), 0] = loss
                    self._step_values[len(pending), 1] = correct
                pending.append((self.step, self.optimizer.lr))
                self.step += 1
                if session_start is None:
                    # The session's first step builds what the tiny step above could not: the GPU
                    # kernels specialised to the run's own shapes, the augmentation's, cuBLAS's
                    # workspaces (5.7 s of cifar-gpu's first step on the H200). On the clock, that
                    # would spend most of a clock-driven warmup before the second step.
                    backend.synchronize()
                    session_start = time.perf_counter()
                clock = elapsed_before + time.perf_counter() - session_start - self._clock_paused
                if not together:
                    self.elapsed = clock
                if chooser is not None and self._follow_the_budget(chooser, progress):
                    chooser = None
                if self.on_step is not None:
                    self.on_step(self, self.step)
                end_of_epoch = self.step % self.steps_per_epoch == 0
                if len(pending) >= sync_every or end_of_epoch:
                    if together:  # rank 0's clock, and a stop if any rank was interrupted
                        views = self.comm.allgather_object((clock, interrupted["flag"]))
                        self.elapsed, interrupted_somewhere = views[0][0], any(flag for _, flag in views)
                    self._drain(pending, progress)
                if end_of_epoch:
                    self._end_epoch(progress)
                if interrupted_somewhere if together else interrupted["flag"]:
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
        return stop_reason

    def _follow_the_budget(self, chooser, progress) -> bool:
        """Once the pace is measured, the budget recipe's choice applies (minivit.training.budget_recipe). The
        timing of its costs (a few batches augmented, one validated) is not training: off the clock."""
        started = time.perf_counter()
        choice = chooser.observe(self.step)
        if choice is not None:
            self._clock_paused += time.perf_counter() - started
        if self.comm.size > 1:  # every rank measures the same steps; rank 0's pace decides
            choice = self.comm.broadcast_object(choice)
        if choice is None:
            return False
        self.config = budget_recipe.apply(self.config, choice)
        self.take_step.label_smoothing = self.config.label_smoothing  # (the step reads them from now on)
        self.take_step.grad_clip = self.config.grad_clip
        self.schedule, _ = Schedule.for_run(self.config, self.steps_per_epoch)  # its warmup share and epochs
        self.total_steps = self.schedule.total_steps
        if not self.config.ema:
            self.ema = None
        elif self.ema is None:
            self._set_up_ema()
        if self.writes:  # said on stderr (above the progress bar, if there is one)
            message = budget_recipe.describe(choice, self.config.time_budget,
                                             from_python=self.config.given_options is None)
            if progress is not None:
                progress.write(message)
            else:
                print(message, file=sys.stderr)
            self._write_log(self.run_folder.config_file,  # train_config.json with the choice
                            lambda: self.run_folder.start_logs(self.config.to_dict(), fresh=False))
        return True

    def _drain(self, pending: list, progress) -> None:
        """Read the pending losses on the host (one copy); stop on the first NaN or infinity."""
        if not pending:
            return
        step_values = self._step_values[:len(pending)]
        if self.comm.size > 1:  # the shards' losses (then divided) and correct counts, summed
            self.comm.allreduce_sum(step_values)
        values = backend.to_numpy(step_values)
        if self.comm.size > 1:
            values[:, 0] /= self.comm.size
        step_rows = []
        for (step, lr), (loss, correct) in zip(pending, values):
            if not math.isfinite(loss):
                self.step = step + 1
                self._diverged(f"The loss became {loss}")
            step_rows.append({"step": step + 1, "loss": round(float(loss), 5),
                              "accuracy": round(float(correct) / self.config.batch_size, 5), "lr": lr})
            self.epoch_sums["loss"] += float(loss) * self.config.batch_size
            self.epoch_sums["correct"] += float(correct)
            self.epoch_sums["seen"] += self.config.batch_size
        pending.clear()
        if self.writes:
            try:
                self.run_folder.append_steps(step_rows)
            except OSError as error:  # said at the epoch's end, where every rank stops together
                self._unwritten = self._unwritten or self._save_failure(self.run_folder.steps_log, error)
        if progress is not None:
            seen = max(1, self.epoch_sums["seen"])
            progress.show(self.step, self.elapsed, self.epoch_sums["loss"] / seen, self.epoch_sums["correct"] / seen,
                          self.step * self.config.batch_size / max(self.elapsed, 1e-9))

    def _end_epoch(self, progress, partial: bool = False) -> None:
        """Validate, watch for divergence, checkpoint (last, and best if validation improved), log, draw.

        ``partial``: a stop inside an epoch, whose training sums carry on when it resumes.
        """
        seen = max(1, self.epoch_sums["seen"])
        val = self.evaluate(self.val_set.images, self.val_set.labels)
        if not math.isfinite(val["loss"]):
            self._diverged(f"The validation loss became {val['loss']}")
        ema_val = None
        if self.ema is not None:  # the moving average of the weights, validated beside them
            with self.ema.in_model(self.model):
                ema_val = self.evaluate(self.val_set.images, self.val_set.labels)
        row = {"epoch": round(self.step / self.steps_per_epoch, 4), "step": self.step,
               "train_loss": self.epoch_sums["loss"] / seen, "train_accuracy": self.epoch_sums["correct"] / seen,
               "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": self.optimizer.lr,
               "elapsed": round(self.elapsed, 2),
               "images_per_second": round(self.step * self.config.batch_size / max(self.elapsed, 1e-9), 1)}
        diverged = self.watch.loss_diverged(self.step, row["train_loss"], row["lr"])
        if diverged:  # before the checkpoint: the last one stays the last good one
            self._diverged(diverged, finite=True)
        unwritten = self.comm.broadcast_object(self._unwritten)
        if unwritten:  # the steps log could not be written: neither will the checkpoint be
            self._raise_together(SaveFailed(unwritten))
        if ema_val is not None:
            row["ema_val_loss"], row["ema_val_accuracy"] = ema_val["loss"], ema_val["accuracy"]
        if self.test_set is not None:  # for time-to-accuracy measurements: not part of the training clock
            started = time.perf_counter()
            test = self.evaluate(self.test_set.images, self.test_set.labels, tta=self.config.tta)
            row["test_loss"], row["test_accuracy"] = test["loss"], test["accuracy"]
            if self.ema is not None:
                with self.ema.in_model(self.model):
                    row["ema_test_accuracy"] = self.evaluate(self.test_set.images, self.test_set.labels,
                                                             tta=self.config.tta)["accuracy"]
            self._clock_paused += time.perf_counter() - started
        if not partial:
            self.epoch_sums = {"loss": 0.0, "correct": 0.0, "seen": 0}
        improved = val["accuracy"] > self.best_accuracy
        if improved:
            self.best_accuracy = val["accuracy"]
        self.save()  # refused, before anything is logged, if the weights are not finite
        if improved:
            self.save("checkpoint-best.npz")
        self.history.append(row)
        if not self.writes:
            return
        self._write_log(self.run_folder.metrics_log, lambda: self.run_folder.append_metrics(row))
        last_epoch = partial or self.step >= self.total_steps
        self._write_log(self.run_folder.curves, lambda: self._curves.draw(self.history, last_epoch))
        lines = [report.epoch_summary(row)]
        warning = self.watch.chance_warning(self.step, row["train_loss"], row["val_accuracy"], row["lr"],
                                            self.schedule.warmup_done(self.step, self.elapsed))
        if warning:
            lines.append(warning)
        for line in lines:
            if progress is not None:
                progress.write(line)
            elif self.config.progress or line is warning:
                print(line, file=sys.stderr)


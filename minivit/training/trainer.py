"""The training run: ``Trainer(config, resume).run()``.

Setting up reads as five steps, in this order (``__init__``):

    the run folder    checked and locked before anything else (minivit.training.run_folder)
    the data          the train split, checked against the model, split for validation, batched
    the model         fresh from the seed, or pretrained weights adapted (minivit.adapt)
    the optimizer     over the parameters that train, at their rates (minivit.optim.build_optimizer)
    the resumption    weights, optimizer, step, clock, generators and logs from checkpoint-last.npz

One step: draw a batch (a seeded permutation per epoch), augment it on the backend,
forward, cross-entropy, backward, clip the gradient norm, set the learning rate (warmup,
then cosine), optimizer step. After each epoch: validate, append a row to metrics.jsonl,
redraw curves.png, write checkpoint-last.npz (and checkpoint-best.npz).

Nothing non-finite is kept: a NaN or infinite training loss, validation loss or weight
stops the run before a checkpoint is written, and the message names the step and the
checkpoint that really is the last good one.

A distributed run (``--distributed``, under ``mpiexec -n N``; see minivit.distributed) runs
this same Trainer on every rank, with a communicator (``self.comm``; ``SingleProcess`` for
an ordinary run):
  * rank 0 alone claims the run folder and reads the checkpoint or pretrained weights, and
    broadcasts the parameters and optimizer state: every rank starts from the same values;
  * each setting-up step fails on every rank if it fails on one (``_on_every_rank``);
  * each rank draws its shard of every global batch and its own random streams (seed and
    rank); one all-reduce of the flat gradient buffer averages the shards' gradients before
    clipping and the optimizer step (the "allreduce" phase);
  * the steps' losses and the validation counts are summed over the ranks, and the ranks
    agree on rank 0's clock and on Ctrl-C at every drain (every step on the CPU, every
    --sync-every steps on a GPU), so all take the same learning rates and stop at the same step;
  * rank 0 alone writes logs, figures and checkpoints (every rank's generator states go
    into them, so a run resumed on as many ranks continues exactly).
"""

from __future__ import annotations

import math
import shlex
import signal
import sys
import time

import numpy as np  # host side: generator states, metrics

from minivit import backend
from minivit.adapt import build_from_pretrained
from minivit.amp import LossScaler
from minivit.augment import augment_batch
from minivit.checkpoint import (
    CheckpointError,
    NonFiniteWeights,
    non_finite_names,
    read_checkpoint,
    read_ema_weights,
    save_checkpoint,
)
from minivit.cli import RunFailed
from minivit.config import ViTConfig
from minivit.data import DataError
from minivit.dispatch import cross_entropy_backward, cross_entropy_forward
from minivit.distributed import Communicator, SingleProcess, connect, mark_raised_together
from minivit.distributed.sharding import evaluate_sharded
from minivit.ema import WeightAverage
from minivit.evaluate import evaluate_model
from minivit.model import ViTForImageClassification
from minivit.optim import build_optimizer, warmup_cosine
from minivit.profile import phase
from minivit.training import budget_recipe
from minivit.training.data import (
    Batches,
    check_fits_model,
    load_training_images,
    resolve_data_dir,
    split_for_validation,
)
from minivit.training.options import RESUMABLE_CHANGES, TrainConfig
from minivit.training.run_folder import RunFolder


class TrainingDiverged(RunFailed):
    """The loss or the weights became NaN or infinite."""


class Trainer:
    """A training run. ``communicator``: this rank's, for a distributed run started some other way
    than ``config.distributed`` (which connects through MPI); None for ``SingleProcess``."""

    def __init__(self, config: TrainConfig, resume: bool = False, on_step=None,
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

    def _read_on_rank_0(self, resume: bool) -> tuple:
        """Rank 0 claims the run folder and reads the checkpoint (or the pretrained weights)."""
        if not self.writes:
            return None, None
        self.run_folder.claim(resume)
        saved = self._read_own_checkpoint() if resume else None
        pretrained = self._read_pretrained() if self.config.init_from and saved is None else None
        return saved, pretrained

    def _share_what_rank_0_read(self, saved, pretrained) -> tuple:
        """The other ranks get what they need to build the same model: the metadata, not the weights
        (``_share_state_of_rank_0`` sends those once the model is built)."""
        if self.comm.size == 1:
            return saved, pretrained
        saved_meta = self.comm.broadcast_object(saved[0] if saved is not None else None)
        pretrained_meta = self.comm.broadcast_object(None if pretrained is None else (pretrained[0], pretrained[2]))
        if self.writes:
            return saved, pretrained
        return (None if saved_meta is None else (saved_meta, None, None),
                None if pretrained_meta is None else (pretrained_meta[0], None, pretrained_meta[1]))

    def _set_up(self, saved, pretrained) -> None:
        if saved is not None:  # the budget recipe's choice, as the checkpoint holds it (budget_recipe)
            self.config = budget_recipe.keep_saved_choice(self.config, saved[0]["train_config"])
        self._set_up_data(self._model_config(saved, pretrained), saved, pretrained)
        self._set_up_model(pretrained)
        self._set_up_optimizer()
        self._set_up_schedule()
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

    def _read_own_checkpoint(self) -> tuple[dict, dict, dict]:
        """(meta, model state, optimizer state) of checkpoint-last.npz, if it continues this config."""
        path = self.run_folder.last_checkpoint
        meta, model_state, optimizer_state = read_checkpoint(path)
        saved = TrainConfig.from_checkpoint_meta(meta, path).to_dict()
        requested = budget_recipe.keep_saved_choice(self.config, saved).to_dict()
        differences = []
        for key in saved:
            if key in RESUMABLE_CHANGES or saved[key] == requested.get(key):
                continue
            if isinstance(saved[key], dict) and isinstance(requested.get(key), dict):  # model, augment
                fields = sorted(set(saved[key]) | set(requested[key]), key=str)
                differences += [f"{key}.{field}: checkpoint {saved[key].get(field)!r}, requested "
                                f"{requested[key].get(field)!r}" for field in fields
                                if saved[key].get(field) != requested[key].get(field)]
            else:
                differences.append(f"{key}: checkpoint {saved[key]!r}, requested {requested.get(key)!r}")
        if differences:
            raise CheckpointError(f"{path} does not match the requested run: " + "; ".join(differences)
                                  + ". Resume with the same options, or start a new run folder (--out).")
        bad = non_finite_names({**model_state, **optimizer_state})
        if bad:
            raise CheckpointError(f"{path} holds non-finite values ({', '.join(bad[:4])}): it cannot be continued. "
                                  "Start a new run (another --out).")
        return meta, model_state, optimizer_state

    def _read_pretrained(self) -> tuple:
        from minivit.convert import read_pretrained

        try:
            return read_pretrained(self.config.init_from, self.config.model.get("num_attention_heads"))
        except (OSError, KeyError, ValueError, CheckpointError) as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            raise CheckpointError(f"--init-from {self.config.init_from}: {message}") from error

    def _model_config(self, saved, pretrained) -> ViTConfig:
        """The checkpoint's own config when resuming; a pretrained model's (with the overrides) when
        finetuning; else the preset's."""
        if saved is not None:
            return ViTConfig.from_dict(saved[0]["config"])
        if pretrained is not None:
            return self.config.model_config(base=pretrained[0])
        return self.config.model_config()

    def _set_up_data(self, model_config: ViTConfig, saved, pretrained) -> None:
        config = self.config
        data_dir = resolve_data_dir(config.data_dir, config.download)
        full_train = load_training_images(data_dir, model_config.image_size, config.classes)
        if saved is not None and full_train.class_names != saved[0]["class_names"]:
            raise DataError(f"The data in {data_dir} has the classes {', '.join(full_train.class_names)}, but the "
                            f"run in {self.run_dir} was trained on {', '.join(saved[0]['class_names'])}: resume "
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
        if pretrained is not None and "mean" in pretrained[2]:  # keep the inputs the model was trained on
            self.mean = np.array(pretrained[2]["mean"], dtype=np.float32)
            self.std = np.array(pretrained[2]["std"], dtype=np.float32)
        self.batches = Batches(self.train_set.images, self.train_set.labels, config.batch_size, config.seed,
                               self.comm.rank, self.comm.size)
        self.test_set = None  # evaluated after every epoch with --test-every-epoch (outside the training clock)
        if config.test_every_epoch:
            from minivit.data import load_split

            test_set = load_split(data_dir, "test", image_size=model_config.image_size)
            if config.classes:
                test_set = test_set.select_classes([name for name in config.classes if name in test_set.class_names])
            # labelled by name as the training classes: a test split that lacks a class keeps the others' labels
            self.test_set = test_set.relabelled_as(self.class_names, f"The test split of {data_dir}")

    def _set_up_model(self, pretrained) -> None:
        dtype = self.config.precision  # float16: a float16 model, float32 master weights in the optimizer
        if pretrained is None or pretrained[1] is None:  # (pretrained: rank 0 alone holds the weights)
            self.model = ViTForImageClassification(self.model_config, seed=self.config.seed, dtype=dtype)
            return
        source_config, state, source_meta = pretrained
        # new classes need a new head, even when they are as many as the old ones
        new_head = (source_meta["class_names"] != self.class_names) if "class_names" in source_meta else None
        self.model = build_from_pretrained(source_config, state, self.model_config, seed=self.config.seed,
                                           dtype=dtype, new_head=new_head, verbose=True,
                                           assumed=tuple(source_meta.get("assumed", ())))

    def _set_up_optimizer(self) -> None:
        config = self.config
        float16 = config.precision == "float16"
        self.optimizer = build_optimizer(self.model, config.optimizer, lr=config.lr,
                                         weight_decay=config.weight_decay, momentum=config.momentum,
                                         freeze=config.freeze, layer_decay=config.layer_decay,
                                         master_weights=float16)
        self.scaler = LossScaler() if float16 else None
        self.trainable = [parameter for _, parameter in self.optimizer.named_parameters]
        self._set_up_random_streams()

    def _set_up_random_streams(self) -> None:
        """Dropout, augmentation (on the backend) and mixing (on the host) draw from streams of the seed;
        in a distributed run, of the seed and the rank. Rank 0 keeps an ordinary run's streams."""
        seed, rank = self.config.seed, self.comm.rank
        rank_key = [rank] if rank else []
        self.augment_rng = backend.default_rng(np.random.SeedSequence([seed, 2, *rank_key]).generate_state(1)[0])
        self.host_rng = np.random.default_rng([seed, 3, *rank_key])
        if rank:  # the model drew its dropout stream from the seed alone
            _use_dropout_stream(self.model, backend.default_rng(np.random.SeedSequence([seed, 1, rank])
                                                                .generate_state(1)[0]))

    def _set_up_schedule(self) -> None:
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.total_steps = self.config.epochs * self.steps_per_epoch
        self.warmup_steps = int(round(self.config.warmup_epochs * self.steps_per_epoch))
        if self.warmup_steps > self.total_steps // 2 and self.writes:  # said (by rank 0), not silently done
            print(f"note: --warmup-epochs {self.config.warmup_epochs:g} is more than half of the run's "
                  f"{self.config.epochs} epochs: the warmup is cut to {self.total_steps // 2} steps, half the "
                  "schedule.", file=sys.stderr)
        self.step = 0
        self.best_accuracy = -1.0
        self.elapsed = 0.0  # training seconds, summed over resumptions
        self.epoch_sums = {"loss": 0.0, "correct": 0.0, "seen": 0}
        self.history: list[dict] = []
        self.last_good: tuple | None = None  # (checkpoint path, step) of the newest finite checkpoint

    def _set_up_ema(self) -> None:
        """The moving average of the weights (--ema; minivit.ema): of the float32 master weights in float16."""
        weights = self.model.flat.data if self.optimizer.master is None else self.optimizer.master
        self.ema = WeightAverage(self.model.flat, weights, self.config.ema) if self.config.ema else None

    def _resume_from(self, saved: tuple) -> None:
        meta, model_state, optimizer_state = saved  # (on ranks other than 0, the metadata alone)
        path = self.run_folder.last_checkpoint
        self._check_same_ranks(meta)
        if model_state is not None:
            try:
                self.model.load_state_dict(model_state)
                self.optimizer.load_state_dict(optimizer_state)
                if self.optimizer.master is not None:  # the float32 weights, not their float16 copy
                    self.optimizer.load_weights(model_state)
            except ValueError as error:
                raise CheckpointError(f"{path}: {error}") from error
        if self.ema is not None:  # (rank 0 reads it; _share_state_of_rank_0 sends it to the others)
            self.ema.updates = meta["step"]
            if model_state is not None:
                try:
                    self.ema.load_state_dict(read_ema_weights(path), meta["step"])
                except ValueError as error:
                    raise CheckpointError(f"{path}: {error}") from error
        if self.scaler is not None and "loss_scale" in meta:
            self.scaler.load_state_dict(meta["loss_scale"])
        self.step, self.best_accuracy, self.elapsed = meta["step"], meta["best_accuracy"], meta["elapsed"]
        # the normalisation the run started with (a finetuning run's came from its pretrained model)
        self.mean, self.std = np.array(meta["mean"], dtype=np.float32), np.array(meta["std"], dtype=np.float32)
        self.epoch_sums = meta["epoch_sums"]
        streams = meta["rng_of_ranks"][self.comm.rank] if self.comm.size > 1 else meta["rng"]
        _set_generator_state(self.model.rng, streams["dropout"])
        _set_generator_state(self.augment_rng, streams["augment"])
        _set_generator_state(self.host_rng, streams["host"])
        if self.writes:
            self.history = self.run_folder.history(self.step)
            self.run_folder.truncate_steps(self.step)  # steps after the checkpoint will be run again
        self.last_good = (path, self.step)
        self._check_limits_leave_room()

    def _check_same_ranks(self, meta: dict) -> None:
        """A run continues on as many ranks as it ran on: each rank's random streams continue where they stopped."""
        ranks = meta.get("ranks", 1)
        if ranks == self.comm.size:
            return
        out = shlex.quote(self.run_folder.given)
        how = (f"mpiexec -n {ranks} python -m minivit.train --resume --out {out} --distributed" if ranks > 1
               else f"python -m minivit.train --resume --out {out} --no-distributed")
        raise CheckpointError(f"The run in {out} was trained on {ranks} rank{'s' if ranks > 1 else ''} and is resumed "
                              f"on {self.comm.size}: each rank's random streams (augmentation, dropout) continue "
                              f"only on a rank of their own. Resume it as it ran: {how}.")

    def _check_limits_leave_room(self) -> None:
        """A resumed run must be allowed at least one more step by --max-steps and --time-budget."""
        config, out = self.config, shlex.quote(self.run_folder.given)
        if config.max_steps is not None and config.max_steps <= self.step:
            raise ValueError(f"--max-steps {config.max_steps}: the run in {out} is already at step {self.step}. "
                             f"Give a larger --max-steps (it counts the run's steps in all), or leave it out to "
                             "train to the end.")
        if config.time_budget and self.elapsed >= config.time_budget:
            raise ValueError(f"--time-budget {config.time_budget:g}: the run in {out} has already trained "
                             f"{self.elapsed:.1f} s of it (the budget counts the run's whole training time). "
                             "Give a larger budget, e.g. --time-budget "
                             f"{math.ceil(self.elapsed + config.time_budget)}.")

    # --- checkpoints -----------------------------------------------------------------------------

    def _generator_states(self) -> dict:
        return {"dropout": _generator_state(self.model.rng), "augment": _generator_state(self.augment_rng),
                "host": _generator_state(self.host_rng)}

    def _meta(self, rng_of_ranks: list | None = None) -> dict:
        meta = {
            "train_config": self.config.to_dict(), "step": self.step, "epoch": self.step / self.steps_per_epoch,
            "best_accuracy": self.best_accuracy, "elapsed": self.elapsed,
            "epoch_sums": self.epoch_sums, "mean": self.mean.tolist(), "std": self.std.tolist(),
            "class_names": self.class_names, "backend": backend.name, "rng": self._generator_states(),
            **({"loss_scale": self.scaler.state_dict()} if self.scaler is not None else {}),
        }
        if self.comm.size > 1:  # every rank's streams (rank 0's are also "rng")
            meta.update(ranks=self.comm.size, rng_of_ranks=rng_of_ranks)
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
        """Write a checkpoint (rank 0); refused (TrainingDiverged, on every rank) if a weight or optimizer
        value is not finite."""
        path = self.run_dir / name
        rng_of_ranks = self.comm.gather_object(self._generator_states()) if self.comm.size > 1 else None
        refused = None
        if self.writes:
            try:
                save_checkpoint(path, self.model, self.optimizer, self._meta(rng_of_ranks),
                                ema_weights=self.ema.state_dict() if self.ema is not None else None)
            except NonFiniteWeights as error:
                refused = error.names_text()
        refused = self.comm.broadcast_object(refused)
        if refused:
            self._diverged(f"The weights became non-finite ({refused})")
        if name == "checkpoint-last.npz":
            self.last_good = (path, self.step)
        return path

    def _diverged(self, what: str):
        if self.last_good is not None:
            kept = f"The last good checkpoint is {self.last_good[0]} (step {self.last_good[1]})"
        else:
            kept = "No checkpoint was written"
        error = TrainingDiverged(f"{what} at step {self.step} (epoch {math.ceil(self.step / self.steps_per_epoch)}): "
                                 f"training stopped, and nothing non-finite was saved. {kept}. Lower --lr, keep "
                                 "--grad-clip on, or check the data.")
        if self.comm.size > 1:  # the ranks hold the same values: every one of them stops here
            mark_raised_together(error, self.comm)
        raise error

    # --- the loop --------------------------------------------------------------------------------

    def learning_rate(self, step: int) -> float:
        """Warmup, then cosine decay, over the run's --epochs.

        With a time budget the schedule runs on the clock: the run is as far along the
        schedule as the larger of its share of the epochs done and its share of the budget
        spent (validation included). The whole warmup and decay then fit into the budget,
        and the rate reaches its minimum as the budget runs out, whatever the pace of the
        machine; without a budget the steps alone decide, so resumed runs repeat exactly.
        """
        position = self.schedule_position(step)
        rate = warmup_cosine(position, self.total_steps, min(self.warmup_steps, self.total_steps // 2),
                             self.config.lr, self.config.min_lr)
        # warmup_cosine's warmup gives lr * (step + 1) / warmup_steps, which passes the peak between the
        # last warmup step and the cosine's start when the position is fractional (the clock's)
        return min(rate, self.config.lr)

    def schedule_position(self, step: int) -> float:
        """How far along the schedule the run is, in steps: ``step``, or under a time budget the larger of
        it and the budget's share spent times the schedule's steps (see ``learning_rate``)."""
        if self.config.time_budget:
            return max(step, self.elapsed / self.config.time_budget * self.total_steps)
        return step

    def train_step(self):
        """One optimisation step; returns (loss, correct) as 0-d backend arrays (no host sync).

        Each part runs inside a named ``profile.phase``: counted on the simulated GPU, timed
        by ``profile.Profiler``, free otherwise.
        """
        xp = backend.xp
        config = self.config
        with phase("data"):
            images, labels = self.batches.get(self.step)
            if self._device_stats is None or self._device_stats[0] is not self.mean:
                # the normalisation on the device once, not copied there every step
                self._device_stats = (self.mean, backend.asarray(self.mean, dtype="float32"),
                                      backend.asarray(self.std, dtype="float32"))
            _, mean, std = self._device_stats
        with phase("augment"):
            mix = self.schedule_position(self.step) < config.mixing_stops_at * self.total_steps  # --mixing-stops-at
            pixel_values, targets = augment_batch(images, labels, config.augment, mean, std,
                                                  self.model.config.num_labels, self.augment_rng, self.host_rng,
                                                  mix=mix)
        self.model.train()
        with phase("zero_grad"):
            self.optimizer.zero_grad()
        with phase("forward"):
            logits = self.model.forward(pixel_values.astype(self.model.dtype, copy=False))
        with phase("loss"):  # in float32, also when the model computes in float16 (in float64 for a float64 model)
            loss_dtype = xp.float64 if self.model.dtype == "float64" else xp.float32
            loss, loss_cache = cross_entropy_forward(logits.astype(loss_dtype, copy=False), targets,
                                                     config.label_smoothing)
            dlogits = cross_entropy_backward(1.0, loss_cache)
            if self.scaler is not None:
                dlogits = self.scaler.scale_loss_gradient(dlogits, self.model.dtype)
        with phase("backward"):
            self.model.backward(dlogits)
        with phase("allreduce"):  # the shards' gradients averaged: the whole batch's gradient, on every rank
            self.comm.allreduce_mean(self.model.flat.grad)
        with phase("clip"):
            if self.scaler is not None:  # float32 gradients for the master weights, the scale divided out
                self.scaler.unscale(self.model.flat.grad, self.optimizer.master_grad)
            if config.grad_clip > 0:
                self.optimizer.clip_gradients(config.grad_clip)
        with phase("optimizer"):
            self.optimizer.lr = self.learning_rate(self.step)
            self.optimizer.step(skip=None if self.scaler is None else self.scaler.found_inf)
            if self.scaler is not None:
                self.scaler.update()
            if self.ema is not None:
                self.ema.update()
        with phase("metrics"):
            hard_targets = targets if targets.ndim == 1 else xp.argmax(targets, axis=1)
            correct = xp.sum(xp.argmax(logits, axis=1) == hard_targets)
        return loss, correct

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
            self.run_folder.start_logs(self.config.to_dict(), fresh=self.step == 0)
        session = {"step": self.step, "elapsed": self.elapsed}
        stop_reason = self._train_until_stopped()
        if stop_reason and self.step % self.steps_per_epoch != 0:
            self._end_epoch(None, partial=True)
        path = self.run_folder.last_checkpoint
        finished = self.step >= self.total_steps
        message = (f"{'finished' if finished else stop_reason} at step {self.step} "
                   f"(epoch {self.step / self.steps_per_epoch:.2f}); checkpoint: {path}")
        if not finished:
            message += f"; continue with: {self.continue_command(session)}"
        if self.writes:
            print(message, file=sys.stderr)
        last = self.history[-1] if self.history else {}
        return {"run_dir": str(self.run_dir), "step": self.step, "finished": finished, "stop_reason": stop_reason,
                "val_accuracy": last.get("val_accuracy"), "best_val_accuracy": self.best_accuracy,
                **({"ema_val_accuracy": last.get("ema_val_accuracy")} if self.ema is not None else {}),
                "elapsed": self.elapsed, "checkpoint": str(path)}

    def continue_command(self, session: dict) -> str:
        """The command that continues this run from where it stopped, with limits that let it go on:
        a stop at --max-steps or --time-budget is followed by one as long again."""
        config = self.config
        command = ["python", "-m", "minivit.train", "--resume", "--out", self.run_folder.given]
        if self.comm.size > 1:
            command = ["mpiexec", "-n", str(self.comm.size), *command]
        if config.time_budget and self.elapsed >= config.time_budget:
            allowance = config.time_budget - session["elapsed"]  # what this session was given
            command += ["--time-budget", f"{math.ceil(max(config.time_budget, self.elapsed) + allowance):g}"]
        if config.max_steps is not None:  # a limit of one session: the resumed one gets its own
            more = self.step >= config.max_steps
            command += ["--max-steps", str(self.step + (self.step - session["step"]) if more else config.max_steps)]
        return " ".join(shlex.quote(part) for part in command)

    def _compile_kernels(self) -> None:
        """Run one step of a tiny model of the same dtype before the clock starts: the CPU's compiled
        loops (numba, cached on disk after the first run) and the GPU's kernels (NVRTC) are built here,
        not inside the time budget. Its own model and generators: the run's state is untouched."""
        from minivit.config import ViTConfig
        from minivit.optim import AdamW

        tiny = ViTForImageClassification(ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=16, num_labels=2,
                                                   hidden_act=self.model.config.hidden_act),
                                         dtype=self.model.dtype)
        optimizer = AdamW(tiny.named_parameters(), master_weights=self.optimizer.master is not None)
        pixels = backend.xp.zeros((2, 3, 8, 8), dtype=tiny.dtype)
        logits = tiny.forward(pixels).astype(backend.xp.float32)
        loss, cache = cross_entropy_forward(logits, backend.asarray(np.array([0, 1])), 0.1)
        tiny.backward(cross_entropy_backward(1.0, cache).astype(tiny.dtype))
        optimizer.clip_gradients(1.0)
        optimizer.step()
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
        session_start = time.perf_counter()
        elapsed_before = self.elapsed
        self._clock_paused = 0.0  # seconds of this session not counted as training (test evaluations)
        progress = self._progress_bar()
        stop_reason = None
        chooser = budget_recipe.BudgetRecipe.for_run(config, len(self.train_set.labels), self.step, together)
        try:
            while self.step < self.total_steps:
                loss, correct = self.train_step()
                with phase("metrics"):  # kept on the device until the next drain
                    self._step_values[len(pending), 0] = loss
                    self._step_values[len(pending), 1] = correct
                pending.append((self.step, self.optimizer.lr))
                self.step += 1
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
        """Once the pace is measured, the budget recipe's choice applies (minivit.training.budget_recipe)."""
        choice = chooser.observe(self.step)
        if self.comm.size > 1:  # every rank measures the same steps; rank 0's pace decides
            choice = self.comm.broadcast_object(choice)
        if choice is None:
            return False
        self.config = budget_recipe.apply(self.config, choice)
        self.warmup_steps = int(round(self.config.warmup_epochs * self.steps_per_epoch))
        if not self.config.ema:
            self.ema = None
        elif self.ema is None:
            self._set_up_ema()
        if self.writes:  # said on stderr (above the progress bar, if there is one)
            message = budget_recipe.describe(choice, self.config.time_budget)
            if progress is not None:
                progress.write(message, file=sys.stderr)
            else:
                print(message, file=sys.stderr)
            self.run_folder.start_logs(self.config.to_dict(), fresh=False)  # train_config.json with the choice
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
            self.run_folder.append_steps(step_rows)
        if progress is not None:
            seen = max(1, self.epoch_sums["seen"])
            if self.config.time_budget:  # the bar measures the budget: seconds spent of it
                progress.n = min(self.elapsed, self.config.time_budget)
                left = self.config.time_budget - progress.n
            else:  # the bar measures the steps of the recipe
                progress.n = self.step
                left = self.elapsed / max(1, self.step) * (self.total_steps - self.step)
            progress.set_postfix({"step": self.step, "left": f"{left / 60:.1f}min",
                                  "loss": f"{self.epoch_sums['loss'] / seen:.3f}",
                                  "acc": f"{self.epoch_sums['correct'] / seen:.3f}",
                                  "img_s": f"{self.step * self.config.batch_size / max(self.elapsed, 1e-9):.0f}",
                                  "lr": f"{self.optimizer.lr:.2e}"})

    def _progress_bar(self):
        """Under --time-budget, seconds of the budget (spent and left); otherwise steps of the recipe."""
        if not self.config.progress or not self.writes:
            return None
        from tqdm import tqdm

        description = f"{self.config.preset} on {backend.name}"
        if self.config.time_budget:
            budget = self.config.time_budget
            return tqdm(total=budget, initial=min(self.elapsed, budget), dynamic_ncols=True, desc=description,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of the time budget"
                                   "{postfix}")
        return tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True, desc=description)

    def _end_epoch(self, progress, partial: bool = False) -> None:
        """Validate, log, draw, and checkpoint (last, and best if validation improved).

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
            self._clock_paused = getattr(self, "_clock_paused", 0.0) + time.perf_counter() - started
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
        self.run_folder.append_metrics(row)
        # the curves at most every 30 s (a figure takes ~0.3 s: a lot beside a GPU's 2-second epoch) and at the end
        last_epoch = partial or self.step >= self.total_steps
        if last_epoch or time.perf_counter() - getattr(self, "_last_plot", float("-inf")) >= 30:
            from minivit.plots import training_curves

            training_curves(self.history, self.run_folder.curves, title=f"{self.config.preset} ({backend.name})")
            self._last_plot = time.perf_counter()
        summary = (f"epoch {row['epoch']:g}: train loss {row['train_loss']:.3f} acc {row['train_accuracy']:.3f} | "
                   f"val loss {row['val_loss']:.3f} acc {row['val_accuracy']:.3f} | {row['images_per_second']} img/s")
        if ema_val is not None:
            summary += f" | EMA val acc {row['ema_val_accuracy']:.3f}"
        if "test_accuracy" in row:
            summary += f" | test acc {row['test_accuracy']:.3f}"
        if progress is not None:
            progress.write(summary)
        elif self.config.progress:
            print(summary, file=sys.stderr)


def _use_dropout_stream(model, rng) -> None:
    """Give every dropout of ``model`` the generator ``rng`` (they share the model's ``rng``)."""
    shared = model.rng
    for module in model.modules():
        if getattr(module, "rng", None) is shared:
            module.rng = rng


# --- generator states (JSON-safe) --------------------------------------------------------------

def _generator_state(generator):
    if backend.name == "numpy" or isinstance(generator, np.random.Generator):
        return generator.bit_generator.state
    return None  # CuPy's generators are not restored: resumption is exact on NumPy only


def _set_generator_state(generator, state) -> None:
    if state is not None and (backend.name == "numpy" or isinstance(generator, np.random.Generator)):
        generator.bit_generator.state = state

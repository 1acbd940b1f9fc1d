"""What a training run depends on: ``TrainConfig``, its checks, and the named recipes.

A recipe is a set of training options (epochs, learning rate, augmentation, ...):
``cifar-cpu``, ``cifar-tiny`` and ``cifar-gpu`` train their preset from scratch; ``finetune`` starts
from pretrained weights (``--init-from``). ``python -m minivit.train --recipe finetune``
is the finetuning command (``python -m minivit.finetune`` is its alias).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from minivit import backend
from minivit.amp import PRECISIONS
from minivit.augment import AugmentConfig
from minivit.config import PRESETS, ViTConfig
from minivit.optim import OPTIMIZERS
from minivit.option_checks import (
    choice_problem,
    number_problem,
    option_name,
    option_names,
    whole_number_problem,
)

BACKENDS = backend.BACKENDS  # the array libraries minivit runs on (defined in minivit.backend)
MAX_SEED = 2**32 - 1


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
    mixing_stops_at: float = 1.0  # share of the schedule (0 to 1) after which mixup and cutmix stop; 1: never
    ema: float = 0.0  # decay of a moving average of the weights, validated and saved beside them (0.999); 0: none
    tta: bool = False  # test evaluations (--test-every-epoch) average each image's and its mirror image's logits
    # the recipe that follows the budget (minivit.training.budget_recipe): under --time-budget, the epochs
    # the budget allows choose the regularisation, except the options the user gave (given_options)
    budget_recipe: bool = False
    # options set by the user ("label_smoothing", "augment.crop_padding", ...): the command line lists the flags
    # it was passed; in Python, None means none, so the budget recipe sets every option its row names
    given_options: list | None = None
    budget_choice: dict | None = None  # what the budget recipe chose and why (kept by a resumed run)
    val_fraction: float = 0.1
    eval_batch_size: int = 500
    sync_every: int = 50  # steps between host reads of the loss on the GPU (1 on NumPy)
    tf32: bool = False  # TensorFloat-32 matrix products on the GPU (Ampere and newer): faster, 10-bit mantissas
    precision: str = "float32"  # "float16": mixed precision on a GPU (float16 model, float32 master weights);
    # "float64": a float64 model, for exact comparisons on the CPU (e.g. distributed ranks against one process)
    test_every_epoch: bool = False  # also evaluate the test split after every epoch, outside the training clock
    max_steps: int | None = None  # stop once the run has taken this many steps in all (as if interrupted)
    progress: bool = True
    distributed: bool = False  # one rank of a data-parallel run (under mpiexec; see minivit.distributed)
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
        """Refuse bad values before any work starts: every problem at once, each naming its option."""
        problems = [problem for problem in self._problems() if problem]
        if problems:
            raise ValueError("Bad training options: " + "; ".join(problems) + ".")
        try:
            self.model_config()
        except (ValueError, TypeError) as error:
            raise ValueError(f"Bad model options: {option_names(str(error))}") from error

    def _problems(self) -> list[str | None]:
        problems = [
            choice_problem("--preset", self.preset, PRESETS),
            choice_problem("--backend", self.backend, BACKENDS),
            choice_problem("--optimizer", self.optimizer, OPTIMIZERS),
            choice_problem("--precision", self.precision, PRECISIONS),
            None if self.precision != "float16" or self.backend != "numpy" else
            "--precision float16 is for a GPU (--backend cupy, or cupy-sim to simulate one): NumPy computes float16 "
            "in software, slower than float32",
            whole_number_problem("--seed", self.seed, 0, MAX_SEED),
            number_problem("--lr", self.lr, 0, low_open=True),
        ]
        for name in ("epochs", "batch_size", "eval_batch_size", "sync_every"):
            problems.append(whole_number_problem(option_name(name), getattr(self, name), 1))
        for name in ("max_steps", "train_per_class"):
            if getattr(self, name) is not None:
                problems.append(whole_number_problem(option_name(name), getattr(self, name), 1))
        for name in ("weight_decay", "warmup_epochs", "grad_clip"):
            problems.append(number_problem(option_name(name), getattr(self, name), 0))
        problems += [
            number_problem("--momentum", self.momentum, 0, 1, high_open=True),
            number_problem("--label-smoothing", self.label_smoothing, 0, 1, high_open=True),
            number_problem("--mixing-stops-at", self.mixing_stops_at, 0, 1),
            number_problem("--ema", self.ema, 0, 1, high_open=True),
            number_problem("--val-fraction", self.val_fraction, 0, 1, low_open=True, high_open=True),
            number_problem("--layer-decay", self.layer_decay, 0, 1, low_open=True),
        ]
        if self.time_budget is not None:
            problems.append(number_problem("--time-budget", self.time_budget, 0, low_open=True))
        lr_is_valid = not number_problem("--lr", self.lr, 0, low_open=True)
        if lr_is_valid and not number_problem("--min-lr", self.min_lr, 0):
            if self.min_lr > self.lr:
                problems.append(f"--min-lr ({self.min_lr:g}), where the cosine ends, must not exceed --lr "
                                f"({self.lr:g}), its peak: choose --min-lr in [0, {self.lr:g}]")
            if self.optimizer == "adamw" and not number_problem("--weight-decay", self.weight_decay, 0) \
                    and self.lr * self.weight_decay >= 1:
                problems.append(f"--lr x --weight-decay must be below 1 for adamw (each step scales the weights "
                                f"by 1 - lr x weight_decay); got {self.lr:g} x {self.weight_decay:g}")
        else:
            problems.append(number_problem("--min-lr", self.min_lr, 0))
        problems += self._data_problems() + self._finetune_problems()
        if not isinstance(self.model, dict):
            problems.append(f"model must be a dict of ViTConfig fields; got {type(self.model).__name__}")
        else:
            known = {item.name for item in dataclasses.fields(ViTConfig)}
            unknown = sorted(set(self.model) - known)
            if unknown:
                problems.append(f"unknown model option(s) {', '.join(unknown)}: ViTConfig has "
                                f"{', '.join(sorted(known))}")
        if not isinstance(self.augment, AugmentConfig):
            problems.append(f"augment must be an AugmentConfig; got {type(self.augment).__name__}")
        return problems

    def _data_problems(self) -> list[str | None]:
        problems = []
        if self.out is None or not isinstance(self.out, str):
            problems.append(f"--out must be a folder; got {self.out!r}")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            problems.append(f"--data-dir must be a folder; got {self.data_dir!r}")
        if self.classes is not None:
            names = list(self.classes) if isinstance(self.classes, (list, tuple)) else None
            if names is None or not all(isinstance(name, str) and name.strip() for name in names):
                problems.append(f"--classes must list class names, comma-separated; got {self.classes!r}")
            elif len(names) < 2:
                problems.append(f"--classes must name at least two classes for a classifier to tell apart; "
                                f"got {', '.join(names) or 'none'}")
            elif len(set(names)) != len(names):
                problems.append(f"--classes lists a class twice: {', '.join(names)}")
        return problems

    def _finetune_problems(self) -> list[str | None]:
        problems = []
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            problems.append(f"--init-from must name pretrained weights; got {self.init_from!r}")
        if not isinstance(self.freeze, str):
            problems.append(f"--freeze must be comma-separated name prefixes; got {self.freeze!r}")
        elif self.freeze.strip() and not all(item.strip() for item in self.freeze.split(",")):
            problems.append(f"--freeze {self.freeze!r} has an empty name between its commas")
        return problems

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "the saved options") -> TrainConfig:
        """A TrainConfig from ``to_dict()``'s output (a checkpoint's or train_config.json's)."""
        values = dict(values)
        known = {item.name for item in dataclasses.fields(cls)}
        augment_known = {item.name for item in dataclasses.fields(AugmentConfig)}
        unknown = sorted(set(values) - known) + sorted(f"augment.{name}" for name in
                                                       set(values.get("augment") or {}) - augment_known)
        if unknown:
            raise ValueError(f"{source} hold training options this minivit does not know ({', '.join(unknown)}): "
                             "they were written by another version.")
        values["augment"] = AugmentConfig(**values.get("augment", {}))
        return cls(**values)

    @classmethod
    def from_checkpoint_meta(cls, meta: dict, path) -> TrainConfig:
        """The options of the run that wrote the checkpoint at ``path`` (its ``meta``)."""
        from minivit.checkpoint import CheckpointError

        if not isinstance(meta.get("train_config"), dict):
            raise CheckpointError(f"{path} was not written by minivit.train: it holds no training options, so there "
                                  "is no run to continue (to start from its weights, use --init-from).")
        try:
            return cls.from_dict(meta["train_config"], source=str(path))
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: {error}") from error


# Training recipes: named starting points. Measured results are in benchmarks/results/, not here.
# Under --time-budget, cifar-cpu and cifar-gpu follow the budget (budget_recipe=True): after the first
# steps, the epochs the budget allows choose the regularisation from the table in
# minivit/training/budget_recipe.py (every row cites its evidence); the options below are what the
# first steps run with, and what a run without a budget (or with --no-budget-recipe) keeps.
RECIPES: dict[str, dict] = {
    # For ten minutes on the CPU (--time-budget 600): flips without random crops, which within the
    # 15 to 20 epochs of ten minutes cost more than they give. Chosen by benchmarks/cpu_recipe_sweep.py
    # (benchmarks/results/cpu-recipe-sweep.md); the ten-minute and one-hour results are in
    # benchmarks/results/cpu-training-cifar-cpu-*.
    "cifar-cpu": dict(epochs=100, batch_size=128, lr=2e-3, min_lr=1e-5, weight_decay=0.05, warmup_epochs=5,
                      label_smoothing=0.1, augment=AugmentConfig(crop_padding=0, horizontal_flip=True),
                      budget_recipe=True),
    "cifar-tiny": dict(epochs=50, batch_size=128, lr=1e-3, weight_decay=0.05, warmup_epochs=5,
                       label_smoothing=0.1, augment=AugmentConfig(crop_padding=4, horizontal_flip=True)),
    # For one GPU and a few minutes (--time-budget 300), the ViT of "Vision Transformer for Small-Size
    # Datasets" (Lee et al. 2021; patches projected linearly, no convolutional stem): batch 512 with the
    # rate scaled from 1e-3 at 128 (square root), TF32 products. As written (RandAugment 2/9, mixup, cutmix)
    # it is their 100-epoch recipe, which held a 40-epoch run on the H200 back
    # (benchmarks/results/gpu-h200-2026-11-26/); under a budget the table chooses instead: under 60
    # epochs crops and flips without RandAugment or mixing, from 60 to 200 RandAugment 2/5, from 200
    # RandAugment 2/9 and cutmix that stops at 90% of the schedule. What each is expected to reach, and
    # why: the module docstring of minivit/training/budget_recipe.py.
    "cifar-gpu": dict(epochs=200, batch_size=512, lr=2e-3, weight_decay=0.05, warmup_epochs=5,
                      label_smoothing=0.1, tf32=True, budget_recipe=True,
                      augment=AugmentConfig(crop_padding=4, horizontal_flip=True, randaugment_ops=2,
                                            randaugment_magnitude=9, mixup_alpha=0.8, cutmix_alpha=1.0)),
    # finetune: short, a lower peak rate than pretraining, a short warmup (with --init-from).
    "finetune": dict(epochs=30, batch_size=64, lr=5e-4, min_lr=1e-6, weight_decay=0.05, warmup_epochs=3,
                     label_smoothing=0.1),
}
FINETUNING = "finetune"  # the recipe name that needs --init-from

# The command line's help for options whose default alone does not say what they do.
OPTION_HELP = {
    "ema": "keep a moving average of the weights with this decay (e.g. 0.999), validated and saved beside them "
           "(evaluate it with python -m minivit.evaluate --weights ema); 0: none",
    "tta": "test evaluations (--test-every-epoch) average each image's logits with its mirror image's",
    "mixing_stops_at": "the share of the schedule (0 to 1) after which mixup and cutmix stop; 1: never",
    "budget_recipe": "under --time-budget, choose the regularisation (and, under 25 epochs, a lower rate) for the "
                     "epochs the budget allows, and lengthen the schedule when they are over half of --epochs "
                     "(minivit/training/budget_recipe.py; flags given win); on in the cifar-cpu and cifar-gpu recipes",
    "warmup_epochs": "epochs of linear warmup (under --time-budget: warmup_epochs / epochs of the budget)",
    "min_lr": "where the cosine ends (0: at zero, as the time budget runs out)",
}

# Options that may differ when resuming a run; everything else must match the checkpoint.
RESUMABLE_CHANGES = {"data_dir", "download", "backend", "time_budget", "max_steps", "progress",
                     "eval_batch_size", "sync_every", "out", "init_from", "tf32", "test_every_epoch", "distributed",
                     "tta", "given_options"}
# Options of one session, not of the run: a resumed run does not inherit them from its checkpoint.
SESSION_OPTIONS = {"max_steps", "progress", "download"}

"""A recipe that follows the budget: the epochs a --time-budget allows choose the regularisation (and,
for the shortest runs, the peak learning rate).

A recipe written for 200 epochs holds a 40-epoch run back (cifar-gpu's RandAugment, mixup and
cutmix on the H200: benchmarks/results/gpu-h200-2026-11-26/), and one written for ten CPU
minutes leaves an hour under-regularised. So, under ``--time-budget`` with ``budget_recipe`` on
(the ``cifar-cpu`` and ``cifar-gpu`` recipes turn it on; ``--no-budget-recipe`` turns it off):

  1. the run measures its pace, images per second, over its first steps (after the kernels are
     compiled and two steps have settled: ``PaceMeter``), on the clock of the budget;
  2. it works out the epochs the budget allows: budget x images/s / training images;
  3. it takes the row of ``ROWS`` for that many epochs and sets every option of the row that the
     user did not give (``TrainConfig.given_options``: a flag the user passed always wins); where
     the estimate is over half the recipe's epochs and ``--epochs`` was not given, it lengthens the
     schedule to twice the estimate (its warmup keeps its share), so that the clock, not the
     recipe's epoch count, ends the run;
  4. it prints what it chose and why, and keeps the choice in the run's options
     (``TrainConfig.budget_choice``), so the checkpoint holds it and a resumed run keeps it.

The measured steps run with the recipe's own options; the choice applies from the next step.
So the first steps' pace alone over-estimates: a row's heavier augmentation slows every later
step (RandAugment on the CPU), and the validation at each epoch's end is on the budget's clock.
An hour on a Xeon estimated 177.5 epochs from its first steps and ran 153.7 (round 12 of
benchmarks/results/cpu-recipe-sweep.md). The Trainer therefore hands the recipe ``Costs``: it
times one batch augmented as each row would augment it and one batch of validation, and each
row's epochs are worked out at the measured pace less the measured augmentation, plus the row's
own, plus the validations (``estimate``). The row chosen is the first whose own estimate falls
below its limit (or the lighter row before, where that estimate also falls below the row before's
limit). What is still not counted: the checkpoint and the curves written at each
epoch's end, and any drift of the machine's pace. The clock-driven schedule ends at the budget
whatever the count (``Trainer.learning_rate``), so a wrong estimate moves the run to a
neighbouring row, nothing worse.

Every row names the evidence that chose it; evidence that names cifar-cpu and is dated before
2026-12-07 ran the preset's earlier size (4 layers, MLP 512; 3 layers, MLP 256 since). The last row
(two hundred epochs and more) is the best reading of published runs of ViTs of 2.7 million parameters
and more, not yet measured on minivit at that size (the GPU issue's benchmarks/gpu_check.py does); on
the CPU, cifar-cpu (0.43 million) under-fit with it, so a row names the smallest model its evidence
covers (``Row.min_parameters``) and a smaller model keeps the row before. benchmarks/cpu_recipe_sweep.py
holds the commands that measure the others.

The GPU recipe, chosen before a GPU is at hand (issue 26.4): ``--preset cifar-gpu --backend cupy
--time-budget 300``, the ViT of "Vision Transformer for Small-Size Datasets" (patch 4 projected
linearly, no convolutional stem; hidden 192, 9 layers, 12 heads, MLP 384), batch 512, AdamW 2e-3.
  * At the pace of 2026-11-26 (about 9,000 images/s on an H200: 45 to 60 epochs in five minutes,
    less the validation) the table gives crops and flips without RandAugment or mixing (an hour on
    the CPU with RandAugment 2/5, stopped after 11 of its 40 epochs, was 6 to 12 points behind the
    same hour without it from epoch 2 on: benchmarks/results/cpu-hour-randaugment-stopped.md),
    label smoothing 0.1, 5% warmup, a rate that ends at zero. Expected: about 80 to 85% test, a
    reading of runs with stronger augmentation than this row's. Why: omihub777's
    curve (a larger ViT with AutoAugment, no mixing) is near 85% at epoch 50 of 200 with the rate
    still high, and a schedule that ends at zero at epoch 50 gains over that mid-run reading, but
    our own 40-epoch run of the same model with the 100-epoch recipe reached only 54%, and nothing
    published reaches 90% with a plain ViT in 50 epochs. 90% is not expected at this pace.
  * Measured on the H200 (benchmarks/results/gpu-h200-2026-12-04/): 16,500 images/s, 111 epochs,
    RandAugment 2/9 with dropout 0.1: 71.9% test, and the run under-fit; the row that 111 epochs
    fall in (60 to 200) now takes RandAugment 2/5 and the preset no dropout (to measure).
  * At the pace the GPU issue targets (25,000 to 40,000 images/s: 150 to 240 epochs) the table
    gives RandAugment 2/5 without mixing (under 200 epochs), then cutmix on half the batches
    that stops at 90% of the schedule and a 10% warmup (200 and more). Expected: about 89 to 92%.
    Why: omihub777's ViT reached 90.9 to 91.0% in 200 epochs with this augmentation, and Lee et
    al.'s ViT 93.6% in 100 epochs of three passes (300 passes) with mixing added; 90% needs the
    upper half of this range.
  Flip TTA (``python -m minivit.evaluate --tta``) and the EMA (``--ema 0.999``), measured on the
  CPU at 16 epochs (benchmarks/results/cpu-recipe-sweep.md, round 3, eight runs): TTA added 0.5
  points on average, an evaluation option that no row needs; the EMA added 0.07, nothing where the
  rate already ends at zero, so no row turns it on. The GPU issue measures the five minutes.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
import time
from dataclasses import dataclass

from minivit import backend
from minivit.augment import AugmentConfig


@dataclass(frozen=True)
class Row:
    """The options for runs of fewer than ``below_epochs`` epochs (and at least the previous row's), for models
    of at least ``min_parameters`` parameters (the smallest its evidence covers; a smaller model keeps the row
    before it, for any number of epochs)."""

    below_epochs: float
    name: str
    options: dict  # TrainConfig field -> value; "augment.<field>" for AugmentConfig; "warmup_share" (of the
    #                schedule's epochs) and "lr_scale" (of the recipe's own --lr, whatever the preset or batch)
    evidence: str
    min_parameters: int = 0


# What every row sets: the schedule ends at zero as the budget runs out (min_lr 0), so the last
# steps take the smallest steps of the run; label smoothing 0.1 (every recipe we cite uses it);
# no moving average of the weights (EMA) until the CPU runs measure it (issue 26.2: each choice is
# measured with several seeds before it enters a recipe; `cpu_recipe_sweep.py --only ema` does).
_EVERY_ROW = {"min_lr": 0.0, "label_smoothing": 0.1, "ema": 0.0, "augment.horizontal_flip": True,
              "augment.mix_prob": 1.0}
_NO_MIXING = {"augment.mixup_alpha": 0.0, "augment.cutmix_alpha": 0.0, "mixing_stops_at": 1.0}

ROWS: tuple[Row, ...] = (
    Row(25, "a few epochs: flips only, half the rate",
        {**_EVERY_ROW, **_NO_MIXING, "augment.crop_padding": 0, "augment.randaugment_ops": 0, "warmup_share": 0.05,
         "lr_scale": 0.5},
        "benchmarks/results/cpu-recipe-sweep.md round 3 (cifar-cpu at batch 128 on the CPU, 16 epochs, two seeds "
        "each): --lr 1e-3 reached 64.9% validation where the preset's 2e-3 reached 62.2% (ahead by 2.2 and 3.3 "
        "points) and 3e-3 60.3% (not measured at fewer epochs, nor for cifar-gpu at batch 512); "
        "round 2 (about 4 epochs): random crops cost 4.5 points of "
        "validation accuracy with 4-px patches and 7 with 8-px ones; benchmarks/results/cpu-training-cifar-cpu-600s"
        ".json: 16.5 epochs with flips only, 61.9% test; cpu-training-cifar-cpu-3600s.md: without crops, the "
        "8-px model stops improving after about 13 epochs, so crops start to pay near 20; cpu-recipe-sweep.md round "
        "5 (an Intel Xeon, seed 0): ten minutes whose first steps estimated 21.2 epochs ran 18.7 (the pace fell by "
        "an eighth after the first epoch), and this row's flips at 1e-3 reached 64.38% test where the next row's "
        "crops at 2e-3 reached 62.71%, so the row reaches to 25 estimated epochs (the faster EPYC's ten minutes, "
        "29, where crops and 2e-3 reached 67.95% and 66.92%, stay in the next); round 10 (3 layers with an MLP "
        "of 256, the preset since 2026-12-07, two seeds): crops at this row's rate, 17 to 20 epochs, 62.07% test "
        "on the mean where flips only reached 63.77%"),
    Row(60, "tens of epochs: crops and flips",
        {**_EVERY_ROW, **_NO_MIXING, "augment.crop_padding": 4, "augment.randaugment_ops": 0,
         "warmup_share": 0.05},
        "benchmarks/results/cpu-training-cifar-cpu-3600s.md: 26 epochs with crops and flips, 71.7% test, "
        "validation still rising at the end; cpu-training-cifar-cpu-3600s-openblas-avx512.md: 31.5 epochs, 72.7%, "
        "46.5 epochs, 76.6%, and 50.5 epochs, 76.6% (PyTorch beside it, 30.9 epochs: 72.9%); "
        "benchmarks/results/gpu-h200-2026-11-26/: 40 epochs with "
        "RandAugment 2/9, mixup 0.8 and cutmix 1.0 reached 54.3% test, where omihub777/ViT-CIFAR's curve "
        "without mixing is near 80% at epoch 40: mixing and strong RandAugment hold runs this short back; "
        "benchmarks/results/cpu-hour-randaugment-stopped.md: an hour of cifar-cpu with 4-px patches and "
        "RandAugment 2/5 (49 epochs estimated before RandAugment slowed it by about 12%) was 51.3% on "
        "validation at epoch 11 where the same hour without it was at 62.5%, and stopped there"),
    Row(200, "sixty to two hundred epochs (and more, for a model under a million parameters): crops, flips, "
        "light RandAugment",
        {**_EVERY_ROW, **_NO_MIXING, "augment.crop_padding": 4, "augment.randaugment_ops": 2,
         "augment.randaugment_magnitude": 5.0, "warmup_share": 0.05},
        "omihub777/ViT-CIFAR (README and main.py): AutoAugment and label smoothing without mixup, about 79% at "
        "epoch 25 and 85% at 50 of a 200-epoch run (a larger ViT than cifar-cpu, on a GPU), so such a policy "
        "pays in runs of a hundred epochs and more; half the magnitude (5 of 10) because "
        "benchmarks/results/gpu-h200-2026-12-04/: 111 epochs with "
        "RandAugment 2/9 and dropout 0.1 reached 71.9% test and under-fit (training loss 1.31, training accuracy "
        "under augmentation 63%, below validation's 72%); omihub777's 90.9% in 200 epochs (AutoAugment, no "
        "dropout) had twice the epochs and eight times the steps; on the CPU (benchmarks/results/"
        "cpu-recipe-sweep.md rounds 4 and 5), an hour of cifar-cpu with 8-px patches took this row: 100 epochs, 75.55% "
        "test on a Zen 5 EPYC, and 97.5 epochs, 75.06% on a Xeon where 4-px patches with crops and flips reached "
        "72.73% at 31.5 epochs; neither run over-fit (training accuracy under augmentation at or below validation's); "
        "round 8 (an Ice Lake Xeon, 3 layers with an MLP of 256, the preset since): 101.5 epochs with this row "
        "reached 73.68% test, and 121.8 epochs of the same hour without RandAugment over-fit (training accuracy "
        "91.6%, validation 73.7%) to 72.90%; round 12 (a Xeon of model 167, the preset as it is now): 153.7 "
        "epochs with this row reached 77.26% test, training accuracy under augmentation (76.8%) level with "
        "validation's (75.8%); round 13 (a faster Xeon of the same model, seed 1): 176.2 epochs with this row "
        "reached 78.04%, where the next row's RandAugment 2/9 and cutmix reached 73.59% in 205.7 and under-fit, so "
        "a model under a million parameters keeps this row past two hundred epochs"),
    Row(float("inf"), "two hundred epochs and more: RandAugment 2/9 and cutmix, off for the last 10%",
        {**_EVERY_ROW, "augment.crop_padding": 4, "augment.randaugment_ops": 2, "augment.randaugment_magnitude": 9.0,
         "augment.mixup_alpha": 0.0, "augment.cutmix_alpha": 1.0, "augment.mix_prob": 0.5,
         "mixing_stops_at": 0.9, "warmup_share": 0.1},
        "Lee, Lee and Song, 'Vision Transformer for Small-Size Datasets' (2021): their ViT (hidden 192, 9 layers, "
        "patch 4) reached 93.6% with mixup, cutmix, RandAugment and 10 warmup epochs of 100 (each epoch three "
        "passes, repeated augmentation); ablations of such models find mixup worth nothing and cutmix under a "
        "point (issue 26), so cutmix alone on half the batches; it stops for the last 10% of the schedule as "
        "YOLOX (Ge et al. 2021) stops its strong augmentation for the last 15 of 300 epochs; for models of a "
        "million parameters and more: the runs cited trained 2.7 million (Lee et al.'s) and more, and cifar-cpu "
        "(0.43 million) under-fit with this row (benchmarks/results/cpu-recipe-sweep.md round 13, an hour on a "
        "Xeon, seed 1: 205.7 epochs, training accuracy under augmentation 66.0% against 75.3% validation, 73.59% "
        "test, where the same seed with the previous row reached 78.04% in 176.2 epochs, its training accuracy "
        "(78.6%) level with validation's (78.7%))",
        min_parameters=1_000_000),
)


def rows_for(parameters: int | None = None) -> list[Row]:
    """The rows whose evidence covers a model of ``parameters`` parameters (None: any model)."""
    return [row for row in ROWS if parameters is None or parameters >= row.min_parameters]


def row_for(epochs: float, parameters: int | None = None) -> Row:
    """The row for a run of ``epochs`` epochs of a model of ``parameters`` parameters: of the rows that cover the
    model, the first that reaches past ``epochs``, or the last."""
    rows = rows_for(parameters)
    return next((row for row in rows if epochs < row.below_epochs), rows[-1])


def choose(epochs: float, images_per_second: float | None, config, row: Row | None = None,
           parameters: int | None = None) -> dict:
    """The choice for a run of ``epochs`` epochs under ``config``: {"epochs", "images_per_second", "row",
    "evidence", "chose": {option: value}, "kept": {option: the user's value}}. ``row``: this row's options
    whatever the epochs (``estimate`` tries each row at its own cost); ``parameters``: the model's (see
    ``row_for``; None: any model)."""
    row = row or row_for(epochs, parameters)
    given = set(config.given_options or ())
    chose, kept = {}, {}
    # Under a budget a recipe's epochs are a cap (the schedule runs at the larger of its share of the steps
    # and of the budget), so a budget that allows more than the recipe's epochs would end early: an hour of
    # cifar-cpu with 8-px patches stopped at its 100 epochs after 56 minutes (cpu-recipe-sweep.md round 4).
    # The schedule is lengthened to twice the estimate, so that the clock ends it; its warmup keeps its share.
    schedule_epochs = config.epochs
    if "epochs" not in given and 2 * epochs > config.epochs:
        schedule_epochs = chose["epochs"] = math.ceil(2 * epochs)
        if "warmup_epochs" in given:  # the user's warmup keeps the share it had of the recipe's epochs
            chose["warmup_epochs"] = round(config.warmup_epochs * schedule_epochs / config.epochs, 6)
    for option, value in row.options.items():
        field_name = {"warmup_share": "warmup_epochs", "lr_scale": "lr"}.get(option, option)
        if field_name in chose:  # the user's warmup, lengthened with the schedule above
            continue
        if field_name in given:
            kept[field_name] = _value(config, field_name)
        elif option == "warmup_share":  # the share of the schedule, in the schedule's own epochs
            chose["warmup_epochs"] = round(value * schedule_epochs, 6)
        elif option == "lr_scale":  # a share of the recipe's peak rate, not below a --min-lr the user gave
            floor = config.min_lr if "min_lr" in given else 0.0
            chose["lr"] = round(max(value * config.lr, floor), 12)
        else:
            chose[option] = value
    return {"epochs": round(epochs, 2), "images_per_second": images_per_second and round(images_per_second, 1),
            "row": row.name, "evidence": row.evidence, "chose": chose, "kept": kept}


def apply(config, choice: dict):
    """``config`` with the choice's options set and the choice recorded (a new TrainConfig)."""
    augment = dataclasses.asdict(config.augment)
    changes = {"budget_choice": choice}
    for option, value in choice["chose"].items():
        if option.startswith("augment."):
            augment[option[len("augment."):]] = value
        else:
            changes[option] = value
    return dataclasses.replace(config, augment=AugmentConfig(**augment), **changes)


def _value(config, option: str):
    if option.startswith("augment."):
        return getattr(config.augment, option[len("augment."):])
    return getattr(config, option)


def describe(choice: dict, budget: float, from_python: bool = False) -> str:
    """What the budget recipe chose and why, for the terminal. ``from_python``: the run's TrainConfig was
    built in Python with ``given_options`` unset, so nothing it sets counts as given (the command line
    marks the flags it was passed; a dataclass cannot tell a value set from a default)."""
    pace = (f"{choice['images_per_second']:,.0f} images/s over the first steps: " if choice["images_per_second"]
            else "")

    def listed(options: dict) -> str:
        return ", ".join(f"{option.replace('augment.', '')} {value:g}" if isinstance(value, float) else
                         f"{option.replace('augment.', '')} {value}" for option, value in options.items())

    lines = [f"budget recipe: {pace}about {choice['epochs']:g} epochs in {budget:g} s -> {choice['row']}"]
    costs = choice.get("costs")
    if costs:  # (a choice saved by an earlier version has none)
        lines += textwrap.wrap(f"counted: {costs['pace_epochs']:g} epochs at that pace, less this row's augmentation "
                               f"({costs['augment_ms_per_step']:+.1f} ms a step) and a validation at each epoch's "
                               f"end ({costs['validation_seconds']:.2f} s)", 116, initial_indent="  ",
                               subsequent_indent="    ")
    lines += textwrap.wrap(f"sets: {listed(choice['chose'])}", 116, initial_indent="  ", subsequent_indent="    ")
    if choice["kept"]:
        lines += textwrap.wrap(f"as given: {listed(choice['kept'])}", 116, initial_indent="  ",
                               subsequent_indent="    ")
    lines += textwrap.wrap(f"why: {choice['evidence']}", 116, initial_indent="  ", subsequent_indent="    ")
    if from_python:
        lines.append("  (budget_recipe=False keeps the options as they are; to keep some of them, name them in "
                     "TrainConfig(given_options=[...]), e.g. [\"lr\", \"augment.crop_padding\"])")
    else:
        lines.append("  (--no-budget-recipe keeps the recipe as it is; a flag given overrides its row)")
    return "\n".join(lines)


def keep_saved_choice(config, saved: dict):
    """A resumed run keeps the choice its checkpoint holds (``saved``: the checkpoint's options as a dict),
    also when resumed from a TrainConfig that has not chosen yet (the Python API)."""
    choice = saved.get("budget_choice")
    if not choice or config.budget_choice or not config.budget_recipe:
        return config
    return apply(config, choice)


class PaceMeter:
    """Images per second over a run's first steps: from the end of step ``start + skip`` to the end of
    ``count`` steps later, or earlier once the measured steps have taken ``share`` of the budget (at
    least 3 steps; ``share=None``: always ``count`` steps, as the ranks of a distributed run must, to
    decide at the same step). The clock is read after the backend synchronises (a GPU runs ahead of
    the host).

    The window also lasts at least ``least_share`` of the budget, up to ``least_seconds`` (not with
    ``share=None``): twenty CPU steps take about a second, and one slow second decided a run. On a Zen 5
    EPYC (benchmarks/results/cpu-recipe-sweep.md, round 14) twenty steps measured 1,588 images/s, the
    ten minutes then trained at 2,448, and the run took the few-epochs row for its 32.7 epochs."""

    skip, count = 2, 20
    least_share, least_seconds = 0.01, 10.0

    def __init__(self, start_step: int, batch_size: int, budget: float, share: float | None = 0.02, clock=None):
        self.first = start_step + self.skip
        self.batch_size = batch_size
        self.budget = budget
        self.share = share
        self.clock = clock
        self.started = None

    def observe(self, step: int) -> float | None:
        """Call after each step (``step``: the steps taken); returns images/s once measured, else None."""
        if step < self.first:
            return None
        clock = self.clock or time.perf_counter
        if self.started is None:
            backend.synchronize()  # the window starts when the device has done the steps before it
            self.started = clock()
            return None
        measured, seconds = step - self.first, clock() - self.started
        early = self.share is not None and measured >= 3 and seconds >= self.share * self.budget
        too_short = self.share is not None and seconds < min(self.least_share * self.budget, self.least_seconds)
        if (measured < self.count or too_short) and not early:
            return None
        backend.synchronize()  # ... and ends when it has done the steps inside it
        return measured * self.batch_size / max(clock() - self.started, 1e-9)


class BudgetRecipe:
    """The Trainer's side: measure, choose once, and say so. ``None`` from ``for_run`` when there is nothing
    to choose (no budget, the recipe off, or a choice already made)."""

    def __init__(self, config, train_images: int, start_step: int, same_steps_everywhere: bool = False,
                 clock=None, costs: Costs | None = None, parameters: int | None = None):
        self.config = config
        self.train_images = train_images
        self.costs = costs
        self.parameters = parameters
        self.meter = PaceMeter(start_step, config.batch_size, config.time_budget,
                               None if same_steps_everywhere else 0.02, clock)

    @classmethod
    def for_run(cls, config, train_images: int, start_step: int, same_steps_everywhere: bool = False,
                clock=None, costs: Costs | None = None, parameters: int | None = None):
        """``same_steps_everywhere``: a distributed run's ranks measure the same steps (see ``PaceMeter``);
        ``costs``: what the pace leaves out (``Costs``; None: the pace alone decides); ``parameters``: the
        model's (``row_for``)."""
        if not config.budget_recipe or not config.time_budget or config.budget_choice:
            return None
        return cls(config, train_images, start_step, same_steps_everywhere, clock, costs, parameters)

    def observe(self, step: int) -> dict | None:
        """After each step: the choice, once the pace is measured; None before (and after)."""
        images_per_second = self.meter.observe(step)
        if images_per_second is None:
            return None
        return estimate(images_per_second, self.config, self.train_images, self.costs, self.parameters)


class Costs:
    """What the first steps' pace leaves out, timed on the run's own data and model: one batch augmented
    with a row's options (``augment(augment_config, draw)``: as a step would, from draws of its own), and
    one batch of validation (``validate()``; ``validation_batches``: how many batches a validation takes).

    Each is run once first (kernels built for its shapes: off the average), then ``repeats`` times on a
    synchronised clock and averaged (a row with mixing mixes only some of its batches)."""

    def __init__(self, augment, validate, validation_batches: float, repeats: int = 3, clock=None):
        self.augment = augment
        self.validate = validate
        self.validation_batches = validation_batches
        self.repeats = repeats
        self.clock = clock or time.perf_counter
        self._augment_seconds = {}

    def augment_seconds(self, augment_config) -> float:
        """Seconds to augment one batch with ``augment_config`` (an AugmentConfig)."""
        key = dataclasses.astuple(augment_config)
        if key not in self._augment_seconds:
            self._augment_seconds[key] = self._timed(lambda draw: self.augment(augment_config, draw))
        return self._augment_seconds[key]

    def validation_seconds(self) -> float:
        """Seconds of the validation at one epoch's end."""
        return self.validation_batches * self._timed(lambda draw: self.validate())

    def _timed(self, run) -> float:
        run(0)
        backend.synchronize()
        started = self.clock()
        for draw in range(1, self.repeats + 1):
            run(draw)
        backend.synchronize()
        return (self.clock() - started) / self.repeats


def estimate(images_per_second: float, config, train_images: int, costs: Costs | None = None,
             parameters: int | None = None) -> dict:
    """The choice for a run whose first steps trained ``images_per_second``, of a model of ``parameters``
    parameters (the rows that cover it: ``row_for``).

    Without ``costs``, the epochs the budget allows at that pace. With them, each row in turn (from the
    fewest epochs): a step takes the measured step's seconds, less its augmentation under the recipe's
    own options, plus the row's; an epoch takes its steps and its validation (two with an EMA); the first row whose
    epochs so counted fall below its limit is the choice (the one a run at its own cost lands in), unless they
    also fall below the row before's limit, which that row's own count passed: then the lighter row before.
    (A distributed run's probe mixes within its shard; its real mixed steps also augment a partner shard.)
    """
    budget, batch = config.time_budget, config.batch_size
    pace_epochs = budget * images_per_second / max(1, train_images)
    if costs is None:
        return choose(pace_epochs, images_per_second, config, parameters=parameters)
    steps_per_epoch = max(1, train_images // batch)  # (an epoch leaves its last partial batch out)
    measured_step = batch / images_per_second
    measured_augment = costs.augment_seconds(config.augment)
    validation = costs.validation_seconds()
    counted = []  # (row, its epochs at its own cost, its augmentation's extra seconds a step)
    for row in rows_for(parameters):  # (if none breaks: the last row that covers the model)
        options = apply(config, choose(pace_epochs, images_per_second, config, row))
        augment = costs.augment_seconds(options.augment) - measured_augment
        step = max(measured_step + augment, 1e-9)
        validations = 2 if options.ema else 1  # the moving average is validated beside the weights
        counted.append((row, budget / (steps_per_epoch * step + validations * validation), augment))
        if counted[-1][1] < row.below_epochs:
            break
    if len(counted) > 1 and counted[-1][1] < counted[-2][0].below_epochs:
        # too many epochs for the row before at its cost, too few for this row at its own: the lighter row
        counted.pop()
    row, epochs, augment = counted[-1]
    choice = choose(epochs, images_per_second, config, row)
    choice["costs"] = {"pace_epochs": round(pace_epochs, 2), "augment_ms_per_step": round(1e3 * augment, 3),
                       "validation_seconds": round(validation, 6)}
    return choice


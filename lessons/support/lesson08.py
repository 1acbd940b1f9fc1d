"""Lesson 8, training on CIFAR-10: its exercises' checks, their solutions, its answers.

A check (``check_<exercise>(your_function)``, called by the cell under the exercise) builds small
float64 inputs, computes the expected answer without the solution below it (finite differences,
or the engine's reference ops) and compares with the diagnosing checks of ``support.diagnosis``.
``@solution`` marks what MINIVIT_SOLUTIONS=1 switches in; ANSWERS are the questions' answers, in
the order the lesson asks them (Markdown, with $math$).
"""

from __future__ import annotations

import math

import numpy as np

from .diagnosis import NotYet, check_curve, check_value
from .exercises import solution

# --- checks ---------------------------------------------------------------------------------------

def check_learning_rate(learning_rate) -> None:
    from minivit import optim

    total, warmup, base, low = 1000, 100, 1e-3, 1e-5
    steps = np.arange(total)
    yours = [learning_rate(int(s), total, warmup, base, low) for s in steps]
    expected = [optim.warmup_cosine(s, total, warmup, base, low) for s in steps]
    progress = np.clip((steps - warmup) / (total - warmup), 0, 1)
    cosine = 0.5 * (1 + np.cos(np.pi * progress))
    warm = steps < warmup
    mistakes = {
        "a warmup from 0 (step / W instead of (step + 1) / W)": np.where(warm, base * steps / warmup, expected),
        "a cosine that ends at 0 instead of min_lr": np.where(warm, expected, base * cosine),
        "a cosine over the whole run (progress step / T instead of (step - W) / (T - W))":
            np.where(warm, expected, low + 0.5 * (base - low) * (1 + np.cos(np.pi * steps / total))),
        "a cosine one step short at the end (progress (step - W) / (T - W - 1): min_lr is reached at step T - 1, "
        "expected one step later, at T)":
            np.where(warm, expected, low + 0.5 * (base - low)
                     * (1 + np.cos(np.pi * np.clip((steps - warmup) / (total - warmup - 1), 0, 1)))),
        "a cosine that falls to min_lr in half the time (cos(2 pi progress)?)":
            np.where(warm, expected, low + 0.5 * (base - low) * (1 + np.cos(2 * np.pi * progress))),
    }
    check_curve(steps, yours, expected, "your schedule against minivit.optim.warmup_cosine",
                ylabel="learning rate", segments={"warmup": (0, warmup), "cosine decay": (warmup, total)},
                mistakes=mistakes, rtol=1e-9)
    what = "with no warmup (warmup_steps = 0) the schedule starts at base_lr"
    try:
        first = learning_rate(0, 100, 0, base, low)
    except ZeroDivisionError:
        raise NotYet(what, ["your schedule divides by zero when warmup_steps = 0: skip the warmup "
                            "branch then"]) from None
    check_value(first, base, what, rtol=1e-9)


def check_ablation_conclusions(ablation_conclusions, table) -> None:
    """Your reading of the ablation lab's table (``support.ablations.summarise``) against the table:
    each verdict first (a difference counts when larger than the seed spread), then its size."""
    from .ablations import check_conclusions

    check_conclusions(ablation_conclusions(table), table)


# --- solutions ------------------------------------------------------------------------------------

@solution
def learning_rate(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


@solution
def ablation_conclusions(table):
    spread = table["spread"]
    conclusions = {}
    for name, row in table["ablations"].items():
        (baseline_value, baseline), (variant_value, variant) = row["baseline"], row["variant"]
        difference = float(np.mean(variant) - np.mean(baseline))
        if abs(difference) <= spread:
            conclusions[name] = ("neither", 0)
        else:
            conclusions[name] = (variant_value if difference > 0 else baseline_value, abs(difference))
    return conclusions


# --- answers --------------------------------------------------------------------------------------

ANSWERS = [
    r"""Because the schedule's shape (warmup, then a cosine that reaches its minimum at the end) is
    what makes the last steps fine-tune the weights at a small rate. Stopping the recipe's 100-epoch schedule
    after 10 minutes leaves the rate near its peak at the end: the weights are still moving fast
    and the accuracy is noisier and lower. Fitting the schedule to the budget gives the decay its
    turn.""",
    r"""With smoothing 0.1 over 10 classes the target is 0.91 on the true class and 0.01 on each
    other. The lowest loss is reached when the prediction equals that target: the entropy of the
    target, $-0.91 \ln 0.91 - 9 \cdot 0.01 \ln 0.01 \approx 0.086 + 0.414 = 0.50$.""",
    r"""The training accuracy is measured on augmented images (flips: the `cifar-cpu` preset does
    not crop; other recipes crop too), in training mode, averaged over the epoch while the model
    is still improving; validation runs on clean images at the end of the epoch, with the model
    as it is then. The average over the epoch pulls the training number down (the model at the
    end of an epoch is better than its average during it) and the augmentation too; the training
    images being the ones the model learns from pulls it up. Which wins depends on the run: in a
    two-minute `cifar-cpu` run (flips only) the two are close after one epoch, either way round;
    with stronger augmentation (crops, RandAugment, mixup) or within the first epoch the training
    number is usually below. Later the gap opens the other way as the model fits its training set.""",
]

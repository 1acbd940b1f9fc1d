"""Runs that went wrong, told apart from runs that are slow: what stops a run, and what only warns.

  * A NaN or infinite loss or weight stops the run at once (``Trainer._diverged``): nothing
    non-finite is ever saved.
  * A loss that stays finite but far above what a model that guesses gets (ln of the number
    of classes: 2.30 for ten) also stops it: ``loss_diverged`` refuses an epoch whose mean
    training loss exceeds ``LOSS_FACTOR`` times that, before its checkpoint is written, so
    the last checkpoint stays the last good one. (A learning rate
    far too high does this: the loss can sit at 1e9 while the accuracy stays at chance.)
  * A validation accuracy at chance for ``CHANCE_EVALUATIONS`` evaluations in a row after
    the warmup is only warned about, once: small or hard data can take a while to start.

The messages name the step, the loss and the likely cause, and never a flag the user may not
have passed (a recipe or a notebook sets the same options without flags).
"""

from __future__ import annotations

import math

from minivit.cli import RunFailed

LOSS_FACTOR = 10.0  # a loss this many times a guessing model's is no longer training
CHANCE_EVALUATIONS = 3  # evaluations in a row at chance after the warmup before a warning


class TrainingDiverged(RunFailed):
    """The loss or the weights became NaN or infinite, or the loss far larger than a guessing model's."""


class DivergenceWatch:
    """Watches each epoch's training loss (``loss_diverged``) and validation accuracy (``chance_warning``)."""

    def __init__(self, num_classes: int, validation_size: int):
        self.guessing_loss = math.log(num_classes)  # cross-entropy of uniform predictions
        self.chance = 1.0 / num_classes
        # chance, plus two standard errors of a guess's accuracy over the validation split
        self.chance_limit = self.chance + 2 * math.sqrt(self.chance * (1 - self.chance) / max(1, validation_size))
        self.at_chance = 0  # evaluations in a row at chance, after the warmup
        self.warned = False

    def too_large(self, loss: float) -> bool:
        return loss > LOSS_FACTOR * self.guessing_loss

    def loss_diverged(self, step: int, train_loss: float, lr: float) -> str | None:
        """What diverged (for ``stop_message``), if an epoch's training loss is far above a guessing model's;
        else None. (Not the validation loss: an overfitted model's can grow large while it still learns.)"""
        if not self.too_large(train_loss):
            return None
        return (f"The training loss reached {train_loss:.4g}, more than {LOSS_FACTOR:g} times the "
                f"{self.guessing_loss:.2f} of a model that guesses (finite, but worse than guessing), with a "
                f"learning rate of {lr:.3g}")

    def chance_warning(self, step: int, train_loss: float, val_accuracy: float, lr: float,
                       after_warmup: bool) -> str | None:
        """A warning, once, after CHANCE_EVALUATIONS evaluations in a row at chance after the warmup; else None."""
        if not after_warmup:
            return None
        self.at_chance = self.at_chance + 1 if val_accuracy <= self.chance_limit else 0
        if self.at_chance < CHANCE_EVALUATIONS or self.warned:
            return None
        self.warned = True
        return (f"warning: the validation accuracy has stayed at chance ({val_accuracy:.3f}; guessing gives "
                f"{self.chance:.3f}) for {self.at_chance} evaluations after the warmup, up to step {step} (training "
                f"loss {train_loss:.3f}, learning rate {lr:.3g}): the model is not learning. Likely causes: a "
                "learning rate too high (or too low) for this model, or labels that do not match the images.")


def stop_message(what: str, step: int, epoch: int, last_good: tuple | None, finite: bool = False) -> str:
    """The message of a diverged run. ``last_good``: (path, step) of the newest good checkpoint, or None."""
    if last_good is not None:
        kept = f"The last good checkpoint is {last_good[0]} (step {last_good[1]})"
    else:
        kept = "No checkpoint was written"
    saved = "the diverged weights were not saved" if finite else "nothing non-finite was saved"
    return (f"{what} at step {step} (epoch {epoch}): training stopped, and {saved}. {kept}. The likely cause is a "
            "learning rate too high for this model: lower it (--lr), lengthen the warmup, keep gradient clipping "
            "on (--grad-clip), or check the data.")

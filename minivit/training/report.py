"""What a run tells its user: the progress bar, a line per epoch, the curves, and the last words.

    progress = Progress.open(config, total_steps, step, elapsed)     None without --progress
    progress.show(step, elapsed, loss, accuracy, images_per_second)  after each drain
    epoch_summary(row)                                                "epoch 3: train loss ..."
    CurvesPlotter(path, title).draw(history, last)                   curves.png, at most every 30 s
    end_message(...)                                                  where the run stopped; how to continue
    next_message(run_dir, data_dir, finetuned)                        (the command line) what to run next

The progress bar leads with the numbers a user watches (loss, accuracy, images per
second), so that an 80-column terminal, which cuts a line at its right edge, still shows
them; the rest (the bar, step, time left, the run's name) follows.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from pathlib import Path

from minivit import backend

BAR_WIDTH = 12


class Progress:
    """A one-line progress bar (tqdm) on stderr: seconds of the time budget, or steps of the recipe."""

    def __init__(self, bar, name: str, total_steps: int, time_budget: float | None):
        self.bar, self.name, self.total_steps, self.time_budget = bar, name, total_steps, time_budget

    @classmethod
    def open(cls, name: str, total_steps: int, step: int, elapsed: float, time_budget: float | None,
             file=None, ncols: int | None = None) -> Progress:
        """``name``: the run's (preset and backend). ``ncols``: the width (default: the terminal's, as it changes)."""
        from tqdm import tqdm

        if time_budget:
            total, initial = time_budget, min(elapsed, time_budget)
            amount = "{percentage:3.0f}% of the {total:.0f} s budget"
        else:
            total, initial, amount = total_steps, step, "{n:.0f}/{total:.0f} steps"
        bar = tqdm(total=total, initial=initial, file=file if file is not None else sys.stderr,
                   dynamic_ncols=ncols is None, ncols=ncols, desc=f"{name}: starting",
                   bar_format="{desc} |{bar:" + str(BAR_WIDTH) + "}| " + amount + "{postfix}")
        return cls(bar, name, total_steps, time_budget)

    def show(self, step: int, elapsed: float, loss: float, accuracy: float, images_per_second: float) -> None:
        if self.time_budget:  # the bar measures the budget: seconds spent of it
            self.bar.n = min(elapsed, self.time_budget)
            left = self.time_budget - self.bar.n
        else:  # the bar measures the steps of the recipe
            self.bar.n = step
            left = elapsed / max(1, step) * (self.total_steps - step)
        self.bar.set_description_str(f"loss {loss:.3f} acc {accuracy:.3f} {images_per_second:.0f} img/s",
                                     refresh=False)
        where = f"step {step}, " if self.time_budget else ""  # (the steps are the bar's own count otherwise)
        self.bar.set_postfix_str(f"{where}{left / 60:.1f} min left, {self.name}", refresh=True)

    def write(self, line: str) -> None:
        """A line above the bar (the bar is drawn again below it)."""
        self.bar.write(line, file=self.bar.fp)

    def close(self) -> None:
        self.bar.close()


def epoch_summary(row: dict) -> str:
    """One line for a metrics row."""
    summary = (f"epoch {row['epoch']:g}: train loss {row['train_loss']:.3f} acc {row['train_accuracy']:.3f} | "
               f"val loss {row['val_loss']:.3f} acc {row['val_accuracy']:.3f} | {row['images_per_second']} img/s")
    if "ema_val_accuracy" in row:
        summary += f" | EMA val acc {row['ema_val_accuracy']:.3f}"
    if "test_accuracy" in row:
        summary += f" | test acc {row['test_accuracy']:.3f}"
    return summary


class CurvesPlotter:
    """curves.png, redrawn at most every ``every`` seconds and at the end: drawing a figure (matplotlib)
    can take longer than a whole epoch on a GPU."""

    def __init__(self, path: Path, title: str, every: float = 30.0):
        self.path, self.title, self.every = path, title, every
        self.last_drawn = float("-inf")

    def draw(self, history: list[dict], last: bool) -> None:
        if not last and time.perf_counter() - self.last_drawn < self.every:
            return
        from minivit.plots import training_curves

        training_curves(history, self.path, title=self.title)
        self.last_drawn = time.perf_counter()


def continue_command(config, out: str, ranks: int, step: int, elapsed: float, session: dict) -> str:
    """The command that continues a run from where it stopped, with limits that let it go on:
    a stop at --max-steps or --time-budget is followed by one as long again.
    ``session``: {"step", "elapsed"} when this session started."""
    command = ["python", "-m", "minivit.train", "--resume", "--out", out]
    if ranks > 1:
        command = ["mpiexec", "-n", str(ranks), *command]
    if config.time_budget and elapsed >= config.time_budget:
        allowance = config.time_budget - session["elapsed"]  # what this session was given
        command += ["--time-budget", f"{math.ceil(max(config.time_budget, elapsed) + allowance):g}"]
    if config.max_steps is not None:  # a limit of one session: the resumed one gets its own
        more = step >= config.max_steps
        command += ["--max-steps", str(step + (step - session["step"]) if more else config.max_steps)]
    return " ".join(shlex.quote(part) for part in command)


def evaluate_command(checkpoint: Path, data_dir: str) -> str:
    """The command that evaluates a run's checkpoint on the test split of its data."""
    return " ".join(shlex.quote(part) for part in
                    ["python", "-m", "minivit.evaluate", "--checkpoint", str(checkpoint), "--data-dir", str(data_dir)])


def end_message(stop_reason: str | None, step: int, steps_per_epoch: int, checkpoint: Path,
                continue_with: str | None) -> str:
    """Where the run stopped, its checkpoint, and how to continue it (if it stopped early)."""
    message = (f"{stop_reason or 'finished'} at step {step} (epoch {step / steps_per_epoch:.2f}); "
               f"checkpoint: {checkpoint}")
    if continue_with:
        message += f"; continue with: {continue_with}"
    return message


def next_message(run_dir: Path, data_dir: str, finetuned: bool) -> str:
    """What to run after a run from the command line: the evaluation of its best checkpoint on the test split."""
    best = Path(run_dir) / "checkpoint-best.npz"
    checkpoint, which = (best, "its best validation checkpoint") if best.is_file() else \
        (Path(run_dir) / "checkpoint-last.npz", "its last checkpoint")
    model = "the finetuned model" if finetuned else "the model"
    return f"next: evaluate {model} ({which}) on the test split: {evaluate_command(checkpoint, data_dir)}"


def run_name(preset: str) -> str:
    return f"{preset} on {backend.name}"

"""Train a ViT: ``python -m minivit.train`` or ``minivit.train.train(TrainConfig(...))``.

    python -m minivit.train --preset cifar-tiny --data-dir data/cifar10 --time-budget 600
    mpiexec -n 2 python -m minivit.train ... --distributed     # data-parallel on 2 ranks

The run writes into its folder (``--out``): metrics.jsonl (a row per epoch), steps.jsonl
(a row per step), train_config.json, curves.png, checkpoint-last.npz and
checkpoint-best.npz. A run can be resumed (``--resume``) from wherever it stopped: the
end of an epoch, Ctrl-C, --max-steps or the time budget; on NumPy the resumed run ends
with the same weights, bit for bit, as one that never stopped.

The training code, a room per job:

    minivit/training/options.py       TrainConfig, its checks, the recipes
    minivit/training/arguments.py     the parser (training, finetuning and resuming)
    minivit/training/run_folder.py    which folders a run may write into; its lock and logs
    minivit/training/resume.py        what a run starts from: its checkpoint (read once, checked once)
                                      or pretrained weights, as named fields (SavedRun, Pretrained)
    minivit/training/data.py          the training data: checked, split for validation, batched
    minivit/training/step.py          TrainStep: one optimisation step (the trainer's and the benchmarks')
    minivit/training/schedule.py      the learning rate: warmup and cosine, on the clock under a budget
    minivit/training/divergence.py    NaN stops, finite divergence, a model stuck at chance
    minivit/training/report.py        the progress bar, epoch lines, curves, the last words
    minivit/training/trainer.py       the Trainer: the order of setting up, the loop, checkpoints
    minivit/evaluate.py               evaluation (also the validation of training)
    minivit/optim.py                  optimizers, schedule, and which parameters train how fast
    minivit/adapt.py                  pretrained weights adapted for finetuning
    minivit/distributed/              data parallelism: MPI between processes, NCCL between GPUs
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from minivit.cli import run_command
from minivit.distributed import connected, settle_failure
from minivit.distributed.launch import launched_size
from minivit.training.arguments import build_parser, config_from_args
from minivit.training.options import RECIPES, RESUMABLE_CHANGES, TrainConfig
from minivit.training.report import next_message
from minivit.training.resume import SavedRun
from minivit.training.trainer import SaveFailed, Trainer, TrainingDiverged

__all__ = ["RECIPES", "RESUMABLE_CHANGES", "SaveFailed", "TrainConfig", "Trainer", "TrainingDiverged",
           "build_parser", "config_from_args", "main", "train"]


def train(config: TrainConfig, resume: bool | SavedRun = False, on_step=None) -> dict:
    """Train (or resume) a run; returns a summary dict. See the module docstring. ``resume``: True, or
    the run's checkpoint as ``config_from_args`` read it."""
    return Trainer(config, resume=resume, on_step=on_step).run()


def main(argv=None, prog: str = "python -m minivit.train", recipe: str | None = None) -> int:
    """The command line: prints the summary as one JSON line (and, on stderr, the command to run next);
    errors as one ``error:`` line.
    ``recipe``: the command's own recipe (``python -m minivit.finetune``'s), whose defaults --help shows."""
    def run(arguments) -> int:
        try:
            config, resume = config_from_args(arguments, prog, recipe)
            _check_launch(config)
            result = train(config, resume=resume)
        except BaseException as error:
            settle_failure(error)  # a distributed run: said once, and no rank left waiting
            raise
        connected_ranks = connected()
        if connected_ranks is None or connected_ranks.is_root:
            print(next_message(Path(result["run_dir"]), config.data_dir or "data", config.init_from is not None),
                  file=sys.stderr)
            print(json.dumps(result))
        return 0

    return run_command(run, argv)


def _check_launch(config: TrainConfig) -> None:
    """mpiexec -n 2 without --distributed would start two separate runs into one folder."""
    ranks = launched_size()
    if ranks and ranks > 1 and not config.distributed:
        raise ValueError(f"mpiexec started {ranks} processes, but without --distributed each would train a model of "
                         "its own (into the same run folder). Add --distributed to train one model on all of them, "
                         "or run a single process without mpiexec.")


if __name__ == "__main__":
    sys.exit(main())

"""The training command line: one parser for training from scratch, finetuning and resuming.

    python -m minivit.train [--preset P] [--recipe R] [options]     a new run
    python -m minivit.train --recipe finetune --init-from SOURCE    finetuning (alias: python -m minivit.finetune)
    python -m minivit.train --resume --out RUN_DIR [changes]        continue a run

A new run's options are its preset's recipe (or --recipe), overridden by the flags given.
A resumed run's are its checkpoint's, overridden by the flags given: those in
RESUMABLE_CHANGES may change; any other that differs is refused when the run starts.
--max-steps belongs to one session: a resumed run does not inherit it. The checkpoint is
read here, once: ``config_from_args`` hands it to the Trainer (a ``SavedRun``), which checks it.
``--help`` shows the defaults of the recipe the command runs (the finetuning command's own).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from minivit.augment import AugmentConfig
from minivit.cli import ArgumentParser
from minivit.config import POOLINGS, POSITION_EMBEDDING_TYPES, PRESETS, ViTConfig
from minivit.option_checks import option_names
from minivit.training.data import DOWNLOAD_WITH_DATA_DIR
from minivit.training.options import (
    BACKENDS,
    FINETUNING,
    OPTION_HELP,
    RECIPES,
    RESUMABLE_CHANGES,
    SESSION_OPTIONS,
    TrainConfig,
)
from minivit.training.resume import SavedRun, read_saved_run
from minivit.training.run_folder import RunFolder

# TrainConfig fields whose flags are written out by hand below
_SPECIAL_FIELDS = ("preset", "model", "data_dir", "download", "out", "backend", "augment", "progress", "classes",
                   "init_from", "freeze", "layer_decay", "given_options", "budget_choice")


def _class_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def build_parser(prog: str = "python -m minivit.train", recipe: str | None = None) -> ArgumentParser:
    """The parser; its help gives the defaults of ``recipe`` (None: each preset's own recipe, cifar-tiny's shown)."""
    defaults = {**dataclasses.asdict(TrainConfig()), **RECIPES[recipe or "cifar-tiny"]}
    out_default = "runs/finetune" if recipe == FINETUNING else "runs/<preset>"
    parser = ArgumentParser(
        prog=prog, description="Train (or finetune) a minivit ViT on CIFAR-10 or an image folder.",
        argument_default=argparse.SUPPRESS)
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="the model's name and shape (default: that of --init-from's weights)"
                        if recipe == FINETUNING else "the model's shape (default cifar-tiny)")
    parser.add_argument("--recipe", choices=sorted(RECIPES),
                        help="the training options: the preset's own by default; 'finetune' with --init-from")
    parser.add_argument("--data-dir", help="CIFAR-10 (cifar-10-batches-py or its parent) or an image folder "
                                           "with train/ and test/ (default: ./data)")
    parser.add_argument("--download", action="store_true", help="download CIFAR-10 into ./data if missing")
    parser.add_argument("--out", help=f"run folder: new, empty, or this run's own (default {out_default})")
    parser.add_argument("--backend", choices=BACKENDS)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--classes", type=_class_list,
                        help="train on these classes only, comma-separated (e.g. cat,dog)")
    finetune = parser.add_argument_group("finetuning")
    finetune.add_argument("--init-from", help="start from these weights: a minivit checkpoint, a transformers "
                                              "folder or hub name, a Google .npz or a timm .safetensors")
    finetune.add_argument("--freeze", help="name prefixes to hold fixed, comma-separated; 'backbone' = all but "
                                           "the classifier")
    finetune.add_argument("--layer-decay", type=float, help="layer-wise learning-rate decay in (0, 1]; default 1")
    if recipe is None:
        parser.epilog = ("Defaults shown are the cifar-tiny recipe's; each preset has its own recipe "
                         "(minivit.training.options.RECIPES), and --recipe chooses another.")
    for item in dataclasses.fields(TrainConfig):
        if item.name in _SPECIAL_FIELDS:
            continue
        default = defaults[item.name]
        shown = f"default: {default}" + (f" ({OPTION_HELP[item.name]})" if item.name in OPTION_HELP else "")
        if isinstance(item.default, bool):
            parser.add_argument(f"--{item.name.replace('_', '-')}", action=argparse.BooleanOptionalAction,
                                help=shown)
            continue
        kind = float if item.name in ("time_budget",) else type(item.default) if item.default is not None else int
        parser.add_argument(f"--{item.name.replace('_', '-')}", type=kind, help=shown)
    augment = parser.add_argument_group("augmentation")
    augment_defaults = dataclasses.asdict(RECIPES[recipe or "cifar-tiny"].get("augment", AugmentConfig()))
    for item in dataclasses.fields(AugmentConfig):
        flag = f"--{item.name.replace('_', '-')}"
        if isinstance(item.default, bool):
            augment.add_argument(flag, action=argparse.BooleanOptionalAction,
                                 help=f"default: {augment_defaults[item.name]}")
        else:
            augment.add_argument(flag, type=type(item.default), help=f"default: {augment_defaults[item.name]}")
    model = parser.add_argument_group("model (overrides the preset's ViTConfig)")
    for item in dataclasses.fields(ViTConfig):
        flag = f"--{item.name.replace('_', '-')}"
        if isinstance(item.default, bool):
            model.add_argument(flag, dest=f"model.{item.name}", action=argparse.BooleanOptionalAction)
        elif item.name == "patch_stride":
            model.add_argument(flag, dest=f"model.{item.name}", type=int)
        elif item.name == "pooling":
            model.add_argument(flag, dest=f"model.{item.name}", choices=POOLINGS,
                               help="classify from the CLS token (cls, ViT's way) or the mean of all tokens (mean)")
        elif item.name == "position_embedding_type":
            model.add_argument(flag, dest=f"model.{item.name}", choices=POSITION_EMBEDDING_TYPES,
                               help="learned position embeddings added to the tokens (learned, ViT's way), or none")
        else:
            model.add_argument(flag, dest=f"model.{item.name}", type=type(item.default))
    return parser


def config_from_args(argv=None, prog: str = "python -m minivit.train",
                     recipe: str | None = None) -> tuple[TrainConfig, SavedRun | bool]:
    """(TrainConfig, resume) from command-line arguments; see the module docstring. ``resume`` is False
    for a new run, or the run's checkpoint, read (true). ``recipe``: the command's own (its --help's defaults)."""
    if recipe is not None:
        argv = ["--recipe", recipe, *(sys.argv[1:] if argv is None else argv)]
    args = vars(build_parser(prog, recipe).parse_args(argv))
    resume = args.pop("resume", False)
    preset = args.pop("preset", "cifar-tiny")
    recipe = args.pop("recipe", preset if preset in RECIPES else "cifar-tiny")
    values = {"preset": preset, "out": "runs/finetune" if recipe == FINETUNING else f"runs/{preset}",
              **RECIPES[recipe]}
    augment = dataclasses.asdict(values.pop("augment", AugmentConfig()))
    model = {}
    for key, value in args.items():
        if key.startswith("model."):
            model[key[len("model."):]] = value
        elif key in augment:
            augment[key] = value
        else:
            values[key] = value
    if "download" in args and "data_dir" in args:
        raise ValueError(DOWNLOAD_WITH_DATA_DIR)
    if resume:
        return _resumed_config(values, args, model, augment)
    if recipe == FINETUNING and "init_from" not in values:
        raise ValueError(f"{prog} --recipe finetune needs --init-from SOURCE (a minivit checkpoint, a transformers "
                         "folder or hub name, a Google .npz or a timm file). See --help.")
    try:
        augment_config = AugmentConfig(**augment)
    except ValueError as error:
        raise ValueError(f"Bad augmentation options: {option_names(str(error))}") from error
    # the options the user gave: a recipe that follows the budget leaves them as given
    given = sorted(f"augment.{key}" if key in augment else key for key in args if not key.startswith("model."))
    return TrainConfig(**{**values, "model": model, "augment": augment_config, "given_options": given}), False


def _resumed_config(values: dict, args: dict, model: dict, augment: dict) -> tuple[TrainConfig, SavedRun]:
    """The run's own options (from its checkpoint), with the ones given on the command line; the checkpoint."""
    saved = read_saved_run(RunFolder(values["out"]))
    merged = saved.config.to_dict()
    defaults = TrainConfig()
    for key in SESSION_OPTIONS:
        merged[key] = getattr(defaults, key)
    for key, value in values.items():
        if key in RESUMABLE_CHANGES or key in args:
            merged[key] = value
    merged["model"] = {**merged["model"], **model}
    merged["augment"] = {**merged["augment"], **{key: value for key, value in augment.items() if key in args}}
    try:
        return TrainConfig.from_dict(merged), saved
    except ValueError as error:
        raise ValueError(f"Bad augmentation options: {option_names(str(error))}") from error

"""Evaluate a checkpoint: ``python -m minivit.evaluate --checkpoint PATH --data-dir DIR [--split test]``.

Prints the accuracy and the accuracy of each class, and draws the confusion
matrix next to the checkpoint (or at --figure). ``--json`` prints one JSON
object instead: {"accuracy", "per_class", "confusion_matrix", ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from minivit import backend
from minivit.checkpoint import CheckpointError, load_checkpoint
from minivit.data import DataError, load_split


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | Path, split: str = "test",
                        batch_size: int = 500) -> dict:
    from minivit.train import evaluate_model

    model = load_checkpoint(checkpoint)
    meta = model.checkpoint_meta
    if "mean" not in meta:
        raise CheckpointError(f"{checkpoint} has no normalisation statistics: it was not written by "
                              "minivit.train.")
    dataset = load_split(data_dir, split, image_size=model.config.image_size)
    if dataset.class_names != meta["class_names"] and set(meta["class_names"]) <= set(dataset.class_names):
        dataset = dataset.select_classes(meta["class_names"])  # a model trained on some of the classes
    if dataset.class_names != meta["class_names"]:
        raise DataError(f"The data's classes {dataset.class_names} are not the checkpoint's "
                        f"{meta['class_names']}.")
    result = evaluate_model(model, dataset.images, dataset.labels, np.array(meta["mean"], dtype=np.float32),
                            np.array(meta["std"], dtype=np.float32), batch_size)
    num_classes = len(dataset.class_names)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (dataset.labels, result["predictions"]), 1)
    per_class = {name: float(confusion[i, i] / max(1, confusion[i].sum()))
                 for i, name in enumerate(dataset.class_names)}
    return {"checkpoint": str(checkpoint), "split": split, "num_images": int(len(dataset)),
            "accuracy": result["accuracy"], "loss": result["loss"], "per_class": per_class,
            "confusion_matrix": confusion.tolist(), "class_names": dataset.class_names}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minivit.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--backend", default="numpy", choices=backend.BACKENDS)
    parser.add_argument("--figure", help="where to draw the confusion matrix (default: beside the checkpoint)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        backend.use(args.backend)
        result = evaluate_checkpoint(args.checkpoint, args.data_dir, args.split, args.batch_size)
    except (ValueError, DataError, CheckpointError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from minivit.plots import confusion_matrix_figure

    figure = Path(args.figure) if args.figure else Path(args.checkpoint).with_name(f"confusion-{args.split}.png")
    confusion_matrix_figure(np.array(result["confusion_matrix"]), result["class_names"], figure,
                            title=f"{args.split}: {100 * result['accuracy']:.2f}% correct")
    result["figure"] = str(figure)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.split} accuracy: {100 * result['accuracy']:.2f}% on {result['num_images']} images "
          f"(loss {result['loss']:.4f})")
    for name, accuracy in result["per_class"].items():
        print(f"  {name:>12s}  {100 * accuracy:6.2f}%")
    print(f"confusion matrix: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

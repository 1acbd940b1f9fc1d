"""Evaluate a model: ``python -m minivit.evaluate --checkpoint PATH --data-dir DIR [--split test]``.

Prints the accuracy and the accuracy of each class, and draws the confusion
matrix next to the checkpoint (or at --figure). ``--json`` prints one JSON
object instead: {"accuracy", "per_class", "confusion_matrix", ...}. A --figure that
already exists is replaced only with --overwrite; the default figure beside a checkpoint
in a run folder is that run's own and is refreshed (``minivit.outputs``).

``evaluate_model`` is the loop that training validates with: loss, accuracy and
predictions over a data set, batch by batch, in eval mode and keeping no
activations (no backward follows).

``--tta`` (flip test-time augmentation) classifies each image from the mean of its logits
and its mirror image's; ``--weights ema`` evaluates the moving average of the weights that a
run trained with ``--ema`` saved beside its own.

A checkpoint with NaN or infinite weights is refused, and so is test data holding a
class the model was not trained on (a model trained with ``--classes`` on some of the
classes is evaluated on those). A split that lacks some of the model's classes is
evaluated on the others, and the output names the classes it lacks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from minivit import backend
from minivit.augment import normalize
from minivit.checkpoint import WEIGHTS, CheckpointError, load_checkpoint
from minivit.cli import ArgumentParser, run_command
from minivit.data import SPLITS, Dataset, load_split
from minivit.data.audit import lacking_classes
from minivit.nn import no_grad
from minivit.ops import cross_entropy_forward
from minivit.option_checks import whole_number_problem
from minivit.outputs import check_new_files, in_run_folder


def evaluate_model(model, images: np.ndarray, labels: np.ndarray, mean, std, batch_size: int = 500,
                   tta: bool = False) -> dict:
    """Loss, accuracy and predictions over a whole data set, in eval mode, batch by batch.

    images uint8 (N, C, H, W) on the host, labels (N,); mean, std (C,) in [0, 1] pixels.
    ``tta``: the logits of each image are the mean of its own and its mirror image's (flip
    test-time augmentation; the loss is that of the mean logits).
    Returns {"loss": mean cross-entropy, "accuracy": share correct, "predictions": (N,) int}.
    """
    problem = whole_number_problem("batch_size", batch_size, 1)
    if problem:
        raise ValueError(problem + ".")
    xp = backend.xp
    model.eval()
    total_loss, predictions = 0.0, []
    with no_grad():
        for start in range(0, len(labels), batch_size):
            batch = backend.asarray(images[start:start + batch_size])
            batch_labels = backend.asarray(labels[start:start + batch_size])
            pixel_values = normalize(batch, mean, std).astype(model.dtype)  # (B, C, H, W)
            logits = model.forward(pixel_values)  # (B, num_labels)
            if tta:  # the mirror image: the width axis reversed (copied: the kernels take contiguous arrays)
                logits = 0.5 * (logits + model.forward(xp.ascontiguousarray(pixel_values[..., ::-1])))
            if logits.dtype == xp.float16:  # the loss in float32, as in float16 training
                logits = logits.astype(xp.float32)
            loss, _ = cross_entropy_forward(logits, batch_labels)
            total_loss += float(loss) * len(batch_labels)
            predictions.append(backend.to_numpy(xp.argmax(logits, axis=1)))
    predictions = np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)
    return {"loss": total_loss / max(1, len(labels)),
            "accuracy": float((predictions == labels).mean()) if len(labels) else 0.0,
            "predictions": predictions}


def data_for_model(dataset: Dataset, meta: dict, source: str) -> Dataset:
    """``dataset`` labelled as the model's classes (``meta["class_names"]``).

    A model trained with --classes on some of the data's classes sees only those; otherwise a
    class of the data that the model does not know is refused.
    """
    class_names = meta["class_names"]
    trained_on_some = (meta.get("train_config") or {}).get("classes")
    if trained_on_some and set(class_names) <= set(dataset.class_names):
        dataset = dataset.select_classes(class_names)
    return dataset.relabelled_as(class_names, source)


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | Path, split: str = "test",
                        batch_size: int = 500, progress: bool = True, tta: bool = False,
                        weights: str = "raw") -> dict:
    """The accuracy, loss, per-class accuracy and confusion matrix of a checkpoint on a split
    (``progress``: a bar while the split is first decoded, and a line about its cache; ``tta``: flip
    test-time augmentation; ``weights``: "raw" or "ema")."""
    model = load_checkpoint(checkpoint, weights=weights)  # refuses non-finite weights
    meta = model.checkpoint_meta
    if "mean" not in meta or "class_names" not in meta:
        raise CheckpointError(f"{checkpoint} has no normalisation statistics or class names: it was not written "
                              "by minivit.train.")
    dataset = data_for_model(load_split(data_dir, split, image_size=model.config.image_size, progress=progress), meta,
                             f"The {split} split of {data_dir}")
    if len(dataset) == 0:
        raise ValueError(f"The {split} split of {data_dir} has no images of the model's classes.")
    result = evaluate_model(model, dataset.images, dataset.labels, np.array(meta["mean"], dtype=np.float32),
                            np.array(meta["std"], dtype=np.float32), batch_size, tta)
    num_classes = len(dataset.class_names)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (dataset.labels, result["predictions"]), 1)
    per_class = {name: float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None
                 for i, name in enumerate(dataset.class_names)}  # None: the split has no image of the class
    return {"checkpoint": str(checkpoint), "split": split, "num_images": int(len(dataset)), "tta": tta,
            "weights": weights, "accuracy": result["accuracy"], "loss": result["loss"], "per_class": per_class,
            "confusion_matrix": confusion.tolist(), "class_names": dataset.class_names,
            "lacking_classes": lacking_classes(dataset, dataset.class_names)}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m minivit.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--batch-size", type=int, default=500, help="images per forward pass (default 500)")
    parser.add_argument("--backend", default="numpy", choices=backend.BACKENDS)
    parser.add_argument("--tta", action="store_true", help="average each image's logits with its mirror image's")
    parser.add_argument("--weights", default="raw", choices=WEIGHTS,
                        help="the weights that trained (raw) or their moving average (ema, runs with --ema)")
    parser.add_argument("--figure", help="where to draw the confusion matrix (default: beside the checkpoint)")
    parser.add_argument("--overwrite", action="store_true", help="replace a --figure that already exists")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def figure_path(figure: str | None, checkpoint: str, split: str, overwrite: bool = False, weights: str = "raw",
                tta: bool = False) -> Path:
    """The confusion matrix's file; its folder must exist, and a file there is replaced only with
    ``overwrite`` or when it is the default beside a checkpoint in a run folder (checked before any work).
    The default names what was evaluated: ``confusion-test.png``, ``confusion-test-ema-tta.png``, ..."""
    suffix = ("-ema" if weights == "ema" else "") + ("-tta" if tta else "")
    path = Path(figure) if figure else Path(checkpoint).with_name(f"confusion-{split}{suffix}.png")
    if figure is not None and (not figure.strip() or path.is_dir()):
        raise ValueError(f"--figure {figure!r} must name a file, such as confusion.png.")
    if not path.parent.is_dir():
        raise ValueError(f"--figure {path}: the folder {path.parent} does not exist; make it first or choose "
                         "another path.")
    from minivit.plots import image_formats

    if path.suffix and path.suffix[1:].lower() not in image_formats():
        raise ValueError(f"--figure {path}: {path.suffix} is no image format matplotlib writes; use one of "
                         f"{', '.join('.' + name for name in image_formats())}.")
    own_output = figure is None and in_run_folder(path)
    check_new_files([path], "--figure", overwrite or own_output)
    return path


def main(argv=None) -> int:
    return run_command(_main, argv)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    problem = whole_number_problem("--batch-size", args.batch_size, 1)
    if problem:
        raise ValueError(problem + ".")
    figure = figure_path(args.figure, args.checkpoint, args.split, args.overwrite, args.weights, args.tta)
    backend.use(args.backend)
    # a terminal sees the first load's progress; a pipe (--json read by a script) gets the result alone
    result = evaluate_checkpoint(args.checkpoint, args.data_dir, args.split, args.batch_size, sys.stderr.isatty(),
                                 args.tta, args.weights)

    from minivit.plots import confusion_matrix_figure

    confusion_matrix_figure(np.array(result["confusion_matrix"]), result["class_names"], figure,
                            title=f"{args.split}: {100 * result['accuracy']:.2f}% correct")
    result["figure"] = str(figure)
    if args.json:
        print(json.dumps(result))
        return 0
    how = "".join([", EMA weights" if args.weights == "ema" else "", ", flip TTA" if args.tta else ""])
    print(f"{args.split} accuracy: {100 * result['accuracy']:.2f}% on {result['num_images']} images "
          f"(loss {result['loss']:.4f}{how})")
    for name, accuracy in result["per_class"].items():
        print(f"  {name:>12s}  " + (f"{100 * accuracy:6.2f}%" if accuracy is not None else "no images"))
    if result["lacking_classes"]:
        print(f"the {args.split} split has no images of {len(result['lacking_classes'])} of the model's "
              f"{len(result['class_names'])} classes ({', '.join(result['lacking_classes'])}): the accuracy covers "
              "the others alone")
    print(f"confusion matrix: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

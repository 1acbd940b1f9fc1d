"""Lesson 10, pretrain, then finetune: its exercises' checks, their solutions, its answers.

A check (``check_<exercise>(your_function)``, called by the cell under the exercise) builds small
float64 inputs, computes the expected answer without the solution below it (finite differences,
or the engine's reference ops) and compares with the diagnosing checks of ``support.diagnosis``.
``@solution`` marks what MINIVIT_SOLUTIONS=1 switches in; ANSWERS are the questions' answers, in
the order the lesson asks them (Markdown, with $math$).
"""

from __future__ import annotations

import math

import numpy as np

from .diagnosis import NotYet, check_array, diagnose
from .exercises import solution

# --- checks ---------------------------------------------------------------------------------------

def _resize_variant(in_size, out_size, align_corners=False, clamp=True):
    from minivit.ops.interpolate import cubic_weights

    matrix = np.zeros((out_size, in_size))
    for i in range(out_size):
        x = i * (in_size - 1) / max(out_size - 1, 1) if align_corners else (i + 0.5) * in_size / out_size - 0.5
        left = math.floor(x)
        for offset, weight in zip((-1, 0, 1, 2), cubic_weights(x - left)):
            index = left + offset
            index = min(max(index, 0), in_size - 1) if clamp else index % in_size
            matrix[i, index] += weight
    return matrix


def check_resize_matrix(resize_matrix) -> None:
    from minivit import backend
    from minivit.ops.interpolate import bicubic_matrix

    for n_in, n_out in ((8, 12), (12, 8), (3, 7)):
        expected = backend.to_numpy(bicubic_matrix(n_in, n_out))
        border = np.zeros_like(expected, dtype=bool)
        border[:2], border[-2:] = True, True
        check_array(resize_matrix(n_in, n_out), expected,
                    f"your {n_out}x{n_in} resize matrix equals minivit's", "R", rtol=1e-12,
                    mistakes={"align_corners=True (x = i (n_in - 1) / (n_out - 1)); PyTorch's and transformers' "
                              "resize uses align_corners=False": _resize_variant(n_in, n_out, align_corners=True),
                              "indices that wrap around at the borders instead of being clamped to 0 ... n_in - 1":
                              _resize_variant(n_in, n_out, clamp=False)},
                    regions={"in the rows near the borders (the first and last two outputs): clamp the "
                             "indices floor - 1 ... floor + 2 to 0 ... n_in - 1": border})


def check_layer_decay_scale(layer_decay_scale) -> None:
    from minivit import finetune

    L, decay = 4, 0.75
    names = (["embeddings.cls_token", "embeddings.position_embeddings",
              "embeddings.patch_embeddings.projection.weight"]
             + [f"encoder.layers.{i}.{part}" for i in range(L) for part in ("attention.q_proj.weight", "mlp.fc1.bias")]
             + ["layernorm.weight", "classifier.weight", "classifier.bias"])
    expected = finetune.layer_decay_scales(names, L, decay)
    yours = {name: layer_decay_scale(name, L, decay) for name in names}

    def layer(name):
        if name.startswith("embeddings."):
            return 0
        if name.startswith("encoder.layers."):
            return int(name.split(".")[2]) + 1
        return L + 1

    from_zero = {n: decay ** (L + 1 - (layer(n) - 1 if n.startswith("encoder.") else layer(n))) for n in names}
    one_short = {n: decay ** (L - layer(n)) for n in names}
    what = f"layer_decay_scale for every kind of name ({L} layers, decay {decay})"
    try:
        values = np.array([float(yours[n]) for n in names])
    except (TypeError, ValueError):
        raise NotYet(what, ["return one number per name"]) from None
    lines = diagnose(values, np.array([expected[n] for n in names]), "scales",
                     mistakes={"counting encoder layers from 0 (encoder.layers.0 is layer 1; the embeddings are 0)":
                               np.array([from_zero[n] for n in names]),
                               "the exponent L - l, one power of the decay short everywhere (the head must get "
                               "decay^0 = 1)": np.array([one_short[n] for n in names])})
    if lines:
        wrong = [f"{n}: yours {float(yours[n]):.6g}, expected {expected[n]:.6g}" for n in names
                 if not math.isclose(float(yours[n]), expected[n], rel_tol=1e-9)]
        raise NotYet(what, lines[:-2] + wrong[:6] + (["..."] if len(wrong) > 6 else []))
    print(f"PASS: {what} ({len(names)} names, from {min(expected.values()):.4f} for the embeddings to 1 for the head)")


# --- solutions ------------------------------------------------------------------------------------

@solution
def resize_matrix(in_size, out_size):
    from minivit.ops.interpolate import cubic_weights

    matrix = np.zeros((out_size, in_size))
    for i in range(out_size):
        x = (i + 0.5) * in_size / out_size - 0.5
        left = math.floor(x)
        for offset, weight in zip((-1, 0, 1, 2), cubic_weights(x - left)):
            matrix[i, min(max(left + offset, 0), in_size - 1)] += weight
    return matrix


@solution
def layer_decay_scale(name, num_layers, decay):
    if name.startswith("embeddings."):
        layer = 0
    elif name.startswith("encoder.layers."):
        layer = int(name.split(".")[2]) + 1
    else:
        layer = num_layers + 1
    return decay ** (num_layers + 1 - layer)


# --- answers --------------------------------------------------------------------------------------

ANSWERS = [
    r"""A random head maps the pretrained features to random logits, so the first gradients that
    reach the encoder are large and random: they push the pretrained features around before the
    head has learned anything. A zero head gives uniform predictions and a first gradient that
    updates only the head (the encoder's gradient is $W_{\text{head}}^\top g = 0$ at first), so
    the encoder moves only once the head carries signal.""",
    r"""Typically the gain from pretraining remains at 32 px but is smaller in absolute terms: the
    grid is 8×8 (64 tokens) instead of 12×12 (144). A step costs more than 2.25 times at 48 px
    because attention's cost grows with $T^2$: $(145/65)^2 \approx 5$ for the attention products,
    and the linear layers' $145/65 \approx 2.2$.""",
    r"""With 100 images per class a linear probe (few parameters) or a strong layer decay often
    wins: they cannot overfit much. With 5,000 images per class full finetuning usually wins:
    there is enough data to adapt every layer without memorising.""",
    r"""Bilinear: output $i$ at $x = (i + 0.5) n_{in}/n_{out} - 0.5$ mixes $\lfloor x\rfloor$ and
    $\lfloor x\rfloor + 1$ (clamped) with weights $1 - t$ and $t$. The accuracy difference is
    usually small: the learned table is smooth, and finetuning adapts it.""",
]

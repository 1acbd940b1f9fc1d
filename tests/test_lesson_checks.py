"""The lessons' checks diagnose: every exercise's check, fed deliberately wrong answers (a wrong
shape, a factor, a transpose, a missing term, a flipped sign ...), raises a hint that names the
mistake, and passes the solution.

The wrong answers are what learners write; the asserted words are what the learner reads.
"""

import contextlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lessons"))

from support import diagnosis  # noqa: E402
from support import lesson01 as L01  # noqa: E402
from support import lesson02 as L02  # noqa: E402
from support import lesson03 as L03  # noqa: E402
from support import lesson04 as L04  # noqa: E402
from support import lesson05 as L05  # noqa: E402
from support import lesson06 as L06  # noqa: E402
from support import lesson07 as L07  # noqa: E402
from support import lesson08 as L08  # noqa: E402
from support import lesson09 as L09  # noqa: E402
from support import lesson10 as L10  # noqa: E402
from support import lesson11 as L11  # noqa: E402
from support import lesson12 as L12  # noqa: E402
from support.diagnosis import NotYet  # noqa: E402


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: plt.close("all"))


def hint(check, answer) -> str:
    """The text the learner sees when ``answer`` fails ``check``."""
    with pytest.raises(NotYet) as failure:
        check(answer)
    return str(failure.value)


def assert_names(check, answer, *words):
    text = hint(check, answer)
    for word in words:
        assert word.lower() in text.lower(), f"the hint does not say {word!r}:\n{text}"
    return text


# --- the diagnosis itself -------------------------------------------------------------------------

def test_shape_is_compared_first_and_never_flattened():
    text = diagnosis.shape_hint((2, 12, 5), (12, 5), "dweight", {"the batch size B": 2})
    assert "dweight has shape (2, 12, 5), expected (12, 5)" in text and "sum over the batch" in text
    assert "transposed" in diagnosis.shape_hint((5, 12), (12, 5))
    assert "keepdims" in diagnosis.shape_hint((5,), (1, 1, 5))
    assert "one more" in diagnosis.shape_hint((3, 5, 4), (3, 4, 4))
    assert "missing" in diagnosis.shape_hint((5,), (6, 5))
    # a too-small answer is a hint, not an IndexError
    lines = diagnosis.diagnose(np.zeros(3), np.zeros((12, 5)), "dweight")
    assert len(lines) == 1 and "shape (3,)" in lines[0]


@pytest.mark.parametrize("factor, words", [(2.0, "twice"), (0.5, "half"), (-1.0, "sign"),
                                           (1 / 6, "mean"), (6.0, "6 times")])
def test_factors_are_named(factor, words):
    expected = np.random.default_rng(0).standard_normal((6, 4))
    text = "\n".join(diagnosis.diagnose(factor * expected, expected, sizes={"the batch size B": 6}))
    assert words in text


def test_transpose_terms_rows_order_and_places():
    rng = np.random.default_rng(1)
    square = rng.standard_normal((5, 5))
    assert "transposed" in "\n".join(diagnosis.diagnose(square.T, square))
    term = rng.standard_normal((5, 5))
    assert "lacks the term" in "\n".join(diagnosis.diagnose(square + term, square, terms={"the term": -term}))
    shifted = square + rng.standard_normal((5, 1))
    assert "constant in each row" in "\n".join(diagnosis.diagnose(shifted, square))
    assert "another order" in "\n".join(diagnosis.diagnose(np.sort(square, axis=None).reshape(5, 5), square))
    one_row = square.copy()
    one_row[2] += 1
    assert "axis 0 only at 2" in "\n".join(diagnosis.diagnose(one_row, square))
    mask = np.zeros((5, 5), dtype=bool)
    mask[2] = True
    assert "only elements in row two" in "\n".join(diagnosis.diagnose(one_row, square, regions={"in row two": mask}))
    nan = square.copy()
    nan[0, 0] = np.nan
    assert "NaN" in "\n".join(diagnosis.diagnose(nan, square))


def test_the_learners_value_is_printed_beside_the_expected(capsys):
    expected = np.arange(4.0)
    text = "\n".join(diagnosis.diagnose(expected + 1, expected, "x"))
    assert "yours" in text and "expected" in text and "[1., 2., 3., 4.]" in text
    diagnosis.check_value(3, 3, "three")
    assert "yours 3, expected 3" in capsys.readouterr().out
    with pytest.raises(NotYet, match="yours 4, expected 3"):
        diagnosis.check_value(4, 3, "three")


def test_a_curve_check_names_the_first_step_where_they_part(capsys):
    steps = np.arange(10)
    expected = steps * 0.1
    yours = expected.copy()
    yours[6:] += 1
    with pytest.raises(NotYet) as failure:
        diagnosis.check_curve(steps, yours, expected, "curve", segments={"tail": (5, 10)})
    assert "part at step 6" in str(failure.value) and "tail" in str(failure.value)
    diagnosis.check_curve(steps, expected, expected, "curve")
    assert "PASS" in capsys.readouterr().out


def test_not_yet_shows_only_the_hint_in_a_notebook():
    error = NotYet("thing", ["a hint"])
    assert error._render_traceback_() == ["NOT YET: thing", "  a hint"]


# --- every exercise: the solution passes, wrong answers are named ---------------------------------

def test_every_exercise_has_a_check_and_a_solution():
    import re

    import support

    names = set()
    for source in sorted((ROOT / "lessons" / "src").glob("[0-9][0-9]_*.py")):
        text = source.read_text()
        own = f"support.lesson{source.stem[:2]}"
        for name in re.findall(r"@exercise\s*\ndef (\w+)\(", text):
            names.add(name)
            assert support.solution_of(name).__module__ == own, f"{source.name}: no solution for {name} in {own}"
            assert re.search(rf"check_\w+\({name}[,)]", text), f"{source.name}: {name} is never checked"
    assert len(names) >= 20


@pytest.mark.parametrize("check, solution", [
    (L01.check_patches_by_reshape, L01.patches_by_reshape), (L02.check_linear_backward, L02.linear_backward),
    (L02.check_col2im_by_loops, L02.col2im_by_loops), (L03.check_cls_concat_backward, L03.cls_concat_backward),
    (L04.check_softmax_jacobian, L04.softmax_jacobian), (L04.check_softmax_backward, L04.softmax_backward),
    (L04.check_split_heads, L04.split_heads), (L04.check_attention_forward, L04.attention_forward),
    (L04.check_multi_head_attention, L04.multi_head_attention), (L04.check_attention_backward, L04.attention_backward),
    (L05.check_layernorm_stages, L05.layernorm_backward_by_graph),
    (L05.check_layernorm_backward, L05.layernorm_backward),
    (L06.check_parameters_per_layer, L06.parameters_per_layer), (L07.check_init_std, L07.init_std),
    (L06.check_cross_entropy_forward, L06.cross_entropy_forward),
    (L06.check_cross_entropy_backward, L06.cross_entropy_backward),
    (L05.check_encoder_layer_backward, L05.encoder_layer_backward),
    (L07.check_numerical_gradient, L07.numerical_gradient), (L07.check_train_step, L07.train_step),
    (L07.check_bias_correction, L07.bias_correction), (L07.check_adamw_step, L07.adamw_step),
    (L08.check_learning_rate, L08.learning_rate), (L09.check_seconds_per_call, L09.seconds_per_call),
    (L09.check_layernorm_kernel, L09.layernorm_kernel_source),
    (L10.check_resize_matrix, L10.resize_matrix), (L10.check_layer_decay_scale, L10.layer_decay_scale),
    (L11.check_principal_components, L11.principal_components), (L11.check_attention_distance, L11.attention_distance),
], ids=lambda value: getattr(value, "__name__", ""))
def test_the_solution_passes(check, solution, capsys):
    check(solution)
    out = capsys.readouterr().out
    assert "PASS" in out and "NOT YET" not in out


def test_patches_by_reshape_mistakes():
    def no_transpose(x, P):
        B, C, H, W = x.shape
        return x.reshape(B, (H // P) * (W // P), C * P * P)

    def channels_last(x, P):
        B, C, H, W = x.shape
        return x.reshape(B, C, H // P, P, W // P, P).transpose(0, 2, 4, 3, 5, 1).reshape(B, -1, C * P * P)

    def grid_shape(x, P):
        B, C, H, W = x.shape
        return x.reshape(B, C, H // P, P, W // P, P).transpose(0, 2, 4, 1, 3, 5).reshape(B, H // P, W // P, -1)

    assert_names(L01.check_patches_by_reshape, no_transpose, "without the transpose")
    assert_names(L01.check_patches_by_reshape, channels_last, "channels last")
    assert_names(L01.check_patches_by_reshape, grid_shape, "(2, 2, 2, 48)", "expected (2, 4, 48)", "reshape")


def linear_variant(dx_sign=1, dweight="sum", dbias="sum"):
    def linear_backward(dout, cache):
        x, weight, has_bias = cache
        K, D = weight.shape
        dx = dx_sign * dout @ weight.T
        rows_x, rows_dout = x.reshape(-1, K), dout.reshape(-1, D)
        dweights = {"sum": rows_x.T @ rows_dout, "per-image": x.swapaxes(-1, -2) @ dout,
                    "transposed": rows_dout.T @ rows_x, "too small": (rows_x.T @ rows_dout).sum(axis=0),
                    "half": 0.5 * rows_x.T @ rows_dout}
        dbiases = {"sum": rows_dout.sum(axis=0), "mean": rows_dout.mean(axis=0),
                   "always": rows_dout.sum(axis=0)}
        if not has_bias and dbias != "always":
            return dx, dweights[dweight], None
        return dx, dweights[dweight], dbiases[dbias]

    return linear_backward


def test_linear_backward_mistakes():
    assert_names(L02.check_linear_backward, linear_variant(dweight="per-image"),
                 "dweight has shape (3, 6, 5), expected (6, 5)", "sum over the batch")
    assert_names(L02.check_linear_backward, linear_variant(dweight="transposed"), "transposed")
    assert_names(L02.check_linear_backward, linear_variant(dweight="too small"), "(5,)", "missing")
    assert_names(L02.check_linear_backward, linear_variant(dbias="mean"), "divided by 12", "mean")
    assert_names(L02.check_linear_backward, linear_variant(dweight="half"), "half", "factor of 2")
    assert_names(L02.check_linear_backward, linear_variant(dx_sign=-1), "sign is flipped")
    assert_names(L02.check_linear_backward, linear_variant(dbias="always"), "dbias is None", "yours an array")
    assert_names(L02.check_linear_backward, lambda dout, cache: L02.linear_backward(dout, cache)[:2],
                 "returned 2 value(s), expected 3")


def test_col2im_mistakes():
    def assigned(dcols, image_shape, P, stride):
        B, C, H, W = image_shape
        grid = (H - P) // stride + 1
        dx = np.zeros(image_shape)
        for r in range(grid):
            for c in range(grid):
                window = dx[:, :, r * stride:r * stride + P, c * stride:c * stride + P]
                window[...] = dcols[:, r * grid + c].reshape(B, C, P, P)
        return dx

    assert_names(L02.check_col2im_by_loops, assigned, "instead of adding", "+=")


def test_cls_concat_backward_mistakes():
    assert_names(L03.check_cls_concat_backward, lambda d, b: (d[:, 1:], d[:, :1]),
                 "dcls_token has shape (3, 1, 5), expected (1, 1, 5)", "batch size B", "keepdims=True")
    assert_names(L03.check_cls_concat_backward, lambda d, b: (d[:, 1:], d[:, :1].mean(axis=0, keepdims=True)),
                 "divided by 3", "mean")
    assert_names(L03.check_cls_concat_backward, lambda d, b: (d[:, 1:], d[:, 0].sum(axis=0)), "keepdims")
    assert_names(L03.check_cls_concat_backward, lambda d, b: (d, d[:, :1].sum(axis=0, keepdims=True)),
                 "one more", "CLS")


def test_softmax_mistakes():
    assert_names(L04.check_softmax_jacobian, lambda y: np.diag(y), "lacks the part -y y^T")
    assert_names(L04.check_softmax_jacobian, lambda y: -np.outer(y, y), "lacks the diagonal part")
    assert_names(L04.check_softmax_jacobian, lambda y: np.outer(y, y) - np.diag(y), "sign is flipped")

    def missing_term(dprobs, cache):
        return cache[0] * dprobs

    def wrong_axis(dprobs, cache):
        probs, _ = cache
        return probs * (dprobs - (dprobs * probs).sum(axis=0, keepdims=True))

    assert_names(L04.check_softmax_backward, missing_term, "lacks the term -y * sum(g * y)")
    assert_names(L04.check_softmax_backward, wrong_axis, "axis 0 instead of the softmax's axis")
    assert_names(L04.check_softmax_backward, lambda d, c: -L04.softmax_backward(d, c), "sign is flipped")


def test_multi_head_attention_forward_mistakes():
    assert_names(L04.check_split_heads, lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1), "without a transpose")
    assert_names(L04.check_split_heads, lambda x, h: x.reshape(x.shape[0], x.shape[1], h, -1),
                 "shape (2, 5, 3, 2), expected (2, 3, 5, 2)")

    def unscaled(q, k, v, dropout_p=0.0, rng=None, training=False):
        from minivit import ops

        out, cache = L04.attention_forward(q * math.sqrt(q.shape[-1]), k, v, dropout_p, rng, training)
        return out, ops.AttentionCache(q, k, v, cache.scale, cache.probs, cache.dropout_mask)

    def columns(q, k, v, dropout_p=0.0, rng=None, training=False):
        from minivit import ops

        scale = 1 / math.sqrt(q.shape[-1])
        scores = q @ k.swapaxes(-1, -2) * scale
        probs = np.exp(scores) / np.exp(scores).sum(axis=-2, keepdims=True)
        return probs @ v, ops.AttentionCache(q, k, v, scale, probs, None)

    def plain_tuple(q, k, v, dropout_p=0.0, rng=None, training=False):
        out, cache = L04.attention_forward(q, k, v, dropout_p, rng, training)
        return out, (cache.q, cache.k, cache.v, cache.probs, cache.scale)

    def no_dropout(q, k, v, dropout_p=0.0, rng=None, training=False):
        return L04.attention_forward(q, k, v)

    assert_names(L04.check_attention_forward, unscaled, "leaving out the 1/sqrt(d) scale")
    assert_names(L04.check_attention_forward, columns, "axis -2")
    assert_names(L04.check_attention_forward, plain_tuple, "AttentionCache")
    assert_names(L04.check_attention_forward, no_dropout, "dropout left out")

    def no_output_projection(x, qw, qb, kw, kb, vw, vb, ow, ob, num_heads):
        return L04.multi_head_attention(x, qw, qb, kw, kb, vw, vb, np.eye(len(ow)), 0 * ob, num_heads)

    def plain_merge(x, qw, qb, kw, kb, vw, vb, ow, ob, num_heads):
        q, k, v = (L04.split_heads(x @ w + b, num_heads) for w, b in ((qw, qb), (kw, kb), (vw, vb)))
        heads, _ = L04.attention_forward(q, k, v)
        return heads.reshape(x.shape) @ ow + ob

    assert_names(L04.check_multi_head_attention, no_output_projection, "output projection")
    assert_names(L04.check_multi_head_attention, plain_merge, "merging the heads with a plain reshape")


def attention_backward_variant(scale_dq=True, transpose_dk=True, use_mask=True, transpose_dv=True):
    def attention_backward(dout, cache):
        q, k, v, scale, probs, mask = cache
        if not use_mask:
            mask = None
        dropped = probs if mask is None else probs * mask
        dv = (dropped.swapaxes(-1, -2) if transpose_dv else dropped) @ dout
        dprobs = dout @ v.swapaxes(-1, -2)
        if mask is not None:
            dprobs = dprobs * mask
        dscores = probs * (dprobs - (dprobs * probs).sum(-1, keepdims=True))
        dq = dscores * (scale if scale_dq else 1.0) @ k
        dk = (dscores.swapaxes(-1, -2) if transpose_dk else dscores) * scale @ q
        return dq, dk, dv

    return attention_backward


def test_attention_backward_mistakes():
    assert_names(L04.check_attention_backward, attention_backward_variant(scale_dq=False),
                 "dq:", "sqrt(9) = 3", "1/sqrt scale forgotten")
    assert_names(L04.check_attention_backward, attention_backward_variant(transpose_dk=False),
                 "dk:", "dk needs the transpose")
    assert_names(L04.check_attention_backward, attention_backward_variant(transpose_dv=False),
                 "dv:", "P dout instead of P^T dout")
    assert_names(L04.check_attention_backward, attention_backward_variant(use_mask=False),
                 "with dropout", "ignoring the dropout mask")


def layernorm_stages_variant(stage=None):
    def layernorm_backward_by_graph(dout, x, gamma, eps):
        stages = L05.layernorm_backward_by_graph(dout, x, gamma, eps)
        D = x.shape[-1]
        mu = x.mean(axis=-1, keepdims=True)
        rstd = 1 / np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + eps)
        if stage == "dvar exponent":
            stages["dvar"] = (stages["dxhat"] * (x - mu)).sum(-1, keepdims=True) * -0.5 * rstd
        elif stage == "dx without the variance path":
            stages["dx"] = stages["dxhat"] * rstd + stages["dmean"] / D
        elif stage == "dgamma per token":
            stages["dgamma"] = dout * (x - mu) * rstd
        elif stage == "dmean unwritten":
            stages["dmean"] = stages["dx"] = None
        return stages

    return layernorm_backward_by_graph


def test_layernorm_mistakes():
    assert_names(L05.check_layernorm_stages, layernorm_stages_variant("dvar exponent"), "dvar", "-3/2")
    assert_names(L05.check_layernorm_stages, layernorm_stages_variant("dx without the variance path"),
                 "dx", "lacks the path through the variance")
    assert_names(L05.check_layernorm_stages, layernorm_stages_variant("dgamma per token"),
                 "dgamma has shape (2, 3, 5), expected (5,)", "sum over the batch")
    assert_names(L05.check_layernorm_stages, layernorm_stages_variant("dmean unwritten"), "dmean is not written yet")

    def without(term):
        def layernorm_backward(dout, cache):
            xhat, rstd, gamma = cache
            dx, dgamma, dbeta = L05.layernorm_backward(dout, cache)
            dxhat = dout * gamma
            if term == "variance":
                dx = dx + rstd * xhat * (dxhat * xhat).mean(-1, keepdims=True)
            elif term == "mean":
                dx = dx + rstd * dxhat.mean(-1, keepdims=True)
            elif term == "gamma":
                dx = rstd * (dout - dout.mean(-1, keepdims=True) - xhat * (dout * xhat).mean(-1, keepdims=True))
            elif term == "dgamma summed over the batch only":
                dgamma = (dout * xhat).sum(axis=0)
            elif term == "dbeta mean":
                dbeta = dout.reshape(-1, dout.shape[-1]).mean(axis=0)
            return dx, dgamma, dbeta

        return layernorm_backward

    assert_names(L05.check_layernorm_backward, without("variance"), "lacks the variance term")
    assert_names(L05.check_layernorm_backward, without("mean"), "lacks the mean term")
    assert_names(L05.check_layernorm_backward, without("gamma"), "dout in place of dxhat")
    assert_names(L05.check_layernorm_backward, without("dgamma summed over the batch only"),
                 "dgamma has shape (3, 5), expected (5,)", "axis 0 (size 3")
    assert_names(L05.check_layernorm_backward, without("dbeta mean"), "divided by 6", "mean")


def test_parameter_count_mistakes():
    assert_names(L06.check_parameters_per_layer, lambda D, M, qkv_bias=True: 4 * D * D + D + 2 * D * M + M + D + 4 * D,
                 "yours 444,288", "expected 444,864", "q/k/v biases", "left out")
    assert_names(L06.check_parameters_per_layer,
                 lambda D, M, qkv_bias=True: L06.parameters_per_layer(D, M, qkv_bias) - 2 * D, "one LayerNorm")
    assert_names(L06.check_parameters_per_layer, lambda D, M, qkv_bias=True: L06.parameters_per_layer(D, M, True),
                 "D = 12", "q/k/v biases", "counted twice (or counted where they do not exist)")


def test_init_and_adamw_mistakes():
    assert_names(L07.check_init_std, lambda fan_in: 1 / fan_in, "variance of W")
    assert_names(L07.check_init_std, lambda fan_in: math.sqrt(2 / fan_in), "Kaiming")
    assert_names(L07.check_bias_correction, lambda t, beta: beta**t, "weight of the zero start", "part at step 1")
    assert_names(L07.check_bias_correction, lambda t, beta: 1 - beta ** (t - 1), "counted from 0")

    def variant(**option):
        def adamw_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay):
            if option.get("coupled"):
                grad = grad + weight_decay * param
            else:
                param = param * (1 - (lr * weight_decay if option.get("times_lr", True) else weight_decay))
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad * grad
            corrected = option.get("corrected", True)
            m_hat = m / (1 - beta1**step) if corrected else m
            v_hat = v / (1 - beta2**step) if corrected else v
            denominator = np.sqrt(v_hat + eps) if option.get("eps_inside") else np.sqrt(v_hat) + eps
            return param - lr * m_hat / denominator, m, v

        return adamw_step

    assert_names(L07.check_adamw_step, variant(corrected=False), "without bias correction", "step 1")
    assert_names(L07.check_adamw_step, variant(coupled=True), "Adam with L2")
    assert_names(L07.check_adamw_step, variant(times_lr=False), "instead of lr * weight_decay")
    assert_names(L07.check_adamw_step, variant(eps_inside=True), "eps inside the square root")
    assert_names(L07.check_adamw_step, lambda p, g, m, v, *args: p - 0.01 * g, "return (param, exp_avg, exp_avg_sq)")


def schedule_variant(mistake):
    def learning_rate(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
        if step < warmup_steps:
            return base_lr * (step if mistake == "from zero" else step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if mistake == "whole run":
            progress = step / total_steps
        low = 0.0 if mistake == "to zero" else min_lr
        return low + 0.5 * (base_lr - low) * (1 + math.cos(math.pi * progress))

    return learning_rate


def test_schedule_mistakes():
    assert_names(L08.check_learning_rate, schedule_variant("from zero"), "part at step 0", "warmup from 0")
    assert_names(L08.check_learning_rate, schedule_variant("to zero"), "cosine decay", "ends at 0")
    assert_names(L08.check_learning_rate, schedule_variant("whole run"), "part at step 100", "whole run")

    def divides(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
        return L08.learning_rate(step, total_steps, warmup_steps, base_lr, min_lr) if warmup_steps else 1 / warmup_steps

    assert_names(L08.check_learning_rate, divides, "divides by zero")


def test_timer_mistakes():
    import time

    def no_warmup(function, repeats=5):
        start = time.perf_counter()
        for _ in range(repeats):
            function()
        return (time.perf_counter() - start) / repeats

    def total(function, repeats=5):
        function()
        start = time.perf_counter()
        for _ in range(repeats):
            function()
        return time.perf_counter() - start

    assert_names(L09.check_seconds_per_call, no_warmup, "without a warm-up")
    assert_names(L09.check_seconds_per_call, total, "total instead of the time per call")


def test_finetuning_mistakes():
    def align_corners(n_in, n_out):
        return L10._resize_variant(n_in, n_out, align_corners=True)

    assert_names(L10.check_resize_matrix, align_corners, "align_corners=True")
    assert_names(L10.check_resize_matrix, lambda n_in, n_out: L10._resize_variant(n_in, n_out, clamp=False),
                 "wrap around")
    assert_names(L10.check_resize_matrix, lambda n_in, n_out: L10.resize_matrix(n_in, n_out).T, "transposed")

    def from_zero(name, num_layers, decay):
        layer = 0 if name.startswith("embeddings.") else (
            int(name.split(".")[2]) if name.startswith("encoder.") else num_layers + 1)
        return decay ** (num_layers + 1 - layer)

    assert_names(L10.check_layer_decay_scale, from_zero, "counting encoder layers from 0",
                 "encoder.layers.0.attention.q_proj.weight: yours")
    assert_names(L10.check_layer_decay_scale, lambda n, L, d: L10.layer_decay_scale(n, L, d) / d,
                 "one power of the decay")


def test_analysis_mistakes():
    def uncentred(filters, count):
        flat = filters.reshape(len(filters), -1)
        _, s, vt = np.linalg.svd(flat, full_matrices=False)
        return vt[:count].reshape(count, *filters.shape[1:]), (s**2 / np.sum(s**2))[:count]

    def unsquared(filters, count):
        components, _ = L11.principal_components(filters, count)
        flat = filters.reshape(len(filters), -1)
        s = np.linalg.svd(flat - flat.mean(axis=0), compute_uv=False)
        return components, (s / s.sum())[:count]

    assert_names(L11.check_principal_components, uncentred, "no centring")
    assert_names(L11.check_principal_components, unsquared, "S instead of S^2")

    def not_renormalised(probs, distances):
        return (probs[:, :, 1:, 1:] * distances).sum(-1).mean(axis=(0, 2))

    def summed(probs, distances):
        return L11.attention_distance(probs, distances) * (probs.shape[-1] - 1)

    def per_image(probs, distances):
        between = probs[:, :, 1:, 1:] / probs[:, :, 1:, 1:].sum(-1, keepdims=True)
        return (between * distances).sum(-1).mean(axis=2)

    assert_names(L11.check_attention_distance, not_renormalised, "renormalisation")
    assert_names(L11.check_attention_distance, summed, "the number of patches N", "mean")
    assert_names(L11.check_attention_distance, per_image, "shape (2, 3), expected (3,)", "batch")


def test_gelu_kernel_check_shows_the_compilers_message(capsys):
    """The kernel compiles with NVRTC where CuPy has it (no GPU needed); a mistake shows the compiler's
    log. Without a GPU the numerical check is skipped, with a message that says so."""
    L09.check_gelu_kernel(L09.gelu_kernel_parts)
    out = capsys.readouterr().out
    if "compiles with NVRTC" not in out:
        assert "SKIPPED" in out and "needs" in out
        pytest.skip("no CuPy NVRTC here: the compile check cannot run")
    assert "PASS" in out and ("SKIPPED: the numerical check" in out or "exact GELU" in out)
    assert_names(L09.check_gelu_kernel, lambda: dict(L09.gelu_kernel_parts(), operation="y = x * Phi(x)"),
                 'identifier "Phi" is undefined')
    assert_names(L09.check_gelu_kernel, lambda: dict(L09.gelu_kernel_parts(), operation="y = x * normcdf(x"),
                 "error")
    assert_names(L09.check_gelu_kernel, lambda: {"operation": "y = x"}, "in_params, out_params, operation and name")


def test_train_steps_check_counts_synchronisations():
    from minivit import backend

    def every_step(model, optimizer, images, labels, steps, read_every):
        from minivit.ops import cross_entropy_backward, cross_entropy_forward

        losses = []
        for _ in range(steps):
            optimizer.zero_grad()
            loss, cache = cross_entropy_forward(model.forward(images), labels)
            model.backward(cross_entropy_backward(1.0, cache))
            optimizer.step()
            losses.append(float(loss))  # waits for the GPU, every step
        return losses

    L09.check_train_steps(L09.train_steps)
    assert_names(L09.check_train_steps, every_step, "yours 8", "float(loss)", "test_lesson_checks.py")
    assert backend.name == "numpy"


# --- lesson 12 ------------------------------------------------------------------------------------

def test_mean_of_shards_names_the_unweighted_mean_and_the_sum():
    L12.check_mean_of_shards(L12.mean_of_shards)
    assert_names(L12.check_mean_of_shards, lambda gradients, sizes: sum(gradients), "the sum of the shards' gradients")
    assert_names(L12.check_mean_of_shards, lambda gradients, sizes: sum(gradients) / len(gradients),
                 "plain mean", "right only for equal shards", "n_r / B")
    assert_names(L12.check_mean_of_shards, lambda gradients, sizes: sum(n * g for n, g in zip(sizes, gradients)),
                 "not divided by the batch size")


def test_allreduce_through_rank_0_names_the_missing_parts(monkeypatch):
    monkeypatch.setattr(L12, "RANK_TIMEOUT", 0.5)  # the deadlocked answer below waits this long
    L12.check_allreduce_through_rank_0(L12.allreduce_through_rank_0)

    def without_own_array(comm, array):
        if comm.rank == 0:
            total = sum(comm.recv(source) for source in range(1, comm.size)) if comm.size > 1 else array
            for dest in range(1, comm.size):
                comm.send(total, dest)
            return total
        comm.send(array, 0)
        return comm.recv(0)

    def no_reply(comm, array):
        if comm.rank == 0:
            return array + sum(comm.recv(source) for source in range(1, comm.size))
        comm.send(array, 0)
        return array

    def waits_first(comm, array):
        if comm.rank == 0:
            return L12.allreduce_through_rank_0(comm, array)
        total = comm.recv(0)  # waits for the sum before sending its part
        comm.send(array, 0)
        return total

    assert_names(L12.check_allreduce_through_rank_0, without_own_array, "without rank 0's own array")
    assert_names(L12.check_allreduce_through_rank_0, no_reply, "rank 1", "must send the sum back")
    assert_names(L12.check_allreduce_through_rank_0, lambda comm, array: L12.allreduce_through_rank_0(comm, array) /
                 comm.size, "the mean, not the sum")
    assert_names(L12.check_allreduce_through_rank_0, waits_first, "waited", "send, then receive")


def test_ring_allreduce_names_the_whole_array_and_the_missing_all_gather(monkeypatch):
    monkeypatch.setattr(L12, "RANK_TIMEOUT", 0.5)
    L12.check_ring_allreduce(L12.ring_allreduce)

    def whole_array_each_step(comm, array):  # right answer, N times the traffic of a ring
        total = np.array(array, copy=True)
        passing = np.array(array, copy=True)
        for _ in range(comm.size - 1):
            passing = comm.sendrecv(passing, (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size)
            total = total + passing
        return total

    def reduce_scatter_only(comm, array):
        N, r = comm.size, comm.rank
        chunks = [chunk.copy() for chunk in np.array_split(np.asarray(array), N)]
        for s in range(N - 1):
            chunks[(r - s - 1) % N] = chunks[(r - s - 1) % N] + comm.sendrecv(chunks[(r - s) % N], (r + 1) % N,
                                                                          (r - 1) % N)
        return np.concatenate(chunks)

    assert_names(L12.check_ring_allreduce, whole_array_each_step, "the whole array around the ring")
    assert_names(L12.check_ring_allreduce, reduce_scatter_only, "all-gather", "did not")
    assert_names(L12.check_ring_allreduce, lambda comm, array: comm.recv((comm.rank - 1) % comm.size)
                 if comm.size > 1 else array, "waited")


def test_ring_allreduce_seconds_names_the_missing_terms():
    L12.check_ring_allreduce_seconds(L12.ring_allreduce_seconds)
    assert_names(L12.check_ring_allreduce_seconds, lambda S_, N, a, b: (N - 1) * (a + S_ / N / b), "one half only")
    assert_names(L12.check_ring_allreduce_seconds, lambda S_, N, a, b: 2 * (N - 1) * (a + S_ / b), "S/N bytes")
    assert_names(L12.check_ring_allreduce_seconds, lambda S_, N, a, b: 2 * (N - 1) * S_ / N / b, "no latency")


# --- the holes a check must not have (issue 27.5) -------------------------------------------------

def test_gradcheck_compares_shapes_before_values():
    """minivit.gradcheck never flattens: a dweight with the right numbers in another shape fails,
    naming the tensor and both shapes."""
    from minivit import ops
    from minivit.gradcheck import check_op

    rng = np.random.default_rng(0)

    def reshaped_dweight(dout, cache):
        dx, dweight, dbias = ops.linear_backward(dout, cache)
        return dx, dweight.reshape(dweight.shape[::-1]), dbias  # the same numbers, read as (D, K)

    with pytest.raises(ValueError, match=r"weight: the analytic gradient has shape \(2, 4\), but weight has "
                                         r"shape \(4, 2\)"):
        check_op(ops.linear_forward, reshaped_dweight, {"x": rng.standard_normal((3, 4)),
                                                        "weight": rng.standard_normal((4, 2)),
                                                        "bias": rng.standard_normal(2)})


def test_the_lessons_finite_differences_are_minivit_gradchecks():
    """One stencil: the lessons' numerical_gradient is minivit.gradcheck's, on 2-D and 3-D inputs."""
    from minivit import gradcheck

    for shape in ((3, 4), (2, 3, 4)):
        x = np.random.default_rng(1).standard_normal(shape)
        weights = np.random.default_rng(2).standard_normal(shape)
        def f(x=x, weights=weights):
            return np.sum(np.sin(x) * weights)

        numeric = diagnosis.numerical_gradient(f, x)
        assert numeric.shape == shape
        np.testing.assert_allclose(numeric, np.cos(x) * weights, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(numeric, gradcheck.numerical_gradient(f, x))


def test_linear_backward_is_checked_on_2d_and_3d_inputs():
    def three_d_only(dout, cache):
        x, weight, has_bias = cache
        dweight = np.einsum("bnk,bnd->kd", x, dout)
        return dout @ weight.T, dweight, dout.sum(axis=(0, 1)) if has_bias else None

    def sums_two_axes(dout, cache):
        x, weight, has_bias = cache
        dx, dweight, _ = L02.linear_backward(dout, cache)
        return dx, dweight, dout.sum(axis=(0, 1)) if has_bias else None

    assert_names(L02.check_linear_backward, three_d_only, "2-D input", "raised", "reshape(-1, K)")
    assert_names(L02.check_linear_backward, sums_two_axes, "2-D input", "dbias has shape ()", "expected (5,)")


def test_use_mine_refuses_wrong_shapes_and_the_engines_own_function():
    """support.use_mine probes each function before the model runs on it: a gradient of
    another shape, on 2-D or 3-D input, and a function that hands the work to the engine's own are
    refused with the reason; the solutions go in."""
    import support

    from minivit import ops

    def transposed_dweight(dout, cache):
        dx, dweight, dbias = L02.linear_backward(dout, cache)
        return dx, dweight.T, dbias

    def per_image_on_3d(dout, cache):  # right on 2-D input, (B, K, D) on 3-D
        x, weight, has_bias = cache
        dweight = x.swapaxes(-1, -2) @ dout
        dbias = dout.reshape(-1, dout.shape[-1]).sum(axis=0) if has_bias else None
        return dout @ weight.T, dweight, dbias

    def engines_own(dout, cache):
        return ops.linear_backward(dout, cache)

    reference_by_another_name = ops.softmax_backward

    def aliased(dprobs, cache):
        return reference_by_another_name(dprobs, cache)

    with pytest.raises(ValueError, match=r"shape \(5, 4\), the engine's has shape \(4, 5\)"):
        support.use_mine(linear_backward=transposed_dweight)
    with pytest.raises(ValueError, match=r"shape \(2, 4, 5\).*\(4, 5\).*\(2, 3, 4\)"):
        support.use_mine(linear_backward=per_image_on_3d)
    with pytest.raises(ValueError, match="calls the engine's own linear_backward"):
        support.use_mine(linear_backward=engines_own)
    with pytest.raises(ValueError, match="calls the engine's own softmax_backward"):
        support.use_mine(softmax_backward=aliased)
    assert ops.softmax_backward is reference_by_another_name  # the sentinel is gone again
    counter = support.CallCounter({"linear_backward": L02.linear_backward,
                                          "attention_backward": L04.attention_backward})
    with support.use_mine(**counter.functions):
        pass
    assert counter.calls == {"linear_backward": 0, "attention_backward": 0}  # the probe is not counted
    assert_names(L02.check_linear_backward, engines_own, "calls the engine's own linear_backward")


def test_same_shape_slips_are_named():
    """The slips that keep every shape right and give 'relative error 1.0' are named."""
    assert_names(L03.check_cls_concat_backward, lambda d, b: (d[:, :-1], d[:, :1].sum(axis=0, keepdims=True)),
                 "dout[:, :-1]", "rows 1 to N")
    assert_names(L03.check_cls_concat_backward, lambda d, b: (d[:, 1:], d[:, -1:].sum(axis=0, keepdims=True)),
                 "from the last token")

    def times_sqrt_d(q, k, v, dropout_p=0.0, rng=None, training=False):
        from minivit import ops

        out, cache = L04.attention_forward(q * q.shape[-1], k, v, dropout_p, rng, training)
        return out, ops.AttentionCache(q, k, v, cache.scale, cache.probs, cache.dropout_mask)

    assert_names(L04.check_attention_forward, times_sqrt_d, "multiplying the scores by sqrt(d)")

    def dk_from_k(dout, cache):
        dq, dk, dv = L04.attention_backward(dout, cache)
        q, k, v, scale, probs, mask = cache
        dprobs = dout @ v.swapaxes(-1, -2) * (1 if mask is None else mask)
        dscores = L04.softmax_backward(dprobs, (probs, -1)) * scale
        return dq, dscores @ k, dv

    assert_names(L04.check_attention_backward, dk_from_k, "dk:", "dscores K")

    def no_q_bias(x, qw, qb, kw, kb, vw, vb, ow, ob, num_heads):
        return L04.multi_head_attention(x, qw, 0 * qb, kw, kb, vw, vb, ow, ob, num_heads)

    assert_names(L04.check_multi_head_attention, no_q_bias, "leaving out the q bias")

    def adamw(m_only=False, decay_after=False):
        def adamw_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay):
            if not decay_after:
                param = param * (1 - lr * weight_decay)
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad * grad
            v_hat = v if m_only else v / (1 - beta2**step)
            param = param - lr * (m / (1 - beta1**step)) / (np.sqrt(v_hat) + eps)
            if decay_after:
                param = param * (1 - lr * weight_decay)
            return param, m, v

        return adamw_step

    assert_names(L07.check_adamw_step, adamw(m_only=True), "bias correction on m only")
    text = assert_names(L07.check_adamw_step, adamw(decay_after=True), "weight decay applied after the Adam step")
    assert "rounding" not in text.lower()

    def one_short(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
        if step < warmup_steps:
            return base_lr * (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps - 1))
        return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))

    assert_names(L08.check_learning_rate, one_short, "one step short at the end")


def test_gelu_kernel_numbers_are_checked_without_a_gpu(capsys):
    """The kernel's operation runs as host C (the system's compiler): the tanh approximation, which
    compiles, fails by name; the exact form passes."""
    import shutil

    if not shutil.which("cc") and not shutil.which("gcc"):
        pytest.skip("no C compiler here")
    operation = "y = 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))"
    answer = lambda: dict(L09.gelu_kernel_parts(), operation=operation)  # noqa: E731
    try:
        from minivit.kernels.nvrtc import compile_elementwise  # noqa: F401
    except ImportError:
        pytest.skip("no minivit.kernels.nvrtc")
    text = hint(L09.check_gelu_kernel, answer)
    if "compiles with NVRTC" in capsys.readouterr().out or "tanh approximation" in text:
        assert "tanh approximation" in text and "compiled as C" in text
    assert L09._elementwise_on_host(dict(L09.gelu_kernel_parts(), operation="y = x * erf(x)"), np.ones(3)).shape == (3,)
    on_host = L09._elementwise_on_host(L09.gelu_kernel_parts(), np.linspace(-3, 3, 7))
    np.testing.assert_allclose(on_host, np.linspace(-3, 3, 7) * 0.5 * (1 + np.vectorize(math.erf)(
        np.linspace(-3, 3, 7) / math.sqrt(2))), rtol=1e-13)


def test_the_loss_mistakes():
    """Lesson 6's loss: no log-sum-exp, a sum for the mean, smoothing over the wrong classes, and
    the backward's sign, scale, upstream factor and targets, each named."""
    def forward(shift=True, reduce="mean", others_only=False, cache_probs=False):
        def cross_entropy_forward(logits, targets, label_smoothing=0.0):
            B, K = logits.shape
            z = logits - logits.max(axis=1, keepdims=True) if shift else logits
            onehot = np.eye(K)[targets]
            q = ((1 - label_smoothing) * onehot + label_smoothing / (K - 1) * (1 - onehot) if others_only
                 else (1 - label_smoothing) * onehot + label_smoothing / K)
            with np.errstate(over="ignore", invalid="ignore"):  # the overflow the check names
                log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
                total = -(q * log_probs).sum()
            loss = {"mean": total / B, "sum": total, "mean over classes": total / (B * K)}[reduce]
            return loss, (np.exp(log_probs) if cache_probs else log_probs, q)

        return cross_entropy_forward

    assert_names(L06.check_cross_entropy_forward, forward(shift=False), "overflows", "log-sum-exp")
    assert_names(L06.check_cross_entropy_forward, forward(reduce="sum"), "4 times the expected", "batch size B")
    assert_names(L06.check_cross_entropy_forward, forward(reduce="mean over classes"), "mean over the classes")
    assert_names(L06.check_cross_entropy_forward, forward(others_only=True), "label_smoothing 0.1", "eps/(K-1)")
    assert_names(L06.check_cross_entropy_forward, forward(cache_probs=True), "log_probs", "instead of their log")

    def backward(variant):
        def cross_entropy_backward(dloss, cache):
            log_probs, q = cache
            B, K = log_probs.shape
            p = np.exp(log_probs)
            onehot = (q == q.max(axis=1, keepdims=True)).astype(float)
            return {"sign": (q - p) * dloss / B, "no B": (p - q) * dloss, "no dloss": (p - q) / B,
                    "onehot": (p - onehot) * dloss / B}[variant]

        return cross_entropy_backward

    assert_names(L06.check_cross_entropy_backward, backward("sign"), "sign flipped")
    assert_names(L06.check_cross_entropy_backward, backward("no B"), "4 times the expected", "batch size B")
    assert_names(L06.check_cross_entropy_backward, backward("no dloss"), "dloss left out")
    assert_names(L06.check_cross_entropy_backward, backward("onehot"), "label_smoothing 0.1", "smoothed targets q")


def test_the_call_counter_says_where_an_uncounted_function_runs():
    """Lesson 8 with the solutions: softmax_backward is called by attention_backward directly, so the
    engine counts 0; the report says it ran inside attention_backward (issue 28.11)."""
    import support

    counter = support.CallCounter({"softmax_backward": L04.softmax_backward,
                                          "attention_backward": L04.attention_backward})
    counter.calls["attention_backward"] = 3
    assert str(counter) == ("softmax_backward 0x (by the engine: it runs inside your attention_backward, which "
                            "calls it directly), attention_backward 3x")


def test_the_whole_layer_mistakes():
    """Lesson 5's whole layer: a fork whose gradients do not add, GELU's derivative left out, q/k/v
    packed in another order, the heads merged without the transpose, a node not written yet."""
    from minivit import ops

    def variant(mistake):
        def encoder_layer_backward(dout, cache):
            g = L05.encoder_layer_backward(dout, cache)
            B, H, T, d = g["dq"].shape
            if mistake == "second fork":
                g["dh"] = g["dh"] - dout
            elif mistake == "first fork skip only":
                g["dx"] = g["dh"]
            elif mistake == "no gelu":
                g["dfc1_out"] = g["dgelu_out"]
            elif mistake == "order":
                g["dqkv"] = np.concatenate([ops.merge_heads(g[n]) for n in ("dk", "dq", "dv")], axis=-1)
            elif mistake == "plain merge":
                g["dqkv"] = np.concatenate([g[n].reshape(B, T, H * d) for n in ("dq", "dk", "dv")], axis=-1)
            elif mistake == "unwritten":
                g["dcontext"] = None
            elif mistake == "dqkv_weight per image":
                x_ln = cache["qkv"][0]
                g["dqkv_weight"] = x_ln.swapaxes(-1, -2) @ g["dqkv"]
            return g

        return encoder_layer_backward

    assert_names(L05.check_encoder_layer_backward, variant("second fork"), "dh", "gradients of both paths add")
    assert_names(L05.check_encoder_layer_backward, variant("first fork skip only"), "dx", "dh only (the skip path)")
    assert_names(L05.check_encoder_layer_backward, variant("no gelu"), "dfc1_out", "GELU's derivative")
    assert_names(L05.check_encoder_layer_backward, variant("order"), "dqkv", "another order")
    assert_names(L05.check_encoder_layer_backward, variant("plain merge"), "dqkv", "plain reshape")
    assert_names(L05.check_encoder_layer_backward, variant("unwritten"), "dcontext is not written yet")
    assert_names(L05.check_encoder_layer_backward, variant("dqkv_weight per image"),
                 "dqkv_weight has shape (2, 6, 18), expected (6, 18)", "sum over the batch")
    assert_names(L05.check_encoder_layer_backward, lambda dout, cache: (dout, None), "expected the dict")


def test_use_my_layer_trains_as_the_engine():
    """The solution's layer, plugged into every encoder layer, gives the engine's losses and leaves
    the model's own methods in place afterwards."""
    import support

    import minivit
    from minivit import dispatch, optim

    config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=12, num_labels=3, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0)
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((4, 3, 8, 8)), rng.integers(0, 3, 4)
    curves = []
    for mine in (False, True):
        model = minivit.ViTForImageClassification(config, seed=1, dtype="float64").train()
        optimizer = optim.AdamW(model.named_parameters(), lr=1e-2)
        losses = []
        context = (support.use_my_layer(model, L05.encoder_layer_forward, L05.encoder_layer_backward) if mine
                   else contextlib.nullcontext())
        with context:
            for _ in range(3):
                optimizer.zero_grad()
                loss, cache = dispatch.cross_entropy_forward(model.forward(images), labels)
                model.backward(dispatch.cross_entropy_backward(1.0, cache))
                optimizer.step()
                losses.append(float(loss))
        curves.append(losses)
        assert "forward" not in vars(model.encoder.layers[0])
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-12)
    with pytest.raises(ValueError, match="hidden_dropout_prob=0"):
        with support.use_my_layer(minivit.ViTForImageClassification(
                minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=12, num_labels=3, hidden_dropout_prob=0.1)),
                L05.encoder_layer_forward, L05.encoder_layer_backward):
            pass


def test_the_gradient_checker_and_training_step_mistakes():
    """Lesson 7's own checker (one-sided, no 2, x not restored) and step (no zero_grad, step first)."""
    def checker(mistake):
        def numerical_gradient(f, x, h=1e-5):
            grad = np.zeros_like(x)
            for index in np.ndindex(x.shape):
                original = x[index]
                x[index] = original + h
                f_plus = f()
                x[index] = original if mistake == "one-sided" else original - h
                f_minus = f()
                if mistake != "not restored":
                    x[index] = original
                grad[index] = (f_plus - f_minus) / (h if mistake in ("one-sided", "no 2") else 2 * h)
            return grad

        return numerical_gradient

    assert_names(L07.check_numerical_gradient, checker("one-sided"), "one-sided difference")
    assert_names(L07.check_numerical_gradient, checker("no 2"), "twice the expected")
    assert_names(L07.check_numerical_gradient, checker("not restored"), "x changed", "put each element back")
    assert_names(L07.check_numerical_gradient, lambda f, x, h=1e-5: L07.numerical_gradient(f, x, h).reshape(-1),
                 "has shape (12,), expected (3, 4)")

    from minivit import dispatch

    def no_zero_grad(model, optimizer, images, labels):
        loss, cache = dispatch.cross_entropy_forward(model.forward(images), labels)
        model.backward(dispatch.cross_entropy_backward(1.0, cache))
        optimizer.step()
        return loss

    def step_first(model, optimizer, images, labels):
        optimizer.zero_grad()
        optimizer.step()
        loss, cache = dispatch.cross_entropy_forward(model.forward(images), labels)
        model.backward(dispatch.cross_entropy_backward(1.0, cache))
        return loss

    assert_names(L07.check_train_step, no_zero_grad, "no optimizer.zero_grad()", "add up")
    assert_names(L07.check_train_step, step_first, "before the backward")


def test_notebook_cells_are_shown_without_temporary_file_names():
    import support

    assert (support.shown_site("/tmp/ipykernel_1234/4220141083.py:19 in step (float())")
            == "a cell of this notebook, line 19 in step (float())")
    assert support.shown_site("/home/someone/minivit/training/trainer.py:7 in f") == "trainer.py:7 in f"


def test_the_speed_table_measures_every_side_or_says_why_not(monkeypatch, capsys):
    """Lessons 8 and 9 time minivit against transformers' ViT in the notebook; without torch they say
    so in one line. (The numbers are not asserted: a test measures nothing.)"""
    import support

    import minivit

    config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=12, num_labels=3)
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    speeds = support.speed_against_pytorch(config, 2, rounds=1, steps=1, mine={"linear_backward":
                                                                                       L02.linear_backward})
    out = capsys.readouterr().out
    assert set(speeds) == {"minivit (fast kernels)", "minivit on your functions"}
    assert all(speed["training step"] > 0 and speed["inference"] > 0 for speed in speeds.values())
    assert "PyTorch: not measured (transformers is not installed" in out


def test_a_cell_after_an_unwritten_exercise_says_which_exercise_it_waits_for():
    import support

    def layernorm_backward(dout, cache):
        raise NotImplementedError("Exercise 2: write layernorm_backward")

    with pytest.raises(NotYet, match=r"this cell waits for Exercise 2 \(layernorm_backward\)"):
        support.use_mine(layernorm_backward=layernorm_backward)


# --- lesson 9's LayerNorm RawKernel, run on the CPU warp by warp --------------------------------------

def _layernorm_kernel_with(old: str, new: str):
    source = L09.layernorm_kernel_source()
    assert old in source, old
    return lambda: source.replace(old, new)


_TWO_PASS = """    float square_sum = 0.0f;  // a second pass: sum((x - mean)^2), not sum(x^2) - D mean^2, which cancels
    for (int c = lane; c < D; c += 32) {
        float centered = x_row[c] - mean;
        square_sum += centered * centered;
    }
    float rstd = rsqrtf(warp_sum(square_sum) / D + eps);"""
_ONE_PASS = """    float square_sum = 0.0f;
    for (int c = lane; c < D; c += 32) square_sum += x_row[c] * x_row[c];
    float rstd = rsqrtf(warp_sum(square_sum) / D - mean * mean + eps);"""


@pytest.mark.parametrize("old, new, words", [
    ("offset > 0", "offset > 1", ["a reduction step is missing", "offset 1"]),
    ("float mean = warp_sum(sum) / D;", "float mean = sum / D;", ["one reduction", "needs two"]),
    ("__shfl_xor_sync(0xffffffff, value, offset)", "__shfl_down_sync(0xffffffff, value, offset)",
     ["only lane 0 ends with the whole sum"]),
    ("float centered = x_row[c] - mean;", "float centered = x_row[c];", ["the variance without the mean"]),
    ("rsqrtf(warp_sum(square_sum) / D + eps)", "1.0f / (sqrtf(warp_sum(square_sum) / D) + eps)",
     ["eps outside the square root"]),
    ("rsqrtf(warp_sum(square_sum) / D + eps)", "rsqrtf(warp_sum(square_sum) / D) + eps",
     ["eps added after the inverse square root"]),
    ("/ D + eps", "/ (D - 1) + eps", ["the unbiased variance"]),
    ("warp_sum(sum) / D", "warp_sum(sum) / 32", ["dividing the row's sum by 32", "for the mean"]),
    (_TWO_PASS, _ONE_PASS, ["row 1", "cancels", "second pass"]),
    ("for (int c = lane; c < D; c += 32) sum", "for (int c = lane; c < D + 31; c += 32) sum",
     ["reading out of bounds", "lane 0 of row 5", "x[192]", "c < D"]),
    ("if (row >= rows) return;", "", ["reading out of bounds", "row 6", "if (row >= rows) return"]),
    ("for (int c = lane; c < D; c += 32) sum += x_row[c];",
     "for (int k = 0; k < 4; k++) if (lane + 32 * k < D) sum += x_row[lane + 32 * k];",
     ["right for D up to 100, wrong for D = 1000", "fixed number of columns"]),
    ("value += __shfl_xor_sync(0xffffffff, value, offset);",
     "if (threadIdx.x % 32 < 16) value += __shfl_xor_sync(0xffffffff, value, offset);",
     ["did not meet at the same shuffle", "lane 16"]),
    ("return value;\n}", "return value\n}", ["compiles with NVRTC", "error"]),
], ids=["missing-step", "one-reduction", "shfl-down", "variance-without-mean", "eps-outside-sqrt", "eps-after",
        "unbiased", "over-32", "one-pass", "past-row-end", "no-row-guard", "fixed-columns", "diverged", "syntax"])
def test_layernorm_kernel_mistakes_are_named(old, new, words):
    """Each slip fails the check run on the CPU (no GPU) and its hint names it."""
    from support.cuda_on_host import host_compiler

    if host_compiler() is None:
        pytest.skip("no C++ compiler here")
    if new == "return value\n}":
        pytest.importorskip("cupy")
    assert_names(L09.check_layernorm_kernel, _layernorm_kernel_with(old, new), *words)


def test_layernorm_kernel_without_shuffles_is_named_even_when_its_numbers_are_right():
    """Lane 0 summing the whole row alone gives the right numbers without the exercise's point: a shuffle."""
    from support.cuda_on_host import host_compiler

    if host_compiler() is None:
        pytest.skip("no C++ compiler here")
    serial = """__device__ float row_sum_by_lane_0(const float* row, int D, int lane) {
    double total = 0.0;  // in double: a float32 running sum of 1,000 values near 100 loses the mean's digits
    for (int c = 0; c < D; c++) total += row[c];
    return (float)total;
}
"""
    source = L09.layernorm_kernel_source()
    source = serial + source.replace("float mean = warp_sum(sum) / D;",
                                     "float mean = row_sum_by_lane_0(x_row, D, lane) / D;")
    source = source.replace(_TWO_PASS, """    float square_sum = 0.0f;
    for (int c = 0; c < D; c++) square_sum += (x_row[c] - mean) * (x_row[c] - mean);
    float rstd = rsqrtf(square_sum / D + eps);""")
    assert "__shfl" not in source.split("warp_sum(float value)")[0] and "warp_sum(" not in source.split("{", 3)[-1]
    assert_names(L09.check_layernorm_kernel, lambda: source, "the numbers are right", "no __shfl_xor_sync ran")
    assert_names(L09.check_layernorm_kernel, lambda: "__global__ void layernorm(float* x) {}", "layernorm_warp(")


def test_warps_on_the_host_exchange_as_the_hardware_does():
    """The host emulation's shuffles: xor, down (the top lanes keep their own), up, index, over 2 warps."""
    from support.cuda_on_host import HostKernel, host_compiler

    if host_compiler() is None:
        pytest.skip("no C++ compiler here")
    source = """extern "C" __global__ void shuffles(float* out) {
        int t = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32;
        float v = (float)t;
        out[4 * t + 0] = __shfl_xor_sync(0xffffffff, v, 5);
        out[4 * t + 1] = __shfl_down_sync(0xffffffff, v, 3);
        out[4 * t + 2] = __shfl_up_sync(0xffffffff, v, 2, 16);
        out[4 * t + 3] = __shfl_sync(0xffffffff, v, 7);
        __syncthreads();
    }"""
    kernel = HostKernel(source, "shuffles", [("float*", "out")])
    run = kernel.launch(2, 64, {"out": np.zeros((128, 4))})
    assert run.error is None and [kind for kind, _ in run.shuffles] == ["xor", "down", "up", "index"]
    t = np.arange(128)
    lane, warp_start = t % 32, t - t % 32
    np.testing.assert_array_equal(run.arrays["out"][:, 0], warp_start + (lane ^ 5))
    np.testing.assert_array_equal(run.arrays["out"][:, 1], np.where(lane + 3 < 32, t + 3, t))
    np.testing.assert_array_equal(run.arrays["out"][:, 2], np.where(lane % 16 >= 2, t - 2, t))
    np.testing.assert_array_equal(run.arrays["out"][:, 3], warp_start + 7)
    past_end = kernel.launch(3, 64, {"out": np.zeros((128, 4))})
    assert past_end.fault == {"block": 2, "thread": 0, "array": "out", "index": 512, "count": 512}

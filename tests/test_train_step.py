"""The one training step (minivit.training.step.TrainStep), against the same step written out by hand."""

import numpy as np
import pytest

from minivit import backend, optim
from minivit.amp import LossScaler
from minivit.config import ViTConfig
from minivit.dispatch import cross_entropy_backward, cross_entropy_forward
from minivit.model import ViTForImageClassification
from minivit.training.step import TrainStep

TINY = ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=16, num_labels=3)


def batch(dtype="float32"):
    rng = np.random.default_rng(0)
    return rng.standard_normal((4, 3, 8, 8)).astype(dtype), np.array([0, 1, 2, 1])


def test_a_step_is_the_step_written_out_by_hand():
    """float64: the same operations in the same order, so the weights agree to rounding (~1e-16)."""
    images, labels = batch("float64")
    mine = ViTForImageClassification(TINY, seed=1, dtype="float64")
    by_hand = ViTForImageClassification(TINY, seed=1, dtype="float64")
    step = TrainStep(mine, optim.AdamW(mine.named_parameters()), label_smoothing=0.1, grad_clip=0.5)
    optimizer = optim.AdamW(by_hand.named_parameters())
    for lr in (1e-3, 2e-3):
        loss, correct = step(images, labels, lr)
        optimizer.zero_grad()
        logits = by_hand.forward(images)
        expected_loss, cache = cross_entropy_forward(logits, labels, 0.1)
        by_hand.backward(cross_entropy_backward(1.0, cache))
        optimizer.clip_gradients(0.5)
        optimizer.lr = lr
        optimizer.step()
        assert loss.shape == () and correct.shape == ()
        assert loss.dtype == np.float64  # a float64 model's loss in float64
        assert float(loss) == pytest.approx(float(expected_loss), abs=1e-15)
        assert int(correct) == int((np.argmax(logits, axis=1) == labels).sum())
    assert step.optimizer.lr == 2e-3
    for (name, value), (_, expected) in zip(mine.state_dict().items(), by_hand.state_dict().items()):
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-14, err_msg=name)


def test_soft_targets_count_their_largest_class_and_clipping_bounds_the_norm():
    images, labels = batch()
    model = ViTForImageClassification(TINY, seed=2)
    optimizer = optim.AdamW(model.named_parameters())
    soft = np.eye(3, dtype="float32")[labels] * 0.7 + 0.1  # mixup-like rows, largest at the label
    loss, correct = TrainStep(model, optimizer, grad_clip=1e-3)(images, soft, 1e-3)
    assert loss.dtype == np.float32 and np.isfinite(float(loss))
    norm = np.sqrt(sum(float((parameter.grad.astype("float64") ** 2).sum())
                       for _, parameter in optimizer.named_parameters))
    assert norm == pytest.approx(1e-3, rel=1e-3)  # clipped to grad_clip
    assert 0 <= int(correct) <= 4


def test_a_float16_step_computes_its_loss_in_float32_and_keeps_float32_weights():
    backend.use("cupy-sim")
    try:
        images, labels = batch()
        model = ViTForImageClassification(TINY, seed=3, dtype="float16")
        optimizer = optim.AdamW(model.named_parameters(), master_weights=True)
        before = backend.to_numpy(optimizer.master).copy()
        step = TrainStep(model, optimizer, grad_clip=1.0, scaler=LossScaler())
        loss, correct = step(backend.asarray(images), backend.asarray(labels), 1e-3)
        assert loss.dtype == np.float32 and np.isfinite(float(loss))
        assert optimizer.master.dtype == np.float32
        assert not np.array_equal(backend.to_numpy(optimizer.master), before)  # the step was taken
    finally:
        backend.use("numpy")

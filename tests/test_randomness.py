"""A run's randomness is a function of (seed, epoch, image) and (seed, step): what a rank's shard of
a batch gets (crops, flips, RandAugment, mixup/cutmix partners, dropout masks) is what one process
gives those images, and nothing depends on what was drawn before.

These tests split a batch by hand (``Batches(..., rank, num_ranks)``) in one process; the real
ranks (mpiexec) are in tests/test_distributed.py.
"""

import numpy as np
import pytest

from minivit import backend
from minivit.augment import AugmentConfig
from minivit.config import ViTConfig
from minivit.model import ViTForImageClassification
from minivit.sample_random import SampleStream, stream_key
from minivit.training.data import Batches
from minivit.training.randomness import RunRandomness

EVERYTHING = AugmentConfig(crop_padding=2, horizontal_flip=True, randaugment_ops=2, randaugment_magnitude=9,
                           mixup_alpha=0.8, cutmix_alpha=1.0, mix_prob=1.0)
TINY = ViTConfig(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=32, num_labels=3, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2)


def data(count=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 3, 8, 8)).astype(np.uint8), rng.integers(0, 3, count)


def to_host(*arrays):
    return [backend.to_numpy(array) for array in arrays]


def test_a_sample_stream_draws_row_r_from_sample_r_alone():
    key = stream_key(7, 2, 3)
    whole, part = SampleStream(key, np.array([5, 9, 2, 7])), SampleStream(key, np.array([2, 7]))
    for shape, dtype in (((4, 3, 5), "float32"), (4, "float64"), ((4, 6), "float64")):
        np.testing.assert_array_equal(whole.random(shape, dtype)[2:],
                                      part.random((2, *np.atleast_1d(shape)[1:]), dtype))
    np.testing.assert_array_equal(whole.integers(0, 9, size=4)[2:], part.integers(0, 9, size=2))
    # another key, another draw number, another sample: other numbers
    first = SampleStream(key, np.array([1, 2])).random((2, 1000))
    assert not np.array_equal(first, SampleStream(stream_key(7, 2, 4), np.array([1, 2])).random((2, 1000)))
    second_draw = SampleStream(key, np.array([1, 2]))
    second_draw.random((2, 1000))
    assert not np.array_equal(first, second_draw.random((2, 1000)))
    assert not np.array_equal(first[0], first[1])


def test_a_sample_stream_is_uniform_and_its_draws_uncorrelated():
    stream = SampleStream(stream_key(0), np.arange(500))
    uniform = stream.random((500, 2000), "float32")
    assert uniform.dtype == np.float32 and 0.0 <= uniform.min() and uniform.max() < 1.0
    # a million draws: the mean within 5 standard errors (0.29 / 1000), each tenth of [0, 1) within 1%
    assert abs(uniform.mean() - 0.5) < 5 * 0.29 / 1000
    counts = np.histogram(uniform, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts / uniform.size - 0.1) < 0.001)
    following = stream.random((500, 2000), "float32")
    for a, b in ((uniform, following), (uniform[:, :-1], uniform[:, 1:]), (uniform[:-1], uniform[1:])):
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 5e-3  # (about 1e-3 by chance)
    integers = stream.integers(3, 7, size=500)
    assert integers.dtype == np.int64 and set(integers.tolist()) == {3, 4, 5, 6}


def test_a_sample_stream_refuses_a_draw_for_other_rows():
    with pytest.raises(ValueError, match=r"draws for 4 samples.*shape \(3, 2\).*model.eval\(\)"):
        SampleStream(1, np.arange(4)).random((3, 2))


@pytest.mark.parametrize("backend_name", ["numpy", "cupy-sim"])
def test_the_shards_of_a_batch_are_augmented_and_mixed_as_the_whole_batch(backend_name):
    backend.use(backend_name)
    try:
        images, labels = data()
        mean, std = backend.asarray(np.full(3, 120.0, np.float32)), backend.asarray(np.full(3, 60.0, np.float32))
        model = ViTForImageClassification(TINY, seed=0)
        whole = RunRandomness(5, Batches(images, labels, 12, 5), model)
        for step in (0, 1, 4):  # mixup and cutmix both come up among these steps
            batch = whole.batches.get(step)
            expected = to_host(*whole.augment_step(step, *batch, EVERYTHING, mean, std, 3))
            for num_ranks in (2, 3, 4):
                shards = []
                for rank in range(num_ranks):
                    randomness = RunRandomness(5, Batches(images, labels, 12, 5, rank, num_ranks), model)
                    shard = randomness.batches.get(step)
                    shards.append(to_host(*randomness.augment_step(step, *shard, EVERYTHING, mean, std, 3)))
                for part, want in zip(zip(*shards), expected):  # pixels, then targets
                    np.testing.assert_array_equal(np.concatenate(part), want)
    finally:
        backend.use("numpy")


def test_the_shards_dropout_masks_are_the_whole_batchs():
    images, labels = data()
    logits = {}
    for num_ranks in (1, 2, 4):
        rows = []
        for rank in range(num_ranks):
            model = ViTForImageClassification(TINY, seed=0, dtype="float64").train()
            randomness = RunRandomness(5, Batches(images, labels, 12, 5, rank, num_ranks), model)
            shard_images, shard_labels = randomness.batches.get(3)
            randomness.augment_step(3, shard_images, shard_labels, AugmentConfig(crop_padding=0), np.zeros(3),
                                    np.ones(3), 3)
            # the same input for every row: the rows differ only by their masks
            rows.append(model.forward(np.ones((len(shard_labels), 3, 8, 8))))
        logits[num_ranks] = np.concatenate(rows)
    assert not np.allclose(logits[1][0], logits[1][1])  # the masks differ from image to image
    # the same masks: a mask that differed would move the logits by about 0.1; the matrix products of
    # 3 rows round otherwise than those of 12 (about 1e-16)
    np.testing.assert_allclose(logits[2], logits[1], rtol=0, atol=1e-14)
    np.testing.assert_allclose(logits[4], logits[1], rtol=0, atol=1e-14)


def test_a_step_draws_the_same_whatever_came_before():
    """No state: a resumed run (or a run that skipped steps) draws at step 4 what an unbroken one does."""
    images, labels = data()
    model = ViTForImageClassification(TINY, seed=0)
    mean, std = np.full(3, 120.0, np.float32), np.full(3, 60.0, np.float32)
    unbroken = RunRandomness(5, Batches(images, labels, 12, 5), model)
    for step in range(4):
        unbroken.augment_step(step, *unbroken.batches.get(step), EVERYTHING, mean, std, 3)
    fresh = RunRandomness(5, Batches(images, labels, 12, 5), model)
    for got, want in zip(fresh.augment_step(4, *fresh.batches.get(4), EVERYTHING, mean, std, 3),
                         unbroken.augment_step(4, *unbroken.batches.get(4), EVERYTHING, mean, std, 3)):
        np.testing.assert_array_equal(got, want)
    other_seed = RunRandomness(6, Batches(images, labels, 12, 5), model)
    assert not np.array_equal(other_seed.augment_step(4, *fresh.batches.get(4), EVERYTHING, mean, std, 3)[0],
                              fresh.augment_step(4, *fresh.batches.get(4), EVERYTHING, mean, std, 3)[0])

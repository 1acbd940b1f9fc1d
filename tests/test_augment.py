"""Augmentation: shapes, ranges, determinism, and what each operation does."""

import numpy as np
import pytest

from minivit import augment, backend


def images(batch=8, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, 3, size, size)).astype(np.uint8)


def rngs(seed=0):
    return backend.default_rng(seed), np.random.default_rng(seed)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = images(batch=16)
    out = augment.random_crop(x, 2, backend.default_rng(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(16):
        assert any(np.array_equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8]) for dy in range(5) for dx in range(5))


def test_horizontal_flip_flips_about_half():
    x = images(batch=200)
    out = augment.horizontal_flip(x, backend.default_rng(0))
    flipped = [np.array_equal(out[i], x[i, :, :, ::-1]) for i in range(200)]
    kept = [np.array_equal(out[i], x[i]) for i in range(200)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 70 < sum(flipped) < 130


def test_normalize():
    x = np.full((2, 3, 4, 4), 255, dtype=np.uint8)
    out = augment.normalize(x, [0.5, 0.5, 0.5], [0.25, 0.5, 1.0])
    np.testing.assert_allclose(out[0, :, 0, 0], [2.0, 1.0, 0.5])
    assert out.dtype == np.float32


def test_mixup_targets_are_distributions_mixing_partners():
    rng, host = rngs()
    x = augment.normalize(images(), [0.5] * 3, [0.25] * 3)
    targets = augment.one_hot(np.arange(8) % 4, 4)
    mixed, mixed_targets = augment.mixup(x, targets, 0.8, host)
    np.testing.assert_allclose(mixed_targets.sum(axis=1), 1.0, rtol=1e-6)
    lam = mixed_targets[0, 0] if targets[0, 0] else None
    assert lam is not None and 0 <= lam <= 1
    np.testing.assert_allclose(mixed[0], lam * x[0] + (1 - lam) * x[7], rtol=1e-5, atol=1e-5)


def test_cutmix_lambda_is_the_area_kept():
    _, host = rngs(1)
    x = np.zeros((2, 1, 10, 10), dtype=np.float32)
    x[1] = 1.0
    targets = augment.one_hot(np.array([0, 1]), 2)
    mixed, mixed_targets = augment.cutmix(x, targets, 1.0, host)
    pasted_share = float(mixed[0].mean())  # image 0 is zeros; pasted pixels come from image 1 (ones)
    np.testing.assert_allclose(mixed_targets[0], [1 - pasted_share, pasted_share], atol=1e-6)


@pytest.mark.parametrize("name", sorted(augment.RANDAUGMENT_OPS))
def test_each_randaugment_op_keeps_shape_and_range(name):
    x = images(batch=4, size=16).astype(np.float32)
    sign = np.array([1.0, -1.0, 1.0, -1.0], dtype=np.float32)
    out = augment.RANDAUGMENT_OPS[name](x, sign, 0.9)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 255
    if name != "identity":
        assert not np.array_equal(out, x), f"{name} changed nothing"


def test_affine_identity_and_translation():
    x = images(batch=2).astype(np.float32)
    identity = augment._matrices(2, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    np.testing.assert_array_equal(augment.affine(x, identity), x)
    shift = augment._matrices(2, 1.0, 0.0, 2.0, 0.0, 1.0, 0.0)  # output (x, y) reads input (x + 2, y)
    out = augment.affine(x, shift, fill=128.0)
    np.testing.assert_array_equal(out[..., :6], x[..., 2:])
    assert (out[..., 6:] == 128.0).all()


def test_augment_batch_is_deterministic_for_fixed_generators():
    config = augment.AugmentConfig(randaugment_ops=2, mixup_alpha=0.8, cutmix_alpha=1.0)
    labels = np.arange(8) % 4
    first = augment.augment_batch(images(), labels, config, [0.5] * 3, [0.25] * 3, 4, *rngs(5))
    second = augment.augment_batch(images(), labels, config, [0.5] * 3, [0.25] * 3, 4, *rngs(5))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[0].dtype == np.float32 and first[1].shape == (8, 4)


def test_bad_augmentation_options():
    with pytest.raises(ValueError, match="crop_padding"):
        augment.AugmentConfig(crop_padding=-1)
    with pytest.raises(ValueError, match="randaugment_magnitude"):
        augment.AugmentConfig(randaugment_magnitude=11)


@pytest.mark.parametrize("padding", [0, 2])
def test_crop_flip_normalize_is_crop_then_flip_then_normalize(backend_name, padding):
    x = backend.asarray(images(batch=6))
    rng = backend.default_rng(0)
    top = rng.integers(0, 2 * padding + 1, size=6)
    left = rng.integers(0, 2 * padding + 1, size=6)
    flip = backend.asarray(np.array([True, False, True, True, False, False]))
    mean, std = backend.asarray(np.array([0.5, 0.4, 0.3], "float32")), backend.asarray(np.array([0.2, 0.3, 0.4],
                                                                                              "float32"))
    out = backend.to_numpy(augment.crop_flip_normalize(x, top, left, flip, padding, mean, std))
    host = backend.to_numpy(x)
    padded = np.pad(host, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    t, lft, f = backend.to_numpy(top), backend.to_numpy(left), backend.to_numpy(flip)
    for i in range(6):
        window = padded[i, :, t[i]:t[i] + 8, lft[i]:lft[i] + 8]
        window = window[:, :, ::-1] if f[i] else window
        channel_mean, channel_std = np.array([0.5, 0.4, 0.3])[:, None, None], np.array([0.2, 0.3, 0.4])[:, None, None]
        expected = (window / 255.0 - channel_mean) / channel_std
        np.testing.assert_allclose(out[i], expected, rtol=1e-5, atol=1e-5)
    assert out.dtype == np.float32

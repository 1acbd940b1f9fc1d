"""The analyses behind the 'what a ViT learns' figures, on small models whose answers are known."""

import numpy as np
from synthetic_data import write_image_folder

import minivit
from minivit import backend, visualize

CONFIG = minivit.ViTConfig(image_size=8, patch_size=2, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=24, num_labels=3)


def images(count=5, seed=0):
    return np.random.default_rng(seed).standard_normal((count, 3, 8, 8)).astype(np.float32)


def test_filter_components_are_orthonormal_and_ordered():
    model = minivit.ViTForImageClassification(CONFIG)
    components, explained = visualize.filter_components(model, count=10)
    assert components.shape == (10, 3, 2, 2)
    flat = components.reshape(10, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(10), atol=1e-10)
    assert np.all(np.diff(explained) <= 1e-12) and explained.sum() <= 1 + 1e-12


def test_position_similarity_is_a_cosine_similarity():
    similarity = visualize.position_similarity(minivit.ViTForImageClassification(CONFIG))
    assert similarity.shape == (4, 4, 4, 4)
    flat = similarity.reshape(16, 16)
    np.testing.assert_allclose(np.diag(flat), 1.0, atol=1e-6)
    np.testing.assert_allclose(flat, flat.T, atol=1e-6)


def test_uniform_attention_looks_at_the_mean_distance():
    """With q = k = 0 every token attends equally to all: the mean attention distance is the
    mean distance between patch centres, in every head of every layer."""
    model = minivit.ViTForImageClassification(CONFIG)
    for layer in model.encoder.layers:
        for projection in (layer.attention.q_proj, layer.attention.k_proj):
            projection.weight.data[...] = 0
            projection.bias.data[...] = 0
    distances = visualize.mean_attention_distance(model, images())
    centres = visualize.patch_centres(CONFIG)
    expected = np.linalg.norm(centres[:, None] - centres[None], axis=-1).mean()
    assert distances.shape == (2, 2)
    np.testing.assert_allclose(distances, expected, rtol=1e-5)


def test_rollout_of_one_layer_is_its_mixed_attention():
    config = CONFIG.replace(num_hidden_layers=1)
    model = minivit.ViTForImageClassification(config, seed=1)
    x = images(3)
    rollout = visualize.attention_rollout(model, x, keep_residual=0.5)
    model.forward(backend.asarray(x))
    probs = backend.to_numpy(model.attention_maps()[0]).astype(np.float64).mean(axis=1)  # (B, T, T)
    cls_row = (0.5 * np.eye(17) + 0.5 * probs)[:, 0, 1:]
    expected = (cls_row - cls_row.min(axis=1, keepdims=True)) / np.ptp(cls_row, axis=1, keepdims=True)
    np.testing.assert_allclose(rollout.reshape(3, 16), expected, atol=1e-5)


def test_the_command_line_draws_four_figures(tmp_path, capsys):
    from minivit.train import main as train_main

    data = write_image_folder(tmp_path / "data", per_class=8, size=8)
    assert train_main(["--data-dir", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size",
                       "4", "--image-size", "8", "--patch-size", "2", "--hidden-size", "16", "--num-hidden-layers",
                       "2", "--num-attention-heads", "2", "--intermediate-size", "24", "--no-progress"]) == 0
    assert visualize.main(["--checkpoint", str(tmp_path / "run" / "checkpoint-last.npz"), "--data-dir", str(data),
                           "--out", str(tmp_path / "figures")]) == 0
    names = sorted(path.name for path in (tmp_path / "figures").iterdir())
    assert names == ["attention-distance.png", "attention-rollout.png", "learned-filters.png",
                     "position-similarity.png"]
    assert all(path.stat().st_size > 5000 for path in (tmp_path / "figures").iterdir())

"""im2col: three ways to cut patches give one tensor, and the projection is a Conv2d."""

import numpy as np
import pytest

import minivit
from minivit import backend, ops


def loop_im2col(x, p, stride):
    """The definition, with explicit loops: patch (r, c) = x[:, :, r*s : r*s+p, c*s : c*s+p]."""
    B, C, H, W = x.shape
    rows, cols = (H - p) // stride + 1, (W - p) // stride + 1
    out = np.empty((B, rows * cols, C * p * p))
    for r in range(rows):
        for c in range(cols):
            out[:, r * cols + c] = x[:, :, r * stride:r * stride + p, c * stride:c * stride + p].reshape(B, -1)
    return out


@pytest.mark.parametrize("size,p,stride", [(8, 4, 4), (12, 3, 3), (10, 4, 2), (11, 3, 2), (9, 3, 1)])
def test_im2col_matches_the_definition(size, p, stride):
    x = np.random.default_rng(0).standard_normal((2, 3, size, size))
    np.testing.assert_array_equal(ops.im2col(x, p, stride), loop_im2col(x, p, stride))


def test_reshape_path_equals_general_path():
    """With stride == patch the fast reshape/transpose path runs; the strided-slice path
    (forced here by calling it with an image one pixel too wide, then cropping) agrees."""
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 9))
    general = ops.im2col(x, 4, 4)  # W = 9 is not a multiple of 4: the general path
    tiled = ops.im2col(np.ascontiguousarray(x[:, :, :, :8]), 4, 4)
    np.testing.assert_array_equal(general, tiled)


@pytest.mark.parametrize("size,p,stride", [(8, 4, 4), (10, 4, 2), (9, 3, 1)])
def test_col2im_is_the_adjoint_of_im2col(size, p, stride):
    """<im2col(x), y> == <x, col2im(y)> for every x, y: col2im adds overlapping copies."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, size, size))
    y = rng.standard_normal(ops.im2col(x, p, stride).shape)
    lhs = np.sum(ops.im2col(x, p, stride) * y)
    rhs = np.sum(x * ops.col2im(y, x.shape, p, stride))
    assert abs(lhs - rhs) < 1e-10 * abs(lhs)


@pytest.mark.parametrize("size,p,stride", [(8, 4, 4), (10, 4, 2), (15, 5, 5)])
def test_patch_projection_equals_conv2d(size, p, stride):
    torch = pytest.importorskip("torch")
    config = minivit.ViTConfig(image_size=size, patch_size=p, patch_stride=stride, hidden_size=6,
                               num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                               num_labels=2)
    model = minivit.ViTForImageClassification(config, dtype="float64")
    patch_embeddings = model.embeddings.patch_embeddings
    x = np.random.default_rng(0).standard_normal((2, 3, size, size))
    ours = patch_embeddings.forward(backend.asarray(x))

    conv = torch.nn.Conv2d(3, 6, kernel_size=p, stride=stride).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(backend.to_numpy(patch_embeddings.projection.weight.data)))
        conv.bias.copy_(torch.tensor(backend.to_numpy(patch_embeddings.projection.bias.data)))
    reference = conv(torch.tensor(x)).flatten(2).transpose(1, 2).detach().numpy()
    np.testing.assert_allclose(backend.to_numpy(ours), reference, atol=1e-12)


def test_patch_projection_equals_an_explicit_convolution():
    """The same without torch: a convolution written as a sum over kernel offsets."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 6, 6))
    weight = rng.standard_normal((5, 2, 2, 2))
    out = np.zeros((1, 5, 3, 3))
    for r in range(3):
        for c in range(3):
            window = x[0, :, 2 * r:2 * r + 2, 2 * c:2 * c + 2]
            out[0, :, r, c] = np.tensordot(weight, window, axes=([1, 2, 3], [0, 1, 2]))
    cols = ops.im2col(x, 2, 2)
    np.testing.assert_allclose(cols @ weight.reshape(5, -1).T, out.reshape(1, 5, 9).transpose(0, 2, 1))

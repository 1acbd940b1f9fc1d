"""Solutions to the lessons' exercises. The lessons use them when MINIVIT_SOLUTIONS=1.

Try each exercise before you read its solution: the check cell under it tells you
whether your version is right.
"""

import numpy as np


# Lesson 1
def patches_by_reshape(x, patch_size):
    B, C, H, W = x.shape
    P = patch_size
    grid = x.reshape(B, C, H // P, P, W // P, P)
    grid = grid.transpose(0, 2, 4, 1, 3, 5)  # (B, H/P, W/P, C, P, P)
    return grid.reshape(B, (H // P) * (W // P), C * P * P)


# Lesson 2
def projection_backward(dout, cache):
    patches, weight = cache
    K, D = weight.shape
    dpatches = dout @ weight.T
    dweight = patches.reshape(-1, K).T @ dout.reshape(-1, D)
    dbias = dout.reshape(-1, D).sum(axis=0)
    return dpatches, dweight, dbias


def col2im_by_loops(dcols, image_shape, patch_size, stride):
    B, C, H, W = image_shape
    P = patch_size
    grid = (H - P) // stride + 1
    dx = np.zeros(image_shape)
    for r in range(grid):
        for c in range(grid):
            n = r * grid + c
            dx[:, :, r * stride:r * stride + P, c * stride:c * stride + P] += dcols[:, n].reshape(B, C, P, P)
    return dx


# Lesson 3
def cls_concat_backward(dout, batch_size):
    return dout[:, 1:, :], dout[:, :1, :].sum(axis=0, keepdims=True)


# Lesson 4
def softmax_backward(dprobs, probs):
    return probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))


def attention_backward(dout, cache):
    q, k, v, probs, scale = cache
    dv = probs.swapaxes(-1, -2) @ dout
    dprobs = dout @ v.swapaxes(-1, -2)
    dscores = softmax_backward(dprobs, probs) * scale
    dq = dscores @ k
    dk = dscores.swapaxes(-1, -2) @ q
    return dq, dk, dv


# Lesson 5
def layernorm_backward(dout, cache):
    xhat, rstd, gamma = cache
    axes = tuple(range(dout.ndim - 1))
    dgamma = (dout * xhat).sum(axis=axes)
    dbeta = dout.sum(axis=axes)
    dxhat = dout * gamma
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta


# Lesson 6
def parameters_per_layer(D, M, qkv_bias=True):
    layernorms = 2 * 2 * D
    attention = 4 * D * D + (3 * D if qkv_bias else 0) + D
    mlp = D * M + M + M * D + D
    return layernorms + attention + mlp


# Lesson 7
def learning_rate(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
    import math

    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


# Lesson 8
def seconds_per_call(function, repeats=5):
    import time

    from minivit import backend

    function()
    backend.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        backend.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# Lesson 9
def resize_matrix(in_size, out_size):
    import math

    from minivit.ops.interpolate import cubic_weights

    matrix = np.zeros((out_size, in_size))
    for i in range(out_size):
        x = (i + 0.5) * in_size / out_size - 0.5
        left = math.floor(x)
        for offset, weight in zip((-1, 0, 1, 2), cubic_weights(x - left)):
            matrix[i, min(max(left + offset, 0), in_size - 1)] += weight
    return matrix


def layer_decay_scale(name, num_layers, decay):
    if name.startswith("embeddings."):
        layer = 0
    elif name.startswith("encoder.layers."):
        layer = int(name.split(".")[2]) + 1
    else:
        layer = num_layers + 1
    return decay ** (num_layers + 1 - layer)


# Lesson 10
def principal_components(filters, count):
    D = filters.shape[0]
    flat = filters.reshape(D, -1)
    _, singular_values, directions = np.linalg.svd(flat - flat.mean(axis=0), full_matrices=False)
    shares = singular_values**2 / np.sum(singular_values**2)
    return directions[:count].reshape(count, *filters.shape[1:]), shares[:count]


def attention_distance(probs, distances):
    between_patches = probs[:, :, 1:, 1:]
    between_patches = between_patches / between_patches.sum(axis=-1, keepdims=True)
    return (between_patches * distances).sum(axis=-1).mean(axis=(0, 2))

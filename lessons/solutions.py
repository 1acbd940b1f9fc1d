"""Solutions to the lessons' exercises. The lessons use them when MINIVIT_SOLUTIONS=1.

Try each exercise before you read its solution: the check cell under it tells you
whether your version is right, and if not, what looks off.

The functions named after engine operations (linear_backward, softmax_backward, ...) take the
engine's arguments and caches (minivit/ops/), so they can run inside the model
(minivit.dispatch.use_mine).
"""

import math

import numpy as np

from minivit import ops
from minivit.ops import AttentionCache


# Lesson 1
def patches_by_reshape(x, patch_size):
    B, C, H, W = x.shape
    P = patch_size
    grid = x.reshape(B, C, H // P, P, W // P, P)
    grid = grid.transpose(0, 2, 4, 1, 3, 5)  # (B, H/P, W/P, C, P, P)
    return grid.reshape(B, (H // P) * (W // P), C * P * P)


# Lesson 2
def linear_backward(dout, cache):
    x, weight, has_bias = cache
    D_in, D_out = weight.shape
    dx = dout @ weight.T  # (..., D_in)
    dweight = x.reshape(-1, D_in).T @ dout.reshape(-1, D_out)  # every row used the same W: sum over rows
    dbias = dout.reshape(-1, D_out).sum(axis=0) if has_bias else None
    return dx, dweight, dbias


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
def softmax_jacobian(probs):
    return np.diag(probs) - np.outer(probs, probs)


def softmax_backward(dprobs, cache):
    probs, axis = cache
    return probs * (dprobs - (dprobs * probs).sum(axis=axis, keepdims=True))


def split_heads(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, T, num_heads, D // num_heads).transpose(0, 2, 1, 3)


def attention_forward(q, k, v, dropout_p=0.0, rng=None, training=False):
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = q @ k.swapaxes(-1, -2) * scale  # (B, H, T, T)
    probs, _ = ops.softmax_forward(scores, -1)  # each row sums to 1
    dropped, dropout_mask = ops.dropout_forward(probs, dropout_p, rng, training)
    return dropped @ v, AttentionCache(q, k, v, scale, probs, dropout_mask)


def multi_head_attention(x, q_weight, q_bias, k_weight, k_bias, v_weight, v_bias, o_weight, o_bias, num_heads):
    q = split_heads(x @ q_weight + q_bias, num_heads)  # (B, H, T, d)
    k = split_heads(x @ k_weight + k_bias, num_heads)
    v = split_heads(x @ v_weight + v_bias, num_heads)
    heads, _ = attention_forward(q, k, v)
    B, H, T, d = heads.shape
    merged = heads.transpose(0, 2, 1, 3).reshape(B, T, H * d)
    return merged @ o_weight + o_bias


def attention_backward(dout, cache):
    q, k, v, scale, probs, dropout_mask = cache
    dropped = probs if dropout_mask is None else probs * dropout_mask
    dv = dropped.swapaxes(-1, -2) @ dout
    dprobs = dout @ v.swapaxes(-1, -2)
    if dropout_mask is not None:
        dprobs = dprobs * dropout_mask
    dscores = softmax_backward(dprobs, (probs, -1)) * scale
    dq = dscores @ k
    dk = dscores.swapaxes(-1, -2) @ q
    return dq, dk, dv


# Lesson 5
def layernorm_backward_by_graph(dout, x, gamma, eps):
    D = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * rstd
    sum_axes = tuple(range(x.ndim - 1))
    dgamma = (dout * xhat).sum(axis=sum_axes)
    dbeta = dout.sum(axis=sum_axes)
    dxhat = dout * gamma
    dvar = (dxhat * (x - mu)).sum(axis=-1, keepdims=True) * -0.5 * rstd**3
    dmean = (-dxhat * rstd).sum(axis=-1, keepdims=True) + dvar * (-2 * (x - mu)).mean(axis=-1, keepdims=True)
    dx = dxhat * rstd + dvar * 2 * (x - mu) / D + dmean / D
    return {"dgamma": dgamma, "dbeta": dbeta, "dxhat": dxhat, "dvar": dvar, "dmean": dmean, "dx": dx}


def layernorm_backward(dout, cache):
    xhat, rstd, gamma = cache
    D = dout.shape[-1]
    dgamma = (dout * xhat).reshape(-1, D).sum(axis=0)
    dbeta = dout.reshape(-1, D).sum(axis=0)
    dxhat = dout * gamma
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta


def encoder_layer_backward(dout, cache):
    g = {}
    # second residual: out = h + fc2(gelu(fc1(LN2(h)))); the MLP branch first
    g["dgelu_out"], g["dfc2_weight"], g["dfc2_bias"] = ops.linear_backward(dout, cache["fc2"])
    g["dfc1_out"] = ops.gelu_backward(g["dgelu_out"], cache["gelu"])
    g["dln2_out"], g["dfc1_weight"], g["dfc1_bias"] = ops.linear_backward(g["dfc1_out"], cache["fc1"])
    dbranch, g["dln2_gamma"], g["dln2_beta"] = ops.layernorm_backward(g["dln2_out"], cache["ln2"])
    g["dh"] = dout + dbranch  # the fork: the skip path's gradient plus the branch's
    # first residual: h = x + o_proj(attention(...)); the attention branch
    dmerged, g["do_weight"], g["do_bias"] = ops.linear_backward(g["dh"], cache["o"])
    g["dcontext"] = ops.split_heads(dmerged, cache["num_heads"])  # the inverse of merge_heads
    g["dq"], g["dk"], g["dv"] = ops.attention_backward(g["dcontext"], cache["attention"])
    g["dqkv"] = np.concatenate([ops.merge_heads(g[n]) for n in ("dq", "dk", "dv")], axis=-1)  # packed again
    g["dln1_out"], g["dqkv_weight"], g["dqkv_bias"] = ops.linear_backward(g["dqkv"], cache["qkv"])
    dbranch, g["dln1_gamma"], g["dln1_beta"] = ops.layernorm_backward(g["dln1_out"], cache["ln1"])
    g["dx"] = g["dh"] + dbranch
    return g


# Lesson 6
def parameters_per_layer(D, M, qkv_bias=True):
    layernorms = 2 * 2 * D
    attention = 4 * D * D + (3 * D if qkv_bias else 0) + D
    mlp = D * M + M + M * D + D
    return layernorms + attention + mlp


def cross_entropy_forward(logits, targets, label_smoothing=0.0):
    B, K = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)  # log-sum-exp: exp never overflows
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (B, K)
    q = np.eye(K)[targets] if targets.ndim == 1 else targets  # class labels, or probabilities (mixup)
    q = (1 - label_smoothing) * q + label_smoothing / K
    return -(q * log_probs).sum() / B, (log_probs, q)


def cross_entropy_backward(dloss, cache):
    log_probs, q = cache
    return (np.exp(log_probs) - q) * dloss / log_probs.shape[0]  # (p - q) / B


# Lesson 7
def init_std(fan_in):
    return 1.0 / math.sqrt(fan_in)


def bias_correction(step, beta):
    return 1.0 - beta**step


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    param = param * (1.0 - lr * weight_decay)  # decoupled: not through the gradient
    exp_avg = beta1 * exp_avg + (1.0 - beta1) * grad
    exp_avg_sq = beta2 * exp_avg_sq + (1.0 - beta2) * grad * grad
    m_hat = exp_avg / bias_correction(step, beta1)
    v_hat = exp_avg_sq / bias_correction(step, beta2)
    param = param - lr * m_hat / (np.sqrt(v_hat) + eps)
    return param, exp_avg, exp_avg_sq


def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + h
        f_plus = f()
        x[index] = original - h
        f_minus = f()
        x[index] = original  # put it back
        grad[index] = (f_plus - f_minus) / (2 * h)
    return grad


def train_step(model, optimizer, images, labels):
    from minivit import dispatch

    optimizer.zero_grad()  # the gradients of the last step are spent
    loss, cache = dispatch.cross_entropy_forward(model.forward(images), labels)
    model.backward(dispatch.cross_entropy_backward(1.0, cache))  # adds into every parameter's .grad
    optimizer.step()
    return loss


# Lesson 8
def learning_rate(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


# Lesson 9
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


def train_steps(model, optimizer, images, labels, steps, read_every):
    from minivit import backend
    from minivit.ops import cross_entropy_backward, cross_entropy_forward

    losses, pending = [], []
    for step in range(steps):
        optimizer.zero_grad()
        loss, cache = cross_entropy_forward(model.forward(images), labels)
        model.backward(cross_entropy_backward(1.0, cache))
        optimizer.step()
        pending.append(loss)  # stays on the device: no waiting here
        if len(pending) == read_every or step == steps - 1:
            losses += [float(value) for value in backend.to_numpy(backend.xp.stack(pending))]  # one copy
            pending = []
    return losses


def gelu_kernel_parts():
    return {"in_params": "T x", "out_params": "T y",
            "operation": "y = x * normcdf(x)",  # Phi(x) = (1 + erf(x / sqrt 2)) / 2 is CUDA's normcdf
            "name": "gelu_exact_forward"}


# Lesson 10
def resize_matrix(in_size, out_size):
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


# Lesson 11
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


# Lesson 12
def mean_of_shards(gradients, sizes):
    total = sum(sizes)
    return sum(size / total * gradient for gradient, size in zip(gradients, sizes))


def allreduce_through_rank_0(comm, array):
    if comm.rank == 0:
        total = np.array(array, copy=True)
        for source in range(1, comm.size):
            total = total + comm.recv(source)
        for dest in range(1, comm.size):
            comm.send(total, dest)
        return total
    comm.send(array, 0)
    return comm.recv(0)


def ring_allreduce(comm, array):
    N, r = comm.size, comm.rank
    chunks = [chunk.copy() for chunk in np.array_split(np.asarray(array), N)]
    right, left = (r + 1) % N, (r - 1) % N
    for s in range(N - 1):  # reduce-scatter: rank r ends with the whole sum of chunk (r + 1) % N
        chunks[(r - s - 1) % N] = chunks[(r - s - 1) % N] + comm.sendrecv(chunks[(r - s) % N], right, left)
    for s in range(N - 1):  # all-gather: the finished chunks go around the ring
        chunks[(r - s) % N] = comm.sendrecv(chunks[(r + 1 - s) % N], right, left)
    return np.concatenate(chunks)


def ring_allreduce_seconds(num_bytes, ranks, latency, bandwidth):
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) * (latency + num_bytes / ranks / bandwidth)

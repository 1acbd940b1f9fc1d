"""Optimizer steps match PyTorch's, the schedule has its shape, clipping caps the norm."""

import math

import numpy as np
import pytest

from minivit import optim
from minivit.nn import Parameter

NAMES = ["layer.weight", "layer.bias", "layernorm.weight", "embeddings.cls_token"]


def make_pair(seed=0):
    """The same four tensors as minivit Parameters and as torch tensors."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    shapes = [(4, 3), (3,), (3,), (1, 1, 3)]
    values = [rng.standard_normal(shape) for shape in shapes]
    ours = [(name, Parameter(v.copy())) for name, v in zip(NAMES, values)]
    theirs = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    return ours, theirs, torch


def gradients(step, shapes, seed=1):
    rng = np.random.default_rng(seed + step)
    return [rng.standard_normal(shape) for shape in shapes]


def run_steps(our_opt, ours, torch_opt, theirs, steps=6, torch_schedule=None, lrs=None):
    for step in range(steps):
        grads = gradients(step, [p.data.shape for _, p in ours])
        for (_, p), t, g in zip(ours, theirs, grads):
            p.grad[...] = g
            t.grad = __import__("torch").tensor(g.copy())
        if lrs is not None:
            our_opt.lr = lrs[step]
            for group in torch_opt.param_groups:
                group["lr"] = lrs[step]
        our_opt.step()
        torch_opt.step()
        for (name, p), t in zip(ours, theirs):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-12, atol=1e-14,
                                       err_msg=f"{name} after step {step + 1}")


def test_adamw_matches_pytorch_with_decoupled_decay_groups():
    ours, theirs, torch = make_pair()
    decay = [t for name, t in zip(NAMES, theirs) if not optim.no_weight_decay(name)]
    no_decay = [t for name, t in zip(NAMES, theirs) if optim.no_weight_decay(name)]
    torch_opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    our_opt = optim.AdamW(ours, lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    lrs = [optim.warmup_cosine(s, 6, 2, 0.01) for s in range(6)]
    run_steps(our_opt, ours, torch_opt, theirs, lrs=lrs)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_matches_pytorch(nesterov):
    ours, theirs, torch = make_pair()
    decay = [t for name, t in zip(NAMES, theirs) if not optim.no_weight_decay(name)]
    no_decay = [t for name, t in zip(NAMES, theirs) if optim.no_weight_decay(name)]
    torch_opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=0.1, momentum=0.9, nesterov=nesterov)
    our_opt = optim.SGD(ours, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=nesterov)
    run_steps(our_opt, ours, torch_opt, theirs)


def test_which_parameters_decay():
    assert not optim.no_weight_decay("encoder.layers.0.mlp.fc1.weight")
    assert not optim.no_weight_decay("embeddings.patch_embeddings.projection.weight")
    for name in ["encoder.layers.0.mlp.fc1.bias", "encoder.layers.3.layernorm_before.weight",
                 "layernorm.weight", "embeddings.cls_token", "embeddings.position_embeddings"]:
        assert optim.no_weight_decay(name), name


def test_warmup_then_cosine():
    lrs = [optim.warmup_cosine(s, total_steps=100, warmup_steps=10, base_lr=1.0) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5)
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_warmup_cosine_matches_its_formula_with_min_lr():
    lr = optim.warmup_cosine(30, total_steps=50, warmup_steps=10, base_lr=1.0, min_lr=0.1)
    assert lr == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))


def test_clip_grad_norm():
    params = [Parameter(np.zeros(3)), Parameter(np.zeros(4))]
    params[0].grad[...] = [3.0, 0.0, 0.0]
    params[1].grad[...] = [0.0, 4.0, 0.0, 0.0]
    norm = optim.clip_grad_norm(params, max_norm=1.0)
    assert float(norm) == pytest.approx(5.0)
    clipped = math.sqrt(sum(float((p.grad**2).sum()) for p in params))
    assert clipped == pytest.approx(1.0, rel=1e-5)
    optim.clip_grad_norm(params, max_norm=10.0)  # under the cap: unchanged
    assert math.sqrt(sum(float((p.grad**2).sum()) for p in params)) == pytest.approx(1.0, rel=1e-5)


def test_optimizer_state_round_trip():
    params = [("w", Parameter(np.ones(3)))]
    opt = optim.AdamW(params, lr=0.1)
    params[0][1].grad[...] = 1.0
    opt.step()
    state = opt.state_dict()
    fresh = optim.AdamW([("w", Parameter(np.ones(3)))], lr=0.1)
    fresh.load_state_dict(state)
    assert fresh.step_count == 1
    np.testing.assert_array_equal(fresh.exp_avg["w"], opt.exp_avg["w"])
    with pytest.raises(ValueError, match="has no 'exp_avg/v'"):
        optim.AdamW([("v", Parameter(np.ones(3)))]).load_state_dict(state)

"""The seam: which implementation runs (the kernels' registry), the hook, and a learner's functions inside the
engine (use_mine)."""

import inspect

import numpy as np
import pytest

import minivit
from minivit import dispatch, ops
from minivit.kernels import registry
from minivit.ops import cross_entropy_backward, cross_entropy_forward

SMALL = dict(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
             intermediate_size=12, num_labels=3)


def step(model, seed=0):
    x = np.random.default_rng(seed).standard_normal((2, 3, 8, 8))
    model.zero_grad()
    loss, cache = cross_entropy_forward(model.forward(x), np.array([0, 2]))
    model.backward(cross_entropy_backward(1.0, cache))
    return float(loss)


def counting(function, calls):
    def counted(*args, **kwargs):
        calls.append(function.__name__)
        return function(*args, **kwargs)
    return counted


def test_every_dispatched_name_has_a_reference():
    assert dispatch.OPERATIONS is ops.OPERATIONS and len(ops.OPERATIONS) >= 37
    for name in ops.OPERATIONS:
        assert dispatch.reference(name) is getattr(ops, name) and callable(getattr(ops, name)), name
        assert getattr(dispatch, name).__name__ == name
    assert set(ops.OPERATIONS) | set(ops.HELPERS) == set(ops.__all__)  # every public name is one or the other


def test_the_environment_chooses_the_mode(monkeypatch):
    import importlib
    import subprocess
    import sys

    code = "from minivit import dispatch; print(dispatch.mode)"
    for value in ("reference", "fast"):
        out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "MINIVIT_KERNELS": value},
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == value
    bad = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "MINIVIT_KERNELS": "quick"},
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "MINIVIT_KERNELS='quick'" in bad.stderr
    importlib.reload  # noqa: B018 (the module is not reloaded here: the subprocesses show the reading)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="choose one of fast, reference"):
        dispatch.use("quick")


def test_the_learners_function_runs_inside_the_model_and_composites():
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**SMALL), dtype="float64")
    calls = []
    with dispatch.use_mine(softmax_forward=counting(ops.softmax_forward, calls),
                           layernorm_backward=counting(ops.layernorm_backward, calls)):
        step(model)
        assert dispatch.mine().keys() == {"softmax_forward", "layernorm_backward"}
    # attention (a reference composite) called the learner's softmax; the model the learner's LayerNorm backward
    assert calls.count("softmax_forward") == 1  # one layer, one attention
    assert calls.count("layernorm_backward") == 3  # before, after, final
    calls.clear()
    step(model)  # outside the block: the engine's own again
    assert calls == [] and dispatch.mine() == {}


def test_the_learners_version_gives_the_engines_result_when_right():
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**SMALL), dtype="float64")
    expected = step(model)
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}

    def my_softmax_backward(dprobs, cache):
        probs, axis = cache
        return probs * (dprobs - (dprobs * probs).sum(axis=axis, keepdims=True))

    with dispatch.use_mine(softmax_backward=my_softmax_backward):
        assert step(model) == pytest.approx(expected, abs=1e-12)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name], atol=1e-12, err_msg=name)


def test_a_wrong_learner_function_changes_the_gradients():
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**SMALL), dtype="float64")
    step(model)
    right = model.embeddings.patch_embeddings.projection.weight.grad.copy()
    with dispatch.use_mine(softmax_backward=lambda dprobs, cache: cache[0] * dprobs):  # the sum term dropped
        step(model)
    assert not np.allclose(model.embeddings.patch_embeddings.projection.weight.grad, right)


def test_fast_kernels_are_off_while_a_learners_function_is_in():
    pytest.importorskip("numba")
    assert dispatch.implementation("gelu_forward") is not ops.gelu_forward
    with dispatch.use_mine(softmax_backward=ops.softmax_backward):
        assert dispatch.implementation("gelu_forward") is ops.gelu_forward
    assert dispatch.implementation("gelu_forward") is not ops.gelu_forward


def test_a_plain_call_stays_until_reset():
    mine = counting(ops.gelu_forward, [])
    dispatch.use_mine(gelu_forward=mine)
    try:
        assert dispatch.implementation("gelu_forward") is mine
    finally:
        dispatch.use_mine()
    assert dispatch.mine() == {}
    import minivit.ops.attention as attention_module
    assert attention_module.softmax_forward is ops.softmax_forward  # every rebinding undone


def test_the_package_keeps_the_engines_function_for_checks():
    with dispatch.use_mine(softmax_backward=lambda dprobs, cache: dprobs):
        assert ops.softmax_backward.__module__ == "minivit.ops.softmax"  # the package's name: the reference
        assert dispatch.reference("softmax_backward") is ops.softmax_backward


def test_the_learners_attention_reaches_the_model_through_all_heads():
    """attention_heads_forward/backward (what the model runs) call attention_forward/backward in
    their own module: the learner's versions must be the ones they call."""
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**SMALL), dtype="float64")
    calls = []
    with dispatch.use_mine(attention_forward=counting(ops.attention_forward, calls),
                           attention_backward=counting(ops.attention_backward, calls)):
        step(model)
    assert calls == ["attention_forward", "attention_backward"]
    import minivit.ops.attention as attention_module
    assert attention_module.attention_forward is ops.attention_forward  # put back


def test_unknown_names_and_wrong_signatures_are_refused_clearly():
    with pytest.raises(ValueError, match="'softmax_backwards' is not one of the engine's operations"):
        dispatch.use_mine(softmax_backwards=ops.softmax_backward)
    with pytest.raises(TypeError, match=r"your softmax_backward\(dprobs\) does not match the engine's "
                                        r"softmax_backward\(dprobs, cache\)"):
        dispatch.use_mine(softmax_backward=lambda dprobs: dprobs)
    with pytest.raises(TypeError, match="must be a function"):
        dispatch.use_mine(softmax_backward=3)
    assert dispatch.mine() == {}


# --- the kernels' registry ---------------------------------------------------------------------------------


def test_every_registered_kernel_names_an_operation_and_takes_its_arguments():
    for device in registry.PACKAGES:
        kernels = registry.kernels(device)
        if device == "cpu" and not kernels:
            continue  # numba missing: no CPU kernels load
        assert len(kernels) >= 10, device
        for name, kernel in kernels.items():
            assert name in ops.OPERATIONS, f"{device}: {name} is no operation of minivit.ops"
            assert kernel.__name__ == name, f"{device}: {kernel.__qualname__} registered for {name}"
            assert registry.device_of(kernel.__module__) == device, f"{name} from {kernel.__module__}"
            assert [(p.name, p.default) for p in inspect.signature(kernel).parameters.values()] == \
                [(p.name, p.default) for p in inspect.signature(ops.__dict__[name]).parameters.values()], name
            assert f"Replaces ops.{name}" in (kernel.__doc__ or ""), name


def test_a_kernel_whose_signature_differs_is_refused_at_registration():
    with pytest.raises(TypeError, match=r"gelu_forward\(x, approximate='tanh'\) cannot replace "
                                        r"minivit.ops.gelu.gelu_forward\(x, approximate='none'\)"):
        @registry.replaces("gelu_forward", device="gpu")
        def gelu_forward(x, approximate="tanh"):  # another default
            return ops.gelu_forward(x, approximate)
    with pytest.raises(TypeError, match="cannot replace"):
        @registry.replaces("softmax_backward", device="gpu")
        def softmax_backward(dout, cache):  # another argument name
            return ops.softmax_backward(dout, cache)
    with pytest.raises(ValueError, match="minivit.ops has no operation 'gelu_forwards'"):
        registry.replaces("gelu_forwards", device="gpu")(ops.gelu_forward)
    with pytest.raises(ValueError, match="give the device it runs on"):
        registry.replaces("gelu_forward")(ops.gelu_forward)  # minivit.ops: in no kernel package
    assert registry.kernels("gpu")["gelu_forward"].__module__ == "minivit.kernels.gpu.gelu"  # nothing replaced


def test_a_second_kernel_for_one_operation_is_refused():
    registry.kernels("gpu")
    with pytest.raises(ValueError, match="minivit.kernels.gpu.layernorm.layernorm_forward already replaces it"):
        @registry.replaces("layernorm_forward", device="gpu")
        def layernorm_forward(x, gamma, beta, eps: float = 1e-12):
            return ops.layernorm_forward(x, gamma, beta, eps)


def test_registering_a_kernel_is_all_it_takes_for_dispatch_to_run_it():
    """A toy kernel for an operation that has none: registered, the model runs it; removed, the reference."""
    assert "residual_forward" not in registry.kernels("cpu")
    calls = []

    @registry.replaces("residual_forward", device="cpu")
    def residual_forward(skip, branch):
        calls.append(skip.shape)
        return ops.residual_forward(skip, branch)

    try:
        assert dispatch.implementation("residual_forward") is residual_forward
        model = minivit.ViTForImageClassification(minivit.ViTConfig(**SMALL), dtype="float64")
        step(model)
        assert len(calls) == 2  # one layer: the residual after attention and after the MLP
        previous = dispatch.use("reference")
        try:
            assert dispatch.implementation("residual_forward") is ops.residual_forward
        finally:
            dispatch.use(previous)
    finally:
        registry.remove("residual_forward", "cpu")
    assert dispatch.implementation("residual_forward") is ops.residual_forward


# --- the hook ----------------------------------------------------------------------------------------------


def test_a_wrapper_sees_each_dispatched_call_once_and_leaves_with_its_block():
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**SMALL), dtype="float64")
    expected = step(model)
    seen = []

    def record(name, function):
        def run(*args, **kwargs):
            seen.append(name)
            return function(*args, **kwargs)
        return run

    with dispatch.wrap(record):
        assert step(model) == pytest.approx(expected, abs=1e-12)
    assert seen.count("attention_heads_forward") == 1 and seen.count("layernorm_forward") == 3
    assert "softmax_forward" not in seen  # attention's inner call is not made through the seam: not counted
    seen.clear()
    step(model)
    assert seen == []
    with dispatch.wrap(record, names="gelu_forward"):
        step(model)
    assert seen == ["gelu_forward"]
    with pytest.raises(ValueError, match="'gelu' is not one of the engine's operations"):
        dispatch.wrap(record, names=["gelu"])


def test_a_profilers_wrapper_sees_the_learners_function():
    seen = []
    mine = counting(ops.gelu_forward, [])
    with dispatch.wrap(lambda name, function: seen.append(function) or function, names="gelu_forward"):
        with dispatch.use_mine(gelu_forward=mine):
            dispatch.gelu_forward(np.ones(3))
        dispatch.gelu_forward(np.ones(3))
    assert seen[0] is mine and seen[1] is not mine

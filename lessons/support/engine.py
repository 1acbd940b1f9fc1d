"""Your functions inside the engine.

When an exercise that writes one of the engine's operations (linear_backward, softmax_backward,
attention_forward, ...) passes its check, its source is kept in lessons/mine/<name>.py.
``my_functions()`` reads them back, and ``use_mine(**my_functions())`` (minivit.dispatch.use_mine)
runs the whole model on them: lesson 6 checks and overfits with your code, lesson 8 trains with it.
Each function is probed first (``probe_engine_function``): one that returns other shapes than the
engine's, or hands the work to the engine's own function, is refused with the reason.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import textwrap

import numpy as np

from . import settings
from .diagnosis import NotYet

# The exercises whose functions the engine can run, by the engine's name, and the lesson that writes each.
ENGINE_EXERCISES = {
    "linear_backward": 2,
    "cls_concat_backward": 3,
    "softmax_backward": 4,
    "attention_forward": 4,
    "attention_backward": 4,
    "layernorm_backward": 5,
    "cross_entropy_forward": 6,
    "cross_entropy_backward": 6,
}


def use_mine(**functions):
    """minivit.dispatch.use_mine: run the engine on your functions (a ``with`` block, or a plain call
    that lasts until ``use_mine()``); the fast kernels are off while they are in.

    Each function is first run once on small probe inputs (``probe_engine_function``): one that
    returns values of other shapes than the engine's, or that hands the work to the engine's own
    function, is refused here, with the reason, before the model runs on it."""
    from minivit import dispatch

    for name, function in functions.items():
        try:
            problem = probe_engine_function(name, function)
        except NotImplementedError as error:  # the exercise's placeholder: say which exercise the cell waits for
            raise NotYet(f"this cell waits for {str(error).split(':')[0] or 'an exercise'} ({name})",
                         [f"your {name} is not written yet ({error}): write it, run its check, then this "
                          "cell"]) from None
        if problem:
            raise ValueError(f"use_mine: your {name} cannot go into the engine: {problem}")
    return dispatch.use_mine(**functions)


# The probe inputs of each engine function a lesson writes: (arguments of the reference call), made
# from a seeded generator, float64. A backward's cache comes from the engine's forward. linear_backward
# is probed on 2-D and on 3-D inputs (the engine calls it on both).
def _probe_calls(name: str):
    from minivit import backend, ops

    rng = np.random.default_rng(0)

    def normal(*shape):
        return backend.asarray(rng.standard_normal(shape))

    if name == "linear_backward":
        calls = []
        for x_shape in ((6, 4), (2, 3, 4)):
            out, cache = ops.linear_forward(normal(*x_shape), normal(4, 5), normal(5))
            calls.append((normal(*out.shape), cache))
        return calls
    if name == "cls_concat_backward":
        return [(normal(2, 5, 4), 2)]
    if name == "softmax_backward":
        out, cache = ops.softmax_forward(normal(2, 3, 5), -1)
        return [(normal(*out.shape), cache)]
    if name == "attention_forward":
        return [(normal(2, 2, 5, 4), normal(2, 2, 5, 4), normal(2, 2, 5, 4))]
    if name == "attention_backward":
        out, cache = ops.attention_forward(normal(2, 2, 5, 4), normal(2, 2, 5, 4), normal(2, 2, 5, 4))
        return [(normal(*out.shape), cache)]
    if name == "layernorm_backward":
        out, cache = ops.layernorm_forward(normal(2, 3, 5), normal(5), normal(5), 1e-5)
        return [(normal(*out.shape), cache)]
    if name == "cross_entropy_forward":
        return [(normal(4, 3), backend.asarray(np.array([0, 2, 1, 2]))),
                (normal(4, 3), backend.asarray(np.array([0, 2, 1, 2])), 0.1)]
    if name == "cross_entropy_backward":
        _, cache = ops.cross_entropy_forward(normal(4, 3), backend.asarray(np.array([0, 2, 1, 2])), 0.1)
        return [(1.0, cache)]
    return []


def _structure_problem(yours, expected, where: str) -> str:
    """'' when ``yours`` has the structure and shapes of ``expected`` (tuples, arrays, numbers)."""
    if expected is None:
        return "" if yours is None else f"{where} is {type(yours).__name__}, expected None"
    if isinstance(expected, tuple):
        if not isinstance(yours, (tuple, list)) or len(yours) != len(expected):
            count = len(yours) if isinstance(yours, (tuple, list)) else 1
            return f"{where}: you return {count} value(s), the engine's returns {len(expected)}"
        for index, (mine, theirs) in enumerate(zip(yours, expected)):
            problem = _structure_problem(mine, theirs, f"{where}[{index}]")
            if problem:
                return problem
        return ""
    if hasattr(expected, "shape"):
        if yours is None:
            return f"{where} is None, expected an array of shape {tuple(expected.shape)}"
        shape = tuple(yours.shape) if hasattr(yours, "shape") else np.shape(yours)
        if shape != tuple(expected.shape):
            return (f"{where} has shape {shape}, the engine's has shape {tuple(expected.shape)}: the engine "
                    "adds it to a tensor of that shape (a gradient has the shape of what it is the gradient of)")
    return ""


def _cell_holds(cell, value) -> bool:
    try:
        return cell.cell_contents is value
    except ValueError:  # an empty cell
        return False


def probe_engine_function(name: str, function) -> str:
    """Why ``function`` cannot replace the engine's ``name``, or '' when it can.

    It is run on the probe inputs of ``_probe_calls`` beside the engine's reference, with the
    reference swapped for a sentinel wherever your code could reach it (``minivit.ops.NAME``, the
    module defining it, any name in your function's module bound to it, any name it closes over):
    a function that calls the engine's own ``name`` does none of the work itself, and the lessons
    would count the engine's code as yours. Then the structure and shapes of what it returns are
    compared with the reference's, on every probe (2-D and 3-D inputs for linear_backward)."""
    from minivit import backend

    previous = backend.name
    backend.use("numpy")  # the probe runs on the host, whatever the lesson's backend (the simulated GPU's too)
    try:
        return _probe(name, function)
    finally:
        backend.use(previous)


def _probe(name: str, function) -> str:
    import sys

    from minivit import dispatch, ops

    calls = _probe_calls(name)
    if not calls:
        return ""
    original = dispatch.reference(name)
    called = []

    def sentinel(*args, **kwargs):
        called.append(True)
        return original(*args, **kwargs)

    learner = inspect.unwrap(function)
    namespaces = [vars(ops), vars(sys.modules[original.__module__]), getattr(learner, "__globals__", {})]
    swapped = [(space, key) for space in namespaces for key, value in list(space.items()) if value is original]
    cells = [cell for cell in (getattr(learner, "__closure__", None) or ())
             if _cell_holds(cell, original)]  # a name bound in an enclosing function
    for space, key in swapped:
        space[key] = sentinel
    for cell in cells:
        cell.cell_contents = sentinel
    try:
        results = []
        for arguments in calls:
            try:
                results.append(learner(*arguments))
            except NotImplementedError:
                raise  # not written yet: use_mine says which exercise the cell waits for
            except Exception as error:  # noqa: BLE001 (the learner's error, reported by name)
                return (f"on a probe input it raised {type(error).__name__}: {error} (shapes "
                        f"{[tuple(a.shape) for a in arguments if hasattr(a, 'shape')]})")
    finally:
        for space, key in swapped:
            space[key] = original
        for cell in cells:
            cell.cell_contents = original
    if called:
        return (f"it calls the engine's own {name} (minivit.ops.{name}), so the engine would run its own "
                "code under your name. Write the computation itself.")
    for arguments, yours in zip(calls, results):
        problem = _structure_problem(yours, original(*arguments), "what it returns")
        if problem:
            cache = arguments[1] if len(arguments) > 1 and isinstance(arguments[1], tuple) else ()
            shapes = [tuple(a.shape) for a in (*arguments[:1], *cache) if hasattr(a, "shape")]
            return f"{problem} (on a probe whose arrays, the cache's included, have shapes {shapes})"
    return ""


def remember(function, name: str | None = None) -> None:
    """Keep the source of a learner's passing engine function in lessons/mine/<name>.py.

    Only functions written in a notebook (module ``__main__``) are kept: the solutions and the
    tests' functions never overwrite a learner's work."""
    name = name or function.__name__
    if getattr(function, "__module__", None) != "__main__" or name not in ENGINE_EXERCISES:
        return
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return
    lines = [line for line in source.splitlines() if not line.lstrip().startswith("@exercise")]
    settings.MINE.mkdir(exist_ok=True)
    (settings.MINE / f"{name}.py").write_text(
        f"# Your {name} from lesson {ENGINE_EXERCISES[name]}, kept when it passed its check.\n"
        + "\n".join(lines) + "\n")
    print(f"  kept in lessons/mine/{name}.py: lesson 6 and lesson 8 run the engine on it")


def _mine_namespace() -> dict:
    """What a kept function may use by name, as in the lessons: np, math, backend, ops and its names."""
    import math

    import minivit
    from minivit import backend, ops
    from minivit.ops.attention import AttentionCache

    namespace = {"np": np, "math": math, "minivit": minivit, "backend": backend, "ops": ops,
                 "AttentionCache": AttentionCache}
    namespace.update({name: getattr(ops, name) for name in ops.__all__})
    return namespace


def my_functions(names=None, verbose: bool = True) -> dict:
    """Your engine functions, by name: the solutions with MINIVIT_SOLUTIONS=1, else those kept in
    lessons/mine/ (one module, so your attention_backward calls your softmax_backward)."""
    names = list(names or ENGINE_EXERCISES)
    found = {}
    if settings.SOLUTIONS:
        from .exercises import solution_of

        found = {name: solution_of(name) for name in names}
        origin = "the solutions in lessons/support/ (MINIVIT_SOLUTIONS=1)"
    else:
        namespace = _mine_namespace()
        for name in names:
            path = settings.MINE / f"{name}.py"
            if path.is_file():
                exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 (your own code)
        found = {name: namespace[name] for name in names if (settings.MINE / f"{name}.py").is_file()}
        origin = "your lessons (lessons/mine/)"
    if verbose:
        missing = [name for name in names if name not in found]
        if found:
            print(f"yours, from {origin}: " + ", ".join(f"{name} (lesson {ENGINE_EXERCISES[name]})" for name in found))
        if missing:
            print("the engine's reference (that lesson's exercise has not passed yet): " + ", ".join(missing))
    return found


class CallCounter:
    """Wraps functions to count how often the engine calls them: proof that yours ran."""

    def __init__(self, functions: dict):
        import functools

        self.calls = dict.fromkeys(functions, 0)
        self.functions = {}
        for name, function in functions.items():
            @functools.wraps(function)
            def counted(*args, _name=name, _function=function, **kwargs):
                self.calls[_name] += 1
                return _function(*args, **kwargs)

            self.functions[name] = counted

    def callers(self, name: str) -> list[str]:
        """The other counted functions whose code calls ``name`` directly (not through the engine, so
        those calls are not counted: your attention_backward calls your softmax_backward itself)."""
        import inspect

        found = []
        for other, function in self.functions.items():
            code = getattr(inspect.unwrap(function), "__code__", None)
            if other != name and code is not None and name in code.co_names and self.calls[other]:
                found.append(other)
        return found

    def __str__(self) -> str:
        parts = []
        for name, count in self.calls.items():
            callers = self.callers(name) if not count else []
            inside = (f" (by the engine: it runs inside your {' and '.join(callers)}, which "
                      f"call{'s' if len(callers) == 1 else ''} it directly)") if callers else ""
            parts.append(f"{name} {count:,d}x{inside}")
        return ", ".join(parts)


@contextlib.contextmanager
def use_my_layer(model, layer_forward, layer_backward):
    """Run every encoder layer of ``model`` on ``layer_forward(x, params, num_heads, eps) -> (out, cache)``
    and your ``layer_backward(dout, cache) -> {node: gradient}`` (lesson 5's whole layer), inside a
    ``with`` block. The layer's parameters are read from the model (q, k and v side by side, as the
    engine packs them) and your gradients are added to theirs, so the optimizer trains on them."""
    from minivit import backend

    xp = backend.xp
    layers = model.encoder.layers
    if model.config.hidden_dropout_prob or model.config.attention_probs_dropout_prob:
        raise ValueError("use_my_layer: your layer has no dropout; make the model with hidden_dropout_prob=0 "
                         "and attention_probs_dropout_prob=0.")
    pairs = {"ln1": "layernorm_before", "ln2": "layernorm_after"}

    def parameters(layer):
        attention, mlp = layer.attention, layer.mlp
        found = {f"{short}_{kind}": getattr(getattr(layer, name), attr).data
                 for short, name in pairs.items() for kind, attr in (("gamma", "weight"), ("beta", "bias"))}
        projections = (attention.q_proj, attention.k_proj, attention.v_proj)
        found["qkv_weight"] = xp.concatenate([p.weight.data for p in projections], axis=1)  # (D, 3D)
        found["qkv_bias"] = (xp.concatenate([p.bias.data for p in projections])
                             if attention.q_proj.bias is not None else None)
        for short, module in (("o", attention.o_proj), ("fc1", mlp.fc1), ("fc2", mlp.fc2)):
            found[f"{short}_weight"], found[f"{short}_bias"] = module.weight.data, module.bias.data
        return found

    def add_gradients(layer, grads):
        attention, mlp = layer.attention, layer.mlp
        for short, name in pairs.items():
            getattr(layer, name).weight.grad += grads[f"d{short}_gamma"]
            getattr(layer, name).bias.grad += grads[f"d{short}_beta"]
        D = attention.o_proj.weight.data.shape[0]
        for index, projection in enumerate((attention.q_proj, attention.k_proj, attention.v_proj)):
            projection.weight.grad += grads["dqkv_weight"][:, index * D:(index + 1) * D]
            if projection.bias is not None:
                projection.bias.grad += grads["dqkv_bias"][index * D:(index + 1) * D]
        for short, module in (("o", attention.o_proj), ("fc1", mlp.fc1), ("fc2", mlp.fc2)):
            module.weight.grad += grads[f"d{short}_weight"]
            module.bias.grad += grads[f"d{short}_bias"]

    def install(layer):
        def forward(hidden_states):
            out, cache = layer_forward(hidden_states, parameters(layer), layer.attention.num_heads,
                                       layer.layernorm_before.eps)
            layer._keep(cache)  # nothing kept inside no_grad, as the engine's layers
            return out

        def backward(dout):
            grads = layer_backward(dout, layer._pop_cache())
            add_gradients(layer, grads)
            return grads["dx"]

        layer.forward, layer.backward = forward, backward

    for layer in layers:
        install(layer)
    try:
        yield model
    finally:
        for layer in layers:
            del layer.forward, layer.backward  # the class's methods again


def speed_against_pytorch(config, batch_size: int, rounds: int = 3, steps: int = 3, mine: dict | None = None):
    """Images per second of a training step (forward, loss, backward, AdamW) and of inference, measured
    here, now: minivit as ``python -m minivit.train`` runs it (fast kernels), minivit on ``mine`` (your
    functions, through use_mine) when given, and transformers' ViT on PyTorch with the same config,
    batch and thread count when torch and transformers are installed. The sides take turns, ``rounds``
    times (a loaded machine's speed drifts); each number is the median. Uses benchmarks/timing.py,
    as benchmarks/throughput_cpu.py does. Returns {side: {"training step": images/s, "inference": images/s}}
    and prints a table (with one line instead of the PyTorch column when torch is missing)."""
    import sys

    import minivit
    from minivit import optim

    sys.path.insert(0, str(settings.REPO / "benchmarks"))
    from timing import median_seconds, minivit_step_functions

    rng = np.random.default_rng(0)
    size = config.image_size
    images = rng.standard_normal((batch_size, config.num_channels, size, size)).astype("float32")
    labels = rng.integers(0, config.num_labels, batch_size)
    model = minivit.ViTForImageClassification(config, seed=0)
    sides = {"minivit (fast kernels)": minivit_step_functions(
        model, optim.AdamW(model.named_parameters(), lr=1e-3, weight_decay=0.05), images, labels)}
    if mine:
        inference, train_step = minivit_step_functions(
            model, optim.AdamW(model.named_parameters(), lr=1e-3, weight_decay=0.05), images, labels)

        def with_mine(function):
            def run():
                with use_mine(**mine):
                    function()
            return run

        sides["minivit on your functions"] = (with_mine(inference), with_mine(train_step))
    missing = ""
    try:
        import warnings

        with warnings.catch_warnings():  # tqdm inside transformers, without ipywidgets: not the learner's concern
            warnings.filterwarnings("ignore", message="IProgress not found")
            import torch
            from transformers import ViTConfig, ViTForImageClassification

        from minivit import convert
    except ImportError as error:
        missing = f"PyTorch: not measured ({error.name} is not installed; pip install torch transformers to compare)"
    else:
        threads = int(os.environ.get("OMP_NUM_THREADS", "0")) or os.cpu_count() or 1
        torch.set_num_threads(threads)
        hf_model = ViTForImageClassification(ViTConfig(**convert.hf_config_kwargs(config)))
        hf_optimizer = torch.optim.AdamW(hf_model.parameters(), lr=1e-3, weight_decay=0.05)
        x, y = torch.from_numpy(images), torch.from_numpy(labels)

        def torch_inference():
            hf_model.eval()
            with torch.inference_mode():
                hf_model(pixel_values=x)

        def torch_train_step():
            hf_model.train()
            hf_optimizer.zero_grad()
            torch.nn.functional.cross_entropy(hf_model(pixel_values=x).logits, y).backward()
            hf_optimizer.step()

        sides["transformers' ViT on PyTorch"] = (torch_inference, torch_train_step)
    seconds = {(side, kind): [] for side in sides for kind in ("training step", "inference")}
    for _ in range(rounds):
        for side, (inference, train_step) in sides.items():
            seconds[side, "training step"].append(median_seconds(train_step, steps, 2))
            seconds[side, "inference"].append(median_seconds(inference, steps, 2))
    kinds = ("training step", "inference")
    speeds = {side: {kind: batch_size / float(np.median(seconds[side, kind])) for kind in kinds} for side in sides}
    print(f"images per second, batch {batch_size}, measured in this notebook ({rounds} rounds in turn, "
          f"{os.cpu_count()} CPU cores visible):")
    torch_side = speeds.get("transformers' ViT on PyTorch")
    for side, speed in speeds.items():
        ratios = ""
        if torch_side and side != "transformers' ViT on PyTorch":
            ratios = "   " + ", ".join(f"{speed[kind] / torch_side[kind]:.2f}x PyTorch's {kind}" for kind in speed)
        print(f"  {side:32s} training step {speed['training step']:8.1f}   inference {speed['inference']:8.1f}{ratios}")
    if missing:
        print("  " + missing)
    return speeds


@contextlib.contextmanager
def in_folder(path):
    """Run a block with ``path`` as the working folder (contextlib.chdir, which Python 3.10 lacks)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def no_grad():
    """Forwards that keep no activations (evaluation only): minivit.no_grad()."""
    import minivit

    with minivit.no_grad():
        yield

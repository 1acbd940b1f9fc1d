"""An exponential moving average of the weights (EMA), kept beside the weights that train.

After every optimizer step, with the model's flat weights ``w`` (the float32 master weights
in float16 training):

    average = decay_t * average + (1 - decay_t) * w,    decay_t = min(decay, (1 + t) / (10 + t))

where t counts the updates. The second term of the ``min`` is TensorFlow's
``ExponentialMovingAverage(num_updates=...)``: early on, when the average would still be
mostly the random initial weights, it follows the weights closely; after about
``10 / (1 - decay)`` updates the decay is ``decay`` itself. A decay of 0.999 averages over
roughly the last thousand steps.

The average is a model of its own: validation evaluates it beside the raw weights
(``ema_val_accuracy`` in metrics.jsonl), checkpoints hold it beside them (``ema/<name>``
arrays; ``python -m minivit.evaluate --weights ema`` evaluates it), and a resumed run
continues it exactly (the update count is the run's step).
"""

from __future__ import annotations

from contextlib import contextmanager

from minivit import backend


class WeightAverage:
    """The EMA of one model's flat weight buffer.

    ``flat``: the model's ``FlatParameters`` (its layout names the parts of the average);
    ``weights``: the flat array the optimizer steps (``flat.data``, or the float32 master
    weights in float16 training); ``decay`` in (0, 1).
    """

    def __init__(self, flat, weights, decay: float, updates: int = 0):
        if not 0 < decay < 1:
            raise ValueError(f"The EMA decay must be in (0, 1), such as 0.999; got {decay!r}.")
        self.flat = flat
        self.weights = weights
        self.decay = decay
        self.updates = updates
        self.average = weights.astype("float32", copy=True)  # (P,)

    def current_decay(self) -> float:
        """The decay the next update uses (smaller over the first updates; see the module docstring)."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    def update(self) -> None:
        """Move the average towards the weights as they are now (after an optimizer step)."""
        decay = self.current_decay()
        self.average *= decay
        self.average += (1.0 - decay) * self.weights.astype("float32", copy=False)
        self.updates += 1

    @contextmanager
    def in_model(self, model):
        """Inside, ``model`` computes with the averaged weights; afterwards with its own again."""
        own = model.flat.data.copy()
        model.flat.data[...] = self.average.astype(model.flat.data.dtype, copy=False)
        try:
            yield model
        finally:
            model.flat.data[...] = own

    def state_dict(self) -> dict:
        """{parameter name: float32 NumPy array}: the average, by the model's parameter names."""
        host = backend.to_numpy(self.average)
        return {name: self.flat.view(host, name).copy() for name in self.flat.names}

    def load_state_dict(self, state: dict, updates: int) -> None:
        """Continue an average saved by ``state_dict`` after ``updates`` updates (a resumed run's step)."""
        missing = [name for name in self.flat.names if name not in state]
        if missing:
            raise ValueError(f"The saved EMA weights lack {', '.join(missing[:4])}: they belong to another model.")
        for name in self.flat.names:
            view = self.flat.view(self.average, name)
            if tuple(state[name].shape) != view.shape:
                raise ValueError(f"The saved EMA weight {name!r} has shape {tuple(state[name].shape)}, expected "
                                 f"{view.shape}.")
            view[...] = backend.asarray(state[name], dtype="float32")
        self.updates = updates

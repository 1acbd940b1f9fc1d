"""One training step: the one that ``python -m minivit.train``, its kernel warm-up and every benchmark take.

    step = TrainStep(model, optimizer, label_smoothing=0.1, grad_clip=1.0)
    loss, correct = step(pixel_values, targets, lr)

What happens, in order, each part inside a named ``profile.phase`` (counted on the simulated
GPU, timed by ``profile.Profiler``, free otherwise):

    zero_grad   the gradients of the last step cleared
    forward     the logits, in the model's dtype
    loss        cross-entropy and its gradient, in float32 (float64 for a float64 model); with a
                loss scaler (float16), the gradient times the scale, cast to the model's dtype
    backward    the gradients of every parameter
    allreduce   the shards' gradients averaged over the ranks (nothing with one process)
    clip        the scale divided out into the float32 master gradients (float16), then the
                global gradient norm clipped to ``grad_clip`` (0: no clipping)
    optimizer   the learning rate set, one update (skipped on the device when a float16
                gradient overflowed), the loss scale updated
    metrics     how many of the batch's predictions match the (hardest) target

The data and its augmentation are the caller's (the Trainer's ``train_step`` draws and augments
the batch). Nothing here makes the host wait for the device: the loss and the count come back
as 0-d backend arrays, read when the caller chooses.
"""

from __future__ import annotations

from minivit import backend
from minivit.amp import LossScaler
from minivit.dispatch import cross_entropy_backward, cross_entropy_forward
from minivit.distributed import Communicator, SingleProcess
from minivit.profile import phase


class TrainStep:
    """Forward, loss, backward, gradient averaging, clipping and the update of ``model`` by ``optimizer``.

    ``label_smoothing``: of the cross-entropy's targets, in [0, 1). ``grad_clip``: the largest
    global gradient norm (0 turns clipping off). ``scaler``: a ``LossScaler`` for a float16 model
    (the optimizer then holds float32 master weights). ``communicator``: this rank's, in a
    data-parallel run (None: one process).
    """

    def __init__(self, model, optimizer, *, label_smoothing: float = 0.0, grad_clip: float = 0.0,
                 scaler: LossScaler | None = None, communicator: Communicator | None = None):
        self.model = model
        self.optimizer = optimizer
        self.label_smoothing = label_smoothing
        self.grad_clip = grad_clip
        self.scaler = scaler
        self.communicator = communicator if communicator is not None else SingleProcess()

    def __call__(self, pixel_values, targets, lr: float):
        """One optimisation step at learning rate ``lr``.

        ``pixel_values``: (B, C, H, W) on the backend, normalised (cast to the model's dtype here).
        ``targets``: (B,) class indices, or (B, num_labels) probabilities (mixup, cutmix).
        Returns (loss, correct): the batch's mean loss and its number of correct predictions,
        0-d backend arrays (no host sync).
        """
        xp = backend.xp
        model, optimizer, scaler = self.model, self.optimizer, self.scaler
        model.train()
        with phase("zero_grad"):
            optimizer.zero_grad()
        with phase("forward"):
            logits = model.forward(pixel_values.astype(model.dtype, copy=False))  # (B, num_labels)
        with phase("loss"):  # in float32, also when the model computes in float16 (in float64 for a float64 model)
            loss_dtype = xp.float64 if model.dtype == "float64" else xp.float32
            loss, loss_cache = cross_entropy_forward(logits.astype(loss_dtype, copy=False), targets,
                                                     self.label_smoothing)
            dlogits = cross_entropy_backward(1.0, loss_cache)
            if scaler is not None:
                dlogits = scaler.scale_loss_gradient(dlogits, model.dtype)
        with phase("backward"):
            model.backward(dlogits, input_grad=False)  # the images need no gradient (no patch dX product, no col2im)
        with phase("allreduce"):  # the shards' gradients averaged: the whole batch's gradient, on every rank
            self.communicator.allreduce_mean(model.flat.grad)
        with phase("clip"):
            if scaler is not None:  # float32 gradients for the master weights, the scale divided out
                scaler.unscale(model.flat.grad, optimizer.master_grad)
            if self.grad_clip > 0:
                optimizer.clip_gradients(self.grad_clip)
        with phase("optimizer"):
            optimizer.lr = lr
            optimizer.step(skip=None if scaler is None else scaler.found_inf)
            if scaler is not None:
                scaler.update()
        with phase("metrics"):
            hard_targets = targets if targets.ndim == 1 else xp.argmax(targets, axis=1)
            correct = xp.sum(xp.argmax(logits, axis=1) == hard_targets)
        return loss, correct

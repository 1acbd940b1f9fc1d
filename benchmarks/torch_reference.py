"""The PyTorch reference for the CPU training comparison: transformers' ViTForImageClassification
trained by minivit's own Trainer, so that data, split, augmentation, schedule, time budget and
evaluation are the same code; only the model, its backward and the optimizer step are PyTorch's.

It follows the recipe's choices as minivit does: the recipe that follows the budget (given minivit's
choice by cpu_training_budget.py, so that both sides run one recipe; run alone, the Trainer measures
this side's own pace and chooses from the same table), mixup and cutmix that stop at
--mixing-stops-at, the moving average of the weights (--ema: the same decay rule, over PyTorch's
parameters, validated beside them), flip test-time augmentation in the test evaluations (--tta),
and mean pooling (transformers' ViT classifies from the CLS token: the mean of its last hidden
states goes through its classifier instead). What it does not follow: checkpoints (it keeps none,
so it cannot be resumed), float16 and distributed runs.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from minivit.augment import normalize
from minivit.convert import from_hf, hf_config_kwargs, to_hf
from minivit.ema import WeightAverage
from minivit.optim import no_weight_decay
from minivit.train import Trainer


def from_hf_names(model) -> dict:
    """transformers' parameter name -> minivit's, so both sides decide weight decay by one rule."""
    return {hf: mine for hf, mine in zip(
        (name for name, _ in model.named_parameters()),
        from_hf({name: p.detach().numpy() for name, p in model.named_parameters()}))}


class TorchWeightAverage:
    """minivit.ema.WeightAverage's rule over a PyTorch model's parameters."""

    current_decay = WeightAverage.current_decay

    def __init__(self, torch_model, decay: float):
        import torch

        self.torch, self.decay, self.updates = torch, decay, 0
        self.parameters = list(torch_model.parameters())
        self.average = torch.nn.utils.parameters_to_vector(self.parameters).detach().clone()

    def update(self) -> None:
        decay = self.current_decay()
        with self.torch.no_grad():
            self.average.mul_(decay).add_(self.torch.nn.utils.parameters_to_vector(self.parameters), alpha=1 - decay)
        self.updates += 1

    @contextmanager
    def in_model(self, _minivit_model):
        own = self.torch.nn.utils.parameters_to_vector(self.parameters).detach().clone()
        self._copy_into_parameters(self.average)
        try:
            yield
        finally:
            self._copy_into_parameters(own)

    def _copy_into_parameters(self, vector) -> None:
        with self.torch.no_grad():
            start = 0
            for parameter in self.parameters:
                parameter.copy_(vector[start:start + parameter.numel()].view_as(parameter))
                start += parameter.numel()


class TorchTrainer(Trainer):
    def __init__(self, config, threads: int):
        import torch
        from transformers import ViTConfig, ViTForImageClassification

        super().__init__(config)
        torch.set_num_threads(threads)
        self.torch = torch
        self.mean_pooling = self.model.config.pooling == "mean"
        hf_config = hf_config_kwargs(self.model.config.replace(pooling="cls"))  # mean pooling: see _logits
        self.torch_model = ViTForImageClassification(ViTConfig(**hf_config))
        # Start from minivit's initial weights (same seed, same initial point).
        state = {name: torch.from_numpy(array) for name, array in to_hf(self.model.state_dict()).items()}
        self.torch_model.load_state_dict(state)
        skip_decay = {hf: no_weight_decay(mine) for hf, mine in from_hf_names(self.torch_model).items()}
        decay = [p for n, p in self.torch_model.named_parameters() if not skip_decay[n]]
        no_decay = [p for n, p in self.torch_model.named_parameters() if skip_decay[n]]
        self.torch_optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr)
        self._set_up_ema()  # now that there is a PyTorch model to average

    def _set_up_ema(self) -> None:
        model = getattr(self, "torch_model", None)
        self.ema = TorchWeightAverage(model, self.config.ema) if self.config.ema and model is not None else None

    def _logits(self, pixel_values):
        if self.mean_pooling:  # transformers' ViT has the CLS token alone: its classifier, on the tokens' mean
            hidden = self.torch_model.vit(pixel_values=pixel_values).last_hidden_state  # (B, T, D), normalised
            return self.torch_model.classifier(hidden.mean(dim=1))
        return self.torch_model(pixel_values=pixel_values).logits

    def train_step(self):
        torch, config = self.torch, self.config
        images, labels = self.batches.get(self.step)
        mix = self.schedule_position(self.step) < config.mixing_stops_at * self.total_steps
        pixel_values, targets = self.randomness.augment_step(self.step, images, labels, config.augment, self.mean,
                                                             self.std, self.model.config.num_labels, mix=mix)
        self.torch_model.train()
        logits = self._logits(torch.from_numpy(pixel_values))
        torch_targets = torch.from_numpy(np.asarray(targets))
        loss = torch.nn.functional.cross_entropy(logits, torch_targets, label_smoothing=config.label_smoothing)
        self.torch_optimizer.zero_grad()
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.torch_model.parameters(), config.grad_clip)
        lr = self.learning_rate(self.step)
        for group in self.torch_optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.lr = lr  # shown in the progress bar
        self.torch_optimizer.step()
        if self.ema is not None:
            self.ema.update()
        hard = targets if np.ndim(targets) == 1 else np.argmax(targets, axis=1)
        correct = (logits.argmax(dim=1).numpy() == hard).sum()
        return np.float64(loss.item()), np.float64(correct)

    def evaluate(self, images, labels, tta: bool = False) -> dict:
        torch = self.torch
        self.torch_model.eval()
        total_loss, predictions = 0.0, []
        with torch.inference_mode():
            for start in range(0, len(labels), self.config.eval_batch_size):
                batch = normalize(images[start:start + self.config.eval_batch_size], self.mean, self.std)
                batch_labels = torch.from_numpy(labels[start:start + self.config.eval_batch_size])
                pixel_values = torch.from_numpy(batch)
                logits = self._logits(pixel_values)
                if tta:  # the mirror image: the width axis reversed
                    logits = 0.5 * (logits + self._logits(torch.flip(pixel_values, dims=[3])))
                total_loss += torch.nn.functional.cross_entropy(logits, batch_labels).item() * len(batch_labels)
                predictions.append(logits.argmax(dim=1).numpy())
        predictions = np.concatenate(predictions)
        return {"loss": total_loss / len(labels), "accuracy": float((predictions == labels).mean()),
                "predictions": predictions}

    def save(self, name: str = "checkpoint-last.npz"):
        return None  # the reference keeps no checkpoints

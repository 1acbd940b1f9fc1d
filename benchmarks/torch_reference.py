"""The PyTorch reference for the CPU training comparison: transformers' ViTForImageClassification
trained by minivit's own Trainer, so that data, split, augmentation, schedule, time budget and
evaluation are the same code; only the model, its backward and the optimizer step are PyTorch's.
"""

from __future__ import annotations

import numpy as np

from minivit.augment import normalize
from minivit.convert import from_hf, hf_config_kwargs, to_hf
from minivit.optim import no_weight_decay
from minivit.train import Trainer


def from_hf_names(model) -> dict:
    """transformers' parameter name -> minivit's, so both sides decide weight decay by one rule."""
    return {hf: mine for hf, mine in zip(
        (name for name, _ in model.named_parameters()),
        from_hf({name: p.detach().numpy() for name, p in model.named_parameters()}))}


class TorchTrainer(Trainer):
    def __init__(self, config, threads: int):
        import torch
        from transformers import ViTConfig, ViTForImageClassification

        super().__init__(config)
        torch.set_num_threads(threads)
        self.torch = torch
        self.torch_model = ViTForImageClassification(ViTConfig(**hf_config_kwargs(self.model.config)))
        # Start from minivit's initial weights (same seed, same initial point).
        state = {name: torch.from_numpy(array) for name, array in to_hf(self.model.state_dict()).items()}
        self.torch_model.load_state_dict(state)
        skip_decay = {hf: no_weight_decay(mine) for hf, mine in from_hf_names(self.torch_model).items()}
        decay = [p for n, p in self.torch_model.named_parameters() if not skip_decay[n]]
        no_decay = [p for n, p in self.torch_model.named_parameters() if skip_decay[n]]
        self.torch_optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr)

    def train_step(self):
        torch, config = self.torch, self.config
        images, labels = self.batches.get(self.step)
        pixel_values, targets = self.randomness.augment_step(self.step, images, labels, config.augment, self.mean,
                                                             self.std, self.model.config.num_labels)
        self.torch_model.train()
        logits = self.torch_model(pixel_values=torch.from_numpy(pixel_values)).logits
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
        hard = targets if np.ndim(targets) == 1 else np.argmax(targets, axis=1)
        correct = (logits.argmax(dim=1).numpy() == hard).sum()
        return np.float64(loss.item()), np.float64(correct)

    def evaluate(self, images, labels) -> dict:
        torch = self.torch
        self.torch_model.eval()
        total_loss, predictions = 0.0, []
        with torch.inference_mode():
            for start in range(0, len(labels), self.config.eval_batch_size):
                batch = normalize(images[start:start + self.config.eval_batch_size], self.mean, self.std)
                batch_labels = torch.from_numpy(labels[start:start + self.config.eval_batch_size])
                logits = self.torch_model(pixel_values=torch.from_numpy(batch)).logits
                total_loss += torch.nn.functional.cross_entropy(logits, batch_labels).item() * len(batch_labels)
                predictions.append(logits.argmax(dim=1).numpy())
        predictions = np.concatenate(predictions)
        return {"loss": total_loss / len(labels), "accuracy": float((predictions == labels).mean()),
                "predictions": predictions}

    def save(self, name: str = "checkpoint-last.npz"):
        return None  # the reference keeps no checkpoints

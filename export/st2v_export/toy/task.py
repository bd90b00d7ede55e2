"""The base of a trainable toy model (`Task`) and the error of a run that cannot start."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..presets import Preset


class TrainError(ValueError):
    """A training run that cannot start or resume as asked."""


class Task:
    """One trainable model: its modules, batches, loss and held-out evaluation."""

    name = ""
    default_batch = 16
    default_lr = 1e-3
    default_eval_frames = 128
    weight_decay = 0.0
    lr_scales: dict[str, float] = {}
    """Module name -> factor on the learning rate of its parameters (default 1)."""

    def __init__(self, preset: Preset, seed: int, runs: Path | None = None):
        self.preset = preset
        self.seed = seed
        self.runs = runs
        """Where the runs this model depends on live (`TrainConfig.runs`)."""
        self.size = preset.stage2.height
        if preset.stage2.width != self.size:
            raise TrainError(f"toy training needs square stage-2 frames, got {preset.stage2}")

    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def batch(self, step: int, size: int) -> dict:
        raise NotImplementedError

    def loss(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after each optimizer step (parameter constraints)."""

    def extras(self) -> dict:
        """Values computed from the parameters that the checkpoint records (not trained)."""
        return {}

    def evaluate(self, frames: int) -> dict:
        raise NotImplementedError

    def parameter_groups(self) -> list[dict]:
        """Weight decay on matrices only (not on norms, biases, embeddings, the temperature);
        each group carries its module's `lr_scale`."""
        groups = []
        for module_name, module in self.modules().items():
            decay, plain = [], []
            for name, parameter in module.named_parameters():
                if not parameter.requires_grad:  # frozen parts
                    continue
                is_embedding = "embedding" in name or name.startswith("class_") or "logit" in name
                (decay if parameter.ndim >= 2 and not is_embedding else plain).append(parameter)
            scale = self.lr_scales.get(module_name, 1.0)
            for params, weight_decay in ((plain, 0.0), (decay, self.weight_decay)):
                if params:
                    groups.append({"params": params, "weight_decay": weight_decay,
                                   "lr_scale": scale})
        return groups

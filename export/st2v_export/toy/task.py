"""The base of a trainable toy model (`Task`), the error of a run that cannot start, and the
device a run trains on (`training_device`, `to_device`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..presets import Preset


class TrainError(ValueError):
    """A training run that cannot start or resume as asked."""


DEVICES = "cpu, cuda, cuda:N or auto"


def training_device(name: str) -> torch.device:
    """The torch device of `--device` (`auto`: the first CUDA device when torch sees one, else
    the CPU); a clear error for a name torch does not know or a GPU it cannot see."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainError(f"--device must be one of {DEVICES}, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise TrainError(f"--device must be one of {DEVICES}, got {name!r}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise TrainError(
                f"--device {name}: this torch ({torch.__version__}) sees {count} CUDA "
                f"device(s); use --device cpu or auto, or run where torch sees the GPU"
            )
    return device


def device_of(module: nn.Module) -> torch.device:
    """Where a module's parameters are."""
    return next(module.parameters()).device


def to_device(batch: dict, device: torch.device) -> dict:
    """A batch's tensors on `device` (captions, flags and other values unchanged). Batches are
    rendered and their noise drawn on the CPU, so a step's data is the same on every device."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


class Task:
    """One trainable model: its modules, batches, loss and held-out evaluation."""

    name = ""
    default_batch = 16
    default_lr = 1e-3
    default_eval_frames = 128
    weight_decay = 0.0
    lr_scales: dict[str, float] = {}
    """Module name -> factor on the learning rate of its parameters (default 1)."""

    device = torch.device("cpu")
    """Where the modules and batches live (`to`)."""

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

    def frozen_modules(self) -> list[nn.Module]:
        """Modules the task runs but does not train (the frozen VAE and encoders)."""
        return []

    def to(self, device: torch.device) -> None:
        """Moves every module, trained and frozen, to `device`; before the optimizer is made
        (a move between unlike devices may give new parameter objects)."""
        self.device = device
        for module in [*self.modules().values(), *self.frozen_modules()]:
            module.to(device)

    def batch(self, step: int, size: int) -> dict:
        raise NotImplementedError

    def loss(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """The loss and its logged parts (0-dim tensors on the task's device)."""
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

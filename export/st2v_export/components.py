"""Builds the PyTorch models of a preset: seeded random weights, or the real checkpoints.

Each component is built once per `Components` and shared by the graphs that use it (the CAM by
G4a and G4, the VAE by G6 and G6e).
"""

from __future__ import annotations

import math
import zlib
from contextlib import contextmanager
from functools import cached_property

import torch
from torch import nn

from .checkpoint import OPEN_CLIP_TEXT, RAFT_WEIGHTS, WeightSource
from .modules.cam import Cam
from .modules.clip_text import build_clip_text
from .modules.raft import build_raft, raft_config
from .modules.image import build_visual
from .modules.resampler import ApmResampler
from .modules.streaming_unet import StreamingUnet
from .modules.text import build_clip_text_model
from .modules.unet3d import build_unet3d, pad_spatial_convs
from .modules.vae import build_vae
from .presets import IMAGE_TOKENS, Preset


@contextmanager
def seeded(seed: int, name: str):
    """Seeds torch per component, so a component's weights don't depend on build order."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + zlib.crc32(name.encode()))
        yield


def randomize_zero_parameters(module: nn.Module) -> None:
    """Gives zero-initialised parameters (zero convs, merger/APM gates, norm biases) random values
    so every branch of a random-weight graph contributes and is covered by parity checks."""
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.is_meta or parameter.numel() == 0 or bool(parameter.any()):
                continue
            if parameter.ndim >= 2:
                nn.init.kaiming_uniform_(parameter, a=math.sqrt(5))
            else:
                parameter.normal_(0.0, 0.5)


class Components:
    def __init__(self, preset: Preset, seed: int, weights: WeightSource | None):
        self.preset = preset
        self.seed = seed
        self.weights = weights

    def _finish(self, name: str, module: nn.Module, prefix: str | None) -> nn.Module:
        """Random weights: randomize zero inits. Checkpoint: load `prefix` strictly."""
        if self.weights is None:
            randomize_zero_parameters(module)
        else:
            self.weights.load_into(module, name, prefix)
        return module.eval()

    def _build(self, name: str, factory, prefix: str | None) -> nn.Module:
        with seeded(self.seed, name):
            return self._finish(name, factory(), prefix)

    @cached_property
    def text_model(self) -> nn.Module:
        return self._build(
            "text_encoder",
            lambda: build_clip_text_model(self.preset.text),
            # transformers 5 keeps CLIPTextModel's keys without the `text_model.` level.
            "text_encoder.text_model.",
        )

    @cached_property
    def clip_text(self) -> nn.Module:
        return self._build("clip_text_encoder", lambda: build_clip_text(self.preset), OPEN_CLIP_TEXT)

    @cached_property
    def raft(self) -> nn.Module:
        config = raft_config(self.preset.enhancer)
        return self._build("raft", lambda: build_raft(config), RAFT_WEIGHTS)

    @cached_property
    def visual(self) -> nn.Module:
        return self._build(
            "image_encoder",
            lambda: build_visual(self.preset.image_embed_dim, self.preset.vision),
            "image_encoder.model.visual.",
        )

    @cached_property
    def resampler(self) -> ApmResampler:
        preset = self.preset
        return self._build(
            "apm_resampler",
            lambda: ApmResampler(
                preset.image_embed_dim, preset.resampler_inner_dim, preset.context_dim, IMAGE_TOKENS
            ),
            "resampler.",
        )

    @cached_property
    def cam(self) -> Cam:
        preset = self.preset
        return self._build(
            "cam",
            lambda: pad_spatial_convs(
                Cam(build_unet3d(preset.unet), preset.cond_embedding_channels),
                preset.stage2_padding,
            ),
            "unet.",
        )

    @cached_property
    def streaming_unet(self) -> StreamingUnet:
        preset = self.preset
        return self._build(
            "unet",
            lambda: pad_spatial_convs(
                StreamingUnet(
                    build_unet3d(preset.unet), preset.merger_head_dim, preset.merger_norm_groups
                ),
                preset.stage2_padding,
            ),
            "base_model.",
        )

    @cached_property
    def stage1_unet(self) -> nn.Module:
        return self._build("stage1_unet", lambda: build_unet3d(self.preset.unet), None)

    @cached_property
    def vae(self) -> nn.Module:
        return self._build("vae", lambda: build_vae(self.preset.vae), "vae.")

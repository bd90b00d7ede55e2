"""RAFT optical flow, for `st2v eval`'s MAWE (not a pipeline graph).

StreamingT2V's `mawe.py` (Henschel et al. 2024) measures motion with torchvision's RAFT-large
(`Raft_Large_Weights.DEFAULT`, Teed & Deng 2020) on frames resized to 720x720, normalised to
[-1, 1] by the weights' transforms, and keeps the last of the 12 flow updates. The graph takes
both frames already resized and normalised and returns that last flow, (N, 2, S, S) in pixels.

Full presets export RAFT-large at 720x720; the tiny presets keep RAFT-large's structure (residual
encoders, the convex-upsampling mask, radius-4 correlation) at toy widths and 128x128, the
smallest size RAFT's correlation pyramid accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.optical_flow import raft_large
from torchvision.models.optical_flow.raft import (
    BatchNorm2d,
    InstanceNorm2d,
    ResidualBlock,
    _raft,
)

FLOW_UPDATES = 12
"""torchvision's default number of flow updates (mawe.py keeps its default)."""


@dataclass(frozen=True)
class RaftConfig:
    size: int
    large: bool


RAFT_CONFIGS = {"full": RaftConfig(720, True), "tiny": RaftConfig(128, False)}
"""By the preset's architecture family (its enhancer widths): RAFT's size follows the metric, not
the generation, so presets carry no dimension of their own for it."""


def raft_config(enhancer_architecture: str) -> RaftConfig:
    return RAFT_CONFIGS[enhancer_architecture]


def build_raft(config: RaftConfig) -> nn.Module:
    if config.large:
        return raft_large(weights=None, progress=False)
    return _raft(
        feature_encoder_layers=(8, 8, 16, 16, 32),
        feature_encoder_block=ResidualBlock,
        feature_encoder_norm_layer=InstanceNorm2d,
        context_encoder_layers=(8, 8, 16, 16, 32),
        context_encoder_block=ResidualBlock,
        context_encoder_norm_layer=BatchNorm2d,
        corr_block_num_levels=4,
        corr_block_radius=4,
        motion_encoder_corr_layers=(16, 16),
        motion_encoder_flow_layers=(8, 8),
        motion_encoder_out_channels=16,
        recurrent_block_hidden_state_size=16,
        recurrent_block_kernel_size=((1, 5), (5, 1)),
        recurrent_block_padding=((0, 2), (2, 0)),
        flow_head_hidden_size=16,
        use_mask_predictor=True,
    )


class RaftFlow(nn.Module):
    """image1, image2 (N, 3, S, S) in [-1, 1] -> flow (N, 2, S, S), the last update."""

    def __init__(self, raft: nn.Module, updates: int = FLOW_UPDATES):
        super().__init__()
        self.raft = raft
        self.updates = updates

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
        return self.raft(image1, image2, num_flow_updates=self.updates)[-1]

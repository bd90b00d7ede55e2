"""CAM -> UNet cross-attention merger (Henschel et al. 2024, Sec. 3.2 "Conditional Attention
Module"; reference `controlnet/conditioning.py` ConditionalModel / CrossAttention).

Per pixel, the 16 UNet frames (queries, GroupNorm + Linear) attend over the 8 CAM frames (raw
keys/values); the projected result is added to the skip. `proj_out` is zero-initialised in
training, so an untrained merger is the identity.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention
from torch import nn


class TemporalCrossAttention(nn.Module):
    def __init__(self, channels: int, head_dim: int, norm_groups: int):
        super().__init__()
        self.attention = Attention(
            query_dim=channels,
            cross_attention_dim=channels,
            heads=channels // head_dim,
            dim_head=head_dim,
            bias=False,
        )
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, skip: torch.Tensor, cam: torch.Tensor, frames: int, cam_frames: int):
        """skip (B*frames, C, H, W), cam (B*cam_frames, C, H, W), both in (b f) order."""
        _, channels, height, width = skip.shape
        video = skip.reshape(-1, frames, channels, height, width).permute(0, 2, 1, 3, 4)
        queries = self.norm(video).permute(0, 3, 4, 2, 1).reshape(-1, frames, channels)
        keys = (
            cam.reshape(-1, cam_frames, channels, height, width)
            .permute(0, 3, 4, 1, 2)
            .reshape(-1, cam_frames, channels)
        )
        attended = self.attention(self.proj_in(queries), encoder_hidden_states=keys)
        residual = (
            self.proj_out(attended)
            .reshape(-1, height, width, frames, channels)
            .permute(0, 3, 4, 1, 2)
            .reshape(skip.shape)
        )
        return skip + residual


class CamMerger(nn.Module):
    """Checkpoint name: `cross_attention_merger_*.temporal_transformer.*`."""

    def __init__(self, channels: int, head_dim: int, norm_groups: int):
        super().__init__()
        self.temporal_transformer = TemporalCrossAttention(channels, head_dim, norm_groups)

    def forward(self, skip: torch.Tensor, cam: torch.Tensor, frames: int, cam_frames: int):
        return self.temporal_transformer(skip, cam, frames, cam_frames)

"""G5: the StreamingT2V stage-2 video UNet (Henschel et al. 2024, Sec. 3; reference
`controlnet/unet_3d_condition.py`, attribute `base_model`).

ModelScope's UNet3D with (a) a CAM cross-attention merger on each of the 12 down-path skips and
on the mid-block output, and (b) APM token mixing in every spatial cross-attention. The context
is 77 text + 16 image tokens, repeated per frame.
"""

from __future__ import annotations

import torch
from diffusers import UNet3DConditionModel
from torch import nn

from ..presets import COND_FRAMES, IMAGE_TOKENS, TEXT_TOKENS
from . import unet3d
from .apm_mixing import install_apm_mixing
from .merger import CamMerger

_UNET_CHILDREN = [
    "conv_in",
    "time_proj",
    "time_embedding",
    "transformer_in",
    "down_blocks",
    "up_blocks",
    "mid_block",
    "conv_norm_out",
    "conv_act",
    "conv_out",
]


class StreamingUnet(nn.Module):
    """sample (B,4,16,h,w), timestep (B,), context (B,93,D), down_res_0..11, mid_res
    (each (B*8,C,h',w')) -> noise_pred (B,4,16,h,w)."""

    def __init__(self, base: UNet3DConditionModel, merger_head_dim: int, merger_norm_groups: int):
        super().__init__()
        unet3d.adopt_children(self, base, _UNET_CHILDREN)
        config = base.config
        self.cross_attention_merger_down_blocks = nn.ModuleList(
            CamMerger(channels, merger_head_dim, merger_norm_groups)
            for channels in unet3d.skip_channels(
                tuple(config.block_out_channels), config.layers_per_block
            )
        )
        self.cross_attention_merger_mid_block = CamMerger(
            config.block_out_channels[-1], merger_head_dim, merger_norm_groups
        )
        install_apm_mixing(self, TEXT_TOKENS, IMAGE_TOKENS)

    def forward(self, sample, timestep, encoder_hidden_states, *cam_residuals: torch.Tensor):
        frames = sample.shape[2]
        cam_down, cam_mid = cam_residuals[:-1], cam_residuals[-1]
        emb = unet3d.embed_time(self, timestep, frames)
        context = encoder_hidden_states.repeat_interleave(frames, dim=0)

        hidden = unet3d.stem(self, sample)
        hidden, skips = unet3d.down(self, hidden, emb, context, frames)
        mergers = self.cross_attention_merger_down_blocks
        skips = tuple(
            merger(skip, cam, frames, COND_FRAMES)
            for merger, skip, cam in zip(mergers, skips, cam_down, strict=True)
        )
        hidden = unet3d.mid(self, hidden, emb, context, frames)
        hidden = self.cross_attention_merger_mid_block(hidden, cam_mid, frames, COND_FRAMES)
        return unet3d.up_and_out(self, hidden, emb, context, skips, frames)

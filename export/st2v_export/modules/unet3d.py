"""Shared pieces of the ModelScope video UNet (diffusers `UNet3DConditionModel`), used by the
stage-1 UNet (G7), the stage-2 StreamingT2V UNet (G5) and the CAM encoder copy (G4).

Layout conventions follow diffusers: video latents (B, C, F, H, W) are processed as frame
batches (B*F, C, H, W) in (b f) order; the time embedding and the text context are repeated
per frame.
"""

from __future__ import annotations

import torch
from diffusers import UNet3DConditionModel
from torch import nn


def build_unet3d(config: dict) -> UNet3DConditionModel:
    return UNet3DConditionModel(**config)


def pad_spatial_convs(module: nn.Module, mode: str) -> nn.Module:
    """Sets how every padded 2-D convolution of `module` pads ("zeros" or "circular"); the
    temporal convolutions (Conv3d, padded along frames only) keep zeros. In place; returns it."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d) and any(side > 0 for side in conv.padding):
            conv.padding_mode = mode
    return module


def adopt_children(target: nn.Module, source: nn.Module, names: list[str]) -> None:
    """Registers `source`'s submodules under the same names, so state-dict keys stay diffusers'."""
    for name in names:
        target.add_module(name, getattr(source, name))


def skip_channels(block_out_channels: tuple[int, ...], layers_per_block: int) -> list[int]:
    """Channels of the down path's skip tensors: stem, then each block's layers and downsampler."""
    channels = [block_out_channels[0]]
    for index, width in enumerate(block_out_channels):
        is_final = index == len(block_out_channels) - 1
        channels += [width] * (layers_per_block + (0 if is_final else 1))
    return channels


def embed_time(unet: nn.Module, timestep: torch.Tensor, frames: int) -> torch.Tensor:
    """timestep (B,) int64 -> per-frame embedding (B*frames, 4*C0)."""
    projected = unet.time_proj(timestep).to(dtype=unet.conv_in.weight.dtype)
    return unet.time_embedding(projected).repeat_interleave(frames, dim=0)


def stem(unet: nn.Module, sample: torch.Tensor) -> torch.Tensor:
    """sample (B, C, F, H, W) -> conv_in + temporal transformer_in, (B*F, C0, H, W)."""
    frames = sample.shape[2]
    frame_batch = sample.permute(0, 2, 1, 3, 4).reshape(
        (sample.shape[0] * frames, -1) + tuple(sample.shape[3:])
    )
    hidden = unet.conv_in(frame_batch)
    return unet.transformer_in(hidden, num_frames=frames, return_dict=False)[0]


def down(
    unet: nn.Module, hidden: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Runs the down blocks; returns the output and the skips, the block input first."""
    skips = (hidden,)
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            hidden, outputs = block(
                hidden_states=hidden, temb=emb, encoder_hidden_states=context, num_frames=frames
            )
        else:
            hidden, outputs = block(hidden_states=hidden, temb=emb, num_frames=frames)
        skips += outputs
    return hidden, skips


def mid(
    unet: nn.Module, hidden: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int
) -> torch.Tensor:
    return unet.mid_block(hidden, emb, encoder_hidden_states=context, num_frames=frames)


def up_and_out(
    unet: nn.Module,
    hidden: torch.Tensor,
    emb: torch.Tensor,
    context: torch.Tensor,
    skips: tuple[torch.Tensor, ...],
    frames: int,
) -> torch.Tensor:
    """Up blocks with skip concatenation, then norm/SiLU/conv_out -> (B, C, F, H, W)."""
    for block in unet.up_blocks:
        taken = len(block.resnets)
        block_skips, skips = skips[-taken:], skips[:-taken]
        if getattr(block, "has_cross_attention", False):
            hidden = block(
                hidden_states=hidden,
                temb=emb,
                res_hidden_states_tuple=block_skips,
                encoder_hidden_states=context,
                num_frames=frames,
            )
        else:
            hidden = block(
                hidden_states=hidden, temb=emb, res_hidden_states_tuple=block_skips, num_frames=frames
            )
    hidden = unet.conv_out(unet.conv_act(unet.conv_norm_out(hidden)))
    return hidden.reshape((-1, frames) + tuple(hidden.shape[1:])).permute(0, 2, 1, 3, 4)


class Stage1Unet(nn.Module):
    """G7: plain ModelScope UNet3D. sample (B,4,16,h,w), timestep (B,), context (B,77,D) -> noise_pred."""

    def __init__(self, unet: UNet3DConditionModel):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]

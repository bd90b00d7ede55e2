"""G4a/G4: the Conditional Attention Module's encoder (Henschel et al. 2024, Sec. 3.2; reference
`controlnet/controlnet.py` ControlNetModel, attribute `unet` of the checkpoint).

E_cond (G4a) turns the 8 conditioning frames (pixels in [-1, 1]) into features at latent size
with a small strided conv stack. The CAM (G4) is a ControlNet-like copy of the UNet encoder: it
embeds the first 8 noisy latent frames (conv_in + temporal transformer_in), adds E_cond's
features, and runs the down and mid blocks; the 12 skips and the mid output leave through
Identity "zero convs", for the UNet's cross-attention mergers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNet3DConditionModel
from torch import nn

from . import unet3d


class CamCondEncoder(nn.Module):
    """E_cond. cond_frames (8, 3, H, W) -> cond_features (8, C0, H/8, W/8).

    conv_in 3->c0 and, per level, a same-width conv and a stride-2 conv to the next width, each
    followed by SiLU; conv_out (zero-initialised in training) maps to the UNet's C0.
    """

    def __init__(self, channels: tuple[int, ...], out_channels: int):
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels[0], kernel_size=3, padding=1)
        blocks = []
        for width, next_width in zip(channels[:-1], channels[1:]):
            blocks.append(nn.Conv2d(width, width, kernel_size=3, padding=1))
            blocks.append(nn.Conv2d(width, next_width, kernel_size=3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], out_channels, kernel_size=3, padding=1)

    def forward(self, cond_frames: torch.Tensor) -> torch.Tensor:
        hidden = F.silu(self.conv_in(cond_frames))
        for block in self.blocks:
            hidden = F.silu(block(hidden))
        return self.conv_out(hidden)


class Cam(nn.Module):
    """sample (B,4,8,h,w) (first 8 noisy frames), timestep (B,), context (B,77,D),
    cond_features (8,C0,h,w) shared by every batch entry -> down_res_0..11, mid_res,
    each (B*8, C, h', w') in (b f) order."""

    def __init__(self, base: UNet3DConditionModel, cond_channels: tuple[int, ...]):
        super().__init__()
        unet3d.adopt_children(
            self,
            base,
            ["conv_in", "time_proj", "time_embedding", "transformer_in", "down_blocks", "mid_block"],
        )
        self.controlnet_cond_embedding = CamCondEncoder(
            cond_channels, base.config.block_out_channels[0]
        )

    def forward(self, sample, timestep, encoder_hidden_states, cond_features):
        return self.encode(sample, timestep, encoder_hidden_states, cond_features.unsqueeze(0))

    def encode(self, sample, timestep, encoder_hidden_states, video_features):
        """The CAM with E_cond features broadcastable to (B, F, C0, h, w): one set shared by the
        batch, (1, F, ...) as the graph has it, or one per video, (B, F, ...) when training."""
        frames = sample.shape[2]
        emb = unet3d.embed_time(self, timestep, frames)
        context = encoder_hidden_states.repeat_interleave(frames, dim=0)

        hidden = unet3d.stem(self, sample)
        per_video = hidden.reshape((-1, frames) + tuple(hidden.shape[1:]))
        hidden = (per_video + video_features).reshape(hidden.shape)
        hidden, skips = unet3d.down(self, hidden, emb, context, frames)
        return (*skips, unet3d.mid(self, hidden, emb, context, frames))


class CamCondEncoderGraph(nn.Module):
    """G4a wrapper: E_cond of a `Cam`, exported on its own so it runs once per chunk."""

    def __init__(self, cam: Cam):
        super().__init__()
        self.encoder = cam.controlnet_cond_embedding

    def forward(self, cond_frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(cond_frames)

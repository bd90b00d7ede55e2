"""G6/G6e: the ModelScope VAE (diffusers AutoencoderKL, scaling factor 0.18215).

The decoder graph takes latents already divided by the scaling factor; the encoder graph stops
at the posterior moments (mean, clamped logvar) so that sampling happens in the engine.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from torch import nn

# diffusers DiagonalGaussianDistribution clamps the log-variance to this range.
LOGVAR_RANGE = (-30.0, 20.0)


DECODER_LAYERS = "decoder_layers_per_block"
"""Optional key of a preset's `vae` config (not an AutoencoderKL argument): the decoder's
`layers_per_block` when it differs from the encoder's (a deeper decoder, tried on the toy set:
export/experiments/deep_decoder_preset.json)."""


def build_vae(config: dict) -> AutoencoderKL:
    config = dict(config)
    decoder_layers = config.pop(DECODER_LAYERS, config.get("layers_per_block", 1))
    vae = AutoencoderKL(**config)
    if decoder_layers != vae.config.layers_per_block:
        vae.decoder = AutoencoderKL(**{**config, "layers_per_block": decoder_layers}).decoder
    return vae


class VaeDecoder(nn.Module):
    """latents (N, 4, h, w) / scaling factor -> images (N, 3, H, W) in about [-1, 1]."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents, return_dict=False)[0]


class VaeEncoder(nn.Module):
    """images (N, 3, H, W) in [-1, 1] -> mean, logvar (N, 4, h, w)."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        moments = self.vae.quant_conv(self.vae.encoder(images))
        mean, logvar = torch.chunk(moments, 2, dim=1)
        return mean, torch.clamp(logvar, *LOGVAR_RANGE)

"""The four enhancer networks as exportable modules (one `forward` per role of models/roles.json).

- G8 `enhancer_text_encoder`: OpenCLIP text tower run to its penultimate block with the causal
  mask, then `ln_final` (the `FrozenOpenCLIPEmbedder(layer='penultimate')` of SD-2 / MS-Vid2Vid-XL).
- G9 `enhancer_unet`: modelscope `Vid2VidSDUNet`, v-prediction.
- G10 `enhancer_vae_encoder` / `enhancer_vae_decoder`: LDM `AutoencoderKL` (SD-2.1 first stage);
  the encoder stops at the posterior moments, sampling and the 0.18215 scaling happen in Rust.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from open_clip.transformer import TextTransformer
from torch import nn

from . import reference
from .configs import TextConfig, UnetConfig, VaeConfig


@contextlib.contextmanager
def _spatial_context_width(module, context_dim: int) -> Iterator[None]:
    """Upstream's decoder hard-codes `context_dim=1024` for its SpatialTransformers.

    The full model uses 1024 everywhere, so forcing the configured width changes nothing there
    and lets the tiny preset use a narrow text encoder. The subclass keeps `isinstance` checks
    in `Vid2VidSDUNet._forward_single` working.
    """
    upstream = module.SpatialTransformer
    configured_width = context_dim

    class SpatialTransformer(upstream):
        def __init__(self, *args, context_dim=None, **kwargs):
            super().__init__(*args, context_dim=configured_width, **kwargs)

    module.SpatialTransformer = SpatialTransformer
    try:
        yield
    finally:
        module.SpatialTransformer = upstream


def build_unet(config: UnetConfig) -> nn.Module:
    """`Vid2VidSDUNet` on the current default device, without activation checkpointing."""
    module = reference.unet_module()
    with _spatial_context_width(module, config.context_dim):
        return module.Vid2VidSDUNet(**config.constructor_kwargs())


def build_autoencoder(config: VaeConfig) -> nn.Module:
    return reference.autoencoder_module().AutoencoderKL(**config.constructor_kwargs())


def build_text_tower(config: TextConfig) -> TextTransformer:
    return TextTransformer(**config.constructor_kwargs())


class EnhancerTextEncoder(nn.Module):
    """input_ids (B,77) int64 -> last_hidden_state (B,77,width) of the penultimate block.

    Holds only what the graph uses: the tower's last block and its projection are left out.
    """

    def __init__(self, tower: TextTransformer):
        super().__init__()
        if not tower.transformer.batch_first:
            raise ValueError("expected an open_clip text transformer with batch_first=True")
        self.token_embedding = tower.token_embedding
        self.positional_embedding = tower.positional_embedding
        self.blocks = nn.ModuleList(tower.transformer.resblocks[:-1])
        self.ln_final = tower.ln_final
        self.register_buffer("causal_mask", tower.attn_mask, persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(input_ids) + self.positional_embedding
        for block in self.blocks:
            x = block(x, attn_mask=self.causal_mask)
        return self.ln_final(x)


class EnhancerUnet(nn.Module):
    """(sample (B,4,F,h,w), timestep (B,) int64, encoder_hidden_states (B,77,D)) -> v-prediction."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states)


class EnhancerVaeEncoder(nn.Module):
    """images (N,3,H,W) in [-1,1] -> mean, logvar (N,4,H/8,W/8) of the diagonal Gaussian posterior.

    `AutoencoderKL.encode` without the decoder half; logvar is clamped to [-30, 20] by the
    reference's `DiagonalGaussianDistribution`.
    """

    def __init__(self, autoencoder: nn.Module):
        super().__init__()
        self.encoder = autoencoder.encoder
        self.quant_conv = autoencoder.quant_conv

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        moments = self.quant_conv(self.encoder(images))
        posterior = reference.autoencoder_module().DiagonalGaussianDistribution(moments)
        return posterior.mean, posterior.logvar


class EnhancerVaeDecoder(nn.Module):
    """latents (N,4,h,w), already divided by 0.18215 -> images (N,3,8h,8w) in about [-1,1].

    `AutoencoderKL.decode` without the encoder half.
    """

    def __init__(self, autoencoder: nn.Module):
        super().__init__()
        self.post_quant_conv = autoencoder.post_quant_conv
        self.decoder = autoencoder.decoder

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(latents))

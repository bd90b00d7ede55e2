"""APM token mixing inside the stage-2 UNet's spatial cross-attention (Henschel et al. 2024,
Sec. 3.3; reference `controlnet/processor.py` XFormersAttnProcessor and
`controlnet/attention_processor.py`).

Each spatial `attn2` sees exactly 77 context tokens:
    context = text + LayerNorm(Conv1d(93 -> 77, k=3, same)(text ++ image)) * SiLU(alpha)
where the 93 tokens are the Conv1d channels and the context width D is its length. `alpha` is a
per-layer scalar initialised to 0, so an untrained layer attends to the text alone. The
attention itself is plain softmax(Q K^T / sqrt(d)) V, as in the reference (xformers) processor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn


class ApmMixingAttnProcessor:
    """diffusers attention processor: APM token mixing, then standard scaled-dot-product attention."""

    def __init__(self, text_tokens: int):
        self.text_tokens = text_tokens
        self.attention = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        text = encoder_hidden_states[:, : self.text_tokens]
        mixed = attn.conv_ln(attn.conv(encoder_hidden_states))
        context = text + mixed * F.silu(attn.alpha)
        return self.attention(attn, hidden_states, context, attention_mask, temb)


def spatial_cross_attentions(unet: nn.Module) -> list[Attention]:
    """The `attn2` of every spatial Transformer2D in down, mid and up blocks (16 in ModelScope)."""
    blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    return [
        transformer.attn2
        for block in blocks
        for spatial in getattr(block, "attentions", [])
        for transformer in spatial.transformer_blocks
    ]


def install_apm_mixing(unet: nn.Module, text_tokens: int, image_tokens: int) -> int:
    """Adds conv/conv_ln/alpha (checkpoint names) to each spatial attn2; returns the layer count."""
    layers = spatial_cross_attentions(unet)
    for attn in layers:
        context_dim = attn.to_k.in_features
        # padding=1 is "same" for k=3 and exports to every ONNX opset.
        attn.conv = nn.Conv1d(text_tokens + image_tokens, text_tokens, kernel_size=3, padding=1)
        attn.conv_ln = nn.LayerNorm(context_dim)
        attn.alpha = nn.Parameter(torch.zeros(()))
        attn.set_processor(ApmMixingAttnProcessor(text_tokens))
    return len(layers)

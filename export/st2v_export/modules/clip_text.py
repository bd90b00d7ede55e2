"""CLIP text tower with projection, for `st2v eval`'s CLIP text-image score (not a pipeline graph).

StreamingT2V (Henschel et al. 2024) reports the CLIP score: the cosine similarity of the prompt's
CLIP text embedding and each frame's CLIP image embedding. The image half is the APM's image
encoder (OpenCLIP ViT-H-14's pooled, projected embedding); its text half is the same OpenCLIP
model's text tower: all 24 blocks (the stage-1/2 text encoder keeps 23), the final LayerNorm,
the EOT token's features (argmax of the token ids, as OpenCLIP pools) and `text_projection`.
The tower's widths follow the preset's text encoder (one block more) and its image embedding,
so a random preset needs no new dimensions.
"""

from __future__ import annotations

import torch
from open_clip.model import CLIPTextCfg, _build_text_tower
from torch import nn

from ..presets import TEXT_TOKENS, Preset


def clip_text_config(preset: Preset) -> CLIPTextCfg:
    text = preset.text
    return CLIPTextCfg(
        context_length=TEXT_TOKENS,
        vocab_size=text["vocab_size"],
        width=text["hidden_size"],
        heads=text["num_attention_heads"],
        layers=text["num_hidden_layers"] + 1,
        mlp_ratio=text["intermediate_size"] / text["hidden_size"],
    )


def build_clip_text(preset: Preset) -> nn.Module:
    return _build_text_tower(preset.image_embed_dim, clip_text_config(preset))


class ClipTextEncoder(nn.Module):
    """input_ids (B, 77) int64 -> text_embeds (B, E): projected, not normalised."""

    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = tower

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.tower(input_ids)

"""G3 APM resampler: StreamingT2V's `ImgEmbContextResampler` (Henschel et al. 2024, reference
`t2v_enhanced/model/diffusers_conditional/models/controlnet/image_embedder.py`).

The pooled CLIP image embedding of the anchor frame becomes 16 context tokens:
mean over anchor frames -> Linear(E -> inner) -> SiLU -> Linear(inner -> 16 * D) -> (16, D).
"""

from __future__ import annotations

import torch
from torch import nn

ANCHOR_FRAMES = 1


class ApmResampler(nn.Module):
    """image_embeds (N, E) -> image_tokens (N, 16, D); one anchor frame per video."""

    def __init__(self, embed_dim: int, inner_dim: int, context_dim: int, tokens: int):
        super().__init__()
        self.embed_dim = embed_dim
        self.context_dim = context_dim
        self.tokens = tokens
        # Key names follow the checkpoint: resampler.context_embedding.{0,2}.
        self.context_embedding = nn.Sequential(
            nn.Linear(embed_dim, inner_dim),
            nn.SiLU(),
            nn.Linear(inner_dim, tokens * context_dim),
        )

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        per_video = image_embeds.reshape(-1, ANCHOR_FRAMES, self.embed_dim).mean(dim=1)
        return self.context_embedding(per_video).reshape(-1, self.tokens, self.context_dim)

"""G1 text encoder: the ModelScope CLIPTextModel (OpenCLIP-H text tower cut to 23 layers).

The output used by StreamingT2V is `last_hidden_state` after the final LayerNorm, for all 77
tokens (Henschel et al. 2024, reference `pipeline_text_to_video_w_controlnet_synth.py`).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel


def build_clip_text_model(config: dict) -> CLIPTextModel:
    # Eager attention keeps the causal mask a plain additive tensor, which traces to ONNX cleanly.
    return CLIPTextModel(CLIPTextConfig(**config, attn_implementation="eager"))


class TextEncoder(nn.Module):
    """input_ids (B, 77) int64 -> last_hidden_state (B, 77, D)."""

    def __init__(self, model: CLIPTextModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).last_hidden_state

"""G2 APM image encoder: OpenCLIP ViT-H-14 visual tower with its preprocessing inside the graph.

StreamingT2V's `FrozenOpenCLIPImageEmbedder` (reference `image_embedder.py`) maps [-1, 1] frames
through kornia's antialiased bicubic resize (align_corners=True, cubic a=-0.75), to [0, 1], CLIP
mean/std normalisation, then returns the pooled, projected CLS embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.model import CLIPVisionCfg, _build_vision_tower
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_visual(embed_dim: int, vision: dict) -> nn.Module:
    return _build_vision_tower(embed_dim, CLIPVisionCfg(**vision))


def _antialias_kernel(scale: float) -> torch.Tensor:
    """kornia's resize antialias filter for one axis: a normalised Gaussian with
    sigma = (scale - 1) / 2 (at least 0.001) and an odd size of at least 3."""
    sigma = max((scale - 1.0) / 2.0, 0.001)
    size = int(max(2.0 * 2 * sigma, 3))
    if size % 2 == 0:
        size += 1
    x = torch.arange(size, dtype=torch.float64) - size // 2
    kernel = torch.exp(-(x**2) / (2.0 * sigma**2))
    return (kernel / kernel.sum()).to(torch.float32)


class ClipPreprocess(nn.Module):
    """[-1, 1] frames (N, 3, H, W) -> CLIP-normalised (N, 3, S, S)."""

    def __init__(self, input_size: tuple[int, int], output_size: int):
        super().__init__()
        self.output_size = output_size
        height, width = input_size
        self.register_buffer("kernel_h", _antialias_kernel(height / output_size), persistent=False)
        self.register_buffer("kernel_w", _antialias_kernel(width / output_size), persistent=False)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def _blur(self, x: torch.Tensor, kernel: torch.Tensor, vertical: bool) -> torch.Tensor:
        pad = kernel.numel() // 2
        weight = kernel.view(1, 1, -1, 1) if vertical else kernel.view(1, 1, 1, -1)
        padding = (0, 0, pad, pad) if vertical else (pad, pad, 0, 0)
        x = F.pad(x, padding, mode="reflect")
        return F.conv2d(x, weight.expand(3, 1, -1, -1), groups=3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self._blur(images, self.kernel_h, vertical=True)
        x = self._blur(x, self.kernel_w, vertical=False)
        x = F.interpolate(
            x, size=(self.output_size, self.output_size), mode="bicubic", align_corners=True
        )
        x = (x + 1.0) / 2.0
        return (x - self.mean) / self.std


class ImageEncoder(nn.Module):
    """images (N, 3, H, W) in [-1, 1] -> image_embeds (N, E)."""

    def __init__(self, visual: nn.Module, input_size: tuple[int, int], clip_size: int):
        super().__init__()
        self.preprocess = ClipPreprocess(input_size, clip_size)
        self.visual = visual

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(self.preprocess(images))


"""Attribute binding for two-shape captions (TRAINING.md, "What remains", item 5): a training
loss on the stage-1 UNet's spatial cross-attention, of the family of TokenCompose's token loss
(Wang et al., CVPR 2024: each noun's cross-attention held inside its object's segmentation
mask) and Attend-and-Excite (Chefer et al., SIGGRAPH 2023). The toy world gives the masks for
free: a shape's pixels are those of its palette colour in the true frame.

Without it the two shapes of a caption trade colours: trained on the plain diffusion loss, the
set draws both colours right in 0 of 14 held-out two-shape captions. On the motion testbed the
loss at weight 1.0 took one two-shape caption family from 4 to 7 of 8 (TRAINING.md); on the
whole world it gets both colours in up to 5 of 14 but costs stage 1 most of its motion ("The
tenth training"), so models/toy trains without it."""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor
from torch import nn

from ..tokenizer import BOS_ID, EOS_ID, PAD_ID
from . import world
from .data import _token_ids, tokenize

COLOUR_TOLERANCE = 3
"""Largest channel difference (of 255) from a palette colour that counts as the shape's pixel:
the renderer's edges blend into the background, the insides are exact."""
SPECIAL_TOKENS = (BOS_ID, EOS_ID, PAD_ID)


class AttentionCapture:
    """The cross-attention probabilities of one UNet call: `layers` is a list of (probs (B *
    frames * heads, cells, tokens), heads) while `capturing`, None otherwise (sampling)."""

    def __init__(self):
        self.layers: list | None = None

    @contextmanager
    def capturing(self):
        self.layers = []
        try:
            yield self.layers
        finally:
            self.layers = None


class CapturingProcessor(AttnProcessor):
    """diffusers' plain attention that also keeps its probabilities while its capture is on."""

    def __init__(self, capture: AttentionCapture):
        self.capture = capture

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, **kwargs):
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, None)
        if self.capture.layers is not None:
            self.capture.layers.append((probs, attn.heads))
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](out))


def capture_spatial_cross_attention(unet: nn.Module) -> AttentionCapture:
    """Installs a `CapturingProcessor` on every spatial cross-attention (`attn2`) of a UNet3D
    (not the temporal ones, nor `transformer_in`'s) and returns their shared capture."""
    capture = AttentionCapture()
    for name, module in unet.named_modules():
        if name.endswith("attn2") and "temp_attentions" not in name and \
                "transformer_in" not in name:
            module.set_processor(CapturingProcessor(capture))
    return capture


def word_positions(ids: list[int], spec: world.SceneSpec) -> list[list[int]]:
    """Per shape of the caption's scene, the token positions of its colour word and its noun
    (found in caption order, so two shapes of one kind or one colour get their own words)."""
    positions, start = [], 0
    for shape in spec.shapes:
        found = []
        for word in (shape.colour, shape.shape):
            word_ids = [i for i in _token_ids(word) if i not in SPECIAL_TOKENS]
            at = next(k for k in range(start, len(ids)) if ids[k:k + len(word_ids)] == word_ids)
            found += list(range(at, at + len(word_ids)))
            start = at + len(word_ids)
        positions.append(found)
    return positions


def shape_masks(video: torch.Tensor, spec: world.SceneSpec) -> torch.Tensor:
    """video (F, 3, H, W) in [-1, 1] -> (F, shapes, H, W): 1 where a pixel has the shape's
    palette colour."""
    pixels = ((video + 1) * 127.5).round()
    return torch.stack([
        ((pixels - torch.tensor(world.PALETTE[s.colour], dtype=pixels.dtype,
                                device=pixels.device)[:, None, None])
         .abs().amax(dim=1) <= COLOUR_TOLERANCE).to(video.dtype)
        for s in spec.shapes], dim=1)


def binding_loss(videos: torch.Tensor, captions: list[str], layers: list) -> torch.Tensor:
    """The negative log share of each shape's own words (against the other shape's) in the
    attention of its pixels, averaged over the two-shape captions and the captured `layers` at
    2x2 and finer; 0 when the batch has no two-shape caption."""
    total, terms = videos.new_zeros(()), 0
    for b, caption in enumerate(captions):
        spec = world.parse_caption(caption) if caption else None
        if spec is None or len(spec.shapes) != 2:
            continue
        tokens = word_positions(tokenize([caption])[0].tolist(), spec)
        masks = shape_masks(videos[b], spec)  # (F, 2, H, W)
        frames = masks.shape[0]
        for probs, heads in layers:
            cells = probs.shape[1]
            side = int(round(cells ** 0.5))
            if side < 2:
                continue
            per_clip = probs.reshape(-1, frames, heads, cells, probs.shape[-1])[b].mean(dim=1)
            mass = torch.stack([per_clip[..., t].sum(-1) for t in tokens], dim=1)  # (F, 2, HW)
            share = mass / mass.sum(dim=1, keepdim=True).clamp(min=1e-6)
            weight = F.adaptive_avg_pool2d(masks, side).flatten(2)  # (F, 2, HW)
            own = (weight * share.clamp(min=1e-6).log()).sum() / weight.sum().clamp(min=1e-6)
            total, terms = total - own, terms + 1
    return total / max(terms, 1)

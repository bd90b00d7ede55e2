"""Model-set presets: the sizes of every stage-1/2 graph and the pipeline resolutions.

`full` and `full-random` use the real StreamingT2V (ModelScope) architecture; `tiny` keeps every
graph interface (77 text + 16 image tokens, 16-frame chunks, 8 conditioning frames, 4 latent
channels, VAE scale factor 8) with small widths, depths and resolutions so that the whole set is a
few megabytes and runs in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TEXT_TOKENS = 77
IMAGE_TOKENS = 16
CHUNK_FRAMES = 16
COND_FRAMES = 8
LATENT_CHANNELS = 4
VAE_SCALE_FACTOR = 8
VAE_SCALING_FACTOR = 0.18215
CLIP_VOCAB_SIZE = 49408


@dataclass(frozen=True)
class Resolution:
    height: int
    width: int


@dataclass(frozen=True)
class Preset:
    name: str
    text: dict
    """transformers CLIPTextConfig keyword arguments (stage-1/2 text encoder)."""
    vision: dict
    """open_clip CLIPVisionCfg keyword arguments (APM image encoder)."""
    image_embed_dim: int
    unet: dict
    """diffusers UNet3DConditionModel keyword arguments (stage 1, stage 2 and the CAM encoder)."""
    merger_head_dim: int
    merger_norm_groups: int
    resampler_inner_dim: int
    cond_embedding_channels: tuple[int, ...]
    vae: dict
    """diffusers AutoencoderKL keyword arguments."""
    stage1: Resolution
    stage2: Resolution
    stage3: Resolution
    stage3_content: Resolution
    seeded_random: bool
    """True when weights are seeded random, False when they come from checkpoints."""
    tolerance: dict[str, float] = field(default_factory=dict)
    """Per-role parity tolerance overrides (max abs error, fp32)."""

    @property
    def context_dim(self) -> int:
        return self.text["hidden_size"]


_FULL_TEXT = dict(
    vocab_size=CLIP_VOCAB_SIZE,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=TEXT_TOKENS,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
    projection_dim=512,
)

# open_clip model_configs/ViT-H-14.json, vision tower.
_FULL_VISION = dict(image_size=224, layers=32, width=1280, head_width=80, patch_size=14)

_FULL_UNET = dict(
    in_channels=LATENT_CHANNELS,
    out_channels=LATENT_CHANNELS,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=1024,
    attention_head_dim=64,
)

_FULL_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=LATENT_CHANNELS,
    norm_num_groups=32,
    scaling_factor=VAE_SCALING_FACTOR,
)

_FULL_RESOLUTIONS = dict(
    stage1=Resolution(256, 256),
    stage2=Resolution(256, 256),
    stage3=Resolution(720, 1280),
    stage3_content=Resolution(720, 720),
)


def _full(name: str, seeded_random: bool) -> Preset:
    return Preset(
        name=name,
        text=_FULL_TEXT,
        vision=_FULL_VISION,
        image_embed_dim=1024,
        unet=_FULL_UNET,
        merger_head_dim=64,
        merger_norm_groups=32,
        resampler_inner_dim=1280,
        cond_embedding_channels=(32, 96, 256, 512),
        vae=_FULL_VAE,
        seeded_random=seeded_random,
        **_FULL_RESOLUTIONS,
    )


TINY = Preset(
    name="tiny",
    text=dict(
        vocab_size=CLIP_VOCAB_SIZE,
        # The 49408-token embedding dominates the set's size: keep the width small.
        hidden_size=16,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=TEXT_TOKENS,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        projection_dim=16,
    ),
    vision=dict(image_size=32, layers=2, width=32, head_width=16, patch_size=8, mlp_ratio=2.0),
    image_embed_dim=32,
    unet=dict(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=2,
        norm_num_groups=4,
        norm_eps=1e-5,
        cross_attention_dim=16,
        attention_head_dim=8,
    ),
    merger_head_dim=8,
    merger_norm_groups=4,
    resampler_inner_dim=64,
    cond_embedding_channels=(4, 8, 8, 16),
    vae=dict(
        _FULL_VAE,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
    ),
    stage1=Resolution(64, 64),
    stage2=Resolution(64, 64),
    # Enhancer latent 10x16: H 10 -> 6 -> 4 -> 3 -> 4 -> 6 -> 10 exercises its asymmetric pad/crop.
    stage3=Resolution(80, 128),
    stage3_content=Resolution(80, 80),
    seeded_random=True,
)

PRESETS: dict[str, Preset] = {
    "tiny": TINY,
    "full-random": _full("full-random", seeded_random=True),
    "full": _full("full", seeded_random=False),
}


class UnknownPresetError(ValueError):
    def __init__(self, name: str):
        super().__init__(f"unknown preset {name!r}: expected one of {sorted(PRESETS)}")


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownPresetError(name) from None

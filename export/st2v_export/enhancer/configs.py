"""Architecture configurations of the enhancer graphs (MS-Vid2Vid-XL, `damo/Video-to-Video`).

`full` values are the constructor defaults the reference uses: `Vid2VidSDUNet()`
(`video_to_video_model.py`), the SD-2.1 first stage `AutoencoderKL` (`utils/config.py`,
`cfg.auto_encoder`) and the OpenCLIP ViT-H-14 text tower (`open_clip/model_configs/ViT-H-14.json`).
`tiny` keeps every structural feature (4 resolution levels, asymmetric down/up-sampling,
spatial + temporal transformers, 8x VAE factor, penultimate text layer) at small widths.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..presets import (
    CLIP_VOCAB_SIZE,
    LATENT_CHANNELS,
    TEXT_TOKENS,
    VAE_SCALE_FACTOR,
    Preset,
    PresetError,
    Resolution,
    get_preset,
)

CHUNK_FRAMES = 24
"""Frames per enhancer chunk (`chunk_size=24` of the randomized-blending sampler)."""


@dataclass(frozen=True)
class UnetConfig:
    """Keyword arguments of modelscope's `Vid2VidSDUNet` that differ between presets."""

    dim: int
    dim_mult: tuple[int, ...]
    num_heads: int
    head_dim: int
    num_res_blocks: int
    context_dim: int

    def constructor_kwargs(self) -> dict:
        return {
            "in_dim": LATENT_CHANNELS,
            "out_dim": LATENT_CHANNELS,
            "dim": self.dim,
            "y_dim": self.context_dim,
            "context_dim": self.context_dim,
            "dim_mult": list(self.dim_mult),
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "num_res_blocks": self.num_res_blocks,
            "use_checkpoint": False,
        }


@dataclass(frozen=True)
class VaeConfig:
    """`ddconfig` of the LDM `AutoencoderKL` (SD-2.1 first stage)."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    embed_dim: int = LATENT_CHANNELS

    def constructor_kwargs(self) -> dict:
        ddconfig = {
            "double_z": True,
            "z_channels": LATENT_CHANNELS,
            "resolution": 256,
            "in_channels": 3,
            "out_ch": 3,
            "ch": self.ch,
            "ch_mult": list(self.ch_mult),
            "num_res_blocks": self.num_res_blocks,
            "attn_resolutions": [],
            "dropout": 0.0,
        }
        return {"ddconfig": ddconfig, "embed_dim": self.embed_dim}


@dataclass(frozen=True)
class TextConfig:
    """OpenCLIP `TextTransformer`; the graph runs all but the last block (SD-2 "penultimate")."""

    width: int
    heads: int
    layers: int
    output_dim: int

    def constructor_kwargs(self) -> dict:
        return {
            "context_length": TEXT_TOKENS,
            # Every preset keeps the real vocabulary: real tokenizer ids must be valid inputs.
            "vocab_size": CLIP_VOCAB_SIZE,
            "width": self.width,
            "heads": self.heads,
            "layers": self.layers,
            "output_dim": self.output_dim,
        }


@dataclass(frozen=True)
class EnhancerConfig:
    unet: UnetConfig
    vae: VaeConfig
    text: TextConfig
    preset: str
    """The model-set preset; its stage-3 resolution fixes the enhancer's latent size."""
    chunk_frames: int = CHUNK_FRAMES
    example_batch: int = 2
    """Batch of the traced example: 2 (CFG) so the exporter cannot specialise the axis to 1."""
    parity_batches: list[int] = field(default_factory=lambda: [1, 3])
    tolerance: float = 1e-4
    stage3: Resolution | None = None
    """The stage-3 frame size; None: the `stage3` of the registered preset named `preset`."""

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of a stage-3 frame, black side bars included (1280x720 for the real model)."""
        resolution = self.stage3 or get_preset(self.preset).stage3
        return resolution.height, resolution.width

    @property
    def latent_size(self) -> tuple[int, int]:
        """(h, w); the UNet's padded down-sampling makes the graph resolution-specific."""
        height, width = self.image_size
        return height // VAE_SCALE_FACTOR, width // VAE_SCALE_FACTOR


TINY_TEXT_WIDTH = get_preset("tiny").context_dim
"""The tiny text width of the whole model set, also the tiny UNet's cross-attention width."""

# The reference's GroupNorm(32, C) makes 32 the smallest width: tiny keeps every level at 32
# channels (four levels, two heads of 16) to stay small.
TINY = EnhancerConfig(
    unet=UnetConfig(
        dim=32,
        dim_mult=(1, 1, 1, 1),
        num_heads=2,
        head_dim=16,
        num_res_blocks=1,
        context_dim=TINY_TEXT_WIDTH,
    ),
    vae=VaeConfig(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1),
    text=TextConfig(width=TINY_TEXT_WIDTH, heads=2, layers=2, output_dim=TINY_TEXT_WIDTH),
    preset="tiny",
)

FULL = EnhancerConfig(
    unet=UnetConfig(
        dim=320,
        dim_mult=(1, 2, 4, 4),
        num_heads=8,
        head_dim=64,
        num_res_blocks=2,
        context_dim=1024,
    ),
    vae=VaeConfig(ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2),
    text=TextConfig(width=1024, heads=16, layers=24, output_dim=1024),
    preset="full",
    tolerance=1e-3,
)

ARCHITECTURES = {"tiny": TINY, "full": FULL}
"""The enhancer widths by `Preset.enhancer` (presets.ENHANCER_ARCHITECTURES)."""


def check_stage3(preset: Preset) -> None:
    """PresetError unless the UNet's skip connections line up at the preset's stage-3 size.

    Each of its three Downsample convolutions pads H by 2 and W by 1 (h -> (h + 1) // 2 + 1,
    w -> ceil(w / 2)) and each Upsample doubles then crops H by 2, so the latent height must be
    2 more than a multiple of 8 and the latent width a multiple of 8: frames of 64m + 16 by 64n
    pixels (80x128 tiny, 720x1280 real)."""
    height, width = preset.stage3.height, preset.stage3.width
    latent_h, latent_w = height // VAE_SCALE_FACTOR, width // VAE_SCALE_FACTOR
    if latent_h % 8 != 2 or latent_w % 8 != 0:
        raise PresetError(
            f"preset {preset.name!r}: the enhancer cannot run at stage3 {height}x{width}: "
            "the height must be 64m + 16 (80, 144, ..., 720) and the width a multiple of 64 "
            "(128, ..., 1280) for its down- and up-sampling to line up"
        )


def config_for(preset: Preset) -> EnhancerConfig:
    """The enhancer of any preset, custom ones included: its architecture's widths at the
    preset's stage-3 resolution (PresetError when that resolution does not suit the UNet)."""
    check_stage3(preset)
    base = ARCHITECTURES[preset.enhancer]
    return dataclasses.replace(base, preset=preset.name, stage3=preset.stage3)


def architecture_dimensions(architecture: str) -> dict:
    """The enhancer widths as JSON values (the manifest's `preset_dimensions.enhancer`)."""
    config = ARCHITECTURES[architecture]

    def as_json(part) -> dict:
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(part).items()
        }

    return {
        "architecture": architecture,
        "unet": as_json(config.unet),
        "vae": as_json(config.vae),
        "text": as_json(config.text),
    }

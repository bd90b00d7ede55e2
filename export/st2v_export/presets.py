"""Model-set presets: the sizes of every stage-1/2 graph and the pipeline resolutions.

`full` and `full-random` use the real StreamingT2V (ModelScope) architecture; `tiny` keeps every
graph interface (77 text + 16 image tokens, 16-frame chunks, 8 conditioning frames, 4 latent
channels, VAE scale factor 8) with small widths, depths and resolutions so that the whole set is a
few megabytes and runs in milliseconds.

Any other preset is a *custom* preset: a `Preset` built in Python (usually `preset_from_dict`,
which starts from a registered preset and overrides some of its dimensions) or read from a JSON
file (`load_preset_file`, the command line's `--preset-file`). Its name follows
`PRESET_NAME_PATTERN`; the manifest records the name and every dimension (`preset_dimensions`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

TEXT_TOKENS = 77
IMAGE_TOKENS = 16
CHUNK_FRAMES = 16
COND_FRAMES = 8
LATENT_CHANNELS = 4
VAE_SCALE_FACTOR = 8
VAE_SCALING_FACTOR = 0.18215
CLIP_VOCAB_SIZE = 49408

PRESET_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
"""Preset names: the same pattern as `preset` in models/manifest.schema.json."""
PRESET_NAME_MAX_LENGTH = 64
BUILTIN_PRESETS = ("tiny", "full-random", "full")
ENHANCER_ARCHITECTURES = ("tiny", "full")
"""The enhancer (stage 3) widths a preset can use; its resolution is the preset's `stage3`."""
STAGE2_PADDINGS = ("zeros", "circular")
"""How the spatial convolutions of the stage-2 UNet and the CAM pad a frame: `zeros` as
ModelScope's UNet3D; `circular` wraps each edge to the opposite one, for a world whose frames
wrap (the toy world: a shape leaving on the right enters on the left)."""

_NAME = re.compile(PRESET_NAME_PATTERN)


class PresetError(ValueError):
    """An invalid preset name or definition."""


def check_preset_name(name: object) -> str:
    """`name` when it is a valid preset name, else PresetError saying what a name looks like."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > PRESET_NAME_MAX_LENGTH:
        raise PresetError(
            f"invalid preset name {name!r}: expected 1 to {PRESET_NAME_MAX_LENGTH} characters "
            "from a-z, 0-9, '.', '_' and '-', starting with a letter or a digit"
        )
    return name


@dataclass(frozen=True)
class Resolution:
    height: int
    width: int

    def as_dict(self) -> dict[str, int]:
        return {"height": self.height, "width": self.width}


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
    enhancer: str = "tiny"
    """Enhancer widths, one of ENHANCER_ARCHITECTURES; checkpoint weights need `full`."""
    stage2_padding: str = "zeros"
    """One of STAGE2_PADDINGS; the real checkpoints (preset `full`) were trained with `zeros`."""

    def __post_init__(self):
        check_preset_name(self.name)
        if self.enhancer not in ENHANCER_ARCHITECTURES:
            raise PresetError(
                f"preset {self.name!r}: unknown enhancer {self.enhancer!r}, "
                f"expected one of {list(ENHANCER_ARCHITECTURES)}"
            )
        if self.stage2_padding not in STAGE2_PADDINGS:
            raise PresetError(
                f"preset {self.name!r}: unknown stage2_padding {self.stage2_padding!r}, "
                f"expected one of {list(STAGE2_PADDINGS)}"
            )
        if not self.seeded_random and self.stage2_padding != "zeros":
            raise PresetError(
                f"preset {self.name!r}: checkpoint weights (seeded_random false) were trained "
                f"with stage2_padding 'zeros', got {self.stage2_padding!r}"
            )
        if not self.seeded_random and self.enhancer != "full":
            raise PresetError(
                f"preset {self.name!r}: checkpoint weights (seeded_random false) need enhancer 'full'"
            )
        for stage, resolution in self.resolutions().items():
            for side, size in resolution.as_dict().items():
                if not isinstance(size, int) or size <= 0 or size % VAE_SCALE_FACTOR:
                    raise PresetError(
                        f"preset {self.name!r}: {stage}.{side} must be a positive multiple of "
                        f"the VAE scale factor {VAE_SCALE_FACTOR}, got {size!r}"
                    )
        content, frame = self.stage3_content, self.stage3
        if content.height > frame.height or content.width > frame.width:
            raise PresetError(
                f"preset {self.name!r}: stage3_content {content.height}x{content.width} is larger "
                f"than the stage3 frame {frame.height}x{frame.width}"
            )

    @property
    def context_dim(self) -> int:
        return self.text["hidden_size"]

    def resolutions(self) -> dict[str, Resolution]:
        return {
            "stage1": self.stage1,
            "stage2": self.stage2,
            "stage3": self.stage3,
            "stage3_content": self.stage3_content,
        }

    def dimensions(self) -> dict:
        """The stage-1/2 architecture and the resolutions, as JSON values (the manifest's
        `preset_dimensions`, without the enhancer's widths, which st2v_export.enhancer adds).
        `stage2_padding` only when it is not ModelScope's `zeros`, so the sets of the built-in
        presets keep their manifests."""
        padding = {} if self.stage2_padding == "zeros" else {"stage2_padding": self.stage2_padding}
        return {
            "text": _json_value(self.text),
            "vision": _json_value(self.vision),
            "image_embed_dim": self.image_embed_dim,
            "unet": _json_value(self.unet),
            "merger_head_dim": self.merger_head_dim,
            "merger_norm_groups": self.merger_norm_groups,
            "resampler_inner_dim": self.resampler_inner_dim,
            "cond_embedding_channels": list(self.cond_embedding_channels),
            "vae": _json_value(self.vae),
            "resolutions": {stage: r.as_dict() for stage, r in self.resolutions().items()},
            **padding,
        }


def _json_value(value):
    """Tuples become lists, recursively (JSON has no tuples)."""
    if isinstance(value, Mapping):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    return value


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
        enhancer="full",
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


class UnknownPresetError(PresetError):
    def __init__(self, name: str):
        super().__init__(
            f"unknown preset {name!r}: expected one of {sorted(PRESETS)}, "
            "or a custom preset (--preset-file, or st2v_export.presets.register_preset)"
        )


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownPresetError(name) from None


def resolve_preset(preset: str | Preset) -> Preset:
    """A Preset as given, or the registered preset of that name."""
    return preset if isinstance(preset, Preset) else get_preset(preset)


def register_preset(preset: Preset) -> Preset:
    """Makes a custom preset known by name (to `get_preset` and so to `export_model_set`).
    Registering the same definition again is a no-op; another one under a taken name is refused."""
    known = PRESETS.get(preset.name)
    if known is not None and known != preset:
        what = "built in" if preset.name in BUILTIN_PRESETS else "already registered"
        raise PresetError(f"preset {preset.name!r} is {what} with other dimensions")
    PRESETS[preset.name] = preset
    return preset


_KWARGS_FIELDS = ("text", "vision", "unet", "vae")
_RESOLUTION_FIELDS = ("stage1", "stage2", "stage3", "stage3_content")
_INT_FIELDS = ("image_embed_dim", "merger_head_dim", "merger_norm_groups", "resampler_inner_dim")
_CUSTOM_KEYS = (
    ("name", "base", "seeded_random", "enhancer", "stage2_padding", "cond_embedding_channels",
     "tolerance")
    + _KWARGS_FIELDS
    + _RESOLUTION_FIELDS
    + _INT_FIELDS
)


def _tuples(value):
    """Lists become tuples, as in the built-in presets' keyword arguments."""
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def preset_from_dict(definition: Mapping) -> Preset:
    """A custom preset: `name`, `base` (a registered preset, default `tiny`) and the dimensions
    that differ from the base. `text`, `vision`, `unet`, `vae` and `tolerance` are merged key by
    key into the base's; resolutions are `{"height": H, "width": W}`; the rest replace the base's
    value. Example: `{"name": "toy", "unet": {"layers_per_block": 1}, "stage3": {"height": 64,
    "width": 96}, "stage3_content": {"height": 64, "width": 64}}`."""
    if not isinstance(definition, Mapping):
        raise PresetError(f"a custom preset is a JSON object, got {type(definition).__name__}")
    name = check_preset_name(definition.get("name"))
    if name in BUILTIN_PRESETS:
        raise PresetError(f"preset name {name!r} is built in: choose another for a custom preset")
    unknown = sorted(set(definition) - set(_CUSTOM_KEYS))
    if unknown:
        raise PresetError(
            f"custom preset {name!r}: unknown key(s) {unknown}, expected some of {sorted(_CUSTOM_KEYS)}"
        )
    base = get_preset(definition.get("base", "tiny"))
    changes = {}
    for key, value in definition.items():
        if key in ("name", "base"):
            continue
        if key in _KWARGS_FIELDS or key == "tolerance":
            if not isinstance(value, Mapping):
                raise PresetError(f"custom preset {name!r}: {key} must be an object, got {value!r}")
            changes[key] = {**getattr(base, key), **{k: _tuples(v) for k, v in value.items()}}
        elif key in _RESOLUTION_FIELDS:
            if not isinstance(value, Mapping) or set(value) != {"height", "width"}:
                raise PresetError(
                    f"custom preset {name!r}: {key} must be {{\"height\": H, \"width\": W}}, got {value!r}"
                )
            changes[key] = Resolution(value["height"], value["width"])
        elif key in _INT_FIELDS:
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise PresetError(f"custom preset {name!r}: {key} must be a positive integer, got {value!r}")
            changes[key] = value
        elif key == "cond_embedding_channels":
            if not isinstance(value, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in value
            ):
                raise PresetError(f"custom preset {name!r}: {key} must be a list of positive integers")
            changes[key] = tuple(value)
        elif key == "seeded_random":
            if not isinstance(value, bool):
                raise PresetError(f"custom preset {name!r}: seeded_random must be true or false")
            changes[key] = value
        else:
            changes[key] = value
    return dataclasses.replace(base, name=name, **changes)


def load_preset_file(path: Path) -> Preset:
    """A custom preset from a JSON file holding `preset_from_dict`'s object."""
    path = Path(path)
    try:
        definition = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PresetError(f"cannot read the preset file {path}: {error}") from None
    try:
        return preset_from_dict(definition)
    except PresetError as error:
        raise PresetError(f"{path}: {error}") from None

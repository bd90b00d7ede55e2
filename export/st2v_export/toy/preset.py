"""The `toy` preset: the StreamingT2V model set (Henschel et al. 2024) sized for the toy world.

Every graph keeps the interfaces of the real set (77 text + 16 image tokens, 16-frame chunks,
8 conditioning frames, 4 latent channels, VAE factor 8, four UNet levels with two layers each);
only widths and resolutions shrink. It is a custom preset over `tiny` (`presets.preset_from_dict`).

Why these sizes (TRAINING.md has the measurements):
- stage 1/2 at 64x64 with 8x8 latents: fitted on a few frames, this VAE reconstructs the
  shapes with sharp corners in the right colours through 8x8 latents, and at equal compute a
  64x64 VAE learns far faster than a 128x128 one (TRAINING.md, "Resolution"); 64x64 is the
  world's native size, and 128x128 would cost four times the VAE and UNet compute.
- text width 16: the 49408-token embedding is 99 % of a text graph and the set has two of them
  (text_encoder, clip_text_encoder), 3.2 MB each; the toy captions use about 45 tokens.
  Three layers for the stage-1/2 text encoder, which is the first three of the four blocks of
  the CLIP text tower (`clip_text_encoder`), as ModelScope's is OpenCLIP-H's penultimate layer.
- vision: 64x64 input (no resize: the preprocessing's blur and bicubic are identities), 8x8
  patches (64 tokens), width 64, three layers; image_embed_dim 32 is the CLIP space.
- VAE (Kingma & Welling 2014; Rombach et al. 2022): widths 16, 32, 64, 64 (narrow where the
  frames are large, which is where its compute goes), one layer per block.
- UNets: widths 16 on all four levels (8x8 down to 1x1 latents), 4 attention heads; together
  with the fixed graphs (enhancer, RAFT, tokenizers: about 15 MB) the set stays near 30 MB.
  The UNet, CAM, merger, resampler and stage-3 sizes can still change without retraining the
  VAE and the CLIP pair: those depend only on `text`, `vision`, `image_embed_dim` and `vae`.
- stage 2 pads its spatial convolutions circularly (`stage2_padding`; ModelScope's are zeros):
  the world wraps a shape that leaves the frame to the opposite edge, and zero-padded
  convolutions could not carry it across (TRAINING.md, "The eighth training").
"""

from __future__ import annotations

import copy

from ..presets import Preset, preset_from_dict, register_preset

TOY_PRESET_NAME = "toy"

TOY_PRESET: dict = {
    "name": TOY_PRESET_NAME,
    "base": "tiny",
    "text": {
        "hidden_size": 16,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "projection_dim": 16,
    },
    "vision": {
        "image_size": 64,
        "patch_size": 8,
        "width": 64,
        "layers": 3,
        "head_width": 16,
        "mlp_ratio": 2.0,
    },
    "image_embed_dim": 32,
    "unet": {
        "block_out_channels": [16, 16, 16, 16],
        "norm_num_groups": 4,
        "cross_attention_dim": 16,
        "attention_head_dim": 4,
    },
    "vae": {
        "block_out_channels": [16, 32, 64, 64],
        "layers_per_block": 1,
        "norm_num_groups": 8,
    },
    "stage1": {"height": 64, "width": 64},
    "stage2": {"height": 64, "width": 64},
    "stage2_padding": "circular",
}
"""`preset_from_dict`'s definition; the same object as JSON is a `--preset-file`."""


def toy_preset_definition() -> dict:
    """A copy of TOY_PRESET (callers may edit it to try variants)."""
    return copy.deepcopy(TOY_PRESET)


def toy_preset(register: bool = False) -> Preset:
    """The toy preset; `register` also makes it known by name to `get_preset`/`export_model_set`."""
    preset = preset_from_dict(TOY_PRESET)
    return register_preset(preset) if register else preset

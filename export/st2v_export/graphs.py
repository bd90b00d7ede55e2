"""The stage-1/2 graph specs of a preset (G1-G7), plus the enhancer's (G8-G10) when available."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import WeightSource
from .components import Components
from .modules.cam import CamCondEncoderGraph
from .modules.clip_text import ClipTextEncoder
from .modules.raft import RaftFlow, raft_config
from .modules.image import ImageEncoder
from .modules.text import TextEncoder
from .modules.unet3d import Stage1Unet, skip_channels
from .modules.vae import VaeDecoder, VaeEncoder
from .presets import (
    CHUNK_FRAMES,
    CLIP_VOCAB_SIZE,
    COND_FRAMES,
    IMAGE_TOKENS,
    LATENT_CHANNELS,
    TEXT_TOKENS,
    VAE_SCALE_FACTOR,
    Preset,
)
from .roles import role_interface
from .spec import GraphSpec

EXAMPLE_BATCH = 2
PARITY_BATCHES = [1, 3]
BATCH = "batch"
FRAMES = "frames"
BATCH_COND_FRAMES = "batch_cond_frames"
"""B * 8: the CAM residuals' frame-batch axis."""

STAGE2_ROLES = (
    "text_encoder",
    "image_encoder",
    "apm_resampler",
    "cam_cond_encoder",
    "cam",
    "unet",
    "vae_decoder",
    "vae_encoder",
    "stage1_unet",
    "clip_text_encoder",
    "raft",
)
EVAL_ROLES = ("clip_text_encoder", "raft")
"""Graphs no generation runs: `st2v eval` uses them (the CLIP score)."""


class ExampleInputs:
    """Seeded example tensors for the parity checks."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def normal(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator)

    def uniform(self, *shape: int) -> torch.Tensor:
        """Pixels in [-1, 1]."""
        return torch.rand(shape, generator=self.generator) * 2.0 - 1.0

    def integers(self, high: int, *shape: int) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=self.generator, dtype=torch.int64)


def _batch_axes(names: list[str], axis_name: str = BATCH) -> dict[str, dict[int, str]]:
    return {name: {0: axis_name} for name in names}


class Stage2Graphs:
    def __init__(self, preset: Preset, seed: int, weights: WeightSource | None):
        self.preset = preset
        self.components = Components(preset, seed, weights)
        self.inputs = ExampleInputs(seed)
        self.latent_h = preset.stage2.height // VAE_SCALE_FACTOR
        self.latent_w = preset.stage2.width // VAE_SCALE_FACTOR

    def spec(self, role: str) -> GraphSpec:
        return getattr(self, role)()

    def _spec(self, role: str, module, inputs: dict, axes: dict, **extra) -> GraphSpec:
        tolerance = self.preset.tolerance.get(role, 1e-4)
        return GraphSpec(role, module.eval(), inputs, axes, tolerance, **extra)

    def _all_batch(self, role: str, axis_name: str = BATCH) -> dict[str, dict[int, str]]:
        interface = role_interface(role)
        return _batch_axes(interface.input_names + interface.output_names, axis_name)

    def text_encoder(self) -> GraphSpec:
        ids = self.inputs.integers(CLIP_VOCAB_SIZE, EXAMPLE_BATCH, TEXT_TOKENS)
        return self._spec(
            "text_encoder",
            TextEncoder(self.components.text_model),
            {"input_ids": ids},
            self._all_batch("text_encoder"),
            parity_batches=PARITY_BATCHES,
        )

    def clip_text_encoder(self) -> GraphSpec:
        ids = self.inputs.integers(CLIP_VOCAB_SIZE, EXAMPLE_BATCH, TEXT_TOKENS)
        return self._spec(
            "clip_text_encoder",
            ClipTextEncoder(self.components.clip_text),
            {"input_ids": ids},
            self._all_batch("clip_text_encoder"),
            parity_batches=PARITY_BATCHES,
        )

    def raft(self) -> GraphSpec:
        size = raft_config(self.preset.enhancer).size
        images = {name: self.inputs.uniform(1, 3, size, size) for name in ("image1", "image2")}
        return self._spec(
            "raft",
            RaftFlow(self.components.raft),
            images,
            self._all_batch("raft"),
            parity_batches=[2],
        )

    def image_encoder(self) -> GraphSpec:
        size = (self.preset.stage2.height, self.preset.stage2.width)
        module = ImageEncoder(self.components.visual, size, self.preset.vision["image_size"])
        return self._spec(
            "image_encoder",
            module,
            {"images": self.inputs.uniform(EXAMPLE_BATCH, 3, *size)},
            self._all_batch("image_encoder", FRAMES),
            parity_batches=PARITY_BATCHES,
        )

    def apm_resampler(self) -> GraphSpec:
        embeds = self.inputs.normal(EXAMPLE_BATCH, self.preset.image_embed_dim)
        return self._spec(
            "apm_resampler",
            self.components.resampler,
            {"image_embeds": embeds},
            self._all_batch("apm_resampler", FRAMES),
            parity_batches=PARITY_BATCHES,
        )

    def cam_cond_encoder(self) -> GraphSpec:
        frames = self.inputs.uniform(COND_FRAMES, 3, self.preset.stage2.height, self.preset.stage2.width)
        return self._spec(
            "cam_cond_encoder", CamCondEncoderGraph(self.components.cam), {"cond_frames": frames}, {}
        )

    def _latents(self, frames: int) -> torch.Tensor:
        return self.inputs.normal(EXAMPLE_BATCH, LATENT_CHANNELS, frames, self.latent_h, self.latent_w)

    def _timesteps(self) -> torch.Tensor:
        return self.inputs.integers(1000, EXAMPLE_BATCH)

    def _context(self, tokens: int) -> torch.Tensor:
        return self.inputs.normal(EXAMPLE_BATCH, tokens, self.preset.context_dim)

    def cam(self) -> GraphSpec:
        c0 = self.preset.unet["block_out_channels"][0]
        inputs = {
            "sample": self._latents(COND_FRAMES),
            "timestep": self._timesteps(),
            "encoder_hidden_states": self._context(TEXT_TOKENS),
            "cond_features": self.inputs.normal(COND_FRAMES, c0, self.latent_h, self.latent_w),
        }
        outputs = role_interface("cam").output_names
        axes = _batch_axes(["sample", "timestep", "encoder_hidden_states"])
        axes |= _batch_axes(outputs, BATCH_COND_FRAMES)
        return self._spec("cam", self.components.cam, inputs, axes, parity_batches=PARITY_BATCHES)

    def _cam_residuals(self) -> dict[str, torch.Tensor]:
        unet = self.preset.unet
        widths = unet["block_out_channels"]
        per_level = unet["layers_per_block"] + 1
        shapes = [
            # Skip i comes after i // per_level downsamplers (stem, layers, then the downsampler).
            (width, 2 ** (index // per_level))
            for index, width in enumerate(skip_channels(widths, unet["layers_per_block"]))
        ]
        shapes.append((widths[-1], 2 ** (len(widths) - 1)))
        names = [f"down_res_{index}" for index in range(len(shapes) - 1)] + ["mid_res"]
        return {
            name: self.inputs.normal(
                EXAMPLE_BATCH * COND_FRAMES, width, self.latent_h // scale, self.latent_w // scale
            )
            for name, (width, scale) in zip(names, shapes, strict=True)
        }

    def unet(self) -> GraphSpec:
        residuals = self._cam_residuals()
        inputs = {
            "sample": self._latents(CHUNK_FRAMES),
            "timestep": self._timesteps(),
            "encoder_hidden_states": self._context(TEXT_TOKENS + IMAGE_TOKENS),
            **residuals,
        }
        axes = _batch_axes(["sample", "timestep", "encoder_hidden_states", "noise_pred"])
        axes |= _batch_axes(list(residuals), BATCH_COND_FRAMES)
        return self._spec(
            "unet", self.components.streaming_unet, inputs, axes, parity_batches=PARITY_BATCHES
        )

    def stage1_unet(self) -> GraphSpec:
        latent_h = self.preset.stage1.height // VAE_SCALE_FACTOR
        latent_w = self.preset.stage1.width // VAE_SCALE_FACTOR
        inputs = {
            "sample": self.inputs.normal(EXAMPLE_BATCH, LATENT_CHANNELS, CHUNK_FRAMES, latent_h, latent_w),
            "timestep": self._timesteps(),
            "encoder_hidden_states": self._context(TEXT_TOKENS),
        }
        return self._spec(
            "stage1_unet",
            Stage1Unet(self.components.stage1_unet),
            inputs,
            self._all_batch("stage1_unet"),
            parity_batches=PARITY_BATCHES,
        )

    def vae_decoder(self) -> GraphSpec:
        latents = self.inputs.normal(EXAMPLE_BATCH, LATENT_CHANNELS, self.latent_h, self.latent_w)
        return self._spec(
            "vae_decoder",
            VaeDecoder(self.components.vae),
            {"latents": latents},
            self._all_batch("vae_decoder", FRAMES),
            parity_batches=PARITY_BATCHES,
        )

    def vae_encoder(self) -> GraphSpec:
        images = self.inputs.uniform(EXAMPLE_BATCH, 3, self.preset.stage2.height, self.preset.stage2.width)
        return self._spec(
            "vae_encoder",
            VaeEncoder(self.components.vae),
            {"images": images},
            self._all_batch("vae_encoder", FRAMES),
            parity_batches=PARITY_BATCHES,
        )


def stage2_specs(
    preset: Preset, seed: int, weights: WeightSource | None, roles: list[str] | None = None
):
    """Yields the specs one at a time, so a full-size export holds one graph's models at once."""
    graphs = Stage2Graphs(preset, seed, weights)
    for role in roles if roles is not None else STAGE2_ROLES:
        yield graphs.spec(role)


def enhancer_specs(preset: Preset, seed: int, sources: dict[str, Path] | None, trained=None):
    """The enhancer graphs (part B), or none while `st2v_export.enhancer` does not exist;
    `trained`: a weight source with trained enhancer networks (`enhancer.graphs.load_trained`)."""
    try:
        from .enhancer import enhancer_graphs
    except ImportError:
        return []
    return enhancer_graphs(preset, seed, sources, trained)

"""GraphSpecs of the enhancer roles (G8-G10) of a preset: `tiny`, `full-random`, `full` or a
custom one (its `enhancer` architecture at its stage-3 resolution)."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from open_clip.transformer import TextTransformer
from torch import nn

from ..presets import Preset, resolve_preset
from ..spec import GraphSpec
from .configs import LATENT_CHANNELS, TEXT_TOKENS, EnhancerConfig, config_for
from .modules import (
    EnhancerTextEncoder,
    EnhancerUnet,
    EnhancerVaeDecoder,
    EnhancerVaeEncoder,
    build_autoencoder,
    build_text_tower,
    build_unet,
)
from .weights import ENHANCER_SOURCE_FILES, load_network, resolve_source_files, seeded_network

SOT_TOKEN = 49406
EOT_TOKEN = 49407
TRAIN_TIMESTEPS = 1000


@dataclass
class EnhancerNetworks:
    text_tower: TextTransformer
    unet: nn.Module
    autoencoder: nn.Module


def random_networks(config: EnhancerConfig, seed: int) -> EnhancerNetworks:
    """Seeded random weights; each network has its own seed so presets stay comparable."""
    return EnhancerNetworks(
        text_tower=seeded_network(lambda: build_text_tower(config.text), seed),
        unet=seeded_network(lambda: build_unet(config.unet), seed + 1),
        autoencoder=seeded_network(lambda: build_autoencoder(config.vae), seed + 2),
    )


def _restore_causal_mask(tower: nn.Module) -> None:
    tower.attn_mask = tower.build_causal_mask()


def pretrained_networks(
    config: EnhancerConfig, sources: Mapping[str, pathlib.Path] | None
) -> EnhancerNetworks:
    paths = resolve_source_files(sources)
    files = ENHANCER_SOURCE_FILES
    return EnhancerNetworks(
        text_tower=load_network(
            lambda: build_text_tower(config.text),
            paths["enhancer_text"],
            files["enhancer_text"],
            restore_buffers=_restore_causal_mask,
        ),
        unet=load_network(
            lambda: build_unet(config.unet), paths["enhancer_unet"], files["enhancer_unet"]
        ),
        autoencoder=load_network(
            lambda: build_autoencoder(config.vae), paths["enhancer_vae"], files["enhancer_vae"]
        ),
    )


TRAINED_NETWORK_NAMES = ("enhancer_text_encoder", "enhancer_unet", "enhancer_vae")


def load_trained(networks: EnhancerNetworks, weights) -> EnhancerNetworks:
    """Loads a weight source's trained enhancer (the toy set's: `toy.weights.ToyWeights`, whose
    `load_into(module, name, prefix)` keeps the seeded weights of a network it has no run for)."""
    modules = (networks.text_tower, networks.unet, networks.autoencoder)
    for module, name in zip(modules, TRAINED_NETWORK_NAMES):
        weights.load_into(module, name, None)
    return networks


def example_token_ids(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Prompts shaped like open_clip.tokenize output: SOT, words, EOT, zero padding to 77."""
    ids = torch.zeros(batch, TEXT_TOKENS, dtype=torch.int64)
    for row in range(batch):
        words = int(torch.randint(1, TEXT_TOKENS - 2, (1,), generator=generator))
        ids[row, 0] = SOT_TOKEN
        ids[row, 1 : 1 + words] = torch.randint(1, SOT_TOKEN, (words,), generator=generator)
        ids[row, 1 + words] = EOT_TOKEN
    return ids


def _batch_axes(names: list[str], axis: str) -> dict[str, dict[int, str]]:
    return {name: {0: axis} for name in names}


def _text_encoder_spec(
    config: EnhancerConfig, tower: TextTransformer, generator: torch.Generator
) -> GraphSpec:
    return GraphSpec(
        role="enhancer_text_encoder",
        module=EnhancerTextEncoder(tower).eval(),
        example_inputs={"input_ids": example_token_ids(config.example_batch, generator)},
        dynamic_axes=_batch_axes(["input_ids", "last_hidden_state"], "batch"),
        tolerance=config.tolerance,
        parity_batches=list(config.parity_batches),
    )


def _unet_spec(config: EnhancerConfig, unet: nn.Module, generator: torch.Generator) -> GraphSpec:
    batch = config.example_batch
    h, w = config.latent_size
    sample = torch.randn(batch, LATENT_CHANNELS, config.chunk_frames, h, w, generator=generator)
    return GraphSpec(
        role="enhancer_unet",
        module=EnhancerUnet(unet).eval(),
        example_inputs={
            "sample": sample,
            "timestep": torch.randint(0, TRAIN_TIMESTEPS, (batch,), generator=generator),
            "encoder_hidden_states": torch.randn(
                batch, TEXT_TOKENS, config.unet.context_dim, generator=generator
            ),
        },
        dynamic_axes=_batch_axes(
            ["sample", "timestep", "encoder_hidden_states", "model_output"], "batch"
        ),
        tolerance=config.tolerance,
        parity_batches=list(config.parity_batches),
    )


def _vae_encoder_spec(
    config: EnhancerConfig, autoencoder: nn.Module, generator: torch.Generator
) -> GraphSpec:
    images = torch.rand(config.example_batch, 3, *config.image_size, generator=generator) * 2 - 1
    return GraphSpec(
        role="enhancer_vae_encoder",
        module=EnhancerVaeEncoder(autoencoder).eval(),
        example_inputs={"images": images},
        dynamic_axes=_batch_axes(["images", "mean", "logvar"], "frames"),
        tolerance=config.tolerance,
        parity_batches=list(config.parity_batches),
    )


def _vae_decoder_spec(
    config: EnhancerConfig, autoencoder: nn.Module, generator: torch.Generator
) -> GraphSpec:
    latents = torch.randn(
        config.example_batch, LATENT_CHANNELS, *config.latent_size, generator=generator
    )
    return GraphSpec(
        role="enhancer_vae_decoder",
        module=EnhancerVaeDecoder(autoencoder).eval(),
        example_inputs={"latents": latents},
        dynamic_axes=_batch_axes(["latents", "images"], "frames"),
        tolerance=config.tolerance,
        parity_batches=list(config.parity_batches),
    )


def preset_config(preset: str | Preset) -> EnhancerConfig:
    """The enhancer of a preset, or of the registered preset of that name (UnknownPresetError,
    a ValueError naming the registered ones, otherwise)."""
    return config_for(resolve_preset(preset))


def enhancer_graphs(
    preset: str | Preset,
    seed: int,
    sources: Mapping[str, pathlib.Path] | None = None,
    trained=None,
) -> list[GraphSpec]:
    """GraphSpecs of enhancer_text_encoder, enhancer_unet, enhancer_vae_encoder/decoder.

    A preset with checkpoint weights (`full`) loads the `damo/Video-to-Video` checkpoints named
    in ENHANCER_SOURCE_FILES from `sources` (missing files are all listed in the error); the
    other presets use seeded random weights, or `trained`'s (`load_trained`). `seed` also draws
    the example inputs.
    """
    preset = resolve_preset(preset)
    config = config_for(preset)
    if not preset.seeded_random:
        networks = pretrained_networks(config, sources)
    else:
        networks = random_networks(config, seed)
        if trained is not None:
            load_trained(networks, trained)
    generator = torch.Generator().manual_seed(seed)
    return [
        _text_encoder_spec(config, networks.text_tower, generator),
        _unet_spec(config, networks.unet, generator),
        _vae_encoder_spec(config, networks.autoencoder, generator),
        _vae_decoder_spec(config, networks.autoencoder, generator),
    ]

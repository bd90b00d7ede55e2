"""Weights of the enhancer networks: checkpoint files of `damo/Video-to-Video` or seeded random.

Real weights are loaded strictly, like the reference (`video_to_video_model.py` loads the UNet
with `strict=True`, `AutoencoderKL.init_from_ckpt` keeps `first_stage_model.*` and loads it
strictly, open_clip loads its checkpoint strictly before `FrozenOpenCLIPEmbedder` drops the
vision tower). Networks are built on the meta device and take the file's tensors directly, so a
5.6 GB UNet is never allocated twice.
"""

from __future__ import annotations

import itertools
import pathlib
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

SOURCE_ORIGIN = (
    "ModelScope model `damo/Video-to-Video`, revision v1.1.0 "
    "(https://modelscope.cn/models/damo/Video-to-Video), or its Hugging Face mirror "
    "`ali-vilab/MS-Vid2Vid-XL`"
)
SOURCE_DIRECTORY_KEY = "enhancer"
"""A `sources` entry naming the directory that holds all enhancer files (a model download)."""


@dataclass(frozen=True)
class SourceFile:
    file_name: str
    contents: str
    roles: tuple[str, ...]
    key_prefix: str = ""
    """Only keys with this prefix belong to the network; the prefix is stripped."""
    ignored_key_prefixes: tuple[str, ...] = ()
    """Keys the graph does not use by design, dropped before the strict comparison."""


ENHANCER_SOURCE_FILES: dict[str, SourceFile] = {
    "enhancer_unet": SourceFile(
        file_name="non_ema_0035000.pth",
        contents="Vid2VidSDUNet weights, {'state_dict': ...}, fp32, 5.65 GB",
        roles=("enhancer_unet",),
    ),
    "enhancer_text": SourceFile(
        file_name="open_clip_pytorch_model.bin",
        contents="OpenCLIP ViT-H-14 (laion2b_s32b_b79k) state dict; only the text tower is used",
        roles=("enhancer_text_encoder",),
        ignored_key_prefixes=("visual.", "logit_scale"),
    ),
    "enhancer_vae": SourceFile(
        file_name="v2-1_512-ema-pruned.ckpt",
        contents="Stable Diffusion 2.1 checkpoint; its first_stage_model.* keys are the VAE",
        roles=("enhancer_vae_encoder", "enhancer_vae_decoder"),
        key_prefix="first_stage_model.",
    ),
}


class MissingSourceFilesError(FileNotFoundError):
    """Some enhancer checkpoint files were not found; the message lists all of them."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not fit its network."""


def _locate(key: str, source: SourceFile, sources: Mapping[str, pathlib.Path]) -> pathlib.Path:
    """`sources[key]` is the file or a directory holding it; else the shared download directory."""
    given = sources.get(key, sources.get(SOURCE_DIRECTORY_KEY))
    if given is None:
        return pathlib.Path(source.file_name)
    given = pathlib.Path(given)
    return given / source.file_name if given.is_dir() else given


def resolve_source_files(sources: Mapping[str, pathlib.Path] | None) -> dict[str, pathlib.Path]:
    """Paths of every enhancer source file, or an error that lists every expected file."""
    sources = sources or {}
    paths = {key: _locate(key, source, sources) for key, source in ENHANCER_SOURCE_FILES.items()}
    missing = [key for key, path in paths.items() if not path.is_file()]
    if missing:
        lines = [
            f"  {'MISSING' if key in missing else 'found  '} {key}: {paths[key]}\n"
            f"      expected file {source.file_name}: {source.contents}; "
            f"used by {', '.join(source.roles)}"
            for key, source in ENHANCER_SOURCE_FILES.items()
        ]
        raise MissingSourceFilesError(
            f"preset `full` needs {len(paths)} enhancer checkpoint files, "
            f"{len(missing)} not found:\n" + "\n".join(lines) + "\n"
            f"Get them from {SOURCE_ORIGIN}; pass each file (or the directory holding all of "
            f"them, as `{SOURCE_DIRECTORY_KEY}`) in `sources`."
        )
    return paths


def read_state_dict(path: pathlib.Path, source: SourceFile) -> dict[str, torch.Tensor]:
    """The network's tensors from a checkpoint: float32, prefix stripped, ignored keys dropped."""
    try:
        loaded = torch.load(
            path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path)
        )
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: {error}") from error
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        found = type(loaded).__name__
        expected = "a state dict, possibly under 'state_dict'"
        raise CheckpointError(f"{path}: expected {expected}, got {found}")
    selected = {
        name[len(source.key_prefix) :]: tensor
        for name, tensor in state.items()
        if name.startswith(source.key_prefix)
    }
    not_tensors = sorted(name for name, value in selected.items() if not torch.is_tensor(value))
    if not_tensors:
        raise CheckpointError(f"{path}: expected tensors only, found other values at {not_tensors}")
    return {
        name: tensor.float() if tensor.is_floating_point() else tensor
        for name, tensor in selected.items()
        if not name.startswith(source.ignored_key_prefixes)
    }


def _listed(title: str, items: list[str], limit: int = 40) -> str:
    shown = "\n".join(f"    {item}" for item in items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"  {title} ({len(items)}):\n{shown}{more}"


def check_state_dict(what: str, network: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Strict comparison of key sets and shapes, reporting every difference at once."""
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{name}: expected {tuple(expected[name].shape)}, found {tuple(state[name].shape)}"
        for name in set(expected) & set(state)
        if expected[name].shape != state[name].shape
    )
    if missing or unexpected or mismatched:
        parts = [
            _listed(title, items)
            for title, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", mismatched),
            )
            if items
        ]
        raise CheckpointError(
            f"{what}: checkpoint does not match {type(network).__name__}:\n" + "\n".join(parts)
        )


def load_network(
    build: Callable[[], nn.Module],
    path: pathlib.Path,
    source: SourceFile,
    restore_buffers: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """Builds the network on the meta device and adopts the checkpoint's tensors (strict).

    `restore_buffers` recomputes the non-persistent buffers, which no checkpoint holds.
    """
    with torch.device("meta"):
        network = build()
    state = read_state_dict(path, source)
    check_state_dict(str(path), network, state)
    network.load_state_dict(state, strict=True, assign=True)
    if restore_buffers is not None:
        restore_buffers(network)
    tensors = itertools.chain(network.named_parameters(), network.named_buffers())
    unset = [name for name, tensor in tensors if tensor.is_meta]
    if unset:
        raise CheckpointError(f"{path}: tensors left without values after loading: {unset}")
    return network.eval()


def seeded_network(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """The network with the library's random init, drawn from `seed` (global RNG untouched).

    Upstream zero-initialises several output layers (ResBlock and temporal-conv outputs,
    transformer `proj_out`, the UNet head), which would make whole branches, and the UNet's
    output, identically zero. Those tensors get small random values so that every weight
    influences the exported graph and parity checks can fail.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build()
        with torch.no_grad():
            for parameter in network.parameters():
                if not parameter.any():
                    parameter.normal_(0.0, 0.02)
    return network.eval()

"""Loading the real weights for the `full` preset.

Sources (the user downloads them; nothing is fetched here):
* `streaming_t2v`: the Lightning checkpoint `streaming_t2v.ckpt`, whose `state_dict` holds every
  stage-2 module under the prefixes text_encoder., vae., base_model. (UNet), unet. (CAM),
  resampler. and image_encoder.;
* `modelscope_t2v`: the diffusers folder of damo-vilab/text-to-video-ms-1.7b (stage-1 UNet);
* `open_clip` (optional): OpenCLIP ViT-H-14's `open_clip_pytorch_model.bin`, whose text tower the
  `clip_text_encoder` graph of `st2v eval` needs (streaming_t2v.ckpt dropped its blocks);
* `raft` (optional): torchvision's RAFT-large weights, for the `raft` graph of `st2v eval`.

Loading is strict: a missing, unexpected or mis-shaped key is an error that lists them all.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

STREAMING_T2V = "streaming_t2v"
MODELSCOPE_T2V = "modelscope_t2v"

SOURCE_FILES: dict[str, str] = {
    STREAMING_T2V: "streaming_t2v.ckpt from https://huggingface.co/PAIR/StreamingT2V",
    MODELSCOPE_T2V: (
        "the diffusers folder of https://huggingface.co/damo-vilab/text-to-video-ms-1.7b "
        "(unet/config.json and unet/diffusion_pytorch_model[.fp16].safetensors)"
    ),
}

OPEN_CLIP = "open_clip"
RAFT = "raft"
OPTIONAL_SOURCE_FILES: dict[str, str] = {
    OPEN_CLIP: (
        "open_clip_pytorch_model.bin from https://huggingface.co/laion/CLIP-ViT-H-14-laion2B-s32B-b79K "
        "(only for the clip_text_encoder graph of st2v eval's CLIP score)"
    ),
    RAFT: (
        "raft_large_C_T_SKHT_V2-ff5fadd5.pth, torchvision's Raft_Large_Weights.DEFAULT (only for the "
        "raft graph of st2v eval's MAWE)"
    ),
}
OPEN_CLIP_TEXT = "open_clip text tower"
"""The `prefix` that makes `WeightSource.load_into` read the OpenCLIP checkpoint's text tower."""
RAFT_WEIGHTS = "torchvision raft"
"""The `prefix` that makes `WeightSource.load_into` read torchvision's RAFT state dict."""
# Keys of the OpenCLIP checkpoint that the text tower does not hold.
_OPEN_CLIP_OTHER = ("visual.", "logit_scale", "logit_bias")

# The checkpoint prefix of each stage-2 component that a graph is exported from.
STREAMING_PREFIXES = (
    "text_encoder.text_model.",
    "vae.",
    "base_model.",
    "unet.",
    "resampler.",
    "image_encoder.model.visual.",
)

# In the checkpoint but used by no graph: the text half of the OpenCLIP model kept by the image
# encoder, and a position-id buffer that older transformers versions saved.
UNUSED_KEY_PREFIXES = (
    "image_encoder.model.token_embedding.",
    "image_encoder.model.positional_embedding",
    "image_encoder.model.ln_final.",
    "image_encoder.model.text_projection",
    "image_encoder.model.logit_scale",
    "text_encoder.text_model.embeddings.position_ids",
)

STAGE1_WEIGHT_FILES = (
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.bin",
    "unet/diffusion_pytorch_model.bin",
)

_LISTED_KEYS = 40


class CheckpointError(Exception):
    """A source file is missing or does not match the architecture."""


class MissingSourceError(CheckpointError):
    def __init__(self, missing: dict[str, str], known: dict[str, str]):
        lines = [f"missing source file(s) for the full preset: {', '.join(sorted(missing))}"]
        lines += [f"  {name}: {problem}" for name, problem in sorted(missing.items())]
        lines.append("expected sources (pass each as --source NAME=PATH):")
        lines += [f"  {name}: {where}" for name, where in sorted(known.items())]
        super().__init__("\n".join(lines))
        self.missing = missing


def _listing(title: str, keys: list[str]) -> list[str]:
    if not keys:
        return []
    shown = [f"    {key}" for key in keys[:_LISTED_KEYS]]
    more = [f"    ... and {len(keys) - _LISTED_KEYS} more"] if len(keys) > _LISTED_KEYS else []
    return [f"  {title} ({len(keys)}):", *shown, *more]


class StateDictMismatchError(CheckpointError):
    def __init__(self, what: str, missing: list[str], unexpected: list[str], shapes: list[str]):
        lines = [f"{what}: checkpoint does not match the architecture"]
        lines += _listing("missing keys", missing)
        lines += _listing("unexpected keys", unexpected)
        lines += _listing("shape mismatches (key: expected vs checkpoint)", shapes)
        super().__init__("\n".join(lines))
        self.missing = missing
        self.unexpected = unexpected
        self.shapes = shapes


def _is_unused(key: str) -> bool:
    return key.startswith(UNUSED_KEY_PREFIXES)


def _fit_pointwise(expected: torch.Size, tensor: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution (C, C', 1, 1) is the same map as a Linear (C, C'): accept either layout."""
    if tensor.shape != expected and tensor.shape == expected + (1, 1):
        return tensor.reshape(expected)
    return tensor


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    fitted = {key: _fit_pointwise(expected[key].shape, state[key]) for key in expected if key in state}
    shapes = sorted(
        f"{key}: {tuple(expected[key].shape)} vs {tuple(tensor.shape)}"
        for key, tensor in fitted.items()
        if tensor.shape != expected[key].shape
    )
    if missing or unexpected or shapes:
        raise StateDictMismatchError(what, missing, unexpected, shapes)
    module.load_state_dict(fitted, strict=True)


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def _read_torch(path: Path, trust_pickle: bool) -> dict:
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: holds Python objects beyond tensors ({error}); if you trust the file, "
            "re-run with --trust-checkpoint-pickle"
        ) from error


def read_streaming_state(path: Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The `state_dict` of `streaming_t2v.ckpt` without its known unused keys; every other key
    must belong to an exported component."""
    raw = _read_torch(path, trust_pickle)
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a Lightning checkpoint with a 'state_dict' entry")
    used = {key: value for key, value in state.items() if not _is_unused(key)}
    stray = sorted(key for key in used if not key.startswith(STREAMING_PREFIXES))
    if stray:
        raise StateDictMismatchError(f"{path}", [], stray, [])
    return used


def read_stage1_state(folder: Path) -> dict[str, torch.Tensor]:
    for relative in STAGE1_WEIGHT_FILES:
        path = folder / relative
        if path.suffix == ".safetensors" and path.is_file():
            from safetensors.torch import load_file

            return load_file(path)
        if path.is_file():
            return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    raise MissingSourceError(
        {MODELSCOPE_T2V: f"{folder} has none of {', '.join(STAGE1_WEIGHT_FILES)}"}, SOURCE_FILES
    )


def check_sources(sources: dict[str, Path], known: dict[str, str]) -> None:
    """Every known source must be given and exist; lists all problems at once."""
    missing = {}
    for name in known:
        path = sources.get(name)
        if path is None:
            missing[name] = "not given"
        elif not Path(path).exists():
            missing[name] = f"{path} does not exist"
    if missing:
        raise MissingSourceError(missing, known)


class WeightSource:
    """The checkpoints of the full preset, read lazily once."""

    def __init__(self, sources: dict[str, Path], trust_pickle: bool = False):
        check_sources(sources, SOURCE_FILES)
        self.sources = {name: Path(path) for name, path in sources.items()}
        self.trust_pickle = trust_pickle
        self._streaming: dict[str, torch.Tensor] | None = None

    def _streaming_state(self) -> dict[str, torch.Tensor]:
        if self._streaming is None:
            path = self.sources[STREAMING_T2V]
            if path.is_dir():
                path = path / "streaming_t2v.ckpt"
            if not path.is_file():
                raise MissingSourceError({STREAMING_T2V: f"{path} does not exist"}, SOURCE_FILES)
            self._streaming = read_streaming_state(path, self.trust_pickle)
        return self._streaming

    def has(self, source: str) -> bool:
        return source in self.sources

    def load_into(self, module: nn.Module, name: str, prefix: str | None) -> None:
        """prefix: a streaming_t2v.ckpt prefix, None for the stage-1 UNet, or OPEN_CLIP_TEXT."""
        if prefix in (OPEN_CLIP_TEXT, RAFT_WEIGHTS):
            source = OPEN_CLIP if prefix == OPEN_CLIP_TEXT else RAFT
            path = self.sources.get(source)
            if path is None or not path.is_file():
                raise MissingSourceError({source: f"{path or 'not given'}"}, OPTIONAL_SOURCE_FILES)
            raw = _read_torch(path, self.trust_pickle)
            state = {k: v for k, v in raw.items() if not k.startswith(_OPEN_CLIP_OTHER)}
            load_strict(module, state, f"{name} ({path})")
            return
        if prefix is None:
            state = read_stage1_state(self.sources[MODELSCOPE_T2V])
            load_strict(module, state, f"{name} ({self.sources[MODELSCOPE_T2V]})")
            return
        state = strip_prefix(self._streaming_state(), prefix)
        load_strict(module, state, f"{name} (streaming_t2v.ckpt, prefix {prefix!r})")

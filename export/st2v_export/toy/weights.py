"""Trained toy checkpoints as the weights of an export: a `WeightSource` look-alike for Components.

`Components` (components.py) calls `weights.load_into(module, name, prefix)` for every component
it builds, inside the component's seeded context, instead of randomizing zero inits. `ToyWeights`
answers that call from the toy training runs (`train.py`): a role with a trained checkpoint gets
its weights (loaded strictly); any other role gets exactly what the seeded random export gives it
(`randomize_zero_parameters` in the same seeded context), so a set can be exported with only some
models trained (StreamingT2V, Henschel et al. 2024, keeps its graphs separate in the same way).

Roles and where their weights come from (ROLE_SOURCES):
- `vae` (vae_decoder, vae_encoder): the `vae` run's AutoencoderKL (Kingma & Welling 2014;
  Rombach et al. 2022), with the per-channel latent normalisation folded into quant_conv and
  post_quant_conv so that latents * 0.18215 (the manifest's scaling factor) have zero mean and
  unit std per channel; reconstructions are unchanged.
- `clip_text_encoder`, `image_encoder`: the `clip` run's open_clip text tower and vision tower
  (CLIP, Radford et al. 2021).
- `text_encoder`: the same text tower's first `num_hidden_layers` blocks and its final LayerNorm,
  converted to transformers' CLIPTextModel keys: as in ModelScope, whose text encoder is
  OpenCLIP-H's tower without its last block, the stage-1/2 text encoder is the CLIP text tower
  read one block early. The two graphs share these weights (the CLIP one has one block more and
  the projection).
- `stage1_unet`: the `stage1` run's UNet3D; `unet`, `cam`, `apm_resampler`: the `stage2` run's
  StreamingT2V UNet, CAM and APM resampler (`video_tasks.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import RAFT, load_strict
from ..components import randomize_zero_parameters
from ..presets import VAE_SCALING_FACTOR, Preset
from . import world
from .preset import toy_preset
from .data import tokenize
from .runfiles import CHECKPOINT_FILE, read_checkpoint

State = dict[str, torch.Tensor]


class ToyWeightsError(ValueError):
    """A toy checkpoint that cannot provide a role's weights."""


# ------------------------------------------------------------------------------ conversions


def fold_latent_normalisation(
    state: State, mean, std, target_std: float = 1 / VAE_SCALING_FACTOR
) -> State:
    """An AutoencoderKL state whose posterior is (mean - `mean`) * k, k = target_std / `std`
    (per channel), and whose decoder undoes it first: the same reconstructions, latents whose
    channels have zero mean and std `target_std` on the frames the statistics came from.

    quant_conv's output holds the mean (first half) and log-variance (second half) channels;
    post_quant_conv is the decoder's first (1x1) layer."""
    mean = torch.as_tensor(mean, dtype=torch.float32)
    scale = target_std / torch.as_tensor(std, dtype=torch.float32)
    channels = mean.numel()
    state = dict(state)
    weight = state["quant_conv.weight"].clone()
    bias = state["quant_conv.bias"].clone()
    weight[:channels] *= scale.view(-1, 1, 1, 1)
    bias[:channels] = scale * (bias[:channels] - mean)
    bias[channels:] += 2 * torch.log(scale)
    state["quant_conv.weight"], state["quant_conv.bias"] = weight, bias
    post_weight = state["post_quant_conv.weight"]
    state["post_quant_conv.bias"] = state["post_quant_conv.bias"] + post_weight[:, :, 0, 0] @ mean
    state["post_quant_conv.weight"] = post_weight / scale.view(1, -1, 1, 1)
    return state


def open_clip_text_to_transformers(state: State, layers: int) -> State:
    """An open_clip TextTransformer state -> transformers CLIPTextModel keys (transformers 5: no
    `text_model.` level) for its first `layers` blocks and its final LayerNorm."""
    blocks = {key.split(".")[2] for key in state if key.startswith("transformer.resblocks.")}
    if layers > len(blocks):
        raise ToyWeightsError(
            f"the CLIP text tower has {len(blocks)} blocks, the text encoder needs {layers}"
        )
    out = {
        "embeddings.token_embedding.weight": state["token_embedding.weight"],
        "embeddings.position_embedding.weight": state["positional_embedding"],
        "final_layer_norm.weight": state["ln_final.weight"],
        "final_layer_norm.bias": state["ln_final.bias"],
    }
    for index in range(layers):
        source, target = f"transformer.resblocks.{index}.", f"encoder.layers.{index}."
        weights = state[source + "attn.in_proj_weight"].chunk(3)
        biases = state[source + "attn.in_proj_bias"].chunk(3)
        for projection, weight, bias in zip(("q", "k", "v"), weights, biases, strict=True):
            out[f"{target}self_attn.{projection}_proj.weight"] = weight
            out[f"{target}self_attn.{projection}_proj.bias"] = bias
        renames = {
            "attn.out_proj": "self_attn.out_proj",
            "ln_1": "layer_norm1",
            "ln_2": "layer_norm2",
            "mlp.c_fc": "mlp.fc1",
            "mlp.c_proj": "mlp.fc2",
        }
        for old, new in renames.items():
            for kind in ("weight", "bias"):
                out[f"{target}{new}.{kind}"] = state[f"{source}{old}.{kind}"]
    return out


def clip_text_into_enhancer(tower: nn.Module, clip_state: State) -> None:
    """Starts the enhancer's open_clip text tower from the `clip` run's (same width): its
    embeddings, its first blocks and its final LayerNorm. The projection (another width) and the
    clip tower's extra blocks are left out; the enhancer graph uses neither."""
    own = tower.state_dict()
    taken = {k: v for k, v in clip_state.items()
             if k in own and k != "text_projection" and own[k].shape == v.shape}
    missing = [k for k in own if k not in taken and k != "text_projection"]
    if missing:
        raise ToyWeightsError(f"the clip run's text tower does not cover {missing[:5]}")
    tower.load_state_dict({**own, **taken})


def world_token_ids() -> list[int]:
    """Every token id a toy-world caption can contain, with <|startoftext|>, <|endoftext|> and
    the padding id."""
    words = (
        list(world.COLOURS) + list(world.SHAPES) + list(world.SIZES) + list(world.MOTIONS)
        + list(world.GRADIENTS) + ["a", "an", "and", "moving", "on", "background"]
    )
    ids = tokenize([" ".join(words[start : start + 8]) for start in range(0, len(words), 8)])
    return sorted(set(ids.flatten().tolist()))


def zero_unused_tokens(state: State, key: str = "token_embedding.weight") -> State:
    """Zeroes the embedding rows of tokens no toy caption uses (they were never trained): the
    graph's size is unchanged but it compresses to almost nothing (git, archives)."""
    keep = torch.zeros(state[key].shape[0], dtype=torch.bool)
    keep[world_token_ids()] = True
    state = dict(state)
    state[key] = torch.where(keep[:, None], state[key], torch.zeros_like(state[key]))
    return state


# ------------------------------------------------------------------------------------ roles


@dataclass(frozen=True)
class RoleSource:
    """Which training run gives a role its weights, how to convert them, and which preset
    dimensions the run must share with the export."""

    model: str
    convert: Callable[[dict, nn.Module, ToyWeights], State]
    dimensions: tuple[str, ...]
    preferred: tuple[str, ...] = ()
    """Runs that refine `model`'s and are used instead when they exist and hold the role's
    module (`preferred_module`): vae_decoder, the stage-1 run's tuned text encoder."""
    preferred_module: str = ""


def _vae_state(payload: dict, module: nn.Module, weights: ToyWeights) -> State:
    extras = payload.get("extras", {})
    if "latent_mean" not in extras or "latent_std" not in extras:
        raise ToyWeightsError("the vae checkpoint has no latent statistics (extras)")
    return fold_latent_normalisation(
        payload["modules"]["vae"], extras["latent_mean"], extras["latent_std"]
    )


def _clip_text_state(payload: dict, module: nn.Module, weights: ToyWeights) -> State:
    """An open_clip text tower's state: `clip_text_encoder`'s, or the enhancer's."""
    state = payload["modules"]["text"]
    return zero_unused_tokens(state) if weights.zero_unused else state


def _text_encoder_state(payload: dict, module: nn.Module, weights: ToyWeights) -> State:
    if payload["model"] == "stage1":  # tuned with the stage-1 UNet, already CLIPTextModel keys
        state = payload["modules"]["text"]
    else:
        layers = module.config.num_hidden_layers
        state = open_clip_text_to_transformers(payload["modules"]["text"], layers)
    if weights.zero_unused:
        state = zero_unused_tokens(state, "embeddings.token_embedding.weight")
    return state


def _module_state(name: str) -> Callable[[dict, nn.Module, "ToyWeights"], State]:
    return lambda payload, module, weights: payload["modules"][name]


ROLE_SOURCES: dict[str, RoleSource] = {
    "vae": RoleSource("vae", _vae_state, ("vae", "stage2"), preferred=("vae_decoder",)),
    "clip_text_encoder": RoleSource("clip", _clip_text_state, ("text", "image_embed_dim")),
    "text_encoder": RoleSource(
        "clip", _text_encoder_state, ("text",), preferred=("stage1",), preferred_module="text"
    ),
    "image_encoder": RoleSource("clip", _module_state("visual"),
                                ("vision", "image_embed_dim", "stage2")),
    "stage1_unet": RoleSource("stage1", _module_state("unet"), ("unet", "text")),
    "unet": RoleSource(
        "stage2",
        _module_state("unet"),
        ("unet", "text", "merger_head_dim", "merger_norm_groups", "stage2_padding"),
    ),
    "cam": RoleSource(
        "stage2",
        _module_state("cam"),
        ("unet", "text", "cond_embedding_channels", "stage2_padding"),
    ),
    "apm_resampler": RoleSource(
        "stage2", _module_state("resampler"), ("text", "image_embed_dim", "resampler_inner_dim")
    ),
    # The enhancer's networks (`enhancer.graphs.load_trained` names them so).
    "enhancer_vae": RoleSource("enhancer_vae", _vae_state, ("stage3",)),
    "enhancer_text_encoder": RoleSource("enhancer", _clip_text_state, ("stage3",)),
    "enhancer_unet": RoleSource("enhancer", _module_state("unet"), ("stage3",)),
}
"""Component name (as `Components` passes it) -> its training run. `stage2` is the resolution
the run trained at (the image encoder's preprocessing depends on it); a stage-2 run trained with
one `stage2_padding` does not export with another (the same weights would see other borders)."""


@dataclass(frozen=True)
class Ablation:
    """A StreamingT2V part switched off in a trained role's weights, for the ablation table."""

    role: str
    apply: Callable[[State], State]
    meaning: str


def _zeroed(state: State, keep: Callable[[str], bool]) -> State:
    return {k: v if keep(k) else torch.zeros_like(v) for k, v in state.items()}


ABLATIONS: dict[str, Ablation] = {
    "cam": Ablation(
        "unet",
        lambda s: _zeroed(s, lambda k: not ("cross_attention_merger" in k and ".proj_out." in k)),
        "the mergers' output projections zeroed: the UNet ignores the CAM, each chunk is "
        "conditioned on the text and the anchor only (independent chunks)",
    ),
    "apm": Ablation(
        "unet",
        lambda s: _zeroed(s, lambda k: not k.endswith(".alpha")),
        "the APM gates zeroed (SiLU(0) = 0): the UNet attends to the text tokens alone",
    ),
}
"""Part -> how `ToyWeights(ablate=...)` removes it; the merger and gate weights are exactly
the zero initialisation StreamingT2V trains them from."""


def _dimension(dimensions: dict, key: str):
    """A `Preset.dimensions()` entry, or a stage's resolution for `stage2` / `stage3`."""
    if key in ("stage2", "stage3"):
        return dimensions["resolutions"][key]
    if key == "stage2_padding":  # recorded only when not the default
        return dimensions.get(key, "zeros")
    return dimensions.get(key)


class ToyWeights:
    """`load_into(module, name, prefix)` as `checkpoint.WeightSource` has it, from toy runs.

    runs: a directory holding one run directory per model (`RUNS/vae`, `RUNS/clip`: the --out
    of each `train` run), or a mapping model -> run directory. Roles whose run is absent fall
    back to the seeded random weights (listed in `fallbacks`), unless named in `require`.
    """

    def __init__(
        self,
        runs: Path | dict[str, Path],
        preset: Preset | None = None,
        require: Iterable[str] = (),
        zero_unused: bool = False,
        ablate: Iterable[str] = (),
        log: Callable[[str], None] = lambda _: None,
    ):
        if isinstance(runs, dict):
            self.run_dirs = {model: Path(path) for model, path in runs.items()}
        else:
            root = Path(runs)
            models = {m for s in ROLE_SOURCES.values() for m in (s.model, *s.preferred)}
            self.run_dirs = {model: root / model for model in models}
        self.preset = preset or toy_preset()
        self.require = set(require)
        unknown = self.require - set(ROLE_SOURCES)
        if unknown:
            raise ToyWeightsError(
                f"no toy training run provides {sorted(unknown)}; known: {sorted(ROLE_SOURCES)}"
            )
        self.zero_unused = zero_unused
        self.ablate = set(ablate)
        unknown_parts = self.ablate - set(ABLATIONS)
        if unknown_parts:
            raise ToyWeightsError(
                f"cannot ablate {sorted(unknown_parts)}; known: {sorted(ABLATIONS)}"
            )
        self.log = log
        self.loaded: dict[str, str] = {}
        self.fallbacks: list[str] = []
        self._payloads: dict[str, dict | None] = {}

    def has(self, source: str) -> bool:
        """Every role can be exported (trained or seeded random), `clip_text_encoder` included;
        not RAFT: no toy run trains it, and a seeded random flow network would give `st2v eval`
        a meaningless MAWE (without the graph, eval measures motion with Farneback)."""
        return source != RAFT

    def checkpoint_path(self, model: str) -> Path | None:
        directory = self.run_dirs.get(model)
        return None if directory is None else directory / CHECKPOINT_FILE

    def _payload(self, model: str) -> dict | None:
        if model not in self._payloads:
            path = self.checkpoint_path(model)
            found = path is not None and path.is_file()
            self._payloads[model] = read_checkpoint(path) if found else None
        return self._payloads[model]

    def _model_for(self, source: RoleSource) -> str:
        """The run a role loads from: a refining run (`preferred`) when it exists."""
        for model in source.preferred:
            payload = self._payload(model)
            module = source.preferred_module
            if payload is not None and (not module or module in payload["modules"]):
                return model
        return source.model

    def _check_dimensions(self, name: str, source: RoleSource, model: str, payload: dict) -> None:
        keys = source.dimensions
        trained = {key: _dimension(payload["preset"]["dimensions"], key) for key in keys}
        wanted = {key: _dimension(self.preset.dimensions(), key) for key in keys}
        differing = [key for key in source.dimensions if trained[key] != wanted[key]]
        if differing:
            details = "; ".join(
                f"{key}: run {trained[key]} vs preset {wanted[key]}" for key in differing
            )
            run = self.checkpoint_path(model)
            raise ToyWeightsError(
                f"{name}: the {model} run ({run}) was trained with other "
                f"{', '.join(differing)} than preset {self.preset.name!r}: {details}"
            )

    def load_into(self, module: nn.Module, name: str, prefix: str | None) -> None:
        source = ROLE_SOURCES.get(name)
        model = self._model_for(source) if source is not None else None
        payload = self._payload(model) if source is not None else None
        if payload is None:
            if name in self.require:
                raise ToyWeightsError(
                    f"{name}: no checkpoint at {self.checkpoint_path(source.model)} (train it with "
                    f"`python -m st2v_export.toy train --model {source.model} --out DIR`)"
                )
            randomize_zero_parameters(module)  # what Components does without weights
            self.fallbacks.append(name)
            self.log(f"{name}: seeded random weights (no trained run)")
            return
        self._check_dimensions(name, source, model, payload)
        state = source.convert(payload, module, self)
        for part in sorted(self.ablate):
            if name == ABLATIONS[part].role:
                state = ABLATIONS[part].apply(state)
        where = f"{self.checkpoint_path(model)}, step {payload['step']}"
        load_strict(module, state, f"{name} (toy {model} run {where})")
        self.loaded[name] = f"{model} step {payload['step']}"
        self.log(f"{name}: trained weights ({where})")

    def summary(self) -> dict[str, str]:
        """Role -> "vae step N" or "seeded random", for the roles loaded so far."""
        return {**self.loaded, **{name: "seeded random" for name in self.fallbacks}}

"""Resumable, seeded training of the toy model set on the toy world (see TRAINING.md).

StreamingT2V (Henschel et al. 2024) runs on a set of pretrained graphs; for the toy world each is
trained from scratch at the `toy` preset's sizes, on frames and captions generated on the fly
from the world's train split (`world.sample_spec(rng, "train")`), and judged on the held-out
split. This module holds the framework and the first two models:

- `vae`: the preset's AutoencoderKL (Kingma & Welling 2014; Rombach et al. 2022), built as
  `components.py` builds it, trained on single frames with L1 + L2 reconstruction (weighted
  towards the shapes' pixels), an image-gradient term and a small KL term; evaluated by PSNR and
  by the checker's colour / shape verdicts on held-out frames.
- `clip`: the CLIP pair (Radford et al. 2021): the open_clip text tower of the
  `clip_text_encoder` graph and the open_clip vision tower of the `image_encoder` graph (with the
  graph's preprocessing in front), trained with the symmetric contrastive loss on
  (frame, caption) pairs tokenized by the export's CLIP tokenizer, half of each batch being
  one-attribute twins of the other half. The stage-1/2 text encoder is
  the tower's first `num_hidden_layers` blocks plus its final LayerNorm (as ModelScope's is
  OpenCLIP-H's penultimate layer), so it comes out of this run too (`weights.py`).

Determinism: every batch is a pure function of (seed, step) (clip index = step * batch + i), the
sampling noise of step s comes from a generator seeded with (seed, step), and a checkpoint holds
the parameters, the optimizer state, the schedule and the torch RNG states. A run resumed from a
checkpoint therefore ends with bit-identical parameters to one run without a stop.

Checkpoints (`DIR/checkpoint.pt`, written to a temporary file and renamed) also record the
preset's dimensions; `DIR/log.jsonl` gets one line per logged step and `DIR/metrics.json` the
last evaluation.
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..components import seeded
from ..modules.clip_text import build_clip_text
from ..modules.image import ImageEncoder, build_visual
from ..modules.vae import build_vae
from ..presets import Preset
from . import checker, world
from .preset import toy_preset

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.json"
CHECKPOINT_FORMAT = 1
FRAME_RANGE = 240
"""Training frames are taken at a random time in [0, FRAME_RANGE) of their clip."""
HELDOUT_SEED = 20240
"""Seed of the held-out evaluation frames (split `heldout`), the same for every run."""
LATENT_STAT_FRAMES = 128
"""Train frames (seed + 1) whose posterior means give the VAE's latent statistics."""
MODELS = ("vae", "clip")
TWIN_STREAM = 7
"""Third seed word of the generator that draws the CLIP batches' twins."""


class TrainError(ValueError):
    """A training run that cannot start or resume as asked."""


@dataclass
class TrainConfig:
    model: str
    steps: int
    out: Path
    seed: int = 0
    batch: int | None = None
    """Frames per step; None: the model's default."""
    lr: float | None = None
    """Peak learning rate; None: the model's default."""
    schedule_steps: int | None = None
    """Length of the warmup + cosine schedule; None: `steps` of the first run (kept on resume)."""
    checkpoint_every: int = 200
    log_every: int = 20
    eval_every: int = 0
    """Evaluate on held-out frames every N steps (0: only at the end)."""
    eval_frames: int | None = None
    resume: bool = False
    preset: Preset | None = None
    """None: the toy preset."""

    def __post_init__(self):
        self.out = Path(self.out)
        if self.model not in MODELS:
            raise TrainError(f"unknown model {self.model!r}: expected one of {', '.join(MODELS)}")
        for name in ("steps", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise TrainError(f"{name} must be positive, got {getattr(self, name)}")
        if self.batch is not None and self.batch < 2:
            raise TrainError(f"batch must be at least 2, got {self.batch}")


# ------------------------------------------------------------------------------------- data


def scene_and_time(seed: int, index: int, split: str):
    """The spec of clip `index` of the split's stream and the frame time drawn for it."""
    rng = np.random.default_rng([seed, index, world.SPLITS.index(split)])
    spec = world.sample_spec(rng, split)
    return spec, int(rng.integers(0, FRAME_RANGE))


def frame_and_caption(seed: int, index: int, split: str, size: int):
    """One frame (size, size, 3) uint8 of clip `index` of the split's stream, at a random time,
    with its caption and spec. A pure function of its arguments."""
    spec, start = scene_and_time(seed, index, split)
    return world.render(spec, 1, size, start)[0], world.caption(spec), spec


TWIN_ATTRIBUTES = ("shape", "shape", "shape", "size", "colour")
"""What a twin changes (drawn uniformly from this list: shape three times as often)."""


def twin_spec(spec, rng: np.random.Generator):
    """A train-split spec that differs from `spec` in the shape, size or colour of one of its
    shapes (same layout and motion), or None when no such scene exists."""
    order = rng.permutation(len(TWIN_ATTRIBUTES))
    for attribute in [TWIN_ATTRIBUTES[i] for i in order]:
        k = int(rng.integers(len(spec.shapes)))
        options = {"shape": world.SHAPES, "size": world.SIZES, "colour": world.COLOURS}[attribute]
        current = getattr(spec.shapes[k], attribute)
        candidates = []
        for value in options:
            if value == current:
                continue
            shapes = list(spec.shapes)
            shapes[k] = replace(shapes[k], **{attribute: value})
            try:
                candidate = replace(spec, shapes=tuple(shapes))
            except ValueError:  # a colour clash: not a scene of the world
                continue
            if not world.is_heldout(candidate):
                candidates.append(candidate)
        if candidates:
            return candidates[int(rng.integers(len(candidates)))]
    return None


def to_pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1], as the graphs take frames."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in about [-1, 1] -> uint8 (N, H, W, 3)."""
    values = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return values.permute(0, 2, 3, 1).numpy()


def frame_batch(seed: int, step: int, batch: int, size: int, split: str = "train"):
    """The frames, captions and specs of training step `step` (clips step*batch ...)."""
    items = [frame_and_caption(seed, step * batch + i, split, size) for i in range(batch)]
    frames = np.stack([item[0] for item in items])
    return frames, [item[1] for item in items], [item[2] for item in items]


def heldout_batch(count: int, size: int):
    """The fixed held-out evaluation frames (split `heldout`, HELDOUT_SEED)."""
    return frame_batch(HELDOUT_SEED, 0, count, size, split="heldout")


@lru_cache(maxsize=1)
def _tokenizer():
    from ..tokenizer import build_tokenizer

    return build_tokenizer()


@lru_cache(maxsize=4096)
def _token_ids(text: str) -> tuple[int, ...]:
    from ..tokenizer import EOS_ID, MAX_LENGTH, PAD_ID

    ids = _tokenizer().encode(text).ids
    if len(ids) > MAX_LENGTH:
        ids = ids[: MAX_LENGTH - 1] + [EOS_ID]
    return tuple(ids + [PAD_ID] * (MAX_LENGTH - len(ids)))


def tokenize(texts: list[str]) -> torch.Tensor:
    """(N, 77) int64 ids: the export's CLIP tokenizer (`tokenizer.build_tokenizer`), the engine's
    padding (id 0 after <|endoftext|>) and truncation (<|endoftext|> kept last)."""
    return torch.tensor([_token_ids(text) for text in texts], dtype=torch.int64)


def _seed_of(*values: int) -> int:
    return zlib.crc32(np.array(values, dtype=np.int64).tobytes())


# ------------------------------------------------------------------------------------ tasks


class Task:
    """One trainable model: its modules, batches, loss and held-out evaluation."""

    name = ""
    default_batch = 16
    default_lr = 1e-3
    default_eval_frames = 128
    weight_decay = 0.0

    def __init__(self, preset: Preset, seed: int):
        self.preset = preset
        self.seed = seed
        self.size = preset.stage2.height
        if preset.stage2.width != self.size:
            raise TrainError(f"toy training needs square stage-2 frames, got {preset.stage2}")

    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def batch(self, step: int, size: int) -> dict:
        raise NotImplementedError

    def loss(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after each optimizer step (parameter constraints)."""

    def extras(self) -> dict:
        """Values computed from the parameters that the checkpoint records (not trained)."""
        return {}

    def evaluate(self, frames: int) -> dict:
        raise NotImplementedError

    def parameter_groups(self) -> list[dict]:
        """Weight decay on matrices only (not on norms, biases, embeddings, the temperature)."""
        decay, plain = [], []
        for module in self.modules().values():
            for name, parameter in module.named_parameters():
                is_embedding = "embedding" in name or name.startswith("class_") or "logit" in name
                (decay if parameter.ndim >= 2 and not is_embedding else plain).append(parameter)
        groups = [{"params": plain, "weight_decay": 0.0}]
        if decay:
            groups.append({"params": decay, "weight_decay": self.weight_decay})
        return groups


class VaeTask(Task):
    name = "vae"
    default_batch = 16
    default_lr = 2e-3
    kl_weight = 1e-4
    """On the per-element KL, against the per-pixel L1 + L2: keeps the posterior a Gaussian the
    diffusion can sample near, without blurring the shapes' edges."""
    foreground_weight = 4.0
    """Extra weight of the shapes' pixels (those that differ from the rendered background): the
    shapes cover a few % of a frame, and without it the decoder learns them long after the
    backgrounds."""
    sample_posterior = True
    """Decode a posterior sample (the VAE objective); False decodes the mean (an autoencoder)."""
    edge_weight = 1.0
    """Weight of the L1 distance between the image gradients (finite differences) of the
    reconstruction and the frame: sharp edges and corners, which tell the shapes apart."""

    def __init__(self, preset: Preset, seed: int):
        super().__init__(preset, seed)
        with seeded(seed, "vae"):  # the name Components builds it under
            self.vae = build_vae(preset.vae)

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae}

    def batch(self, step: int, size: int) -> dict:
        frames, _, specs = frame_batch(self.seed, step, size, self.size)
        return {"images": to_pixels(frames), "weights": self.pixel_weights(frames, specs)}

    def pixel_weights(self, frames: np.ndarray, specs: list) -> torch.Tensor:
        """(N, 1, H, W): 1 on the background, 1 + foreground_weight on the shapes."""
        backgrounds = np.stack([world.render_background(s.background, self.size) for s in specs])
        shapes = np.any(frames != backgrounds, axis=-1)[:, None]
        return torch.from_numpy(1.0 + self.foreground_weight * shapes.astype(np.float32))

    def loss(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        images, weights = batch["images"], batch["weights"]
        posterior = self.vae.encode(images).latent_dist
        latents = posterior.sample(generator=generator) if self.sample_posterior else posterior.mean
        recon = self.vae.decode(latents).sample
        norm = weights.mean()
        l1 = ((recon - images).abs() * weights).mean() / norm
        l2 = ((recon - images).pow(2) * weights).mean() / norm
        edges = edge_distance(recon, images)
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = l1 + l2 + self.edge_weight * edges + self.kl_weight * kl
        return loss, {"l1": l1.item(), "l2": l2.item(), "edge": edges.item(), "kl": kl.item()}

    def extras(self) -> dict:
        """Per-channel mean and std of the posterior means on fixed train frames: `weights.py`
        folds them into quant_conv / post_quant_conv so that latents * 0.18215 have unit std."""
        frames, _, _ = frame_batch(self.seed + 1, 0, LATENT_STAT_FRAMES, self.size)
        with torch.no_grad():
            means = self.vae.encode(to_pixels(frames)).latent_dist.mean
        return {
            "latent_mean": means.mean(dim=(0, 2, 3)).tolist(),
            "latent_std": means.std(dim=(0, 2, 3)).tolist(),
        }

    def evaluate(self, frames: int) -> dict:
        return evaluate_vae(self.vae, frames, self.size)


def edge_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance of the horizontal and vertical finite differences of two image batches."""
    dx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
    dy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
    return (dx.abs().mean() + dy.abs().mean()) / 2


class Temperature(nn.Module):
    """CLIP's learned logit scale, log(1 / 0.07) at the start, capped at log(100)."""

    def __init__(self):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def clamp_(self) -> None:
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, math.log(100.0))


class ClipTask(Task):
    name = "clip"
    default_batch = 64
    default_lr = 1e-3
    default_eval_frames = 256
    weight_decay = 0.05
    twin_fraction = 0.5

    def __init__(self, preset: Preset, seed: int):
        super().__init__(preset, seed)
        # The names Components builds these towers under, so the untrained embedding rows equal
        # the seeded random set's.
        with seeded(seed, "clip_text_encoder"):
            self.text = build_clip_text(preset)
        with seeded(seed, "image_encoder"):
            self.visual = build_visual(preset.image_embed_dim, preset.vision)
        self.temperature = Temperature()
        self.image_encoder = ImageEncoder(
            self.visual, (self.size, self.size), preset.vision["image_size"]
        )

    def modules(self) -> dict[str, nn.Module]:
        return {"text": self.text, "visual": self.visual, "temperature": self.temperature}

    def batch(self, step: int, size: int) -> dict:
        """`size` frames: random train scenes, and for `twin_fraction` of them a twin (the same
        scene and time with one shape's shape, size or colour changed). Without twins, colours
        and backgrounds tell a batch's captions apart and the towers learn little of shapes."""
        base = size - int(size * self.twin_fraction)
        scenes = [scene_and_time(self.seed, step * base + i, "train") for i in range(base)]
        rng = np.random.default_rng([self.seed, step, TWIN_STREAM])
        for spec, start in list(scenes):
            if len(scenes) == size:
                break
            twin = twin_spec(spec, rng)
            if twin is not None:
                scenes.append((twin, start))
        while len(scenes) < size:  # twins were missing: more random scenes
            scenes.append((world.sample_spec(rng, "train"), int(rng.integers(0, FRAME_RANGE))))
        frames = [world.render(spec, 1, self.size, start)[0] for spec, start in scenes]
        captions = [world.caption(spec) for spec, _ in scenes]
        return {"images": to_pixels(np.stack(frames)), "input_ids": tokenize(captions),
                "captions": captions}

    def loss(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        image = F.normalize(self.image_encoder(batch["images"]), dim=-1)
        text = F.normalize(self.text(batch["input_ids"]), dim=-1)
        logits = self.temperature.logit_scale.exp() * image @ text.T
        # Captions repeated within a batch are all positives of each other's frames.
        captions = batch["captions"]
        same = torch.tensor([[a == b for b in captions] for a in captions], dtype=torch.float32)
        targets = same / same.sum(dim=1, keepdim=True)
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        hits = same[torch.arange(len(captions)), logits.argmax(dim=1)].mean()
        return loss, {"i2t_acc": hits.item(), "scale": self.temperature.logit_scale.exp().item()}

    def after_step(self) -> None:
        self.temperature.clamp_()

    def evaluate(self, frames: int) -> dict:
        return evaluate_clip(self.image_encoder, self.text, frames, self.size)


TASKS: dict[str, type[Task]] = {"vae": VaeTask, "clip": ClipTask}


# ------------------------------------------------------------------------------- evaluation


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 image stacks."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def checker_agreement(frames: np.ndarray, specs: list) -> dict:
    """Fractions of shapes the checker finds, and finds with the right colour / shape class."""
    found = colour = shape = total = 0
    for frame, spec in zip(frames, specs, strict=True):
        detections = checker.detect_shapes(frame, spec)
        for expected, detection in zip(spec.shapes, detections, strict=True):
            total += 1
            if detection.get("found"):
                found += 1
                colour += detection["colour"] == expected.colour
                shape += detection["shape"] == expected.shape
    return {"found": found / total, "colour": colour / total, "shape": shape / total}


def reconstruct(vae: nn.Module, frames: np.ndarray, batch: int = 64) -> np.ndarray:
    """Posterior-mean reconstructions, uint8."""
    outputs = []
    with torch.no_grad():
        for start in range(0, len(frames), batch):
            pixels = to_pixels(frames[start : start + batch])
            outputs.append(to_uint8(vae.decode(vae.encode(pixels).latent_dist.mean).sample))
    return np.concatenate(outputs)


def evaluate_vae(vae: nn.Module, count: int, size: int) -> dict:
    frames, _, specs = heldout_batch(count, size)
    recon = reconstruct(vae, frames)
    truth = checker_agreement(frames, specs)
    return {
        "frames": count,
        "psnr": round(psnr(recon, frames), 3),
        "checker_recon": checker_agreement(recon, specs),
        "checker_truth": truth,
    }


ATTRIBUTES = ("colour", "shape", "size", "motion", "background")
SHAPE_ATTRIBUTES = {"colour": world.COLOURS, "shape": world.SHAPES, "size": world.SIZES}
SCENE_ATTRIBUTES = {"motion": world.MOTIONS, "background": world.BACKGROUNDS}


def _with(spec, attribute: str, value: str):
    """`spec` with `attribute` of its first shape (or of the scene) set to `value`; ValueError
    when that is not a scene of the world (a colour clash)."""
    if attribute in SHAPE_ATTRIBUTES:
        first = replace(spec.shapes[0], **{attribute: value})
        return replace(spec, shapes=(first,) + spec.shapes[1:])
    return replace(spec, **{attribute: value})


def _variants(spec, attribute: str):
    """Valid specs that differ from `spec` in one attribute of its first shape (or the scene's
    motion / background), the true value first."""
    holder = spec.shapes[0] if attribute in SHAPE_ATTRIBUTES else spec
    true = getattr(holder, attribute)
    variants = [spec]
    for value in {**SHAPE_ATTRIBUTES, **SCENE_ATTRIBUTES}[attribute]:
        if value == true:
            continue
        try:
            variants.append(_with(spec, attribute, value))
        except ValueError:  # a colour clash: not a scene of the world
            continue
    return variants


def _encode_texts(text_tower: nn.Module, captions: list[str], batch: int = 512) -> torch.Tensor:
    outputs = []
    with torch.no_grad():
        for start in range(0, len(captions), batch):
            ids = tokenize(captions[start : start + batch])
            outputs.append(F.normalize(text_tower(ids), dim=-1))
    return torch.cat(outputs)


def evaluate_clip(image_encoder: nn.Module, text_tower: nn.Module, count: int, size: int) -> dict:
    """Zero-shot attribute accuracy on held-out frames (the true caption against the captions
    that change one attribute; chance = mean 1 / candidates) and caption retrieval among the
    held-out captions. Motion is not visible in one frame: its accuracy stays near chance."""
    frames, captions, specs = heldout_batch(count, size)
    with torch.no_grad():
        images = F.normalize(image_encoder(to_pixels(frames)), dim=-1)
    result = {"frames": count}
    for attribute in ATTRIBUTES:
        candidates = [_variants(spec, attribute) for spec in specs]
        texts = [world.caption(v) for group in candidates for v in group]
        embeds = _encode_texts(text_tower, texts)
        hits, chance, offset = 0, 0.0, 0
        for k, group in enumerate(candidates):
            scores = embeds[offset : offset + len(group)] @ images[k]
            hits += int(scores.argmax()) == 0
            chance += 1 / len(group)
            offset += len(group)
        result[attribute] = {"accuracy": hits / count, "chance": chance / count}
    unique = sorted(set(captions))
    similarity = images @ _encode_texts(text_tower, unique).T
    best = [unique[i] for i in similarity.argmax(dim=1).tolist()]
    result["retrieval_top1"] = sum(b == c for b, c in zip(best, captions)) / count
    result["retrieval_candidates"] = len(unique)
    return result


# ----------------------------------------------------------------------------- checkpoints


def _atomic_save(payload: dict, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _write_json(data, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(temporary, path)


def _preset_record(preset: Preset) -> dict:
    return {"name": preset.name, "dimensions": preset.dimensions()}


def read_checkpoint(path: Path) -> dict:
    """A training checkpoint (a DIR or DIR/checkpoint.pt), checked for its format."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise TrainError(f"no training checkpoint at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path}: not a toy training checkpoint (format {CHECKPOINT_FORMAT})")
    return payload


def _check_resumable(payload: dict, config: TrainConfig, batch: int, preset: Preset) -> None:
    saved = payload["config"]
    differences = [
        f"{key}: checkpoint {saved[key]!r}, asked {value!r}"
        for key, value in (("model", config.model), ("seed", config.seed), ("batch", batch))
        if saved[key] != value
    ]
    if payload["preset"] != _preset_record(preset):
        name = payload["preset"]["name"]
        differences.append(f"preset: checkpoint {name!r} with other dimensions")
    if differences:
        raise TrainError(
            f"cannot resume {config.out / CHECKPOINT_FILE}: " + "; ".join(differences)
        )


# -------------------------------------------------------------------------------- the loop


def learning_rate(step: int, peak: float, schedule_steps: int) -> float:
    """Linear warmup (5 % of the schedule, at most 200 steps), cosine decay to 10 % of the peak
    at `schedule_steps`, then constant."""
    warmup = max(1, min(200, schedule_steps // 20))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, schedule_steps - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """Step, loss, steps/s and ETA lines; the rate counts the steps of this process only."""

    def __init__(self, first_step: int, total: int, log: Callable[[str], None]):
        self.first_step = first_step
        self.total = total
        self.log = log
        self.started = time.monotonic()

    def rate(self, step: int) -> float:
        elapsed = time.monotonic() - self.started
        return (step - self.first_step) / elapsed if elapsed > 0 else 0.0

    def report(self, step: int, loss: float, parts: dict, lr: float) -> dict:
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        figures = " ".join(f"{k} {v:.4g}" for k, v in parts.items())
        self.log(
            f"step {step}/{self.total} loss {loss:.4f} ({figures}) lr {lr:.2e} "
            f"{rate:.2f} steps/s ETA {_format_seconds(eta) if eta == eta else '?'}"
        )
        return {"step": step, "loss": loss, **parts, "lr": lr, "steps_per_s": rate}


class Run:
    """One training run: the task, its optimizer, schedule and checkpoints in `config.out`."""

    def __init__(self, config: TrainConfig, log: Callable[[str], None] = print):
        self.config = config
        self.log = log
        self.preset = config.preset or toy_preset()
        self.task = TASKS[config.model](self.preset, config.seed)
        self.batch = config.batch or self.task.default_batch
        self.peak_lr = config.lr or self.task.default_lr
        self.schedule_steps = config.schedule_steps or config.steps
        self.optimizer = torch.optim.AdamW(
            self.task.parameter_groups(), lr=self.peak_lr, betas=(0.9, 0.98), eps=1e-8
        )
        self.step = 0
        self.generator = torch.Generator()
        self.checkpoint_path = config.out / CHECKPOINT_FILE

    # -- checkpoints
    def _payload(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.config.model,
            "step": self.step,
            "config": {
                "model": self.config.model,
                "seed": self.config.seed,
                "batch": self.batch,
                "peak_lr": self.peak_lr,
                "schedule_steps": self.schedule_steps,
            },
            "preset": _preset_record(self.preset),
            "modules": {name: m.state_dict() for name, m in self.task.modules().items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "generator": self.generator.get_state()},
            "extras": self.task.extras(),
        }

    def save(self) -> None:
        self.config.out.mkdir(parents=True, exist_ok=True)
        _atomic_save(self._payload(), self.checkpoint_path)

    def restore(self) -> None:
        payload = read_checkpoint(self.checkpoint_path)
        _check_resumable(payload, self.config, self.batch, self.preset)
        for name, module in self.task.modules().items():
            module.load_state_dict(payload["modules"][name], strict=True)
        self.optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["rng"]["torch"])
        self.generator.set_state(payload["rng"]["generator"])
        saved = payload["config"]
        self.peak_lr = self.config.lr or saved["peak_lr"]
        self.schedule_steps = self.config.schedule_steps or saved["schedule_steps"]
        self.step = payload["step"]
        self._truncate_log(self.step)

    def _truncate_log(self, step: int) -> None:
        """Drops log lines past the checkpoint (written by a run that stopped later)."""
        path = self.config.out / LOG_FILE
        if path.is_file():
            lines = [line for line in path.read_text().splitlines()
                     if line and json.loads(line).get("step", 0) <= step]
            path.write_text("".join(line + "\n" for line in lines))

    def prepare(self) -> None:
        exists = self.checkpoint_path.is_file()
        if exists and not self.config.resume:
            step = read_checkpoint(self.checkpoint_path)["step"]
            raise TrainError(
                f"{self.checkpoint_path} holds a checkpoint at step {step}: pass --resume to "
                "continue it, or choose another --out"
            )
        if exists:
            self.restore()
            self.log(f"resumed {self.config.model} at step {self.step} from {self.checkpoint_path}")
        elif self.config.resume:
            self.log(f"no checkpoint in {self.config.out}: starting {self.config.model} at step 0")

    # -- the loop
    def train_step(self) -> tuple[float, dict, float]:
        lr = learning_rate(self.step, self.peak_lr, self.schedule_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.task.batch(self.step, self.batch)
        self.generator.manual_seed(_seed_of(self.config.seed, self.step))
        loss, parts = self.task.loss(batch, self.generator)
        if not torch.isfinite(loss):
            raise TrainError(f"{self.config.model}: loss is {loss.item()} at step {self.step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parameters = [p for g in self.optimizer.param_groups for p in g["params"]]
        parts["grad_norm"] = float(nn.utils.clip_grad_norm_(parameters, 1.0))
        self.optimizer.step()
        self.task.after_step()
        self.step += 1
        return loss.item(), parts, lr

    def evaluate(self) -> dict:
        for module in self.task.modules().values():
            module.eval()
        try:
            frames = self.config.eval_frames or self.task.default_eval_frames
            return {"step": self.step, **self.task.evaluate(frames)}
        finally:
            for module in self.task.modules().values():
                module.train()

    def run(self) -> dict:
        """Trains up to `config.steps` (total, counting resumed steps); returns the last
        evaluation (also in DIR/metrics.json)."""
        self.prepare()
        config = self.config
        config.out.mkdir(parents=True, exist_ok=True)
        if self.step >= config.steps:
            self.log(f"{config.model}: already at step {self.step} >= {config.steps}")
        for module in self.task.modules().values():
            module.train()
        progress = Progress(self.step, config.steps, self.log)
        with open(config.out / LOG_FILE, "a") as log_file:
            while self.step < config.steps:
                loss, parts, lr = self.train_step()
                if self.step % config.log_every == 0 or self.step == config.steps:
                    record = progress.report(self.step, loss, parts, lr)
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                if config.eval_every and self.step % config.eval_every == 0:
                    self.log(f"eval: {json.dumps(self.evaluate())}")
                if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                    self.save()
        metrics = self.evaluate()
        rate = progress.rate(self.step)
        metrics["seconds_per_step"] = 1 / rate if rate else None
        _write_json(metrics, config.out / METRICS_FILE)
        self.log(f"eval: {json.dumps(metrics)}")
        return metrics


def train(config: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Runs (or resumes) one training run; see `Run.run`."""
    return Run(config, log).run()

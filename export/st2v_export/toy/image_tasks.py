"""The image models of the toy set (see TRAINING.md), trained on single frames:

- `vae`: the preset's AutoencoderKL (Kingma & Welling 2014; Rombach et al. 2022), built as
  `components.py` builds it, trained with L1 + L2 reconstruction (weighted towards the shapes'
  pixels), an image-gradient term and a small KL term; evaluated by PSNR and by the checker's
  colour / shape verdicts on held-out frames.
- `clip`: the CLIP pair (Radford et al. 2021): the open_clip text tower of the
  `clip_text_encoder` graph and the open_clip vision tower of the `image_encoder` graph (with the
  graph's preprocessing in front), trained with the symmetric contrastive loss on
  (frame, caption) pairs, half of each batch being one-attribute twins of the other half. The
  stage-1/2 text encoder is the tower's first `num_hidden_layers` blocks plus its final
  LayerNorm (as ModelScope's is OpenCLIP-H's penultimate layer): `weights.py`.
"""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import replace

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
from .data import (
    FRAME_RANGE,
    frame_batch,
    HELDOUT_SEED,
    heldout_batch,
    scene_and_time,
    tokenize,
    to_pixels,
    to_uint8,
    twin_spec,
)
from .runfiles import read_checkpoint
from .task import Task, TrainError, device_of

LATENT_STAT_FRAMES = 128
"""Train frames (seed + 1) whose posterior means give the VAE's latent statistics."""
TWIN_STREAM = 7
"""Third seed word of the generator that draws the CLIP batches' twins."""


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

    def __init__(self, preset: Preset, seed: int, runs=None):
        super().__init__(preset, seed, runs)
        self.vae = self.build(preset)

    def build(self, preset: Preset) -> nn.Module:
        with seeded(self.seed, "vae"):  # the name Components builds it under
            return build_vae(preset.vae)

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae}

    def frames(self, seed: int, step: int, count: int, split: str = "train"):
        """uint8 frames, captions and specs of step `step` of a seed's stream (as trained on)."""
        return frame_batch(seed, step, count, self.size, split)

    def backgrounds(self, specs: list) -> np.ndarray:
        """The rendered backgrounds of `frames`' scenes."""
        return np.stack([world.render_background(s.background, self.size) for s in specs])

    def batch(self, step: int, size: int) -> dict:
        frames, _, specs = self.frames(self.seed, step, size)
        return {"images": to_pixels(frames), "weights": self.pixel_weights(frames, specs)}

    def pixel_weights(self, frames: np.ndarray, specs: list) -> torch.Tensor:
        """(N, 1, H, W): 1 on the background, 1 + foreground_weight on the shapes."""
        shapes = np.any(frames != self.backgrounds(specs), axis=-1)[:, None]
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
        parts = {"l1": l1, "l2": l2, "edge": edges, "kl": kl}
        return loss, {name: value.detach() for name, value in parts.items()}

    def extras(self) -> dict:
        """Per-channel mean and std of the posterior means on fixed train frames: `weights.py`
        folds them into quant_conv / post_quant_conv so that latents * 0.18215 have unit std."""
        frames, _, _ = self.frames(self.seed + 1, 0, LATENT_STAT_FRAMES)
        with torch.no_grad():
            means = self.vae.encode(to_pixels(frames).to(self.device)).latent_dist.mean
        return {
            "latent_mean": means.mean(dim=(0, 2, 3)).tolist(),
            "latent_std": means.std(dim=(0, 2, 3)).tolist(),
        }

    def evaluate(self, frames: int) -> dict:
        heldout = self.frames(HELDOUT_SEED, 0, frames, split="heldout")
        return evaluate_vae(self.vae, heldout, self.checked_region)

    def checked_region(self, frames: np.ndarray) -> np.ndarray:
        """The part of a frame the checker judges (all of it; the enhancer's crops its bars)."""
        return frames


def edge_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance of the horizontal and vertical finite differences of two image batches."""
    dx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
    dy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
    return (dx.abs().mean() + dy.abs().mean()) / 2


class VaeDecoderTask(VaeTask):
    """`vae_decoder`: more training of the `vae` run's decoder (post_quant_conv and decoder) with
    its encoder frozen. The latents, and so their statistics and every UNet trained on them, stay
    the same; only the reconstructions get sharper (the small stars and triangles come last).
    When the preset's decoder is deeper than the run's, the extra resnets start as identities
    (`deepen_decoder`): the first step decodes exactly as the run does."""

    name = "vae_decoder"
    default_lr = 1e-3

    def __init__(self, preset: Preset, seed: int, runs=None):
        super().__init__(preset, seed, runs)
        if runs is None:
            raise TrainError("vae_decoder needs the directory of the vae run (--runs)")
        payload = read_checkpoint(Path(runs) / "vae")
        deepen_decoder(self.vae, payload["modules"]["vae"])
        self.initialisation = f"{Path(runs) / 'vae'} step {payload['step']}"
        extras = payload.get("extras", {})
        if "latent_mean" not in extras or "latent_std" not in extras:
            raise TrainError(f"{Path(runs) / 'vae'} has no latent statistics (extras)")
        self.latent_statistics = {k: extras[k] for k in ("latent_mean", "latent_std")}
        for part in (self.vae.encoder, self.vae.quant_conv):
            part.requires_grad_(False)

    def extras(self) -> dict:
        """The vae run's latent statistics: the encoder is frozen, and measuring them again
        would not give a recovered run's exact ones back."""
        return {**self.latent_statistics, "initialised_from": self.initialisation}


def deepen_decoder(vae: nn.Module, state: dict) -> None:
    """Loads a VAE state into `vae`, whose decoder may have more resnets per up block than the
    state's; each extra resnet gets a zero output convolution, so it passes its input through
    (a resnet adds its branch to its input)."""
    missing, unexpected = vae.load_state_dict(state, strict=False)
    extra = {name.rsplit(".", 2)[0] for name in missing}  # resnet.layer.parameter
    if unexpected or any(not (name.startswith("decoder.up_blocks.") and ".resnets." in name)
                         for name in missing):
        raise TrainError(f"the vae run does not fit this preset's VAE: missing {missing}, "
                         f"unexpected {unexpected}")
    modules = dict(vae.named_modules())
    for name in sorted(extra):
        nn.init.zeros_(modules[name].conv2.weight)
        nn.init.zeros_(modules[name].conv2.bias)


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

    def __init__(self, preset: Preset, seed: int, runs=None):
        super().__init__(preset, seed, runs)
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

    def frozen_modules(self) -> list[nn.Module]:
        return [self.image_encoder]  # the visual tower behind the graph's preprocessing

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
        same = torch.tensor([[a == b for b in captions] for a in captions], dtype=torch.float32,
                            device=logits.device)
        targets = same / same.sum(dim=1, keepdim=True)
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        rows = torch.arange(len(captions), device=logits.device)
        hits = same[rows, logits.argmax(dim=1)].mean()
        return loss, {"i2t_acc": hits, "scale": self.temperature.logit_scale.detach().exp()}

    def after_step(self) -> None:
        self.temperature.clamp_()

    def evaluate(self, frames: int) -> dict:
        return evaluate_clip(self.image_encoder, self.text, frames, self.size)



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
            pixels = to_pixels(frames[start : start + batch]).to(device_of(vae))
            outputs.append(to_uint8(vae.decode(vae.encode(pixels).latent_dist.mean).sample))
    return np.concatenate(outputs)


def evaluate_vae(vae: nn.Module, heldout: tuple, region=lambda frames: frames) -> dict:
    """PSNR and checker verdicts of the reconstructions of held-out (frames, captions, specs);
    `region` picks the pixels the checker judges."""
    frames, _, specs = heldout
    recon = reconstruct(vae, frames)
    return {
        "frames": len(frames),
        "psnr": round(psnr(recon, frames), 3),
        "checker_recon": checker_agreement(region(recon), specs),
        "checker_truth": checker_agreement(region(frames), specs),
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
            ids = tokenize(captions[start : start + batch]).to(device_of(text_tower))
            outputs.append(F.normalize(text_tower(ids), dim=-1))
    return torch.cat(outputs)


def evaluate_clip(image_encoder: nn.Module, text_tower: nn.Module, count: int, size: int) -> dict:
    """Zero-shot attribute accuracy on held-out frames (the true caption against the captions
    that change one attribute; chance = mean 1 / candidates) and caption retrieval among the
    held-out captions. Motion is not visible in one frame: its accuracy stays near chance."""
    frames, captions, specs = heldout_batch(count, size)
    with torch.no_grad():
        images = F.normalize(image_encoder(to_pixels(frames).to(device_of(text_tower))), dim=-1)
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

"""The toy enhancer (stage 3): MS-Vid2Vid-XL's three networks at the `toy` preset's stage-3 size,
trained on the toy world rendered at the enhancer's content size (see TRAINING.md, "The enhancer").

- `enhancer_vae`: the LDM AutoencoderKL of the `enhancer_vae_encoder/decoder` graphs, trained as
  the stage-1/2 VAE is (`image_tasks.VaeTask`: L1 + L2 weighted towards the shapes, an
  image-gradient term, a small KL term) on frames as the enhancer sees them: rendered at the
  content size (80x80 for 64x64 stage-2 frames) and centred on black bars (80x128).
- `enhancer`: the `Vid2VidSDUNet` (v prediction on the stage-3 log-SNR schedule, `diffusion.py`)
  on clips in that VAE's latent space, with the open_clip text tower of `enhancer_text_encoder`
  (started from the `clip` run's tower, tuned at 0.2x) on captions written as the engine writes
  them ("<caption>, "), the empty prompt for 10 % of the clips (classifier-free guidance).
  Only timesteps up to the SDEdit start (599) are trained: the enhancer never sees more noise.
  With `--draft-share`, that share of each batch's clips is noised from a degraded draft instead
  (rendered at the stage-2 size, its shapes faded and recoloured a little, upscaled as the engine
  upscales) at the toy manifest's SDEdit timesteps, and the target is the clean clip: the
  enhancer learns to restore what stage 2 gets roughly right (`diffusion.stage3_restoration`).

As in MS-Vid2Vid-XL, the enhancer is a text-to-video diffusion model at the higher resolution;
SDEdit turns it into a refiner: the upscaled stage-2 video, noised to t = 599, keeps its layout
and colours, and the UNet redraws what the noise hid (sharp edges, at the content size).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch import nn

from ..components import seeded
from ..enhancer.configs import config_for
from ..enhancer.modules import (
    EnhancerTextEncoder,
    build_autoencoder,
    build_text_tower,
    build_unet,
)
from ..presets import Preset
from . import world
from .data import frame_batch, tokenize, video_batch
from .diffusion import STAGE3_NOISE_TIMESTEP, TOY_STAGE3_NOISE_TIMESTEP, stage3_restoration
from .image_tasks import VaeTask
from .runfiles import read_checkpoint
from .task import Task, TrainError
from .video_tasks import decode_videos, dropped, encode_videos, videos_to_pixels
from .weights import clip_text_into_enhancer, fold_latent_normalisation

ENHANCER_CLIP_FRAMES = 8
"""Frames per training clip: the UNet's temporal layers see any length (the graph takes 24);
8 frames make a step three times cheaper than 24 on two cores."""
SEPARATOR = ", "
"""The engine conditions the enhancer on "<prompt>, " (the reference's caption + its empty
positive prompt)."""
DRAFT_STREAM = 19
"""The random stream of the drafts' degradations (`--draft-share`)."""
RESTORATION_TIMESTEPS = (150, TOY_STAGE3_NOISE_TIMESTEP)
"""Where draft clips are noised: up to the toy set's SDEdit start; from 150 (alpha 0.88, sigma
0.47), where the restoration term's factor alpha^2 / sigma is at most 1.65 (0.50 at 300)."""
DRAFT_FADE = (0.5, 1.0)
"""A draft's shapes keep this share of their contrast with the background (uniform per clip):
stage 2's shapes are often faint."""
DRAFT_COLOUR_SHIFT = 20.0
"""The std of a per-clip RGB offset (0-255) on a draft's shape pixels: stage 2 drifts colours."""
DRAFT_GAP_SHARE = 0.0
"""The share of drafts whose shapes vanish from a random frame on (at least the first two kept):
stage 2 loses a shape for tens of frames, mostly late in a video. 0 (the default) draws nothing
more from the drafts' random stream, so it degrades exactly as before the option."""


class Geometry:
    """Where a square stage-2 frame lands in a stage-3 frame: resized to fit, centred on black
    (the engine's `plan::geometry`, the reference's `resize_to_fit` + `pad_to_fit`)."""

    def __init__(self, preset: Preset):
        self.height, self.width = preset.stage3.height, preset.stage3.width
        content = preset.stage3_content
        if content.height != content.width:
            raise TrainError(f"the toy world's frames are square: stage3_content is {content}")
        self.content = content.height
        self.top = (self.height - self.content) // 2
        self.left = (self.width - self.content) // 2

    def pad(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (..., content, content, 3) -> (..., height, width, 3) on black bars."""
        out = np.zeros(frames.shape[:-3] + (self.height, self.width, 3), dtype=np.uint8)
        out[..., self.top:self.top + self.content, self.left:self.left + self.content, :] = frames
        return out

    def crop(self, frames: np.ndarray) -> np.ndarray:
        return frames[..., self.top:self.top + self.content, self.left:self.left + self.content, :]

    def upscale(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, s, s) in [-1, 1] -> (N, 3, height, width): bicubic to the content, black bars
        (a draft as the engine hands it to the enhancer)."""
        size = (self.content, self.content)
        resized = F.interpolate(pixels, size=size, mode="bicubic", align_corners=False)
        out = torch.full((pixels.shape[0], 3, self.height, self.width), -1.0,
                         device=pixels.device)
        out[:, :, self.top:self.top + self.content, self.left:self.left + self.content] = (
            resized.clamp(-1, 1)
        )
        return out


class LdmAutoencoder(nn.Module):
    """The LDM AutoencoderKL behind the diffusers calls `VaeTask` makes (`encode(x).latent_dist`,
    `decode(z).sample`); the same maths as the `enhancer_vae_*` graphs."""

    def __init__(self, autoencoder: nn.Module):
        super().__init__()
        self.autoencoder = autoencoder

    def encode(self, images: torch.Tensor) -> SimpleNamespace:
        moments = self.autoencoder.quant_conv(self.autoencoder.encoder(images))
        return SimpleNamespace(latent_dist=DiagonalGaussianDistribution(moments))

    def decode(self, latents: torch.Tensor) -> SimpleNamespace:
        decoded = self.autoencoder.decoder(self.autoencoder.post_quant_conv(latents))
        return SimpleNamespace(sample=decoded)


class EnhancerVaeTask(VaeTask):
    name = "enhancer_vae"
    default_batch = 8
    default_eval_frames = 64

    def __init__(self, preset: Preset, seed: int, runs=None):
        self.geometry = Geometry(preset)
        self.config = config_for(preset)
        super().__init__(preset, seed, runs)

    def build(self, preset: Preset) -> nn.Module:
        with seeded(self.seed, "enhancer_vae"):
            self.autoencoder = build_autoencoder(self.config.vae)
        return LdmAutoencoder(self.autoencoder)

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.autoencoder}

    def frames(self, seed: int, step: int, count: int, split: str = "train"):
        frames, captions, specs = frame_batch(seed, step, count, self.geometry.content, split)
        return self.geometry.pad(frames), captions, specs

    def backgrounds(self, specs: list) -> np.ndarray:
        size = self.geometry.content
        return self.geometry.pad(np.stack([world.render_background(s.background, size)
                                           for s in specs]))

    def checked_region(self, frames: np.ndarray) -> np.ndarray:
        return self.geometry.crop(frames)


def degraded_draft(clip: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    """A clip as a rough stage 2 draws it: rendered at `size` (the stage-2 frames), its shapes
    faded towards the background (`DRAFT_FADE`), shifted in colour (`DRAFT_COLOUR_SHIFT`) and,
    for a share of drafts (`DRAFT_GAP_SHARE`), gone from a random frame on, uint8
    (F, size, size, 3)."""
    spec = clip["spec"]
    frames = world.render(spec, len(clip["frames"]), size, clip["start"]).astype(np.float32)
    background = world.render_background(spec.background, size).astype(np.float32)
    fade, shift = rng.uniform(*DRAFT_FADE), rng.normal(0.0, DRAFT_COLOUR_SHIFT, 3)
    faded, on_shape = world.fade_shapes(frames, background, fade)
    draft = faded + np.where(on_shape, shift, 0.0)
    if DRAFT_GAP_SHARE > 0 and rng.random() < DRAFT_GAP_SHARE and len(frames) > 2:
        gone = rng.integers(2, len(frames))
        draft[gone:] = np.where(on_shape[gone:], background, draft[gone:])
    return np.clip(np.round(draft), 0, 255).astype(np.uint8)


class EnhancerTask(Task):
    """The enhancer UNet and its text tower, on clips encoded by the frozen `enhancer_vae` run."""

    name = "enhancer"
    default_batch = 4
    default_lr = 1e-3
    default_eval_frames = 8
    weight_decay = 0.01
    lr_scales = {"text": 0.2}
    draft_share = 0.0
    """The share of each batch's clips trained to restore a degraded draft (`--draft-share`)."""

    def __init__(self, preset: Preset, seed: int, runs: Path | None = None):
        super().__init__(preset, seed, runs)
        if runs is None:
            raise TrainError(
                "enhancer needs the directory of the enhancer_vae and clip runs (--runs)"
            )
        self.geometry = Geometry(preset)
        self.config = config_for(preset)
        self.vae = LdmAutoencoder(self._frozen_vae(Path(runs) / "enhancer_vae"))
        with seeded(seed, "enhancer_unet"):
            self.unet = build_unet(self.config.unet)
        with seeded(seed, "enhancer_text_encoder"):
            self.text = build_text_tower(self.config.text)
        self.initialisation = self._initialise_text(Path(runs) / "clip")

    def _frozen_vae(self, run: Path) -> nn.Module:
        payload = read_checkpoint(run)
        extras = payload.get("extras", {})
        autoencoder = build_autoencoder(self.config.vae)
        autoencoder.load_state_dict(fold_latent_normalisation(
            payload["modules"]["vae"], extras["latent_mean"], extras["latent_std"]))
        self.vae_source = f"{run} step {payload['step']}"
        return autoencoder.requires_grad_(False).eval()

    def _initialise_text(self, run: Path) -> str:
        """The clip run's text tower: embeddings, its first blocks and final LayerNorm (the
        projection and later blocks do not fit and the graph does not use them)."""
        payload = read_checkpoint(run)
        clip_text_into_enhancer(self.text, payload["modules"]["text"])
        return f"text from {run} step {payload['step']}"

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, "text": self.text}

    def frozen_modules(self) -> list[nn.Module]:
        return [self.vae]

    def extras(self) -> dict:
        return {"frozen": {"enhancer_vae": self.vae_source},
                "initialised_from": self.initialisation}

    def batch(self, step: int, size: int) -> dict:
        clips = video_batch(self.seed, step, size, ENHANCER_CLIP_FRAMES, self.geometry.content)
        drop = dropped(self.seed, step, size)
        videos = np.stack([self.geometry.pad(clip["frames"]) for clip in clips])
        batch = {
            "videos": videos_to_pixels(videos),
            "captions": ["" if d else clip["caption"] for d, clip in zip(drop, clips)],
        }
        drafted = round(self.draft_share * size)
        if drafted:  # the first clips of the step, as `--crossing-share` picks its clips
            rng = np.random.default_rng([self.seed, step, DRAFT_STREAM])
            drafts = np.stack([degraded_draft(clip, self.size, rng) for clip in clips[:drafted]])
            batch["drafts"] = self.upscaled(drafts)
        return batch

    def upscaled(self, drafts: np.ndarray) -> torch.Tensor:
        """uint8 (B, F, s, s, 3) stage-2 frames -> (B, F, 3, H, W) stage-3 drafts in [-1, 1]."""
        pixels = videos_to_pixels(drafts)
        upscaled = self.geometry.upscale(pixels.flatten(0, 1))
        return upscaled.reshape(pixels.shape[:2] + upscaled.shape[1:])

    def text_states(self, captions: list[str]) -> torch.Tensor:
        """(B, 77, D): the enhancer_text_encoder graph's output ("<caption>, "; "" stays "")."""
        texts = [c + SEPARATOR if c else c for c in captions]
        return EnhancerTextEncoder(self.text)(tokenize(texts).to(self.device))

    def latents(self, videos: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return encode_videos(self.vae, videos, generator)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return decode_videos(self.vae, latents)

    def predict(self, sample: torch.Tensor, t, context: torch.Tensor) -> torch.Tensor:
        timesteps = t if torch.is_tensor(t) else torch.full((sample.shape[0],), t,
                                                            device=sample.device)
        return self.unet(sample, timesteps, context)

    def loss(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        latents = self.latents(batch["videos"], generator)
        context = self.text_states(batch["captions"])
        timesteps = torch.randint(0, STAGE3_NOISE_TIMESTEP + 1, (latents.shape[0],),
                                  generator=generator)
        noise = torch.randn(latents.shape, generator=generator)
        drafts, drafted = latents, 0
        if "drafts" in batch:  # restore the drafts to their clean clips at SDEdit's timesteps
            drafted = batch["drafts"].shape[0]
            low, high = RESTORATION_TIMESTEPS
            timesteps[:drafted] = torch.randint(low, high + 1, (drafted,), generator=generator)
            drafts = torch.cat([self.latents(batch["drafts"], generator), latents[drafted:]])
        timesteps, noise = timesteps.to(self.device), noise.to(self.device)
        noisy, target = stage3_restoration(latents, drafts, noise, timesteps)
        prediction = self.predict(noisy, timesteps, context)
        parts = {}
        if drafted:
            parts["drafts"] = F.mse_loss(prediction[:drafted], target[:drafted]).detach()
        return F.mse_loss(prediction, target), parts

    def evaluate(self, videos: int) -> dict:
        from .enhancer_eval import evaluate_enhancer

        return evaluate_enhancer(self, videos)

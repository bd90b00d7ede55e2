"""The video models of the toy set (see TRAINING.md), trained on clips of the toy world in the
latent space of the trained VAE, conditioned by the trained text encoder (both frozen):

- `stage1`: ModelScope's UNet3D (Wang et al. 2023), the `stage1_unet` graph: v prediction
  (`diffusion.py`) on 16-frame clips, with the empty prompt for 10 % of them (classifier-free
  guidance), and optionally the binding loss on its cross-attention (`binding.py`).
- `stage2`: StreamingT2V's stage 2 (Henschel et al. 2024, Sec. 3 and 4.1): the video UNet with
  the CAM mergers and APM token mixing (`unet`), the CAM (`cam`, with E_cond) and the APM
  resampler (`apm_resampler`). Each 16-frame training clip is conditioned on its own first 8
  frames (the CAM's input, as at inference where they are the previous chunk's last 8) and on an
  anchor frame drawn from earlier in the video (the APM's). The UNet and the CAM's encoder copy
  start from the `stage1` run's UNet, the zero-initialised parts (E_cond's output conv, the
  mergers' output projections, the APM gates) from zero, as in the paper. Unlike the paper,
  the base UNet is trained too: on two CPU cores stage 2 starts from an early stage-1
  checkpoint while stage 1 goes on training.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..components import Components, seeded
from ..modules import unet3d
from ..modules.cam import Cam
from ..modules.image import ImageEncoder
from ..modules.resampler import ApmResampler
from ..modules.streaming_unet import StreamingUnet
from ..presets import COND_FRAMES, IMAGE_TOKENS, VAE_SCALING_FACTOR, Preset
from . import world
from .binding import AttentionCapture, binding_loss, capture_spatial_cross_attention
from .data import to_pixels, tokenize, video_batch
from .diffusion import CFG_DROPOUT, TRAIN_TIMESTEPS, add_noise, v_target
from .runfiles import read_checkpoint
from .task import Task, TrainError, device_of
from .weights import ToyWeights

CHUNK_FRAMES = 16
DROPOUT_STREAM = 13
"""Third seed word of the generator that picks the clips trained without their condition."""
FADE_STREAM = 23
"""Third seed word of the generator of the faded conditions."""
CONDITION_FADE_SHARE = 0.0
"""Stage 2: the share of clips whose CAM sees its 8 frames with the shapes faded towards the
background (`CONDITION_FADE`), while the loss still asks for the clip at full contrast: stage 2
fades shapes chunk after chunk, and this was to teach it to restore them (it did not:
TRAINING.md, "The fifteenth training"). 0 (the default) changes nothing and draws nothing.
`--decoded-conditions` decodes the clip's own frames instead: the two do not combine."""
CONDITION_FADE = (0.3, 1.0)
"""The range of the fade: 1 keeps a shape as it is, 0 leaves only the background."""


class FrozenEncoders:
    """The trained VAE and text encoder (and image encoder, for stage 2), loaded from their runs
    exactly as the export loads them (`ToyWeights`): the VAE with its latent normalisation
    folded in, so that posterior latents * 0.18215 have unit std."""

    def __init__(self, preset: Preset, seed: int, runs: Path, image: bool = False):
        roles = ("vae", "text_encoder") + (("image_encoder",) if image else ())
        self.weights = ToyWeights(runs, preset, require=roles)
        components = Components(preset, seed, self.weights)
        self.vae = components.vae
        self.text = components.text_model
        modules = [self.vae, self.text]
        self.image = None
        if image:
            size = (preset.stage2.height, preset.stage2.width)
            self.image = ImageEncoder(components.visual, size, preset.vision["image_size"])
            modules.append(self.image)
        for module in modules:
            module.requires_grad_(False).eval()

    def provenance(self) -> dict[str, str]:
        return self.weights.summary()

    def parts(self) -> list[nn.Module]:
        return [m for m in (self.vae, self.text, self.image) if m is not None]

    def token_ids(self, captions: list[str]) -> torch.Tensor:
        """(B, 77) token ids on the text encoder's device."""
        return tokenize(captions).to(device_of(self.text))

    def latents(self, videos: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return encode_videos(self.vae, videos, generator)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return decode_videos(self.vae, latents)

    @torch.no_grad()
    def text_states(self, captions: list[str]) -> torch.Tensor:
        """(B, 77, D): the text encoder graph's output for each caption."""
        return self.text(input_ids=self.token_ids(captions)).last_hidden_state

    @torch.no_grad()
    def image_embeds(self, images: torch.Tensor) -> torch.Tensor:
        """anchor frames (B, 3, H, W) in [-1, 1] -> (B, E): the image encoder graph's output."""
        return self.image(images)


@torch.no_grad()
def encode_videos(vae: nn.Module, videos: torch.Tensor, generator: torch.Generator | None):
    """videos (B, F, 3, H, W) in [-1, 1] -> scaled latents (B, 4, F, h, w) of a VAE with
    diffusers' interface; a posterior sample with a generator, else the mean."""
    batch, frames = videos.shape[:2]
    posterior = vae.encode(videos.flatten(0, 1)).latent_dist
    latents = posterior.sample(generator=generator) if generator is not None else posterior.mean
    latents = latents * VAE_SCALING_FACTOR
    return latents.reshape((batch, frames) + latents.shape[1:]).transpose(1, 2)


@torch.no_grad()
def decode_videos(vae: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """scaled latents (B, 4, F, h, w) -> frames (B, F, 3, H, W) in about [-1, 1]."""
    batch, frames = latents.shape[0], latents.shape[2]
    flat = latents.transpose(1, 2).flatten(0, 1) / VAE_SCALING_FACTOR
    pixels = vae.decode(flat).sample
    return pixels.reshape((batch, frames) + pixels.shape[1:])


def videos_to_pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, F, H, W, 3) -> (B, F, 3, H, W) in [-1, 1]."""
    return to_pixels(frames.reshape((-1,) + frames.shape[2:])).reshape(
        frames.shape[:2] + (3,) + frames.shape[2:4]
    )


def dropped(seed: int, step: int, count: int) -> list[bool]:
    """Which clips of a step train without their condition (CFG_DROPOUT of them)."""
    rng = np.random.default_rng([seed, step, DROPOUT_STREAM])
    return [bool(drop) for drop in rng.random(count) < CFG_DROPOUT]


def faded_conditions(clips: list[dict], seed: int, step: int) -> np.ndarray | None:
    """Each clip's first `COND_FRAMES` frames, uint8 (B, 8, H, W, 3), with the shapes of a
    `CONDITION_FADE_SHARE` of them faded by one factor drawn from `CONDITION_FADE`; None when
    the share is 0."""
    if CONDITION_FADE_SHARE <= 0:
        return None
    rng = np.random.default_rng([seed, step, FADE_STREAM])
    faded = []
    for clip in clips:
        frames = clip["frames"][:COND_FRAMES].astype(np.float32)
        fade = rng.uniform(*CONDITION_FADE)
        if rng.random() < CONDITION_FADE_SHARE:
            background = world.render_background(clip["spec"].background, frames.shape[1])
            frames, _ = world.fade_shapes(frames, background.astype(np.float32), fade)
        faded.append(np.round(frames))
    return np.stack(faded).astype(np.uint8)


def diffusion_targets(latents: torch.Tensor, generator: torch.Generator):
    """Per-video timesteps, noisy latents and the v target of a training step."""
    timesteps = torch.randint(0, TRAIN_TIMESTEPS, (latents.shape[0],), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps, noise = timesteps.to(latents.device), noise.to(latents.device)
    return timesteps, add_noise(latents, noise, timesteps), v_target(latents, noise, timesteps)


class VideoTask(Task):
    default_batch = 4
    """Clips per step."""
    default_lr = 1e-3
    default_eval_frames = 8
    """Held-out videos generated by the evaluation."""
    weight_decay = 0.01
    anchor = False
    beginning = False
    """Train on clips from their video's first frame (stage 1 makes only first chunks)."""
    crossing_share = 0.0
    """The share of each batch's clips drawn where a shape crosses an edge (`--crossing-share`)."""
    decoded_conditions = False
    """Stage 2: the CAM sees the first frames through the VAE (`--decoded-conditions`)."""

    def __init__(self, preset: Preset, seed: int, runs: Path | None = None):
        super().__init__(preset, seed, runs)
        if runs is None:
            raise TrainError(f"{self.name} needs the directory of the vae and clip runs (--runs)")
        self.frozen = FrozenEncoders(preset, seed, runs, image=self.anchor)

    def batch(self, step: int, size: int) -> dict:
        clips = video_batch(self.seed, step, size, CHUNK_FRAMES, self.size, anchor=self.anchor,
                            beginning=self.beginning,
                            crossings=round(self.crossing_share * size))
        drop = dropped(self.seed, step, size)
        batch = {
            "videos": videos_to_pixels(np.stack([clip["frames"] for clip in clips])),
            "captions": ["" if d else clip["caption"] for d, clip in zip(drop, clips)],
            "dropped": drop,
            "motions": torch.tensor([-1 if d else world.MOTIONS.index(clip["spec"].motion)
                                     for d, clip in zip(drop, clips)]),
            "shapes": torch.tensor([-1 if d else single_shape(clip["spec"])
                                    for d, clip in zip(drop, clips)]),
        }
        if self.anchor:
            anchors = to_pixels(np.stack([clip["anchor"] for clip in clips]))
            batch["anchors"] = torch.where(torch.tensor(drop).view(-1, 1, 1, 1), 0.0, anchors)
            conditions = faded_conditions(clips, self.seed, step)
            if conditions is not None:
                batch["conditions"] = videos_to_pixels(conditions)
        return batch

    def extras(self) -> dict:
        return {"frozen": self.frozen.provenance()}

    def frozen_modules(self) -> list[nn.Module]:
        return self.frozen.parts()


def single_shape(spec: world.SceneSpec) -> int:
    """The index of a one-shape scene's shape class; -1 for two shapes (not probed)."""
    return world.SHAPES.index(spec.shapes[0].shape) if len(spec.shapes) == 1 else -1


MOTION_PROBE_WEIGHT = 0.05
"""Weight of the motion probe's cross-entropy beside the diffusion loss (about 0.1)."""
SHAPE_PROBE_WEIGHT = 0.05
"""Weight of the shape probe's cross-entropy (one-shape captions), as the motion probe's."""


def probe_loss(probe: nn.Module, context: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a caption probe reading the mean text state; labels -1 (dropped, empty
    captions, or none to read) are left out, and all -1 gives 0. Without a branch on the
    values: no wait for the GPU in the step."""
    logits = probe(context.mean(dim=1))
    losses = F.cross_entropy(logits, labels.clamp(min=0), reduction="none")
    labelled = (labels >= 0).to(losses.dtype)
    return (losses * labelled).sum() / labelled.sum().clamp(min=1)


class Stage1Task(VideoTask):
    """The stage-1 UNet, and the text encoder fine-tuned with it. The CLIP pair sees single
    frames, so it never learns what motion words mean ("left" and "right" captions gave text
    states 0.1-0.3 apart, colours 1.2-7), and the diffusion loss alone moved them 0.02 in 4000
    steps (the UNet must use a word before the loss can shape it). So a linear probe on the mean
    text state learns the caption's motion beside it and pulls the motion words apart: an
    auxiliary loss of training only, not exported (TRAINING.md, item 0). A second probe names
    a one-shape caption's shape: the pair hardly tells "square" from "diamond" (0.4 apart) or
    "triangle" from "star" (TRAINING.md, "The text hides the shape"). The tuned encoder is
    the set's `text_encoder` (stages 1 and 2); `clip_text_encoder` stays the contrastive one.
    Its clips are video beginnings: stage 1 makes only a video's first chunk. With `bind`, the
    binding loss (`binding.py`) ties each shape of a two-shape caption to its own words."""

    name = "stage1"
    lr_scales = {"text": 0.2}
    beginning = True

    def __init__(self, preset: Preset, seed: int, runs: Path | None = None):
        super().__init__(preset, seed, runs)
        with seeded(seed, "stage1_unet"):  # the name Components builds it under
            self.unet = unet3d.build_unet3d(preset.unet)
        with seeded(seed, "motion_probe"):
            self.motion_probe = nn.Linear(preset.text["hidden_size"], len(world.MOTIONS))
        with seeded(seed, "shape_probe"):
            self.shape_probe = nn.Linear(preset.text["hidden_size"], len(world.SHAPES))
        self.frozen.text.requires_grad_(True)
        self.binding_weight = 0.0
        self.attention: AttentionCapture | None = None

    def bind(self, weight: float) -> None:
        """Adds the binding loss (`binding.py`) at `weight` beside the diffusion loss; 0: none."""
        self.binding_weight = weight
        if weight and self.attention is None:
            self.attention = capture_spatial_cross_attention(self.unet)

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, "text": self.frozen.text, "motion_probe": self.motion_probe,
                "shape_probe": self.shape_probe}

    def loss(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        latents = self.frozen.latents(batch["videos"], generator)
        context = self.frozen.text(input_ids=self.frozen.token_ids(batch["captions"]))
        context = context.last_hidden_state
        timesteps, noisy, target = diffusion_targets(latents, generator)
        binding = self.attention is not None and self.binding_weight > 0
        with self.attention.capturing() if binding else nullcontext() as layers:
            prediction = self.unet(noisy, timesteps, context, return_dict=False)[0]
        diffusion = F.mse_loss(prediction, target)
        motion = probe_loss(self.motion_probe, context, batch["motions"])
        shape = probe_loss(self.shape_probe, context, batch["shapes"])
        total = diffusion + MOTION_PROBE_WEIGHT * motion + SHAPE_PROBE_WEIGHT * shape
        parts = {"motion_probe": motion.detach(), "shape_probe": shape.detach()}
        if binding:
            attribute = binding_loss(batch["videos"], batch["captions"], layers)
            total = total + self.binding_weight * attribute
            parts["binding"] = attribute.detach()
        return total, parts

    def predict(self, sample: torch.Tensor, t: int, context: torch.Tensor) -> torch.Tensor:
        timesteps = torch.full((sample.shape[0],), t, dtype=torch.int64, device=sample.device)
        return self.unet(sample, timesteps, context, return_dict=False)[0]

    def evaluate(self, videos: int) -> dict:
        from .video_eval import evaluate_stage1

        return evaluate_stage1(self, videos)


def load_stage1_into(module: nn.Module, state: dict, allowed_missing: tuple[str, ...]) -> None:
    """Copies the stage-1 UNet's weights into a module that shares its diffusers names; the only
    keys left out are the stage-2 additions (`allowed_missing` prefixes or infixes)."""
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not any(a in k for a in allowed_missing)]
    if missing:
        raise TrainError(f"stage-1 weights do not cover {missing[:5]} ...")


def zero_(*parameters: torch.Tensor) -> None:
    with torch.no_grad():
        for parameter in parameters:
            parameter.zero_()


class Stage2Task(VideoTask):
    name = "stage2"
    anchor = True
    merger_keys = ("cross_attention_merger", ".conv.", ".conv_ln.", ".alpha")

    def __init__(self, preset: Preset, seed: int, runs: Path | None = None):
        super().__init__(preset, seed, runs)
        base = lambda: unet3d.build_unet3d(preset.unet)  # noqa: E731
        with seeded(seed, "unet"):  # the names Components builds them under
            self.unet = StreamingUnet(base(), preset.merger_head_dim, preset.merger_norm_groups)
        with seeded(seed, "cam"):
            self.cam = Cam(base(), preset.cond_embedding_channels)
        for module in (self.unet, self.cam):
            unet3d.pad_spatial_convs(module, preset.stage2_padding)
        with seeded(seed, "apm_resampler"):
            self.resampler = ApmResampler(
                preset.image_embed_dim, preset.resampler_inner_dim, preset.context_dim, IMAGE_TOKENS
            )
        self.initialisation = self._initialise(runs / "stage1")

    def _initialise(self, stage1_run: Path) -> str:
        payload = read_checkpoint(stage1_run)
        state = payload["modules"]["unet"]
        load_stage1_into(self.unet, state, self.merger_keys)
        load_stage1_into(self.cam, state, ("controlnet_cond_embedding",))
        zero_(*self.cam.controlnet_cond_embedding.conv_out.parameters())
        for merger in [*self.unet.cross_attention_merger_down_blocks,
                       self.unet.cross_attention_merger_mid_block]:
            zero_(*merger.temporal_transformer.proj_out.parameters())
        return f"{stage1_run} step {payload['step']}"

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, "cam": self.cam, "resampler": self.resampler}

    def extras(self) -> dict:
        return {**super().extras(), "initialised_from": self.initialisation}

    def context(self, captions: list[str], anchors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(text (B, 77, D), text ++ APM tokens (B, 93, D))."""
        text = self.frozen.text_states(captions)
        tokens = self.resampler(self.frozen.image_embeds(anchors))
        return text, torch.cat([text, tokens], dim=1)

    def predict(self, sample, t, text, context, cond_features) -> torch.Tensor:
        """The v prediction of 16-frame latents, the CAM seeing their first 8 frames."""
        timesteps = t if torch.is_tensor(t) else torch.full((sample.shape[0],), t,
                                                            device=sample.device)
        per_video = cond_features.reshape((-1, COND_FRAMES) + tuple(cond_features.shape[1:]))
        residuals = self.cam.encode(sample[:, :, :COND_FRAMES], timesteps, text, per_video)
        return self.unet(sample, timesteps, context, *residuals)

    def cond_features(self, videos: torch.Tensor) -> torch.Tensor:
        """E_cond of each video's first 8 frames (B*8, C0, h, w), (b f) order."""
        return self.cam.controlnet_cond_embedding(videos[:, :COND_FRAMES].flatten(0, 1))

    def loss(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        videos = batch["videos"]
        latents = self.frozen.latents(videos, generator)
        text, context = self.context(batch["captions"], batch["anchors"])
        timesteps, noisy, target = diffusion_targets(latents, generator)
        seen = batch.get("conditions", videos)  # faded for some clips (CONDITION_FADE_SHARE)
        if self.decoded_conditions:  # clamped as the engine clamps what it decodes
            seen = self.frozen.decode(latents[:, :, :COND_FRAMES]).clamp(-1.0, 1.0)
        prediction = self.predict(noisy, timesteps, text, context, self.cond_features(seen))
        loss = F.mse_loss(prediction, target)
        new = F.mse_loss(prediction[:, :, COND_FRAMES:], target[:, :, COND_FRAMES:])
        return loss, {"new_frames": new.detach()}

    def evaluate(self, videos: int) -> dict:
        from .video_eval import evaluate_stage2

        return evaluate_stage2(self, videos)

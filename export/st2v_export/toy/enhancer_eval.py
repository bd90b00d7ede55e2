"""Held-out evaluation of the toy enhancer during training: refine drafts as stage 3 does and let
the toy-world checker judge the result.

A draft is a held-out clip rendered at the stage-2 size (a perfect stage 2), upscaled bicubically
to the content size and put on black bars, as the engine hands it to the enhancer. It is encoded
(posterior mean), noised to the toy manifest's SDEdit start (`TOY_STAGE3_NOISE_TIMESTEP`) and
denoised by `diffusion.stage3_sdedit` (deterministic DDIM, `EVAL_STEPS`) with the toy manifest's
guidance (rescale 0.2). Reported: the checker's verdicts on the refined content and on the draft
(what refinement must keep), and the PSNR of each against the clip rendered sharp at the content
size (what refinement should gain). The same clips' degraded drafts (`enhancer_tasks.
degraded_draft`: a rough stage 2, as `--draft-share` trains on) are judged the same way
(`degraded`). The engine's own stage 3 (DPM++ 2M SDE, randomized blending)
is measured by `toy ablate`.
"""

from __future__ import annotations

import numpy as np
import torch

from . import checker
from .data import to_uint8
from .diffusion import (
    TOY_STAGE3_GUIDANCE,
    TOY_STAGE3_NOISE_TIMESTEP,
    rescaled_guidance,
    stage3_sdedit,
)
from .enhancer_tasks import DRAFT_STREAM, ENHANCER_CLIP_FRAMES, degraded_draft
from .image_tasks import psnr
from .video_eval import EVAL_SEED, heldout_clips, summarize

EVAL_STEPS = 10
GUIDE_RESCALE = 0.2
"""The manifest's `pipeline.stage3.guide_rescale` (the reference's)."""


def refine(task, drafts: torch.Tensor, caption: str, generator: torch.Generator) -> np.ndarray:
    """drafts (1, F, 3, H, W) stage-3 frames in [-1, 1] -> refined uint8 (F, H, W, 3)."""
    with torch.no_grad():
        context = task.text_states(["", caption])

        def predict_v(sample: torch.Tensor, t: int) -> torch.Tensor:
            uncond, cond = task.predict(torch.cat([sample, sample]), t, context).chunk(2)
            return rescaled_guidance(uncond, cond, TOY_STAGE3_GUIDANCE, GUIDE_RESCALE)

        latents = stage3_sdedit(predict_v, task.latents(drafts, None), generator, EVAL_STEPS,
                                TOY_STAGE3_NOISE_TIMESTEP)
        return to_uint8(task.decode(latents)[0])


def judged(task, drafts: list[torch.Tensor], clips: list[dict], sharp: list[dict]) -> dict:
    """The checker's summary and PSNR of the drafts (each (1, F, 3, H, W) stage-3 frames) refined,
    and of the drafts themselves (`draft`)."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    geometry = task.geometry
    refined_reports, draft_reports, refined_psnr, draft_psnr = [], [], [], []
    for draft_pixels, clip, target in zip(drafts, clips, sharp):
        draft = geometry.crop(to_uint8(draft_pixels[0]))
        refined = geometry.crop(refine(task, draft_pixels.to(task.device), clip["caption"],
                                       generator))
        refined_reports.append(checker.check_video(refined, clip["spec"]))
        draft_reports.append(checker.check_video(draft, clip["spec"]))
        refined_psnr.append(psnr(refined, target["frames"]))
        draft_psnr.append(psnr(draft, target["frames"]))
    return {
        **summarize(refined_reports),
        "psnr": round(float(np.mean(refined_psnr)), 3),
        "draft": {**summarize(draft_reports), "psnr": round(float(np.mean(draft_psnr)), 3)},
    }


def evaluate_enhancer(task, count: int) -> dict:
    """Perfect drafts (the top level, as before) and the same clips' degraded drafts
    (`degraded`: faded and recoloured as `--draft-share` trains on, seeded)."""
    small = heldout_clips(count, ENHANCER_CLIP_FRAMES, task.size)
    sharp = heldout_clips(count, ENHANCER_CLIP_FRAMES, task.geometry.content)
    perfect = [task.upscaled(clip["frames"][None]) for clip in small]
    rng = np.random.default_rng([EVAL_SEED, DRAFT_STREAM])
    degraded = [task.upscaled(degraded_draft(clip, task.size, rng)[None]) for clip in small]
    return {**judged(task, perfect, small, sharp), "degraded": judged(task, degraded, small, sharp)}

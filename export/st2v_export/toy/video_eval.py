"""Held-out evaluation of the toy video models during training: generate videos for held-out
captions and let the toy-world checker judge them (caption adherence, seams).

Stage 1 samples one 16-frame chunk per caption with classifier-free guidance 3 (the toy
manifest's). Stage 2 continues the clip's true first 16 frames by `STAGE2_CHUNKS` chunks
of 8 new frames, as the engine's stage 2 does (guidance 3; the CAM sees the previous chunk's
last 8 frames in both guidance branches; the APM anchor is frame 0, the unconditional branch
uses the zero image). DDIM with 25 steps and eta 0 stands in for the engine's schedulers: this
is a training-time signal; `python -m st2v_export.toy check` on the engine's own output is the
measurement.
"""

from __future__ import annotations

import numpy as np
import torch

from . import checker
from .data import HELDOUT_SEED, to_pixels, to_uint8, video_batch
from .diffusion import TOY_GUIDANCE_SCALE, ddim_sample, guided

EVAL_SEED = 4321
EVAL_STEPS = 25
STAGE1_GUIDANCE = STAGE2_GUIDANCE = TOY_GUIDANCE_SCALE
STAGE2_CHUNKS = 2
NEW_FRAMES = 8


def heldout_clips(count: int, frames: int, size: int, anchor: bool = False,
                  split: str = "heldout") -> list[dict]:
    """The evaluations' clips: the held-out split's, or (`split="train"`) as many of the train
    split's drawn with the same seed, to compare what the models do on captions they saw."""
    return video_batch(HELDOUT_SEED, 0, count, frames, size, anchor=anchor, split=split)


def summarize(reports: list[dict]) -> dict:
    """Fractions of videos whose every shape passes each adherence check, and the seams;
    `found` and `shape_frames` are the mean shares of frames in which each shape is found and
    read as its asked class (`ablation.row`'s)."""
    count = len(reports)
    fraction = lambda ok: round(sum(ok) / count, 4)  # noqa: E731
    adherence = [r["adherence"] for r in reports]
    seams = [seam for r in reports for shape in r["shapes"] for seam in shape["seams"]]
    return {
        "videos": count,
        "colour": fraction(a["colour_ok"] for a in adherence),
        "shape": fraction(a["shape_ok"] for a in adherence),
        "colour_and_shape": fraction(a["colour_ok"] and a["shape_ok"] for a in adherence),
        "motion": fraction(a["motion_ok"] for a in adherence),
        "background": fraction(a["background_ok"] for a in adherence),
        "found": round(float(np.mean([s["found_fraction"] for r in reports
                                      for s in r["shapes"]])), 4),
        "shape_frames": round(float(np.mean([s["shape_accuracy"] for r in reports
                                             for s in r["shapes"]])), 4),
        "seams": len(seams),
        "seam_jumps": sum(r["seam_jumps"] for r in reports),
    }


def evaluate_stage1(task, count: int) -> dict:
    generator = torch.Generator().manual_seed(EVAL_SEED)
    latent = task.size // 8
    reports = []
    for clip in heldout_clips(count, 16, task.size):
        context = task.frozen.text_states(["", clip["caption"]])
        predict = guided(lambda x, t: task.predict(x, t, context), STAGE1_GUIDANCE)
        with torch.no_grad():
            latents = ddim_sample(predict, (1, 4, 16, latent, latent), generator, EVAL_STEPS,
                                  task.device)
        frames = to_uint8(task.frozen.decode(latents)[0])
        reports.append(checker.check_video(frames, clip["spec"]))
    return summarize(reports)


def continue_video(task, frames: np.ndarray, caption: str, chunks: int,
                   generator: torch.Generator) -> np.ndarray:
    """Stage-2 autoregression from a 16-frame uint8 chunk: each chunk adds its last 8 frames."""
    latent = task.size // 8
    anchor = to_pixels(frames[:1]).to(task.device)
    with torch.no_grad():
        text, context = task.context(["", caption], torch.cat([torch.zeros_like(anchor), anchor]))
        video = list(frames)
        for _ in range(chunks):
            condition = to_pixels(np.stack(video[-NEW_FRAMES:]))[None].to(task.device)
            features = task.cond_features(torch.cat([condition, condition]))
            predict = guided(lambda x, t: task.predict(x, t, text, context, features),
                             STAGE2_GUIDANCE)
            latents = ddim_sample(predict, (1, 4, 16, latent, latent), generator, EVAL_STEPS,
                                  task.device)
            video += list(to_uint8(task.frozen.decode(latents)[0])[NEW_FRAMES:])
    return np.stack(video)


def evaluate_stage2(task, count: int) -> dict:
    generator = torch.Generator().manual_seed(EVAL_SEED)
    reports = []
    for clip in heldout_clips(count, 16, task.size):
        video = continue_video(task, clip["frames"], clip["caption"], STAGE2_CHUNKS, generator)
        seams = [16 + NEW_FRAMES * k for k in range(STAGE2_CHUNKS)]
        reports.append(checker.check_video(video, clip["spec"], chunk_starts=seams))
    return summarize(reports)

"""How much of stage 2's prediction comes from its CAM, its caption and its anchor: an
experiment of TRAINING.md ("The fourth training"), not part of the recipe. Held-out 16-frame
clips are noised to a timestep t; the stage-2 run predicts v and the x0 it implies is compared
with the clip's true latents (mean squared error, over the 8 condition frames and the 8 new
ones), under four conditions:

- `true`: the clip's own first 8 frames to the CAM, its caption and anchor (as trained);
- `other frames`: another clip's first 8 frames to the CAM (what the CAM carries);
- `no caption`: the empty caption and the zero anchor (the guidance's unconditional branch);
- `neither`: both swaps.

At t = 999 (pure noise at a zero terminal SNR, where sampling starts) the new frames can only
come from the condition: an error near the latents' variance means the input was not used.

  PYTHONPATH=export .venv/bin/python export/experiments/cam_probe.py \\
      --runs RUNS --run RUNS/stage2 --clips 8 --timesteps 999 800 500 200

RUNS holds the vae, clip and stage1 runs the stage-2 run was trained with (the text encoder is
stage 1's); prints one JSON line per timestep.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from st2v_export.presets import COND_FRAMES
from st2v_export.toy.data import to_pixels
from st2v_export.toy.diffusion import ALPHAS_CUMPROD, add_noise
from st2v_export.toy.preset import toy_preset
from st2v_export.toy.runfiles import read_checkpoint
from st2v_export.toy.video_eval import heldout_clips
from st2v_export.toy.video_tasks import Stage2Task, videos_to_pixels

PROBE_SEED = 7
CONDITIONS = ("true", "other frames", "no caption", "neither")


def load_stage2(runs: Path, run: Path) -> Stage2Task:
    task = Stage2Task(toy_preset(), 0, runs)
    modules = read_checkpoint(run)["modules"]
    for name, module in task.modules().items():
        module.load_state_dict(modules[name], strict=True)
        module.eval()
    return task


def x0_from_v(noisy: torch.Tensor, v: torch.Tensor, t: int) -> torch.Tensor:
    alpha = ALPHAS_CUMPROD[t]
    return alpha.sqrt() * noisy - (1 - alpha).sqrt() * v


def condition_inputs(task: Stage2Task, clips: list[dict], videos: torch.Tensor) -> dict[str, tuple]:
    """(text, context, CAM features) of each condition; `other frames` rolls the clips by one."""
    anchors = to_pixels(np.stack([clip["anchor"] for clip in clips]))
    own = task.cond_features(videos)
    other = task.cond_features(videos.roll(1, dims=0))
    captioned = task.context([clip["caption"] for clip in clips], anchors)
    empty = task.context([""] * len(clips), torch.zeros_like(anchors))
    return {"true": (*captioned, own), "other frames": (*captioned, other),
            "no caption": (*empty, own), "neither": (*empty, other)}


def probe(task: Stage2Task, clips: list[dict], timesteps: list[int]) -> list[dict]:
    """Per timestep: the latents' variance and, per condition, the x0 error of the condition
    frames (`cond`) and of the new frames (`new`)."""
    generator = torch.Generator().manual_seed(PROBE_SEED)
    with torch.no_grad():
        videos = videos_to_pixels(np.stack([clip["frames"] for clip in clips]))
        latents = task.frozen.latents(videos, generator)
        inputs = condition_inputs(task, clips, videos)
        results = []
        for t in timesteps:
            noise = torch.randn(latents.shape, generator=generator)
            steps = torch.full((len(clips),), t)
            noisy = add_noise(latents, noise, steps)
            result = {"t": t, "latent_variance": latents.var().item()}
            for name in CONDITIONS:
                x0 = x0_from_v(noisy, task.predict(noisy, steps, *inputs[name]), t)
                result[name] = {
                    part: F.mse_loss(x0[:, :, frames], latents[:, :, frames]).item()
                    for part, frames in (("cond", slice(0, COND_FRAMES)),
                                         ("new", slice(COND_FRAMES, None)))
                }
            results.append(result)
    return results


def rounded(value):
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return round(value, 4) if isinstance(value, float) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="the vae, clip and stage1 runs")
    parser.add_argument("--run", type=Path, required=True, help="the stage-2 run to probe")
    parser.add_argument("--clips", type=int, default=8, help="held-out clips")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[999, 800, 500, 200])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = load_stage2(args.runs, args.run)
    clips = heldout_clips(args.clips, 16, task.size, anchor=True)
    for result in probe(task, clips, args.timesteps):
        print(json.dumps(rounded(result)), flush=True)


if __name__ == "__main__":
    main()

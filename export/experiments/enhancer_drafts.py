"""Which drafts the toy enhancer loses colour on: an experiment of TRAINING.md ("The eleventh
training"), not part of the recipe. Held-out clips of each length are refined as the training
evaluation refines them (`enhancer_eval.judged`: 10 DDIM steps from the toy SDEdit start) from
two kinds of draft, and the checker judges the refined content and the drafts:

- `perfect`: the clip rendered at the stage-2 size, upscaled and padded (a perfect stage 2);
- `vae`: the same frames encoded and decoded by the stage-1/2 VAE first, as the engine's stage-2
  frames are (blurrier, small shapes rounded).

  PYTHONPATH=export .venv/bin/python export/experiments/enhancer_drafts.py \\
      --runs RUNS --enhancer RUNS/enhancer --clips 8 --frames 8 24

RUNS holds the vae, clip and enhancer_vae runs (`toy recover` writes them all); prints one JSON
line per length and kind of draft (`kind`), with the checker's figures on the refined content
(`refined`) and on the drafts (`draft`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from st2v_export.toy.enhancer_eval import judged
from st2v_export.toy.enhancer_tasks import EnhancerTask
from st2v_export.toy.preset import toy_preset
from st2v_export.toy.runfiles import read_checkpoint
from st2v_export.toy.video_eval import heldout_clips
from st2v_export.toy.video_tasks import FrozenEncoders, videos_to_pixels

DRAFTS = ("perfect", "vae")
FIGURES = ("colour", "motion", "background", "found")


def trained_enhancer(runs: Path, run: Path) -> EnhancerTask:
    task = EnhancerTask(toy_preset(), 0, runs)
    modules = read_checkpoint(run)["modules"]
    for name, module in task.modules().items():
        module.load_state_dict(modules[name])
        module.eval()
    return task


def stage2_frames(clip: dict, vae: FrozenEncoders | None) -> torch.Tensor:
    """(1, F, 3, s, s) in [-1, 1]: the clip's frames, through the VAE when given one."""
    pixels = videos_to_pixels(clip["frames"][None])
    if vae is None:
        return pixels
    with torch.no_grad():
        return vae.decode(vae.latents(pixels, None)).clamp(-1.0, 1.0)


def judge(task: EnhancerTask, clips: list[dict], sharp: list[dict],
          vae: FrozenEncoders | None) -> dict:
    """`enhancer_eval.judged` on the clips' drafts (through the VAE when given one), the
    figures of the refined content and of the drafts."""
    drafts = [task.geometry.upscale(stage2_frames(clip, vae)[0])[None] for clip in clips]
    result = judged(task, drafts, clips, sharp)
    pick = lambda summary: {k: summary[k] for k in FIGURES}  # noqa: E731
    return {"refined": pick(result), "draft": pick(result["draft"])}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True,
                        help="RUNS/vae, RUNS/clip and RUNS/enhancer_vae")
    parser.add_argument("--enhancer", type=Path, required=True, help="the enhancer run")
    parser.add_argument("--clips", type=int, default=8, help="held-out clips per length")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 24])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = trained_enhancer(args.runs, args.enhancer)
    vae = FrozenEncoders(toy_preset(), 0, args.runs)
    lines = []
    for frames in args.frames:
        clips = heldout_clips(args.clips, frames, task.size)
        sharp = heldout_clips(args.clips, frames, task.geometry.content)
        for draft in DRAFTS:
            line = {"frames": frames, "kind": draft,
                    **judge(task, clips, sharp, vae if draft == "vae" else None)}
            print(json.dumps(line), flush=True)
            lines.append(line)
    return lines


if __name__ == "__main__":
    main()

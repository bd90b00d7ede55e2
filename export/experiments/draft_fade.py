"""How faint and how shifted in colour stage 2's shapes are: an experiment of TRAINING.md ("The
twelfth training"), not part of the recipe. It measures real stage-2 drafts (`stage2_sampler`'s
or `toy ablate`'s videos, DIR/NN PNG frames of the held-out captions 0..N-1) in the terms of the
enhancer's degraded drafts (`enhancer_tasks.degraded_draft`), so the two can be compared.

For each shape and frame it takes the pixels that lean furthest from the background towards the
asked colour, as many as the shape should cover (its area at the frame's size), and reports

  fade:   their mean projection on (asked colour - background) / |asked colour - background|^2
          (1: the asked colour, 0: the background; `DRAFT_FADE` draws 0.5-1)
  offset: their mean colour minus background + fade * (asked colour - background), RGB 0-255
          (`DRAFT_COLOUR_SHIFT` draws each channel with std 20)

per video (medians over frames) and over all videos (quantiles).

  PYTHONPATH=export .venv/bin/python export/experiments/draft_fade.py \\
      --drafts s2row/videos/eta-1-guidance-3-48f --out fade.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from st2v_export.toy import world
from st2v_export.toy.ablation import protocol_clips, read_frames

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def shape_areas(spec: world.SceneSpec, frames: int, size: int, start: int) -> np.ndarray:
    """Each shape's area in pixels, frame by frame: (shapes, frames)."""
    _, radii = world.trajectory(spec, frames, size, start)
    return np.array([[world.shape_area(s.shape, r) for r in radii[k]]
                     for k, s in enumerate(spec.shapes)])


def frame_fade(frame: np.ndarray, background: np.ndarray, colour: np.ndarray,
               area: float) -> tuple[float, np.ndarray]:
    """The fade and RGB offset of the `area` pixels leaning furthest towards `colour`."""
    direction = colour - background  # (H, W, 3): a gradient background varies per pixel
    lean = np.sum((frame - background) * direction, -1) / np.maximum(
        np.sum(direction * direction, -1), 1.0)
    count = max(int(round(area)), 1)
    chosen = np.argsort(lean, axis=None)[-count:]
    fade = float(lean.reshape(-1)[chosen].mean())
    expected = background + fade * direction
    offset = (frame - expected).reshape(-1, 3)[chosen].mean(0)
    return fade, offset


def video_fade(frames: np.ndarray, clip: dict) -> list[dict]:
    """Per shape of the clip's spec: the median fade and offset over the video's frames."""
    spec, size = clip["spec"], frames.shape[1]
    frames = frames.astype(np.float32)
    background = world.render_background(spec.background, size).astype(np.float32)
    areas = shape_areas(spec, len(frames), size, clip["start"])
    result = []
    for k, shape in enumerate(spec.shapes):
        colour = np.array(world.PALETTE[shape.colour], np.float32)
        measured = [frame_fade(frame, background, colour, areas[k, f])
                    for f, frame in enumerate(frames)]
        fades = np.array([m[0] for m in measured])
        offsets = np.array([m[1] for m in measured])
        result.append({"colour": shape.colour, "shape": shape.shape,
                       "fade": round(float(np.median(fades)), 3),
                       "offset": [round(float(v), 1) for v in np.median(offsets, 0)]})
    return result


def summary(shapes: list[dict]) -> dict:
    fades = np.array([s["fade"] for s in shapes])
    offsets = np.array([s["offset"] for s in shapes])
    return {"shapes": len(shapes),
            "fade_quantiles": {str(q): round(float(np.quantile(fades, q)), 3) for q in QUANTILES},
            "offset_std_per_channel": [round(float(v), 1) for v in offsets.std(0)],
            "offset_mean_per_channel": [round(float(v), 1) for v in offsets.mean(0)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drafts", type=Path, required=True, help="DIR/NN: PNG frame folders")
    parser.add_argument("--videos", type=int, default=12, help="held-out captions (README: 12)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")
    args = parser.parse_args()
    videos = []
    for k, clip in enumerate(protocol_clips(args.videos)):
        shapes = video_fade(read_frames(args.drafts / f"{k:02d}"), clip)
        videos.append({"caption": clip["caption"], "shapes": shapes})
        print(json.dumps(videos[-1]), flush=True)
    report = {"summary": summary([s for v in videos for s in v["shapes"]]), "videos": videos}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    main()

"""Stage 2 apart from stage 1: the engine's stage 2 (`st2v extend`, stage 3 off) continuing the
true first 16 frames of the README protocol's held-out clips by 32 frames, judged by the checker
over the 48 frames (seams at 16, 24, 32, 40); and, for a `stage2_sampler.py` or `toy ablate`
video directory, the checker on each video's first 16 frames (stage 1's chunk). With
`--crossing`, held-out straight-motion clips whose true 16 frames end 0-7 frames before a
shape's centre crosses an edge of the frame (the world wraps it to the opposite side): can stage
2 carry a shape across? An experiment of TRAINING.md ("The fifth training", "The seventh
training"), not part of the recipe.

  PYTHONPATH=export .venv/bin/python export/experiments/stage2_from_truth.py \\
      --models models/toy --out truth [--first-chunks sampler/videos/eta-1-guidance-3-48f]
      [--crossing]

Writes OUT/truth.json (the summaries, and a report per video) and the videos.
"""

from __future__ import annotations

import json
from pathlib import Path

from st2v_export.toy import checker, world
from st2v_export.toy.ablation import (FIRST_CHUNK, experiment_parser, protocol_clips, read_frames,
                                      run_engine, write_frames)
from st2v_export.toy.data import HELDOUT_SEED, crossings, video_clip
from st2v_export.toy.preset import toy_preset
from st2v_export.toy.video_eval import summarize

NEW_FRAMES = 32
SEAMS = [16, 24, 32, 40]
CROSSING_DELAYS = 8
"""With --crossing, clip k's centre crosses the edge k % 8 frames after its true frames end."""


def crossing_clips(videos: int) -> list[dict]:
    """Held-out straight-motion clips (in stream order) whose first 16 frames end just before a
    shape's centre crosses an edge (the first crossing at least 16 frames in)."""
    size = toy_preset().stage2.height
    clips = []
    for index in range(10_000):
        spec = video_clip(HELDOUT_SEED, index, "heldout", FIRST_CHUNK, size)["spec"]
        if spec.motion not in world.DIRECTIONS:
            continue
        delay = len(clips) % CROSSING_DELAYS
        start = next(j for j in crossings(spec, size) if j >= FIRST_CHUNK + delay) \
            - FIRST_CHUNK - delay
        clips.append({"frames": world.render(spec, FIRST_CHUNK, size, start),
                      "caption": world.caption(spec), "spec": spec, "start": start})
        if len(clips) == videos:
            return clips
    raise RuntimeError(f"fewer than {videos} straight-motion held-out clips")


def extend_command(st2v: Path, models: Path, source: Path, out: Path, caption: str, seed: int,
                   steps: int) -> list[str]:
    """`st2v extend` of `source` by NEW_FRAMES, stage 3 off, as PNG frames (input + new)."""
    return [str(st2v), "extend", "--models", str(models), "--input", str(source),
            "--prompt", caption, "--frames", str(NEW_FRAMES), "--no-enhance",
            "--steps", str(steps), "--seed", str(seed), "--out", f"{out}/", "--quiet"]


def continue_truth(st2v: Path, models: Path, out: Path, clips: list[dict],
                   steps: int) -> list[dict]:
    reports = []
    for index, clip in enumerate(clips):
        source = write_frames(clip["frames"], out / "true" / f"{index:02d}")
        target = out / "extended" / f"{index:02d}"
        if not target.exists():  # a rerun judges what is there
            target.parent.mkdir(parents=True, exist_ok=True)  # st2v makes the last level only
            run_engine(extend_command(st2v, models, source, target, clip["caption"], index, steps))
        frames = read_frames(target)
        reports.append(checker.check_video(frames, clip["spec"], chunk_starts=SEAMS))
        print(f"{index + 1}/{len(clips)}: {clip['caption']}: {reports[-1]['adherence']}",
              flush=True)
    return reports


def first_chunks(videos_dir: Path, videos: int, split: str) -> list[dict]:
    """The checker on the first 16 frames of videos_dir/00, 01, ... (stage 1's chunk)."""
    return [checker.check_video(read_frames(videos_dir / f"{i:02d}")[:FIRST_CHUNK], clip["spec"])
            for i, clip in enumerate(protocol_clips(videos, split))]


def main() -> None:
    parser = experiment_parser(__doc__, "stage-2 steps (README: 25)")
    parser.add_argument("--first-chunks", type=Path, default=None,
                        help="a directory of README-protocol videos (00, 01, ...) whose first "
                             "16 frames to judge")
    parser.add_argument("--crossing", action="store_true",
                        help="straight-motion clips whose shape crosses an edge in the first "
                             "new chunk, instead of the README protocol's")
    args = parser.parse_args()
    if args.crossing and args.split != "heldout":
        parser.error("--crossing draws its clips from the held-out split; leave --split out")
    clips = (crossing_clips(args.videos) if args.crossing
             else protocol_clips(args.videos, args.split))
    reports = continue_truth(args.st2v, args.models, args.out, clips, args.steps)
    results = {"continued_from_truth": summarize(reports)}
    if args.first_chunks is not None:
        chunks = first_chunks(args.first_chunks, args.videos, args.split)
        results["first_chunks"] = summarize(chunks)
    print(json.dumps(results))
    (args.out / "truth.json").write_text(json.dumps({**results, "reports": reports}, indent=1))


if __name__ == "__main__":
    main()

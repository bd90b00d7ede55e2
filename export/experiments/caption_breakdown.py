"""Where the README protocol's videos fail, by kind of caption: the checker's colour and motion
verdicts on videos the other experiments wrote (`stage1_sampler.py`, `stage2_sampler.py`,
`toy ablate`: DIR/00, DIR/01, ... of the protocol's clips), grouped by the number of shapes,
the first shape's class and size, the background and the motion, and each shape of the
two-shape captions on its own (does the first or the second keep its colour?). An experiment
of TRAINING.md ("Where the videos fail"), not part of the recipe.

  PYTHONPATH=export .venv/bin/python export/experiments/caption_breakdown.py \\
      --videos s1/videos/dpm-guidance-3-16f:heldout \\
      --videos s1-train/videos/dpm-guidance-3-16f:train

Each --videos is DIR:SPLIT (the split the experiment's `--split` drew; the count is the number of
numbered directories). Prints a markdown table; --json writes the counts.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from st2v_export.toy import checker, world
from st2v_export.toy.ablation import content, protocol_clips, read_frames


SHAPE_GROUPS = ("two shapes: the first alone", "two shapes: the second alone")
"""The rows that judge each shape of a two-shape caption on its own (the checker's verdicts of
that shape only)."""


def groups_of(spec: world.SceneSpec) -> list[str]:
    """The caption kinds a scene belongs to (one per grouping, and "all")."""
    first = spec.shapes[0]
    return [
        "all",
        "one shape" if len(spec.shapes) == 1 else "two shapes",
        f"first shape: {first.shape}",
        f"first shape: {first.size}",
        "gradient background" if "gradient" in spec.background else "plain background",
        "straight motion" if spec.motion in world.DIRECTIONS else f"motion: {spec.motion}",
    ]


def tally(sources: list[tuple[Path, str]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"videos": 0, "colour": 0,
                                                             "motion": 0})
    for directory, split in sources:
        videos = sorted(p for p in directory.iterdir() if p.is_dir() and p.name.isdigit())
        for video, clip in zip(videos, protocol_clips(len(videos), split)):
            report = checker.check_video(content(read_frames(video)), clip["spec"])
            verdict = report["adherence"]
            for group in groups_of(clip["spec"]):
                counts[group]["videos"] += 1
                counts[group]["colour"] += bool(verdict["colour_ok"])
                counts[group]["motion"] += bool(verdict["motion_ok"])
            if len(report["shapes"]) == 2:  # which of the two keeps its colour and motion
                for group, shape in zip(SHAPE_GROUPS, report["shapes"]):
                    counts[group]["videos"] += 1
                    counts[group]["colour"] += bool(shape["colour_ok"])
                    counts[group]["motion"] += bool(shape["motion_ok"])
    return dict(counts)


def markdown(counts: dict[str, dict[str, int]]) -> str:
    lines = ["| captions | videos | colour | motion |", "|---|---|---|---|"]
    for group in sorted(counts, key=lambda g: (g != "all", g)):
        c = counts[group]
        lines.append(f"| {group} | {c['videos']} | {c['colour']} | {c['motion']} |")
    return "\n".join(lines)


def parse_source(text: str) -> tuple[Path, str]:
    directory, _, split = text.rpartition(":")
    if split not in ("heldout", "train") or not directory:
        raise argparse.ArgumentTypeError(f"expected DIR:heldout or DIR:train, got {text!r}")
    return Path(directory), split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=parse_source, action="append", required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = tally(args.videos)
    print(markdown(counts))
    if args.json:
        args.json.write_text(json.dumps(counts, indent=1) + "\n")


if __name__ == "__main__":
    main()

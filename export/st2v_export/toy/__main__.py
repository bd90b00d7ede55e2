"""Command line of the toy world: render a caption (or a seeded clip) to PNGs, check a PNG video,
train the toy models and export the toy model set.

  python -m st2v_export.toy render --caption "a small red circle moving left on a blue background"
      --frames 48 --out DIR   (or --seed 0 --index 3 [--split heldout] instead of --caption)
  python -m st2v_export.toy check DIR [--caption "..."] [--chunk-starts 16,24,32] [--json FILE]

  python -m st2v_export.toy train --model vae|clip|stage1|stage2 --steps N --out RUNS/MODEL
  python -m st2v_export.toy export --runs RUNS --out models/toy
  python -m st2v_export.toy ablate --runs RUNS --out DIR   (the ablation table)
  python -m st2v_export.toy recover --model-set models/toy --out RUNS   (runs to --init from)
  python -m st2v_export.toy fit-shapes --model-set models/toy --out FILE   (the shape classifier)

render writes DIR/frame_00000.png ... and DIR/scene.json (caption and spec); check reads the PNGs
in name order, takes the caption from --caption or DIR/scene.json, prints a summary and exits 0
when the video passes (1 when something is flagged).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from . import checker, world
from .ablation import ablate_command, add_ablate_parser, write_frames
from .export import add_export_parser, export_command
from .recover import add_recover_parser, recover_command
from .shape_fit import add_shape_fit_parser, shape_fit_command
from .train_cli import add_train_parser, train_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m st2v_export.toy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="render a caption or a seeded clip to PNG frames")
    source = render.add_mutually_exclusive_group(required=True)
    source.add_argument("--caption", help="a caption of the toy-world grammar")
    source.add_argument("--seed", type=int, help="render clip --index of this seed's stream")
    render.add_argument("--index", type=int, default=0)
    render.add_argument("--split", choices=world.SPLITS, default="train")
    render.add_argument("--frames", type=int, default=16)
    render.add_argument("--size", type=int, default=64, help="frame side in pixels")
    render.add_argument("--out", type=Path, required=True)
    check = commands.add_parser("check", help="check a directory of PNG frames against a caption")
    check.add_argument("dir", type=Path)
    check.add_argument("--caption", help="default: the caption in DIR/scene.json")
    check.add_argument("--chunk-starts", type=_int_list, default=None,
                       help="comma-separated first frames of each chunk after the first")
    check.add_argument("--json", type=Path, help="write the full report here")
    add_train_parser(commands)
    add_export_parser(commands)
    add_ablate_parser(commands)
    add_recover_parser(commands)
    add_shape_fit_parser(commands)
    return parser


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def render_command(args: argparse.Namespace) -> int:
    if args.caption is not None:
        spec = world.parse_caption(args.caption)
        frames = world.render(spec, args.frames, args.size)
    else:
        frames, _, spec = world.clip(args.seed, args.index, args.frames, args.size, args.split)
    write_frames(frames, args.out)
    scene = {"caption": world.caption(spec), "spec": spec.to_dict(),
             "heldout": world.is_heldout(spec)}
    (args.out / "scene.json").write_text(json.dumps(scene, indent=2) + "\n")
    print(f"{len(frames)} frames of \"{scene['caption']}\" in {args.out}")
    return 0


def read_frames(directory: Path) -> np.ndarray:
    paths = sorted(directory.glob("*.png"))
    if not paths:
        raise SystemExit(f"no PNG frames in {directory}")
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def check_command(args: argparse.Namespace) -> int:
    caption = args.caption
    if caption is None:
        scene_file = args.dir / "scene.json"
        if not scene_file.exists():
            raise SystemExit(f"give --caption (no {scene_file})")
        caption = json.loads(scene_file.read_text())["caption"]
    report = checker.check_video(read_frames(args.dir), caption, args.chunk_starts)
    print(summary(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if report["ok"] else 1


def summary(report: dict) -> str:
    """A few readable lines of a check_video report."""
    seams = report["chunk_starts"]
    lines = [
        f"caption: {report['caption']}",
        f"frames: {report['frames']} ({report['width']}x{report['height']}), "
        f"chunk starts: {', '.join(map(str, seams)) or 'none'}",
    ]
    for k, shape in enumerate(report["shapes"]):
        lines.append(_shape_line(k, shape, len(seams)))
    verdict = "ok" if report["ok"] else "FLAGGED: " + ", ".join(report["flags"])
    lines.append(f"verdict: {verdict}")
    return "\n".join(lines)


def _shape_line(k: int, shape: dict, seam_count: int) -> str:
    expected = shape["expected"]
    motion = shape["motion"]
    identity = shape["identity"]
    pairs = motion.get("pair_direction_fraction")
    parts = [
        f"found {shape['found_fraction']:.0%}",
        f"colour {shape['colour_accuracy']:.0%}",
        f"shape {shape['shape_accuracy']:.0%}" + _read_as(shape),
        f"size {shape['size_detected'] or '-'}",
        f"motion {motion['detected']}" + (f" ({pairs:.0%} of pairs)" if pairs is not None else ""),
        f"colour drift {_figure(identity['colour_drift_max'])}",
        f"size drift {_figure(identity['size_drift_max'])}",
        f"seam jumps {shape['seam_jumps']}/{seam_count}",
    ]
    name = f"{expected['size']} {expected['colour']} {expected['shape']}"
    return f"shape {k} ({name}, {motion['expected']}): " + ", ".join(parts)


def _read_as(shape: dict) -> str:
    """' (read as a circle)' when the shape class read most often is not the asked one."""
    read = shape["shape_detected"]
    return "" if read in (None, shape["expected"]["shape"]) else f" (read as a {read})"


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {
        "render": render_command,
        "check": check_command,
        "train": train_command,
        "export": export_command,
        "ablate": ablate_command,
        "recover": recover_command,
        "fit-shapes": shape_fit_command,
    }[args.command]
    try:
        return command(args)
    except ValueError as error:  # a caption outside the grammar, frames of the wrong shape
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    sys.exit(main())

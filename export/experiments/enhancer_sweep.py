"""Stage 3 of the toy set on stage-2 videos that already exist, with other SDEdit starts,
guidance scales or enhancer graphs: an experiment of TRAINING.md ("The third training"), not
part of the recipe. It needs no stage-1/2 run: the drafts are `toy ablate`'s `full` videos
(DIR/videos/full-48f/NN, PNG frames of the held-out captions 0..N-1), and each setting is the
model set with its manifest's stage-3 start and guidance changed and, optionally, the enhancer
graphs of another set. `st2v enhance` refines every draft (seed = the caption's index, as
`ablate` seeds it) and the toy checker judges the content, as `ablate`'s enhanced rows do.

  PYTHONPATH=export .venv/bin/python export/experiments/enhancer_sweep.py \\
      --models models/toy --drafts ablation/videos/full-48f --out sweep \\
      --setting set-t300:300:3 --setting set-t200:200:3 \\
      --setting new-t300:300:3:runs-new-set          # NAME:T:GUIDANCE[:SET]

Writes OUT/sweep.json (one `ablate` row per setting, without SCuts) and the refined videos.
"""

from __future__ import annotations

import json
from pathlib import Path

from st2v_export.toy import checker
from st2v_export.toy.ablation import (chunk_starts, content, experiment_parser, linked_set,
                                      protocol_clips, read_frames, row, run_engine)


def parse_setting(text: str) -> dict:
    name, start, guidance, *enhancer = text.split(":")
    return {"name": name, "t": int(start), "guidance": float(guidance),
            "enhancer": Path(enhancer[0]) if enhancer else None}


def setting_set(models: Path, setting: dict, out: Path) -> Path:
    """`models` linked file by file, its stage 3 started at `t` and guided by `guidance`, with
    the enhancer graphs of `setting["enhancer"]` (another model set) when it names one."""
    manifest = json.loads((models / "manifest.json").read_text())
    stage3 = manifest["pipeline"]["stage3"]
    stage3["noise_timestep"] = stage3["scheduler"]["config"]["t_max"] = setting["t"]
    stage3["guidance_scale"] = setting["guidance"]
    other = setting["enhancer"]
    if other is None:
        return linked_set(models, manifest, out)
    enhancer_graphs = {role: graph for role, graph in
                       json.loads((other / "manifest.json").read_text())["graphs"].items()
                       if role.startswith("enhancer")}
    manifest["graphs"].update(enhancer_graphs)
    linked_set(models, manifest, out)
    for graph in enhancer_graphs.values():
        (out / graph["file"]).unlink()
        (out / graph["file"]).symlink_to((other / graph["file"]).resolve())
    return out


def enhance(st2v: Path, models: Path, draft: Path, caption: str, seed: int, steps: int,
            out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [str(st2v), "enhance", "--models", str(models), "--input", f"{draft}/",
               "--prompt", caption, "--seed", str(seed), "--enhance-steps", str(steps),
               "--quiet", "--force", "--out", f"{out}/"]
    run_engine(command)


def main() -> None:
    parser = experiment_parser(__doc__, "enhancer steps (ablate's --steps)")
    parser.add_argument("--drafts", type=Path, required=True, help="ablate's videos/full-48f")
    parser.add_argument("--setting", action="append", type=parse_setting, required=True,
                        help="NAME:T:GUIDANCE[:SET] (SET: a model set with other enhancer graphs)")
    args = parser.parse_args()
    clips = protocol_clips(args.videos, args.split)
    rows = []
    for setting in args.setting:
        models = setting_set(args.models, setting, args.out / "sets" / setting["name"])
        reports = []
        for k, clip in enumerate(clips):
            video = args.out / "videos" / setting["name"] / f"{k:02d}"
            enhance(args.st2v, models, args.drafts / f"{k:02d}", clip["caption"], k, args.steps,
                    video)
            frames = content(read_frames(video))
            reports.append(checker.check_video(frames, clip["spec"], chunk_starts(len(frames))))
        rows.append(row(setting["name"], reports, []))
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "sweep.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

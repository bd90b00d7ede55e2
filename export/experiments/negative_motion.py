"""The README protocol's `full` row (`toy ablate`: the engine's 48-frame videos of the held-out
captions, stage 3 off) with the opposite motion as the negative prompt: "a red circle moving
right on a blue background" is guided away from "... moving left ...", where the protocol's
negative prompt is "" (ModelScope's). An experiment of TRAINING.md ("Guided away from the
opposite motion"), not part of the recipe: classifier-free guidance then amplifies only what the
two captions do not share, the motion word.

  PYTHONPATH=export .venv/bin/python export/experiments/negative_motion.py \\
      --models models/toy --out negative                       # about 6 min

Motions without an opposite (bouncing, circling) keep the empty negative prompt. Writes
OUT/negative.json (an `ablate` row for each of "empty negative" and "opposite motion", SCuts
included) and the videos.
"""

from __future__ import annotations

import json
from dataclasses import replace

from st2v_export.toy.ablation import experiment_parser, protocol_clips, run_variant
from st2v_export.toy.world import DIRECTIONS, caption, parse_caption

OPPOSITES = {"growing": "shrinking", "shrinking": "growing"}
OPPOSITES.update({name: next(other for other, step in DIRECTIONS.items()
                             if step == (-dx, -dy)) for name, (dx, dy) in DIRECTIONS.items()})


def opposite_caption(text: str) -> str:
    """`text` with the opposite motion; "" when its motion has none."""
    spec = parse_caption(text)
    return caption(replace(spec, motion=OPPOSITES[spec.motion])) if spec.motion in OPPOSITES else ""


def main() -> None:
    parser = experiment_parser(__doc__, "stage-1 and stage-2 steps")
    parser.add_argument("--frames", type=int, default=48)
    args = parser.parse_args()
    clips = protocol_clips(args.videos, args.split)
    guided = [{**clip, "negative_prompt": opposite_caption(clip["caption"])}
              for clip in clips]
    rows = []
    for name, variant in (("empty negative", clips), ("opposite motion", guided)):
        rows.append(run_variant(args, name, args.models, variant, args.frames)[0])
        print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "negative.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

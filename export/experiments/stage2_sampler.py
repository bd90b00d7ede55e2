"""The README protocol's `full` row (`toy ablate`: the engine's 48-frame videos of the held-out
captions, stage 3 off) with stage 2's DDIM eta and guidance changed in the model set's manifest:
an experiment of TRAINING.md ("The fourth training"), not part of the recipe. The reference's
stage 2 samples with eta 1 (fresh noise at every step); the training-time evaluation with eta 0.

  PYTHONPATH=export .venv/bin/python export/experiments/stage2_sampler.py \\
      --models models/toy --out sampler --setting 1:3 --setting 0:3     # ETA:GUIDANCE

Writes OUT/sampler.json (one `ablate` row per setting, SCuts included) and the videos.
"""

from __future__ import annotations

import json
from pathlib import Path

from st2v_export.toy.ablation import experiment_parser, linked_set, run_settings


def parse_setting(text: str) -> dict:
    eta, guidance = text.split(":")
    return {"name": f"eta {eta}, guidance {guidance}", "eta": float(eta),
            "guidance": float(guidance)}


def sampler_set(models: Path, setting: dict, out: Path) -> Path:
    """`models` linked file by file, its stage 2 sampled with the setting's eta and guidance."""
    manifest = json.loads((models / "manifest.json").read_text())
    stage2 = manifest["pipeline"]["stage2"]
    stage2["eta"], stage2["guidance_scale"] = setting["eta"], setting["guidance"]
    return linked_set(models, manifest, out)


def main() -> None:
    parser = experiment_parser(__doc__, "stage-1 and stage-2 steps")
    parser.add_argument("--setting", action="append", type=parse_setting, required=True,
                        help="ETA:GUIDANCE of stage 2's DDIM")
    parser.add_argument("--frames", type=int, default=48)
    args = parser.parse_args()
    run_settings(args, sampler_set)


if __name__ == "__main__":
    main()

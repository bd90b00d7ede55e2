"""Stage 1's chunk alone (the engine's first 16 frames of the README protocol's held-out
captions, stage 3 off) with stage 1's sampler and guidance changed in the model set's manifest:
an experiment of TRAINING.md ("The sixth training"), not part of the recipe. The manifest
samples stage 1 with DPM-Solver++ (2M), as the reference; the training-time evaluation
(`video_eval.evaluate_stage1`) with DDIM, eta 0.

  PYTHONPATH=export .venv/bin/python export/experiments/stage1_sampler.py \\
      --models models/toy --out sampler1 --setting dpm:3 --setting ddim:3    # SAMPLER:GUIDANCE

Writes OUT/sampler.json (one `ablate` row per setting) and the videos.
"""

from __future__ import annotations

import json
from pathlib import Path

from st2v_export.toy.ablation import experiment_parser, linked_set, run_settings

SAMPLERS = ("dpm", "ddim")


def parse_setting(text: str) -> dict:
    sampler, guidance = text.split(":")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    return {"name": f"{sampler}, guidance {guidance}", "sampler": sampler,
            "guidance": float(guidance)}


def sampler_set(models: Path, setting: dict, out: Path) -> Path:
    """`models` linked file by file, its stage 1 sampled as the setting says (DDIM: stage 2's
    scheduler configuration, with eta 0)."""
    manifest = json.loads((models / "manifest.json").read_text())
    pipeline = manifest["pipeline"]
    if setting["sampler"] == "ddim":
        pipeline["stage1"]["scheduler"] = pipeline["stage2"]["scheduler"]
    pipeline["stage1"]["guidance_scale"] = setting["guidance"]
    return linked_set(models, manifest, out)


def main() -> None:
    parser = experiment_parser(__doc__, "stage-1 steps")
    parser.add_argument("--setting", action="append", type=parse_setting, required=True,
                        help="SAMPLER:GUIDANCE of stage 1 (dpm or ddim)")
    parser.add_argument("--frames", type=int, default=16)
    run_settings(parser.parse_args(), sampler_set)


if __name__ == "__main__":
    main()

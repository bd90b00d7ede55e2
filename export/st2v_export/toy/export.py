"""`python -m st2v_export.toy export`: the toy model set (`models/toy`) from the training runs.

  python -m st2v_export.toy export --runs RUNS --out models/toy [--force] [--keep-unused-tokens]
      [--preset-file FILE]

The stage-1/2 graphs of the `toy` preset and `st2v eval`'s CLIP text tower are exported with
`export_model_set` (parity-checked against PyTorch as for any set); the roles with a training run
in RUNS (RUNS/vae or RUNS/vae_decoder, RUNS/clip, RUNS/stage1, RUNS/stage2) get its weights, the
others the seeded random weights of the preset. The manifest's provenance names the run behind
each role, with its step, seed and last held-out metrics; its stage-1/2 schedulers say what
the toy UNets were trained with (`diffusion.TOY_SCHEDULER_CONFIG`: v prediction on a schedule
rescaled to a zero terminal SNR), stage 2's DDIM uses "trailing" timesteps, so that it
starts at t = 999 like stage 1's DPM-Solver++ ("linspace"), and both stages guide with
`TOY_GUIDANCE_SCALE`. The enhancer graphs come from RUNS/enhancer_vae and RUNS/enhancer; stage 3
is guided by `TOY_STAGE3_GUIDANCE` from `TOY_STAGE3_NOISE_TIMESTEP`. Without those runs the
enhancer is left out (a random one would turn the videos into noise; without it the engine
stops after stage 2).

Left out, because no toy run trains it: RAFT (`st2v eval` measures motion with Farneback
without it; a random flow network would give a meaningless MAWE).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from pathlib import Path

from .. import manifest as manifest_module
from ..model_set import export_model_set, summary_table
from ..presets import Preset, load_preset_file, register_preset
from .diffusion import (
    TOY_GUIDANCE_SCALE,
    TOY_SCHEDULER_CONFIG,
    TOY_STAGE3_GUIDANCE,
    TOY_STAGE3_NOISE_TIMESTEP,
)
from .preset import toy_preset
from .runfiles import CHECKPOINT_FILE, run_record
from .weights import ROLE_SOURCES, ToyWeights

EXPORT_SEED = 0


def use_toy_schedule(manifest: dict) -> dict:
    """The schedule the toy UNets were trained on (`diffusion.py`), told to the engine's
    stage-1/2 schedulers (a zero terminal SNR needs sampling to start at the last timestep),
    and the guidance scale that suits it."""
    for stage in ("stage1", "stage2"):
        manifest["pipeline"][stage]["scheduler"]["config"].update(TOY_SCHEDULER_CONFIG)
        manifest["pipeline"][stage]["guidance_scale"] = TOY_GUIDANCE_SCALE
    manifest["pipeline"]["stage2"]["scheduler"]["config"]["timestep_spacing"] = "trailing"
    stage3 = manifest["pipeline"]["stage3"]
    stage3["guidance_scale"] = TOY_STAGE3_GUIDANCE
    stage3["noise_timestep"] = stage3["scheduler"]["config"]["t_max"] = TOY_STAGE3_NOISE_TIMESTEP
    return manifest


ENHANCER_RUNS = ("enhancer_vae", "enhancer")


def has_enhancer_runs(runs: Path) -> bool:
    """Whether RUNS holds both enhancer runs (the set then gets a trained stage 3)."""
    return all((Path(runs) / model / CHECKPOINT_FILE).is_file() for model in ENHANCER_RUNS)


def export_toy_set(runs: Path, out: Path, zero_unused: bool = True,
                   log: Callable[[str], None] = print, roles: list[str] | None = None,
                   preset: Preset | None = None) -> dict:
    """Exports the toy set (or only `roles`) into `out`; returns its manifest. `preset`: a
    variant of the toy preset the runs were trained with (default: the toy preset)."""
    preset = toy_preset(register=True) if preset is None else register_preset(preset)
    weights = ToyWeights(runs, preset, zero_unused=zero_unused, log=log)
    run_dirs = sorted({source.model for source in ROLE_SOURCES.values()})
    records = {model: run_record(Path(runs) / model) for model in run_dirs}
    training = {"roles": {}, "runs": {m: r for m, r in records.items() if r is not None},
                "command": "python -m st2v_export.toy train (export/st2v_export/toy/TRAINING.md)"}
    manifest, reports = export_model_set(
        preset, out, seed=EXPORT_SEED, roles=roles, include_enhancer=has_enhancer_runs(runs),
        log=log, weights=weights, training=training,
    )
    # The roles are known once every graph is built: record them and rewrite the manifest.
    training["roles"] = dict(sorted(weights.summary().items()))
    manifest["provenance"]["training"] = training
    manifest["description"] = manifest_module.description(preset, training)
    use_toy_schedule(manifest)
    manifest_module.validate_manifest(manifest)
    manifest_module.write_manifest(manifest, out)
    log(summary_table(reports))
    return manifest


def add_export_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("export", help="export the toy model set from training runs",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True,
                        help="directory of the runs (RUNS/vae, RUNS/clip, RUNS/stage1, ...)")
    parser.add_argument("--out", type=Path, required=True, help="model set directory")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing model set in --out")
    parser.add_argument("--keep-unused-tokens", action="store_true",
                        help="keep the untrained embedding rows (the set compresses less)")
    parser.add_argument("--preset-file", type=Path, default=None,
                        help="the custom preset (JSON) the runs were trained with (`train "
                             "--preset-file`); default: the toy preset")
    return parser


def export_command(args: argparse.Namespace) -> int:
    if not args.runs.is_dir():
        raise ValueError(f"--runs {args.runs}: no such directory")
    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        raise ValueError(f"--out {args.out} is not empty: pass --force to replace it")
    preset = None if args.preset_file is None else load_preset_file(args.preset_file)
    # Exported beside it first: a failed export leaves the old set as it was.
    staging = args.out.with_name(args.out.name + ".exporting")
    if staging.exists():
        shutil.rmtree(staging)
    export_toy_set(args.runs, staging, zero_unused=not args.keep_unused_tokens, preset=preset)
    if args.out.exists():
        shutil.rmtree(args.out)
    staging.rename(args.out)
    print(f"toy model set in {args.out}")
    return 0

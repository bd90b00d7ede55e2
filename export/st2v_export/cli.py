"""Command line: `python -m st2v_export --preset tiny --out models/tiny` (or
`--preset-file toy.json` for a custom preset)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checkpoint import OPTIONAL_SOURCE_FILES, SOURCE_FILES, CheckpointError
from .model_set import enhancer_errors, export_model_set, summary_table
from .onnx_export import PRECISIONS, ExportOptions, GraphSpecError, ParityError
from .presets import PRESETS, PresetError, load_preset_file
from .roles import UnknownRoleError
from .simplify import SimplificationError


def _source(text: str) -> tuple[str, Path]:
    name, separator, path = text.partition("=")
    if not separator or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def parser() -> argparse.ArgumentParser:
    known = sorted((SOURCE_FILES | OPTIONAL_SOURCE_FILES).items())
    sources_help = "; ".join(f"{name}: {where}" for name, where in known)
    cli = argparse.ArgumentParser(prog="st2v_export", description=__doc__)
    which = cli.add_mutually_exclusive_group()
    which.add_argument("--preset", help=f"one of {sorted(PRESETS)} (default tiny)")
    which.add_argument(
        "--preset-file", type=Path, metavar="JSON",
        help='a custom preset: {"name": ..., "base": "tiny", ...dimensions that differ} '
        "(see export/README.md)",
    )
    cli.add_argument("--out", type=Path, required=True, help="output model-set directory")
    cli.add_argument("--seed", type=int, default=0, help="weight and example-input seed")
    cli.add_argument("--only", nargs="+", metavar="GRAPH", help="export only these graphs")
    cli.add_argument("--no-enhancer", action="store_true", help="skip the stage-3 graphs")
    cli.add_argument(
        "--source", type=_source, action="append", default=[], metavar="NAME=PATH",
        help=f"checkpoint source of the full preset ({sources_help}; and the enhancer's files)",
    )
    cli.add_argument(
        "--no-simplify", action="store_true",
        help="ship the exporter's graphs as traced (no onnxsim, no shape annotation)",
    )
    cli.add_argument(
        "--precision", choices=PRECISIONS, default="fp32",
        help="fp16: float16 weights and compute, norms and softmax in fp32, float32 inputs/outputs",
    )
    cli.add_argument(
        "--trust-checkpoint-pickle", action="store_true",
        help="allow Python objects in streaming_t2v.ckpt (only for files you trust)",
    )
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        preset = load_preset_file(args.preset_file) if args.preset_file else args.preset or "tiny"
        manifest, reports = export_model_set(
            preset,
            args.out,
            seed=args.seed,
            roles=args.only,
            sources=dict(args.source),
            include_enhancer=not args.no_enhancer,
            trust_pickle=args.trust_checkpoint_pickle,
            options=ExportOptions(simplify=not args.no_simplify, precision=args.precision),
            log=lambda line: print(line, flush=True),
        )
    except (
        PresetError,
        UnknownRoleError,
        CheckpointError,
        GraphSpecError,
        ParityError,
        SimplificationError,
        *enhancer_errors(),
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary_table(reports))
    print(f"wrote {len(manifest['graphs'])} graphs and manifest.json to {args.out}")
    return 0

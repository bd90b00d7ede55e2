"""The `train` subcommand of `python -m st2v_export.toy` (see train.py and TRAINING.md).

  python -m st2v_export.toy train --model MODEL --steps N --out DIR [--resume] [--init RUN]
      [--seed S] [--batch B] [--lr LR] [--schedule-steps N] [--checkpoint-every K] [--log-every K]
      [--eval-every K] [--eval-frames N] [--threads T] [--device D] [--workers W]
      [--crossing-share F] [--decoded-conditions] [--binding-weight W]
      [--draft-share F]
      [--preset-file FILE]

`--steps` is the total step count: a resumed run continues from its checkpoint's step up to it.
Also runnable alone: `python -m st2v_export.toy.train_cli --model vae ...`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..presets import PresetError, load_preset_file
from .train import MODELS, TrainConfig, TrainError, train

DEFAULT_THREADS = 1
"""One intra-op thread: on this 2-core machine shared with other jobs, two threads ran the VAE
step about 8 times slower than one (OpenMP threads waiting on each other); see TRAINING.md."""


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", choices=MODELS, required=True, help="what to train")
    parser.add_argument("--steps", type=int, required=True,
                        help="total optimizer steps (a resumed run stops at this step too)")
    parser.add_argument("--out", type=Path, required=True,
                        help="run directory: checkpoint.pt, log.jsonl, metrics.json")
    parser.add_argument("--resume", action="store_true",
                        help="continue from DIR/checkpoint.pt (a fresh start when there is none)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="directory of the runs a UNet trains on (RUNS/vae, RUNS/clip, "
                             "RUNS/stage1; default: the parent of --out)")
    parser.add_argument("--init", type=Path, default=None,
                        help="start a new run from this run's weights (same model; a fresh "
                             "optimizer and schedule)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and data seed")
    parser.add_argument("--batch", type=int, default=None,
                        help="frames per step for vae (16) and clip (64); clips per step for "
                             "stage1 and stage2 (4)")
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate (default: vae 2e-3, others 1e-3)")
    parser.add_argument("--schedule-steps", type=int, default=None,
                        help="length of the warmup + cosine schedule (default: --steps of the "
                             "first run; kept when resuming)")
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--eval-every", type=int, default=0,
                        help="evaluate on held-out frames every K steps (0: at the end only)")
    parser.add_argument("--eval-frames", type=int, default=None,
                        help="held-out frames (vae 128, clip 256) or generated videos (8)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"torch intra-op threads (default {DEFAULT_THREADS})")
    parser.add_argument("--device", default="cpu",
                        help="where the models train: cpu (default), cuda, cuda:N, or auto "
                             "(cuda when torch sees a GPU); frames and noise are made on the "
                             "CPU either way, and checkpoints resume on any device")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes rendering the next batches while the model trains "
                             "(0, the default: between steps; a GPU run wants several); the "
                             "batches are the same either way")
    parser.add_argument("--crossing-share", type=float, default=0.0,
                        help="stage2 only: the share of each batch's clips (0-1) drawn where a "
                             "shape crosses an edge and the world wraps it around (default 0: "
                             "as the stream draws them: about 3 in 10)")
    parser.add_argument("--decoded-conditions", action="store_true",
                        help="stage2 only: the CAM sees each clip's first 8 frames encoded and "
                             "decoded by the VAE, as the engine's CAM sees the decoded frames "
                             "of the chunk before (default: the rendered frames)")
    parser.add_argument("--binding-weight", type=float, default=0.0,
                        help="stage1 only: weight of a loss that makes each shape of a "
                             "two-shape caption attend to its own colour word and noun "
                             "(default 0: none; 1.0 binds colours but costs stage 1 motion: "
                             "TRAINING.md, 'The tenth training')")
    parser.add_argument("--draft-share", type=float, default=0.0,
                        help="enhancer only: the share of each batch's clips (0-1) noised from "
                             "a degraded draft (rendered at the stage-2 size, faded, recoloured "
                             "a little, upscaled) at SDEdit's timesteps and trained to give back "
                             "the clean clip (default 0: plain diffusion on every clip)")
    parser.add_argument("--preset-file", type=Path, default=None,
                        help="a custom preset (JSON) instead of the toy preset")
    return parser


def add_train_parser(commands) -> argparse.ArgumentParser:
    """Adds `train` to the subparsers of `python -m st2v_export.toy`."""
    summary = f"train a toy model ({', '.join(MODELS)}) on the toy world"
    parser = commands.add_parser("train", help=summary,
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_train_arguments(parser)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    preset = None
    if args.preset_file is not None:
        try:
            preset = load_preset_file(args.preset_file)
        except PresetError as error:
            raise TrainError(str(error)) from None
    return TrainConfig(
        model=args.model,
        steps=args.steps,
        out=args.out,
        seed=args.seed,
        batch=args.batch,
        lr=args.lr,
        schedule_steps=args.schedule_steps,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        eval_every=args.eval_every,
        eval_frames=args.eval_frames,
        resume=args.resume,
        preset=preset,
        runs=args.runs,
        init=args.init,
        device=args.device,
        workers=args.workers,
        crossing_share=args.crossing_share,
        decoded_conditions=args.decoded_conditions,
        binding_weight=args.binding_weight,
        draft_share=args.draft_share,
    )


def train_command(args: argparse.Namespace) -> int:
    """Runs `train`; a TrainError (a ValueError) becomes the caller's clear error message."""
    if args.threads <= 0:
        raise TrainError(f"--threads must be positive, got {args.threads}")
    config = config_from_args(args)
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        train(config, log=lambda line: print(line, flush=True))
    finally:
        torch.set_num_threads(previous)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m st2v_export.toy.train_cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    args = add_train_arguments(parser).parse_args(argv)
    try:
        return train_command(args)
    except TrainError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    sys.exit(main())

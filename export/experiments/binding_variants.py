"""Where and when the binding loss acts (TRAINING.md, "The tenth training"): an experiment, not
part of the recipe. At weight 1.0 on every step, every spatial cross-attention at 2x2 and finer
and every noise level, `toy train --binding-weight` binds two-shape colours but costs stage 1
most of its motion. This runs the same `toy train` with the loss narrowed, patched in this
process only:

  PYTHONPATH=export .venv/bin/python export/experiments/binding_variants.py \\
      [--max-timestep T] [--max-side S] -- train --model stage1 --binding-weight 1.0 ...

- --max-timestep T: only the clips whose training timestep is below T (of 1000) count. Near
  t = 999 the noisy latent shows no shape, so no attention map can find its pixels; the loss
  there only adds noise to the gradient.
- --max-side S: only the layers whose attention map is S x S or coarser (the deeper ones; the
  loss keeps its own floor of 2x2).
- --every N: only every Nth training step (the first, then N + 1, ...), at the full weight; the
  steps between train on the diffusion loss alone, so that the motion can recover.

Everything after `--` is the toy command line (`python -m st2v_export.toy`). Found (3000
steps from models/toy's stage 1): each narrowing binds fewer colours than the whole loss and
still costs direction, so none is in the recipe."""

from __future__ import annotations

import argparse
import itertools
import sys

import torch

from st2v_export.toy import __main__ as toy_main
from st2v_export.toy import video_tasks

_last_timesteps: list[torch.Tensor] = []


def narrow(max_timestep: int | None, max_side: int | None, every: int = 1) -> None:
    """Patches `video_tasks` so that its binding loss sees only the chosen clips, layers and
    steps."""
    plain_targets, plain_loss = video_tasks.diffusion_targets, video_tasks.binding_loss
    calls = itertools.count()  # the binding loss runs once per training step

    def targets(latents, generator):
        timesteps, noisy, target = plain_targets(latents, generator)
        _last_timesteps[:] = [timesteps]
        return timesteps, noisy, target

    def loss(videos, captions, layers):
        if next(calls) % every:
            layers = []
        if max_timestep is not None:
            timesteps = _last_timesteps[0].tolist()
            captions = [c if t < max_timestep else "" for c, t in zip(captions, timesteps)]
        if max_side is not None:
            layers = [(p, h) for p, h in layers if round(p.shape[1] ** 0.5) <= max_side]
        return plain_loss(videos, captions, layers)

    video_tasks.diffusion_targets, video_tasks.binding_loss = targets, loss


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-timestep", type=int, default=None)
    parser.add_argument("--max-side", type=int, default=None)
    parser.add_argument("--every", type=int, default=1)
    if "--" not in argv:
        parser.error("the toy command line goes after `--` (e.g. -- train --model stage1 ...)")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    if args.every < 1:
        parser.error(f"--every must be at least 1, got {args.every}")
    narrow(args.max_timestep, args.max_side, args.every)
    return toy_main.main(argv[split + 1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

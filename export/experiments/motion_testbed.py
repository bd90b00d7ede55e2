"""The stage-1 motion testbed of TRAINING.md ("What remains", item 0): an experiment, not part of
the recipe. It patches the toy trainer in this process only, then fine-tunes the stage-1 UNet
(from `toy recover`'s runs) and prints, per sample, the asked and the detected motion.

  PYTHONPATH=export .venv/bin/python export/experiments/motion_testbed.py \\
      --runs runs-rec --out tb-pair --steps 1500 [--free-starts] [--oracle] [--frame-positions]
  ... --out tb-pair --look [--eta 1]        # sample the run's checkpoint again (sheet.png)
  ... --world --out tb-world --steps 2000   # the full world, 16 held-out captions
  ... --captions "...circle...|...square...|..." --samples 10   # shapes (printed per sample)
  ... --world --motions left,right,... --train-captions   # a part of it, judged on train captions

Patches (each a flag):
- the pair (default): the batches draw only `--captions`, each clip with a fresh layout (the
  world's: direction-tied) from its video's beginning, as stage 1 trains;
- --free-starts: the world before that: any start position and any start time;
- --oracle: a learned vector per motion (12 x context width) added to every text state, in
  place of the recipe's motion probe;
- --probe-weight: the motion probe's weight (the recipe's 0.05; 0: none);
- --shape-probe: the shape probe's weight (the recipe's 0.05; 0: none, as the runs before it);
- --frame-positions: sinusoidal frame positions seen by every temporal transformer;
- --temporal-caption: the second attention of every temporal transformer of the blocks (not
  `transformer_in`, wider than the text states) attends to the text states (the caption, per
  pixel) instead of the frames again; same weights, so it starts from the recovered UNet (the
  graph interfaces would allow it, ModelScope's UNet3D does not do it);
- --binding-weight W: the recipe's binding loss (`st2v_export.toy.binding`, `toy train
  --binding-weight`), first tried here: in the pixels of each shape of a two-shape caption, the
  spatial cross-attention to its own colour word and noun should outweigh that to the other
  shape's;
- --decoded-loss W: a decoded-pixel term beside the latent loss (`add_decoded_loss`);
- --large-radius R: the world's large shapes drawn with circumradius R (a fraction of the
  frame; the world's is 0.19) in training and in the evaluation's true clips;
- --eta: DDIM eta of the samples (the evaluation's is 0).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet3DConditionModel
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
from PIL import Image
from torch import nn

from st2v_export.presets import VAE_SCALING_FACTOR
from st2v_export.toy import checker, data, diffusion, video_eval, video_tasks, world
from st2v_export.toy.data import tokenize
from st2v_export.toy.train import Run, TrainConfig
from st2v_export.toy.video_tasks import Stage1Task, diffusion_targets

PAIR = ("a large green triangle moving left on a blue background|"
        "a large green triangle moving right on a blue background")
SAMPLES: list[np.ndarray] = []


def free_starts() -> None:
    """The world before direction-tied layouts: any start position, any start time."""
    layout = world._sample_layout

    def anywhere(rng, spec):
        return tuple(rng.random(2)) if spec.motion in world.DIRECTIONS else layout(rng, spec)

    world._sample_layout = anywhere
    video_clip = data.video_clip

    def anytime(seed, index, split, frames, size, anchor=False, beginning=False):
        return video_clip(seed, index, split, frames, size, anchor, beginning=False)

    data.video_clip = anytime


def clip(spec, rng, free: bool) -> dict:
    start = int(rng.integers(0, data.FRAME_RANGE - 16 + 1)) if free else 0
    return {"frames": world.render(spec, 16, 64, start), "caption": world.caption(spec),
            "spec": spec, "start": start}


def draw_pair(captions: list[str], free: bool) -> None:
    specs = [world.parse_caption(c) for c in captions]

    def one(seed, index):
        rng = np.random.default_rng([seed, index, 99])
        spec = specs[index % len(specs)]
        return clip(replace(spec, layout=world._sample_layout(rng, spec)), rng, free)

    video_tasks.video_batch = lambda seed, step, n, *a, **k: [one(seed, step * n + i)
                                                             for i in range(n)]
    video_eval.heldout_clips = lambda count, *a, **k: [one(777, i) for i in range(count)]


def only_motions(motions: list[str]) -> None:
    """The world's scenes with these motions only (both splits)."""
    sample = world.sample_spec

    def restricted(rng, split="train"):
        while (spec := sample(rng, split)).motion not in motions:
            pass
        return spec

    world.sample_spec = restricted


def evaluate_on_train_captions() -> None:
    """The world's evaluation on train-split clips (captions seen in training), same seed."""
    video_eval.heldout_clips = lambda count, frames, size, anchor=False: data.video_batch(
        data.HELDOUT_SEED, 0, count, frames, size, anchor=anchor, split="train", beginning=True)


class Oracle(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.table = nn.Parameter(torch.randn(len(world.MOTIONS), width) * 0.5)

    def forward(self, captions: list[str]) -> torch.Tensor:
        rows = [self.table[world.MOTIONS.index(world.parse_caption(c).motion)] if c
                else torch.zeros(self.table.shape[1]) for c in captions]
        return torch.stack(rows)[:, None, :]


def add_oracle() -> None:
    build = Stage1Task.__init__

    def init(self, *args, **kwargs):
        build(self, *args, **kwargs)
        self.oracle = Oracle(self.preset.context_dim)
        states = self.frozen.text_states
        self.frozen.text_states = lambda captions: states(captions) + self.oracle(captions).detach()

    def loss(self, batch, generator):
        latents = self.frozen.latents(batch["videos"], generator)
        context = self.frozen.text(input_ids=tokenize(batch["captions"])).last_hidden_state
        timesteps, noisy, target = diffusion_targets(latents, generator)
        prediction = self.unet(noisy, timesteps, context + self.oracle(batch["captions"]),
                               return_dict=False)[0]
        return F.mse_loss(prediction, target), {}

    Stage1Task.__init__ = init
    Stage1Task.loss = loss
    Stage1Task.modules = lambda self: {"unet": self.unet, "text": self.frozen.text,
                                       "oracle": self.oracle}


def add_frame_positions() -> None:
    forward = TransformerTemporalModel.forward

    def with_positions(self, hidden_states, encoder_hidden_states=None, timestep=None,
                       class_labels=None, num_frames=1, cross_attention_kwargs=None,
                       return_dict=True):
        channels = hidden_states.shape[1]
        frames = torch.arange(num_frames, dtype=torch.float32)[:, None]
        rates = torch.exp(-torch.arange(0, channels, 2, dtype=torch.float32) * (4.0 / channels))
        table = torch.zeros(num_frames, channels)
        table[:, 0::2] = torch.sin(frames * rates)
        table[:, 1::2] = torch.cos(frames * rates)[:, : channels // 2]
        positions = table.repeat(hidden_states.shape[0] // num_frames, 1)[:, :, None, None]
        out = forward(self, hidden_states + positions, encoder_hidden_states, timestep,
                      class_labels, num_frames, cross_attention_kwargs, return_dict=False)[0]
        return (out - positions,)  # the residual path without the positions

    TransformerTemporalModel.forward = with_positions


def add_temporal_caption() -> None:
    unet_forward, temporal_forward = UNet3DConditionModel.forward, TransformerTemporalModel.forward
    text: list[torch.Tensor] = []

    def unet_with_text(self, sample, timestep, encoder_hidden_states, *args, **kwargs):
        text[:] = [encoder_hidden_states]
        return unet_forward(self, sample, timestep, encoder_hidden_states, *args, **kwargs)

    def temporal_with_text(self, hidden_states, encoder_hidden_states=None, timestep=None,
                           class_labels=None, num_frames=1, cross_attention_kwargs=None,
                           return_dict=True):
        states = text[0]
        if self.transformer_blocks[0].attn2.to_k.in_features != states.shape[-1]:
            # transformer_in (8 heads, wider than the text): stays on the frames
            return temporal_forward(self, hidden_states, encoder_hidden_states, timestep,
                                    class_labels, num_frames, cross_attention_kwargs, return_dict)
        batch = hidden_states.shape[0] // num_frames
        assert states.shape[0] == batch, (states.shape, hidden_states.shape, num_frames)
        pixels = hidden_states.shape[2] * hidden_states.shape[3]
        return temporal_forward(self, hidden_states, states.repeat_interleave(pixels, dim=0),
                                timestep, class_labels, num_frames, cross_attention_kwargs,
                                return_dict)

    UNet3DConditionModel.forward = unet_with_text
    TransformerTemporalModel.forward = temporal_with_text


def add_decoded_loss(weight: float, frames: int) -> None:
    """A pixel term beside the latent v loss: the x0 the UNet predicts, decoded by the frozen
    VAE for `frames` random frames of each clip, against the true frames; weighted by alpha_bar
    (the signal's share), so the smeared means of high noise count little. A shape's class
    lives in a few latents' fine values, which the latent loss weighs no more than any other;
    the decoder weighs them as the pixels do."""
    loss = Stage1Task.loss

    def with_decoded(self, batch, generator):
        captured = {}
        forward = self.unet.forward

        def keep(sample, timestep, *args, **kwargs):
            out = forward(sample, timestep, *args, **kwargs)
            captured.update(sample=sample, timestep=timestep, v=out[0])
            return out

        self.unet.forward = keep
        try:
            total, parts = loss(self, batch, generator)
        finally:
            del self.unet.forward
        alpha = diffusion.ALPHAS_CUMPROD[captured["timestep"]].view(-1, 1, 1, 1, 1)
        x0 = alpha.sqrt() * captured["sample"] - (1 - alpha).sqrt() * captured["v"]
        picked = torch.randint(0, x0.shape[2], (frames,), generator=generator)
        latents = x0[:, :, picked].transpose(1, 2).flatten(0, 1) / VAE_SCALING_FACTOR
        pixels = self.frozen.vae.decode(latents).sample
        truth = batch["videos"][:, picked].flatten(0, 1)
        error = ((pixels - truth) ** 2).mean(dim=(1, 2, 3)).view(-1, frames)
        decoded = (error * alpha.view(-1, 1)).mean()
        parts["decoded"] = decoded.detach()
        return total + weight * decoded, parts

    Stage1Task.loss = with_decoded


def text_gaps(task: Stage1Task) -> str:
    """The text states' distance between shape words in "a large red _ moving right on a blue
    background": at the word, and the mean over the 7 states after it."""
    template = "a large red {} moving right on a blue background"
    states = task.frozen.text_states([template.format(s) for s in world.SHAPES])
    word = 4  # <start> a large red _
    pairs = [("square", "diamond"), ("triangle", "star"), ("circle", "square"),
             ("square", "triangle")]
    out = []
    for a, b in pairs:
        i, j = world.SHAPES.index(a), world.SHAPES.index(b)
        gap = (states[i] - states[j]).norm(dim=-1)
        out.append(f"{a}/{b} {gap[word]:.2f} / {gap[word + 1:word + 8].mean():.2f}")
    return "text gaps (at the word / after it): " + ", ".join(out)


def sample_with_eta(eta: float) -> None:
    def ddim(predict_v, shape, generator, steps=25):
        sample = torch.randn(shape, generator=generator)
        for t in diffusion.ddim_timesteps(steps):
            v = predict_v(sample, t)
            alpha = diffusion.ALPHAS_CUMPROD[t]
            before = t - 1000 // steps
            prev = diffusion.ALPHAS_CUMPROD[max(before, 0)]
            x0 = alpha.sqrt() * sample - (1 - alpha).sqrt() * v
            eps = alpha.sqrt() * v + (1 - alpha).sqrt() * sample
            sigma = eta * ((1 - prev) / (1 - alpha) * (1 - alpha / prev).clamp(min=0)).sqrt()
            toward = (1 - prev - sigma**2).clamp(min=0).sqrt()
            noise = torch.randn(shape, generator=generator)
            sample = prev.sqrt() * x0 + toward * eps + sigma * noise
        return sample

    video_eval.ddim_sample = ddim


def report_each_sample() -> None:
    check, summarize = checker.check_video, video_eval.summarize

    def keep(frames, spec, *args, **kwargs):
        SAMPLES.append(frames)
        return check(frames, spec, *args, **kwargs)

    def each(reports):
        for report in reports:
            for shape in report["shapes"]:
                m = shape["motion"]
                print(f"sample: asked {m['expected']}, detected {m['detected']}, direction "
                      f"{m.get('direction_deg')}, straightness {m.get('straightness')}, "
                      f"speed {m.get('speed')}; {shape['expected']['shape']} read in "
                      f"{shape['shape_accuracy']:.0%} of the frames (most often: "
                      f"{shape['shape_detected']})", flush=True)
        return summarize(reports)

    checker.check_video, video_eval.summarize = keep, each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="`toy recover`'s output")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--init", type=Path, help="the stage-1 run to start from (RUNS/stage1)")
    parser.add_argument("--captions", default=PAIR, help="'|'-separated training captions")
    parser.add_argument("--world", action="store_true", help="the full world, held-out eval")
    parser.add_argument("--free-starts", action="store_true")
    parser.add_argument("--oracle", action="store_true")
    parser.add_argument("--probe-weight", type=float, default=video_tasks.MOTION_PROBE_WEIGHT)
    parser.add_argument("--frame-positions", action="store_true")
    parser.add_argument("--temporal-caption", action="store_true")
    parser.add_argument("--binding-weight", type=float, default=0.0)
    parser.add_argument("--decoded-loss", type=float, default=0.0,
                        help="weight of the decoded-pixel term (add_decoded_loss; 0: none)")
    parser.add_argument("--decoded-frames", type=int, default=4)
    parser.add_argument("--eval-every", type=int, help="steps between evaluations (default: "
                        "--steps; --world: 1000)")
    parser.add_argument("--large-radius", type=float,
                        help="the world's 'large' circumradius, a fraction of the frame (0.19)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--shape-probe", type=float, default=video_tasks.SHAPE_PROBE_WEIGHT,
                        help="the shape probe's weight (the recipe's 0.05; 0: none)")
    parser.add_argument("--eta", type=float, default=0.0)
    parser.add_argument("--look", action="store_true", help="sample --out's checkpoint again")
    parser.add_argument("--samples", type=int, help="videos judged (default 8; --world: 16)")
    parser.add_argument("--motions", help="with --world: only these motions (comma-separated)")
    parser.add_argument("--train-captions", action="store_true",
                        help="with --world: evaluate on train-split captions, not held-out ones")
    args = parser.parse_args()
    torch.set_num_threads(1)
    video_tasks.MOTION_PROBE_WEIGHT = args.probe_weight
    if args.free_starts:
        free_starts()
    if not args.world:
        draw_pair(args.captions.split("|"), args.free_starts)
    if args.motions:
        only_motions(args.motions.split(","))
    if args.train_captions:
        evaluate_on_train_captions()
    if args.oracle:
        add_oracle()
    if args.frame_positions:
        add_frame_positions()
    if args.temporal_caption:
        add_temporal_caption()
    if args.large_radius:
        world.SIZE_RADIUS["large"] = args.large_radius
    video_tasks.SHAPE_PROBE_WEIGHT = args.shape_probe
    if args.decoded_loss:
        add_decoded_loss(args.decoded_loss, args.decoded_frames)
    if args.eta:
        sample_with_eta(args.eta)
    report_each_sample()
    init = args.out if args.look else args.init or args.runs / "stage1"
    config = TrainConfig(model="stage1", steps=1 if args.look else args.steps,
                         out=args.out / "look" if args.look else args.out, lr=args.lr,
                         eval_every=0 if args.look else args.eval_every or (
                             1000 if args.world else args.steps),
                         eval_frames=args.samples or (16 if args.world else 8), init=init,
                         runs=args.runs,
                         binding_weight=0.0 if args.look else args.binding_weight)
    run = Run(config, print)
    if args.look:
        run.prepare()
        print(text_gaps(run.task), flush=True)
        print(json.dumps(run.evaluate()))
        rows = [np.concatenate(list(frames), axis=1) for frames in SAMPLES]
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.out / "sheet.png")
    else:
        print(json.dumps(run.run()))
        print(text_gaps(run.task), flush=True)


if __name__ == "__main__":
    main()

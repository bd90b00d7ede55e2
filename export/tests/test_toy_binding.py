"""The binding loss of stage 1 (`st2v_export.toy.binding`, `toy train --binding-weight`): the
token positions of each shape's words, a loss that is small when each shape's pixels attend to
its own words and large when they attend to the other shape's (synthetic attention), and the
stage-1 task and run that train with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from st2v_export.toy import data, world
from st2v_export.toy.binding import binding_loss, word_positions
from st2v_export.toy.preset import toy_preset
from st2v_export.toy.runfiles import run_record
from st2v_export.toy.train import Run, TrainConfig, TrainError
from st2v_export.toy.video_tasks import Stage1Task, videos_to_pixels

CAPTION = "a small blue star and a large purple diamond moving up-left on a gradient background"
QUIET = lambda _line: None  # noqa: E731


def test_each_shapes_colour_word_and_noun_are_found_in_order():
    ids = data.tokenize([CAPTION])[0].tolist()
    assert word_positions(ids, world.parse_caption(CAPTION)) == [[3, 4], [8, 9]]
    same = "a red circle and a blue circle moving left on a white background"
    ids = data.tokenize([same])[0].tolist()
    assert word_positions(ids, world.parse_caption(same)) == [[2, 3], [6, 7]]


def _attention(frames, spec, side: int, heads: int, swap: bool) -> torch.Tensor:
    """(F * heads, side^2, 77): each cell attends to the words of the shape covering it most
    (the other shape's when `swap`), elsewhere to the end of the caption."""
    masks = torch.stack([torch.tensor(
        (frames == world.PALETTE[s.colour]).all(axis=-1), dtype=torch.float32)
        for s in spec.shapes], dim=1)  # (F, 2, H, W)
    cover = torch.nn.functional.adaptive_avg_pool2d(masks, side).flatten(2)  # (F, 2, HW)
    probs = torch.zeros(frames.shape[0], side * side, 77)
    owner = cover.argmax(dim=1)
    for f in range(frames.shape[0]):
        for cell in range(side * side):
            if cover[f, :, cell].sum() == 0:
                probs[f, cell, 12] = 1.0
            else:
                shape = int(owner[f, cell]) ^ int(swap)
                probs[f, cell, [3, 4] if shape == 0 else [8, 9]] = 0.5
    return probs[:, None].expand(-1, heads, -1, -1).reshape(-1, side * side, 77)


def test_the_loss_rewards_attention_on_each_shapes_own_words():
    spec = world.parse_caption(CAPTION)
    frames = world.render(spec, 4, 64)
    videos = videos_to_pixels(frames[None])
    losses = {}
    for swap in (False, True):
        layers = [(_attention(frames, spec, 8, 2, swap), 2),
                  (_attention(frames, spec, 1, 2, swap), 2)]  # 1x1: left out
        losses[swap] = float(binding_loss(videos, [CAPTION], layers))
    assert losses[False] < 0.5 < 5 < losses[True]
    single = "a small blue star moving up-left on a gradient background"
    assert float(binding_loss(videos, [single, ""], layers)) == 0.0


def _two_shape_batch(task: Stage1Task) -> dict:
    """The first batch of 4 clips with a two-shape caption (about 3 in 10 captions are)."""
    for step in range(50):
        batch = task.batch(step, 4)
        if any(c and len(world.parse_caption(c).shapes) == 2 for c in batch["captions"]):
            return batch
    raise AssertionError("no two-shape caption in 50 batches")


def test_stage1_adds_the_binding_loss_to_its_loss_and_it_reaches_the_cross_attention(
        toy_video_runs):
    task = Stage1Task(toy_preset(), 0, toy_video_runs)
    batch = _two_shape_batch(task)
    plain, plain_parts = task.loss(batch, torch.Generator().manual_seed(3))
    task.bind(2.0)
    total, parts = task.loss(batch, torch.Generator().manual_seed(3))
    assert "binding" not in plain_parts and float(parts["binding"]) > 0.1
    assert torch.allclose(total - 2.0 * parts["binding"], plain, atol=1e-5)
    task.unet.zero_grad()
    assert float(binding_loss(batch["videos"], batch["captions"], [])) == 0.0  # no layers
    with task.attention.capturing() as layers:
        context = task.frozen.text(input_ids=task.frozen.token_ids(batch["captions"]))
        task.unet(torch.randn(4, 4, 16, 8, 8), torch.tensor([500] * 4),
                  context.last_hidden_state, return_dict=False)
    assert len(layers) >= 2 and task.attention.layers is None
    binding_loss(batch["videos"], batch["captions"], layers).backward()
    spatial = [m for n, m in task.unet.named_modules() if n.endswith("attn2.to_k")
               and "temp_attentions" not in n and "transformer_in" not in n]
    assert any(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in spatial)
    text_grads = [p.grad for p in task.frozen.text.parameters() if p.grad is not None]
    assert text_grads and any(g.abs().sum() > 0 for g in text_grads)


def test_a_binding_run_records_its_weight_and_resumes_only_with_it(toy_video_runs, tmp_path):
    def config(weight, resume=False):
        return TrainConfig("stage1", 2, tmp_path / "bound", batch=2, runs=toy_video_runs,
                           binding_weight=weight, resume=resume)

    run = Run(config(1.0), log=QUIET)
    assert run.task.binding_weight == 1.0 and run.task.attention is not None
    run.save()
    assert run_record(tmp_path / "bound")["binding_weight"] == 1.0
    with pytest.raises(TrainError, match="binding_weight: checkpoint 1.0, asked 0.0"):
        Run(config(0.0, resume=True), log=QUIET).prepare()
    with pytest.raises(TrainError, match="binding weight is for stage1"):
        TrainConfig("stage2", 1, Path("unused"), binding_weight=1.0)
    with pytest.raises(TrainError, match="binding weight must be 0 or more, got -1"):
        TrainConfig("stage1", 1, Path("unused"), binding_weight=-1.0)
    assert "binding_weight" not in run_record(toy_video_runs / "stage1")

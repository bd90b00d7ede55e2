"""export/experiments/motion_testbed.py's binding loss: the token positions of each shape's
words, and a loss that is small when each shape's pixels attend to its own words and large when
they attend to the other shape's (synthetic attention, no UNet)."""

from __future__ import annotations

import pytest
import torch
from conftest import load_experiment

from st2v_export.toy import data, world
from st2v_export.toy.video_tasks import videos_to_pixels

CAPTION = "a small blue star and a large purple diamond moving up-left on a gradient background"


@pytest.fixture(scope="module")
def testbed():
    return load_experiment("motion_testbed")


def test_each_shapes_colour_word_and_noun_are_found_in_order(testbed):
    ids = data.tokenize([CAPTION])[0].tolist()
    assert testbed.word_positions(ids, world.parse_caption(CAPTION)) == [[3, 4], [8, 9]]
    same = "a red circle and a blue circle moving left on a white background"
    ids = data.tokenize([same])[0].tolist()
    assert testbed.word_positions(ids, world.parse_caption(same)) == [[2, 3], [6, 7]]


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


def test_the_loss_rewards_attention_on_each_shapes_own_words(testbed):
    spec = world.parse_caption(CAPTION)
    frames = world.render(spec, 4, 64)
    videos = videos_to_pixels(frames[None])
    losses = {}
    for swap in (False, True):
        layers = [(_attention(frames, spec, 8, 2, swap), 2),
                  (_attention(frames, spec, 1, 2, swap), 2)]  # 1x1: left out
        losses[swap] = float(testbed.binding_loss(videos, [CAPTION], layers))
    assert losses[False] < 0.5 < 5 < losses[True]
    single = "a small blue star moving up-left on a gradient background"
    assert float(testbed.binding_loss(videos, [single, ""], layers)) == 0.0

"""export/experiments/draft_fade.py: the fade and colour offset measured on drafts made with known
ones (`enhancer_tasks.degraded_draft`)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_experiment

from st2v_export.toy import enhancer_tasks, world
from st2v_export.toy.ablation import protocol_clips


@pytest.fixture(scope="module")
def fade():
    return load_experiment("draft_fade")


@pytest.fixture(scope="module")
def clips():
    return protocol_clips(4)


def draft(clip: dict, monkeypatch, fade: float, shift: float) -> np.ndarray:
    monkeypatch.setattr(enhancer_tasks, "DRAFT_FADE", (fade, fade))
    monkeypatch.setattr(enhancer_tasks, "DRAFT_COLOUR_SHIFT", shift)
    return enhancer_tasks.degraded_draft(clip, 64, np.random.default_rng(0))


@pytest.mark.parametrize("known", [1.0, 0.6, 0.25])
def test_the_fade_of_an_unshifted_draft_is_measured_back(fade, clips, monkeypatch, known):
    for clip in clips:
        for shape in fade.video_fade(draft(clip, monkeypatch, known, 0.0), clip):
            assert shape["fade"] == pytest.approx(known, abs=0.04), (clip["caption"], shape)
            assert np.abs(shape["offset"]).max() < 5.0, (clip["caption"], shape)


def test_a_colour_shift_shows_as_an_offset(fade, clips, monkeypatch):
    clip = clips[0]
    plain = fade.video_fade(draft(clip, monkeypatch, 0.8, 0.0), clip)
    shifted = fade.video_fade(draft(clip, monkeypatch, 0.8, 40.0), clip)
    assert max(np.abs(s["offset"]).max() for s in shifted) > 10.0
    assert max(np.abs(s["offset"]).max() for s in plain) < 5.0


def test_a_missing_shape_measures_near_zero(fade, clips):
    clip = clips[0]
    background = world.render_background(clip["spec"].background, 64)
    empty = np.broadcast_to(background, (8, 64, 64, 3)).copy()
    assert all(abs(s["fade"]) < 0.05 for s in fade.video_fade(empty, clip))


def test_the_summary_gives_quantiles_over_shapes(fade):
    shapes = [{"fade": f, "offset": [f, 0.0, -f]} for f in np.linspace(0.0, 1.0, 11)]
    summary = fade.summary(shapes)
    assert summary["shapes"] == 11
    assert summary["fade_quantiles"]["0.5"] == pytest.approx(0.5)
    assert summary["offset_mean_per_channel"] == [0.5, 0.0, -0.5]

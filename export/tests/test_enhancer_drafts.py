"""export/experiments/enhancer_drafts.py: perfect and VAE drafts refined by an enhancer run."""

from __future__ import annotations

import pytest
import torch
from conftest import load_experiment

from st2v_export.toy.preset import toy_preset
from st2v_export.toy.train import TrainConfig, train
from st2v_export.toy.video_eval import heldout_clips
from st2v_export.toy.video_tasks import FrozenEncoders, videos_to_pixels


@pytest.fixture(scope="module")
def runs(toy_video_runs, tmp_path_factory):
    """The shared vae and clip runs beside one-step enhancer_vae and enhancer runs."""
    root = tmp_path_factory.mktemp("enhancer_drafts_runs")
    for model in ("vae", "clip"):
        (root / model).symlink_to(toy_video_runs / model)
    for model in ("enhancer_vae", "enhancer"):
        train(TrainConfig(model, 1, root / model, batch=2, eval_frames=1), log=lambda _: None)
    return root


def test_each_length_is_judged_from_perfect_and_vae_drafts(runs):
    drafts = load_experiment("enhancer_drafts")
    lines = drafts.main(["--runs", str(runs), "--enhancer", str(runs / "enhancer"),
                         "--clips", "1", "--frames", "4"])
    assert [(line["frames"], line["kind"]) for line in lines] == [(4, "perfect"), (4, "vae")]
    perfect = lines[0]["draft"]
    assert perfect["colour"] == perfect["found"] == 1.0  # a perfect stage 2, upscaled
    assert set(lines[0]["refined"]) == set(lines[1]["refined"]) == set(drafts.FIGURES)


def test_vae_drafts_are_the_frames_round_tripped_through_the_stage2_vae(runs):
    drafts = load_experiment("enhancer_drafts")
    clip = heldout_clips(1, 2, 64)[0]
    vae = FrozenEncoders(toy_preset(), 0, runs)
    perfect, round_trip = drafts.stage2_frames(clip, None), drafts.stage2_frames(clip, vae)
    assert torch.equal(perfect, videos_to_pixels(clip["frames"][None]))
    assert round_trip.shape == perfect.shape and not torch.equal(round_trip, perfect)
    assert round_trip.abs().max() <= 1.0  # clamped as the engine clamps decoded frames

"""export/experiments/binding_variants.py: the binding loss narrowed to low-noise clips, to the
deeper layers or to every few steps (synthetic attention, as in test_toy_binding.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import load_experiment
from test_toy_binding import CAPTION, _attention

from st2v_export.toy import video_tasks, world
from st2v_export.toy.video_tasks import videos_to_pixels


@pytest.fixture()
def variants(monkeypatch):
    """The experiment, with `video_tasks` restored after each test."""
    monkeypatch.setattr(video_tasks, "binding_loss", video_tasks.binding_loss)
    monkeypatch.setattr(video_tasks, "diffusion_targets", video_tasks.diffusion_targets)
    return load_experiment("binding_variants")


@pytest.fixture(scope="module")
def scene():
    spec = world.parse_caption(CAPTION)
    frames = world.render(spec, 4, 64)
    return frames, spec, videos_to_pixels(frames[None])


def _layers(scene, swapped_sides: set[int]) -> list:
    frames, spec, _ = scene
    return [(_attention(frames, spec, side, 2, side in swapped_sides), 2) for side in (8, 4, 2)]


def test_only_the_deeper_layers_count_with_max_side(variants, scene):
    _, _, videos = scene
    layers = _layers(scene, swapped_sides={8})
    everything = float(video_tasks.binding_loss(videos, [CAPTION], layers))
    variants.narrow(None, 4)
    deeper = float(video_tasks.binding_loss(videos, [CAPTION], layers))
    assert deeper < 0.5 < everything


def test_only_the_clips_below_max_timestep_count(variants, scene):
    _, _, videos = scene
    layers = _layers(scene, swapped_sides={8, 4, 2})
    variants.narrow(500, None)
    for t, expected_zero in ((499, False), (500, True), (999, True)):
        variants._last_timesteps[:] = [torch.tensor([t])]
        loss = float(video_tasks.binding_loss(videos, [CAPTION], layers))
        assert (loss == 0) == expected_zero, t


def test_only_every_nth_step_counts_with_every(variants, scene):
    _, _, videos = scene
    layers = _layers(scene, swapped_sides={8, 4, 2})
    variants.narrow(None, None, every=3)
    losses = [float(video_tasks.binding_loss(videos, [CAPTION], layers)) for _ in range(7)]
    assert [loss > 0 for loss in losses] == [True, False, False, True, False, False, True]


def test_every_below_one_is_refused(variants, capsys):
    with pytest.raises(SystemExit):
        variants.main(["--every", "0", "--", "train"])
    assert "--every must be at least 1, got 0" in capsys.readouterr().err


def test_the_patched_targets_keep_the_timesteps_they_return(variants):
    latents = torch.zeros(3, 4, 2, 2, 2)
    variants.narrow(500, None)
    timesteps, _, _ = video_tasks.diffusion_targets(latents, torch.Generator().manual_seed(0))
    assert torch.equal(variants._last_timesteps[0], timesteps)


def test_the_arguments_before_the_separator_are_the_experiments(variants, monkeypatch):
    handed = []
    monkeypatch.setattr(variants.toy_main, "main", lambda argv: handed.append(argv) or 0)
    assert variants.main(["--max-side", "4", "--", "train", "--model", "stage1"]) == 0
    assert handed == [["train", "--model", "stage1"]]


def test_a_command_line_without_the_separator_is_refused(variants, capsys):
    with pytest.raises(SystemExit):
        variants.main(["--max-side", "4", "train"])
    assert "after `--`" in capsys.readouterr().err

"""export/experiments/cam_probe.py: its x0 errors show which inputs a stage-2 model uses."""

from __future__ import annotations

import pytest
import torch
from conftest import load_experiment

from st2v_export.toy.diffusion import add_noise, v_target
from st2v_export.toy.preset import toy_preset
from st2v_export.toy.video_eval import heldout_clips
from st2v_export.toy.video_tasks import Stage2Task


@pytest.fixture(scope="module")
def cam_probe():
    return load_experiment("cam_probe")


def test_x0_from_v_inverts_the_training_target(cam_probe):
    x0, noise = torch.randn(2, 4, 16, 8, 8), torch.randn(2, 4, 16, 8, 8)
    for t in (0, 500, 999):
        steps = torch.full((2,), t)
        recovered = cam_probe.x0_from_v(add_noise(x0, noise, steps), v_target(x0, noise, steps), t)
        assert torch.allclose(recovered, x0, atol=1e-4)


def test_the_probe_sees_the_cam_only_once_it_contributes(cam_probe, toy_video_runs):
    task = Stage2Task(toy_preset(), 0, toy_video_runs)
    for module in task.modules().values():
        module.eval()
    clips = heldout_clips(2, 16, task.size, anchor=True)

    # As initialised, stage 2 is the stage-1 UNet: the condition frames change nothing, the
    # caption does.
    [fresh] = cam_probe.probe(task, clips, [500])
    assert fresh["other frames"] == fresh["true"]
    assert fresh["no caption"] != fresh["true"]
    assert fresh["latent_variance"] > 0

    # The layers that start at zero so that stage 2 starts as stage 1, given weights (E_cond's
    # output large: a one-step run's features are small): now the CAM's features reach the
    # UNet, with the caption and without.
    torch.manual_seed(0)
    mergers = [*task.unet.cross_attention_merger_down_blocks,
               task.unet.cross_attention_merger_mid_block]
    with torch.no_grad():
        task.cam.controlnet_cond_embedding.conv_out.weight.normal_(std=30.0)
        for merger in mergers:
            merger.temporal_transformer.proj_out.weight.normal_(std=1.0)
    [trained] = cam_probe.probe(task, clips, [500])
    for frames_swapped, own_frames in (("other frames", "true"), ("neither", "no caption")):
        for part in ("cond", "new"):
            assert abs(trained[frames_swapped][part] - trained[own_frames][part]) > 1e-5

"""export/experiments/stage1_sampler.py: the settings' model sets (no engine run)."""

from __future__ import annotations

import json

import pytest
from conftest import load_experiment


@pytest.fixture(scope="module")
def sampler():
    return load_experiment("stage1_sampler")


def test_a_setting_is_stage_ones_sampler_and_guidance(sampler):
    assert sampler.parse_setting("ddim:4.5") == {"name": "ddim, guidance 4.5", "sampler": "ddim",
                                                 "guidance": 4.5}
    with pytest.raises(ValueError, match="sampler must be one of"):
        sampler.parse_setting("euler:3")


def test_ddim_takes_stage_twos_scheduler_and_leaves_the_base_set_alone(sampler, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "stage1_unet.onnx").write_text("base unet")
    dpm = {"type": "dpmsolver_multistep", "config": {"solver_order": 2}}
    ddim = {"type": "ddim", "config": {"timestep_spacing": "trailing"}}
    pipeline = {"stage1": {"scheduler": dpm, "guidance_scale": 3.0},
                "stage2": {"scheduler": ddim, "eta": 1.0, "guidance_scale": 3.0}}
    (base / "manifest.json").write_text(json.dumps({"graphs": {}, "pipeline": pipeline}))
    before = (base / "manifest.json").read_text()

    out = sampler.sampler_set(base, sampler.parse_setting("ddim:6"), tmp_path / "ddim")
    changed = json.loads((out / "manifest.json").read_text())["pipeline"]
    assert changed["stage1"] == {"scheduler": ddim, "guidance_scale": 6.0}
    assert changed["stage2"] == pipeline["stage2"]
    assert (out / "stage1_unet.onnx").read_text() == "base unet"
    assert (base / "manifest.json").read_text() == before

    out = sampler.sampler_set(base, sampler.parse_setting("dpm:2"), tmp_path / "dpm")
    stage1 = json.loads((out / "manifest.json").read_text())["pipeline"]["stage1"]
    assert stage1 == {"scheduler": dpm, "guidance_scale": 2.0}

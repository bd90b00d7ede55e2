"""export/experiments/stage2_sampler.py: the settings' model sets (no engine run)."""

from __future__ import annotations

import json

import pytest
from conftest import load_experiment


@pytest.fixture(scope="module")
def sampler():
    return load_experiment("stage2_sampler")


def test_a_setting_is_stage_twos_eta_and_guidance(sampler):
    assert sampler.parse_setting("0.5:1.5") == {"name": "eta 0.5, guidance 1.5", "eta": 0.5,
                                                "guidance": 1.5}
    with pytest.raises(ValueError):
        sampler.parse_setting("1")


def test_a_setting_set_changes_stage_two_only_and_leaves_the_base_set_alone(sampler, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "unet.onnx").write_text("base unet")
    pipeline = {"stage2": {"eta": 1.0, "guidance_scale": 3.0, "num_inference_steps": 50},
                "stage3": {"guidance_scale": 3.0}}
    (base / "manifest.json").write_text(json.dumps({"graphs": {}, "pipeline": pipeline}))
    before = (base / "manifest.json").read_text()

    out = sampler.sampler_set(base, sampler.parse_setting("0:5"), tmp_path / "set")

    changed = json.loads((out / "manifest.json").read_text())["pipeline"]
    assert changed["stage2"] == {"eta": 0.0, "guidance_scale": 5.0, "num_inference_steps": 50}
    assert changed["stage3"] == pipeline["stage3"]
    assert (out / "unet.onnx").read_text() == "base unet"
    assert (base / "manifest.json").read_text() == before
    # A second run of the same setting starts from a clean directory.
    assert sampler.sampler_set(base, sampler.parse_setting("1:3"), tmp_path / "set") == out
    assert json.loads((out / "manifest.json").read_text())["pipeline"]["stage2"]["eta"] == 1.0


def test_split_train_draws_the_protocols_clips_from_captions_the_models_trained_on():
    from st2v_export.toy import world
    from st2v_export.toy.ablation import experiment_parser, protocol_clips

    parser = experiment_parser("", "steps")
    assert parser.parse_args(["--out", "o"]).split == "heldout"
    assert parser.parse_args(["--out", "o", "--split", "train"]).split == "train"
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "o", "--split", "test"])
    heldout, train = protocol_clips(4), protocol_clips(4, "train")
    assert all(world.is_heldout(c["spec"]) for c in heldout)
    assert not any(world.is_heldout(c["spec"]) for c in train)
    assert [c["caption"] for c in protocol_clips(4, "heldout")] == [c["caption"] for c in heldout]

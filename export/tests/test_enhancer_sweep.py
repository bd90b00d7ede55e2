"""export/experiments/enhancer_sweep.py: the settings' model sets (no engine run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_experiment


@pytest.fixture(scope="module")
def sweep():
    return load_experiment("enhancer_sweep")


def model_set(root: Path, tag: str) -> Path:
    root.mkdir()
    graphs = {role: {"file": f"{role}.onnx", "sha256": f"{tag}-{role}"}
              for role in ("unet", "enhancer_unet")}
    for graph in graphs.values():
        (root / graph["file"]).write_text(f"{tag} {graph['file']}")
    stage3 = {"noise_timestep": 300, "guidance_scale": 3.0,
              "scheduler": {"config": {"t_max": 300}}}
    (root / "manifest.json").write_text(json.dumps({"graphs": graphs,
                                                    "pipeline": {"stage3": stage3}}))
    return root


def test_a_setting_names_its_start_guidance_and_optional_enhancer_set(sweep):
    assert sweep.parse_setting("a:200:1.5") == {"name": "a", "t": 200, "guidance": 1.5,
                                                "enhancer": None}
    assert sweep.parse_setting("b:300:3:sets/new")["enhancer"] == Path("sets/new")


def test_a_setting_set_takes_the_other_enhancer_and_leaves_the_base_set_alone(sweep, tmp_path):
    base, other = model_set(tmp_path / "base", "base"), model_set(tmp_path / "other", "other")
    before = (base / "manifest.json").read_text()
    out = sweep.setting_set(base, sweep.parse_setting(f"x:200:1.5:{other}"), tmp_path / "x")

    manifest = json.loads((out / "manifest.json").read_text())
    stage3 = manifest["pipeline"]["stage3"]
    assert (stage3["noise_timestep"], stage3["scheduler"]["config"]["t_max"]) == (200, 200)
    assert stage3["guidance_scale"] == 1.5
    assert (out / "enhancer_unet.onnx").read_text() == "other enhancer_unet.onnx"
    assert manifest["graphs"]["enhancer_unet"]["sha256"] == "other-enhancer_unet"
    assert (out / "unet.onnx").read_text() == "base unet.onnx"
    assert manifest["graphs"]["unet"]["sha256"] == "base-unet"
    assert (base / "manifest.json").read_text() == before
    assert (base / "enhancer_unet.onnx").read_text() == "base enhancer_unet.onnx"


def test_a_setting_without_an_enhancer_set_keeps_the_base_graphs(sweep, tmp_path):
    base = model_set(tmp_path / "base", "base")
    out = sweep.setting_set(base, sweep.parse_setting("y:250:3"), tmp_path / "y")
    assert (out / "enhancer_unet.onnx").read_text() == "base enhancer_unet.onnx"
    assert json.loads((out / "manifest.json").read_text())["pipeline"]["stage3"][
        "noise_timestep"] == 250

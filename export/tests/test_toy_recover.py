"""Training checkpoints recovered from the committed toy set (`toy recover`): each module
reproduces its shipped graph, re-exporting them gives the shipped weights, and they start new
runs (`--init`, `--runs`) but are never resumed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from st2v_export.components import Components
from st2v_export.presets import load_preset_file
from st2v_export.toy.__main__ import main as toy_main
from st2v_export.toy.export import export_toy_set
from st2v_export.toy.preset import toy_preset
from st2v_export.toy.recover import (
    RUNS,
    Fingerprints,
    _inverse_silu,
    _silu,
    recover_runs,
)
from st2v_export.toy.runfiles import read_checkpoint
from st2v_export.toy.task import TrainError
from st2v_export.toy.train import TrainConfig, train

TOY_SET = Path(__file__).resolve().parents[2] / "models" / "toy"
DEEP_DECODER = Path(__file__).resolve().parents[1] / "experiments" / "deep_decoder_preset.json"
QUIET = lambda _line: None  # noqa: E731


@pytest.fixture(scope="module")
def recovered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("recovered")
    lines: list[str] = []
    written = recover_runs(TOY_SET, out, log=lines.append)
    assert sorted(written) == sorted(layout.model for layout in RUNS)
    # every graph was checked against the shipped one (check_parity raises above tolerance)
    checked = [line for line in lines if "recovered, max abs err" in line]
    assert len(checked) == sum(len(layout.graphs) for layout in RUNS)
    return out


def _initializers(path: Path) -> list[np.ndarray]:
    model = onnx.load(str(path))
    return [numpy_helper.to_array(tensor) for tensor in model.graph.initializer]


def test_fingerprints_are_found_through_transposes_and_slices_but_not_in_constants():
    fingerprints = Fingerprints()
    module = torch.nn.Linear(3, 4)
    fingerprints.load_into(module, "layer", None)
    weight = module.weight.detach().numpy()
    assert len({float(v) for v in weight.ravel()}) == weight.size
    found = fingerprints.locate(weight.T[1:])  # a slice of the transposed weight
    assert [(component, key) for component, key, _, _ in found] == [("layer", "weight")]
    _, _, indices, positions = found[0]
    np.testing.assert_array_equal(weight.ravel()[indices], weight.T[1:].ravel()[positions])
    assert fingerprints.locate(np.array([1.0, 0.5], np.float32)) is None
    mixed = np.concatenate([weight.ravel()[:2], [1e-5]]).astype(np.float32)
    assert fingerprints.locate(mixed) is None


def test_the_folded_apm_gates_are_inverted_on_silus_increasing_branch():
    for alpha in (-0.9, -0.02, 0.0, 0.003, 0.7, 2.5):
        assert _inverse_silu(float(_silu(np.float64(alpha)))) == pytest.approx(alpha, abs=1e-9)


def test_recovered_modules_are_the_trained_ones(recovered):
    stage1 = read_checkpoint(recovered / "stage1")
    seeded = Components(toy_preset(), 0, None).stage1_unet.state_dict()
    trained = stage1["modules"]["unet"]
    assert trained.keys() == seeded.keys()
    assert all(not torch.equal(trained[k], seeded[k]) for k in trained if k.endswith(".weight"))
    stage2 = read_checkpoint(recovered / "stage2")
    gates = [v for k, v in stage2["modules"]["unet"].items() if k.endswith(".alpha")]
    assert gates and all(v.item() != 0.0 for v in gates)  # trained away from their zero init
    vae = read_checkpoint(recovered / "vae")
    assert vae["optimizer"] is None and "recovered_from" in vae["extras"]


def test_reexporting_recovered_runs_gives_the_shipped_weights(recovered, tmp_path):
    roles = ["stage1_unet", "vae_decoder", "text_encoder", "enhancer_unet",
             "enhancer_text_encoder", "enhancer_vae_decoder"]
    export_toy_set(recovered, tmp_path / "set", log=QUIET, roles=roles)
    for role in roles:
        ours = _initializers(tmp_path / "set" / f"{role}.onnx")
        shipped = _initializers(TOY_SET / f"{role}.onnx")
        assert len(ours) == len(shipped), role
        for mine, theirs in zip(ours, shipped, strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6, err_msg=role)


def test_a_deeper_decoder_trains_and_exports_beside_the_shipped_encoder(recovered, tmp_path):
    """TRAINING.md's deeper-decoder experiment: `train --preset-file`, `export --preset-file`."""
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "vae").symlink_to(recovered / "vae")
    preset = load_preset_file(DEEP_DECODER)
    train(TrainConfig("vae_decoder", 1, runs / "vae_decoder", batch=2, eval_frames=2,
                      preset=preset, runs=runs), log=QUIET)
    with pytest.raises(SystemExit, match="cannot read the preset file"):
        toy_main(["export", "--runs", str(runs), "--out", str(tmp_path / "set"),
                  "--preset-file", str(tmp_path / "missing.json")])
    export_toy_set(runs, tmp_path / "set", log=QUIET, roles=["vae_encoder", "vae_decoder"],
                   preset=preset)
    # The recovered run's latent statistics carry over exactly: the latents the UNets know.
    ours = _initializers(tmp_path / "set" / "vae_encoder.onnx")
    shipped = _initializers(TOY_SET / "vae_encoder.onnx")
    for mine, theirs in zip(ours, shipped, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6)
    decoder = _initializers(tmp_path / "set" / "vae_decoder.onnx")
    assert sum(w.size for w in decoder) > sum(w.size for w in _initializers(
        TOY_SET / "vae_decoder.onnx"))


def test_recovered_runs_start_new_runs_and_are_never_resumed(recovered, tmp_path):
    config = TrainConfig(model="stage1", steps=1, out=tmp_path / "stage1", runs=recovered,
                         init=recovered / "stage1", eval_frames=1)
    metrics = train(config, log=QUIET)
    assert metrics["videos"] == 1
    payload = read_checkpoint(tmp_path / "stage1")
    assert "recovered" in payload["config"]["init"]
    # The new run's lineage reaches the set's own stage-1 run, as its manifest records it.
    shipped = json.loads((TOY_SET / "manifest.json").read_text())["provenance"]["training"]
    lineage = [(a["run"], a["step"]) for a in payload["config"]["ancestry"]]
    assert lineage[:2] == [(str(recovered / "stage1"), 0),
                           (f"{TOY_SET} (stage1)", shipped["runs"]["stage1"]["step"])]
    resumed = TrainConfig(model="stage1", steps=2, out=recovered / "stage1", runs=recovered,
                          resume=True)
    with pytest.raises(TrainError, match="--init"):
        train(resumed, log=QUIET)


def test_the_cli_refuses_other_sets_and_existing_runs(recovered, tmp_path):
    with pytest.raises(SystemExit, match="already holds runs"):
        toy_main(["recover", "--model-set", str(TOY_SET), "--out", str(recovered)])
    tiny = TOY_SET.parent / "tiny"
    with pytest.raises(SystemExit, match="preset .tiny."):
        toy_main(["recover", "--model-set", str(tiny), "--out", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()

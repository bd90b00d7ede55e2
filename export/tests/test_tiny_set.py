"""The committed tiny model set (models/tiny): manifest against the schema and roles.json, file
hashes, parity of every stage-1/2 graph with the PyTorch modules rebuilt from the recorded seed,
and a re-export that reproduces the committed graphs' outputs."""

from __future__ import annotations

import hashlib
import json

import jsonschema
import numpy as np
import onnxruntime as ort
import pytest

from conftest import REPO_ROOT, TINY_SET
from st2v_export.graphs import STAGE2_ROLES, Stage2Graphs
from st2v_export.manifest import validate_manifest
from st2v_export.model_set import export_model_set
from st2v_export.onnx_export import export_graph, inputs_at_batch, run_torch
from st2v_export.presets import TINY
from st2v_export.roles import load_roles

SCHEMA = json.loads((REPO_ROOT / "models" / "manifest.schema.json").read_text())
PARITY_TOLERANCE = 1e-4


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, inputs: dict) -> list[np.ndarray]:
    return session.run(None, {name: tensor.numpy() for name, tensor in inputs.items()})


@pytest.fixture(scope="module")
def graphs(tiny_manifest) -> Stage2Graphs:
    return Stage2Graphs(TINY, tiny_manifest["provenance"]["seed"], weights=None)


def test_manifest_validates_against_the_schema(tiny_manifest):
    jsonschema.validate(tiny_manifest, SCHEMA)
    assert tiny_manifest["preset"] == "tiny"
    assert "onnxsim" in tiny_manifest["provenance"]["libraries"]


def test_manifest_has_every_role_with_its_interface(tiny_manifest):
    roles = load_roles()
    assert set(tiny_manifest["graphs"]) == set(roles)
    for role, interface in roles.items():
        entry = tiny_manifest["graphs"][role]
        for declared, tensors in ((interface.inputs, entry["inputs"]), (interface.outputs, entry["outputs"])):
            assert [(t["name"], t["dtype"], len(t["shape"])) for t in tensors] == [
                (d.name, d.dtype, d.rank) for d in declared
            ], role


def test_stage2_batch_axes_are_named(tiny_manifest):
    graphs = tiny_manifest["graphs"]
    assert graphs["unet"]["inputs"][0]["shape"] == ["batch", 4, 16, 8, 8]
    assert graphs["unet"]["inputs"][2]["shape"] == ["batch", 93, 16]
    assert graphs["unet"]["inputs"][3]["shape"][0] == "batch_cond_frames"
    assert graphs["cam"]["inputs"][3]["shape"] == [8, 8, 8, 8]
    assert graphs["cam"]["outputs"][-1]["shape"][0] == "batch_cond_frames"
    assert graphs["vae_decoder"]["outputs"][0]["shape"] == ["frames", 3, 64, 64]
    assert graphs["text_encoder"]["outputs"][0]["shape"] == ["batch", 77, 16]


def test_files_match_their_hashes(tiny_manifest):
    for role, entry in tiny_manifest["graphs"].items():
        digest = hashlib.sha256((TINY_SET / entry["file"]).read_bytes()).hexdigest()
        assert digest == entry["sha256"], role
        assert entry["parity"]["max_abs_err"] <= entry["parity"]["tolerance"], role


def test_pipeline_config(tiny_manifest):
    pipeline = tiny_manifest["pipeline"]
    assert pipeline["vae_scaling_factor"] == 0.18215
    assert pipeline["stage1"]["scheduler"]["config"]["algorithm_type"] == "dpmsolver++"
    assert pipeline["stage1"]["num_inference_steps"] == 50
    assert pipeline["stage2"]["scheduler"]["config"]["timestep_spacing"] == "leading"
    assert (pipeline["stage2"]["chunk_frames"], pipeline["stage2"]["cond_frames"]) == (16, 8)
    stage3 = pipeline["stage3"]
    assert (stage3["height"], stage3["width"], stage3["content_height"]) == (80, 128, 80)
    assert stage3["scheduler"]["config"]["t_max"] == 599
    assert tiny_manifest["tokenizers"]["text"]["pad_id"] == 0


@pytest.mark.parametrize("role", STAGE2_ROLES)
def test_committed_graph_matches_pytorch_rebuilt_from_the_seed(graphs, tiny_manifest, role):
    spec = graphs.spec(role)
    session = _session(TINY_SET / tiny_manifest["graphs"][role]["file"])
    batches = [None] + ([3] if spec.parity_batches else [])
    for batch in batches:
        inputs = spec.example_inputs if batch is None else inputs_at_batch(spec, batch, seed=11)
        for expected, actual in zip(run_torch(spec, inputs), _run(session, inputs), strict=True):
            np.testing.assert_allclose(actual, expected, atol=PARITY_TOLERANCE, rtol=0)


REEXPORTED = ["apm_resampler", "cam_cond_encoder", "vae_decoder"]


@pytest.fixture(scope="module")
def reexported(tmp_path_factory, tiny_manifest):
    out = tmp_path_factory.mktemp("tiny")
    seed = tiny_manifest["provenance"]["seed"]
    manifest, reports = export_model_set("tiny", out, seed=seed, roles=REEXPORTED, log=lambda _: None)
    return out, manifest, reports


def test_export_writes_a_valid_manifest_and_files(reexported):
    out, manifest, reports = reexported
    validate_manifest(manifest)
    assert [report.graph.role for report in reports] == REEXPORTED
    for role in REEXPORTED:
        assert (out / manifest["graphs"][role]["file"]).is_file()
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_modelscope.json").is_file()


@pytest.mark.parametrize("role", REEXPORTED)
def test_reexport_reproduces_the_committed_graph(reexported, graphs, tiny_manifest, role):
    out, manifest, _ = reexported
    spec = graphs.spec(role)
    inputs = inputs_at_batch(spec, 2, seed=5) if spec.parity_batches else spec.example_inputs
    fresh = _run(_session(out / manifest["graphs"][role]["file"]), inputs)
    committed = _run(_session(TINY_SET / tiny_manifest["graphs"][role]["file"]), inputs)
    for new, old in zip(fresh, committed, strict=True):
        np.testing.assert_allclose(new, old, atol=1e-6, rtol=0)


def test_external_data_is_written_and_hashed(tmp_path, graphs):
    exported = export_graph(graphs.spec("apm_resampler"), tmp_path, force_external_data=True)
    assert exported.external_data[0]["file"] == "apm_resampler.onnx.data"
    data = (tmp_path / "apm_resampler.onnx.data").read_bytes()
    assert hashlib.sha256(data).hexdigest() == exported.external_data[0]["sha256"]
    assert (tmp_path / "apm_resampler.onnx").stat().st_size < len(data)

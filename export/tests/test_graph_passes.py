"""The graph passes between torch.onnx.export and the parity check: simplification with symbolic
shape annotation (st2v_export/simplify.py) and the fp16 variant (st2v_export/fp16.py)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from st2v_export.fp16 import convert_to_fp16
from st2v_export.graphs import Stage2Graphs
from st2v_export.onnx_export import (
    FP16_RELATIVE_TOLERANCE,
    ExportOptions,
    export_graph,
    inputs_at_batch,
    run_torch,
)
from st2v_export.presets import TINY


@pytest.fixture(scope="module")
def graphs() -> Stage2Graphs:
    return Stage2Graphs(TINY, 0, weights=None)


def _run(path, inputs: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: tensor.numpy() for name, tensor in inputs.items()})


def _unknown_dims(model: onnx.ModelProto) -> int:
    return sum(
        1
        for value in model.graph.value_info
        for dim in value.type.tensor_type.shape.dim
        if not dim.dim_param and not dim.HasField("dim_value")
    )


def test_simplified_graph_is_smaller_fully_annotated_and_equivalent(tmp_path, graphs):
    spec = graphs.spec("text_encoder")
    traced = export_graph(spec, tmp_path / "traced", options=ExportOptions(simplify=False))
    simple = export_graph(spec, tmp_path / "simple")
    traced_model = onnx.load(str(tmp_path / "traced" / traced.file))
    simple_model = onnx.load(str(tmp_path / "simple" / simple.file))
    assert len(simple_model.graph.node) < len(traced_model.graph.node)
    assert simple_model.graph.value_info and _unknown_dims(simple_model) == 0
    assert (simple.inputs, simple.outputs) == (traced.inputs, traced.outputs)
    inputs = inputs_at_batch(spec, 3, seed=7)
    before = _run(tmp_path / "traced" / traced.file, inputs)
    after = _run(tmp_path / "simple" / simple.file, inputs)
    for old, new in zip(before, after, strict=True):
        np.testing.assert_allclose(new, old, atol=1e-5, rtol=0)


@pytest.mark.parametrize("role", ["vae_decoder", "text_encoder"])
def test_fp16_graph_keeps_float32_io_and_matches_pytorch(tmp_path, graphs, role):
    spec = graphs.spec(role)
    exported = export_graph(spec, tmp_path, options=ExportOptions(precision="fp16"))
    assert exported.precision == "fp16"
    assert {t["dtype"] for t in exported.inputs + exported.outputs} <= {"float32", "int64"}
    model = onnx.load(str(tmp_path / exported.file))
    weight_types = {tensor.data_type for tensor in model.graph.initializer}
    assert TensorProto.FLOAT16 in weight_types
    inputs = inputs_at_batch(spec, 3, seed=9)
    expected = run_torch(spec, inputs)
    scale = max(float(np.abs(output).max()) for output in expected)
    for reference, actual in zip(expected, _run(tmp_path / exported.file, inputs), strict=True):
        assert actual.dtype == np.float32
        error = float(np.abs(actual - reference).max())
        assert error <= FP16_RELATIVE_TOLERANCE * scale
        # The variant really computes in float16: it is not bit-identical to fp32.
        assert error > 1e-6


def _timestep_graph() -> onnx.ModelProto:
    """timestep (int64) -> float -> * 1000 -> Sin -> MatMul(W) -> LayerNorm -> out."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel())
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [1], [1000.0])
    gamma = helper.make_tensor("gamma", TensorProto.FLOAT, [4], [1.0] * 4)
    nodes = [
        helper.make_node("Cast", ["t"], ["tf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["tf", "scale"], ["arg"]),
        helper.make_node("Sin", ["arg"], ["emb"]),
        helper.make_node("MatMul", ["emb", "w"], ["proj"]),
        helper.make_node("LayerNormalization", ["proj", "gamma"], ["out"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "timestep",
        [helper.make_tensor_value_info("t", TensorProto.INT64, ["batch", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4])],
        [weight, scale, gamma],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_fp16_keeps_the_sinusoid_argument_and_norms_in_float32():
    model = _timestep_graph()
    convert_to_fp16(model)
    onnx.checker.check_model(model)
    types = {tensor.name: tensor.data_type for tensor in model.graph.initializer}
    assert types == {"w": TensorProto.FLOAT16, "scale": TensorProto.FLOAT, "gamma": TensorProto.FLOAT}
    feeds = {"t": np.array([[1, 250, 999, 517]], dtype=np.int64)}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, feeds)
    fp32 = _timestep_graph().SerializeToString()
    (expected,) = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"]).run(None, feeds)
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, atol=1e-2, rtol=0)

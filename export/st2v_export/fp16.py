"""Float16 variant of an fp32 graph: float16 weights and compute, precision-sensitive ops in
float32, float32 graph inputs and outputs (the Rust engine refuses float16 I/O).

The mixed-precision recipe of onnxconverter-common's `convert_float_to_float16` (keep_io_types
and an op block list), written as one pass over the topologically sorted nodes: that library
mistyped Cast outputs on our graphs and takes minutes on a 5k-node graph. Casts go only where a
tensor's float type differs from what its consumer needs; weights used only in float16 are
stored as float16.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from .simplify import weightless_skeleton

FP32_OPS = frozenset(
    {
        # Normalisations, softmax and their decomposed parts: reductions lose range in float16.
        "LayerNormalization", "InstanceNormalization", "GroupNormalization", "BatchNormalization",
        "Softmax", "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Reciprocal", "Exp", "Log",
        # Sinusoidal timestep embeddings: arguments up to ~1000 need float32 resolution.
        "Sin", "Cos",
        # Outputs typed by an attribute, not by a float input.
        "Cast", "Constant", "ConstantOfShape", "Range", "EyeLike",
        "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
    }
)
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
"""Read only their input's shape: any type will do and no Cast is needed."""
FP32_INPUT_SLOTS = {"Resize": {1, 2}}
"""Inputs fixed to float32 by the operator's type constraints (roi, scales)."""


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(weightless_skeleton(model))
    graph = inferred.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        types[value.name] = value.type.tensor_type.elem_type
    return types


def _producers(graph: onnx.GraphProto) -> dict[str, int]:
    return {output: index for index, node in enumerate(graph.node) for output in node.output}


def _fp32_nodes(graph: onnx.GraphProto) -> set[int]:
    """Block-listed ops, ops of other domains (contrib kernels), and everything feeding a Sin or
    Cos (the timestep scaling), stopping at shape-only reads. By node index: protobuf wrappers
    have no stable identity."""
    nodes = graph.node
    producers = _producers(graph)
    keep = {i for i, n in enumerate(nodes) if n.op_type in FP32_OPS or n.domain not in ("", "ai.onnx")}
    stack = [i for i, n in enumerate(nodes) if n.op_type in ("Sin", "Cos")]
    while stack:
        for name in nodes[stack.pop()].input:
            producer = producers.get(name)
            if producer is None or nodes[producer].op_type in SHAPE_ONLY_OPS or producer in keep:
                continue
            keep.add(producer)
            stack.append(producer)
    return keep


def _wanted_type(node: onnx.NodeProto, index: int, slot: int, keep: set[int]) -> int:
    if index in keep or slot in FP32_INPUT_SLOTS.get(node.op_type, ()):
        return TensorProto.FLOAT
    return TensorProto.FLOAT16


def _float_inputs(node: onnx.NodeProto, types: dict[str, int]):
    if node.op_type in SHAPE_ONLY_OPS:
        return
    for slot, name in enumerate(node.input):
        if name and types.get(name) in (TensorProto.FLOAT, TensorProto.FLOAT16):
            yield slot, name


def _convert_weights(graph: onnx.GraphProto, types: dict[str, int], keep: set[int]) -> None:
    """Stores float32 initializers as float16 when every consumer computes in float16."""
    wanted = defaultdict(set)
    for index, node in enumerate(graph.node):
        for slot, name in _float_inputs(node, types):
            wanted[name].add(_wanted_type(node, index, slot, keep))
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT and wanted[tensor.name] == {TensorProto.FLOAT16}:
            values = np.clip(numpy_helper.to_array(tensor), -65504.0, 65504.0).astype(np.float16)
            graph.initializer[index].CopyFrom(numpy_helper.from_array(values, tensor.name))
            types[tensor.name] = TensorProto.FLOAT16


class _CastInserter:
    def __init__(self, types: dict[str, int]):
        self.types = types
        self.casts: dict[tuple[str, int], str] = {}
        self.nodes: list[onnx.NodeProto] = []

    def cast(self, name: str, to: int) -> str:
        key = (name, to)
        if key not in self.casts:
            suffix = "fp16" if to == TensorProto.FLOAT16 else "fp32"
            output = f"{name}/to_{suffix}"
            self.nodes.append(onnx.helper.make_node("Cast", [name], [output], to=to))
            self.types[output] = to
            self.casts[key] = output
        return self.casts[key]


def convert_to_fp16(model: onnx.ModelProto) -> None:
    """Converts in place; value_info is dropped (shapes are re-annotated afterwards)."""
    graph = model.graph
    types = _elem_types(model)
    keep = _fp32_nodes(graph)
    _convert_weights(graph, types, keep)
    outputs = {value.name for value in graph.output}
    inserter = _CastInserter(types)
    renamed: dict[str, str] = {}
    for index, node in enumerate(list(graph.node)):
        for slot, name in _float_inputs(node, types):
            source = renamed.get(name, name)
            wanted = _wanted_type(node, index, slot, keep)
            node.input[slot] = source if types[source] == wanted else inserter.cast(source, wanted)
        inserter.nodes.append(node)
        if index in keep:
            continue
        for index, name in enumerate(node.output):
            if types.get(name) != TensorProto.FLOAT:
                continue
            if name in outputs:
                renamed[name] = node.output[index] = f"{name}/fp16"
            types[renamed.get(name, name)] = TensorProto.FLOAT16
    for name, half in renamed.items():
        inserter.nodes.append(onnx.helper.make_node("Cast", [half], [name], to=TensorProto.FLOAT))
    del graph.node[:]
    graph.node.extend(inserter.nodes)
    del graph.value_info[:]

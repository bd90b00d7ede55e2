"""Graph clean-up between `torch.onnx.export` and the parity check (so parity covers the shipped file).

1. onnxsim (https://github.com/daquexian/onnx-simplifier): folds the exporter's shape arithmetic,
   fuses and removes dead nodes. With a dynamic batch the TorchScript exporter emits ~13k nodes
   for the tiny stage-2 UNet (4k Constant, 1.5k Unsqueeze, 0.8k Shape); onnxsim keeps about a third.
2. Symbolic shape annotation (onnxruntime's `symbolic_shape_infer`): every intermediate tensor gets
   a shape in terms of the batch axis. Without it, onnxruntime's memory-reuse planner sees unknown
   dims, can match no freed buffer and scans an ever-growing free list: session creation of the
   simplified tiny UNet takes seconds instead of about one.

Both leave plain ONNX (opset, ops and I/O unchanged), portable to fp16 and TensorRT, unlike
onnxruntime's offline-optimised models. Large graphs go through onnxsim's file-based path and are
annotated on a weightless skeleton, so the 2 GB protobuf limit never applies.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxsim
from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

INLINE_TENSOR_BYTES = 1 << 20
"""Initializers up to this size keep their values in the skeleton: shape constants, and small
float tensors whose values the inference tool propagates (e.g. position embeddings). Larger
ones are weights it only needs the dims of."""


class SimplificationError(RuntimeError):
    def __init__(self, what: str, detail: str):
        super().__init__(f"graph simplification failed ({what}): {detail}")


def simplify_file(source: Path, target: Path) -> None:
    """onnxsim from file to file (its path-based entry point also handles external data)."""
    _, check_ok = onnxsim.simplify(
        str(source), check_n=0, perform_optimization=True, output_path=str(target)
    )
    if not check_ok:
        raise SimplificationError("onnxsim", f"the simplified model of {source.name} failed its check")


def _skeleton_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    inline = tensor.data_location != onnx.TensorProto.EXTERNAL
    if inline and tensor.ByteSize() <= INLINE_TENSOR_BYTES:
        return tensor
    return onnx.TensorProto(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)


def weightless_skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with only the small initializers' values: shape inference needs no weights."""
    graph = onnx.helper.make_graph(
        list(model.graph.node),
        model.graph.name,
        list(model.graph.input),
        list(model.graph.output),
        [_skeleton_tensor(tensor) for tensor in model.graph.initializer],
    )
    return onnx.helper.make_model(
        graph, opset_imports=list(model.opset_import), ir_version=model.ir_version
    )


def annotate_shapes(model: onnx.ModelProto) -> None:
    """Replaces the intermediate value_info with symbolic shapes (in place). `auto_merge` unifies
    the exporter's generated axis names with the named batch axes where broadcasting proves them
    equal; the parity check at several batch sizes then verifies the graph still runs."""
    try:
        annotated = SymbolicShapeInference.infer_shapes(weightless_skeleton(model), auto_merge=True)
    except Exception as error:  # the tool raises bare Exception on incomplete inference
        raise SimplificationError("symbolic shape inference", str(error)) from error
    del model.graph.value_info[:]
    model.graph.value_info.extend(annotated.graph.value_info)

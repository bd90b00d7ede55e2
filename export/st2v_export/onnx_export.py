"""PyTorch -> ONNX for one GraphSpec, with the onnxruntime-vs-PyTorch parity check.

Uses the TorchScript-based exporter (`dynamo=False`) at opset 17: it traces the diffusers and
open_clip modules as they are and keeps the named batch axes dynamic. The traced graph is then
simplified and shape-annotated (`simplify.py`) unless disabled, and parity is measured on the
file that ships. Graphs with over 1 GB of weights go to a single external-data file next to the
graph.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from .roles import role_interface
from .fp16 import convert_to_fp16
from .simplify import annotate_shapes, simplify_file
from .spec import GraphSpec

OPSET = 17
PRECISIONS = ("fp32", "fp16")
FP16_RELATIVE_TOLERANCE = 1e-2
"""fp16 parity: max abs error relative to the largest reference output magnitude."""
PROTOBUF_LIMIT = 2**31 - 1
_ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.BOOL: "bool",
}
_TORCH_DTYPES = {torch.float32: "float32", torch.int64: "int64"}


class GraphSpecError(ValueError):
    """A GraphSpec disagrees with models/roles.json."""

    def __init__(self, role: str, field_name: str, expected, actual):
        super().__init__(f"graph {role!r}: {field_name}: expected {expected}, got {actual}")


class ParityError(RuntimeError):
    def __init__(self, role: str, batch: int, max_abs: float, tolerance: float):
        super().__init__(
            f"graph {role!r}: onnxruntime differs from PyTorch by {max_abs:.3g} at batch {batch} "
            f"(tolerance {tolerance:.3g})"
        )


@dataclass(frozen=True)
class ExportOptions:
    simplify: bool = True
    """onnxsim plus symbolic shape annotation (simplify.py)."""
    precision: str = "fp32"
    """fp32, or fp16 (fp16.py: float16 compute, float32 norms and I/O)."""

    def libraries(self) -> tuple[str, ...]:
        """Graph-pass libraries to record in the manifest's provenance."""
        return ("onnxsim",) if self.simplify else ()


@dataclass
class Parity:
    max_abs_err: float
    max_rel_err: float
    tolerance: float
    batch_sizes: list[int]


@dataclass
class ExportedGraph:
    role: str
    file: str
    sha256: str
    opset: int
    precision: str
    inputs: list[dict]
    outputs: list[dict]
    parity: Parity
    external_data: list[dict] = field(default_factory=list)
    parameters: int = 0


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_against_role(spec: GraphSpec) -> None:
    interface = role_interface(spec.role)
    names = list(spec.example_inputs)
    if names != interface.input_names:
        raise GraphSpecError(spec.role, "input names", interface.input_names, names)
    for expected, tensor in zip(interface.inputs, spec.example_inputs.values(), strict=True):
        actual = (_TORCH_DTYPES.get(tensor.dtype, str(tensor.dtype)), tensor.ndim)
        if actual != (expected.dtype, expected.rank):
            raise GraphSpecError(
                spec.role, f"input {expected.name} (dtype, rank)", (expected.dtype, expected.rank), actual
            )
    known = set(interface.input_names) | set(interface.output_names)
    unknown = sorted(set(spec.dynamic_axes) - known)
    if unknown:
        raise GraphSpecError(spec.role, "dynamic_axes names", sorted(known), unknown)


def run_torch(spec: GraphSpec, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    with torch.no_grad():
        out = spec.module(*inputs.values())
    outputs = out if isinstance(out, (tuple, list)) else (out,)
    expected = role_interface(spec.role).output_names
    if len(outputs) != len(expected):
        raise GraphSpecError(spec.role, "output count", len(expected), len(outputs))
    return [tensor.detach().numpy() for tensor in outputs]


def _base_batch(spec: GraphSpec) -> int:
    for name, tensor in spec.example_inputs.items():
        for axis in spec.dynamic_axes.get(name, {}):
            return tensor.shape[axis]
    raise GraphSpecError(spec.role, "parity_batches", "a dynamic input axis", "none")


def inputs_at_batch(spec: GraphSpec, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fresh random inputs with every dynamic axis scaled from the example batch to `batch`
    (axis sizes are multiples of the batch, e.g. B*8 for the CAM residuals)."""
    base = _base_batch(spec)
    generator = torch.Generator().manual_seed(seed + batch)
    resized = {}
    for name, tensor in spec.example_inputs.items():
        shape = list(tensor.shape)
        for axis in spec.dynamic_axes.get(name, {}):
            shape[axis] = shape[axis] * batch // base
        if tensor.dtype.is_floating_point:
            resized[name] = torch.randn(shape, generator=generator, dtype=tensor.dtype)
        else:
            high = int(tensor.max()) + 1
            resized[name] = torch.randint(0, high, shape, generator=generator, dtype=tensor.dtype)
    return resized


def _errors(expected: list[np.ndarray], actual: list[np.ndarray]) -> tuple[float, float]:
    max_abs = max_rel = 0.0
    for reference, result in zip(expected, actual, strict=True):
        difference = float(np.abs(reference.astype(np.float64) - result).max(initial=0.0))
        scale = float(np.abs(reference).max(initial=0.0))
        max_abs = max(max_abs, difference)
        max_rel = max(max_rel, difference / scale if scale > 0 else difference)
    return max_abs, max_rel


def fp16_tolerance(spec: GraphSpec, example_outputs: list[np.ndarray]) -> float:
    scale = max(float(np.abs(output).max(initial=0.0)) for output in example_outputs)
    return max(spec.tolerance, FP16_RELATIVE_TOLERANCE * scale)


def check_parity(
    spec: GraphSpec,
    graph_path: Path,
    example_outputs: list[np.ndarray] | None = None,
    tolerance: float | None = None,
) -> Parity:
    """Max abs error (and that error relative to the output's max magnitude) over all outputs,
    at the example batch and every extra parity batch; fails above the tolerance (the spec's
    unless given)."""
    tolerance = spec.tolerance if tolerance is None else tolerance
    session = ort.InferenceSession(str(graph_path), providers=["CPUExecutionProvider"])
    cases = [(None, spec.example_inputs)]
    cases += [(batch, inputs_at_batch(spec, batch)) for batch in spec.parity_batches]
    worst_abs = worst_rel = 0.0
    for batch, inputs in cases:
        reuse = batch is None and example_outputs is not None
        expected = example_outputs if reuse else run_torch(spec, inputs)
        feeds = {name: tensor.numpy() for name, tensor in inputs.items()}
        max_abs, max_rel = _errors(expected, session.run(None, feeds))
        if not max_abs <= tolerance:
            raise ParityError(spec.role, batch or _first_dim(spec), max_abs, tolerance)
        worst_abs, worst_rel = max(worst_abs, max_abs), max(worst_rel, max_rel)
    return Parity(worst_abs, worst_rel, tolerance, list(spec.parity_batches))


def _first_dim(spec: GraphSpec) -> int:
    return next(iter(spec.example_inputs.values())).shape[0]


def _tensor_entries(values: list[onnx.ValueInfoProto]) -> list[dict]:
    entries = []
    for value in values:
        tensor_type = value.type.tensor_type
        shape = [dim.dim_param or dim.dim_value for dim in tensor_type.shape.dim]
        entries.append(
            {"name": value.name, "dtype": _ONNX_DTYPES[tensor_type.elem_type], "shape": shape}
        )
    return entries


def _declare_shape(value: onnx.ValueInfoProto, shape: tuple[int, ...], axes: dict[int, str]) -> None:
    """Names the dynamic axes and fixes every other axis to its traced size (the exporter leaves
    generated symbolic names on outputs whose size it computed from input shapes)."""
    dims = value.type.tensor_type.shape.dim
    del dims[:]
    for axis, size in enumerate(shape):
        dim = dims.add()
        if axis in axes:
            dim.dim_param = axes[axis]
        else:
            dim.dim_value = size


def _declare_io_shapes(model: onnx.ModelProto, spec: GraphSpec, outputs: list[np.ndarray]) -> None:
    shapes = {name: tuple(t.shape) for name, t in spec.example_inputs.items()}
    shapes |= {value.name: out.shape for value, out in zip(model.graph.output, outputs, strict=True)}
    for value in list(model.graph.input) + list(model.graph.output):
        _declare_shape(value, shapes[value.name], spec.dynamic_axes.get(value.name, {}))


def _torch_export(spec: GraphSpec, path: Path, opset: int) -> None:
    interface = role_interface(spec.role)
    with warnings.catch_warnings():
        # Tracer warnings about Python-side shape checks in diffusers: shapes are static per axis.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            spec.module,
            tuple(spec.example_inputs.values()),
            str(path),
            input_names=interface.input_names,
            output_names=interface.output_names,
            dynamic_axes=spec.dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _weight_bytes(model: onnx.ModelProto) -> int:
    """Size of the stored weights (a protobuf over 2 GB cannot even be measured reliably)."""
    return sum(len(tensor.raw_data) for tensor in model.graph.initializer)


def _save(model: onnx.ModelProto, path: Path, external: bool) -> list[dict]:
    """Saves the graph; with `external`, all weights go to one `<file>.data` next to it (used from
    1 GB of weights on, leaving room for the graph itself under the 2 GB protobuf limit)."""
    if not external:
        onnx.save_model(model, str(path))
        return []
    data_name = path.name + ".data"
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data_name
    )
    return [{"file": data_name, "sha256": sha256_of(path.parent / data_name)}]


def shipped_model(
    spec: GraphSpec, scratch: Path, opset: int, options: ExportOptions
) -> onnx.ModelProto:
    """Traced, then simplified, then converted to fp16, then shape-annotated, as `options` say."""
    traced = scratch / "traced.onnx"
    _torch_export(spec, traced, opset)
    if options.simplify:
        simplified = scratch / "simplified.onnx"
        simplify_file(traced, simplified)
        traced = simplified
    model = onnx.load(str(traced), load_external_data=True)
    if options.precision == "fp16":
        convert_to_fp16(model)
    if options.simplify:
        annotate_shapes(model)
    return model


def export_graph(
    spec: GraphSpec,
    out_dir: Path,
    opset: int = OPSET,
    force_external_data: bool = False,
    options: ExportOptions = ExportOptions(),
) -> ExportedGraph:
    """Exports one graph as `options` say, saves it and checks its parity against PyTorch."""
    if options.precision not in PRECISIONS:
        raise GraphSpecError(spec.role, "precision", PRECISIONS, options.precision)
    check_against_role(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.role}.onnx"
    with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
        model = shipped_model(spec, Path(scratch), opset, options)
    example_outputs = run_torch(spec, spec.example_inputs)
    _declare_io_shapes(model, spec, example_outputs)
    external = force_external_data or _weight_bytes(model) > PROTOBUF_LIMIT // 2
    external_data = _save(model, path, external)
    tolerance = fp16_tolerance(spec, example_outputs) if options.precision == "fp16" else None
    parity = check_parity(spec, path, example_outputs, tolerance)
    return ExportedGraph(
        role=spec.role,
        file=path.name,
        sha256=sha256_of(path),
        opset=opset,
        precision=options.precision,
        inputs=_tensor_entries(list(model.graph.input)),
        outputs=_tensor_entries(list(model.graph.output)),
        parity=parity,
        external_data=external_data,
        parameters=sum(p.numel() for p in spec.module.parameters()),
    )

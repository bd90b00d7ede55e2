"""The unit of export: one ONNX graph per role of `models/roles.json`.

Every graph builder (ours and the enhancer's) returns `GraphSpec`s; the exporter turns each
into an ONNX file, checks onnxruntime against PyTorch on the example inputs, and records the
result in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class GraphSpec:
    role: str
    """A key of models/roles.json."""
    module: torch.nn.Module
    """Eval mode; forward(*inputs in roles.json order) -> output tensor or tuple of outputs."""
    example_inputs: dict[str, torch.Tensor]
    """By input name, in roles.json order."""
    dynamic_axes: dict[str, dict[int, str]]
    """By input/output name: axis index -> axis name ("batch", "frames")."""
    tolerance: float = 1e-4
    """Parity tolerance: max abs error between onnxruntime and PyTorch, fp32."""
    parity_batches: list[int] = field(default_factory=list)
    """Extra sizes of the dynamic batch axis at which parity is also checked."""

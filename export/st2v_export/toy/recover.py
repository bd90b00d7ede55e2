"""Training checkpoints recovered from an exported toy set: a new session continues from
`models/toy` (with `train --init`, or as `--runs` of the VAE and CLIP runs) without the run
directories that made it, which are not committed.

  python -m st2v_export.toy recover --model-set models/toy --out RUNS

An exported graph holds every weight of its modules, but not under their names: the exporter
transposes and slices them (a Linear becomes a MatMul with the transposed weight) and onnxsim
renames and folds. So each graph is exported again with fingerprinted weights (every parameter
element gets its own value, (k + 1) * 2^-24 with a pseudo-random sign, exact in float32), through
the same exporter and passes; the constant at the same place in the shipped graph (the same node
input, or the same Constant node) then holds, element by element, the trained values of the
parameters whose fingerprints are found there. A weight the passes folded arithmetically would
not be found (but for FOLDED_SCALARS): every parameter must be covered, and each recovered module
is checked against its shipped graph (onnxruntime on the graph's example inputs, as the export's
parity check).

What it writes (`RUNS/<model>/checkpoint.pt`, the training format with no optimizer state, so
they start runs with `--init` and serve as `--runs`, but cannot be resumed):
- vae: the AutoencoderKL of vae_encoder + vae_decoder, with the latent normalisation already
  folded in (its statistics are recorded as the identity);
- clip: the open_clip text tower of clip_text_encoder and the vision tower of image_encoder;
- stage1: the UNet3D of stage1_unet and the tuned text encoder of text_encoder;
- stage2: the StreamingT2V UNet of unet, the CAM of cam + cam_cond_encoder, the resampler;
- enhancer_vae (folded as vae) and enhancer (its UNet and text tower), when the set has them:
  with these the set exports again whole from new stage-1/2 runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from ..enhancer.configs import config_for
from ..enhancer.graphs import enhancer_graphs
from ..graphs import Stage2Graphs
from ..onnx_export import OPSET, ExportOptions, check_parity, run_torch, shipped_model
from ..presets import VAE_SCALING_FACTOR
from .export import EXPORT_SEED
from .preset import toy_preset
from .runfiles import CHECKPOINT_FORMAT, atomic_save, lineage
from .task import TrainError
from .train import _preset_record

FINGERPRINT_SCALE = 2.0**-24
"""Fingerprints are integers times this: exact in float32 below 2^24 elements in all."""


@dataclass(frozen=True)
class RunLayout:
    """A training run as the trainer writes it: its modules, each the component of one name
    (`Components`) recovered from the graphs that hold it."""

    model: str
    modules: dict[str, str]
    """Module name in the checkpoint -> component name."""
    graphs: tuple[str, ...]
    unread: tuple[str, ...] = ()
    """Prefixes of parameters no graph reads (nor the run's loss): recovered as zeros."""


STAGE_RUNS = (
    RunLayout("vae", {"vae": "vae"}, ("vae_encoder", "vae_decoder")),
    RunLayout("clip", {"text": "clip_text_encoder", "visual": "image_encoder"},
              ("clip_text_encoder", "image_encoder")),
    RunLayout("stage1", {"unet": "stage1_unet", "text": "text_encoder"},
              ("stage1_unet", "text_encoder")),
    RunLayout("stage2", {"unet": "unet", "cam": "cam", "resampler": "apm_resampler"},
              ("unet", "cam", "cam_cond_encoder", "apm_resampler")),
)
ENHANCER_RUNS = (
    RunLayout("enhancer_vae", {"vae": "enhancer_vae"},
              ("enhancer_vae_encoder", "enhancer_vae_decoder")),
    RunLayout("enhancer", {"unet": "enhancer_unet", "text": "enhancer_text_encoder"},
              ("enhancer_text_encoder", "enhancer_unet"),
              # the graph reads the penultimate block's states, as MS-Vid2Vid-XL's encoder
              unread=("text_projection",
                      f"transformer.resblocks.{config_for(toy_preset()).text.layers - 1}.")),
)
RUNS = STAGE_RUNS + ENHANCER_RUNS


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _inverse_silu(y: float) -> float:
    """The x >= -1.278 (SiLU's minimum) with SiLU(x) = y, by bisection."""
    low, high = -1.2784645, max(1.0, abs(y) + 1.0)
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if _silu(np.float64(middle)) < y else (low, middle)
    return (low + high) / 2


FOLDED_SCALARS = {".alpha": (_silu, _inverse_silu)}
"""Scalar parameters the passes fold through a function (the APM gates: onnxsim stores
SiLU(alpha), `modules/apm_mixing.py`): parameter suffix -> (function, its inverse)."""


class Fingerprints:
    """A `WeightSource` look-alike that gives every parameter element of every component it
    builds a distinct value, and finds those values again in exported initializers."""

    def __init__(self):
        self.modules: dict[str, nn.Module] = {}
        self._next = 0
        self._owners: list[tuple[int, str, str]] = []  # (first index, component, parameter)
        self._generator = torch.Generator().manual_seed(0)

    def load_into(self, module: nn.Module, name: str, prefix: str | None) -> None:
        self.modules[name] = module
        with torch.no_grad():
            for key, parameter in module.named_parameters():
                count = parameter.numel()
                self._owners.append((self._next, name, key))
                values = torch.arange(self._next + 1, self._next + 1 + count, dtype=torch.float64)
                signs = torch.randint(0, 2, (count,), generator=self._generator) * 2 - 1
                parameter.copy_((values * signs * FINGERPRINT_SCALE).view_as(parameter))
                self._next += count
        if self._next >= 2**24:
            raise TrainError("too many parameters to fingerprint exactly in float32")

    def locate(self, values: np.ndarray) -> list[tuple[str, str, np.ndarray]] | None:
        """Where a float initializer's elements come from: (component, parameter, flat indices
        into it, positions in the initializer) for each parameter it holds; None when any
        element is not a fingerprint (a constant of the graph, or folded arithmetic)."""
        flat = values.astype(np.float64).ravel()
        index = np.rint(np.abs(flat) / FINGERPRINT_SCALE) - 1
        exact = (index >= 0) & (index < self._next)
        exact &= (index + 1) * FINGERPRINT_SCALE == np.abs(flat)
        if flat.size == 0 or not exact.all():
            return None
        starts = np.array([owner[0] for owner in self._owners])
        owner = np.searchsorted(starts, index, side="right") - 1
        found = []
        for which in np.unique(owner):
            positions = np.nonzero(owner == which)[0]
            first, component, key = self._owners[which]
            found.append((component, key, (index[positions] - first).astype(np.int64), positions))
        return found

    def locate_folded(self, value: float):
        """(component, parameter, inverse) of a FOLDED_SCALARS parameter whose folded
        fingerprint is `value`, or None."""
        for component, module in self.modules.items():
            for key, parameter in module.named_parameters():
                for suffix, (function, inverse) in FOLDED_SCALARS.items():
                    if not (key.endswith(suffix) and parameter.numel() == 1):
                        continue
                    folded = function(np.float64(parameter.item()))
                    if abs(folded - value) <= 1e-6 * abs(folded):
                        return component, key, inverse
        return None


def _constant_tensors(model: onnx.ModelProto) -> list[tuple[str, int, onnx.TensorProto]]:
    """(op type, node input slot, tensor) for every initializer a node reads and every Constant
    node's value (slot -1: onnxsim stores some folded weights so), in node order: the same
    sequence for two exports of one architecture."""
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            found += [(node.op_type, -1, a.t) for a in node.attribute if a.name == "value"]
        found += [(node.op_type, slot, initializers[name])
                  for slot, name in enumerate(node.input) if name in initializers]
    return found


class Recovery:
    """Parameter values of the components, filled in graph by graph."""

    def __init__(self, fingerprints: Fingerprints):
        self.fingerprints = fingerprints
        self.values = {
            name: {k: np.full(p.numel(), np.nan, np.float32) for k, p in m.named_parameters()}
            for name, m in fingerprints.modules.items()
        }

    def take(self, fingerprinted: onnx.ModelProto, shipped: onnx.ModelProto, role: str) -> None:
        ours, theirs = _constant_tensors(fingerprinted), _constant_tensors(shipped)
        if [(op, slot) for op, slot, _ in ours] != [(op, slot) for op, slot, _ in theirs]:
            raise TrainError(f"{role}: the shipped graph has another structure than this export "
                             "code makes (exported with other library versions?)")
        for (_, _, our_tensor), (_, _, their_tensor) in zip(ours, theirs, strict=True):
            marked = numpy_helper.to_array(our_tensor)
            if marked.dtype != np.float32:
                continue
            if marked.size == 1 and self._take_folded(float(marked.ravel()[0]), their_tensor):
                continue
            sources = self.fingerprints.locate(marked)
            if sources is None or (marked.size == 1 and not self._scalar(sources[0])):
                continue  # a constant of the graph (a scalar may equal a fingerprint by chance)
            trained = numpy_helper.to_array(their_tensor).ravel()
            for component, key, indices, positions in sources:
                self.values[component][key][indices] = trained[positions]

    def _take_folded(self, marked: float, their_tensor: onnx.TensorProto) -> bool:
        folded = self.fingerprints.locate_folded(marked)
        if folded is None:
            return False
        component, key, inverse = folded
        trained = float(numpy_helper.to_array(their_tensor).ravel()[0])
        self.values[component][key][0] = inverse(trained)
        return True

    def _scalar(self, source: tuple) -> bool:
        component, key = source[0], source[1]
        return self.values[component][key].size == 1

    def missing(self, component: str, unread: tuple[str, ...] = ()) -> list[str]:
        """Parameters not (fully) found, but for the `unread` ones, which become zeros."""
        missing = []
        for key, values in self.values[component].items():
            if key.startswith(unread) and np.isnan(values).all():
                values[:] = 0.0
            elif np.isnan(values).any():
                missing.append(key)
        return missing

    def state(self, component: str) -> dict[str, torch.Tensor]:
        module = self.fingerprints.modules[component]
        state = module.state_dict()
        for key, parameter in module.named_parameters():
            state[key] = torch.from_numpy(self.values[component][key]).view_as(parameter).clone()
        return state


def _payload(layout: RunLayout, modules: dict[str, dict], model_set: Path, preset) -> dict:
    extras: dict = {"recovered_from": str(model_set)}
    if layout.model in ("vae", "enhancer_vae"):  # exported with the normalisation folded in
        channels = modules["vae"]["quant_conv.bias"].numel() // 2
        extras["latent_mean"] = torch.zeros(channels)
        extras["latent_std"] = torch.full((channels,), 1 / VAE_SCALING_FACTOR)
    return {
        "format": CHECKPOINT_FORMAT,
        "model": layout.model,
        "step": 0,
        "config": {"model": layout.model, "seed": 0, "batch": 0, "peak_lr": 0.0,
                   "schedule_steps": 0, "init": f"recovered from {model_set}",
                   "ancestry": _set_ancestry(layout, model_set)},
        "preset": _preset_record(preset),
        "modules": modules,
        "optimizer": None,
        "rng": None,
        "extras": extras,
    }


def _set_ancestry(layout: RunLayout, model_set: Path) -> list[dict]:
    """The set's own records (its manifest's training provenance) of the runs behind the
    layout's roles, then their ancestry: a run recovered from the set, and the runs started from
    it, keep the lineage of the set's weights."""
    manifest = json.loads((model_set / "manifest.json").read_text())
    training = manifest["provenance"].get("training", {})
    runs, roles = training.get("runs", {}), training.get("roles", {})
    sources = [roles.get(role, "").split(" step ")[0] for role in layout.modules.values()]
    ancestry: list[dict] = []
    for source in dict.fromkeys([*sources, layout.model]):
        if source in runs:
            ancestry += lineage(f"{model_set} ({source})", runs[source])
    return ancestry


def recover_runs(model_set: Path, out: Path, log=print) -> dict[str, Path]:
    """Writes OUT/<model>/checkpoint.pt for every run of RUNS the set has graphs for (the
    enhancer's are optional); returns model -> directory."""
    _check_model_set(model_set)
    preset = toy_preset()
    written = {}
    groups = [(STAGE_RUNS, lambda f: Stage2Graphs(preset, 0, f).spec)]
    if all((model_set / f"{role}.onnx").is_file() for r in ENHANCER_RUNS for role in r.graphs):
        groups.append((ENHANCER_RUNS, lambda f: _enhancer_specs(preset, f).__getitem__))
    for layouts, spec_of in groups:  # one fingerprint space each: fewer than 2^24 elements
        fingerprints = Fingerprints()
        spec = spec_of(fingerprints)  # builds the fingerprinted components once
        specs = {role: spec(role) for r in layouts for role in r.graphs}
        recovery = _match(specs, model_set, Recovery(fingerprints), log)
        for layout in layouts:
            written[layout.model] = _write_run(layout, recovery, specs, model_set, out, preset,
                                               log)
    return written


def _enhancer_specs(preset, fingerprints: Fingerprints) -> dict:
    specs = enhancer_graphs(preset, EXPORT_SEED, trained=fingerprints)
    return {spec.role: spec for spec in specs}


def _match(specs: dict, model_set: Path, recovery: Recovery, log) -> Recovery:
    with tempfile.TemporaryDirectory() as scratch:
        for role, spec in specs.items():
            log(f"{role}: matching the shipped graph's weights")
            shipped = onnx.load(str(model_set / f"{role}.onnx"))
            ours = shipped_model(spec, Path(scratch), OPSET, ExportOptions())  # as export does
            recovery.take(ours, shipped, role)
    return recovery


def _write_run(layout: RunLayout, recovery: Recovery, specs: dict, model_set: Path, out: Path,
               preset, log) -> Path:
    modules = {}
    for module_name, component in layout.modules.items():
        missing = recovery.missing(component, layout.unread)
        if missing:
            raise TrainError(f"{component}: {len(missing)} parameters are in none of "
                             f"{', '.join(layout.graphs)}: {missing[:4]}")
        modules[module_name] = recovery.state(component)
        recovery.fingerprints.modules[component].load_state_dict(modules[module_name])
    for role in layout.graphs:
        _check(specs[role], model_set / f"{role}.onnx", log)
    directory = out / layout.model
    directory.mkdir(parents=True, exist_ok=True)
    atomic_save(_payload(layout, modules, model_set, preset), directory / "checkpoint.pt")
    log(f"{layout.model}: {directory / 'checkpoint.pt'}")
    return directory


def _check_model_set(model_set: Path) -> None:
    path = model_set / "manifest.json"
    if not path.is_file():
        raise TrainError(f"--model-set {model_set}: no manifest.json (an exported toy set?)")
    name = json.loads(path.read_text()).get("preset")
    if name != toy_preset().name:
        raise TrainError(f"--model-set {model_set}: preset {name!r}, expected "
                         f"{toy_preset().name!r} (only toy sets have toy training runs)")
    missing = [role for layout in STAGE_RUNS for role in layout.graphs
               if not (model_set / f"{role}.onnx").is_file()]
    if missing:
        raise TrainError(f"--model-set {model_set}: no {', '.join(m + '.onnx' for m in missing)}")


def _check(spec, path: Path, log) -> None:
    """The recovered module against the shipped graph, on the graph's example inputs."""
    expected = run_torch(spec, spec.example_inputs)
    parity = check_parity(spec, path, expected, None)
    log(f"{spec.role}: recovered, max abs err {parity.max_abs_err:.1e} against {path.name}")


def add_recover_parser(commands) -> None:
    parser = commands.add_parser("recover", help="training checkpoints from an exported toy set")
    parser.add_argument("--model-set", type=Path, default=Path("models/toy"))
    parser.add_argument("--out", type=Path, required=True, help="the runs directory to write")


def recover_command(args: argparse.Namespace) -> int:
    existing = [layout.model for layout in RUNS
                if (args.out / layout.model / "checkpoint.pt").exists()]
    if existing:
        raise SystemExit(f"error: {args.out} already holds runs {existing}: choose another --out")
    recover_runs(args.model_set, args.out)
    return 0

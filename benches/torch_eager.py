#!/usr/bin/env python3
"""PyTorch eager peer of `st2v bench`: times the forward of each graph role's PyTorch module, as
the exporter builds it (export/st2v_export: the same modules, seeded random weights, the same
wrappers), in eager mode (torch.inference_mode, float32, CPU) at the given input shapes, so the
report can give ONNX Runtime / PyTorch per graph.

Roles are measured one at a time and each module is freed before the next; for presets other
than `tiny` each role runs in its own child process (`--isolate`), so a role that does not fit
in memory (or is killed by the kernel for it) is reported with its error and the others still
run. Before building, the weights' size is measured on the meta device and compared with the
memory available. `--onnx-models DIR` also runs the same inputs through DIR's ONNX graph and
records the largest absolute difference (the eager timing is of the same computation).

Usage and the JSON it writes: benches/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "export"))

import torch  # noqa: E402

STAGE2_COMPONENT = {
    "text_encoder": "text_model",
    "image_encoder": "visual",
    "apm_resampler": "resampler",
    "cam_cond_encoder": "cam",
    "cam": "cam",
    "unet": "streaming_unet",
    "stage1_unet": "stage1_unet",
    "vae_decoder": "vae",
    "vae_encoder": "vae",
}
# Network and seed offset of each enhancer role (st2v_export.enhancer.graphs.random_networks).
ENHANCER_NETWORK = {
    "enhancer_text_encoder": ("text", 0),
    "enhancer_unet": ("unet", 1),
    "enhancer_vae_encoder": ("autoencoder", 2),
    "enhancer_vae_decoder": ("autoencoder", 2),
}
SOT, EOT, VOCAB, TRAIN_TIMESTEPS = 49406, 49407, 49408, 1000
GIB = 1024**3
DTYPES = {"float32": torch.float32, "f32": torch.float32, "int64": torch.int64, "i64": torch.int64}


class RoleError(Exception):
    """A role that cannot be built or run here; the message goes into the report."""


def mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------------------------
# Building the export code's modules


def _enhancer_builder(preset, role: str):
    from st2v_export.enhancer.configs import config_for
    from st2v_export.enhancer.modules import build_autoencoder, build_text_tower, build_unet

    config = config_for(preset)
    network, _ = ENHANCER_NETWORK[role]
    return {
        "text": lambda: build_text_tower(config.text),
        "unet": lambda: build_unet(config.unet),
        "autoencoder": lambda: build_autoencoder(config.vae),
    }[network]


def parameter_count(preset_name: str, role: str) -> int:
    """Parameters of the role's network, counted on the meta device (no memory, no init)."""
    from st2v_export.components import Components
    from st2v_export.presets import resolve_preset

    preset = resolve_preset(preset_name)
    with torch.device("meta"):
        if role in STAGE2_COMPONENT:
            module = getattr(Components(preset, 0, None), STAGE2_COMPONENT[role])
        else:
            module = _enhancer_builder(preset, role)()
        return sum(p.numel() for p in module.parameters())


def build_module(preset_name: str, role: str, seed: int) -> torch.nn.Module:
    """The module the exporter traces for `role` (forward(*inputs in roles.json order))."""
    from st2v_export.presets import resolve_preset

    preset = resolve_preset(preset_name)
    if not preset.seeded_random:
        raise RoleError(f"preset {preset_name!r} needs checkpoints; use tiny or full-random")
    if role in STAGE2_COMPONENT:
        from st2v_export.graphs import Stage2Graphs

        return Stage2Graphs(preset, seed, None).spec(role).module.eval()
    if role in ENHANCER_NETWORK:
        from st2v_export.enhancer.modules import (
            EnhancerTextEncoder,
            EnhancerUnet,
            EnhancerVaeDecoder,
            EnhancerVaeEncoder,
        )
        from st2v_export.enhancer.weights import seeded_network

        _, offset = ENHANCER_NETWORK[role]
        network = seeded_network(_enhancer_builder(preset, role), seed + offset)
        wrapper = {
            "enhancer_text_encoder": EnhancerTextEncoder,
            "enhancer_unet": EnhancerUnet,
            "enhancer_vae_encoder": EnhancerVaeEncoder,
            "enhancer_vae_decoder": EnhancerVaeDecoder,
        }[role]
        return wrapper(network).eval()
    raise RoleError(f"unknown role {role!r}")


# ---------------------------------------------------------------------------------------------
# Inputs


def make_inputs(role: str, shapes: dict, seed: int) -> dict[str, torch.Tensor]:
    """Seeded inputs in roles.json order: token ids like a tokenized prompt, timesteps in
    0..1000, pixels in [-1, 1], everything else standard normal."""
    from st2v_export.roles import role_interface

    interface = role_interface(role)
    missing = [name for name in interface.input_names if name not in shapes]
    if missing:
        raise RoleError(f"--shapes gives no shape for input(s) {missing} of {role}")
    generator = torch.Generator().manual_seed(seed)
    inputs = {}
    for tensor in interface.inputs:
        spec = shapes[tensor.name]
        shape = [int(d) for d in spec["shape"]]
        dtype = DTYPES.get(str(spec.get("dtype", tensor.dtype)).lower())
        if dtype is None or len(shape) != tensor.rank:
            raise RoleError(
                f"{role}.{tensor.name}: expected a rank-{tensor.rank} {tensor.dtype} tensor, "
                f"got shape {shape} dtype {spec.get('dtype')}"
            )
        if dtype == torch.int64 and tensor.name == "input_ids":
            ids = torch.zeros(shape, dtype=torch.int64)
            rows = ids.view(-1, shape[-1])
            for row in rows:
                words = int(torch.randint(1, max(shape[-1] - 2, 2), (1,), generator=generator))
                words = min(words, shape[-1] - 2)
                row[0] = SOT
                row[1 : 1 + words] = torch.randint(1, SOT, (words,), generator=generator)
                row[1 + words] = EOT
            inputs[tensor.name] = ids
        elif dtype == torch.int64:
            inputs[tensor.name] = torch.randint(0, TRAIN_TIMESTEPS, shape, generator=generator)
        elif tensor.name in ("images", "cond_frames"):
            inputs[tensor.name] = torch.rand(shape, generator=generator) * 2.0 - 1.0
        else:
            inputs[tensor.name] = torch.randn(shape, generator=generator)
    return inputs


# ---------------------------------------------------------------------------------------------
# Measuring one role


def _outputs(result) -> list[torch.Tensor]:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def onnx_difference(models: Path, role: str, inputs: dict, outputs: list[torch.Tensor]) -> dict:
    import numpy as np
    import onnxruntime as ort

    manifest = json.loads((models / "manifest.json").read_text())
    entry = manifest["graphs"].get(role)
    if entry is None:
        return {"max_abs_err": None, "note": f"{models} has no {role} graph"}
    session = ort.InferenceSession(str(models / entry["file"]), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: t.numpy() for name, t in inputs.items()})
    err = max(float(np.abs(g - o.numpy()).max()) for g, o in zip(got, outputs, strict=True))
    return {"max_abs_err": err, "models": str(models), "onnx_preset": manifest.get("preset")}


def measure_role(args, role: str, shapes: dict, progress=None) -> dict:
    """Builds, times and frees one role's module; raises RoleError (or anything) on failure.
    `progress(result)` is called after the build and after every timed run."""
    result = {"ms": [], "error": None}
    progress = progress or (lambda _result: None)
    count = parameter_count(args.preset, role)
    weights = count * 4
    result["params"] = count
    available = mem_available()
    if available is not None and weights * 1.15 + 0.5 * GIB > available:
        raise RoleError(
            f"not enough memory to hold {role} of preset {args.preset}: its {count:,} float32 "
            f"weights need {weights / GIB:.1f} GiB (plus activations), "
            f"{available / GIB:.1f} GiB available"
        )
    started = time.perf_counter()
    module = build_module(args.preset, role, args.seed)
    result["build_s"] = time.perf_counter() - started
    progress(result)
    try:
        inputs = make_inputs(role, shapes, args.seed)
        result["inputs"] = {
            name: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
            for name, t in inputs.items()
        }
        ordered = list(inputs.values())
        outputs = None
        with torch.inference_mode():
            for _ in range(args.warmup):
                outputs = module(*ordered)
            for _ in range(args.runs):
                started = time.perf_counter()
                outputs = module(*ordered)
                result["ms"].append((time.perf_counter() - started) * 1e3)
                progress(result)
        if args.onnx_models is not None:
            result["onnx_check"] = onnx_difference(args.onnx_models, role, inputs, _outputs(outputs))
    finally:
        del module
        gc.collect()
    return result


def _describe(err: BaseException, role: str, preset: str) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    if isinstance(err, MemoryError) or "can't allocate memory" in text or "not enough memory" in text:
        available = mem_available()
        where = f" ({available / GIB:.1f} GiB available)" if available else ""
        return f"out of memory running {role} of preset {preset}{where}: {text}"
    return text


def measure_in_process(args, role: str, shapes: dict, progress=None) -> dict:
    try:
        return measure_role(args, role, shapes, progress)
    except RoleError as err:
        return {"ms": [], "error": str(err)}
    except Exception as err:  # a role that fails never stops the others
        traceback.print_exc(file=sys.stderr)
        return {"ms": [], "error": _describe(err, role, args.preset)}


def measure_isolated(args, role: str, shapes_file: Path) -> dict:
    """Runs one role in a child process; a kill (the kernel's OOM killer) or a timeout becomes
    the role's error."""
    with tempfile.TemporaryDirectory(prefix="torch_eager_") as tmp:
        out = Path(tmp) / "role.json"
        command = [
            sys.executable, str(Path(__file__).resolve()),
            "--preset", args.preset, "--roles", role, "--shapes", str(shapes_file),
            "--warmup", str(args.warmup), "--runs", str(args.runs),
            "--threads", str(args.threads), "--seed", str(args.seed),
            "--isolate", "never", "--json", str(out), "--child",
        ]
        if args.onnx_models is not None:
            command += ["--onnx-models", str(args.onnx_models)]
        timeout = args.role_timeout if args.role_timeout > 0 else None
        started = time.perf_counter()
        child = subprocess.Popen(command, start_new_session=True)
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            partial = _read_partial(out, role)
            partial["error"] = (
                f"{role} did not finish within --role-timeout {args.role_timeout:g} s "
                f"({len(partial['ms'])} of {args.runs} timed runs done"
                + (", build finished" if "build_s" in partial else ", still building") + ")"
            )
            return partial
        if code == 0 and out.is_file():
            return json.loads(out.read_text())["graphs"][role]
        if code < 0:
            partial = _read_partial(out, role)
            name = signal.Signals(-code).name
            cause = " (the kernel's out-of-memory killer?)" if code == -signal.SIGKILL else ""
            available = mem_available()
            now = f" ({available / GIB:.1f} GiB available now)" if available else ""
            partial["error"] = (
                f"the process measuring {role} was killed by {name}{cause} after "
                f"{time.perf_counter() - started:.0f} s: {role} of preset {args.preset} could "
                f"not be held at these shapes{now}"
            )
            return partial
        return {"ms": [], "error": f"the process measuring {role} exited with status {code}"}


def _read_partial(out: Path, role: str) -> dict:
    """What a stopped child had written (build time, finished runs), or an empty result."""
    try:
        return json.loads(out.read_text())["graphs"][role]
    except (OSError, ValueError, KeyError):
        return {"ms": [], "error": None}


# ---------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", required=True, help="tiny, full-random (or a registered preset)")
    p.add_argument("--roles", required=True, help="comma-separated roles of models/roles.json")
    p.add_argument("--shapes", required=True, type=Path,
                   help='JSON {"role": {"input": {"shape": [...], "dtype": "float32"}}}')
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's)")
    p.add_argument("--json", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0, help="weight seed (the model set's: 0)")
    p.add_argument("--isolate", choices=["auto", "always", "never"], default="auto",
                   help="one child process per role (auto: for every preset but tiny)")
    p.add_argument("--role-timeout", type=float, default=1800.0,
                   help="seconds per isolated role before it is killed (0: none; default 1800)")
    p.add_argument("--onnx-models", type=Path, default=None,
                   help="model set whose graphs get the same inputs (records max abs error)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.warmup < 0 or args.runs < 1 or args.threads < 0:
        p.error("--warmup >= 0, --runs >= 1 and --threads >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        try:  # the kernel picks this process, not a neighbour, when memory runs out
            Path("/proc/self/oom_score_adj").write_text("1000")
        except OSError:
            pass
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    shapes_all = json.loads(args.shapes.read_text())
    isolate = args.isolate == "always" or (args.isolate == "auto" and args.preset != "tiny")
    graphs = {}
    report = {
        "tool": "torch-eager",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "preset": args.preset,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "warmup": args.warmup,
        "runs": args.runs,
        "graphs": graphs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)

    def write():
        partial = args.json.with_name(args.json.name + ".partial")
        partial.write_text(json.dumps(report, indent=2) + "\n")
        partial.replace(args.json)

    for role in roles:
        started = time.perf_counter()
        if role not in STAGE2_COMPONENT and role not in ENHANCER_NETWORK:
            graphs[role] = {"ms": [], "error": f"unknown role {role!r}"}
        elif role not in shapes_all:
            graphs[role] = {"ms": [], "error": f"--shapes has no entry for {role}"}
        elif isolate:
            graphs[role] = measure_isolated(args, role, args.shapes.resolve())
        else:
            # A child writes what it has after every run, for its parent to read if stopped.
            def progress(result, role=role):
                graphs[role] = result
                write()

            graphs[role] = measure_in_process(args, role, shapes_all[role], progress if args.child else None)
        result = graphs[role]
        status = result["error"] or ", ".join(f"{ms:.1f}" for ms in result["ms"]) + " ms"
        if not args.child:
            print(f"{role}: {status} ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    write()
    return 0

if __name__ == "__main__":
    sys.exit(main())

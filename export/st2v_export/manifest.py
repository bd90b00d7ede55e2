"""The model-set manifest (`manifest.json`, schema v1 in models/manifest.schema.json)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
from importlib import metadata
from pathlib import Path

from . import tokenizer
from .onnx_export import ExportedGraph
from .presets import (
    CHUNK_FRAMES,
    COND_FRAMES,
    IMAGE_TOKENS,
    LATENT_CHANNELS,
    TEXT_TOKENS,
    VAE_SCALE_FACTOR,
    VAE_SCALING_FACTOR,
    Preset,
)
from .roles import REPO_ROOT

SCHEMA_FILE = REPO_ROOT / "models" / "manifest.schema.json"
MANIFEST_FILE = "manifest.json"
EXPORT_TOOL = "st2v_export"
EXPORT_TOOL_VERSION = "0.1.0"
LIBRARIES = ("torch", "diffusers", "transformers", "open_clip_torch", "onnx", "onnxruntime", "tokenizers")

# ModelScope's scheduler config (scaled-linear betas), shared by stages 1 and 2.
_MODELSCOPE_BETAS = {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "set_alpha_to_one": False,
}


def stage1_scheduler() -> dict:
    """Stage 1: diffusers DPMSolverMultistepScheduler.from_config(ModelScope's DDIM config)."""
    config = _MODELSCOPE_BETAS | {
        "algorithm_type": "dpmsolver++",
        "solver_order": 2,
        "solver_type": "midpoint",
        "timestep_spacing": "linspace",
        "lower_order_final": True,
        "final_sigmas_type": "zero",
        "use_karras_sigmas": False,
    }
    return {"type": "dpmsolver_multistep", "config": config}


def stage2_scheduler() -> dict:
    config = _MODELSCOPE_BETAS | {"timestep_spacing": "leading", "clip_sample": False}
    return {"type": "ddim", "config": config}


def stage3_scheduler() -> dict:
    """MS-Vid2Vid-XL: logSNR-cosine-interp schedule with zero terminal SNR, DPM++(2M) SDE."""
    config = {
        "schedule": "logsnr_cosine_interp",
        "zero_terminal_snr": True,
        "scale_min": 2.0,
        "scale_max": 4.0,
        "num_train_timesteps": 1000,
        "prediction_type": "v_prediction",
        "t_max": 599,
        "discretization": "trailing",
        "discard_penultimate_step": True,
    }
    return {"type": "dpmpp_2m_sde", "config": config}


def pipeline_config(preset: Preset) -> dict:
    """Step counts stay the real ones in every preset; the engine may override them."""
    return {
        "vae_scaling_factor": VAE_SCALING_FACTOR,
        "vae_scale_factor": VAE_SCALE_FACTOR,
        "latent_channels": LATENT_CHANNELS,
        "text_tokens": TEXT_TOKENS,
        "image_tokens": IMAGE_TOKENS,
        "stage1": {
            "scheduler": stage1_scheduler(),
            "num_inference_steps": 50,
            "guidance_scale": 9.0,
            "num_frames": CHUNK_FRAMES,
            "height": preset.stage1.height,
            "width": preset.stage1.width,
        },
        "stage2": {
            "scheduler": stage2_scheduler(),
            "num_inference_steps": 50,
            "guidance_scale": 7.5,
            "eta": 1.0,
            "chunk_frames": CHUNK_FRAMES,
            "cond_frames": COND_FRAMES,
            "height": preset.stage2.height,
            "width": preset.stage2.width,
        },
        "stage3": {
            "scheduler": stage3_scheduler(),
            "num_inference_steps": 30,
            "guidance_scale": 7.5,
            "guide_rescale": 0.2,
            "chunk_frames": 24,
            "overlap_frames": 8,
            "noise_timestep": 599,
            "height": preset.stage3.height,
            "width": preset.stage3.width,
            "content_height": preset.stage3_content.height,
            "content_width": preset.stage3_content.width,
        },
    }


def graph_entry(graph: ExportedGraph) -> dict:
    entry = {
        "file": graph.file,
        "sha256": graph.sha256,
        "precision": graph.precision,
        "opset": graph.opset,
        "inputs": graph.inputs,
        "outputs": graph.outputs,
        "parity": dataclasses.asdict(graph.parity),
    }
    if graph.external_data:
        entry["external_data"] = graph.external_data
    return entry


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of the export stack, plus `extra` (the graph passes used, e.g. onnxsim)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES + extra:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def preset_dimensions(preset: Preset, enhancer_dimensions: dict | None = None) -> dict:
    """The manifest's `preset_dimensions`. `enhancer_dimensions`: the enhancer's widths
    (st2v_export.enhancer's `architecture_dimensions`); without them only its architecture name
    is recorded."""
    dimensions = preset.dimensions()
    dimensions["enhancer"] = enhancer_dimensions or {"architecture": preset.enhancer}
    return dimensions


def description(preset: Preset, training: dict | None = None) -> str:
    """The manifest's description: with `training` (the toy world's runs, its only source), the
    roles they trained instead of "seeded random weights"."""
    if training is not None:
        roles = training["roles"].items()
        trained = sorted(role for role, origin in roles if origin != "seeded random")
        weights = (
            f" (trained on the toy world: {', '.join(trained) or 'nothing'}; "
            "other roles seeded random)"
        )
    else:
        weights = " (seeded random weights)" if preset.seeded_random else ""
    return f"StreamingT2V model set, preset {preset.name}{weights}"


def build_manifest(
    preset: Preset,
    graphs: list[ExportedGraph],
    seed: int,
    sources: list[dict],
    pass_libraries: tuple[str, ...] = (),
    enhancer_dimensions: dict | None = None,
    training: dict | None = None,
) -> dict:
    """`training`: where trained weights came from (the toy world's runs), for the provenance
    and the description."""
    manifest = {
        "schema_version": 1,
        "name": f"streamingt2v-{preset.name}",
        "preset": preset.name,
        "preset_dimensions": preset_dimensions(preset, enhancer_dimensions),
        "description": description(preset, training),
        "graphs": {graph.role: graph_entry(graph) for graph in graphs},
        "tokenizers": {
            "text": tokenizer.manifest_entry(tokenizer.MODELSCOPE_TOKENIZER_FILE),
            "enhancer_text": tokenizer.manifest_entry(tokenizer.TOKENIZER_FILE),
        },
        "pipeline": pipeline_config(preset),
        "provenance": {
            "export_tool": EXPORT_TOOL,
            "export_tool_version": EXPORT_TOOL_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seed": seed,
            "sources": sources,
            "libraries": library_versions(pass_libraries),
        },
    }
    if training is not None:
        manifest["provenance"]["training"] = training
    return manifest


def write_manifest(manifest: dict, out_dir: Path) -> Path:
    path = out_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def validate_manifest(manifest: dict) -> None:
    """Raises jsonschema.ValidationError when the manifest breaks the shared schema."""
    import jsonschema

    jsonschema.validate(manifest, json.loads(SCHEMA_FILE.read_text()))

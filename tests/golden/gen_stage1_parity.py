#!/usr/bin/env python3
"""Writes the fixture of tests/stage1_parity.rs: diffusers' reference stage 1 on the tiny set.

Stage 1 is ModelScope T2V as StreamingT2V runs it: diffusers' `TextToVideoSDPipeline` with its
scheduler replaced by `DPMSolverMultistepScheduler.from_config(...)`, guidance 9.0, 16 frames.
This script rebuilds the PyTorch modules behind `models/tiny`'s stage-1 graphs (text encoder,
stage-1 UNet, VAE decoder) exactly as `st2v_export` built them (preset and seed from the
manifest: `Components(preset, seed, weights=None)`, seeded random weights), checks each against
its committed ONNX graph through onnxruntime, then runs the diffusers pipeline on them with the
manifest's stage-1 scheduler config, a fixed initial noise and a few steps.

Run: cd /work/main && .venv/bin/python tests/golden/gen_stage1_parity.py
(CPU; torch 2.15, diffusers 0.42.1, transformers 5.24, onnxruntime 1.31, the versions that
exported models/tiny: other versions may build different random weights, which the ONNX check
reports.)

Fixture (tests/golden/stage1_parity/):
- params.json: prompt, negative prompt, steps, guidance, frames, size, both prompts' token ids
  (from the pipeline's CLIPTokenizer, configured as ModelScope's), the indices of the saved frames,
  and the measured torch-vs-onnxruntime agreement of the rebuilt modules.
- init_noise.npy: float32 (1, 4, 16, 8, 8) initial latents (`torch.randn`, seed NOISE_SEED),
  passed to the pipeline as `latents=` (it multiplies them by init_noise_sigma = 1).
- latents.npy: float32 (1, 4, 16, 8, 8) final latents of the denoising loop, before the
  1 / scaling_factor of decoding (what the engine's `--save-latents` writes as
  stage1_chunk000.npy).
- frames.npy: float32 (len(frame_indices), 64, 64, 3) decoded frames in [0, 1] (the pipeline's
  output_type="np" frames, a few of the 16 to keep the fixture small).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from diffusers import DPMSolverMultistepScheduler, TextToVideoSDPipeline
from transformers import CLIPTokenizer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TINY = ROOT / "models" / "tiny"
OUT = HERE / "stage1_parity"
sys.path.insert(0, str(ROOT / "export"))
sys.path.insert(0, str(HERE))

from gen_tokenizer_golden import write_hf_tokenizer_dir  # noqa: E402
from st2v_export.components import Components  # noqa: E402
from st2v_export.modules.text import TextEncoder  # noqa: E402
from st2v_export.modules.unet3d import Stage1Unet  # noqa: E402
from st2v_export.modules.vae import VaeDecoder  # noqa: E402
from st2v_export.presets import get_preset  # noqa: E402

PROMPT = "a cat running on the street"
NEGATIVE_PROMPT = ""
STEPS = 4
NOISE_SEED = 1234
CHECK_SEED = 7
FRAME_INDICES = [0, 15]
# The rebuilt modules must reproduce the committed graphs: max|torch - ort| / max|torch|.
MODULE_RTOL = 1e-5


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def check_against_onnx(name: str, module: torch.nn.Module, file: str, inputs: dict) -> float:
    """Runs `module` and the committed graph `file` on the same inputs; returns the relative error."""
    with torch.no_grad():
        expected = module(*inputs.values()).numpy()
    session = ort.InferenceSession(str(TINY / file), providers=["CPUExecutionProvider"])
    actual = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    error = relative_error(actual, expected)
    print(f"{name}: torch vs onnxruntime relative error {error:.2e}")
    if not error <= MODULE_RTOL:
        sys.exit(f"{name}: the rebuilt module does not match {file} ({error:.2e} > {MODULE_RTOL:.0e})")
    return error


def main() -> None:
    torch.set_grad_enabled(False)
    manifest = json.loads((TINY / "manifest.json").read_text())
    stage1 = manifest["pipeline"]["stage1"]
    graphs = manifest["graphs"]
    preset = get_preset(manifest["preset"])
    components = Components(preset, manifest["provenance"]["seed"], None)
    text_model, unet, vae = components.text_model, components.stage1_unet, components.vae

    latent_shape = (
        1,
        manifest["pipeline"]["latent_channels"],
        stage1["num_frames"],
        stage1["height"] // manifest["pipeline"]["vae_scale_factor"],
        stage1["width"] // manifest["pipeline"]["vae_scale_factor"],
    )
    g = torch.Generator().manual_seed(CHECK_SEED)
    batch_latents = torch.randn((2,) + latent_shape[1:], generator=g)
    context = torch.randn(2, manifest["pipeline"]["text_tokens"], preset.context_dim, generator=g)
    module_errors = {
        "stage1_unet": check_against_onnx(
            "stage1_unet",
            Stage1Unet(unet),
            graphs["stage1_unet"]["file"],
            {
                "sample": batch_latents,
                "timestep": torch.tensor([999, 250], dtype=torch.int64),
                "encoder_hidden_states": context,
            },
        ),
        "text_encoder": check_against_onnx(
            "text_encoder",
            TextEncoder(text_model),
            graphs["text_encoder"]["file"],
            {"input_ids": torch.randint(0, 49408, (2, 77), generator=g, dtype=torch.int64)},
        ),
        "vae_decoder": check_against_onnx(
            "vae_decoder",
            VaeDecoder(vae),
            graphs["vae_decoder"]["file"],
            {"latents": torch.randn((3,) + latent_shape[1:2] + latent_shape[3:], generator=g)},
        ),
    }

    scheduler_entry = stage1["scheduler"]
    assert scheduler_entry["type"] == "dpmsolver_multistep", scheduler_entry
    scheduler = DPMSolverMultistepScheduler.from_config(scheduler_entry["config"])

    with tempfile.TemporaryDirectory() as scratch:
        write_hf_tokenizer_dir(Path(scratch))
        tokenizer = CLIPTokenizer.from_pretrained(scratch)
    pipe = TextToVideoSDPipeline(
        vae=vae, text_encoder=text_model, tokenizer=tokenizer, unet=unet, scheduler=scheduler
    )
    pipe.set_progress_bar_config(disable=True)
    token_ids = {
        key: tokenizer(
            text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True
        )["input_ids"]
        for key, text in (("prompt", PROMPT), ("negative_prompt", NEGATIVE_PROMPT))
    }

    noise = torch.randn(latent_shape, generator=torch.Generator().manual_seed(NOISE_SEED))
    final = {}

    def keep_latents(step, timestep, latents):
        final["latents"] = latents.detach().clone()
        final.setdefault("timesteps", []).append(int(timestep))

    frames = pipe(
        prompt=PROMPT,
        negative_prompt=NEGATIVE_PROMPT,
        num_inference_steps=STEPS,
        guidance_scale=stage1["guidance_scale"],
        num_frames=stage1["num_frames"],
        height=stage1["height"],
        width=stage1["width"],
        latents=noise.clone(),
        output_type="np",
        callback=keep_latents,
        callback_steps=1,
    ).frames
    latents = final["latents"].numpy().astype(np.float32)
    frames = np.asarray(frames, dtype=np.float32)
    assert latents.shape == latent_shape, latents.shape
    assert frames.shape == (1, stage1["num_frames"], stage1["height"], stage1["width"], 3), frames.shape
    print(f"timesteps {final['timesteps']}, final latents max |x| {np.abs(latents).max():.4f}")

    OUT.mkdir(exist_ok=True)
    np.save(OUT / "init_noise.npy", noise.numpy().astype(np.float32))
    np.save(OUT / "latents.npy", latents)
    np.save(OUT / "frames.npy", np.ascontiguousarray(frames[0, FRAME_INDICES]))
    params = {
        "generator": "tests/golden/gen_stage1_parity.py",
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE_PROMPT,
        "steps": STEPS,
        "guidance_scale": stage1["guidance_scale"],
        "num_frames": stage1["num_frames"],
        "height": stage1["height"],
        "width": stage1["width"],
        "noise_seed": NOISE_SEED,
        "timesteps": final["timesteps"],
        "frame_indices": FRAME_INDICES,
        "prompt_ids": token_ids["prompt"],
        "negative_prompt_ids": token_ids["negative_prompt"],
        "module_vs_onnx_relative_error": module_errors,
        "scheduler": scheduler_entry,
    }
    (OUT / "params.json").write_text(json.dumps(params, separators=(",", ":")) + "\n")
    size = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"wrote {OUT} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the fixture of tests/stage3_parity.rs: modelscope's reference enhancer on the tiny set.

Stage 3 is MS-Vid2Vid-XL as StreamingT2V runs it: VAE-encode every frame (posterior sample times
0.18215), noise the whole video to t = 599 with one shared noise tensor, then
`GaussianDiffusion_SDEdit.sample(solver='dpmpp_2m_sde', discretization='trailing', t_max=599,
guide_scale=7.5, guide_rescale=0.2)` from the installed `modelscope` package
(`models/multi_modal/video_to_video/utils/`: `diffusion_sdedit.py` for the discretization,
`model_fn` (sigma -> rounded t) and the guided v-prediction `denoise` with std rescale;
`solvers_sdedit.py` for `sample_dpmpp_2m_sde`; `schedules_sdedit.py` for the
`logsnr_cosine_interp` schedule with zero terminal SNR).

Upstream modelscope denoises the whole video at once; StreamingT2V's vendored copy
(`t2v_enhanced/thirdparty/modelscope/.../diffusion_sdedit.py`, architecture notes 1.3) denoises
24-frame chunks starting every 16 frames and blends their x0 with randomized offsets:
`x0[:, :, cs + r : cs + 24] = D_chunk[:, :, r:]`, r = 0 for the first chunk. `ChunkedSDEdit`
below adds exactly that loop around modelscope's own `denoise` (one call per chunk).

Randomness is the engine's, injected so the comparison is exact rather than in distribution:
- each frame's posterior noise, SDEdit noise and per-step SDE noise is
  `torch.manual_seed(key); torch.randn(4, h, w)` with the engine's SplitMix64 key of
  (seed, stream, step, frame) (src/pipeline/noise.rs `frame_noise`, src/plan/blending.rs
  `splitmix64`); the posterior sample replaces `DiagonalGaussianDistribution.sample`'s randn;
- modelscope's `BrownianTreeNoiseSampler` (torchsde) is replaced by a sampler returning the
  engine's Solver-stream noise of the step (the tree's normalized increments are i.i.d. N(0, 1),
  so this changes values, not the distribution); torchsde itself is never imported;
- the blending offsets are the engine's `blend_offset(seed, chunk, step, overlap)` instead of
  Python's `random.randint(0, 7)`.

The tiny enhancer's PyTorch modules are rebuilt as `st2v_export` built them (seed from the
manifest, `random_networks`) and checked against the committed ONNX graphs through onnxruntime.

Run: cd /work/main && .venv/bin/python tests/golden/gen_stage3_parity.py
(CPU; torch 2.15, modelscope 1.40.2, open_clip 3.3.0, onnxruntime 1.31, the versions that
exported models/tiny.)

Fixture (tests/golden/stage3_parity/):
- params.json: prompt, caption ("<prompt>, "), negative prompt and their open_clip token ids,
  seed, steps, guidance, rescale, chunk/overlap, frame counts and sizes, the reference's sigmas and
  model timesteps, the blending offsets used (blend_offsets[step][chunk]), a noise probe (first
  values of one frame's noise, to tell a key-derivation mismatch from anything else), and the
  measured torch-vs-onnxruntime agreement of the rebuilt modules.
- frames.npy: uint8 (F, 20, 20, 3) input tiles; input frame f is tile f upsampled 4x by
  repetition (80x80, the tiny set's stage-3 content size), divided by 255 (float32).
- x0_step1.npy: float32 (1, 4, F, 10, 16) blended x0 prediction at solver step 1 (0-based).
- latents.npy: float32 (1, 4, F, 10, 16) final latents of the sampler (before 1 / 0.18215).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import open_clip
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TINY = ROOT / "models" / "tiny"
OUT = HERE / "stage3_parity"
sys.path.insert(0, str(ROOT / "export"))

from st2v_export.enhancer import reference  # noqa: E402
from st2v_export.enhancer.graphs import preset_config, random_networks  # noqa: E402
from st2v_export.enhancer.modules import (  # noqa: E402
    EnhancerTextEncoder,
    EnhancerUnet,
    EnhancerVaeDecoder,
    EnhancerVaeEncoder,
)

PROMPT = "a cat running on the street"
NEGATIVE_PROMPT = ""
SEED = 33
STEPS = 3
FRAMES = 40
TILE = 20
TILE_SCALE = 4
X0_STEP = 1
CHECK_SEED = 7
# The rebuilt modules must reproduce the committed graphs: max|torch - ort| / max|torch|.
MODULE_RTOL = 1e-5

# src/pipeline/noise.rs NoiseStream
SDEDIT, POSTERIOR, SOLVER = 1, 2, 3
MASK64 = (1 << 64) - 1


def splitmix64(state: int) -> int:
    """src/plan/blending.rs `splitmix64`: one SplitMix64 output for `state`."""
    z = (state + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def frame_noise(seed: int, stream: int, step: int, frame: int, shape) -> torch.Tensor:
    """src/pipeline/noise.rs `frame_noise`: torch.randn from a generator seeded by the key."""
    key = splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ step) ^ frame
    generator = torch.Generator().manual_seed(splitmix64(key))
    return torch.randn(shape, generator=generator)


def video_noise(seed: int, stream: int, step: int, frames: int, chw) -> torch.Tensor:
    """(1, C, F, h, w): every frame's noise of one stream at one step."""
    return torch.stack([frame_noise(seed, stream, step, f, chw) for f in range(frames)], 1)[None]


def blend_offset(seed: int, chunk: int, step: int, overlap: int) -> int:
    """src/plan/blending.rs `blend_offset`: multiply-high of a hash onto 0..overlap."""
    if overlap == 0:
        return 0
    hashed = splitmix64(splitmix64(splitmix64(seed) ^ chunk) ^ step)
    return (hashed * overlap) >> 64


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def check_against_onnx(name: str, module: torch.nn.Module, inputs: dict) -> float:
    """Runs `module` and the committed graph of role `name` on the same inputs (all outputs)."""
    with torch.no_grad():
        expected = module(*inputs.values())
    expected = expected if isinstance(expected, tuple) else (expected,)
    session = ort.InferenceSession(str(TINY / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    actual = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    error = max(relative_error(a, e.numpy()) for a, e in zip(actual, expected))
    print(f"{name}: torch vs onnxruntime relative error {error:.2e}")
    if not error <= MODULE_RTOL:
        sys.exit(
            f"{name}: the rebuilt module does not match {name}.onnx "
            f"({error:.2e} > {MODULE_RTOL:.0e})"
        )
    return error


@contextlib.contextmanager
def stand_in_torchsde():
    """`solvers_sdedit.py` imports torchsde for its Brownian tree, which is replaced anyway."""
    if importlib.util.find_spec("torchsde") is not None:
        yield
        return
    stand_in = types.ModuleType("torchsde")

    def unreachable(*_args, **_kwargs):
        raise RuntimeError("torchsde stand-in: the Brownian tree must be replaced")

    stand_in.BrownianTree = unreachable
    sys.modules["torchsde"] = stand_in
    try:
        yield
    finally:
        sys.modules.pop("torchsde", None)


def load_reference_sampling() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """modelscope's diffusion_sdedit, solvers_sdedit and schedules_sdedit, as private copies.

    Importing them through `modelscope.models...` would go through modelscope's lazy importer
    and need torchsde; they are executed from their installed files as a private package.
    """
    spec = importlib.util.find_spec("modelscope")
    utils_dir = Path(spec.origin).parent / "models" / "multi_modal" / "video_to_video" / "utils"
    name = "_st2v_reference_sdedit"
    package = types.ModuleType(name)
    package.__path__ = [str(utils_dir)]
    sys.modules[name] = package
    with stand_in_torchsde():
        diffusion = importlib.import_module(f"{name}.diffusion_sdedit")
    return diffusion, sys.modules[f"{name}.solvers_sdedit"], sys.modules[f"{name}.schedules_sdedit"]


def input_video(frames: int) -> np.ndarray:
    """uint8 (F, TILE, TILE, 3): a drifting colour pattern with a moving square."""
    y, x = np.mgrid[0:TILE, 0:TILE].astype(np.float64)
    tiles = []
    for f in range(frames):
        phase = 0.35 * f
        r = 0.5 + 0.45 * np.sin(0.55 * x + phase)
        g = 0.5 + 0.45 * np.cos(0.4 * y - 0.5 * phase)
        b = 0.5 + 0.45 * np.sin(0.3 * (x + y) + 0.2 * phase)
        tile = np.stack([r, g, b], -1)
        top, left = 3 + f % 9, 2 + (2 * f) % 13
        tile[top : top + 5, left : left + 5] = (0.95, 0.9, 0.1)
        tiles.append(np.round(tile * 255))
    return np.asarray(tiles, dtype=np.uint8)


def enhancer_images(tiles: np.ndarray, frame_hw: tuple[int, int]) -> torch.Tensor:
    """(F, 3, H, W) in [-1, 1]: tiles upsampled to the content size, centred on black bars."""
    upsampled = np.repeat(np.repeat(tiles, TILE_SCALE, 1), TILE_SCALE, 2)
    frames = upsampled.astype(np.float32) / np.float32(255)
    count, content_h, content_w, _ = frames.shape
    height, width = frame_hw
    top, left = (height - content_h) // 2, (width - content_w) // 2
    padded = np.zeros((count, height, width, 3), dtype=np.float32)
    padded[:, top : top + content_h, left : left + content_w] = frames
    return torch.from_numpy(padded).permute(0, 3, 1, 2).contiguous() * 2 - 1


def main() -> None:
    torch.set_grad_enabled(False)
    manifest = json.loads((TINY / "manifest.json").read_text())
    pipeline = manifest["pipeline"]
    stage3 = pipeline["stage3"]
    scheduler = stage3["scheduler"]
    assert scheduler["type"] == "dpmpp_2m_sde", scheduler
    assert scheduler["config"] == {
        "schedule": "logsnr_cosine_interp",
        "zero_terminal_snr": True,
        "scale_min": 2.0,
        "scale_max": 4.0,
        "num_train_timesteps": 1000,
        "prediction_type": "v_prediction",
        "t_max": 599,
        "discretization": "trailing",
        "discard_penultimate_step": True,
    }, "the reference call below hard-codes these values"
    chunk, overlap = stage3["chunk_frames"], stage3["overlap_frames"]
    guidance, rescale = stage3["guidance_scale"], stage3["guide_rescale"]
    t_max = stage3["noise_timestep"]
    scaling = pipeline["vae_scaling_factor"]

    config = preset_config(manifest["preset"])
    networks = random_networks(config, manifest["provenance"]["seed"])
    text_encoder = EnhancerTextEncoder(networks.text_tower).eval()
    unet = networks.unet.eval()
    autoencoder = networks.autoencoder.eval()
    h, w = config.latent_size
    channels = pipeline["latent_channels"]

    g = torch.Generator().manual_seed(CHECK_SEED)
    module_errors = {
        "enhancer_unet": check_against_onnx(
            "enhancer_unet",
            EnhancerUnet(unet).eval(),
            {
                "sample": torch.randn(2, channels, chunk, h, w, generator=g),
                "timestep": torch.tensor([599, 299], dtype=torch.int64),
                "encoder_hidden_states": torch.randn(2, 77, config.unet.context_dim, generator=g),
            },
        ),
        "enhancer_text_encoder": check_against_onnx(
            "enhancer_text_encoder",
            text_encoder,
            {"input_ids": torch.randint(0, 49408, (2, 77), generator=g, dtype=torch.int64)},
        ),
        "enhancer_vae_encoder": check_against_onnx(
            "enhancer_vae_encoder",
            EnhancerVaeEncoder(autoencoder).eval(),
            {"images": torch.rand(3, 3, *config.image_size, generator=g) * 2 - 1},
        ),
        "enhancer_vae_decoder": check_against_onnx(
            "enhancer_vae_decoder",
            EnhancerVaeDecoder(autoencoder).eval(),
            {"latents": torch.randn(3, channels, h, w, generator=g)},
        ),
    }

    # Text: the reference's FrozenOpenCLIPEmbedder(layer='penultimate') on "<prompt>, " and "".
    caption = f"{PROMPT}, "
    prompt_ids = open_clip.tokenize([caption])
    negative_ids = open_clip.tokenize([NEGATIVE_PROMPT])
    y = text_encoder(prompt_ids)
    negative_y = text_encoder(negative_ids)

    # Encoding: modelscope AutoencoderKL.encode -> get_first_stage_encoding (sample * 0.18215),
    # one frame at a time, with the engine's posterior noise in place of torch.randn.
    ae_module = reference.autoencoder_module()
    assert scaling == 0.18215, "get_first_stage_encoding hard-codes 0.18215"
    tiles = input_video(FRAMES)
    images = enhancer_images(tiles, config.image_size)
    latents = []
    for f in range(FRAMES):
        posterior = autoencoder.encode(images[f : f + 1])
        eps = frame_noise(SEED, POSTERIOR, 0, f, (channels, h, w))[None]
        posterior.sample = lambda p=posterior, e=eps: p.mean + p.std * e
        latents.append(ae_module.get_first_stage_encoding(posterior))
    clean = torch.stack(latents, 2)  # (1, C, F, h, w)

    diffusion_module, solvers, schedules = load_reference_sampling()
    sigmas = schedules.noise_schedule(
        schedule="logsnr_cosine_interp",
        n=1000,
        zero_terminal_snr=True,
        scale_min=2.0,
        scale_max=4.0,
    )
    chunk_starts = list(range(0, FRAMES - chunk + 1, chunk - overlap))
    assert chunk_starts[-1] + chunk == FRAMES, "the test video is 16k + 8 frames: no trimming"
    offsets: list[list[int]] = []
    saved: dict = {}

    class ChunkedSDEdit(diffusion_module.GaussianDiffusion_SDEdit):
        """StreamingT2V's chunked `model_fn` (randomized blending) around modelscope's denoise."""

        step = -1

        def denoise(
            self, xt, t, s, model, model_kwargs={}, guide_scale=None, guide_rescale=None,
            clamp=None, percentile=None,
        ):
            self.step += 1
            x0 = torch.empty_like(xt)
            row = []
            for index, cs in enumerate(chunk_starts):
                chunk_x0 = super().denoise(
                    xt[:, :, cs : cs + chunk], t, s, model, model_kwargs, guide_scale,
                    guide_rescale, clamp, percentile,
                )[-2]
                r = 0 if cs == 0 else blend_offset(SEED, index, self.step, overlap)
                x0[:, :, cs + r : cs + chunk] = chunk_x0[:, :, r:]
                row.append(r)
            offsets.append(row)
            if self.step == X0_STEP:
                saved["x0"] = x0.clone()
            saved.setdefault("timesteps", []).append(int(t[0]))
            return None, None, None, x0, None

    diffusion = ChunkedSDEdit(sigmas=sigmas, prediction_type="v")

    class EngineNoise:
        """Stands in for BrownianTreeNoiseSampler: the engine's Solver noise of the current step."""

        def __init__(self, x, sigma_min, sigma_max, seed=None, transform=None):
            self.shape = x.shape

        def __call__(self, sigma, sigma_next):
            # Called after the step's model call: `diffusion.step` is this step's index; the
            # engine keys step i's noise with i + 1.
            noise = video_noise(SEED, SOLVER, diffusion.step + 1, FRAMES, (channels, h, w))
            assert noise.shape == self.shape
            saved.setdefault("noise_steps", []).append(diffusion.step)
            saved.setdefault("sigma_pairs", []).append((float(sigma), float(sigma_next)))
            return noise

    solvers.BrownianTreeNoiseSampler = EngineNoise

    t = torch.tensor([t_max], dtype=torch.long)
    noise = video_noise(SEED, SDEDIT, 0, FRAMES, (channels, h, w))
    noised = diffusion.diffuse(clean, t, noise)
    final = diffusion.sample(
        noise=noised,
        model=unet,
        model_kwargs=[{"y": y}, {"y": negative_y}],
        guide_scale=guidance,
        guide_rescale=rescale,
        solver="dpmpp_2m_sde",
        steps=STEPS,
        t_max=t_max,
        t_min=0,
        discretization="trailing",
    )
    assert diffusion.step == STEPS - 1, f"{diffusion.step + 1} model steps, expected {STEPS}"
    assert saved["noise_steps"] == list(range(STEPS - 1)), saved["noise_steps"]
    ref_sigmas = [saved["sigma_pairs"][0][0]] + [pair[1] for pair in saved["sigma_pairs"]] + [0.0]
    print(f"timesteps {saved['timesteps']}, sigmas {[round(s, 5) for s in ref_sigmas]}")
    print(f"blend offsets {offsets}, final latents max |x| {final.abs().max():.4f}")

    OUT.mkdir(exist_ok=True)
    np.save(OUT / "frames.npy", tiles)
    np.save(OUT / "x0_step1.npy", saved["x0"].numpy().astype(np.float32))
    np.save(OUT / "latents.npy", final.numpy().astype(np.float32))
    probe = frame_noise(SEED, SDEDIT, 0, 0, (channels, h, w)).flatten()[:4]
    params = {
        "generator": "tests/golden/gen_stage3_parity.py",
        "prompt": PROMPT,
        "caption": caption,
        "negative_prompt": NEGATIVE_PROMPT,
        "prompt_ids": prompt_ids[0].tolist(),
        "negative_prompt_ids": negative_ids[0].tolist(),
        "seed": SEED,
        "steps": STEPS,
        "guidance_scale": guidance,
        "guide_rescale": rescale,
        "chunk_frames": chunk,
        "overlap_frames": overlap,
        "noise_timestep": t_max,
        "frames": FRAMES,
        "tile_scale": TILE_SCALE,
        "content_size": [TILE * TILE_SCALE, TILE * TILE_SCALE],
        "frame_size": list(config.image_size),
        "latent_shape": list(final.shape),
        "chunk_starts": chunk_starts,
        "blend_offsets": offsets,
        "x0_step": X0_STEP,
        "timesteps": saved["timesteps"],
        "sigmas": ref_sigmas,
        "noise_probe": {"stream": SDEDIT, "step": 0, "frame": 0, "values": probe.tolist()},
        "module_vs_onnx_relative_error": module_errors,
        "scheduler": scheduler,
    }
    (OUT / "params.json").write_text(json.dumps(params, separators=(",", ":")) + "\n")
    size = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"wrote {OUT} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

"""Stage 3 of the Python peer of `st2v bench` (py_orchestrator.py): the enhancer as the
engine's wavefront (src/pipeline/stage3), its geometry and keyed noise."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from peer_sampling import (
    PipelineError, build_scheduler, decoded_to_unit, joint_guidance, repeat_batch,
)

if TYPE_CHECKING:  # the pipeline's classes, for annotations only
    from py_orchestrator import Graphs, RunClock, Timer

MASK64 = (1 << 64) - 1
LOGVAR_RANGE = (-30.0, 20.0)
STREAM_SDEDIT, STREAM_POSTERIOR, STREAM_SOLVER = 1, 2, 3


# ---------------------------------------------------------------------------------------------
# Geometry (src/plan/resize.rs, geometry.rs): PIL-style bicubic as two tap matrices


def _cubic(x: float) -> float:
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 2.0 * filter_scale
    matrix = np.zeros((out_size, in_size), dtype=np.float32)
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = int(max(center - support + 0.5, 0.0))
        end = min(int(center + support + 0.5), in_size)
        raw = [_cubic((i - center + 0.5) / filter_scale) for i in range(first, end)]
        total = sum(raw) or 1.0
        matrix[out, first:end] = [w / total for w in raw]
    return matrix


class EnhancerGeometry:
    def __init__(self, stage2: dict, stage3: dict):
        self.in_h, self.in_w = stage2["height"], stage2["width"]
        self.content_h, self.content_w = stage3["content_height"], stage3["content_width"]
        self.frame_h, self.frame_w = stage3["height"], stage3["width"]
        self.top = (self.frame_h - self.content_h) // 2
        self.left = (self.frame_w - self.content_w) // 2
        self.rows = resize_matrix(self.in_h, self.content_h) if self.in_h != self.content_h else None
        self.cols = resize_matrix(self.in_w, self.content_w) if self.in_w != self.content_w else None

    def resize_and_pad(self, frame: np.ndarray) -> np.ndarray:
        """(3, H, W) in [0, 1] -> (3, frame_h, frame_w): width pass, then height pass, each
        clamped to [0, 1], centred on black."""
        x = frame
        if self.cols is not None:
            x = np.clip(x @ self.cols.T, 0.0, 1.0)
        if self.rows is not None:
            x = np.clip(np.einsum("oh,chw->cow", self.rows, x), 0.0, 1.0)
        padded = np.zeros((3, self.frame_h, self.frame_w), dtype=np.float32)
        padded[:, self.top : self.top + self.content_h, self.left : self.left + self.content_w] = x
        return padded

    def crop(self, frame: np.ndarray) -> np.ndarray:
        return frame[:, self.top : self.top + self.content_h, self.left : self.left + self.content_w]


# ---------------------------------------------------------------------------------------------
# Keyed randomness of stage 3 (src/plan/blending.rs, src/pipeline/noise.rs)


def splitmix64(state: int) -> int:
    z = (state + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def frame_noise(seed: int, stream: int, step: int, frame: int, shape) -> np.ndarray:
    key = splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ step) ^ frame
    return np.random.default_rng(splitmix64(key)).standard_normal(shape, dtype=np.float32)


def blend_offset(seed: int, chunk: int, step: int, overlap: int) -> int:
    if overlap == 0:
        return 0
    h = splitmix64(splitmix64(splitmix64(seed) ^ chunk) ^ step)
    return (h * overlap) >> 64


class EnhancePlan:
    """Chunks every chunk - overlap frames, then an end-aligned tail (src/plan/enhance_plan.rs)."""

    def __init__(self, frames: int, chunk: int, overlap: int):
        if overlap >= chunk or frames == 0:
            raise PipelineError("bad enhancer chunk plan")
        self.frames, self.chunk, self.overlap = frames, chunk, overlap
        self.padded = max(frames, chunk)
        stride = chunk - overlap
        starts = []
        start = 0
        while start + chunk <= self.padded:
            starts.append(start)
            start += stride
        covered = starts[-1] + chunk if starts else 0
        if covered < self.padded:
            starts.append(self.padded - chunk)
        self.chunks = []  # (start, end, overlap with the previous chunk)
        for start in starts:
            prev_end = self.chunks[-1][1] if self.chunks else start
            self.chunks.append((start, start + chunk, prev_end - start))
        self.covering = np.zeros(self.padded, dtype=np.int64)
        for start, end, _ in self.chunks:
            self.covering[start:end] += 1

    def threshold(self, seed: int, chunk: int, step: int) -> int:
        start, _, overlap = self.chunks[chunk]
        return start + blend_offset(seed, chunk, step, overlap)

    def owned_frames(self, seed: int, chunk: int, step: int) -> range:
        start, end, _ = self.chunks[chunk]
        overridden = end
        for later in range(chunk + 1, len(self.chunks)):
            if self.chunks[later][0] >= end:
                break
            overridden = min(overridden, self.threshold(seed, later, step))
        first = self.threshold(seed, chunk, step)
        return range(first, max(overridden, first))


# ---------------------------------------------------------------------------------------------
# Stage 3: the enhancer as a wavefront (src/pipeline/stage3.rs)


class Enhancer:
    def __init__(self, graphs: Graphs, pipeline: dict, context: np.ndarray, frames: int,
                 steps: int, seed: int, clock: RunClock, timer: Timer):
        s3 = pipeline["stage3"]
        self.graphs, self.clock, self.timer = graphs, clock, timer
        self.seed = seed
        self.steps = steps
        self.scaling = float(pipeline["vae_scaling_factor"])
        self.scale = float(s3["guidance_scale"])
        self.rescale = float(s3["guide_rescale"])
        self.noise_t = int(s3["noise_timestep"])
        self.guided = self.scale != 1.0
        self.context = context
        self.plan = EnhancePlan(frames, int(s3["chunk_frames"]), int(s3["overlap_frames"]))
        self.geometry = EnhancerGeometry(pipeline["stage2"], s3)
        self.solver = build_scheduler(s3["scheduler"], steps)
        self.latent = None  # (C, h, w), known after the first encode
        p = self.plan.padded
        self.x = self.prev_x0 = self.x0 = None
        self.step = np.zeros(p, dtype=np.int64)
        self.evaluations = np.zeros(p, dtype=np.int64)
        self.has_x0 = np.zeros(p, dtype=bool)
        self.chunk_steps = [0] * len(self.plan.chunks)
        self.received = 0
        self.window_start = 0

    def _alloc(self, shape):
        p = self.plan.padded
        self.latent = shape
        self.x = np.zeros((p, *shape), dtype=np.float32)
        self.prev_x0 = np.zeros_like(self.x)
        self.x0 = np.zeros_like(self.x)

    def push(self, frame: np.ndarray):
        """One (3, H, W) stage-2 frame in [0, 1]."""
        with self.timer("stage3"):
            index = self.received
            clean = self.encode(frame, index)
            self.admit(clean, index)
            if index + 1 == self.plan.frames:
                for padded in range(self.plan.frames, self.plan.padded):
                    self.admit(clean, padded)
            self.pump()

    def encode(self, frame: np.ndarray, index: int) -> np.ndarray:
        padded = self.geometry.resize_and_pad(frame)
        image = (padded * 2.0 - 1.0)[None]
        mean, logvar = self.graphs.run("enhancer_vae_encoder", {"images": image})
        mean, logvar = mean[0], logvar[0]
        if self.latent is None:
            self._alloc(mean.shape)
        eps = frame_noise(self.seed, STREAM_POSTERIOR, 0, index, mean.shape)
        std = np.exp(0.5 * np.clip(logvar, *LOGVAR_RANGE))
        return (mean + std * eps) * self.scaling

    def admit(self, clean: np.ndarray, index: int):
        noise = frame_noise(self.seed, STREAM_SDEDIT, 0, index, clean.shape)
        noised = self.solver.add_noise(clean, noise, self.noise_t)
        self.x[index] = noised * self.solver.init_noise_sigma
        self.received = index + 1

    def pump(self):
        while True:
            progressed = False
            for chunk in range(len(self.plan.chunks)):
                if self.ready(chunk):
                    self.run_chunk_step(chunk)
                    progressed = True
            self.hand_out_final()
            if not progressed:
                return

    def ready(self, chunk: int) -> bool:
        start, end, _ = self.plan.chunks[chunk]
        step = self.chunk_steps[chunk]
        return (
            step < self.steps
            and start >= self.window_start
            and end <= self.received
            and bool(np.all(self.step[start:end] == step))
        )

    def run_chunk_step(self, chunk: int):
        started = time.perf_counter()
        start, end, _ = self.plan.chunks[chunk]
        step = self.chunk_steps[chunk]
        solver = self.solver
        sample = self.x[start:end].transpose(1, 0, 2, 3)[None]
        model_in = np.ascontiguousarray(sample) * solver.c_in[step]
        batch = 2 if self.guided else 1
        t = solver.timesteps[step]
        (output,) = self.graphs.run("enhancer_unet", {
            "sample": repeat_batch(model_in, batch),
            "timestep": np.full((batch,), t, dtype=np.int64),
            "encoder_hidden_states": self.context,
        })
        v = joint_guidance(output, self.scale, self.rescale) if self.guided else output
        alpha, sigma = solver.alpha_sigma[step]
        x0 = alpha * model_in - sigma * v  # (1, C, F, h, w)
        owned = self.plan.owned_frames(self.seed, chunk, step)
        if len(owned):
            local = x0[0, :, owned.start - start : owned.stop - start]
            self.x0[owned.start : owned.stop] = local.transpose(1, 0, 2, 3)
            self.has_x0[owned.start : owned.stop] = True
        self.evaluations[start:end] += 1
        self.chunk_steps[chunk] += 1
        done = np.nonzero(self.evaluations[start:end] == self.plan.covering[start:end])[0] + start
        if len(done):
            self.advance(done, step)
        self.clock.step_ms["stage3"].append((time.perf_counter() - started) * 1e3)

    def advance(self, frames: np.ndarray, step: int):
        if not bool(np.all(self.has_x0[frames])):
            raise PipelineError(f"randomized blending: no owner chunk at step {step}")
        x0 = self.x0[frames]
        noise = None
        if self.solver.needs_noise(step):
            noise = np.stack([
                frame_noise(self.seed, STREAM_SOLVER, step + 1, int(f), self.latent) for f in frames
            ])
        previous = self.prev_x0[frames] if step > 0 else None
        self.x[frames] = self.solver.step_denoised(x0, step, self.x[frames], previous, noise)
        self.prev_x0[frames] = x0
        self.has_x0[frames] = False
        self.step[frames] += 1
        self.evaluations[frames] = 0

    def hand_out_final(self):
        while self.window_start < self.plan.padded and self.step[self.window_start] == self.steps:
            index = self.window_start
            self.window_start += 1
            if index < self.plan.frames:
                latent = (self.x[index] * (1.0 / self.scaling))[None]
                (images,) = self.graphs.run("enhancer_vae_decoder", {"latents": latent})
                # handed out: the engine writes the cropped frame to the output
                self.geometry.crop(decoded_to_unit(images)[0])
                self.clock.frame_out()

    def finish(self):
        with self.timer("stage3"):
            self.pump()
            if self.window_start != self.plan.padded:
                raise PipelineError("the enhancer did not receive every frame")

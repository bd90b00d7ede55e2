#!/usr/bin/env python3
"""Python reference orchestrator for `st2v bench`: the StreamingT2V pipeline on a model set's ONNX
graphs through onnxruntime's Python API, with NumPy for everything else.

It does the same work as the Rust engine (src/pipeline/, src/sampling/, src/plan/), call for call:

- text: the negative and the prompt encoded in one batch-2 call per text encoder (stage 1/2 and,
  with enhancement, the enhancer's on "<prompt>, ");
- stage 1: DPM-Solver++(2M) from seeded latents (1, 4, 16, h, w), one batched [uncond, cond] UNet
  call per step at the manifest's guidance, then one VAE-decoder call on the 16 frames;
- stage 2: APM tokens of the anchor (frame 0) and of the zero image in one image-encoder and one
  resampler call; per chunk one CAM-condition-encoder call on the last 8 frames, then per DDIM
  (eta 1) step one CAM call on latent frames 0..8 and one UNet call, both batch [uncond, cond],
  joint guidance, frame-major variance noise; one VAE-decoder call per chunk, 8 new frames kept;
- stage 3 (unless --no-enhance): each stage-2 frame resized (PIL-style bicubic) and padded to the
  enhancer frame, VAE-encoded alone (batch 1), posterior-sampled and SDEdit-noised to t = 599;
  DPM++(2M) SDE over 24-frame chunks overlapping by 8, one batched [uncond, cond] UNet call per
  chunk and step with std-rescaled guidance, v-prediction x0, randomized blending of the chunks'
  x0 in their overlaps; frames advance as a wavefront (a chunk steps once its frames are at its
  step; a frame advances once every chunk covering it ran) and are decoded one by one (batch 1)
  as soon as they finish, as the engine's `Enhancer` does.

Random numbers come from NumPy generators (the values differ from the engine's, the amount of
work does not). Schedulers are NumPy ports of src/sampling (coefficients in double, applied to
float32 arrays). Usage and the JSON it writes: benches/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

SCHEDULER_IMPL = (
    "numpy: ports of src/sampling (DDIM, DPM-Solver++ 2M, DPM++ 2M SDE on the log-SNR schedule); "
    "coefficients in float64, tensors float32"
)
MASK64 = (1 << 64) - 1
LOGVAR_RANGE = (-30.0, 20.0)
STREAM_SDEDIT, STREAM_POSTERIOR, STREAM_SOLVER = 1, 2, 3


class PipelineError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Graph sessions with timing


class Graphs:
    """One onnxruntime session per role, opened once; every run() call is timed."""

    def __init__(self, model_dir: Path, manifest: dict, roles: list[str], threads: int,
                 cpu_arena: bool = True, decode_batch: int = 0):
        self.dir = model_dir
        self.manifest = manifest
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            options.intra_op_num_threads = threads
        options.enable_cpu_mem_arena = cpu_arena
        self.decode_batch = decode_batch
        self.sessions = {}
        self.outputs = {}
        self.creation_s = {}
        for role in roles:
            entry = manifest["graphs"].get(role)
            if entry is None:
                raise PipelineError(f"the model set has no `{role}` graph")
            started = time.perf_counter()
            session = ort.InferenceSession(
                str(model_dir / entry["file"]), options, providers=["CPUExecutionProvider"]
            )
            self.creation_s[role] = time.perf_counter() - started
            self.sessions[role] = session
            self.outputs[role] = [o.name for o in session.get_outputs()]
        self.reset_counters()

    def reset_counters(self):
        self.ort_s = 0.0
        self.calls = {role: [0, 0.0] for role in self.sessions}

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """The stage-1/2 VAE decoder, at most `decode_batch` frames per call (as st2v
        --vae-batch; 0: all at once)."""
        step = self.decode_batch or len(latents)
        parts = [self.run("vae_decoder", {"latents": latents[i : i + step]})[0]
                 for i in range(0, len(latents), step)]
        return np.concatenate(parts, axis=0)

    def run(self, role: str, feeds: dict) -> list[np.ndarray]:
        session = self.sessions[role]
        started = time.perf_counter()
        out = session.run(None, feeds)
        elapsed = time.perf_counter() - started
        self.ort_s += elapsed
        record = self.calls[role]
        record[0] += 1
        record[1] += elapsed
        return out


# ---------------------------------------------------------------------------------------------
# Tokenization (src/tokenizer.rs: BOS, tokens, EOS, padding with pad_id to max_length)


class ClipTokenizer:
    def __init__(self, model_dir: Path, entry: dict):
        from tokenizers import Tokenizer

        self.inner = Tokenizer.from_file(str(model_dir / entry["file"]))
        self.inner.no_padding()
        self.inner.no_truncation()
        self.entry = entry

    def encode(self, text: str) -> list[int]:
        cleaned = " ".join(text.split()).lower()
        tokens = self.inner.encode(cleaned, add_special_tokens=False).ids
        e = self.entry
        kept = tokens[: max(e["max_length"] - 2, 0)]
        ids = [e["bos_id"], *kept, e["eos_id"]]
        return ids + [e["pad_id"]] * (e["max_length"] - len(ids))


def encode_text(graphs: Graphs, role: str, prompt: list[int], negative: list[int]):
    """(uncond, cond) embeddings (1, L, D), negative and prompt in one batch-2 call."""
    ids = np.array([negative, prompt], dtype=np.int64)
    (states,) = graphs.run(role, {"input_ids": ids})
    return states[0:1], states[1:2]


# ---------------------------------------------------------------------------------------------
# Schedules (src/sampling/schedule.rs)


def alphas_cumprod(config: dict) -> np.ndarray:
    n = int(config.get("num_train_timesteps", 1000))
    kind = config.get("beta_schedule", "linear")
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    if config.get("trained_betas") is not None:
        betas = np.asarray(config["trained_betas"], dtype=np.float32)
    elif kind == "scaled_linear":
        betas = np.linspace(math.sqrt(start), math.sqrt(end), n, dtype=np.float32) ** 2
    elif kind == "linear":
        betas = np.linspace(start, end, n, dtype=np.float32)
    elif kind == "squaredcos_cap_v2":
        bar = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = np.array(
            [min(1 - bar((i + 1) / n) / bar(i / n), 0.999) for i in range(n)], dtype=np.float32
        )
    else:
        raise PipelineError(f"beta_schedule {kind!r} is not supported")
    return np.cumprod((np.float32(1.0) - betas).astype(np.float64)).astype(np.float32)


def spaced_timesteps(spacing: str, train: int, steps: int, offset: int, dpm: bool) -> list[int]:
    """DDIMScheduler / DPMSolverMultistepScheduler.set_timesteps, noisiest first."""
    if spacing == "leading":
        ratio = train // (steps + 1 if dpm else steps)
        first = 1 if dpm else 0
        return [i * ratio + offset for i in range(steps - 1 + first, first - 1, -1)]
    if spacing == "linspace":
        if dpm:
            points = np.round(np.linspace(0, train - 1, steps + 1)).astype(np.int64)[1:]
            return [int(t) for t in points[::-1]]
        return [int(t) for t in np.round(np.linspace(0, train - 1, steps))[::-1]]
    if spacing == "trailing":
        ratio = train / steps
        return [int(t) for t in np.round(np.arange(train, 0, -ratio)) - 1]
    raise PipelineError(f"timestep_spacing {spacing!r} is not supported")


def check_prediction(config: dict, allowed: tuple[str, ...]) -> str:
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in allowed:
        raise PipelineError(f"prediction_type {prediction!r} is not supported here")
    return prediction


class Ddim:
    """DDIM with stochasticity eta (src/sampling/ddim.rs; stage 2: eta 1)."""

    def __init__(self, config: dict, steps: int, eta: float):
        self.prediction = check_prediction(config, ("epsilon", "v_prediction"))
        if config.get("thresholding", False):
            raise PipelineError("DDIM thresholding is not supported here")
        self.clip = float(config.get("clip_sample_range", 1.0)) if config.get("clip_sample", True) else None
        ac = alphas_cumprod(config)
        train = len(ac)
        self.timesteps = spaced_timesteps(
            config.get("timestep_spacing", "leading"), train, steps,
            int(config.get("steps_offset", 0)), dpm=False,
        )
        ratio = train // steps
        final = 1.0 if config.get("set_alpha_to_one", True) else float(ac[0])
        self.eta = eta
        self.coefficients = []
        for t in self.timesteps:
            a = float(ac[t])
            prev = float(ac[t - ratio]) if t - ratio >= 0 else final
            variance = (1 - prev) / (1 - a) * (1 - a / prev)
            std = eta * math.sqrt(variance)
            self.coefficients.append(
                (math.sqrt(a), math.sqrt(1 - a), math.sqrt(prev), math.sqrt(1 - prev - std * std), std)
            )

    @property
    def init_noise_sigma(self) -> float:
        return 1.0

    def needs_noise(self, index: int) -> bool:
        return self.eta > 0

    def step(self, output: np.ndarray, index: int, sample: np.ndarray, noise) -> np.ndarray:
        a, b, a_prev, direction, std = self.coefficients[index]
        if self.prediction == "epsilon":
            eps = output
            x0 = (sample - b * eps) * (1.0 / a)
        else:
            x0 = a * sample - b * output
            eps = a * output + b * sample
        if self.clip is not None:
            x0 = np.clip(x0, -self.clip, self.clip)
        prev = a_prev * x0 + direction * eps
        if noise is not None:
            prev += std * noise
        return prev


class DpmSolverPP:
    """Multistep DPM-Solver++ (ODE), orders 1-2 (src/sampling/dpm_solver_multistep.rs;
    stage 1: second order, midpoint, first order at the first and last step)."""

    def __init__(self, config: dict, steps: int):
        self.prediction = check_prediction(config, ("epsilon", "v_prediction"))
        if config.get("algorithm_type", "dpmsolver++") != "dpmsolver++":
            raise PipelineError("only algorithm_type dpmsolver++ is supported here")
        self.order = int(config.get("solver_order", 2))
        if self.order not in (1, 2):
            raise PipelineError("solver_order 3 is not supported here")
        if config.get("solver_type", "midpoint") != "midpoint":
            raise PipelineError("only solver_type midpoint is supported here")
        ac = alphas_cumprod(config)
        self.timesteps = spaced_timesteps(
            config.get("timestep_spacing", "linspace"), len(ac), steps,
            int(config.get("steps_offset", 0)), dpm=True,
        )
        sigma_of = lambda a: float(np.sqrt((np.float32(1) - a) / a))  # noqa: E731
        self.sigmas = [sigma_of(ac[t]) for t in self.timesteps]
        zero_final = config.get("final_sigmas_type", "zero") == "zero"
        self.sigmas.append(0.0 if zero_final else sigma_of(ac[0]))
        n = len(self.timesteps)
        short = bool(config.get("lower_order_final", True)) and n < 15
        euler_final = bool(config.get("euler_at_final", False))
        # diffusers' warm-up and lower_order_final rules (order 2 at most here)
        self.orders = [
            1 if self.order == 1 or i == 0
            or (i + 1 == n and (euler_final or short or zero_final)) else 2
            for i in range(n)
        ]
        self.history: list[np.ndarray] = []

    def _asl(self, index: int):
        sigma = self.sigmas[index]
        alpha = 1.0 / math.sqrt(sigma * sigma + 1.0)
        sig = sigma * alpha
        lam = math.log(alpha) - math.log(sig) if sig > 0 else math.inf
        return alpha, sig, lam

    @property
    def init_noise_sigma(self) -> float:
        return 1.0

    def needs_noise(self, index: int) -> bool:
        return False

    def step(self, output: np.ndarray, index: int, sample: np.ndarray, noise) -> np.ndarray:
        alpha_s, sigma_s, lambda_s = self._asl(index)
        if self.prediction == "epsilon":
            x0 = (sample - sigma_s * output) * (1.0 / alpha_s)
        else:
            x0 = alpha_s * sample - sigma_s * output
        if index == 0:
            self.history = []
        self.history = (self.history + [x0])[-self.order :]
        alpha_t, sigma_t, lambda_t = self._asl(index + 1)
        h = lambda_t - lambda_s
        phi = -math.expm1(-h) if math.isfinite(h) else 1.0
        sample_coef = sigma_t / sigma_s
        d0 = alpha_t * phi
        if self.orders[index] == 1:
            return sample_coef * sample + d0 * x0
        _, _, lambda_prev = self._asl(index - 1)
        r0 = (lambda_s - lambda_prev) / h
        d1 = 0.5 * alpha_t * phi
        m0, m1 = self.history[-1], self.history[-2]
        return sample_coef * sample + (d0 + d1 / r0) * m0 + (-d1 / r0) * m1


class LogSnrSchedule:
    """The enhancer's logsnr_cosine_interp schedule (src/sampling/logsnr_schedule.rs)."""

    def __init__(self, config: dict):
        if config.get("schedule", "logsnr_cosine_interp") != "logsnr_cosine_interp":
            raise PipelineError("only the logsnr_cosine_interp schedule is supported")
        n = int(config.get("num_train_timesteps", 1000))
        lmin, lmax = float(config.get("logsnr_min", -15.0)), float(config.get("logsnr_max", 15.0))
        t_min, t_max = math.atan(math.exp(-0.5 * lmin)), math.atan(math.exp(-0.5 * lmax))
        t = np.linspace(1.0, 0.0, n)
        cosine = -2.0 * np.log(np.tan(t_min + t * (t_max - t_min)))
        low = cosine + 2.0 * math.log(1.0 / float(config.get("scale_min", 2.0)))
        high = cosine + 2.0 * math.log(1.0 / float(config.get("scale_max", 4.0)))
        logsnr = t * low + (1.0 - t) * high
        sigmas = np.sqrt(1.0 / (1.0 + np.exp(logsnr)))
        if config.get("zero_terminal_snr", True) and sigmas.max() != 1.0:
            lo, hi = sigmas.min(), sigmas.max()
            sigmas = lo + (1.0 - lo) / (hi - lo) * (sigmas - lo)
        self.sigmas = sigmas
        self.alphas = np.sqrt(1.0 - sigmas * sigmas)
        with np.errstate(divide="ignore"):
            self.log_sigmas = np.log(np.sqrt(sigmas * sigmas / (1.0 - sigmas * sigmas)))

    def t_to_sigma(self, t: float) -> float:
        last = len(self.log_sigmas) - 1
        low, high = min(max(math.floor(t), 0), last), min(max(math.ceil(t), 0), last)
        w = t - math.trunc(t)
        value = (1 - w) * self.log_sigmas[low] + (w * self.log_sigmas[high] if w else 0.0)
        return math.exp(value) if math.isfinite(value) else math.inf

    def sigma_to_t(self, sigma: float) -> float:
        n = len(self.log_sigmas)
        if math.isinf(sigma):
            return float(n - 1)
        log_sigma = math.log(sigma)
        hits = np.nonzero(log_sigma - self.log_sigmas >= 0)[0]
        low = min(int(hits[-1]) if len(hits) else 0, n - 2)
        lo, hi = self.log_sigmas[low], self.log_sigmas[low + 1]
        w = min(max((lo - log_sigma) / (lo - hi), 0.0), 1.0)
        return (1 - w) * low + w * (low + 1)


class Dpmpp2mSde:
    """DPM-Solver++(2M) SDE of the enhancer (src/sampling/dpmpp_2m_sde.rs), eta 1, midpoint.
    Stateless here: the caller keeps each frame's previous x0 (the update is elementwise)."""

    def __init__(self, config: dict, steps: int):
        check_prediction(config, ("v_prediction",))
        if config.get("discretization", "trailing") != "trailing":
            raise PipelineError("only the trailing discretization is supported here")
        self.schedule = LogSnrSchedule(config)
        t_max, t_min = int(config.get("t_max", 599)), int(config.get("t_min", 0))
        discard = bool(config.get("discard_penultimate_step", True))
        self.eta = float(config.get("eta", 1.0))
        count = steps + int(discard)
        span = t_max - t_min + 1.0
        delta = -(span / count)
        length = max(math.ceil(((t_min - 1.0) - t_max) / delta), 0)
        ts = [min(max(t_max + delta * i, t_min), t_max) for i in range(length)]
        sigmas = [self.schedule.t_to_sigma(t) for t in ts] + [0.0]
        if discard and len(sigmas) >= 2:
            del sigmas[-2]
        self.sigmas = sigmas
        self.timesteps = [int(round(self.schedule.sigma_to_t(s))) for s in sigmas[:-1]]
        if len(self.timesteps) != steps:
            raise PipelineError(
                f"--enhance-steps {steps}: the enhancer's discretization gives "
                f"{len(self.timesteps)} steps (the engine refuses such counts)"
            )
        self.c_in = [1.0 / math.sqrt(s * s + 1.0) for s in sigmas[:-1]]
        self.alpha_sigma = [
            (float(self.schedule.alphas[t]), float(self.schedule.sigmas[t])) for t in self.timesteps
        ]
        self.coefficients = []
        for i in range(len(self.timesteps)):
            sigma, nxt = sigmas[i], sigmas[i + 1]
            if nxt == 0.0:
                self.coefficients.append(None)
                continue
            h = math.log(sigma) - math.log(nxt)
            eta_h = self.eta * h
            phi = -math.expm1(-h - eta_h)
            sample_coef = nxt / sigma * math.exp(-eta_h)
            noise_coef = nxt * math.sqrt(-math.expm1(-2.0 * eta_h))
            correction = 0.0
            if i > 0:
                h_last = math.log(sigmas[i - 1]) - math.log(sigma)
                correction = 0.5 * phi * h / h_last
            self.coefficients.append((sample_coef, phi + correction, -correction, noise_coef))

    @property
    def init_noise_sigma(self) -> float:
        return self.sigmas[0]

    def needs_noise(self, index: int) -> bool:
        return self.eta > 0 and self.sigmas[index + 1] > 0

    def add_noise(self, clean: np.ndarray, noise: np.ndarray, t: int) -> np.ndarray:
        alpha, sigma = float(self.schedule.alphas[t]), float(self.schedule.sigmas[t])
        return alpha * clean + sigma * noise

    def step_denoised(self, x0, index, sample, previous, noise):
        coefs = self.coefficients[index]
        if coefs is None:
            return x0.copy()
        c_sample, c_x0, c_prev, c_noise = coefs
        out = c_sample * sample + c_x0 * x0
        if previous is not None and index > 0:
            out += c_prev * previous
        if noise is not None:
            out += c_noise * noise
        return out


def build_scheduler(entry: dict, steps: int, eta: float | None = None):
    kind, config = entry["type"], entry.get("config", {})
    if kind == "ddim":
        return Ddim(config, steps, 0.0 if eta is None else eta)
    if kind == "dpmsolver_multistep":
        return DpmSolverPP(config, steps)
    if kind == "dpmpp_2m_sde":
        config = dict(config)
        if eta is not None:
            config["eta"] = eta
        return Dpmpp2mSde(config, steps)
    raise PipelineError(f"scheduler type {kind!r} is not supported")


# ---------------------------------------------------------------------------------------------
# Guidance (src/sampling/guidance.rs)


def joint_guidance(batched: np.ndarray, scale: float, rescale: float | None = None) -> np.ndarray:
    """Batch [uncond, cond] -> uncond + s (cond - uncond), optionally std-rescaled per sample."""
    half = batched.shape[0] // 2
    uncond, cond = batched[:half], batched[half:]
    guided = uncond + scale * (cond - uncond)
    if rescale is not None:
        for i in range(guided.shape[0]):
            ratio = cond[i].std(ddof=1, dtype=np.float64) / (
                guided[i].std(ddof=1, dtype=np.float64) + 1e-12
            )
            guided[i] *= rescale * ratio + (1.0 - rescale)
    return guided


def repeat_batch(sample: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([sample] * batch, axis=0) if batch > 1 else sample


def latents_to_frames(latents: np.ndarray, scaling: float) -> np.ndarray:
    """(1, C, F, h, w) -> (F, C, h, w) / scaling, contiguous."""
    return np.ascontiguousarray(latents[0].transpose(1, 0, 2, 3)) * (1.0 / scaling)


def decoded_to_unit(images: np.ndarray) -> np.ndarray:
    return np.clip(images * 0.5 + 0.5, 0.0, 1.0)


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
# Timing of one run


class RunClock:
    def __init__(self):
        self.started = time.perf_counter()
        self.first_frame_s = None
        self.frames = 0
        self.stage_s = {"stage1": 0.0, "stage2": 0.0, "stage3": 0.0}
        self.step_ms = {"stage1": [], "stage2": [], "stage3": []}
        self.chunk_ms = []
        self.text_s = 0.0

    def frame_out(self, count: int = 1):
        if self.first_frame_s is None and count > 0:
            self.first_frame_s = time.perf_counter() - self.started
        self.frames += count


class Timer:
    """Adds the wall time of a block to a stage's total (exclusive of nested timers)."""

    def __init__(self, clock: RunClock):
        self.clock = clock
        self.stack: list[list] = []

    def __call__(self, stage: str):
        timer = self

        class Block:
            def __enter__(self):
                now = time.perf_counter()
                if timer.stack:
                    outer = timer.stack[-1]
                    timer.clock.stage_s[outer[0]] += now - outer[1]
                timer.stack.append([stage, now])

            def __exit__(self, *exc):
                now = time.perf_counter()
                name, since = timer.stack.pop()
                timer.clock.stage_s[name] += now - since
                if timer.stack:
                    timer.stack[-1][1] = now
                return False

        return Block()


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
                frame = self.geometry.crop(decoded_to_unit(images)[0])
                del frame  # handed out (the engine writes it to the output)
                self.clock.frame_out()

    def finish(self):
        with self.timer("stage3"):
            self.pump()
            if self.window_start != self.plan.padded:
                raise PipelineError("the enhancer did not receive every frame")


# ---------------------------------------------------------------------------------------------
# The whole pipeline (src/pipeline/compose.rs `generate`)


def frame_plan(requested: int, chunk: int, cond: int) -> tuple[int, int]:
    if requested < chunk:
        raise PipelineError(f"--frames must be at least {chunk} (one chunk)")
    chunks = (requested - cond) // (chunk - cond)
    return chunks, cond + (chunk - cond) * chunks


def generate(graphs: Graphs, manifest: dict, tokenizers: dict, args, clock: RunClock) -> int:
    pipeline = manifest["pipeline"]
    s1, s2, s3 = pipeline["stage1"], pipeline["stage2"], pipeline.get("stage3")
    scaling = float(pipeline["vae_scaling_factor"])
    chunks, total = frame_plan(args.frames, int(s2["chunk_frames"]), int(s2["cond_frames"]))
    cond_frames = int(s2["cond_frames"])
    timer = Timer(clock)
    prompt, negative = args.prompt, args.negative_prompt

    enhancer = None
    if not args.no_enhance:
        tok = tokenizers["enhancer_text"]
        started = time.perf_counter()
        uncond, cond = encode_text(
            graphs, "enhancer_text_encoder", tok.encode(f"{prompt}, "), tok.encode(negative)
        )
        guided = float(s3["guidance_scale"]) != 1.0
        context = np.concatenate([uncond, cond]) if guided else cond
        clock.text_s += time.perf_counter() - started
        enhancer = Enhancer(graphs, pipeline, context, total, args.enhance_steps, args.seed, clock, timer)

    def emit(frames: np.ndarray):
        if enhancer is None:
            clock.frame_out(frames.shape[0])
        else:
            for frame in frames:
                enhancer.push(frame)

    tok = tokenizers["text"]
    started = time.perf_counter()
    uncond, cond = encode_text(graphs, "text_encoder", tok.encode(prompt), tok.encode(negative))
    clock.text_s += time.perf_counter() - started

    # Stage 1
    with timer("stage1"):
        scale1 = float(s1["guidance_scale"])
        guided1 = scale1 != 1.0
        context1 = np.concatenate([uncond, cond]) if guided1 else cond
        scheduler = build_scheduler(s1["scheduler"], args.stage1_steps)
        h, w = s1["height"] // pipeline["vae_scale_factor"], s1["width"] // pipeline["vae_scale_factor"]
        rng = np.random.default_rng(args.seed)
        latents = rng.standard_normal(
            (1, pipeline["latent_channels"], s1["num_frames"], h, w), dtype=np.float32
        ) * scheduler.init_noise_sigma
        batch = 2 if guided1 else 1
        for index, t in enumerate(scheduler.timesteps):
            started = time.perf_counter()
            (out,) = graphs.run("stage1_unet", {
                "sample": repeat_batch(latents, batch),
                "timestep": np.full((batch,), t, dtype=np.int64),
                "encoder_hidden_states": context1,
            })
            guided = joint_guidance(out, scale1) if guided1 else out
            latents = scheduler.step(guided, index, latents, None)
            clock.step_ms["stage1"].append((time.perf_counter() - started) * 1e3)
        images = graphs.decode(latents_to_frames(latents, scaling))
        first = decoded_to_unit(images)
    emit(first)

    # Stage 2
    with timer("stage2"):
        anchor = first[0]
        cond_frames_now = first[-cond_frames:]
        both = np.stack([anchor * 2.0 - 1.0, np.zeros_like(anchor)])
        (embeds,) = graphs.run("image_encoder", {"images": both})
        (tokens,) = graphs.run("apm_resampler", {"image_embeds": embeds})
        anchor_tokens, zero_tokens = tokens[0:1], tokens[1:2]
        scale2 = float(s2["guidance_scale"])
        guided2 = scale2 != 1.0
        if guided2:
            context2 = np.concatenate([
                np.concatenate([uncond, zero_tokens], axis=1),
                np.concatenate([cond, anchor_tokens], axis=1),
            ])
        else:
            context2 = np.concatenate([cond, anchor_tokens], axis=1)
        text_tokens = int(pipeline["text_tokens"])
        cam_text = np.ascontiguousarray(context2[:, :text_tokens])
        batch = 2 if guided2 else 1
        rng = np.random.default_rng(args.stage2_seed if args.stage2_seed is not None else args.seed)
        h, w = s2["height"] // pipeline["vae_scale_factor"], s2["width"] // pipeline["vae_scale_factor"]
        shape = (1, pipeline["latent_channels"], s2["chunk_frames"], h, w)
    for _chunk in range(1, chunks):
        with timer("stage2"):
            chunk_started = time.perf_counter()
            (cond_features,) = graphs.run(
                "cam_cond_encoder", {"cond_frames": cond_frames_now * 2.0 - 1.0}
            )
            scheduler = build_scheduler(s2["scheduler"], args.steps, float(s2.get("eta", 0.0)))
            latents = rng.standard_normal(shape, dtype=np.float32) * scheduler.init_noise_sigma
            for index, t in enumerate(scheduler.timesteps):
                started = time.perf_counter()
                sample = repeat_batch(latents, batch)
                timesteps = np.full((batch,), t, dtype=np.int64)
                residuals = graphs.run("cam", {
                    "sample": np.ascontiguousarray(sample[:, :, :cond_frames]),
                    "timestep": timesteps,
                    "encoder_hidden_states": cam_text,
                    "cond_features": cond_features,
                })
                feeds = dict(zip(graphs.outputs["cam"], residuals))
                feeds.update(sample=sample, timestep=timesteps, encoder_hidden_states=context2)
                (out,) = graphs.run("unet", feeds)
                guided = joint_guidance(out, scale2) if guided2 else out
                noise = None
                if scheduler.needs_noise(index):
                    f, c = shape[2], shape[1]
                    noise = rng.standard_normal((f, c, h, w), dtype=np.float32).transpose(1, 0, 2, 3)[None]
                latents = scheduler.step(guided, index, latents, noise)
                clock.step_ms["stage2"].append((time.perf_counter() - started) * 1e3)
            images = graphs.decode(latents_to_frames(latents, scaling))
            new_frames = decoded_to_unit(images)[cond_frames:]
            cond_frames_now = new_frames[-cond_frames:]
            clock.chunk_ms.append((time.perf_counter() - chunk_started) * 1e3)
        emit(new_frames)

    if enhancer is not None:
        enhancer.finish()
    return total


# ---------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", required=True, type=Path, help="model-set directory")
    p.add_argument("--frames", type=int, required=True, help="stage-2 frames (16 + 8k)")
    p.add_argument("--stage1-steps", type=int, required=True)
    p.add_argument("--steps", type=int, required=True, help="stage-2 steps")
    p.add_argument("--enhance-steps", type=int, required=True)
    p.add_argument("--no-enhance", action="store_true", help="skip stage 3")
    p.add_argument("--runs", type=int, default=1, help="runs; the first is a warm-up if > 1")
    p.add_argument("--seed", type=int, default=33)
    p.add_argument("--stage2-seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: onnxruntime's)")
    p.add_argument("--vae-batch", type=int, default=0,
                   help="frames per stage-1/2 VAE decoder call (as st2v --vae-batch; 0: a chunk)")
    p.add_argument("--no-cpu-arena", action="store_true",
                   help="turn onnxruntime's CPU memory arena off (as st2v --no-cpu-arena)")
    p.add_argument("--json", required=True, type=Path, help="where to write the report")
    p.add_argument("--prompt", default="a cat running on the street")
    p.add_argument("--negative-prompt", default="")
    p.add_argument(
        "--fresh-sessions", action="store_true",
        help="create the sessions inside every run (counted in its end_to_end_s)",
    )
    args = p.parse_args(argv)
    for name in ("frames", "stage1_steps", "steps", "enhance_steps", "runs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.threads < 0:
        p.error("--threads must be >= 0")
    return args


def roles_for(enhance: bool) -> list[str]:
    roles = ["text_encoder", "stage1_unet", "image_encoder", "apm_resampler",
             "cam_cond_encoder", "cam", "unet", "vae_decoder"]
    if enhance:
        roles += ["enhancer_text_encoder", "enhancer_unet", "enhancer_vae_encoder",
                  "enhancer_vae_decoder"]
    return roles


def main(argv=None) -> int:
    args = parse_args(argv)
    manifest = json.loads((args.models / "manifest.json").read_text())
    tokenizers = {
        name: ClipTokenizer(args.models, entry) for name, entry in manifest["tokenizers"].items()
    }
    roles = roles_for(not args.no_enhance)

    def open_graphs():
        started = time.perf_counter()
        graphs = Graphs(args.models, manifest, roles, args.threads, not args.no_cpu_arena,
                        args.vae_batch)
        return graphs, time.perf_counter() - started

    graphs, creation_s = (None, 0.0) if args.fresh_sessions else open_graphs()
    runs = []
    frames = 0
    for run in range(args.runs):
        run_creation_s = creation_s if run == 0 else 0.0
        clock = RunClock()
        if args.fresh_sessions:
            graphs, run_creation_s = open_graphs()
            creation_s = creation_s or run_creation_s
        graphs.reset_counters()
        frames = generate(graphs, manifest, tokenizers, args, clock)
        end_to_end = time.perf_counter() - clock.started
        stages = {
            "stage1": {"seconds": clock.stage_s["stage1"], "step_ms": clock.step_ms["stage1"]},
            "stage2": {"seconds": clock.stage_s["stage2"], "step_ms": clock.step_ms["stage2"],
                       "chunk_ms": clock.chunk_ms},
        }
        if not args.no_enhance:
            stages["stage3"] = {"seconds": clock.stage_s["stage3"], "step_ms": clock.step_ms["stage3"]}
        runs.append({
            "end_to_end_s": end_to_end,
            "session_creation_s": run_creation_s,
            "text_encoding_s": clock.text_s,
            "stages": stages,
            "ort_s": graphs.ort_s,
            "time_to_first_frame_s": clock.first_frame_s,
            "frames": clock.frames,
            "graphs": {
                role: {"calls": calls, "ort_s": seconds}
                for role, (calls, seconds) in graphs.calls.items() if calls
            },
        })
        warmup = " (warm-up, not reported)" if args.runs > 1 and run == 0 else ""
        print(
            f"run {run + 1}/{args.runs}{warmup}: {end_to_end:.2f} s end to end, "
            f"{graphs.ort_s:.2f} s in onnxruntime, {clock.frames} frames",
            file=sys.stderr,
        )
    reported = runs[1:] if args.runs > 1 else runs
    report = {
        "tool": "python-onnxruntime",
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "scheduler_impl": SCHEDULER_IMPL,
        "models": str(args.models),
        "providers": ["CPUExecutionProvider"],
        "threads": args.threads,
        "cpu_arena": not args.no_cpu_arena,
        "vae_batch": args.vae_batch,
        "enhance": not args.no_enhance,
        "steps": {"stage1": args.stage1_steps, "stage2": args.steps,
                  "stage3": 0 if args.no_enhance else args.enhance_steps},
        "frames": frames,
        "warmup_runs": 1 if args.runs > 1 else 0,
        "session_creation_s": creation_s,
        "session_creation_per_graph_s": graphs.creation_s if graphs else {},
        "end_to_end_includes_session_creation": bool(args.fresh_sessions),
        "runs": reported,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PipelineError as err:
        print(f"py_orchestrator: {err}", file=sys.stderr)
        sys.exit(2)

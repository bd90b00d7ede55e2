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
float32 arrays; `peer_sampling.py`), stage 3 lives in `peer_stage3.py`. Usage and the JSON it
writes: benches/README.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from peer_sampling import (
    PipelineError, build_scheduler, decoded_to_unit, joint_guidance, latents_to_frames,
    repeat_batch,
)
from peer_stage3 import Enhancer

SCHEDULER_IMPL = (
    "numpy: ports of src/sampling (DDIM, DPM-Solver++ 2M, DPM++ 2M SDE on the log-SNR schedule); "
    "coefficients in float64, tensors float32"
)

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

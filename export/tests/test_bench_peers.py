"""The Python peers of `st2v bench` (benches/py_orchestrator.py, benches/torch_eager.py): their
JSON reports on the tiny model set, the work they count, and that the eager modules they time
compute what the ONNX graphs compute.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_SET = REPO_ROOT / "models" / "tiny"
BENCHES = REPO_ROOT / "benches"
sys.path.insert(0, str(BENCHES))

import peer_stage3  # noqa: E402
import py_orchestrator  # noqa: E402
import torch_eager  # noqa: E402


def _run(script: str, *args: str, timeout: float = 120) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHES / script), *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def orchestrated(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("py_orchestrator") / "report.json"
    _run(
        "py_orchestrator.py", "--models", str(TINY_SET), "--frames", "24", "--stage1-steps", "2",
        "--steps", "2", "--enhance-steps", "2", "--runs", "1", "--seed", "5", "--threads", "2",
        "--json", str(out),
    )
    return json.loads(out.read_text())


def test_orchestrator_report_has_the_bench_fields(orchestrated):
    report = orchestrated
    assert report["tool"] == "python-onnxruntime"
    for key in ("python", "onnxruntime", "numpy", "scheduler_impl"):
        assert isinstance(report[key], str) and report[key]
    assert report["frames"] == 24
    assert len(report["runs"]) == 1
    run = report["runs"][0]
    for key in ("end_to_end_s", "session_creation_s", "ort_s", "time_to_first_frame_s"):
        assert isinstance(run[key], float) and run[key] > 0, key
    assert run["ort_s"] <= run["end_to_end_s"]
    assert run["time_to_first_frame_s"] <= run["end_to_end_s"]
    assert run["frames"] == 24
    stages = run["stages"]
    assert set(stages) == {"stage1", "stage2", "stage3"}
    for stage in stages.values():
        assert stage["seconds"] > 0
        assert all(ms > 0 for ms in stage["step_ms"])
    assert sum(s["seconds"] for s in stages.values()) <= run["end_to_end_s"]


def test_orchestrator_does_the_engines_work(orchestrated):
    """24 frames: the stage-1 chunk and one stage-2 chunk (2 steps each), one 24-frame enhancer
    chunk (2 steps); per-frame VAE calls in stage 3, as the engine makes them."""
    run = orchestrated["runs"][0]
    stages = run["stages"]
    assert len(stages["stage1"]["step_ms"]) == 2
    assert len(stages["stage2"]["step_ms"]) == 2
    assert len(stages["stage2"]["chunk_ms"]) == 1
    assert len(stages["stage3"]["step_ms"]) == 2
    calls = {role: entry["calls"] for role, entry in run["graphs"].items()}
    assert calls == {
        "text_encoder": 1, "stage1_unet": 2, "vae_decoder": 2, "image_encoder": 1,
        "apm_resampler": 1, "cam_cond_encoder": 1, "cam": 2, "unet": 2,
        "enhancer_text_encoder": 1, "enhancer_unet": 2, "enhancer_vae_encoder": 24,
        "enhancer_vae_decoder": 24,
    }
    assert abs(sum(e["ort_s"] for e in run["graphs"].values()) - run["ort_s"]) < 1e-6


def test_orchestrator_warm_up_run_and_no_enhance(tmp_path):
    out = tmp_path / "report.json"
    _run(
        "py_orchestrator.py", "--models", str(TINY_SET), "--frames", "39", "--stage1-steps", "1",
        "--steps", "1", "--enhance-steps", "2", "--no-enhance", "--runs", "2", "--threads", "2",
        "--json", str(out),
    )
    report = json.loads(out.read_text())
    assert report["frames"] == 32  # 39 rounds down to 16 + 8k
    assert report["warmup_runs"] == 1 and len(report["runs"]) == 1
    run = report["runs"][0]
    assert set(run["stages"]) == {"stage1", "stage2"}
    assert len(run["stages"]["stage2"]["chunk_ms"]) == 2
    assert len(run["stages"]["stage2"]["step_ms"]) == 2
    assert run["session_creation_s"] == 0.0  # sessions were opened for the warm-up run
    assert "enhancer_unet" not in run["graphs"]


def test_enhancer_wavefront_equals_whole_video_sampling():
    """The wavefront (frames advancing as soon as every covering chunk ran) gives what one
    solver over the whole video with blended x0 gives, here with a stand-in UNet."""
    pipeline = json.loads((TINY_SET / "manifest.json").read_text())["pipeline"]

    class Graphs:
        def run(self, role, feeds):
            if role == "enhancer_vae_encoder":
                mean = feeds["images"][:, :, ::8, ::8][:, :, :10, :16]
                mean = np.concatenate([mean, mean[:, :1]], axis=1)
                return [np.ascontiguousarray(mean), np.full_like(mean, -2.0)]
            if role == "enhancer_unet":
                sample = feeds["sample"]
                offset = np.arange(sample.shape[0], dtype=np.float32).reshape(-1, 1, 1, 1, 1)
                return [np.tanh(sample) * 0.3 + 0.1 * offset]
            return [np.zeros((feeds["latents"].shape[0], 3, 80, 128), np.float32)]

    frames, steps, seed = 32, 4, 7  # two chunks, the second an end-aligned tail (overlap 16)
    context = np.zeros((2, 77, 16), np.float32)
    video = np.random.default_rng(1).random((frames, 3, 64, 64), dtype=np.float32)

    def enhancer():
        clock = py_orchestrator.RunClock()
        return py_orchestrator.Enhancer(
            Graphs(), pipeline, context, frames, steps, seed, clock, py_orchestrator.Timer(clock)
        )

    wave = enhancer()
    finished = []

    def collect():
        while wave.window_start < wave.plan.padded and wave.step[wave.window_start] == steps:
            finished.append(wave.x[wave.window_start].copy())
            wave.window_start += 1

    wave.hand_out_final = collect
    for frame in video:
        wave.push(frame)
    wave.finish()

    whole = enhancer()
    for index, frame in enumerate(video):
        whole.admit(whole.encode(frame, index), index)
    x, previous, solver = whole.x.copy(), None, whole.solver
    for step in range(steps):
        blended = np.zeros_like(x)
        for chunk, (start, end, _) in enumerate(whole.plan.chunks):
            model_in = np.ascontiguousarray(x[start:end].transpose(1, 0, 2, 3)[None]) * solver.c_in[step]
            (out,) = Graphs().run("enhancer_unet", {"sample": np.concatenate([model_in, model_in])})
            v = py_orchestrator.joint_guidance(out, whole.scale, whole.rescale)
            alpha, sigma = solver.alpha_sigma[step]
            x0 = alpha * model_in - sigma * v
            owned = whole.plan.owned_frames(seed, chunk, step)
            blended[owned.start : owned.stop] = x0[0, :, owned.start - start : owned.stop - start].transpose(1, 0, 2, 3)
        noise = None
        if solver.needs_noise(step):
            noise = np.stack([
                peer_stage3.frame_noise(seed, peer_stage3.STREAM_SOLVER, step + 1, f, x.shape[1:])
                for f in range(len(x))
            ])
        x = solver.step_denoised(blended, step, x, previous, noise)
        previous = blended
    assert len(finished) == frames
    np.testing.assert_array_equal(np.stack(finished), x)


def test_scheduler_ports_match_diffusers():
    diffusers = pytest.importorskip("diffusers")
    torch = pytest.importorskip("torch")
    pipeline = json.loads((TINY_SET / "manifest.json").read_text())["pipeline"]
    rng = np.random.default_rng(0)
    cases = [
        ("stage2", diffusers.DDIMScheduler, {"eta": 1.0}),
        ("stage1", diffusers.DPMSolverMultistepScheduler, {}),
    ]
    for stage, cls, step_kwargs in cases:
        entry = pipeline[stage]["scheduler"]
        config = dict(entry["config"])
        if cls is diffusers.DPMSolverMultistepScheduler:
            config.pop("set_alpha_to_one", None)
        reference = cls(**config)
        reference.set_timesteps(6)
        ours = py_orchestrator.build_scheduler(entry, 6, 1.0 if stage == "stage2" else None)
        assert [int(t) for t in reference.timesteps] == ours.timesteps
        x = rng.standard_normal((1, 4, 16, 8, 8), dtype=np.float32)
        x_ref = torch.from_numpy(x.copy())
        for index, t in enumerate(ours.timesteps):
            eps = rng.standard_normal(x.shape, dtype=np.float32)
            noise = rng.standard_normal(x.shape, dtype=np.float32) if ours.needs_noise(index) else None
            x = ours.step(eps, index, x, noise)
            kwargs = dict(step_kwargs)
            if noise is not None:
                kwargs["variance_noise"] = torch.from_numpy(noise)
            x_ref = reference.step(torch.from_numpy(eps), int(t), x_ref, **kwargs).prev_sample
        np.testing.assert_allclose(x, x_ref.numpy(), rtol=1e-5, atol=1e-4)


def test_enhancer_schedule_matches_the_reference_values():
    pipeline = json.loads((TINY_SET / "manifest.json").read_text())["pipeline"]
    solver = py_orchestrator.build_scheduler(pipeline["stage3"]["scheduler"], 30)
    assert len(solver.sigmas) == 31 and solver.sigmas[-1] == 0.0
    assert abs(solver.sigmas[0] - 4.16477) < 1e-5
    assert solver.timesteps[0] == 599
    assert abs(solver.schedule.sigmas[599] - 0.9723632) < 1e-6


SMALL_SHAPES = {
    "vae_decoder": {"latents": {"shape": [2, 4, 8, 8], "dtype": "float32"}},
    "text_encoder": {"input_ids": {"shape": [2, 77], "dtype": "int64"}},
    "cam": {"sample": {"shape": [1, 4, 8, 8, 8], "dtype": "float32"}},  # inputs missing
}


def test_torch_eager_report_on_tiny(tmp_path):
    shapes = tmp_path / "shapes.json"
    shapes.write_text(json.dumps(SMALL_SHAPES))
    out = tmp_path / "report.json"
    _run(
        "torch_eager.py", "--preset", "tiny", "--roles", "vae_decoder,text_encoder,cam,nope",
        "--shapes", str(shapes), "--warmup", "1", "--runs", "2", "--threads", "2",
        "--onnx-models", str(TINY_SET), "--json", str(out),
    )
    report = json.loads(out.read_text())
    assert report["tool"] == "torch-eager"
    assert report["preset"] == "tiny" and report["torch"]
    graphs = report["graphs"]
    for role in ("vae_decoder", "text_encoder"):
        assert graphs[role]["error"] is None
        assert len(graphs[role]["ms"]) == 2 and all(ms > 0 for ms in graphs[role]["ms"])
        assert graphs[role]["onnx_check"]["max_abs_err"] < 1e-4
    assert graphs["vae_decoder"]["inputs"]["latents"]["shape"] == [2, 4, 8, 8]
    assert graphs["cam"]["ms"] == [] and "timestep" in graphs["cam"]["error"]
    assert graphs["nope"]["ms"] == [] and "unknown role" in graphs["nope"]["error"]


@pytest.mark.parametrize(
    ("role", "shapes"),
    [
        ("vae_decoder", {"latents": {"shape": [3, 4, 8, 8], "dtype": "float32"}}),
        ("enhancer_vae_decoder", {"latents": {"shape": [2, 4, 10, 16], "dtype": "float32"}}),
    ],
)
def test_eager_module_computes_what_the_onnx_graph_computes(role, shapes):
    ort = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    module = torch_eager.build_module("tiny", role, seed=0)
    inputs = torch_eager.make_inputs(role, shapes, seed=3)
    with torch.inference_mode():
        expected = module(*inputs.values()).numpy()
    manifest = json.loads((TINY_SET / "manifest.json").read_text())
    session = ort.InferenceSession(str(TINY_SET / manifest["graphs"][role]["file"]))
    (got,) = session.run(None, {name: t.numpy() for name, t in inputs.items()})
    assert got.shape == expected.shape
    assert float(np.abs(got - expected).max()) < 1e-4
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-5)


def test_torch_eager_reports_what_it_cannot_hold(monkeypatch):
    monkeypatch.setattr(torch_eager, "mem_available", lambda: 64 * 1024)
    args = torch_eager.parse_args([
        "--preset", "tiny", "--roles", "vae_decoder", "--shapes", "unused.json", "--json", "x.json",
    ])
    result = torch_eager.measure_in_process(args, "vae_decoder", SMALL_SHAPES["vae_decoder"])
    assert result["ms"] == []
    assert "not enough memory" in result["error"] and "GiB available" in result["error"]


def test_torch_eager_isolated_role_past_its_timeout_is_an_error(tmp_path):
    shapes = tmp_path / "shapes.json"
    shapes.write_text(json.dumps(SMALL_SHAPES))
    out = tmp_path / "report.json"
    _run(
        "torch_eager.py", "--preset", "tiny", "--roles", "vae_decoder", "--shapes", str(shapes),
        "--isolate", "always", "--role-timeout", "0.2", "--json", str(out),
    )
    entry = json.loads(out.read_text())["graphs"]["vae_decoder"]
    assert entry["ms"] == [] and "--role-timeout" in entry["error"]

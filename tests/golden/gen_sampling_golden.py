#!/usr/bin/env python3
"""Writes the golden fixtures of tests/sampling_golden.rs from the reference libraries.

Run: /work/main/.venv/bin/python tests/golden/gen_sampling_golden.py  (CPU; torch 2.15 on an
x86-64 CPU with AVX2 for the bit-exact randn values, diffusers 0.42.1, modelscope 1.40.2).

Fixtures (all written next to this script):
- sampling_noise.json: torch.manual_seed + randn / rand / randint draws (float32 values are
  exact; large draws as SHA-256 of the little-endian bytes), and StreamingT2V's mixed noise.
- sampling_schedulers.json: diffusers DDIMScheduler / DPMSolverMultistepScheduler tables,
  timesteps and teacher-forced step chains. The schedulers' float32 tables are promoted to
  float64 after construction, so each step is evaluated in double on diffusers' own table
  values: the fixture checks the algorithm, not float32 rounding.
- sampling_enhancer.json: modelscope's video_to_video log-SNR schedule, the solver sigmas and
  integer timesteps, and a full `GaussianDiffusion_SDEdit.sample` run (DPM++ 2M SDE, CFG with
  rescale, v-prediction) with a scripted model and scripted noise, evaluated in float64.
- sampling_guidance.json: joint / multi-condition guidance and the enhancer's rescale.
"""

import hashlib
import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

HERE = Path(__file__).resolve().parent
SHAPE = [2, 4, 2, 2, 3]
CHAIN_STEPS = 10


def floats(t):
    """Exact values (float32 draws print as the double equal to them)."""
    return [float(v) for v in torch.as_tensor(t).reshape(-1).tolist()]


def compact(t):
    """9 significant digits: recovers float32 inputs exactly, float64 results to 5e-10."""
    return [float(f"{v:.9g}") for v in torch.as_tensor(t).reshape(-1).tolist()]


def f32_sha256(t):
    data = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
    return hashlib.sha256(data).hexdigest()


def write(name, payload):
    payload = {"generator": "tests/golden/gen_sampling_golden.py", **payload}
    (HERE / name).write_text(json.dumps(payload, separators=(",", ":")) + "\n")


# ----------------------------------------------------------------------------- noise


def randn_case(seed, shapes):
    torch.manual_seed(seed)
    calls = []
    for shape in shapes:
        x = torch.randn(shape)
        call = {"shape": list(shape), "sha256": f32_sha256(x)}
        if x.numel() <= 300:
            call["values"] = floats(x)
        else:
            call["head"] = floats(x.reshape(-1)[:32])
        calls.append(call)
    return {"seed": seed, "calls": calls}


def mixed_noise(seed, alpha, shape, chunks):
    """The draw sequence of NoiseGenerator.sample_noise (mode mixed_noise, frame axis 2)."""
    g = torch.Generator().manual_seed(seed)
    per_frame = list(shape)
    per_frame[2] = 1
    ones = torch.ones(per_frame)
    zeros = torch.zeros(per_frame)
    shared = None
    out = []
    for _ in range(chunks):
        if shared is None:
            std = math.sqrt(alpha**2 / (1 + alpha**2)) * ones
            shared = torch.normal(mean=zeros, std=std, generator=g)
        inds = []
        for _ in range(shape[2]):
            std = math.sqrt(1 / (1 + alpha**2)) * ones
            inds.append(torch.normal(mean=zeros, std=std, generator=g))
        out.append(floats(torch.cat([shared + e for e in inds], dim=2)))
    return {"seed": seed, "alpha": alpha, "shape": list(shape), "chunks": out}


def noise_fixture():
    randn = [
        randn_case(0, [[3], [3], [1]]),
        randn_case(33, [[5], [16], [17], [2], [SHAPE[0], *SHAPE[1:]]]),
        randn_case(42, [[15], [31], [16], [1, 4, 3, 5, 7]]),
        randn_case(666, [[1, 4, 16, 32, 32], [16, 4, 32, 32]]),
        randn_case(2**32 + 5, [[40]]),
        randn_case(123456789, [[24, 4, 9, 16]]),
        randn_case(2024, [[1, 4, 24, 45, 80], [7]]),  # large enough for the threaded transform
    ]
    torch.manual_seed(7)
    rand = floats(torch.rand(37))
    randint_small = [int(v) for v in torch.randint(0, 8, (50,)).tolist()]
    randint_large = [int(v) for v in torch.randint(-5, 2**40, (6,)).tolist()]
    return {
        "randn": randn,
        "rand_then_randint": {
            "seed": 7,
            "rand": rand,
            "randint_0_8": randint_small,
            "randint_-5_2^40": randint_large,
        },
        "mixed": [
            mixed_noise(33, 1.0, [1, 4, 3, 2, 4], 2),
            mixed_noise(5, 0.5, [1, 2, 4, 4, 2], 1),
        ],
    }


# ------------------------------------------------------------------------ schedulers

MODELSCOPE = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    prediction_type="epsilon",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)


def chain_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(SHAPE, generator=g)
    outputs = [torch.randn(SHAPE, generator=g) * 0.8 + 0.1 for _ in range(CHAIN_STEPS)]
    noises = [torch.randn(SHAPE, generator=g) for _ in range(CHAIN_STEPS)]
    return sample, outputs, noises


def promote(scheduler):
    """Double-precision evaluation on the scheduler's own float32 table values."""
    for name in ("alphas_cumprod", "final_alpha_cumprod", "sigmas", "alpha_t", "sigma_t", "lambda_t"):
        value = getattr(scheduler, name, None)
        if isinstance(value, torch.Tensor):
            setattr(scheduler, name, value.to(torch.float64))


def ddim_chain(config, eta, inputs):
    sample, outputs, noises = inputs
    s = DDIMScheduler(**config)
    s.set_timesteps(CHAIN_STEPS)
    promote(s)
    steps = []
    x = sample.to(torch.float64)
    for i, t in enumerate(s.timesteps):
        out = s.step(outputs[i].double(), int(t), x, eta=eta, variance_noise=noises[i].double())
        # prev_sample exact: the next step's input is its float32 rounding.
        steps.append({"prev_sample": floats(out.prev_sample), "pred_original_sample": compact(out.pred_original_sample)})
        x = out.prev_sample.to(torch.float32).to(torch.float64)  # the next input is float32
    return {"timesteps": [int(t) for t in s.timesteps], "steps": steps}


def dpm_chain(config, inputs):
    sample, outputs, noises = inputs
    s = DPMSolverMultistepScheduler(**config)
    s.set_timesteps(CHAIN_STEPS)
    promote(s)
    steps = []
    x = sample.to(torch.float64)
    for i, t in enumerate(s.timesteps):
        out = s.step(outputs[i].double(), t, x, variance_noise=noises[i].double())
        x0 = s.model_outputs[-1]  # the step's converted model output: its x0 prediction
        steps.append({"prev_sample": floats(out.prev_sample), "pred_original_sample": compact(x0)})
        x = out.prev_sample.to(torch.float32).to(torch.float64)
    return {"timesteps": [int(t) for t in s.timesteps], "sigmas": compact(s.sigmas), "steps": steps}


def scheduler_fixture():
    inputs = chain_inputs(2024)
    sample, outputs, noises = inputs
    cases = []

    def ddim(name, config, eta):
        cases.append({"name": name, "kind": "ddim", "config": config, "eta": eta, **ddim_chain(config, eta, inputs)})

    def dpm(name, config):
        cases.append({"name": name, "kind": "dpmsolver_multistep", "config": config, **dpm_chain(config, inputs)})

    ddim("ddim_stage2_eta1", MODELSCOPE, 1.0)
    ddim("ddim_v_trailing_eta0", {**MODELSCOPE, "prediction_type": "v_prediction", "timestep_spacing": "trailing"}, 0.0)
    ddim("ddim_sample_linspace_clip_eta05", {**MODELSCOPE, "prediction_type": "sample", "clip_sample": True,
                                             "clip_sample_range": 1.5, "timestep_spacing": "linspace"}, 0.5)
    ddim("ddim_defaults_eta03", {}, 0.3)
    ddim("ddim_cosine_eps", {"beta_schedule": "squaredcos_cap_v2", "clip_sample": False}, 0.0)
    dpm_ms = {k: v for k, v in MODELSCOPE.items() if k not in ("clip_sample", "set_alpha_to_one")}
    dpm("dpm_stage1", {**dpm_ms, "solver_order": 2, "algorithm_type": "dpmsolver++", "solver_type": "midpoint",
                       "lower_order_final": True, "final_sigmas_type": "zero", "timestep_spacing": "linspace"})
    dpm("dpm_order3_leading", {**dpm_ms, "solver_order": 3, "timestep_spacing": "leading"})
    dpm("dpm_v_heun_sigma_min", {**dpm_ms, "prediction_type": "v_prediction", "solver_type": "heun",
                                 "final_sigmas_type": "sigma_min", "timestep_spacing": "trailing"})
    dpm("dpm_sde_midpoint", {**dpm_ms, "algorithm_type": "sde-dpmsolver++"})
    # The toy set's stage-1 / stage-2 schedulers: v prediction on a zero-terminal-SNR schedule.
    zero_snr = {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True}
    dpm("dpm_toy_stage1_zero_snr", {**dpm_ms, **zero_snr, "solver_order": 2, "algorithm_type": "dpmsolver++",
                                    "lower_order_final": True, "final_sigmas_type": "zero",
                                    "timestep_spacing": "linspace"})
    ddim("ddim_toy_stage2_zero_snr_eta1", {**MODELSCOPE, **zero_snr, "timestep_spacing": "trailing"}, 1.0)
    dpm("dpm_sde_order3_heun", {**dpm_ms, "algorithm_type": "sde-dpmsolver++", "solver_order": 3,
                                "solver_type": "heun", "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02})

    tables = {}
    for name, config in {
        "scaled_linear": MODELSCOPE,
        "linear": {},
        "squaredcos_cap_v2": {"beta_schedule": "squaredcos_cap_v2"},
        "scaled_linear_zero_snr": {**MODELSCOPE, "rescale_betas_zero_snr": True},
    }.items():
        tables[name] = {"config": config, "alphas_cumprod": compact(DDIMScheduler(**config).alphas_cumprod)}

    timesteps = {}
    for spacing in ("leading", "linspace", "trailing"):
        for steps in (50, 30, 7):
            d = DDIMScheduler(**MODELSCOPE, timestep_spacing=spacing)
            d.set_timesteps(steps)
            p = DPMSolverMultistepScheduler.from_config({**MODELSCOPE, "timestep_spacing": spacing})
            p.set_timesteps(steps)
            timesteps[f"{spacing}_{steps}"] = {
                "ddim": [int(t) for t in d.timesteps],
                "dpm": [int(t) for t in p.timesteps],
                "dpm_sigmas": compact(p.sigmas),
            }

    d = DDIMScheduler(**MODELSCOPE)
    add_noise = compact(d.add_noise(sample.double(), noises[0].double(), torch.tensor([599])))
    return {
        "shape": SHAPE,
        "initial_sample": compact(sample),
        "model_outputs": [compact(o) for o in outputs],
        "noises": [compact(n) for n in noises],
        "tables": tables,
        "timesteps": timesteps,
        "add_noise_t599": add_noise,
        "cases": cases,
    }


# -------------------------------------------------------------------------- enhancer


def load_modelscope_v2v():
    """modelscope's video_to_video utils, imported by path (the package __init__ pulls in far
    more than these files need). torchsde is only used by the Brownian-tree noise sampler,
    which the fixture replaces with scripted noise, so a stub stands in for it."""
    import modelscope

    base = Path(modelscope.__file__).parent / "models/multi_modal/video_to_video/utils"
    sys.modules.setdefault("torchsde", types.ModuleType("torchsde"))
    package = types.ModuleType("v2v_utils")
    package.__path__ = [str(base)]
    sys.modules["v2v_utils"] = package
    modules = {}
    for name in ("schedules_sdedit", "solvers_sdedit", "diffusion_sdedit"):
        spec = importlib.util.spec_from_file_location(f"v2v_utils.{name}", base / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        modules[name] = module
    return modules


class ScriptedNoise:
    """Stands in for BrownianTreeNoiseSampler: returns the fixture's N(0,1) noise per step."""

    queue = []

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, sigma, sigma_next):
        return ScriptedNoise.queue.pop(0)


class ScriptedUnet:
    """Returns the fixture's v outputs: the conditional call first, then the unconditional."""

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.inputs = []
        self.timesteps = []

    def __call__(self, xt, t, **kwargs):
        if kwargs["cond"]:
            self.inputs.append(compact(xt))
            self.timesteps.append(int(t[0]))
        return self.outputs.pop(0)


def enhancer_schedule_values(ms, dtype):
    torch.set_default_dtype(dtype)
    try:
        sigmas = ms["schedules_sdedit"].noise_schedule(
            "logsnr_cosine_interp", n=1000, zero_terminal_snr=True, scale_min=2.0, scale_max=4.0)
        return ms["diffusion_sdedit"].GaussianDiffusion_SDEdit(sigmas, prediction_type="v")
    finally:
        torch.set_default_dtype(torch.float32)


def t_to_sigma_f64(diffusion, t):
    """`GaussianDiffusion_SDEdit._t_to_sigma` without its cast of t to float32."""
    low, high, w = t.floor().long(), t.ceil().long(), t.frac()
    log_sigmas = torch.sqrt(diffusion.sigmas**2 / (1 - diffusion.sigmas**2)).log().to(t)
    log_sigma = (1 - w) * log_sigmas[low] + w * log_sigmas[high]
    log_sigma[torch.isnan(log_sigma) | torch.isinf(log_sigma)] = float("inf")
    return log_sigma.exp()


def solver_sigmas(diffusion, steps, t_max=599, t_min=0, dtype=torch.float64):
    """`GaussianDiffusion_SDEdit.sample`'s trailing discretization (it does not expose it).
    float32 is the reference as is; float64 evaluates the same formulas in double."""
    steps += 1  # discard_penultimate_step for dpmpp_2m_sde
    t = torch.arange(t_max, t_min - 1, -((t_max - t_min + 1) / steps), dtype=torch.float64)
    t = t.clamp_(t_min, t_max).to(dtype)
    if dtype == torch.float64:
        sigmas = t_to_sigma_f64(diffusion, t)
    else:
        sigmas = diffusion._t_to_sigma(t)
    sigmas = torch.cat([sigmas, sigmas.new_zeros([1])])
    return torch.cat([sigmas[:-2], sigmas[-1:]])


def enhancer_fixture():
    ms = load_modelscope_v2v()
    d64 = enhancer_schedule_values(ms, torch.float64)
    d32 = enhancer_schedule_values(ms, torch.float32)
    sig64 = solver_sigmas(d64, 30)
    sig32 = solver_sigmas(d32, 30, dtype=torch.float32)
    t_int = [int(d64._sigma_to_t(s).round().item()) for s in sig64[:-1]]
    t_int32 = [int(d32._sigma_to_t(s).round().item()) for s in sig32[:-1]]

    # A full scripted run of sample() on a (1, 4, 3, 4, 4) latent. 6 requested steps give 7:
    # the reference's trailing arange has ceil(600 / (600 / 7)) = 8 points in floating point.
    requested, shape = 6, [1, 4, 3, 4, 4]
    sigmas = solver_sigmas(d64, requested)
    steps = len(sigmas) - 1
    g = torch.Generator().manual_seed(599)
    x0 = torch.randn(shape, generator=g)
    sde_noise = torch.randn(shape, generator=g)
    v_cond = [torch.randn(shape, generator=g) * 0.7 for _ in range(steps)]
    v_uncond = [torch.randn(shape, generator=g) * 0.7 + 0.05 for _ in range(steps)]
    step_noise = [torch.randn(shape, generator=g) for _ in range(steps)]
    x_t = d64.diffuse(x0.double(), torch.tensor([599]), sde_noise.double())

    scripted = []
    for c, u in zip(v_cond, v_uncond):
        scripted += [c.double(), u.double()]
    unet = ScriptedUnet(scripted)
    ms["solvers_sdedit"].BrownianTreeNoiseSampler = ScriptedNoise
    ScriptedNoise.queue = [n.double() for n in step_noise[: steps - 1]]
    solver = ms["solvers_sdedit"].sample_dpmpp_2m_sde

    def model_fn(xt, sigma):
        t = d64._sigma_to_t(sigma).repeat(len(xt)).round().long()
        return d64.denoise(xt, t, None, unet, [{"cond": True}, {"cond": False}], 7.5, 0.2)[-2]

    final = solver(x_t, model_fn, sigmas, show_progress=False)
    return {
        "schedule": {
            "sigmas_vp": compact(d64.sigmas),
            "alphas_vp": compact(d64.alphas),
            "solver_sigmas_30": compact(sig64),
            "model_timesteps_30": t_int,
            "solver_sigmas_30_float32_reference": compact(sig32),
            "model_timesteps_30_float32_reference": t_int32,
        },
        "run": {
            "shape": shape,
            "requested_steps": requested,
            "steps": steps,
            "guide_scale": 7.5,
            "guide_rescale": 0.2,
            "x0": compact(x0),
            "sde_noise": compact(sde_noise),
            "x_t": compact(x_t),
            "v_cond": [compact(v) for v in v_cond],
            "v_uncond": [compact(v) for v in v_uncond],
            "step_noise": [compact(n) for n in step_noise],
            "solver_sigmas": compact(sigmas),
            "model_inputs": unet.inputs,
            "model_timesteps": unet.timesteps,
            "final": compact(final),
        },
    }


# -------------------------------------------------------------------------- guidance


def guidance_fixture():
    ms = load_modelscope_v2v()
    g = torch.Generator().manual_seed(75)
    per_group = [2, 4, 3, 2, 2]
    u, c, a = (torch.randn(per_group, generator=g) for _ in range(3))
    # Inputs stay float32 (what the engine reads); the guidance itself runs in float64.
    u, c, a = u.double(), (c * 1.3 + 0.2).double(), (a * 0.9 - 0.1).double()

    joint = u + 7.5 * (c - u)
    multi = u + 7.5 * (c - u) + 2.0 * (a - c)

    def rescaled(out, cond, r):
        ratio = (cond.flatten(1).std(dim=1) / (out.flatten(1).std(dim=1) + 1e-12)).view(-1, 1, 1, 1, 1)
        return out * (r * ratio + (1 - r))

    # The enhancer's own code path: denoise() with prediction_type 'x0' returns the guided,
    # rescaled model output unchanged.
    diffusion = ms["diffusion_sdedit"].GaussianDiffusion_SDEdit(torch.linspace(0.01, 0.99, 10).double(), "x0")
    model = lambda xt, t, which: {"cond": c, "uncond": u}[which]  # noqa: E731
    kwargs = [{"which": "cond"}, {"which": "uncond"}]
    joint_rescaled = diffusion.denoise(torch.zeros_like(u), torch.tensor([5, 5]), None, model, kwargs, 7.5, 0.2)[-2]
    return {
        "group_shape": per_group,
        "uncond": compact(u),
        "cond": compact(c),
        "anchor": compact(a),
        "joint_7.5": compact(joint),
        "multi_7.5_2.0": compact(multi),
        "joint_7.5_rescale_0.2": compact(joint_rescaled),
        "multi_7.5_2.0_rescale_0.7": compact(rescaled(multi, a, 0.7)),
    }


def main():
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        sys.exit(f"torch CPU capability is {capability}: randn goldens need the AVX2 kernels")
    write("sampling_noise.json", {"torch": torch.__version__, **noise_fixture()})
    write("sampling_schedulers.json", scheduler_fixture())
    write("sampling_enhancer.json", enhancer_fixture())
    write("sampling_guidance.json", guidance_fixture())


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()

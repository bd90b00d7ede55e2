//! Golden tests of the sampling numerics against the reference libraries.
//!
//! Fixtures: `tests/golden/sampling_*.json`, written by `tests/golden/gen_sampling_golden.py`
//! (torch 2.15 CPU/AVX2, diffusers 0.42.1 DDIMScheduler / DPMSolverMultistepScheduler,
//! modelscope 1.40.2 video_to_video `schedules_sdedit` / `solvers_sdedit` / `diffusion_sdedit`).
//! Regenerate with `.venv/bin/python tests/golden/gen_sampling_golden.py`.
//!
//! Scheduler outputs must agree to a relative error of 1e-6 (relative to max(|expected|, 1),
//! the latents being of unit scale); the torch-compatible generator must agree bit for bit.

use std::path::Path;

use ndarray::{concatenate, ArrayD, Axis, IxDyn};
use serde_json::Value;
use sha2::{Digest, Sha256};
use streamingt2v::manifest::{SchedulerEntry, SchedulerKind};
use streamingt2v::sampling::dpmpp_2m_sde::{Dpmpp2mSde, Dpmpp2mSdeConfig};
use streamingt2v::sampling::logsnr_schedule::{LogSnrParams, LogSnrSchedule};
use streamingt2v::sampling::noise::frame_major_randn;
use streamingt2v::sampling::schedule::{self, BetaSchedule};
use streamingt2v::sampling::{
    build_scheduler, config::TimestepSpacing, Guidance, NoiseMode, Scheduler, TorchGenerator,
    VideoNoise,
};

const RTOL: f64 = 1e-6;

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f64s(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")))
        .collect()
}

fn f32s(value: &Value) -> Vec<f32> {
    f64s(value).into_iter().map(|v| v as f32).collect()
}

fn usizes(value: &Value) -> Vec<usize> {
    f64s(value).into_iter().map(|v| v as usize).collect()
}

fn tensor(shape: &[usize], value: &Value) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), f32s(value)).expect("fixture size matches its shape")
}

fn assert_close<'a>(what: &str, actual: impl IntoIterator<Item = &'a f32>, expected: &[f64]) {
    let actual: Vec<f64> = actual.into_iter().map(|&v| f64::from(v)).collect();
    assert_close_f64(what, &actual, expected, RTOL);
}

fn assert_close_f64(what: &str, actual: &[f64], expected: &[f64], rtol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let err = (a - e).abs() / e.abs().max(1.0);
        assert!(
            err <= rtol,
            "{what}[{i}]: {a} vs {e} (relative error {err:.2e})"
        );
    }
}

fn sha256_le(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    hex::encode(Sha256::digest(bytes))
}

// ------------------------------------------------------------------------------- noise

#[test]
fn randn_matches_torch_bit_for_bit() {
    let noise = fixture("sampling_noise.json");
    for case in noise["randn"].as_array().unwrap() {
        let seed = case["seed"].as_u64().unwrap();
        let mut generator = TorchGenerator::new(seed);
        for (k, call) in case["calls"].as_array().unwrap().iter().enumerate() {
            let shape = usizes(&call["shape"]);
            let x = generator.randn(&shape);
            let values = x.as_slice().unwrap();
            let what = format!("seed {seed} call {k} shape {shape:?}");
            let expected = call.get("values").or(call.get("head")).unwrap();
            for (i, (a, e)) in values.iter().zip(f32s(expected)).enumerate() {
                assert_eq!(a.to_bits(), e.to_bits(), "{what}[{i}]: {a} vs {e}");
            }
            assert_eq!(
                sha256_le(values),
                call["sha256"].as_str().unwrap(),
                "{what}"
            );
        }
    }
}

#[test]
fn stage2_ddim_noise_is_drawn_frame_major() {
    let case = &fixture("sampling_noise.json")["randn"][3];
    assert_eq!(usizes(&case["calls"][1]["shape"]), [16, 4, 32, 32]);
    let mut generator = TorchGenerator::new(case["seed"].as_u64().unwrap());
    generator.randn(&[1, 4, 16, 32, 32]);
    let noise = frame_major_randn(&mut generator, &[1, 4, 16, 32, 32]).unwrap();
    // Back to the reference's (F, C, H, W) buffer order: the same bytes torch drew.
    let frame_major = noise.permuted_axes(IxDyn(&[0, 2, 1, 3, 4]));
    let values: Vec<f32> = frame_major.iter().copied().collect();
    assert_eq!(
        sha256_le(&values),
        case["calls"][1]["sha256"].as_str().unwrap()
    );
}

#[test]
fn rand_and_randint_continue_torchs_stream() {
    let case = &fixture("sampling_noise.json")["rand_then_randint"];
    let mut generator = TorchGenerator::new(case["seed"].as_u64().unwrap());
    let rand = generator.rand(&[37]);
    assert_eq!(rand.as_slice().unwrap(), f32s(&case["rand"]).as_slice());
    let small = generator.randint(0, 8, &[50]).unwrap();
    let expected: Vec<i64> = f64s(&case["randint_0_8"])
        .iter()
        .map(|&v| v as i64)
        .collect();
    assert_eq!(small.as_slice().unwrap(), expected.as_slice());
    let large = generator.randint(-5, 1 << 40, &[6]).unwrap();
    let expected: Vec<i64> = case["randint_-5_2^40"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(large.as_slice().unwrap(), expected.as_slice());
}

#[test]
fn mixed_noise_follows_the_reference_draw_order() {
    for case in fixture("sampling_noise.json")["mixed"].as_array().unwrap() {
        let shape = usizes(&case["shape"]);
        let mode = NoiseMode::Mixed {
            alpha: case["alpha"].as_f64().unwrap(),
            shared_across_chunks: true,
        };
        let mut noise = VideoNoise::new(mode).unwrap();
        let mut generator = TorchGenerator::new(case["seed"].as_u64().unwrap());
        for (k, chunk) in case["chunks"].as_array().unwrap().iter().enumerate() {
            let x = noise.sample(&mut generator, &shape).unwrap();
            assert_eq!(x.as_slice().unwrap(), f32s(chunk).as_slice(), "chunk {k}");
        }
    }
}

// -------------------------------------------------------------------------- schedulers

#[test]
fn beta_tables_equal_diffusers_float32_values() {
    let schedulers = fixture("sampling_schedulers.json");
    let cases = [
        ("scaled_linear", BetaSchedule::ScaledLinear, 0.00085, 0.012),
        ("linear", BetaSchedule::Linear, 0.0001, 0.02),
        (
            "squaredcos_cap_v2",
            BetaSchedule::SquaredcosCapV2,
            0.0001,
            0.02,
        ),
    ];
    for (name, kind, start, end) in cases {
        let table = schedule::alphas_cumprod(&schedule::betas(kind, start, end, 1000));
        let expected = f32s(&schedulers["tables"][name]["alphas_cumprod"]);
        assert_eq!(table, expected, "{name}");
    }
    // The toy set's schedule: ModelScope's rescaled to a zero terminal SNR (Lin et al. 2024).
    // Within 1e-6, not bit for bit: torch's vectorised CPU sqrt is not correctly rounded (1 ulp
    // off for about a fifth of the values on AVX-512), Rust's is; the cumprod carries it on.
    let modelscope = schedule::betas(BetaSchedule::ScaledLinear, 0.00085, 0.012, 1000);
    let table = schedule::alphas_cumprod(&schedule::rescale_zero_terminal_snr(&modelscope));
    let expected = f64s(&schedulers["tables"]["scaled_linear_zero_snr"]["alphas_cumprod"]);
    let table: Vec<f64> = table.iter().map(|&a| f64::from(a)).collect();
    assert_close_f64("scaled_linear_zero_snr", &table, &expected, 1e-6);
    assert_eq!(table.last(), Some(&0.0));
}

#[test]
fn timesteps_and_sigmas_match_diffusers_for_every_spacing() {
    let schedulers = fixture("sampling_schedulers.json");
    let spacings = [
        ("leading", TimestepSpacing::Leading),
        ("linspace", TimestepSpacing::Linspace),
        ("trailing", TimestepSpacing::Trailing),
    ];
    for (name, spacing) in spacings {
        for steps in [50, 30, 7] {
            let expected = &schedulers["timesteps"][format!("{name}_{steps}")];
            let to_i64 = |v: &Value| -> Vec<i64> { f64s(v).iter().map(|&t| t as i64).collect() };
            let ddim = schedule::ddim_timesteps(spacing, 1000, steps, 1);
            assert_eq!(ddim, to_i64(&expected["ddim"]), "ddim {name} {steps}");
            let dpm = schedule::dpm_solver_timesteps(spacing, 1000, steps, 1);
            assert_eq!(dpm, to_i64(&expected["dpm"]), "dpm {name} {steps}");
        }
    }
}

fn entry(kind: &str, config: &Value) -> SchedulerEntry {
    let kind = match kind {
        "ddim" => SchedulerKind::Ddim,
        "dpmsolver_multistep" => SchedulerKind::DpmsolverMultistep,
        other => panic!("unknown scheduler kind {other}"),
    };
    SchedulerEntry {
        kind,
        config: config.as_object().unwrap().clone(),
    }
}

#[test]
fn scheduler_steps_match_diffusers() {
    let fixture = fixture("sampling_schedulers.json");
    let shape = usizes(&fixture["shape"]);
    let outputs: Vec<ArrayD<f32>> = fixture["model_outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| tensor(&shape, v))
        .collect();
    let noises: Vec<ArrayD<f32>> = fixture["noises"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| tensor(&shape, v))
        .collect();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let eta = case.get("eta").and_then(Value::as_f64).map(|e| e as f32);
        let mut scheduler = build_scheduler(
            &entry(case["kind"].as_str().unwrap(), &case["config"]),
            10,
            eta,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            scheduler.timesteps(),
            f64s(&case["timesteps"]),
            "{name} timesteps"
        );
        // Teacher forcing: each step starts from the reference's previous output in float32.
        let mut sample = tensor(&shape, &fixture["initial_sample"]);
        for (i, expected) in case["steps"].as_array().unwrap().iter().enumerate() {
            let what = format!("{name} step {i}");
            let x0 = scheduler
                .predict_original(outputs[i].view(), i, sample.view())
                .unwrap();
            let out = scheduler
                .step(outputs[i].view(), i, sample.view(), Some(noises[i].view()))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let expected_x0 = f64s(&expected["pred_original_sample"]);
            assert_close(
                &format!("{what} x0"),
                &out.pred_original_sample,
                &expected_x0,
            );
            assert_close(&format!("{what} predict_original"), &x0, &expected_x0);
            assert_close(
                &format!("{what} prev"),
                &out.prev_sample,
                &f64s(&expected["prev_sample"]),
            );
            sample = tensor(&shape, &expected["prev_sample"]);
        }
    }
}

#[test]
fn ddim_add_noise_matches_diffusers() {
    let fixture = fixture("sampling_schedulers.json");
    let shape = usizes(&fixture["shape"]);
    let modelscope = &fixture["cases"][0];
    assert_eq!(modelscope["name"], "ddim_stage2_eta1");
    let scheduler = build_scheduler(&entry("ddim", &modelscope["config"]), 50, Some(1.0)).unwrap();
    let original = tensor(&shape, &fixture["initial_sample"]);
    let noise = tensor(&shape, &fixture["noises"][0]);
    let noisy = scheduler
        .add_noise(original.view(), noise.view(), 599)
        .unwrap();
    assert_close("add_noise", &noisy, &f64s(&fixture["add_noise_t599"]));
}

// ---------------------------------------------------------------------------- enhancer

fn enhancer_schedule() -> LogSnrSchedule {
    LogSnrSchedule::new(LogSnrParams {
        num_train_timesteps: 1000,
        logsnr_min: -15.0,
        logsnr_max: 15.0,
        scale_min: 2.0,
        scale_max: 4.0,
        zero_terminal_snr: true,
    })
}

#[test]
fn enhancer_schedule_matches_modelscope() {
    let golden = &fixture("sampling_enhancer.json")["schedule"];
    let schedule = enhancer_schedule();
    let (alphas, sigmas): (Vec<f64>, Vec<f64>) =
        (0..1000).map(|t| schedule.alpha_sigma(t).unwrap()).unzip();
    assert_close_f64("sigma_vp", &sigmas, &f64s(&golden["sigmas_vp"]), 1e-8);
    assert_close_f64("alpha_vp", &alphas, &f64s(&golden["alphas_vp"]), 1e-8);

    let sampler = Dpmpp2mSde::new(Dpmpp2mSdeConfig::default(), 30).unwrap();
    assert_close_f64(
        "solver sigmas",
        sampler.sigmas(),
        &f64s(&golden["solver_sigmas_30"]),
        RTOL,
    );
    let reference_f32 = f64s(&golden["solver_sigmas_30_float32_reference"]);
    assert_close_f64(
        "float32 reference sigmas",
        sampler.sigmas(),
        &reference_f32,
        1e-5,
    );
    let timesteps: Vec<i64> = (0..30)
        .map(|i| sampler.model_timestep(i).unwrap())
        .collect();
    for key in ["model_timesteps_30", "model_timesteps_30_float32_reference"] {
        let expected: Vec<i64> = f64s(&golden[key]).iter().map(|&t| t as i64).collect();
        assert_eq!(timesteps, expected, "{key}");
    }
}

#[test]
fn enhancer_sampling_run_matches_modelscope() {
    let run = &fixture("sampling_enhancer.json")["run"];
    let shape = usizes(&run["shape"]);
    let steps = run["steps"].as_u64().unwrap() as usize;
    let requested = run["requested_steps"].as_u64().unwrap() as usize;
    let mut sampler = Dpmpp2mSde::new(Dpmpp2mSdeConfig::default(), requested).unwrap();
    assert_eq!(
        sampler.num_steps(),
        steps,
        "steps after the reference's discretization"
    );
    assert_close_f64(
        "sigmas",
        sampler.sigmas(),
        &f64s(&run["solver_sigmas"]),
        RTOL,
    );

    let x0 = tensor(&shape, &run["x0"]);
    let sde_noise = tensor(&shape, &run["sde_noise"]);
    let x_t = sampler.add_noise(x0.view(), sde_noise.view(), 599).unwrap();
    assert_close("x_t", &x_t, &f64s(&run["x_t"]));

    let guidance = Guidance::joint(run["guide_scale"].as_f64().unwrap() as f32)
        .with_rescale(run["guide_rescale"].as_f64().unwrap() as f32)
        .unwrap();
    let mut x = sampler.initial_sample(tensor(&shape, &run["x_t"]));
    for i in 0..steps {
        let model_input = sampler.scale_model_input(x.clone(), i).unwrap();
        assert_close(
            &format!("model input {i}"),
            &model_input,
            &f64s(&run["model_inputs"][i]),
        );
        let t = run["model_timesteps"][i].as_i64().unwrap();
        assert_eq!(sampler.model_timestep(i).unwrap(), t, "timestep {i}");
        let uncond = tensor(&shape, &run["v_uncond"][i]);
        let cond = tensor(&shape, &run["v_cond"][i]);
        let batched = concatenate(Axis(0), &[uncond.view(), cond.view()]).unwrap();
        let v = guidance.apply(batched.view()).unwrap();
        let denoised = sampler.predict_original(v.view(), i, x.view()).unwrap();
        let noise = tensor(&shape, &run["step_noise"][i]);
        x = sampler
            .step_denoised(denoised.view(), i, x.view(), Some(noise.view()))
            .unwrap()
            .prev_sample;
    }
    assert_close("final latent", &x, &f64s(&run["final"]));
}

// ---------------------------------------------------------------------------- guidance

#[test]
fn guidance_matches_torch_and_the_enhancer() {
    let golden = fixture("sampling_guidance.json");
    let shape = usizes(&golden["group_shape"]);
    let [uncond, cond, anchor] = ["uncond", "cond", "anchor"].map(|k| tensor(&shape, &golden[k]));
    let joint_batch = concatenate(Axis(0), &[uncond.view(), cond.view()]).unwrap();
    let multi_batch = concatenate(Axis(0), &[uncond.view(), cond.view(), anchor.view()]).unwrap();
    let multi = Guidance::MultiCondition {
        text_scale: 7.5,
        anchor_scale: 2.0,
        rescale: None,
    };
    let cases = [
        ("joint_7.5", Guidance::joint(7.5), &joint_batch),
        ("multi_7.5_2.0", multi, &multi_batch),
        (
            "joint_7.5_rescale_0.2",
            Guidance::joint(7.5).with_rescale(0.2).unwrap(),
            &joint_batch,
        ),
        (
            "multi_7.5_2.0_rescale_0.7",
            multi.with_rescale(0.7).unwrap(),
            &multi_batch,
        ),
    ];
    for (name, guidance, batch) in cases {
        let out = guidance.apply(batch.view()).unwrap();
        assert_eq!(out.shape(), shape.as_slice(), "{name} shape");
        assert_close(name, &out, &f64s(&golden[name]));
    }
}

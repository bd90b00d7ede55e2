//! Pure sampling numerics: schedulers, classifier-free guidance and noise.
//!
//! Nothing here depends on ONNX Runtime: the pipeline hands model outputs in and gets latents
//! back, so every piece is golden-tested against diffusers / torch on its own
//! (`tests/sampling_golden.rs`, fixtures from `tests/golden/gen_sampling_golden.py`).
//!
//! - [`ddim`], [`dpm_solver_multistep`]: diffusers' DDIM and DPM-Solver++ (stages 2 and 1).
//! - [`dpmpp_2m_sde`]: the enhancer's DPM++(2M) SDE on its log-SNR schedule (stage 3).
//! - [`schedule`]: beta schedules, `alphas_cumprod` and timestep spacings they share;
//!   [`logsnr_schedule`]: the enhancer's continuous log-SNR schedule.
//! - [`factory`]: builds a scheduler from a manifest [`crate::manifest::SchedulerEntry`].
//! - [`guidance`]: classifier-free guidance over one batched model output.
//! - [`noise`]: seeded noise, bit-compatible with `torch.randn` on the CPU.

pub mod config;
pub mod ddim;
pub mod dpm_solver_multistep;
pub mod dpmpp_2m_sde;
pub mod factory;
pub mod guidance;
pub mod logsnr_schedule;
pub mod noise;
pub mod schedule;
mod tensor;

use ndarray::{ArrayD, ArrayViewD};

pub use ddim::{Ddim, DdimConfig};
pub use dpm_solver_multistep::{DpmSolverMultistep, DpmSolverMultistepConfig};
pub use dpmpp_2m_sde::{Dpmpp2mSde, Dpmpp2mSdeConfig};
pub use factory::build_scheduler;
pub use guidance::Guidance;
pub use noise::{GeneratorState, NoiseMode, TorchGenerator, VideoNoise};

/// Errors of the sampling numerics (bad configuration or mismatched shapes).
#[derive(Debug, thiserror::Error)]
pub enum SamplingError {
    #[error("scheduler config field `{field}`: expected {expected}, found {found}")]
    Config {
        field: String,
        expected: String,
        found: String,
    },
    #[error("{what}: expected shape {expected:?}, found {found:?}")]
    Shape {
        what: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("step index {index} out of range: the schedule has {len} steps")]
    StepOutOfRange { index: usize, len: usize },
    #[error("step {index} needs a noise tensor (stochastic sampler) but none was given")]
    MissingNoise { index: usize },
    #[error("step {index} called out of order: a multistep solver expects step {expected} next")]
    StepOrder { index: usize, expected: usize },
    #[error("timestep {timestep} out of range: the model was trained on {len} timesteps")]
    TimestepOutOfRange { timestep: usize, len: usize },
    #[error("{what}: expected {expected}, found {found}")]
    Invalid {
        what: String,
        expected: String,
        found: String,
    },
}

/// Result of one scheduler step.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// x_{t-1}: the sample to feed into the next step.
    pub prev_sample: ArrayD<f32>,
    /// The model's x0 prediction at this step.
    pub pred_original_sample: ArrayD<f32>,
}

/// What a multistep solver carries from one step to the next: the next step's index and its
/// x0 history, oldest first. A job checkpoint saves it between steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SolverState {
    pub next_index: usize,
    pub history: Vec<ArrayD<f32>>,
}

/// A denoising schedule prepared for a fixed number of inference steps.
///
/// Steps are addressed by index (0 = the noisiest). Stochastic samplers take their noise as an
/// argument so the caller controls the random stream (the same seed gives the same video on
/// every execution provider). Multistep solvers keep the previous x0 predictions, so their
/// steps must run in order; step 0 starts a fresh trajectory.
pub trait Scheduler: Send {
    /// Timesteps handed to the model, one per step, noisiest first.
    fn timesteps(&self) -> &[f64];

    /// Standard deviation of the initial noise (1 for the variance-preserving samplers).
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// Scales the denoising model input at step `index` (identity for DDIM and DPM-Solver++).
    fn scale_model_input(
        &self,
        sample: ArrayD<f32>,
        _index: usize,
    ) -> Result<ArrayD<f32>, SamplingError> {
        Ok(sample)
    }

    /// Whether `step(index, ..)` consumes a noise tensor shaped like the sample.
    fn needs_noise(&self, index: usize) -> bool;

    /// Advances the sample by one step from the model output at step `index`: by default the
    /// x0 prediction followed by [`Scheduler::step_denoised`].
    fn step(
        &mut self,
        model_output: ArrayViewD<'_, f32>,
        index: usize,
        sample: ArrayViewD<'_, f32>,
        noise: Option<ArrayViewD<'_, f32>>,
    ) -> Result<StepOutput, SamplingError> {
        let denoised = self.predict_original(model_output, index, sample.view())?;
        self.step_denoised(denoised.view(), index, sample, noise)
    }

    /// The model's x0 prediction at step `index`, without advancing the schedule.
    ///
    /// Elementwise, so it may be applied to a frame slice of the sample (the enhancer predicts
    /// x0 chunk by chunk, blends the chunks, then calls [`Scheduler::step_denoised`]).
    fn predict_original(
        &self,
        model_output: ArrayViewD<'_, f32>,
        index: usize,
        sample: ArrayViewD<'_, f32>,
    ) -> Result<ArrayD<f32>, SamplingError>;

    /// Advances the sample by one step from an x0 prediction (e.g. one blended across chunks).
    fn step_denoised(
        &mut self,
        denoised: ArrayViewD<'_, f32>,
        index: usize,
        sample: ArrayViewD<'_, f32>,
        noise: Option<ArrayViewD<'_, f32>>,
    ) -> Result<StepOutput, SamplingError>;

    /// Forward diffusion to the training timestep `timestep` (SDEdit noising):
    /// `alpha_t * original + sigma_t * noise` on this scheduler's noise schedule.
    fn add_noise(
        &self,
        original: ArrayViewD<'_, f32>,
        noise: ArrayViewD<'_, f32>,
        timestep: usize,
    ) -> Result<ArrayD<f32>, SamplingError>;

    /// The starting sample of the loop: `start * init_noise_sigma`, where `start` is pure noise
    /// (text-to-video) or an SDEdit-noised latent (the enhancer scales `x_t` the same way).
    fn initial_sample(&self, start: ArrayD<f32>) -> ArrayD<f32> {
        start * self.init_noise_sigma()
    }

    /// The integer timestep the denoising model receives at step `index`.
    fn model_timestep(&self, index: usize) -> Result<i64, SamplingError> {
        let timesteps = self.timesteps();
        timesteps
            .get(index)
            .map(|t| t.round() as i64)
            .ok_or(SamplingError::StepOutOfRange {
                index,
                len: timesteps.len(),
            })
    }

    /// Number of inference steps.
    fn num_steps(&self) -> usize {
        self.timesteps().len()
    }

    /// The solver's memory between steps (none for a one-step method such as DDIM).
    fn state(&self) -> SolverState {
        SolverState::default()
    }

    /// Continues from `state`, taken by [`Scheduler::state`] of a scheduler built alike: the
    /// next step gives exactly what it would have given there.
    fn restore(&mut self, state: SolverState) -> Result<(), SamplingError> {
        match state.history.len() {
            0 => Ok(()),
            n => Err(SamplingError::Invalid {
                what: "saved solver state".into(),
                expected: "no x0 history (a one-step solver)".into(),
                found: format!("{n} saved x0 predictions"),
            }),
        }
    }
}

/// Checks a saved history against what a solver keeps.
fn check_history(state: &SolverState, most: usize, steps: usize) -> Result<(), SamplingError> {
    if state.history.len() <= most && state.next_index <= steps {
        return Ok(());
    }
    Err(SamplingError::Invalid {
        what: "saved solver state".into(),
        expected: format!("at most {most} x0 predictions and step at most {steps}"),
        found: format!(
            "{} predictions, step {}",
            state.history.len(),
            state.next_index
        ),
    })
}

#[cfg(test)]
mod state_tests {
    use super::*;

    /// Runs `steps` of `solver` with made-up x0 predictions and noise.
    fn run(
        solver: &mut dyn Scheduler,
        steps: std::ops::Range<usize>,
        mut x: ArrayD<f32>,
    ) -> ArrayD<f32> {
        for step in steps {
            let x0 = x.mapv(|v| 0.5 * v + 0.01 * step as f32);
            let noise = ArrayD::from_elem(x.shape(), 0.1 - 0.01 * step as f32);
            let noise = solver.needs_noise(step).then_some(noise.view());
            x = solver
                .step_denoised(x0.view(), step, x.view(), noise)
                .unwrap()
                .prev_sample;
        }
        x
    }

    #[test]
    fn a_restored_solver_continues_bit_for_bit() {
        let solvers: [fn() -> Box<dyn Scheduler>; 2] = [
            || Box::new(Dpmpp2mSde::new(Dpmpp2mSdeConfig::default(), 6).unwrap()),
            || Box::new(DpmSolverMultistep::new(DpmSolverMultistepConfig::default(), 6).unwrap()),
        ];
        for build in solvers {
            let start = ndarray::Array::linspace(-2.0f32, 2.0, 12).into_dyn();
            let whole = run(build().as_mut(), 0..6, start.clone());
            let mut first = build();
            let x = run(first.as_mut(), 0..3, start);
            let mut resumed = build();
            resumed.restore(first.state()).unwrap();
            assert!(!resumed.state().history.is_empty());
            assert_eq!(run(resumed.as_mut(), 3..6, x), whole);
        }
    }

    #[test]
    fn a_one_step_solver_refuses_a_history() {
        let mut ddim = Ddim::new(DdimConfig::default(), 4, 0.0).unwrap();
        let state = SolverState {
            next_index: 1,
            history: vec![ArrayD::zeros(vec![2])],
        };
        assert!(ddim.restore(state).is_err());
    }
}

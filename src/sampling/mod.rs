//! Pure sampling numerics: schedulers, classifier-free guidance and noise.
//!
//! Nothing here depends on ONNX Runtime: the pipeline hands model outputs in and gets latents
//! back, so every piece is golden-tested against diffusers / torch on its own.

use ndarray::{ArrayD, ArrayViewD};

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
}

/// Result of one scheduler step.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// x_{t-1}: the sample to feed into the next step.
    pub prev_sample: ArrayD<f32>,
    /// The model's x0 prediction at this step.
    pub pred_original_sample: ArrayD<f32>,
}

/// A denoising schedule prepared for a fixed number of inference steps.
///
/// Steps are addressed by index (0 = the noisiest). Stochastic samplers take their noise as an
/// argument so the caller controls the random stream (the same seed gives the same video on
/// every execution provider).
pub trait Scheduler: Send {
    /// Timesteps handed to the model, one per step, noisiest first.
    fn timesteps(&self) -> &[f64];

    /// Standard deviation of the initial noise.
    fn init_noise_sigma(&self) -> f32;

    /// Scales the denoising model input at step `index` (identity for DDIM and DPM-Solver++).
    fn scale_model_input(&self, sample: ArrayD<f32>, index: usize) -> ArrayD<f32>;

    /// Whether `step(index, ..)` consumes a noise tensor shaped like the sample.
    fn needs_noise(&self, index: usize) -> bool;

    /// Advances the sample by one step from the model output at step `index`.
    fn step(
        &mut self,
        model_output: ArrayViewD<'_, f32>,
        index: usize,
        sample: ArrayViewD<'_, f32>,
        noise: Option<ArrayViewD<'_, f32>>,
    ) -> Result<StepOutput, SamplingError>;

    /// Number of inference steps.
    fn num_steps(&self) -> usize {
        self.timesteps().len()
    }
}

//! DDIM sampling with stochasticity eta (Song, Meng & Ermon 2021, "Denoising Diffusion
//! Implicit Models", eq. 12 and 16). Stage 2 of StreamingT2V runs it with eta = 1.
//!
//! Reference: diffusers 0.42 `DDIMScheduler` (`step`, `_get_variance`, `add_noise`). The
//! coefficients are computed in double from diffusers' float32 `alphas_cumprod`; the previous
//! timestep is `t - num_train_timesteps / num_inference_steps`, as there.

use ndarray::{ArrayD, ArrayViewD, Zip};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::{parse_config, require, require_range, PredictionType, TimestepSpacing};
use super::schedule::{
    self, beta_config, check_timesteps, train_betas, validate_betas, validate_steps, BetaSchedule,
};
use super::tensor::{check_same_shape, linear_combination, required_noise};
use super::{SamplingError, Scheduler, StepOutput};

/// `DDIMScheduler`'s config; `Default` is diffusers' default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DdimConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub set_alpha_to_one: bool,
    pub steps_offset: usize,
    pub prediction_type: PredictionType,
    pub thresholding: bool,
    pub dynamic_thresholding_ratio: f64,
    pub sample_max_value: f64,
    pub timestep_spacing: TimestepSpacing,
    pub rescale_betas_zero_snr: bool,
}

impl Default for DdimConfig {
    fn default() -> Self {
        DdimConfig {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            clip_sample: true,
            clip_sample_range: 1.0,
            set_alpha_to_one: true,
            steps_offset: 0,
            prediction_type: PredictionType::Epsilon,
            thresholding: false,
            dynamic_thresholding_ratio: 0.995,
            sample_max_value: 1.0,
            timestep_spacing: TimestepSpacing::Leading,
            rescale_betas_zero_snr: false,
        }
    }
}

impl DdimConfig {
    /// Keys of other diffusers schedulers that `from_config` ignores (the ModelScope T2V
    /// `scheduler_config.json` is shared by several schedulers).
    const FOREIGN_KEYS: &'static [&'static str] = &["skip_prk_steps"];

    /// StreamingT2V stage 2: ModelScope T2V's scheduler config (architecture reference 3.1).
    pub fn stage2() -> Self {
        DdimConfig {
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            clip_sample: false,
            set_alpha_to_one: false,
            steps_offset: 1,
            ..DdimConfig::default()
        }
    }

    /// Reads a manifest's JSON config (diffusers field names).
    pub fn from_json(config: &Map<String, Value>) -> Result<Self, SamplingError> {
        parse_config(config, Self::FOREIGN_KEYS)
    }

    fn validate(&self) -> Result<(), SamplingError> {
        require("thresholding", self.thresholding, false, "not implemented")?;
        validate_betas(
            self.num_train_timesteps,
            self.beta_start,
            self.beta_end,
            self.trained_betas.as_deref(),
        )?;
        require_range(
            "clip_sample_range",
            self.clip_sample_range,
            self.clip_sample_range > 0.0,
            "a positive number",
        )
    }
}

/// A DDIM schedule prepared for a fixed number of steps and eta.
#[derive(Debug, Clone)]
pub struct Ddim {
    config: DdimConfig,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    timesteps: Vec<i64>,
    timesteps_f64: Vec<f64>,
    step_ratio: i64,
    eta: f64,
}

/// The scalars of one DDIM update.
#[derive(Debug, Clone, Copy)]
struct DdimCoefficients {
    sqrt_alpha_prod: f64,
    sqrt_beta_prod: f64,
    sqrt_alpha_prod_prev: f64,
    direction: f64,
    std_dev: f64,
}

impl Ddim {
    /// Prepares `num_inference_steps` steps with stochasticity `eta` in [0, 1] (0 = DDIM,
    /// 1 = DDPM-like ancestral sampling).
    pub fn new(
        config: DdimConfig,
        num_inference_steps: usize,
        eta: f32,
    ) -> Result<Self, SamplingError> {
        config.validate()?;
        validate_steps(num_inference_steps, config.num_train_timesteps)?;
        require_range(
            "eta",
            f64::from(eta),
            (0.0..=1.0).contains(&eta),
            "a number in [0, 1]",
        )?;
        let betas = train_betas(beta_config!(config));
        let alphas_cumprod = schedule::alphas_cumprod(&betas);
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let timesteps = schedule::ddim_timesteps(
            config.timestep_spacing,
            config.num_train_timesteps,
            num_inference_steps,
            config.steps_offset,
        );
        check_timesteps(&timesteps, config.num_train_timesteps)?;
        Ok(Ddim {
            step_ratio: (config.num_train_timesteps / num_inference_steps) as i64,
            timesteps_f64: timesteps.iter().map(|&t| t as f64).collect(),
            timesteps,
            alphas_cumprod,
            final_alpha_cumprod,
            eta: f64::from(eta),
            config,
        })
    }

    /// The training schedule's cumulative alpha products (float32, as diffusers).
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    fn coefficients(&self, index: usize) -> Result<DdimCoefficients, SamplingError> {
        let timestep = *self
            .timesteps
            .get(index)
            .ok_or(SamplingError::StepOutOfRange {
                index,
                len: self.timesteps.len(),
            })?;
        let alpha_at = |t: i64| f64::from(self.alphas_cumprod[t as usize]);
        let prev_timestep = timestep - self.step_ratio;
        let alpha_prod = alpha_at(timestep);
        let alpha_prod_prev = if prev_timestep >= 0 {
            alpha_at(prev_timestep)
        } else {
            f64::from(self.final_alpha_cumprod)
        };
        let variance =
            (1.0 - alpha_prod_prev) / (1.0 - alpha_prod) * (1.0 - alpha_prod / alpha_prod_prev);
        let std_dev = self.eta * variance.sqrt();
        Ok(DdimCoefficients {
            sqrt_alpha_prod: alpha_prod.sqrt(),
            sqrt_beta_prod: (1.0 - alpha_prod).sqrt(),
            sqrt_alpha_prod_prev: alpha_prod_prev.sqrt(),
            // Clamped at 0: at a zero terminal SNR with eta = 1 the first step's variance is
            // exactly 1 - alpha_prod_prev, and std_dev^2 may round a hair above it (diffusers
            // takes the root of that negative number and returns NaN latents).
            direction: (1.0 - alpha_prod_prev - std_dev * std_dev).max(0.0).sqrt(),
            std_dev,
        })
    }

    /// (x0, eps) from a model output of `prediction`, x0 clipped as configured.
    fn predict(
        &self,
        prediction: PredictionType,
        c: DdimCoefficients,
        model_output: ArrayViewD<'_, f32>,
        sample: ArrayViewD<'_, f32>,
    ) -> Result<(ArrayD<f32>, ArrayD<f32>), SamplingError> {
        check_same_shape("model output", sample.shape(), model_output.shape())?;
        let (a, b) = (c.sqrt_alpha_prod, c.sqrt_beta_prod);
        let pair = |m: f32, x: f32| -> (f64, f64) {
            let (m, x) = (f64::from(m), f64::from(x));
            match prediction {
                PredictionType::Epsilon => ((x - b * m) / a, m),
                PredictionType::VPrediction => (a * x - b * m, a * m + b * x),
                PredictionType::Sample => (m, (x - a * m) / b),
            }
        };
        let clip = self
            .config
            .clip_sample
            .then_some(self.config.clip_sample_range);
        let x0 = Zip::from(&model_output).and(&sample).map_collect(|&m, &x| {
            let x0 = pair(m, x).0;
            clip.map_or(x0, |r| x0.clamp(-r, r)) as f32
        });
        let eps = Zip::from(&model_output)
            .and(&sample)
            .map_collect(|&m, &x| pair(m, x).1 as f32);
        Ok((x0, eps))
    }

    fn update(
        &self,
        prediction: PredictionType,
        model_output: ArrayViewD<'_, f32>,
        index: usize,
        sample: ArrayViewD<'_, f32>,
        noise: Option<ArrayViewD<'_, f32>>,
    ) -> Result<StepOutput, SamplingError> {
        let c = self.coefficients(index)?;
        let (x0, eps) = self.predict(prediction, c, model_output, sample.view())?;
        let mut terms = vec![
            (c.sqrt_alpha_prod_prev, x0.view()),
            (c.direction, eps.view()),
        ];
        if self.needs_noise(index) {
            terms.push((c.std_dev, required_noise(noise, index, sample.shape())?));
        }
        let prev_sample = linear_combination(sample.shape(), &terms)?;
        Ok(StepOutput {
            prev_sample,
            pred_original_sample: x0,
        })
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps_f64
    }

    fn needs_noise(&self, _index: usize) -> bool {
        self.eta > 0.0
    }

    fn step(
        &mut self,
        model_output: ArrayViewD<'_, f32>,
        index: usize,
        sample: ArrayViewD<'_, f32>,
        noise: Option<ArrayViewD<'_, f32>>,
    ) -> Result<StepOutput, SamplingError> {
        self.update(
            self.config.prediction_type,
            model_output,
            index,
            sample,
            noise,
        )
    }

    fn predict_original(
        &self,
        model_output: ArrayViewD<'_, f32>,
        index: usize,
        sample: ArrayViewD<'_, f32>,
    ) -> Result<ArrayD<f32>, SamplingError> {
        let c = self.coefficients(index)?;
        Ok(self
            .predict(self.config.prediction_type, c, model_output, sample)?
            .0)
    }

    fn step_denoised(
        &mut self,
        denoised: ArrayViewD<'_, f32>,
        index: usize,
        sample: ArrayViewD<'_, f32>,
        noise: Option<ArrayViewD<'_, f32>>,
    ) -> Result<StepOutput, SamplingError> {
        self.update(PredictionType::Sample, denoised, index, sample, noise)
    }

    fn add_noise(
        &self,
        original: ArrayViewD<'_, f32>,
        noise: ArrayViewD<'_, f32>,
        timestep: usize,
    ) -> Result<ArrayD<f32>, SamplingError> {
        schedule::add_noise(&self.alphas_cumprod, original, noise, timestep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage2_schedule_matches_the_reference_timesteps() {
        let ddim = Ddim::new(DdimConfig::stage2(), 50, 1.0).unwrap();
        let t = ddim.timesteps();
        assert_eq!((t[0], t[1], t[49]), (981.0, 961.0, 1.0));
        assert!(ddim.needs_noise(49));
    }

    #[test]
    fn stochastic_step_without_noise_is_an_error() {
        let mut ddim = Ddim::new(DdimConfig::stage2(), 10, 1.0).unwrap();
        let x = ArrayD::<f32>::zeros(vec![1, 4, 2, 2]);
        let err = ddim.step(x.view(), 0, x.view(), None).unwrap_err();
        assert!(matches!(err, SamplingError::MissingNoise { index: 0 }));
    }

    #[test]
    fn zero_terminal_snr_with_eta_1_steps_to_finite_latents() {
        let config = DdimConfig {
            prediction_type: PredictionType::VPrediction,
            timestep_spacing: TimestepSpacing::Trailing,
            rescale_betas_zero_snr: true,
            ..DdimConfig::stage2()
        };
        let mut rounded_below_zero = 0;
        for steps in 1..=100 {
            // (A few counts round a trailing timestep to -1: refused, as checked elsewhere.)
            let Ok(mut ddim) = Ddim::new(config.clone(), steps, 1.0) else {
                continue;
            };
            let c = ddim.coefficients(0).unwrap();
            assert_eq!(c.sqrt_alpha_prod, 0.0, "{steps} steps start at t = 999");
            let alpha_prev = c.sqrt_alpha_prod_prev * c.sqrt_alpha_prod_prev;
            rounded_below_zero += usize::from(1.0 - alpha_prev - c.std_dev * c.std_dev < 0.0);
            let x = ArrayD::<f32>::from_elem(vec![1, 4, 2, 2], 0.5);
            let out = ddim.step(x.view(), 0, x.view(), Some(x.view())).unwrap();
            assert!(
                out.prev_sample.iter().all(|v| v.is_finite()),
                "{steps} steps"
            );
        }
        // The case the clamp is for: the unclamped root is NaN for some step counts (25 is one).
        assert!(rounded_below_zero > 0);
    }

    #[test]
    fn eta_outside_unit_interval_is_rejected() {
        let err = Ddim::new(DdimConfig::stage2(), 10, 1.5).unwrap_err();
        assert!(matches!(err, SamplingError::Config { ref field, .. } if field == "eta"));
    }
}

//! Multistep DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
//! Diffusion Probabilistic Models", algorithm 2) and its SDE variant, orders 1 to 3.
//! Stage 1 of StreamingT2V (ModelScope T2V) runs the second-order midpoint solver.
//!
//! Reference: diffusers 0.42 `DPMSolverMultistepScheduler` (`set_timesteps`,
//! `convert_model_output`, `dpm_solver_first_order_update`,
//! `multistep_dpm_solver_{second,third}_order_update`, the `lower_order_*` rules of `step`).
//! Sigmas are diffusers' float32 values; the update coefficients are computed in double and
//! applied as one linear combination of the sample, the x0 history and the noise.

use std::collections::VecDeque;

use ndarray::{ArrayD, ArrayViewD, Zip};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::{parse_config, require, PredictionType, TimestepSpacing};
use super::schedule::{
    self, beta_config, check_timesteps, train_betas, validate_betas, validate_steps, BetaSchedule,
};
use super::tensor::{check_same_shape, check_step, checked_multistep_inputs, linear_combination};
use super::{SamplingError, Scheduler, SolverState, StepOutput};

/// `algorithm_type`: the deterministic or the stochastic data-prediction solver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DpmAlgorithm {
    #[serde(rename = "dpmsolver++")]
    DpmSolverPlusPlus,
    #[serde(rename = "sde-dpmsolver++")]
    SdeDpmSolverPlusPlus,
}

/// `solver_type` of the second-order update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SolverType {
    Midpoint,
    Heun,
}

/// `final_sigmas_type`: the noise level after the last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalSigmas {
    Zero,
    SigmaMin,
}

/// `DPMSolverMultistepScheduler`'s config; `Default` is diffusers' default. Options this
/// engine does not implement are accepted only at their default (off) value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DpmSolverMultistepConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub solver_order: usize,
    pub prediction_type: PredictionType,
    pub thresholding: bool,
    pub dynamic_thresholding_ratio: f64,
    pub sample_max_value: f64,
    pub algorithm_type: DpmAlgorithm,
    pub solver_type: SolverType,
    pub lower_order_final: bool,
    pub euler_at_final: bool,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub use_lu_lambdas: bool,
    pub use_flow_sigmas: bool,
    pub flow_shift: f64,
    pub final_sigmas_type: FinalSigmas,
    /// `None` stands for diffusers' `-inf` (no clipping), which JSON cannot spell.
    pub lambda_min_clipped: Option<f64>,
    pub variance_type: Option<String>,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: usize,
    pub rescale_betas_zero_snr: bool,
    pub use_dynamic_shifting: bool,
    pub time_shift_type: String,
}

impl Default for DpmSolverMultistepConfig {
    fn default() -> Self {
        DpmSolverMultistepConfig {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            solver_order: 2,
            prediction_type: PredictionType::Epsilon,
            thresholding: false,
            dynamic_thresholding_ratio: 0.995,
            sample_max_value: 1.0,
            algorithm_type: DpmAlgorithm::DpmSolverPlusPlus,
            solver_type: SolverType::Midpoint,
            lower_order_final: true,
            euler_at_final: false,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            use_lu_lambdas: false,
            use_flow_sigmas: false,
            flow_shift: 1.0,
            final_sigmas_type: FinalSigmas::Zero,
            lambda_min_clipped: None,
            variance_type: None,
            timestep_spacing: TimestepSpacing::Linspace,
            steps_offset: 0,
            rescale_betas_zero_snr: false,
            use_dynamic_shifting: false,
            time_shift_type: "exponential".into(),
        }
    }
}

impl DpmSolverMultistepConfig {
    /// DDIM keys of the ModelScope T2V `scheduler_config.json`, ignored by `from_config`.
    const FOREIGN_KEYS: &'static [&'static str] = &[
        "clip_sample",
        "clip_sample_range",
        "set_alpha_to_one",
        "skip_prk_steps",
    ];

    /// StreamingT2V stage 1: ModelScope T2V's schedule under `DPMSolverMultistepScheduler`
    /// (architecture reference 1.1).
    pub fn stage1() -> Self {
        DpmSolverMultistepConfig {
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            steps_offset: 1,
            ..DpmSolverMultistepConfig::default()
        }
    }

    /// Reads a manifest's JSON config (diffusers field names).
    pub fn from_json(config: &Map<String, Value>) -> Result<Self, SamplingError> {
        parse_config(config, Self::FOREIGN_KEYS)
    }

    fn validate(&self) -> Result<(), SamplingError> {
        const NOT_IMPLEMENTED: &str = "not implemented";
        if !(1..=3).contains(&self.solver_order) {
            return Err(SamplingError::Config {
                field: "solver_order".into(),
                expected: "1, 2 or 3".into(),
                found: self.solver_order.to_string(),
            });
        }
        require("thresholding", self.thresholding, false, NOT_IMPLEMENTED)?;
        require(
            "use_karras_sigmas",
            self.use_karras_sigmas,
            false,
            NOT_IMPLEMENTED,
        )?;
        require(
            "use_exponential_sigmas",
            self.use_exponential_sigmas,
            false,
            NOT_IMPLEMENTED,
        )?;
        require(
            "use_beta_sigmas",
            self.use_beta_sigmas,
            false,
            NOT_IMPLEMENTED,
        )?;
        require(
            "use_lu_lambdas",
            self.use_lu_lambdas,
            false,
            NOT_IMPLEMENTED,
        )?;
        require(
            "use_flow_sigmas",
            self.use_flow_sigmas,
            false,
            NOT_IMPLEMENTED,
        )?;
        require(
            "use_dynamic_shifting",
            self.use_dynamic_shifting,
            false,
            NOT_IMPLEMENTED,
        )?;
        require(
            "lambda_min_clipped",
            self.lambda_min_clipped,
            None,
            "-inf: no clipping",
        )?;
        require(
            "variance_type",
            self.variance_type.as_deref(),
            None,
            NOT_IMPLEMENTED,
        )?;
        validate_betas(
            self.num_train_timesteps,
            self.beta_start,
            self.beta_end,
            self.trained_betas.as_deref(),
        )
    }
}

/// A DPM-Solver++ schedule prepared for a fixed number of steps, with its x0 history.
#[derive(Debug, Clone)]
pub struct DpmSolverMultistep {
    config: DpmSolverMultistepConfig,
    alphas_cumprod: Vec<f32>,
    timesteps: Vec<f64>,
    /// Noise levels sqrt((1 - a) / a), one per step plus the final one (float32 as diffusers).
    sigmas: Vec<f32>,
    /// The most recent x0 predictions, newest last, at most `solver_order` of them.
    history: VecDeque<ArrayD<f32>>,
    next_index: usize,
}

impl DpmSolverMultistep {
    /// Prepares `num_inference_steps` steps.
    pub fn new(
        config: DpmSolverMultistepConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SamplingError> {
        config.validate()?;
        validate_steps(num_inference_steps, config.num_train_timesteps)?;
        let betas = train_betas(beta_config!(config));
        let mut alphas_cumprod = schedule::alphas_cumprod(&betas);
        if config.rescale_betas_zero_snr {
            // As diffusers: almost 0 (the smallest f16 subnormal), so the first sigma is finite.
            if let Some(last) = alphas_cumprod.last_mut() {
                *last = 2f32.powi(-24);
            }
        }
        let timesteps = schedule::dpm_solver_timesteps(
            config.timestep_spacing,
            config.num_train_timesteps,
            num_inference_steps,
            config.steps_offset,
        );
        check_timesteps(&timesteps, config.num_train_timesteps)?;
        let sigma_of = |a: f32| ((1.0 - a) / a).sqrt();
        let mut sigmas: Vec<f32> = timesteps
            .iter()
            .map(|&t| sigma_of(alphas_cumprod[t as usize]))
            .collect();
        sigmas.push(match config.final_sigmas_type {
            FinalSigmas::Zero => 0.0,
            FinalSigmas::SigmaMin => sigma_of(alphas_cumprod[0]),
        });
        Ok(DpmSolverMultistep {
            history: VecDeque::with_capacity(config.solver_order),
            timesteps: timesteps.iter().map(|&t| t as f64).collect(),
            config,
            alphas_cumprod,
            sigmas,
            next_index: 0,
        })
    }

    /// Noise levels, one per step plus the final one.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    fn is_sde(&self) -> bool {
        self.config.algorithm_type == DpmAlgorithm::SdeDpmSolverPlusPlus
    }

    /// (alpha_t, sigma_t, lambda_t) of the VP process at step `index` of the sigma table.
    fn alpha_sigma_lambda(&self, index: usize) -> (f64, f64, f64) {
        let sigma = f64::from(self.sigmas[index]);
        let alpha_t = 1.0 / (sigma * sigma + 1.0).sqrt();
        let sigma_t = sigma * alpha_t;
        (alpha_t, sigma_t, alpha_t.ln() - sigma_t.ln())
    }

    /// The order of step `index` under diffusers' warm-up and `lower_order_final` rules.
    fn order_at(&self, index: usize) -> usize {
        let n = self.timesteps.len();
        let short = self.config.lower_order_final && n < 15;
        let lower_final = index + 1 == n
            && (self.config.euler_at_final
                || short
                || self.config.final_sigmas_type == FinalSigmas::Zero);
        let lower_second = index + 2 == n && short;
        let warmed_up = index.min(self.config.solver_order);
        if self.config.solver_order == 1 || warmed_up < 1 || lower_final {
            1
        } else if self.config.solver_order == 2 || warmed_up < 2 || lower_second {
            2
        } else {
            3
        }
    }

    /// Coefficients of (sample, x0 history newest first, noise) for step `index`.
    fn coefficients(&self, index: usize, order: usize) -> (f64, Vec<f64>, f64) {
        let (alpha_t, sigma_t, lambda_t) = self.alpha_sigma_lambda(index + 1);
        let (_, sigma_s0, lambda_s0) = self.alpha_sigma_lambda(index);
        let h = lambda_t - lambda_s0;
        let sde = self.is_sde();
        // Data-prediction exponential integrator: phi_1 = 1 - e^{-h} (ODE) or 1 - e^{-2h} (SDE).
        let (sample_coef, phi, noise_coef) = if sde {
            let phi = -(-2.0 * h).exp_m1();
            ((sigma_t / sigma_s0) * (-h).exp(), phi, sigma_t * phi.sqrt())
        } else {
            (sigma_t / sigma_s0, -(-h).exp_m1(), 0.0)
        };
        let d0 = alpha_t * phi;
        let r = |k: usize| {
            let (_, _, lambda_a) = self.alpha_sigma_lambda(index - k);
            let (_, _, lambda_b) = self.alpha_sigma_lambda(index - k - 1);
            (lambda_a - lambda_b) / h
        };
        let history = match order {
            1 => vec![d0],
            2 => {
                let r0 = r(0);
                let d1 = self.second_order_coefficient(alpha_t, h, phi);
                vec![d0 + d1 / r0, -d1 / r0]
            }
            _ => {
                let (r0, r1) = (r(0), r(1));
                let (d1, d2) = self.third_order_coefficients(alpha_t, h);
                // D1 = D1_0 + r0/(r0+r1) (D1_0 - D1_1), D2 = (D1_0 - D1_1)/(r0+r1),
                // D1_0 = (m0 - m1)/r0, D1_1 = (m1 - m2)/r1, expanded over m0, m1, m2.
                let w = r0 / (r0 + r1);
                let c10 = d1 * (1.0 + w) + d2 / (r0 + r1);
                let c11 = -d1 * w - d2 / (r0 + r1);
                vec![d0 + c10 / r0, c11 / r1 - c10 / r0, -c11 / r1]
            }
        };
        (sample_coef, history, noise_coef)
    }

    /// Coefficient of D1 = (m0 - m1) / r0 in the second-order update.
    fn second_order_coefficient(&self, alpha_t: f64, h: f64, phi: f64) -> f64 {
        match (self.is_sde(), self.config.solver_type) {
            (_, SolverType::Midpoint) => 0.5 * alpha_t * phi,
            (false, SolverType::Heun) => alpha_t * ((-h).exp_m1() / h + 1.0),
            (true, SolverType::Heun) => alpha_t * (phi / (-2.0 * h) + 1.0),
        }
    }

    /// Coefficients of D1 and D2 in the third-order update.
    fn third_order_coefficients(&self, alpha_t: f64, h: f64) -> (f64, f64) {
        if self.is_sde() {
            let phi = -(-2.0 * h).exp_m1();
            (
                alpha_t * (phi / (-2.0 * h) + 1.0),
                alpha_t * ((phi - 2.0 * h) / (2.0 * h).powi(2) - 0.5),
            )
        } else {
            let em1 = (-h).exp_m1();
            (
                alpha_t * (em1 / h + 1.0),
                -alpha_t * ((em1 + h) / (h * h) - 0.5),
            )
        }
    }
}

impl Scheduler for DpmSolverMultistep {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// Every SDE step, the last included (where its weight is 0): diffusers draws one noise
    /// tensor per SDE step, so the caller's random stream stays aligned with the reference.
    fn needs_noise(&self, index: usize) -> bool {
        self.is_sde() && index < self.timesteps.len()
    }

    fn predict_original(
        &self,
        model_output: ArrayViewD<'_, f32>,
        index: usize,
        sample: ArrayViewD<'_, f32>,
    ) -> Result<ArrayD<f32>, SamplingError> {
        check_step(index, self.timesteps.len())?;
        check_same_shape("model output", sample.shape(), model_output.shape())?;
        let (alpha_t, sigma_t, _) = self.alpha_sigma_lambda(index);
        let prediction = self.config.prediction_type;
        Ok(Zip::from(&model_output).and(&sample).map_collect(|&m, &x| {
            let (m, x) = (f64::from(m), f64::from(x));
            let x0 = match prediction {
                PredictionType::Epsilon => (x - sigma_t * m) / alpha_t,
                PredictionType::VPrediction => alpha_t * x - sigma_t * m,
                PredictionType::Sample => m,
            };
            x0 as f32
        }))
    }

    fn state(&self) -> SolverState {
        SolverState {
            next_index: self.next_index,
            history: self.history.iter().cloned().collect(),
        }
    }

    fn restore(&mut self, state: SolverState) -> Result<(), SamplingError> {
        super::check_history(&state, self.config.solver_order, self.timesteps.len())?;
        self.history = state.history.into();
        self.next_index = state.next_index;
        Ok(())
    }

    fn step_denoised(
        &mut self,
        denoised: ArrayViewD<'_, f32>,
        index: usize,
        sample: ArrayViewD<'_, f32>,
        noise: Option<ArrayViewD<'_, f32>>,
    ) -> Result<StepOutput, SamplingError> {
        let noise =
            checked_multistep_inputs(self, self.next_index, index, (&sample, &denoised), noise)?;
        if index == 0 {
            self.history.clear();
        }
        if self.history.len() == self.config.solver_order {
            self.history.pop_front();
        }
        self.history.push_back(denoised.to_owned());
        let (sample_coef, history_coefs, noise_coef) =
            self.coefficients(index, self.order_at(index));
        let mut terms = vec![(sample_coef, sample.view())];
        terms.extend(
            history_coefs
                .iter()
                .zip(self.history.iter().rev())
                .map(|(&c, x0)| (c, x0.view())),
        );
        terms.extend(noise.map(|z| (noise_coef, z)));
        let prev_sample = linear_combination(sample.shape(), &terms)?;
        self.next_index = index + 1;
        Ok(StepOutput {
            prev_sample,
            pred_original_sample: denoised.to_owned(),
        })
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
    fn stage1_uses_first_order_at_both_ends() {
        let dpm = DpmSolverMultistep::new(DpmSolverMultistepConfig::stage1(), 50).unwrap();
        let orders: Vec<usize> = (0..50).map(|i| dpm.order_at(i)).collect();
        assert_eq!((orders[0], orders[1], orders[48], orders[49]), (1, 2, 2, 1));
        assert_eq!(dpm.sigmas().len(), 51);
        assert_eq!(dpm.sigmas()[50], 0.0);
    }

    #[test]
    fn steps_out_of_order_are_rejected() {
        let mut dpm = DpmSolverMultistep::new(DpmSolverMultistepConfig::stage1(), 10).unwrap();
        let x = ArrayD::<f32>::zeros(vec![1, 4, 2, 2]);
        dpm.step(x.view(), 0, x.view(), None).unwrap();
        let err = dpm.step(x.view(), 2, x.view(), None).unwrap_err();
        assert!(matches!(
            err,
            SamplingError::StepOrder {
                index: 2,
                expected: 1
            }
        ));
    }

    #[test]
    fn unsupported_options_name_their_field() {
        let config = DpmSolverMultistepConfig {
            use_karras_sigmas: true,
            ..DpmSolverMultistepConfig::stage1()
        };
        let err = DpmSolverMultistep::new(config, 10).unwrap_err();
        assert!(
            matches!(err, SamplingError::Config { ref field, .. } if field == "use_karras_sigmas")
        );
    }
}

//! Discrete DDPM noise schedules (Ho et al. 2020; "scaled_linear" from latent diffusion,
//! Rombach et al. 2022; "squaredcos_cap_v2" from Nichol & Dhariwal 2021) and the timestep
//! spacings of diffusers' DDIM / DPM-Solver schedulers.
//!
//! Reference: diffusers 0.42 `DDIMScheduler.__init__` / `set_timesteps` and
//! `betas_for_alpha_bar`. The tables reproduce diffusers' float32 values bit for bit: torch's
//! CPU `linspace` computes `start + step * i` with a fused multiply-add, `cumprod` accumulates
//! in double, and numpy's `round` rounds half to even. The cosine schedule is evaluated in
//! floating point (integer division there yields 999 zero betas, a bug of other ports).

use std::ops::{Div, Neg, Sub};

use ndarray::{ArrayD, ArrayViewD, Zip};
use serde::{Deserialize, Serialize};

use super::config::{require_range, TimestepSpacing};
use super::tensor::check_same_shape;
use super::SamplingError;

/// diffusers' `beta_schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// Betas evenly spaced from `beta_start` to `beta_end`.
    Linear,
    /// Square roots of the betas evenly spaced (Stable Diffusion, ModelScope T2V).
    ScaledLinear,
    /// The "improved DDPM" cosine alpha-bar, betas capped at 0.999.
    SquaredcosCapV2,
}

/// Checks the fields every beta-schedule scheduler shares.
pub(crate) fn validate_betas(
    num_train_timesteps: usize,
    beta_start: f64,
    beta_end: f64,
    trained_betas: Option<&[f64]>,
) -> Result<(), SamplingError> {
    if num_train_timesteps == 0 {
        return Err(SamplingError::Config {
            field: "num_train_timesteps".into(),
            expected: "at least 1".into(),
            found: "0".into(),
        });
    }
    if let Some(betas) = trained_betas {
        if betas.len() != num_train_timesteps || betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return Err(SamplingError::Config {
                field: "trained_betas".into(),
                expected: format!("{num_train_timesteps} values in [0, 1)"),
                found: format!("{} values", betas.len()),
            });
        }
        return Ok(());
    }
    let ok = 0.0 < beta_start && beta_start < beta_end && beta_end < 1.0;
    require_range(
        "beta_start",
        beta_start,
        ok,
        "0 < beta_start < beta_end < 1",
    )?;
    require_range("beta_end", beta_end, ok, "0 < beta_start < beta_end < 1")
}

/// The fields of a config that define its training betas (diffusers' names).
pub(crate) struct BetaConfig<'a> {
    pub schedule: BetaSchedule,
    pub beta_start: f64,
    pub beta_end: f64,
    pub num_train_timesteps: usize,
    pub trained_betas: Option<&'a [f64]>,
    pub rescale_betas_zero_snr: bool,
}

/// The [`BetaConfig`] of a scheduler config with diffusers' field names (`beta_schedule`,
/// `beta_start`, `beta_end`, `num_train_timesteps`, `trained_betas`, `rescale_betas_zero_snr`).
macro_rules! beta_config {
    ($config:expr) => {
        $crate::sampling::schedule::BetaConfig {
            schedule: $config.beta_schedule,
            beta_start: $config.beta_start,
            beta_end: $config.beta_end,
            num_train_timesteps: $config.num_train_timesteps,
            trained_betas: $config.trained_betas.as_deref(),
            rescale_betas_zero_snr: $config.rescale_betas_zero_snr,
        }
    };
}
pub(crate) use beta_config;

/// The training betas of a config: `trained_betas` if given, else the named schedule; then
/// rescaled to a zero terminal SNR when asked.
pub(crate) fn train_betas(config: BetaConfig<'_>) -> Vec<f32> {
    let betas = match config.trained_betas {
        Some(betas) => betas.iter().map(|&b| b as f32).collect(),
        None => betas(
            config.schedule,
            config.beta_start,
            config.beta_end,
            config.num_train_timesteps,
        ),
    };
    if config.rescale_betas_zero_snr {
        rescale_zero_terminal_snr(&betas)
    } else {
        betas
    }
}

/// Checks a requested step count against the training schedule.
pub(crate) fn validate_steps(
    num_inference_steps: usize,
    num_train_timesteps: usize,
) -> Result<(), SamplingError> {
    if (1..=num_train_timesteps).contains(&num_inference_steps) {
        return Ok(());
    }
    Err(SamplingError::Config {
        field: "num_inference_steps".into(),
        expected: format!("1 to {num_train_timesteps} (the training timesteps)"),
        found: num_inference_steps.to_string(),
    })
}

/// Errors if a spacing produced a timestep outside the training table.
pub(crate) fn check_timesteps(
    timesteps: &[i64],
    num_train_timesteps: usize,
) -> Result<(), SamplingError> {
    match timesteps
        .iter()
        .find(|&&t| t < 0 || t as usize >= num_train_timesteps)
    {
        None => Ok(()),
        Some(t) => Err(SamplingError::Config {
            field: "steps_offset".into(),
            expected: format!("timesteps within 0..{num_train_timesteps}"),
            found: format!("timestep {t}"),
        }),
    }
}

/// The betas of a schedule, as diffusers' float32 tensor.
pub fn betas(
    schedule: BetaSchedule,
    beta_start: f64,
    beta_end: f64,
    num_train_timesteps: usize,
) -> Vec<f32> {
    match schedule {
        BetaSchedule::Linear => {
            torch_linspace(beta_start as f32, beta_end as f32, num_train_timesteps)
        }
        BetaSchedule::ScaledLinear => torch_linspace(
            beta_start.sqrt() as f32,
            beta_end.sqrt() as f32,
            num_train_timesteps,
        )
        .into_iter()
        .map(|b| b * b)
        .collect(),
        BetaSchedule::SquaredcosCapV2 => cosine_betas(num_train_timesteps, 0.999),
    }
}

/// Betas rescaled to a zero terminal SNR (Lin et al. 2024, "Common Diffusion Noise Schedules
/// and Sample Steps are Flawed", Algorithm 1): sqrt(alpha_bar) shifted so that its last value
/// is 0 and scaled so that its first is unchanged. Float32 steps in diffusers' order
/// (`rescale_zero_terminal_snr`); the last beta is 1.
pub fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let root: Vec<f32> = alphas_cumprod(betas).iter().map(|a| a.sqrt()).collect();
    let (Some(&first), Some(&last)) = (root.first(), root.last()) else {
        return Vec::new();
    };
    let scale = first / (first - last);
    let alphas_bar: Vec<f32> = root
        .iter()
        .map(|&r| {
            let r = (r - last) * scale;
            r * r
        })
        .collect();
    let alphas =
        std::iter::once(alphas_bar[0]).chain(alphas_bar.windows(2).map(|pair| pair[1] / pair[0]));
    alphas.map(|alpha| 1.0 - alpha).collect()
}

/// Cumulative products of `1 - beta`, accumulated in double like torch's CPU `cumprod`.
pub fn alphas_cumprod(betas: &[f32]) -> Vec<f32> {
    let mut product = 1.0f64;
    betas
        .iter()
        .map(|&beta| {
            product *= f64::from(1.0f32 - beta);
            product as f32
        })
        .collect()
}

/// `sqrt(a) * original + sqrt(1 - a) * noise` for `a = alphas_cumprod[timestep]`
/// (diffusers' `add_noise`, the SDEdit forward process).
pub fn add_noise(
    alphas_cumprod: &[f32],
    original: ArrayViewD<'_, f32>,
    noise: ArrayViewD<'_, f32>,
    timestep: usize,
) -> Result<ArrayD<f32>, SamplingError> {
    let alpha_prod = alphas_cumprod.get(timestep).map(|&a| f64::from(a)).ok_or(
        SamplingError::TimestepOutOfRange {
            timestep,
            len: alphas_cumprod.len(),
        },
    )?;
    diffuse(
        original,
        noise,
        alpha_prod.sqrt(),
        (1.0 - alpha_prod).sqrt(),
    )
}

/// `alpha * original + sigma * noise`, elementwise in double.
pub fn diffuse(
    original: ArrayViewD<'_, f32>,
    noise: ArrayViewD<'_, f32>,
    alpha: f64,
    sigma: f64,
) -> Result<ArrayD<f32>, SamplingError> {
    check_same_shape("noise", original.shape(), noise.shape())?;
    Ok(Zip::from(&original)
        .and(&noise)
        .map_collect(|&x, &n| (alpha * f64::from(x) + sigma * f64::from(n)) as f32))
}

/// DDIM's inference timesteps (`DDIMScheduler.set_timesteps`), noisiest first.
pub fn ddim_timesteps(
    spacing: TimestepSpacing,
    num_train_timesteps: usize,
    num_inference_steps: usize,
    steps_offset: usize,
) -> Vec<i64> {
    let train = num_train_timesteps as f64;
    let steps = num_inference_steps;
    match spacing {
        TimestepSpacing::Linspace => numpy_linspace(0.0, train - 1.0, steps)
            .into_iter()
            .rev()
            .map(round_half_even)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = (num_train_timesteps / steps) as i64;
            (0..steps as i64)
                .rev()
                .map(|i| i * ratio + steps_offset as i64)
                .collect()
        }
        TimestepSpacing::Trailing => trailing_timesteps(train, train / steps as f64),
    }
}

/// DPM-Solver's inference timesteps (`DPMSolverMultistepScheduler.set_timesteps` with
/// `lambda_min_clipped = -inf`), noisiest first.
pub fn dpm_solver_timesteps(
    spacing: TimestepSpacing,
    num_train_timesteps: usize,
    num_inference_steps: usize,
    steps_offset: usize,
) -> Vec<i64> {
    let train = num_train_timesteps as f64;
    let steps = num_inference_steps;
    match spacing {
        TimestepSpacing::Linspace => {
            let mut points: Vec<i64> = numpy_linspace(0.0, train - 1.0, steps + 1)
                .into_iter()
                .map(round_half_even)
                .collect();
            points.remove(0);
            points.reverse();
            points
        }
        TimestepSpacing::Leading => {
            let ratio = (num_train_timesteps / (steps + 1)) as i64;
            (1..=steps as i64)
                .rev()
                .map(|i| i * ratio + steps_offset as i64)
                .collect()
        }
        TimestepSpacing::Trailing => trailing_timesteps(train, train / steps as f64),
    }
}

/// `round(np.arange(last, 0, -ratio)) - 1`, with numpy's arange fill (`start + i * delta`,
/// `delta` taken from the first two values).
fn trailing_timesteps(last: f64, ratio: f64) -> Vec<i64> {
    let len = ((0.0 - last) / -ratio).ceil().max(0.0) as usize;
    let second = last - ratio;
    let delta = second - last;
    (0..len)
        .map(|i| match i {
            0 => last,
            1 => second,
            _ => last + i as f64 * delta,
        })
        .map(|t| round_half_even(t) - 1)
        .collect()
}

/// `np.linspace(start, stop, num)` with its endpoint pinned to `stop`.
pub(crate) fn numpy_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    (0..num)
        .map(|i| {
            if i == num - 1 {
                stop
            } else {
                i as f64 * step + start
            }
        })
        .collect()
}

/// `torch.linspace(start, end, steps)` on the CPU, in the precision of `T` (float32 or float64):
/// the first half steps up from `start`, the second half down from `end`, each point one fused
/// multiply-add.
pub(crate) fn torch_linspace<T: LinspaceFloat>(start: T, end: T, steps: usize) -> Vec<T> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / T::from_count(steps - 1);
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                step.fused_mul_add(T::from_count(i), start)
            } else {
                (-step).fused_mul_add(T::from_count(steps - i - 1), end)
            }
        })
        .collect()
}

/// What [`torch_linspace`] needs of f32 and f64.
pub(crate) trait LinspaceFloat:
    Copy + Sub<Output = Self> + Div<Output = Self> + Neg<Output = Self>
{
    fn from_count(count: usize) -> Self;
    /// `self * a + b`, rounded once.
    fn fused_mul_add(self, a: Self, b: Self) -> Self;
}

impl LinspaceFloat for f32 {
    fn from_count(count: usize) -> Self {
        count as f32
    }

    fn fused_mul_add(self, a: Self, b: Self) -> Self {
        self.mul_add(a, b)
    }
}

impl LinspaceFloat for f64 {
    fn from_count(count: usize) -> Self {
        count as f64
    }

    fn fused_mul_add(self, a: Self, b: Self) -> Self {
        self.mul_add(a, b)
    }
}

/// Betas discretizing alpha_bar(t) = cos²((t + 0.008) / 1.008 · π/2), capped at `max_beta`.
fn cosine_betas(num_train_timesteps: usize, max_beta: f64) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
            .cos()
            .powi(2)
    };
    let n = num_train_timesteps as f64;
    (0..num_train_timesteps)
        .map(|i| {
            let (t1, t2) = (i as f64 / n, (i + 1) as f64 / n);
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta) as f32
        })
        .collect()
}

/// numpy / torch `round`: halves go to the even neighbour.
pub(crate) fn round_half_even(value: f64) -> i64 {
    value.round_ties_even() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_has_no_zero_betas() {
        let betas = betas(BetaSchedule::SquaredcosCapV2, 0.0, 0.0, 1000);
        assert!(betas.iter().all(|&b| b > 0.0));
        assert_eq!(betas[999], 0.999);
    }

    #[test]
    fn stage_timesteps_match_the_architecture_reference() {
        let ddim = ddim_timesteps(TimestepSpacing::Leading, 1000, 50, 1);
        assert_eq!((ddim[0], ddim[1], ddim[49]), (981, 961, 1));
        let dpm = dpm_solver_timesteps(TimestepSpacing::Linspace, 1000, 50, 1);
        assert_eq!((dpm[0], dpm[1], dpm[48], dpm[49]), (999, 979, 40, 20));
    }

    #[test]
    fn add_noise_rejects_timestep_past_the_table() {
        let x = ArrayD::<f32>::zeros(vec![2]);
        let err = add_noise(&[0.5; 10], x.view(), x.view(), 10).unwrap_err();
        assert!(matches!(
            err,
            SamplingError::TimestepOutOfRange {
                timestep: 10,
                len: 10
            }
        ));
    }
}

//! The enhancer's continuous-time noise schedule: "logsnr_cosine_interp" (the cosine log-SNR
//! schedule of Nichol & Dhariwal 2021, shifted for resolution as in Hoogeboom et al. 2023,
//! "simple diffusion", interpolated between two shifts), optionally rescaled to zero terminal
//! SNR (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed").
//!
//! Reference: modelscope 1.40 `models/multi_modal/video_to_video/utils/schedules_sdedit.py`
//! (`noise_schedule`) and `diffusion_sdedit.py` (`GaussianDiffusion_SDEdit._t_to_sigma`,
//! `_sigma_to_t`, the step discretization of `sample`), the copy vendored by StreamingT2V.
//! Evaluated in double with the reference's order of operations.

use super::config::TimestepSpacing;
use super::schedule::{round_half_even, torch_linspace};

/// The variance-preserving schedule on integer timesteps 0..n, with the "k-diffusion" noise
/// level sigma_k = sigma / alpha used by the solver.
#[derive(Debug, Clone)]
pub struct LogSnrSchedule {
    /// sigma_VP[t]: standard deviation of the noise in x_t.
    sigmas: Vec<f64>,
    /// alpha_VP[t] = sqrt(1 - sigma_VP[t]^2).
    alphas: Vec<f64>,
    /// ln(sigma_VP / alpha_VP): increasing in t, +inf at a zero-SNR end.
    log_sigmas: Vec<f64>,
}

/// Parameters of [`LogSnrSchedule::new`].
#[derive(Debug, Clone, Copy)]
pub struct LogSnrParams {
    pub num_train_timesteps: usize,
    pub logsnr_min: f64,
    pub logsnr_max: f64,
    pub scale_min: f64,
    pub scale_max: f64,
    pub zero_terminal_snr: bool,
}

impl LogSnrSchedule {
    /// Builds the table; `params` are checked by the caller (n >= 2, positive scales).
    pub fn new(params: LogSnrParams) -> Self {
        let n = params.num_train_timesteps;
        let shifted = |scale: f64| -> Vec<f64> {
            let shift = 2.0 * (1.0 / scale).ln();
            cosine_logsnrs(n, params.logsnr_min, params.logsnr_max)
                .into_iter()
                .map(|l| l + shift)
                .collect()
        };
        let (low, high) = (shifted(params.scale_min), shifted(params.scale_max));
        let t = torch_linspace(1.0, 0.0, n);
        let mut sigmas: Vec<f64> = (0..n)
            .map(|i| t[i] * low[i] + (1.0 - t[i]) * high[i])
            .map(|logsnr| sigmoid(-logsnr).sqrt())
            .collect();
        if params.zero_terminal_snr {
            rescale_to_unit_max(&mut sigmas);
        }
        let alphas = sigmas.iter().map(|s| (1.0 - s * s).sqrt()).collect();
        let log_sigmas = sigmas
            .iter()
            .map(|s| (s * s / (1.0 - s * s)).sqrt().ln())
            .collect();
        LogSnrSchedule {
            sigmas,
            alphas,
            log_sigmas,
        }
    }

    /// Number of training timesteps.
    pub fn len(&self) -> usize {
        self.sigmas.len()
    }

    /// Whether the table is empty (never, once built from checked parameters).
    pub fn is_empty(&self) -> bool {
        self.sigmas.is_empty()
    }

    /// (alpha_VP, sigma_VP) at an integer timestep, if it is in the table.
    pub fn alpha_sigma(&self, t: usize) -> Option<(f64, f64)> {
        Some((*self.alphas.get(t)?, *self.sigmas.get(t)?))
    }

    /// sigma_k at a fractional timestep: linear interpolation of ln sigma_k.
    pub fn t_to_sigma(&self, t: f64) -> f64 {
        let last = self.log_sigmas.len() - 1;
        let low = (t.floor().max(0.0) as usize).min(last);
        let high = (t.ceil().max(0.0) as usize).min(last);
        let w = t - t.trunc();
        let log_sigma = (1.0 - w) * self.log_sigmas[low] + w * self.log_sigmas[high];
        if log_sigma.is_finite() {
            log_sigma.exp()
        } else {
            f64::INFINITY
        }
    }

    /// The fractional timestep of a noise level sigma_k (inverse of [`Self::t_to_sigma`]).
    pub fn sigma_to_t(&self, sigma: f64) -> f64 {
        let n = self.log_sigmas.len();
        if sigma == f64::INFINITY {
            return (n - 1) as f64;
        }
        let log_sigma = sigma.ln();
        // The reference takes argmax(cumsum(log_sigma >= log_sigmas)): the last such index.
        let low = self
            .log_sigmas
            .iter()
            .rposition(|&l| log_sigma - l >= 0.0)
            .unwrap_or(0)
            .min(n.saturating_sub(2));
        let high = low + 1;
        let (lo, hi) = (self.log_sigmas[low], self.log_sigmas[high]);
        let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
        (1.0 - w) * low as f64 + w * high as f64
    }

    /// The solver's noise levels: `steps` timesteps from `t_max` down to `t_min` under
    /// `spacing`, then a final 0; with `discard_penultimate` one extra timestep is taken and
    /// the last non-zero level dropped (the reference does so for DPM++ 2M SDE).
    pub fn solver_sigmas(
        &self,
        steps: usize,
        t_max: usize,
        t_min: usize,
        spacing: TimestepSpacing,
        discard_penultimate: bool,
    ) -> Vec<f64> {
        let count = steps + usize::from(discard_penultimate);
        let mut sigmas: Vec<f64> = discretize(count, t_max as f64, t_min as f64, spacing)
            .into_iter()
            .map(|t| self.t_to_sigma(t))
            .collect();
        sigmas.push(0.0);
        if discard_penultimate && sigmas.len() >= 2 {
            sigmas.remove(sigmas.len() - 2);
        }
        sigmas
    }

    /// The integer timestep the model sees at noise level sigma_k: round(sigma_to_t).
    pub fn model_timestep(&self, sigma: f64) -> i64 {
        round_half_even(self.sigma_to_t(sigma))
    }
}

/// `-2 ln tan(t_min + t (t_max - t_min))` for t from 1 to 0, the cosine log-SNR.
fn cosine_logsnrs(n: usize, logsnr_min: f64, logsnr_max: f64) -> Vec<f64> {
    let t_min = (-0.5 * logsnr_min).exp().atan();
    let t_max = (-0.5 * logsnr_max).exp().atan();
    torch_linspace(1.0, 0.0, n)
        .into_iter()
        .map(|t| -2.0 * (t_min + t * (t_max - t_min)).tan().ln())
        .collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Stretches sigmas about their minimum so the largest becomes 1 (zero terminal SNR).
fn rescale_to_unit_max(sigmas: &mut [f64]) {
    let min = sigmas.iter().copied().fold(f64::INFINITY, f64::min);
    let max = sigmas.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == 1.0 {
        return;
    }
    let scale = (1.0 - min) / (max - min);
    for sigma in sigmas {
        *sigma = min + scale * (*sigma - min);
    }
}

/// The reference's timestep discretizations, clamped to [t_min, t_max].
fn discretize(steps: usize, t_max: f64, t_min: f64, spacing: TimestepSpacing) -> Vec<f64> {
    let span = t_max - t_min + 1.0;
    let raw = match spacing {
        TimestepSpacing::Leading => {
            let mut t = torch_arange(t_min, t_max + 1.0, span / steps as f64);
            t.reverse();
            t
        }
        TimestepSpacing::Linspace => torch_linspace(t_max, t_min, steps),
        TimestepSpacing::Trailing => torch_arange(t_max, t_min - 1.0, -(span / steps as f64)),
    };
    raw.into_iter().map(|t| t.clamp(t_min, t_max)).collect()
}

/// `torch.arange(start, end, step)` in double: `ceil((end - start) / step)` values.
fn torch_arange(start: f64, end: f64, step: f64) -> Vec<f64> {
    let len = ((end - start) / step).ceil().max(0.0) as usize;
    (0..len).map(|i| start + step * i as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enhancer() -> LogSnrSchedule {
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
    fn enhancer_schedule_matches_the_reported_values() {
        let schedule = enhancer();
        let (alpha, sigma) = schedule.alpha_sigma(599).unwrap();
        assert!((sigma - 0.9723632).abs() < 1e-6, "{sigma}");
        assert!((alpha - 0.2334733).abs() < 1e-6, "{alpha}");
        assert_eq!(schedule.alpha_sigma(999).unwrap().1, 1.0);
    }

    #[test]
    fn sigma_to_t_inverts_t_to_sigma() {
        let schedule = enhancer();
        for t in [0.0, 18.354_838, 300.5, 579.645, 599.0] {
            let back = schedule.sigma_to_t(schedule.t_to_sigma(t));
            assert!((back - t).abs() < 1e-6, "{t} -> {back}");
        }
    }

    #[test]
    fn enhancer_discretization_has_31_levels_ending_in_zero() {
        let sigmas = enhancer().solver_sigmas(30, 599, 0, TimestepSpacing::Trailing, true);
        assert_eq!(sigmas.len(), 31);
        assert!((sigmas[0] - 4.16477).abs() < 1e-5, "{}", sigmas[0]);
        assert_eq!(sigmas[30], 0.0);
    }
}

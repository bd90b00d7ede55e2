//! Per-frame noise for stage 3, keyed by (seed, stream, step, frame).
//!
//! The reference draws the enhancer's noise over the whole video at once (`randn_like` for the
//! SDEdit noise, a Brownian tree for the SDE steps), which ties every value to the video's
//! length and the processing order. Drawing each frame's noise from its own
//! `torch.randn`-compatible generator, seeded by a SplitMix64 hash of its key, keeps the same
//! distribution (i.i.d. standard normal, see the architecture notes on the Brownian tree) while
//! letting frames arrive one by one and chunks be processed in any order.

use ndarray::Array3;

use crate::plan::splitmix64;
use crate::sampling::TorchGenerator;

/// The independent noise streams of stage 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseStream {
    /// The SDEdit noise shared by overlapping chunks (`noise_all` of the reference).
    Sdedit = 1,
    /// The VAE posterior sample `mean + std * eps`.
    Posterior = 2,
    /// The DPM++(2M) SDE noise of each step.
    Solver = 3,
}

/// Standard normal noise (C, h, w) for one frame of one stream at one step.
pub fn frame_noise(
    seed: u64,
    stream: NoiseStream,
    step: usize,
    frame: usize,
    shape: (usize, usize, usize),
) -> Array3<f32> {
    let key = splitmix64(splitmix64(splitmix64(seed) ^ stream as u64) ^ step as u64) ^ frame as u64;
    let mut generator = TorchGenerator::new(splitmix64(key));
    let mut noise = Array3::zeros(shape);
    // A fresh zeros array is contiguous, so the slice is always there.
    if let Some(values) = noise.as_slice_mut() {
        generator.fill_randn(values);
    }
    noise
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_give_reproducible_and_distinct_noise() {
        let a = frame_noise(33, NoiseStream::Solver, 4, 7, (2, 3, 3));
        assert_eq!(a, frame_noise(33, NoiseStream::Solver, 4, 7, (2, 3, 3)));
        for other in [
            frame_noise(34, NoiseStream::Solver, 4, 7, (2, 3, 3)),
            frame_noise(33, NoiseStream::Sdedit, 4, 7, (2, 3, 3)),
            frame_noise(33, NoiseStream::Solver, 5, 7, (2, 3, 3)),
            frame_noise(33, NoiseStream::Solver, 4, 8, (2, 3, 3)),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn noise_is_standard_normal() {
        let values: Vec<f32> = (0..64)
            .flat_map(|frame| frame_noise(1, NoiseStream::Sdedit, 0, frame, (4, 8, 8)))
            .collect();
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }
}

//! StreamingT2V's latent noise modes (`t2v_enhanced/model/video_noise_generator.py`,
//! `NoiseGenerator.sample_noise`; architecture reference 3.4).
//!
//! - vanilla (the default configuration): plain `randn` of the latent shape;
//! - mixed noise (after Ge et al. 2023, "Preserve Your Own Correlation"): one frame-broadcast
//!   component `e_shared ~ N(0, a²/(1+a²))` plus an independent `e_ind ~ N(0, 1/(1+a²))` per
//!   frame, so neighbouring frames start correlated; with `shared_across_chunks`, `e_shared` is
//!   drawn once and reused by every later chunk.
//!
//! The draws match the reference's call order on its generator: `e_shared` (unless reused),
//! then one `e_ind` per frame, each of the per-frame shape, scaled by the float32 std as
//! `torch.normal(mean=0, std=s * ones)` does. (The reference also draws one discarded `randn`
//! from the global generator first; that stream is not the sampling generator's.)

use ndarray::{ArrayD, Axis, IxDyn};

use super::TorchGenerator;
use crate::sampling::SamplingError;

/// The frame axis of a latent video (B, C, F, H, W).
const FRAME_AXIS: usize = 2;

/// Which initial-noise construction a chunk uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NoiseMode {
    /// Independent N(0, 1) per element.
    Vanilla,
    /// Shared-plus-individual frame noise with correlation weight `alpha`.
    Mixed {
        alpha: f64,
        shared_across_chunks: bool,
    },
}

/// Draws the initial latent noise of successive chunks, remembering the shared component.
#[derive(Debug, Clone)]
pub struct VideoNoise {
    mode: NoiseMode,
    shared: Option<ArrayD<f32>>,
}

impl VideoNoise {
    /// A noise source in `mode`; a mixed `alpha` must be finite and non-negative.
    pub fn new(mode: NoiseMode) -> Result<Self, SamplingError> {
        if let NoiseMode::Mixed { alpha, .. } = mode {
            if !(alpha.is_finite() && alpha >= 0.0) {
                return Err(SamplingError::Invalid {
                    what: "mixed noise alpha".into(),
                    expected: "a finite non-negative number".into(),
                    found: alpha.to_string(),
                });
            }
        }
        Ok(VideoNoise { mode, shared: None })
    }

    /// Noise for one chunk of latent shape (B, C, F, H, W).
    pub fn sample(
        &mut self,
        generator: &mut TorchGenerator,
        shape: &[usize],
    ) -> Result<ArrayD<f32>, SamplingError> {
        let (alpha, shared_across_chunks) = match self.mode {
            NoiseMode::Vanilla => return Ok(generator.randn(shape)),
            NoiseMode::Mixed {
                alpha,
                shared_across_chunks,
            } => (alpha, shared_across_chunks),
        };
        if shape.len() != 5 {
            return Err(SamplingError::Invalid {
                what: "mixed noise latent shape".into(),
                expected: "rank 5 (B, C, F, H, W)".into(),
                found: format!("{shape:?}"),
            });
        }
        let mut per_frame = shape.to_vec();
        per_frame[FRAME_AXIS] = 1;
        let a2 = alpha * alpha;
        let shared_std = (a2 / (1.0 + a2)).sqrt() as f32;
        let individual_std = (1.0 / (1.0 + a2)).sqrt() as f32;
        let shared = match (&self.shared, shared_across_chunks) {
            (Some(cached), true) if cached.shape() == per_frame.as_slice() => cached.clone(),
            _ => generator.randn(&per_frame) * shared_std,
        };
        if shared_across_chunks {
            self.shared = Some(shared.clone());
        }
        let mut noise = ArrayD::zeros(IxDyn(shape));
        for mut frame in noise.axis_chunks_iter_mut(Axis(FRAME_AXIS), 1) {
            frame.assign(&(&shared + &(generator.randn(&per_frame) * individual_std)));
        }
        Ok(noise)
    }
}

/// `torch.randn` drawn in (B, F, C, H, W) order and returned as a (B, C, F, H, W) latent.
///
/// Stage 2 of the reference steps DDIM on latents permuted to (B·F, C, H, W), so diffusers
/// draws each step's variance noise in that frame-major order; this reproduces its stream.
pub fn frame_major_randn(
    generator: &mut TorchGenerator,
    shape: &[usize],
) -> Result<ArrayD<f32>, SamplingError> {
    let &[b, c, f, h, w] = shape else {
        return Err(SamplingError::Invalid {
            what: "frame-major noise latent shape".into(),
            expected: "rank 5 (B, C, F, H, W)".into(),
            found: format!("{shape:?}"),
        });
    };
    let drawn = generator.randn(&[b, f, c, h, w]);
    Ok(drawn
        .permuted_axes(IxDyn(&[0, 2, 1, 3, 4]))
        .as_standard_layout()
        .into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_component_is_reused_across_chunks() {
        let mode = NoiseMode::Mixed {
            alpha: 1.0,
            shared_across_chunks: true,
        };
        let mut noise = VideoNoise::new(mode).unwrap();
        let mut generator = TorchGenerator::new(3);
        noise.sample(&mut generator, &[1, 2, 3, 2, 2]).unwrap();
        let shared = noise.shared.clone().unwrap();
        noise.sample(&mut generator, &[1, 2, 3, 2, 2]).unwrap();
        assert_eq!(noise.shared.unwrap(), shared);
    }

    #[test]
    fn vanilla_is_plain_randn() {
        let mut noise = VideoNoise::new(NoiseMode::Vanilla).unwrap();
        let a = noise
            .sample(&mut TorchGenerator::new(5), &[1, 4, 2, 2, 2])
            .unwrap();
        assert_eq!(a, TorchGenerator::new(5).randn(&[1, 4, 2, 2, 2]));
    }

    #[test]
    fn negative_alpha_is_rejected() {
        let mode = NoiseMode::Mixed {
            alpha: -1.0,
            shared_across_chunks: false,
        };
        assert!(VideoNoise::new(mode).is_err());
    }
}

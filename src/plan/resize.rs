//! Bicubic resize as PIL does it (`Image.resize(..., BICUBIC)`, Pillow `libImaging/Resample.c`),
//! which the reference uses in `inference_utils.resize_to_fit` for the stage-3 input.
//!
//! Keys' cubic convolution with `a = -0.5` (Catmull-Rom), separable, HORIZONTAL pass first with
//! the intermediate clamped to the valid range, then the vertical pass. When downscaling the
//! kernel is widened by the scale factor; taps falling outside the image are dropped and the
//! remaining weights renormalized. Pillow computes in 8-bit fixed point and rounds after each
//! pass; this computes in `f32` on `[0, 1]` frames, so results differ by at most about one
//! 8-bit level (see the golden test in `tests/plan.rs`). The order and the intermediate clamp
//! matter: a vertical-first unclamped resize differs from PIL by up to 9 levels at edges.

use ndarray::{Array3, ArrayView3, Axis};

use super::PlanError;
use crate::video::{Frame, FrameSize};

/// Keys' cubic with `a = -0.5`; support 2.
fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// The input taps of one output sample: first input index and normalized weights.
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// Pillow's `precompute_coeffs` for one axis.
fn axis_taps(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..out_size)
        .map(|out| {
            let center = (out as f64 + 0.5) * scale;
            // Pillow truncates toward zero after adding 0.5; both bounds are >= 0 here.
            let first = (center - support + 0.5).max(0.0) as usize;
            let end = ((center + support + 0.5) as usize).min(in_size);
            let raw: Vec<f64> = (first..end)
                .map(|i| cubic((i as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = raw.iter().sum();
            let norm = if total == 0.0 { 1.0 } else { total };
            Taps {
                first,
                weights: raw.iter().map(|w| (w / norm) as f32).collect(),
            }
        })
        .collect()
}

/// Resamples `axis` of an `(height, width, 3)` array to `out_size`, clamping to `[0, 1]`.
fn resample_axis(input: ArrayView3<'_, f32>, axis: Axis, out_size: usize) -> Array3<f32> {
    let taps = axis_taps(input.len_of(axis), out_size);
    let mut shape = [input.dim().0, input.dim().1, 3];
    shape[axis.index()] = out_size;
    let mut output = Array3::<f32>::zeros(shape);
    for (tap, mut out_lane) in taps.iter().zip(output.axis_iter_mut(axis)) {
        for (k, &weight) in tap.weights.iter().enumerate() {
            out_lane.scaled_add(weight, &input.index_axis(axis, tap.first + k));
        }
        out_lane.mapv_inplace(|v| v.clamp(0.0, 1.0));
    }
    output
}

/// PIL-style bicubic resize of a `[0, 1]` frame; output clamped to `[0, 1]`.
pub fn resize_bicubic(frame: &Frame, size: FrameSize) -> Result<Frame, PlanError> {
    if size.width == 0 || size.height == 0 {
        return Err(PlanError::new(
            "resize target",
            "non-zero width and height",
            size,
        ));
    }
    let mut pixels = frame.pixels().to_owned();
    if size.width != frame.width() {
        pixels = resample_axis(pixels.view(), Axis(1), size.width);
    }
    if size.height != frame.height() {
        pixels = resample_axis(pixels.view(), Axis(0), size.height);
    }
    let shape = format!("{:?}", pixels.shape());
    Frame::new(pixels).map_err(|_| PlanError::new("resized frame shape", "(>0, >0, 3)", shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cubic_interpolates_at_integers() {
        assert_eq!(cubic(0.0), 1.0);
        assert_eq!(cubic(1.0), 0.0);
        assert_eq!(cubic(-2.0), 0.0);
        assert!((cubic(0.5) - 0.5625).abs() < 1e-12);
    }

    #[test]
    fn taps_sum_to_one_and_stay_inside() {
        for (input, output) in [(256, 720), (16, 45), (40, 16), (7, 3)] {
            for tap in axis_taps(input, output) {
                let sum: f32 = tap.weights.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5);
                assert!(tap.first + tap.weights.len() <= input);
            }
        }
    }

    #[test]
    fn constant_frames_stay_constant() {
        let frame = Frame::filled(FrameSize::new(9, 5), [0.25, 0.5, 1.0]).unwrap();
        let resized = resize_bicubic(&frame, FrameSize::new(20, 3)).unwrap();
        for pixel in resized.pixels().lanes(Axis(2)) {
            assert!((pixel[0] - 0.25).abs() < 1e-5 && (pixel[2] - 1.0).abs() < 1e-5);
        }
    }
}

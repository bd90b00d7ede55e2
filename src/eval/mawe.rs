//! MAWE, the motion-aware warp error of Henschel et al. 2024, "StreamingT2V: Consistent,
//! Dynamic, and Extendable Long Video Generation from Text".
//!
//! For consecutive frames `(i, i+1)`, both resized to `MAWE_SIZE x MAWE_SIZE`:
//! `M_i` = mean flow magnitude, `WE_i` = mean squared error (0-255 scale, over the pixels
//! the forward warp reaches, 3 channels) between frame `i+1` and frame `i` forward-warped by
//! the flow, and `MAWE = mean_i WE_i / (MAWE_COEFF * M_i)`: the mean of per-pair ratios,
//! not a ratio of means.
//!
//! Reference: `mawe.py` of Picsart-AI-Research/StreamingT2V. This module reproduces its
//! numerics, with these findings and decisions:
//! - Resize: torchvision `F.resize(uint8, [720, 720], antialias=False)` converts to `f32`,
//!   interpolates bilinearly with half-pixel centres (`align_corners=False`, edge taps
//!   clamped) and rounds half to even back to `u8`. Bit-exactness needs torch's arithmetic:
//!   source index `scale * (i + 0.5) - 0.5` in `f32` (two roundings), and each 1-D blend as
//!   a fused multiply-add `fma(t0, w0, t1 * w1)`, rows first. That is what torch's generic
//!   CPU kernel compiles to on x86-64 with AVX2/FMA; torch uses it when `out_h + out_w > 128`
//!   and it runs on 2 or more threads, the case of any 720x720 run (verified bit for bit
//!   against torch 2.15 / torchvision 0.29.2). Its other kernels differ in the last bit of
//!   a few rounding ties.
//! - Flow: the reference uses RAFT-large; this crate uses OpenCV-compatible Farnebäck
//!   ([`super::flow`]) on `COLOR_RGB2GRAY` frames, so no weights are needed.
//! - Warp (`warp_with_flow`): the target of pixel `p` is `round(p + flow(p))`, the sum in
//!   `f32` and `torch.round` rounding half to even; targets outside the image are dropped.
//!   Each hit target stores its source coordinate; with several writers numpy's fancy
//!   assignment keeps the last one in row-major source order. The sampling is
//!   `grid_sample(nearest, align_corners=True)` after normalising by `2 x / (W - 1) - 1`,
//!   which maps integer coordinates back to themselves exactly (checked for 720), so the
//!   warped pixel is simply the left frame's pixel at the stored source. Holes are zeroed
//!   and masked out.
//! - Error: the uint8 right frame minus the `f32` warped left frame (both on the 0-255
//!   scale, not RAFT's normalised inputs), squared, summed over known pixels and the three
//!   channels, divided by `3 * known pixels`. The reference sums in `f32`; here the sum is
//!   exact (integers), so values differ from the reference by float rounding only.
//! - Undefined values: the reference divides by zero for a static pair (`M_i = 0`, giving
//!   NaN or inf in the mean) and silently uses `WE_i = 0` when no pixel is known. Here such
//!   pairs get `ratio: None` (and `warp_error: None` when nothing is known), and [`mawe`]
//!   returns `None` if any pair is undefined, so a NaN is never produced silently; callers
//!   can inspect the per-pair [`PairScore`]s.
//! - The reference averages the ratios in `f32` torch tensors; this module uses `f64`.
//!
//! Images are row-major interleaved RGB (`HWC`, 3 bytes per pixel).

use super::flow::{farneback, rgb_to_gray, FarnebackParams, Flow};

/// The reference's `coeff` (`--coeff`, default 9.5).
pub const MAWE_COEFF: f64 = 9.5;

/// Side of the square frames the reference evaluates on.
pub const MAWE_SIZE: usize = 720;

/// Bilinear resize of interleaved RGB `w x h` to `out_w x out_h`, bit-exact with
/// torchvision's `F.resize(uint8 tensor, [out_h, out_w], antialias=False)` (see the module
/// header for the arithmetic).
///
/// # Panics
/// If `rgb` is not `w * h * 3` bytes long.
pub fn resize_bilinear_u8(rgb: &[u8], w: usize, h: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    assert_eq!(rgb.len(), w * h * 3, "rgb must be w * h * 3 bytes");
    if w == 0 || h == 0 {
        return vec![0; out_w * out_h * 3];
    }
    let xs = torch_linear_taps(w, out_w);
    let ys = torch_linear_taps(h, out_h);
    let mut out = Vec::with_capacity(out_w * out_h * 3);
    for ty in &ys {
        for tx in &xs {
            for c in 0..3 {
                let at = |x: usize, y: usize| f32::from(rgb[(y * w + x) * 3 + c]);
                let top = blend(at(tx.i0, ty.i0), at(tx.i1, ty.i0), tx);
                let bottom = blend(at(tx.i0, ty.i1), at(tx.i1, ty.i1), tx);
                let value = blend(top, bottom, ty);
                out.push(value.round_ties_even().clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

/// One output position's two source taps and weights along an axis.
struct LinearTap {
    i0: usize,
    i1: usize,
    w0: f32,
    w1: f32,
}

/// torch's `compute_source_index_and_lambda` for `align_corners=False` in `f32`.
fn torch_linear_taps(in_size: usize, out_size: usize) -> Vec<LinearTap> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|i| {
            let real = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (real.floor() as usize).min(in_size - 1);
            let lambda = (real - i0 as f32).clamp(0.0, 1.0);
            LinearTap {
                i0,
                i1: if i0 + 1 < in_size { i0 + 1 } else { i0 },
                w0: 1.0 - lambda,
                w1: lambda,
            }
        })
        .collect()
}

/// `t0 * w0 + t1 * w1` as torch's FMA-contracted kernel computes it.
fn blend(t0: f32, t1: f32, tap: &LinearTap) -> f32 {
    t0.mul_add(tap.w0, t1 * tap.w1)
}

/// Forward (splatting) warp of `left_rgb` by `flow`, as the reference's `warp_with_flow`.
/// Returns the warped image (holes are 0) and, per pixel, whether any source reached it.
///
/// # Panics
/// If `left_rgb` is not `flow.width * flow.height * 3` bytes, or the flow planes are not
/// `width * height` long.
pub fn forward_warp(left_rgb: &[u8], flow: &Flow) -> (Vec<u8>, Vec<bool>) {
    let (w, h) = (flow.width, flow.height);
    assert_eq!(
        left_rgb.len(),
        w * h * 3,
        "left_rgb must match the flow size"
    );
    assert!(
        flow.dx.len() == w * h && flow.dy.len() == w * h,
        "flow planes must be w * h"
    );
    let sources = splat_sources(flow);
    let mut warped = vec![0u8; w * h * 3];
    let mut known = vec![false; w * h];
    for (target, source) in sources.iter().enumerate() {
        if let Some(s) = *source {
            warped[target * 3..target * 3 + 3].copy_from_slice(&left_rgb[s * 3..s * 3 + 3]);
            known[target] = true;
        }
    }
    (warped, known)
}

/// For each target pixel, the last source pixel (row-major order) whose rounded
/// destination `round_half_even(p + flow(p))` (sum in `f32`) lands on it.
fn splat_sources(flow: &Flow) -> Vec<Option<usize>> {
    let (w, h) = (flow.width, flow.height);
    let mut sources = vec![None; w * h];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let tx = (x as f32 + flow.dx[i]).round_ties_even();
            let ty = (y as f32 + flow.dy[i]).round_ties_even();
            // NaN fails both comparisons and is dropped, like an out-of-image target.
            if tx >= 0.0 && ty >= 0.0 && tx < w as f32 && ty < h as f32 {
                sources[ty as usize * w + tx as usize] = Some(i);
            }
        }
    }
    sources
}

/// Mean squared error over the known pixels and 3 channels (0-255 scale), or `None` when
/// no pixel is known (the reference returns 0 there; see the module header).
///
/// # Panics
/// If `right` and `warped` are not both `3 * known.len()` bytes.
pub fn warp_error(right: &[u8], warped: &[u8], known: &[bool]) -> Option<f64> {
    assert!(
        right.len() == known.len() * 3 && warped.len() == known.len() * 3,
        "right and warped must be 3 bytes per mask entry"
    );
    let mut sum: u64 = 0;
    let mut count: u64 = 0;
    for ((r, wp), &k) in right.chunks_exact(3).zip(warped.chunks_exact(3)).zip(known) {
        if k {
            sum += r
                .iter()
                .zip(wp)
                .map(|(&a, &b)| u64::from(a.abs_diff(b)).pow(2))
                .sum::<u64>();
            count += 3;
        }
    }
    (count > 0).then(|| sum as f64 / count as f64)
}

/// One consecutive pair's terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairScore {
    /// `WE_i`; `None` when the warp reached no pixel.
    pub warp_error: Option<f64>,
    /// `M_i`, the mean flow magnitude in pixels.
    pub mean_flow: f64,
    /// `WE_i / (MAWE_COEFF * M_i)`; `None` when `WE_i` is undefined or `M_i` is not a
    /// positive finite number (e.g. a static pair, where the reference divides by zero).
    pub ratio: Option<f64>,
}

impl PairScore {
    /// Builds the score and its ratio from `WE_i` and `M_i`.
    pub fn new(warp_error: Option<f64>, mean_flow: f64) -> PairScore {
        let ratio = match warp_error {
            Some(we) if mean_flow > 0.0 && mean_flow.is_finite() => {
                Some(we / (MAWE_COEFF * mean_flow))
            }
            _ => None,
        };
        PairScore {
            warp_error,
            mean_flow,
            ratio,
        }
    }
}

/// MAWE over the pairs: the mean of the ratios, or `None` if there are no pairs or any
/// pair's ratio is undefined (where the reference would produce NaN or inf).
pub fn mawe(pairs: &[PairScore]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let mut total = 0.0;
    for pair in pairs {
        total += pair.ratio?;
    }
    Some(total / pairs.len() as f64)
}

/// Scores one pair of `width x height` RGB frames as the reference does, at `size x size`
/// ([`MAWE_SIZE`] for the published setting): resize, grey, Farnebäck flow from left to
/// right, forward warp of the left frame, warp error against the right frame.
///
/// # Panics
/// If a frame is not `width * height * 3` bytes long.
pub fn score_pair(
    left_rgb: &[u8],
    right_rgb: &[u8],
    width: usize,
    height: usize,
    size: usize,
    params: &FarnebackParams,
) -> PairScore {
    let left = resize_bilinear_u8(left_rgb, width, height, size, size);
    let right = resize_bilinear_u8(right_rgb, width, height, size, size);
    let flow = farneback(
        &rgb_to_gray(&left),
        &rgb_to_gray(&right),
        size,
        size,
        params,
    );
    let (warped, known) = forward_warp(&left, &flow);
    PairScore::new(warp_error(&right, &warped, &known), flow.mean_magnitude())
}

/// Scores every consecutive pair of a clip (see [`score_pair`]); pass the result to
/// [`mawe`].
pub fn score_frames<F: AsRef<[u8]>>(
    frames: &[F],
    width: usize,
    height: usize,
    size: usize,
    params: &FarnebackParams,
) -> Vec<PairScore> {
    frames
        .windows(2)
        .map(|pair| {
            score_pair(
                pair[0].as_ref(),
                pair[1].as_ref(),
                width,
                height,
                size,
                params,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texture(x: i64, y: i64) -> [u8; 3] {
        let v = |s: i64| (((x * 37 + y * 11 + s * 5) ^ (x * y + s)) & 0xff) as u8;
        [v(0), v(1), v(2)]
    }

    fn translated(w: usize, h: usize, sx: i64, sy: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(w * h * 3);
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                out.extend_from_slice(&texture(x - sx + 50, y - sy + 50));
            }
        }
        out
    }

    #[test]
    fn exact_translation_flow_warps_with_zero_error() {
        let (w, h) = (40, 30);
        let left = translated(w, h, 0, 0);
        let right = translated(w, h, 3, -2);
        let mut flow = Flow::zeros(w, h);
        flow.dx.iter_mut().for_each(|v| *v = 3.0);
        flow.dy.iter_mut().for_each(|v| *v = -2.0);
        let (warped, known) = forward_warp(&left, &flow);
        assert_eq!(known.iter().filter(|&&k| k).count(), (w - 3) * (h - 2));
        assert!(!known[0] && known[3] && !known[(h - 1) * w + 5]);
        assert_eq!(warp_error(&right, &warped, &known), Some(0.0));
        let score = PairScore::new(Some(0.0), flow.mean_magnitude());
        assert_eq!(score.ratio, Some(0.0));
    }

    #[test]
    fn static_pair_has_undefined_ratio() {
        let (w, h) = (64, 48);
        let params = FarnebackParams::default();
        let flat = vec![120u8; w * h * 3];
        let score = score_pair(&flat, &flat, w, h, 64, &params);
        assert_eq!(score.mean_flow, 0.0);
        assert_eq!(score.warp_error, Some(0.0));
        assert_eq!(score.ratio, None);
        assert_eq!(mawe(&[score]), None);
        // A frozen textured frame has a small border-only Farnebäck flow (as cv2), which
        // warps to the identity: the pair is defined and scores 0.
        let frame = translated(w, h, 0, 0);
        let score = score_pair(&frame, &frame, w, h, 64, &params);
        assert!(
            score.mean_flow > 0.0 && score.mean_flow < 0.05,
            "{}",
            score.mean_flow
        );
        assert_eq!(score.ratio, Some(0.0));
    }

    #[test]
    fn colliding_targets_keep_the_last_source() {
        let (w, h) = (3, 1);
        let left = vec![10, 10, 10, 20, 20, 20, 30, 30, 30];
        let mut flow = Flow::zeros(w, h);
        flow.dx = vec![1.5, 0.4, -1.0]; // 0 -> 2 (ties to even), 1 -> 1, 2 -> 1
        let (warped, known) = forward_warp(&left, &flow);
        assert_eq!(known, [false, true, true]);
        assert_eq!(warped, [0, 0, 0, 30, 30, 30, 10, 10, 10]);
    }

    #[test]
    fn warp_error_without_known_pixels_is_none() {
        assert_eq!(warp_error(&[1, 2, 3], &[0, 0, 0], &[false]), None);
        assert_eq!(
            warp_error(&[1, 2, 3], &[0, 0, 0], &[true]),
            Some(14.0 / 3.0)
        );
    }

    #[test]
    fn mawe_is_the_mean_of_ratios() {
        let pairs = [
            PairScore::new(Some(19.0), 1.0),
            PairScore::new(Some(9.5), 0.5),
        ];
        assert_eq!(pairs[0].ratio, Some(2.0));
        assert_eq!(mawe(&pairs), Some(2.0));
        assert_eq!(mawe(&[]), None);
        assert_eq!(PairScore::new(None, 1.0).ratio, None);
    }

    #[test]
    fn resize_identity_and_constant() {
        let img = translated(5, 4, 0, 0);
        assert_eq!(resize_bilinear_u8(&img, 5, 4, 5, 4), img);
        let flat = vec![77u8; 6 * 5 * 3];
        assert!(resize_bilinear_u8(&flat, 6, 5, 13, 11)
            .iter()
            .all(|&v| v == 77));
    }
}

//! Dense optical flow for the MAWE metric (Henschel et al. 2024, "StreamingT2V", motion-aware
//! warp error): a classical Farnebäck flow, so the metric needs no network weights.
//!
//! References:
//! - G. Farnebäck, "Two-Frame Motion Estimation Based on Polynomial Expansion", SCIA 2003.
//! - OpenCV's `calcOpticalFlowFarneback`, which this port follows numerically (see
//!   [`super::farneback`] for the choices that matter); golden-tested against cv2 5.0.0 in
//!   `tests/eval_mawe.rs`.
//! - The reference metric (`mawe.py` of Picsart-AI-Research/StreamingT2V) uses RAFT-large;
//!   a Farnebäck flow is a documented substitute, so absolute MAWE values are comparable
//!   with other Farnebäck-based evaluations, not with RAFT-based published numbers.
//!
//! Images are row-major; colour images are interleaved RGB (`HWC`, 3 bytes per pixel).

use super::farneback;

/// A dense flow field from a frame to the next: the pixel at `(x, y)` moves to
/// `(x + dx, y + dy)`, in pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    pub width: usize,
    pub height: usize,
    /// Horizontal displacement, row-major, `width * height` values.
    pub dx: Vec<f32>,
    /// Vertical displacement, row-major, `width * height` values.
    pub dy: Vec<f32>,
}

impl Flow {
    /// An all-zero flow field.
    pub fn zeros(width: usize, height: usize) -> Flow {
        Flow {
            width,
            height,
            dx: vec![0.0; width * height],
            dy: vec![0.0; width * height],
        }
    }

    /// The displacement at `(x, y)`, or `None` outside the field.
    pub fn at(&self, x: usize, y: usize) -> Option<(f32, f32)> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = y * self.width + x;
        Some((*self.dx.get(i)?, *self.dy.get(i)?))
    }

    /// Mean over pixels of the L2 displacement magnitude (the reference's `M_i`), summed
    /// in `f64`; 0 for an empty field.
    pub fn mean_magnitude(&self) -> f64 {
        let count = self.dx.len().min(self.dy.len());
        if count == 0 {
            return 0.0;
        }
        let total: f64 = self
            .dx
            .iter()
            .zip(&self.dy)
            .map(|(&u, &v)| f64::from(u).hypot(f64::from(v)))
            .sum();
        total / count as f64
    }
}

/// Parameters of [`farneback`](fn@farneback), named as OpenCV's `calcOpticalFlowFarneback` arguments.
///
/// The default is the setting commonly used for evaluation (pyr_scale 0.5, levels 3,
/// winsize 15, iterations 3, poly_n 5, poly_sigma 1.2, flags 0).
#[derive(Clone, Debug, PartialEq)]
pub struct FarnebackParams {
    /// Scale between pyramid levels, in `(0, 1)`; anything else gives a single level.
    pub pyr_scale: f64,
    /// Number of coarser levels (0 = only the full image); levels whose smaller side would
    /// drop below 32 pixels are skipped, as in OpenCV.
    pub levels: usize,
    /// Averaging window size (odd values are the meaningful ones; at least 1).
    pub winsize: usize,
    /// Solver iterations per level.
    pub iterations: usize,
    /// Radius of the polynomial-expansion neighbourhood (5 or 7 usual; at least 1).
    pub poly_n: usize,
    /// Sigma of the expansion's Gaussian applicability (below `f32::EPSILON`: `0.3 poly_n`).
    pub poly_sigma: f64,
    /// `OPTFLOW_FARNEBACK_GAUSSIAN`: average with a Gaussian window instead of a box.
    pub gaussian_window: bool,
}

impl Default for FarnebackParams {
    fn default() -> FarnebackParams {
        FarnebackParams {
            pyr_scale: 0.5,
            levels: 3,
            winsize: 15,
            iterations: 3,
            poly_n: 5,
            poly_sigma: 1.2,
            gaussian_window: false,
        }
    }
}

/// Dense Farnebäck flow from `prev_gray` to `next_gray` (8-bit grey, row-major,
/// `width * height` bytes each), as OpenCV's `calcOpticalFlowFarneback` without
/// `OPTFLOW_USE_INITIAL_FLOW`.
///
/// # Panics
/// If either buffer is not `width * height` bytes long.
pub fn farneback(
    prev_gray: &[u8],
    next_gray: &[u8],
    width: usize,
    height: usize,
    params: &FarnebackParams,
) -> Flow {
    let pixels = width * height;
    assert_eq!(
        prev_gray.len(),
        pixels,
        "prev_gray must be width * height bytes"
    );
    assert_eq!(
        next_gray.len(),
        pixels,
        "next_gray must be width * height bytes"
    );
    let (dx, dy) = farneback::compute(prev_gray, next_gray, width, height, params);
    Flow {
        width,
        height,
        dx,
        dy,
    }
}

/// Fixed-point weights of OpenCV's 8-bit `COLOR_RGB2GRAY` (0.299, 0.587, 0.114 scaled by
/// 2^15; verified against cv2 5.0.0 on all 2^24 colours).
const GRAY_R: u32 = 9798;
const GRAY_G: u32 = 19235;
const GRAY_B: u32 = 3735;
const GRAY_SHIFT: u32 = 15;

/// Interleaved RGB to grey exactly as `cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)` on `uint8`:
/// `(9798 R + 19235 G + 3735 B + 2^14) >> 15`. A trailing partial pixel is ignored.
pub fn rgb_to_gray(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| {
            let sum =
                GRAY_R * u32::from(p[0]) + GRAY_G * u32::from(p[1]) + GRAY_B * u32::from(p[2]);
            ((sum + (1 << (GRAY_SHIFT - 1))) >> GRAY_SHIFT) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Smooth integer texture (value noise on an 8-pixel lattice) sampled at `(x, y)`.
    fn texture(x: i64, y: i64) -> u8 {
        let cell = 8;
        let hash = |ix: i64, iy: i64| -> i64 {
            let mut h = (ix.wrapping_mul(374_761_393) ^ iy.wrapping_mul(668_265_263)) as u32;
            h = (h ^ (h >> 13)).wrapping_mul(1_274_126_177);
            i64::from((h ^ (h >> 16)) & 0xff)
        };
        let (ix, iy) = (x.div_euclid(cell), y.div_euclid(cell));
        let (fx, fy) = (x.rem_euclid(cell), y.rem_euclid(cell));
        let top = hash(ix, iy) * (cell - fx) + hash(ix + 1, iy) * fx;
        let bottom = hash(ix, iy + 1) * (cell - fx) + hash(ix + 1, iy + 1) * fx;
        ((top * (cell - fy) + bottom * fy) / (cell * cell)) as u8
    }

    fn shifted(width: usize, height: usize, sx: i64, sy: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(width * height);
        for y in 0..height as i64 {
            for x in 0..width as i64 {
                out.push(texture(x - sx + 100, y - sy + 100));
            }
        }
        out
    }

    #[test]
    fn integer_translation_is_recovered_inside() {
        let (w, h) = (96, 80);
        let prev = shifted(w, h, 0, 0);
        let next = shifted(w, h, 2, -1);
        let flow = farneback(&prev, &next, w, h, &FarnebackParams::default());
        let (mut sx, mut sy, mut n) = (0f64, 0f64, 0f64);
        for y in 20..h - 20 {
            for x in 20..w - 20 {
                let (u, v) = flow.at(x, y).unwrap_or_default();
                sx += f64::from(u);
                sy += f64::from(v);
                n += 1.0;
            }
        }
        assert!((sx / n - 2.0).abs() < 0.1, "mean dx {}", sx / n);
        assert!((sy / n + 1.0).abs() < 0.1, "mean dy {}", sy / n);
    }

    #[test]
    fn static_pairs_have_zero_or_border_only_flow() {
        let (w, h) = (70, 40);
        let params = FarnebackParams::default();
        let flat = vec![90u8; w * h];
        let flow = farneback(&flat, &flat, w, h, &params);
        assert!(flow.dx.iter().chain(&flow.dy).all(|&v| v == 0.0));
        assert_eq!(flow.mean_magnitude(), 0.0);
        // A frozen textured frame: as in cv2, the last row/column sample the second frame
        // "outside" the image, which leaves a small flow near the border only.
        let frame = shifted(w, h, 0, 0);
        let flow = farneback(&frame, &frame, w, h, &params);
        assert!(flow.mean_magnitude() < 0.01, "{}", flow.mean_magnitude());
        let (u, v) = flow.at(w / 2, h / 2).unwrap_or((1.0, 1.0));
        assert!(u.abs() < 1e-3 && v.abs() < 1e-3, "({u}, {v})");
    }

    #[test]
    fn gaussian_window_also_tracks_translation() {
        let (w, h) = (80, 80);
        let params = FarnebackParams {
            gaussian_window: true,
            ..FarnebackParams::default()
        };
        let flow = farneback(&shifted(w, h, 0, 0), &shifted(w, h, 1, 1), w, h, &params);
        let (u, v) = flow.at(40, 40).unwrap_or_default();
        assert!((u - 1.0).abs() < 0.2 && (v - 1.0).abs() < 0.2, "({u}, {v})");
    }

    #[test]
    fn tiny_and_empty_images_do_not_panic() {
        let params = FarnebackParams {
            gaussian_window: true,
            ..FarnebackParams::default()
        };
        for (w, h) in [(1, 1), (2, 3), (7, 1), (9, 12)] {
            let a: Vec<u8> = (0..w * h).map(|i| (i * 37 % 256) as u8).collect();
            let b: Vec<u8> = a.iter().rev().copied().collect();
            for p in [FarnebackParams::default(), params.clone()] {
                let flow = farneback(&a, &b, w, h, &p);
                assert!(flow.dx.iter().chain(&flow.dy).all(|v| v.is_finite()));
            }
        }
        assert!(farneback(&[], &[], 0, 5, &params).dx.is_empty());
    }

    #[test]
    fn gray_matches_opencv_fixed_point() {
        assert_eq!(
            rgb_to_gray(&[255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 255, 0]),
            [255, 0, 76, 150]
        );
        assert_eq!(rgb_to_gray(&[0, 0, 255, 1]), [29]);
    }

    #[test]
    fn mean_magnitude_of_a_constant_field() {
        let mut flow = Flow::zeros(4, 3);
        flow.dx.iter_mut().for_each(|v| *v = 3.0);
        flow.dy.iter_mut().for_each(|v| *v = -4.0);
        assert!((flow.mean_magnitude() - 5.0).abs() < 1e-12);
        assert_eq!(Flow::zeros(0, 0).mean_magnitude(), 0.0);
    }
}

//! Image operations of the Farnebäck port, each reproducing OpenCV's (see the parent module):
//! a single-channel `f32` plane, `getGaussianKernel`, a separable Gaussian blur with
//! `BORDER_REFLECT_101`, and the bilinear `resize` (with its exact 2x path).

/// A single-channel `f32` image in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Plane {
    pub(crate) fn zeros(width: usize, height: usize) -> Plane {
        Plane {
            width,
            height,
            data: vec![0.0; width * height],
        }
    }

    pub(crate) fn from_u8(pixels: &[u8], width: usize, height: usize) -> Plane {
        Plane {
            width,
            height,
            data: pixels.iter().map(|&v| f32::from(v)).collect(),
        }
    }

    pub(crate) fn row(&self, y: usize) -> &[f32] {
        &self.data[y * self.width..(y + 1) * self.width]
    }
}

/// OpenCV's `getGaussianKernel` as `f32`: the fixed binomial kernels for `sigma <= 0` and
/// sizes 1, 3, 5, 7, else a normalised sampled Gaussian (sigma from the size if not given).
pub(crate) fn gaussian_kernel(ksize: usize, sigma: f64) -> Vec<f32> {
    if sigma <= 0.0 {
        let fixed: &[f32] = match ksize {
            1 => &[1.0],
            3 => &[0.25, 0.5, 0.25],
            5 => &[0.0625, 0.25, 0.375, 0.25, 0.0625],
            7 => &[
                0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125,
            ],
            _ => &[],
        };
        if !fixed.is_empty() {
            return fixed.to_vec();
        }
    }
    let sigma = if sigma > 0.0 {
        sigma
    } else {
        ((ksize as f64 - 1.0) * 0.5 - 1.0) * 0.3 + 0.8
    };
    let centre = (ksize as f64 - 1.0) * 0.5;
    let values: Vec<f64> = (0..ksize)
        .map(|i| {
            let x = i as f64 - centre;
            (-x * x / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let sum: f64 = values.iter().sum();
    values.iter().map(|v| (v / sum) as f32).collect()
}

/// `BORDER_REFLECT_101` index (`gfedcb|abcdefgh|gfedcba`).
fn reflect101(index: isize, len: usize) -> usize {
    if len <= 1 {
        return 0;
    }
    let n = len as isize;
    let mut i = index;
    loop {
        if i < 0 {
            i = -i;
        } else if i >= n {
            i = 2 * n - 2 - i;
        } else {
            return i as usize;
        }
    }
}

/// Separable Gaussian blur (rows first, then columns) with reflect-101 borders, as
/// OpenCV's `GaussianBlur` on a `CV_32F` image. Taps are summed centre first, then
/// symmetric pairs outwards.
pub(crate) fn gaussian_blur(src: &Plane, ksize: usize, sigma: f64) -> Plane {
    let kernel = gaussian_kernel(ksize, sigma);
    let half = kernel.len() / 2;
    let (w, h) = (src.width, src.height);
    let mut rows = Plane::zeros(w, h);
    for y in 0..h {
        let line = src.row(y);
        for x in 0..w {
            rows.data[y * w + x] = symmetric_taps(&kernel, half, |offset| {
                line[reflect101(x as isize + offset, w)]
            });
        }
    }
    let mut out = Plane::zeros(w, h);
    for y in 0..h {
        for x in 0..w {
            out.data[y * w + x] = symmetric_taps(&kernel, half, |offset| {
                rows.data[reflect101(y as isize + offset, h) * w + x]
            });
        }
    }
    out
}

/// `k[c] * s(0) + sum_j k[c + j] * (s(-j) + s(j))` in `f32`.
fn symmetric_taps(kernel: &[f32], half: usize, sample: impl Fn(isize) -> f32) -> f32 {
    let mut sum = kernel[half] * sample(0);
    for j in 1..=half {
        let j_off = j as isize;
        sum += kernel[half + j] * (sample(-j_off) + sample(j_off));
    }
    sum
}

/// OpenCV `resize(..., INTER_LINEAR)` on an `f32` plane: half-pixel centres, clamped
/// borders; an exact 2x downscale in both directions becomes the 2x2 mean (OpenCV switches
/// to its fast `INTER_AREA` path there, which is the same average).
pub(crate) fn resize_linear(src: &Plane, out_w: usize, out_h: usize) -> Plane {
    if src.width == out_w && src.height == out_h {
        return src.clone();
    }
    if out_w == 0 || out_h == 0 || src.width == 0 || src.height == 0 {
        return Plane::zeros(out_w, out_h);
    }
    let scale_x = 1.0 / (out_w as f64 / src.width as f64);
    let scale_y = 1.0 / (out_h as f64 / src.height as f64);
    if (scale_x - 2.0).abs() < f64::EPSILON && (scale_y - 2.0).abs() < f64::EPSILON {
        return halve(src, out_w, out_h);
    }
    let xs = linear_taps_x(src.width, out_w, scale_x);
    let ys = linear_taps_y(src.height, out_h, scale_y);
    let mut out = Plane::zeros(out_w, out_h);
    let mut row0 = vec![0f32; out_w];
    let mut row1 = vec![0f32; out_w];
    for (dy, &(sy0, sy1, fy)) in ys.iter().enumerate() {
        horizontal_linear(src.row(sy0), &xs, &mut row0);
        horizontal_linear(src.row(sy1), &xs, &mut row1);
        let (b0, b1) = (1.0 - fy, fy);
        for dx in 0..out_w {
            out.data[dy * out_w + dx] = row0[dx] * b0 + row1[dx] * b1;
        }
    }
    out
}

/// Horizontal taps `(sx, fx)`: `fx` is forced to 0 where `sx` is clamped.
fn linear_taps_x(in_size: usize, out_size: usize, scale: f64) -> Vec<(usize, f32)> {
    (0..out_size)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let s = f.floor();
            let frac = f - s;
            if s < 0.0 {
                (0, 0.0)
            } else if s as usize >= in_size - 1 {
                (in_size - 1, 0.0)
            } else {
                (s as usize, frac)
            }
        })
        .collect()
}

/// Vertical taps `(row0, row1, fy)`: the rows are clamped, `fy` is kept.
fn linear_taps_y(in_size: usize, out_size: usize, scale: f64) -> Vec<(usize, usize, f32)> {
    let last = in_size as isize - 1;
    (0..out_size)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let s = f.floor();
            let sy = s as isize;
            (
                sy.clamp(0, last) as usize,
                (sy + 1).clamp(0, last) as usize,
                f - s,
            )
        })
        .collect()
}

fn horizontal_linear(line: &[f32], taps: &[(usize, f32)], out: &mut [f32]) {
    let last = line.len() - 1;
    for (o, &(sx, fx)) in out.iter_mut().zip(taps) {
        *o = if sx >= last {
            line[last]
        } else {
            line[sx] * (1.0 - fx) + line[sx + 1] * fx
        };
    }
}

/// Exact 2x downscale: mean of each 2x2 block, `((a + b) + (c + d)) * 0.25`.
fn halve(src: &Plane, out_w: usize, out_h: usize) -> Plane {
    let mut out = Plane::zeros(out_w, out_h);
    for y in 0..out_h {
        let (r0, r1) = (src.row(2 * y), src.row(2 * y + 1));
        for x in 0..out_w {
            let top = r0[2 * x] + r0[2 * x + 1];
            let bottom = r1[2 * x] + r1[2 * x + 1];
            out.data[y * out_w + x] = (top + bottom) * 0.25;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_kernel_sums_to_one() {
        for (k, s) in [(3, 0.0), (3, 0.5), (9, 1.5), (19, 3.5)] {
            let sum: f32 = gaussian_kernel(k, s).iter().sum();
            assert!((sum - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn reflect101_mirrors_without_repeating_the_edge() {
        let idx: Vec<usize> = (-3..8).map(|i| reflect101(i, 5)).collect();
        assert_eq!(idx, [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
        assert_eq!(reflect101(-4, 1), 0);
    }

    #[test]
    fn resize_linear_halves_by_block_mean() {
        let src = Plane {
            width: 4,
            height: 2,
            data: vec![0.0, 2.0, 4.0, 8.0, 2.0, 4.0, 8.0, 12.0],
        };
        assert_eq!(resize_linear(&src, 2, 1).data, vec![2.0, 8.0]);
    }
}

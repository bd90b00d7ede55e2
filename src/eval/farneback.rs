//! Farnebäck dense optical flow: image pyramid, polynomial expansion and the iterative
//! displacement solver behind [`super::flow::farneback`].
//!
//! References:
//! - G. Farnebäck, "Two-Frame Motion Estimation Based on Polynomial Expansion", SCIA 2003.
//!   Each neighbourhood is approximated by `f(x) ~ x^T A x + b^T x + c` (a Gaussian-weighted
//!   least-squares fit, the "polynomial expansion"); a displacement `d` of the whole
//!   neighbourhood gives `A1 = A2`, `b2 = b1 - 2 A1 d`, so `d` solves
//!   `A d = -(b2 - b1) / 2` with `A = (A1 + A2) / 2`, averaged over a window.
//! - OpenCV's `calcOpticalFlowFarneback` (`modules/video/src/optflowgf.cpp`), whose numerics
//!   this module follows, because the MAWE golden values are produced with it (cv2 5.0).
//!
//! Choices that follow OpenCV rather than the paper, and why (all needed to agree with cv2):
//! - Every pyramid level is made from the *full-resolution* frame: a Gaussian blur with
//!   `sigma = (1/scale - 1) / 2` and an odd kernel of `round(5 sigma)` taps (at least 3), then
//!   a bilinear resize. At the finest level `sigma` is 0, so the frame still gets OpenCV's
//!   fixed 3-tap `[1/4, 1/2, 1/4]` blur. The pyramid stops before a side would drop below 32.
//! - The polynomial expansion is separable (vertical pass in `f32`, horizontal pass in `f64`)
//!   with replicated borders, and stores the coefficients per pixel in the order
//!   `[b_y, b_x, a_yy, a_xx, a_xy]` (the constant term is not needed).
//! - `A` and `Δb` of the second frame are sampled bilinearly at `p + d` (falling back to the
//!   first frame's `A` and zero `b` when `p + d` leaves the image), and pixels within 5 of the
//!   border are down-weighted by OpenCV's fixed factors (0.14, 0.14, 0.4472, ...).
//! - The window average of `A^T A` and `A^T Δb` is a box filter (running sums in `f64`, the
//!   vertical window starting from `m + 1` copies of the first row, i.e. replicated borders)
//!   or, optionally, a Gaussian with `sigma = 0.3 * (winsize / 2)`; the 2x2 system is solved
//!   with a `1e-3` regulariser on the determinant.
//! - Within one iteration OpenCV refreshes the matrices stripe by stripe behind the solver;
//!   since a stripe is refreshed only after the box window has moved past it, this equals
//!   solving every row first and then rebuilding all matrices from the new flow, which is
//!   what this port does.
//!
//! Float types follow OpenCV's statement by statement (`f32` where it computes in `float`,
//! `f64` where it accumulates in `double`), so the flows agree with cv2 to float rounding.

use super::flow::FarnebackParams;

/// Smallest pyramid side OpenCV keeps (`min_size`).
const MIN_PYRAMID_SIDE: f64 = 32.0;

/// Width of the border band whose matrices are down-weighted.
const BORDER: usize = 5;

/// OpenCV's border weights for the first/last [`BORDER`] rows and columns.
const BORDER_WEIGHTS: [f32; BORDER] = [0.14, 0.14, 0.4472, 0.4472, 0.4472];

/// Regulariser added to the determinant of the window-averaged 2x2 system.
const DET_EPSILON: f64 = 1e-3;

mod image;

use image::{gaussian_blur, resize_linear, Plane};

/// Per-pixel polynomial coefficients `[b_y, b_x, a_yy, a_xx, a_xy]`, or the per-pixel
/// products `[G11, G12, G22, h1, h2]` of the displacement system (same storage shape).
type Coeffs = [f32; 5];

/// Computes the dense flow from `prev` to `next` (8-bit grey, `width * height` each).
/// Returns the `(dx, dy)` planes at full resolution.
pub(crate) fn compute(
    prev: &[u8],
    next: &[u8],
    width: usize,
    height: usize,
    params: &FarnebackParams,
) -> (Vec<f32>, Vec<f32>) {
    if width == 0 || height == 0 {
        return (Vec::new(), Vec::new());
    }
    let basis = PolyBasis::new(params.poly_n.max(1), params.poly_sigma);
    let levels = pyramid_levels(width, height, params);
    let mut flow: Option<(Plane, Plane)> = None;
    for level in (0..=levels).rev() {
        let scale = level_scale(params.pyr_scale, level);
        let (lw, lh) = (
            round_half_even(width as f64 * scale),
            round_half_even(height as f64 * scale),
        );
        let (mut dx, mut dy) = match flow.take() {
            None => (Plane::zeros(lw, lh), Plane::zeros(lw, lh)),
            Some((px, py)) => {
                let up = (1.0 / params.pyr_scale) as f32;
                (
                    scaled(resize_linear(&px, lw, lh), up),
                    scaled(resize_linear(&py, lw, lh), up),
                )
            }
        };
        let r0 = poly_expansion(&level_image(prev, width, height, scale, lw, lh), &basis);
        let r1 = poly_expansion(&level_image(next, width, height, scale, lw, lh), &basis);
        refine_level(&r0, &r1, params, &mut dx, &mut dy);
        flow = Some((dx, dy));
    }
    match flow {
        Some((dx, dy)) => (dx.data, dy.data),
        None => (vec![0.0; width * height], vec![0.0; width * height]),
    }
}

/// `params.iterations` solver passes on one level, starting from the flow in `dx`, `dy`.
fn refine_level(
    r0: &[Coeffs],
    r1: &[Coeffs],
    params: &FarnebackParams,
    dx: &mut Plane,
    dy: &mut Plane,
) {
    let winsize = params.winsize.max(1);
    let mut mats = update_matrices(r0, r1, dx, dy);
    for iteration in 0..params.iterations {
        if params.gaussian_window {
            solve_gaussian_window(&mats, winsize, dx, dy);
        } else {
            solve_box_window(&mats, winsize, dx, dy);
        }
        if iteration + 1 < params.iterations {
            mats = update_matrices(r0, r1, dx, dy);
        }
    }
}

/// Number of coarser levels above the full-resolution one (OpenCV stops before a side
/// drops below 32 pixels). A `pyr_scale` outside `(0, 1)` gives a single level.
fn pyramid_levels(width: usize, height: usize, params: &FarnebackParams) -> usize {
    if !(params.pyr_scale > 0.0 && params.pyr_scale < 1.0) {
        return 0;
    }
    let mut scale = 1.0;
    let mut levels = 0;
    while levels < params.levels {
        scale *= params.pyr_scale;
        if (width as f64) * scale < MIN_PYRAMID_SIDE || (height as f64) * scale < MIN_PYRAMID_SIDE {
            break;
        }
        levels += 1;
    }
    levels
}

/// `pyr_scale^level`, multiplied up the way OpenCV does it.
fn level_scale(pyr_scale: f64, level: usize) -> f64 {
    (0..level).fold(1.0, |scale, _| scale * pyr_scale)
}

/// Rounds half to even, like OpenCV's `cvRound`; negative values clamp to 0.
fn round_half_even(value: f64) -> usize {
    value.round_ties_even().max(0.0) as usize
}

fn scaled(mut plane: Plane, factor: f32) -> Plane {
    plane.data.iter_mut().for_each(|v| *v *= factor);
    plane
}

/// One pyramid level of a grey frame: blur the full-resolution frame for the level's scale,
/// then resize bilinearly to `(lw, lh)`.
fn level_image(
    gray: &[u8],
    width: usize,
    height: usize,
    scale: f64,
    lw: usize,
    lh: usize,
) -> Plane {
    let sigma = (1.0 / scale - 1.0) * 0.5;
    let ksize = ((sigma * 5.0).round_ties_even() as usize | 1).max(3);
    let blurred = gaussian_blur(&Plane::from_u8(gray, width, height), ksize, sigma);
    resize_linear(&blurred, lw, lh)
}

/// The applicability (Gaussian) and the constants of the polynomial expansion.
pub(crate) struct PolyBasis {
    /// `g[k]`, `k * g[k]`, `k^2 * g[k]` for `k = 0..=n` (the kernels are symmetric).
    g: Vec<f32>,
    xg: Vec<f32>,
    xxg: Vec<f32>,
    /// Entries of the inverse Gram matrix of the basis `{1, x, y, x^2, y^2, xy}`.
    ig11: f64,
    ig03: f64,
    ig33: f64,
    ig55: f64,
}

impl PolyBasis {
    /// Gaussian applicability of radius `n`; `sigma` below `f32::EPSILON` means `0.3 n`.
    pub(crate) fn new(n: usize, sigma: f64) -> PolyBasis {
        let sigma = if sigma < f64::from(f32::EPSILON) {
            n as f64 * 0.3
        } else {
            sigma
        };
        let raw: Vec<f32> = (0..=n)
            .map(|k| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp() as f32)
            .collect();
        let total = f64::from(raw[0]) + 2.0 * raw[1..].iter().map(|&v| f64::from(v)).sum::<f64>();
        let g: Vec<f32> = raw.iter().map(|&v| (f64::from(v) / total) as f32).collect();
        let xg: Vec<f32> = g.iter().enumerate().map(|(k, &v)| k as f32 * v).collect();
        let xxg: Vec<f32> = g
            .iter()
            .enumerate()
            .map(|(k, &v)| (k * k) as f32 * v)
            .collect();
        let gram = GramSums::new(&g);
        let (ig11, ig03, ig33, ig55) = gram.inverse_entries();
        PolyBasis {
            g,
            xg,
            xxg,
            ig11,
            ig03,
            ig33,
            ig55,
        }
    }

    fn radius(&self) -> usize {
        self.g.len() - 1
    }
}

/// The distinct entries of the 6x6 Gram matrix `G` of the weighted basis
/// `{1, x, y, x^2, y^2, xy}`: `a = sum g g`, `b = sum g g x^2`, `c = sum g g x^4`,
/// `d = sum g g x^2 y^2` (products in `f32`, sums in `f64`, as OpenCV).
#[derive(Clone, Copy)]
struct GramSums {
    a: f64,
    b: f64,
    c: f64,
    d: f64,
}

impl GramSums {
    fn new(g: &[f32]) -> GramSums {
        let n = g.len() as isize - 1;
        let weight = |k: isize| g[k.unsigned_abs()];
        let mut sums = GramSums {
            a: 0.0,
            b: 0.0,
            c: 0.0,
            d: 0.0,
        };
        for y in -n..=n {
            for x in -n..=n {
                let gg = weight(y) * weight(x);
                let (xf, yf) = (x as f32, y as f32);
                sums.a += f64::from(gg);
                sums.b += f64::from(gg * xf * xf);
                sums.c += f64::from(gg * xf * xf * xf * xf);
                sums.d += f64::from(gg * xf * xf * yf * yf);
            }
        }
        sums
    }

    /// `(G^-1)[1][1]`, `[0][3]`, `[3][3]`, `[5][5]`. `G` decouples into `x`, `y`, `xy` (each
    /// 1x1) and the block over `{1, x^2, y^2}` = `[[a, b, b], [b, c, d], [b, d, c]]`, which is
    /// inverted in closed form along `x^2 + y^2` and `x^2 - y^2`.
    fn inverse_entries(&self) -> (f64, f64, f64, f64) {
        let GramSums { a, b, c, d } = *self;
        let det = a * (c + d) - 2.0 * b * b;
        let ig03 = -b / det;
        let ig33 = 0.5 * (a / det + 1.0 / (c - d));
        (1.0 / b, ig03, ig33, 1.0 / d)
    }
}

/// Polynomial expansion of every pixel: `[b_y, b_x, a_yy, a_xx, a_xy]`.
pub(crate) fn poly_expansion(src: &Plane, basis: &PolyBasis) -> Vec<Coeffs> {
    let (w, h) = (src.width, src.height);
    let n = basis.radius();
    let mut out = vec![[0f32; 5]; w * h];
    // Vertical pass results, padded by `n` replicated entries on both sides.
    let mut line = vec![[0f32; 3]; w + 2 * n];
    for y in 0..h {
        vertical_moments(src, y, basis, &mut line[n..n + w]);
        for pad in 0..n {
            line[pad] = line[n];
            line[n + w + pad] = line[n + w - 1];
        }
        for x in 0..w {
            out[y * w + x] = horizontal_moments(&line, n + x, basis);
        }
    }
    out
}

/// Column sums `[sum g f, sum y g f, sum y^2 g f]` over rows `y - n ..= y + n` (clamped).
fn vertical_moments(src: &Plane, y: usize, basis: &PolyBasis, out: &mut [[f32; 3]]) {
    let h = src.height;
    let centre = src.row(y);
    for (o, &v) in out.iter_mut().zip(centre) {
        *o = [v * basis.g[0], 0.0, 0.0];
    }
    for k in 1..=basis.radius() {
        let above = src.row(y.saturating_sub(k));
        let below = src.row((y + k).min(h - 1));
        let (g0, g1, g2) = (basis.g[k], basis.xg[k], basis.xxg[k]);
        for ((o, &s0), &s1) in out.iter_mut().zip(above).zip(below) {
            let p = s0 + s1;
            o[0] += g0 * p;
            o[1] += g1 * (s1 - s0);
            o[2] += g2 * p;
        }
    }
}

/// Horizontal pass at padded index `c`, then the projection onto the quadratic basis.
fn horizontal_moments(line: &[[f32; 3]], c: usize, basis: &PolyBasis) -> Coeffs {
    let g0 = basis.g[0];
    let mut b1 = f64::from(line[c][0] * g0);
    let mut b2 = 0f64;
    let mut b3 = f64::from(line[c][1] * g0);
    let mut b4 = 0f64;
    let mut b5 = f64::from(line[c][2] * g0);
    let mut b6 = 0f64;
    for k in 1..=basis.radius() {
        let (right, left) = (line[c + k], line[c - k]);
        let gk = basis.g[k];
        let tg = f64::from(right[0] + left[0]);
        b1 += tg * f64::from(gk);
        b4 += tg * f64::from(basis.xxg[k]);
        b2 += f64::from((right[0] - left[0]) * basis.xg[k]);
        b3 += f64::from((right[1] + left[1]) * gk);
        b6 += f64::from((right[1] - left[1]) * basis.xg[k]);
        b5 += f64::from((right[2] + left[2]) * gk);
    }
    [
        (b3 * basis.ig11) as f32,
        (b2 * basis.ig11) as f32,
        (b1 * basis.ig03 + b5 * basis.ig33) as f32,
        (b1 * basis.ig03 + b4 * basis.ig33) as f32,
        (b6 * basis.ig55) as f32,
    ]
}

/// Per-pixel `[G11, G12, G22, h1, h2]` (`G = A^T A`, `h = A^T Δb`, in y-then-x order) for
/// the current flow estimate.
pub(crate) fn update_matrices(r0: &[Coeffs], r1: &[Coeffs], dx: &Plane, dy: &Plane) -> Vec<Coeffs> {
    let (w, h) = (dx.width, dx.height);
    let second = Expansion {
        coeffs: r1,
        width: w,
        height: h,
    };
    let mut out = vec![[0f32; 5]; w * h];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let (fdx, fdy) = (dx.data[i], dy.data[i]);
            let own = r0[i];
            let [mut r2, mut r3, r4, r5, r6] =
                second.paired_with(own, x as f32 + fdx, y as f32 + fdy);
            r2 = (own[0] - r2) * 0.5;
            r3 = (own[1] - r3) * 0.5;
            r2 += r4 * fdy + r6 * fdx;
            r3 += r6 * fdy + r5 * fdx;
            let weighted = match border_weight(x, y, w, h) {
                Some(s) => [r2 * s, r3 * s, r4 * s, r5 * s, r6 * s],
                None => [r2, r3, r4, r5, r6],
            };
            out[i] = system_terms(weighted);
        }
    }
    out
}

/// `[r4^2 + r6^2, (r4 + r5) r6, r5^2 + r6^2, r4 r2 + r6 r3, r6 r2 + r5 r3]`: the entries
/// of `A^T A` and `A^T Δb` from `[Δb_y, Δb_x, a_yy, a_xx, a_xy / 2]`.
fn system_terms([r2, r3, r4, r5, r6]: [f32; 5]) -> Coeffs {
    [
        r4 * r4 + r6 * r6,
        (r4 + r5) * r6,
        r5 * r5 + r6 * r6,
        r4 * r2 + r6 * r3,
        r6 * r2 + r5 * r3,
    ]
}

/// The polynomial expansion of the second frame, sampled at displaced positions.
struct Expansion<'a> {
    coeffs: &'a [Coeffs],
    width: usize,
    height: usize,
}

impl Expansion<'_> {
    /// The linear terms sampled bilinearly at `(fx, fy)`, and the averaged quadratic terms
    /// `(A1 + A2) / 2` (the cross term halved once more, being `a_xy / 2` of the symmetric
    /// matrix). Outside the image: zero linear terms and the first frame's `A` alone.
    fn paired_with(&self, own: Coeffs, fx: f32, fy: f32) -> [f32; 5] {
        let (x1, y1) = (fx.floor(), fy.floor());
        let inside = x1 >= 0.0
            && y1 >= 0.0
            && x1 < (self.width as f32 - 1.0)
            && y1 < (self.height as f32 - 1.0);
        if !inside {
            return [0.0, 0.0, own[2], own[3], own[4] * 0.5];
        }
        let (tx, ty) = (fx - x1, fy - y1);
        let at = (y1 as usize) * self.width + x1 as usize;
        let (p00, p01) = (self.coeffs[at], self.coeffs[at + 1]);
        let (p10, p11) = (
            self.coeffs[at + self.width],
            self.coeffs[at + self.width + 1],
        );
        let a00 = (1.0 - tx) * (1.0 - ty);
        let a01 = tx * (1.0 - ty);
        let a10 = (1.0 - tx) * ty;
        let a11 = tx * ty;
        let sample = |c: usize| a00 * p00[c] + a01 * p01[c] + a10 * p10[c] + a11 * p11[c];
        [
            sample(0),
            sample(1),
            (own[2] + sample(2)) * 0.5,
            (own[3] + sample(3)) * 0.5,
            (own[4] + sample(4)) * 0.25,
        ]
    }
}

/// OpenCV's down-weighting of the 5-pixel border band (`None` inside). The band test
/// reproduces OpenCV's unsigned comparison, which matters only for images under 10 pixels.
fn border_weight(x: usize, y: usize, w: usize, h: usize) -> Option<f32> {
    let outside = |p: usize, len: usize| {
        (p as i64 - BORDER as i64) as u32 >= (len as i64 - 2 * BORDER as i64) as u32
    };
    if !outside(x, w) && !outside(y, h) {
        return None;
    }
    let near = |p: usize| if p < BORDER { BORDER_WEIGHTS[p] } else { 1.0 };
    let far = |p: usize, len: usize| {
        if p + BORDER >= len {
            BORDER_WEIGHTS[len - p - 1]
        } else {
            1.0
        }
    };
    Some(near(x) * far(x, w) * near(y) * far(y, h))
}

/// Solves the window-averaged 2x2 system per pixel with a `winsize` box window (running
/// sums in `f64`; the window is `2 (winsize / 2) + 1` wide, the normalisation
/// `1 / winsize^2`, both as in OpenCV).
pub(crate) fn solve_box_window(mats: &[Coeffs], winsize: usize, dx: &mut Plane, dy: &mut Plane) {
    let (w, h) = (dx.width, dx.height);
    let m = winsize / 2;
    let pad = m + 1;
    let scale = 1.0 / (winsize * winsize) as f64;
    let row = |y: usize| &mats[y * w..(y + 1) * w];
    let mut vsum = vec![[0f64; 5]; w + 2 * pad];
    for (v, cell) in vsum[pad..pad + w].iter_mut().zip(row(0)) {
        *v = cell.map(|c| f64::from(c * (m + 2) as f32));
    }
    for y in 1..m {
        for (v, cell) in vsum[pad..pad + w].iter_mut().zip(row(y.min(h - 1))) {
            add_f32(v, cell);
        }
    }
    for y in 0..h {
        let leaving = row(y.saturating_sub(m + 1));
        let entering = row((y + m).min(h - 1));
        for ((v, a), b) in vsum[pad..pad + w].iter_mut().zip(entering).zip(leaving) {
            for c in 0..5 {
                v[c] += f64::from(a[c] - b[c]);
            }
        }
        replicate_ends(&mut vsum, pad, w);
        let mut acc = vsum[pad].map(|v| v * (m + 2) as f64);
        for x in 1..m {
            add_f64(&mut acc, &vsum[pad + x]);
        }
        for x in 0..w {
            let (add, sub) = (vsum[pad + x + m], vsum[pad + x - m - 1]);
            for c in 0..5 {
                acc[c] += add[c] - sub[c];
            }
            let avg = acc.map(|v| v * scale);
            let (fx, fy) = solve_2x2(avg);
            dx.data[y * w + x] = fx;
            dy.data[y * w + x] = fy;
        }
    }
}

/// Same system with a Gaussian window (`OPTFLOW_FARNEBACK_GAUSSIAN`): separable,
/// `sigma = 0.3 (winsize / 2)`, clamped rows and replicated columns, sums in `f32`.
pub(crate) fn solve_gaussian_window(
    mats: &[Coeffs],
    winsize: usize,
    dx: &mut Plane,
    dy: &mut Plane,
) {
    let (w, h) = (dx.width, dx.height);
    let m = winsize / 2;
    let kernel = window_kernel(m);
    let mut vsum = vec![[0f32; 5]; w + 2 * m];
    for y in 0..h {
        for x in 0..w {
            let mut s = mats[y * w + x].map(|c| c * kernel[0]);
            for (i, &k) in kernel.iter().enumerate().skip(1) {
                let below = mats[(y + i).min(h - 1) * w + x];
                let above = mats[y.saturating_sub(i) * w + x];
                for c in 0..5 {
                    s[c] += (below[c] + above[c]) * k;
                }
            }
            vsum[m + x] = s;
        }
        for p in 0..m {
            vsum[p] = vsum[m];
            vsum[m + w + p] = vsum[m + w - 1];
        }
        for x in 0..w {
            let c0 = m + x;
            let mut s = vsum[c0].map(|v| v * kernel[0]);
            for (i, &k) in kernel.iter().enumerate().skip(1) {
                for c in 0..5 {
                    s[c] += k * (vsum[c0 - i][c] + vsum[c0 + i][c]);
                }
            }
            let (fx, fy) = solve_2x2(s.map(f64::from));
            dx.data[y * w + x] = fx;
            dy.data[y * w + x] = fy;
        }
    }
}

/// Half of the symmetric Gaussian window `k[0..=m]`, normalised over `2m + 1` taps.
fn window_kernel(m: usize) -> Vec<f32> {
    let sigma = m as f64 * 0.3;
    let mut kernel = vec![1f32];
    let mut total = 1f64;
    for i in 1..=m {
        let t = (-((i * i) as f64) / (2.0 * sigma * sigma)).exp() as f32;
        kernel.push(t);
        total += f64::from(t * 2.0);
    }
    let inv = 1.0 / total;
    kernel
        .iter()
        .map(|&k| (f64::from(k) * inv) as f32)
        .collect()
}

/// `[G11, G12, G22, h1, h2]` (y-then-x order) to `(dx, dy)` with the `1e-3` regulariser.
fn solve_2x2(m: [f64; 5]) -> (f32, f32) {
    let [g11, g12, g22, h1, h2] = m;
    let idet = 1.0 / (g11 * g22 - g12 * g12 + DET_EPSILON);
    (
        ((g11 * h2 - g12 * h1) * idet) as f32,
        ((g22 * h1 - g12 * h2) * idet) as f32,
    )
}

fn add_f32(acc: &mut [f64; 5], cell: &Coeffs) {
    for c in 0..5 {
        acc[c] += f64::from(cell[c]);
    }
}

fn add_f64(acc: &mut [f64; 5], cell: &[f64; 5]) {
    for c in 0..5 {
        acc[c] += cell[c];
    }
}

/// Copies the first/last real entry into the `pad` entries on each side.
fn replicate_ends<T: Copy>(buf: &mut [T], pad: usize, len: usize) {
    for p in 0..pad {
        buf[p] = buf[pad];
        buf[pad + len + p] = buf[pad + len - 1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_inverse_is_an_inverse() {
        let basis_g = PolyBasis::new(5, 1.1).g;
        let s = GramSums::new(&basis_g);
        let (_, ig03, ig33, _) = s.inverse_entries();
        let block = [[s.a, s.b, s.b], [s.b, s.c, s.d], [s.b, s.d, s.c]];
        // Column of the inverse for x^2 (index 1 in the block): [ig03, ig33, ig34].
        let ig34 = 0.5 * (s.a / (s.a * (s.c + s.d) - 2.0 * s.b * s.b) - 1.0 / (s.c - s.d));
        let col = [ig03, ig33, ig34];
        for (r, expected) in block.iter().zip([0.0, 1.0, 0.0]) {
            let dot: f64 = r.iter().zip(col).map(|(a, b)| a * b).sum();
            assert!((dot - expected).abs() < 1e-9, "{dot} vs {expected}");
        }
    }
}

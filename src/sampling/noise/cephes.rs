//! Single-precision log and sincos exactly as torch's AVX2 `normal_fill_16_AVX2` computes them:
//! the Cephes polynomials of Julien Pommier's `sse_mathfun` / Giovanni Garberoglio's
//! `avx_mathfun` (ATen/native/cpu/avx_mathfun.h `log256_ps`, `sincos256_ps`), one lane at a
//! time.
//!
//! PyTorch's x86-64 wheels compile these intrinsics with GCC's default `-ffp-contract=fast`
//! and FMA enabled, so a multiply whose only use is an add is fused. The `mul_add` calls
//! below sit exactly where GCC fuses; a plain multiply-then-add there changes the last bit
//! of about one sample in a few hundred.

#![allow(clippy::excessive_precision)]

// The constants are the header's double literals, kept verbatim, narrowed to float as its
// initializers do.
const SQRT_HALF: f32 = std::f64::consts::FRAC_1_SQRT_2 as f32;
const LOG_P: [f32; 9] = [
    7.0376836292E-2_f64 as f32,
    -1.1514610310E-1_f64 as f32,
    1.1676998740E-1_f64 as f32,
    -1.2420140846E-1_f64 as f32,
    1.4249322787E-1_f64 as f32,
    -1.6668057665E-1_f64 as f32,
    2.0000714765E-1_f64 as f32,
    -2.4999993993E-1_f64 as f32,
    3.3333331174E-1_f64 as f32,
];
const LOG_Q1: f32 = -2.12194440e-4_f64 as f32;
const LOG_Q2: f32 = 0.693359375;

const FOUR_OVER_PI: f32 = 1.27323954473516_f64 as f32;
const MINUS_DP: [f32; 3] = [
    -0.78515625,
    -2.4187564849853515625e-4_f64 as f32,
    -3.77489497744594108e-8_f64 as f32,
];
const SIN_P: [f32; 3] = [
    -1.9515295891E-4_f64 as f32,
    8.3321608736E-3_f64 as f32,
    -1.6666654611E-1_f64 as f32,
];
const COS_P: [f32; 3] = [
    2.443315711809948E-005_f64 as f32,
    -1.388731625493765E-003_f64 as f32,
    4.166664568298827E-002_f64 as f32,
];

/// Natural log of a positive normal float (`log256_ps` on one lane).
#[inline(always)]
pub fn log(x: f32) -> f32 {
    let x = x.max(f32::MIN_POSITIVE);
    let bits = x.to_bits();
    let mut e = ((bits >> 23) as i32 - 0x7f) as f32 + 1.0;
    // Mantissa in [0.5, 1).
    let mut m = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    if m < SQRT_HALF {
        e -= 1.0;
        m = m - 1.0 + m;
    } else {
        m -= 1.0;
    }
    let z = m * m;
    let mut y = LOG_P[0];
    for &p in &LOG_P[1..] {
        y = y.mul_add(m, p);
    }
    y *= m;
    y = y.mul_add(z, e * LOG_Q1);
    y = (-z).mul_add(0.5, y);
    e.mul_add(LOG_Q2, m + y)
}

/// (sin x, cos x) for |x| < 8192 (`sincos256_ps` on one lane).
#[inline(always)]
pub fn sincos(x: f32) -> (f32, f32) {
    let sign_sin = x.to_bits() & 0x8000_0000;
    let x = x.abs();
    let mut j = (x * FOUR_OVER_PI) as i32;
    j = (j + 1) & !1;
    let y = j as f32;
    let swap_sin = ((j & 4) as u32) << 29;
    let use_sin_poly = j & 2 == 0;
    let sign_cos = ((!(j - 2) & 4) as u32) << 29;
    // Extended-precision reduction x - j * pi/4.
    let r = y.mul_add(
        MINUS_DP[2],
        y.mul_add(MINUS_DP[1], y.mul_add(MINUS_DP[0], x)),
    );
    let z = r * r;
    let mut cos_poly = COS_P[0].mul_add(z, COS_P[1]).mul_add(z, COS_P[2]) * z;
    cos_poly = cos_poly.mul_add(z, -(z * 0.5)) + 1.0;
    let sin_poly = (SIN_P[0].mul_add(z, SIN_P[1]).mul_add(z, SIN_P[2]) * z).mul_add(r, r);
    let (sin, cos) = if use_sin_poly {
        (sin_poly, cos_poly)
    } else {
        (cos_poly, sin_poly)
    };
    (
        f32::from_bits(sin.to_bits() ^ sign_sin ^ swap_sin),
        f32::from_bits(cos.to_bits() ^ sign_cos),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_libm_over_the_box_muller_ranges() {
        for i in 1..=1000 {
            let u = i as f32 / 1000.0;
            assert!(
                (log(u) - u.ln()).abs() <= 2e-7 * u.ln().abs().max(1.0),
                "log {u}"
            );
            let theta = u * std::f32::consts::TAU;
            let (s, c) = sincos(theta);
            assert!(
                (s - theta.sin()).abs() < 3e-7 && (c - theta.cos()).abs() < 3e-7,
                "{theta}"
            );
        }
    }
}

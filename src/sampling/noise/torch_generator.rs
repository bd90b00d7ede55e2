//! A CPU random generator that reproduces `torch.manual_seed(seed)` followed by `torch.randn`,
//! `torch.rand` and `torch.randint` (float32 / int64 on the CPU) bit for bit.
//!
//! Reference: PyTorch `CPUGeneratorImpl` (`random`, `random64` = first draw in the high word),
//! `ATen/core/DistributionsHelper.h` (`uniform_real_distribution`: 24 random bits for float,
//! 53 for double; `normal_distribution<double>`: Box-Muller on two doubles, the sine half
//! cached in the generator for the next call) and `ATen/native/cpu/DistributionTemplates.h`
//! (`normal_kernel`). `randn` of 16 or more float32 elements fills the whole buffer with
//! uniforms first, then transforms it in place 16 at a time (pairs j, j+8) with the AVX2
//! Box-Muller of [`super::cephes`]; a tail that is not a multiple of 16 is redrawn as the last
//! 16 elements. Smaller tensors take the cached double path. The bit-exact target is torch on
//! an x86-64 CPU with AVX2 (what `torch.backends.cpu.get_cpu_capability()` reports as AVX2 or
//! AVX512); other builds of torch round differently in the last bit.

use ndarray::{ArrayD, IxDyn};

use super::cephes;
use super::mt19937::Mt19937;
use crate::sampling::SamplingError;

/// Elements per vectorized Box-Muller block in torch's `normal_fill`.
const BLOCK: usize = 16;
/// Buffers from this size on are transformed on several threads.
const PARALLEL_MIN_LEN: usize = 1 << 16;

/// Everything a [`TorchGenerator`] needs to continue where it was: saved in job checkpoints so
/// a resumed job draws the very noise an uninterrupted one draws.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GeneratorState {
    pub seed: u64,
    /// The MT19937 state words (624).
    pub words: Vec<u32>,
    /// Index of the next word to temper (624: twist first).
    pub next: usize,
    /// The second half of the last Box-Muller pair of `normal_f64`, if not drawn yet.
    pub cached_normal: Option<f64>,
}

/// Seeded generator with torch's CPU semantics. The default noise source of the engine.
#[derive(Debug, Clone)]
pub struct TorchGenerator {
    seed: u64,
    engine: Mt19937,
    next_double_normal: Option<f64>,
}

impl TorchGenerator {
    /// `torch.manual_seed(seed)` (equivalently `torch.Generator().manual_seed(seed)`).
    pub fn new(seed: u64) -> Self {
        TorchGenerator {
            seed,
            engine: Mt19937::new(seed),
            next_double_normal: None,
        }
    }

    /// Its state, to continue it later ([`TorchGenerator::from_state`]).
    pub fn state(&self) -> GeneratorState {
        let (words, next) = self.engine.state();
        GeneratorState {
            seed: self.seed,
            words: words.to_vec(),
            next,
            cached_normal: self.next_double_normal,
        }
    }

    /// The generator a saved [`GeneratorState`] describes.
    pub fn from_state(state: &GeneratorState) -> Result<Self, SamplingError> {
        let engine = Mt19937::from_state(&state.words, state.next).ok_or_else(|| {
            SamplingError::Invalid {
                what: "saved generator state".into(),
                expected: "624 MT19937 words and a position of at most 624".into(),
                found: format!("{} words, position {}", state.words.len(), state.next),
            }
        })?;
        Ok(TorchGenerator {
            seed: state.seed,
            engine,
            next_double_normal: state.cached_normal,
        })
    }

    /// The seed this generator was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// One 32-bit draw.
    pub fn random_u32(&mut self) -> u32 {
        self.engine.next_u32()
    }

    /// Two 32-bit draws, the first in the high word.
    pub fn random_u64(&mut self) -> u64 {
        let high = u64::from(self.engine.next_u32());
        let low = u64::from(self.engine.next_u32());
        (high << 32) | low
    }

    /// Uniform on [0, 1) with 24 random bits (torch's float `uniform_real_distribution`).
    pub fn uniform_f32(&mut self) -> f32 {
        (self.random_u32() & 0x00ff_ffff) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform on [0, 1) with 53 random bits (torch's double `uniform_real_distribution`).
    pub fn uniform_f64(&mut self) -> f64 {
        (self.random_u64() & ((1u64 << 53) - 1)) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// One standard normal double (`normal_distribution<double>`, with the cached pair half).
    pub fn normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.next_double_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let radius = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(radius * theta.sin());
        radius * theta.cos()
    }

    /// `torch.randn(shape)` as float32.
    pub fn randn(&mut self, shape: &[usize]) -> ArrayD<f32> {
        let mut array = ArrayD::zeros(IxDyn(shape));
        // A fresh zeros array is contiguous, so the slice is always there.
        if let Some(values) = array.as_slice_mut() {
            self.fill_randn(values);
        }
        array
    }

    /// Fills `out` as `torch.randn(out.len())` would.
    pub fn fill_randn(&mut self, out: &mut [f32]) {
        if out.len() < BLOCK {
            for value in out.iter_mut() {
                *value = self.normal_f64() as f32;
            }
            return;
        }
        self.fill_uniform(out);
        box_muller(out);
        if !out.len().is_multiple_of(BLOCK) {
            let tail_start = out.len() - BLOCK;
            let tail = &mut out[tail_start..];
            self.fill_uniform(tail);
            box_muller(tail);
        }
    }

    /// `torch.rand(shape)` as float32.
    pub fn rand(&mut self, shape: &[usize]) -> ArrayD<f32> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || self.uniform_f32())
    }

    /// `torch.randint(low, high, shape)` (int64): `low + draw % (high - low)`.
    pub fn randint(
        &mut self,
        low: i64,
        high: i64,
        shape: &[usize],
    ) -> Result<ArrayD<i64>, SamplingError> {
        if low >= high {
            return Err(SamplingError::Invalid {
                what: "randint range".into(),
                expected: "low < high".into(),
                found: format!("low {low}, high {high}"),
            });
        }
        let range = high.abs_diff(low);
        Ok(ArrayD::from_shape_simple_fn(IxDyn(shape), || {
            let draw = if range >= 1u64 << 32 {
                self.random_u64()
            } else {
                u64::from(self.random_u32())
            };
            low.wrapping_add((draw % range) as i64)
        }))
    }

    fn fill_uniform(&mut self, out: &mut [f32]) {
        for value in out.iter_mut() {
            *value = self.uniform_f32();
        }
    }
}

/// Box-Muller over every whole block of `values`, split over threads for large buffers (the
/// blocks are independent once the uniforms are drawn, so the result does not depend on it).
fn box_muller(values: &mut [f32]) {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(values.len() / PARALLEL_MIN_LEN);
    if threads <= 1 {
        return box_muller_serial(values);
    }
    let per_thread = (values.len() / BLOCK).div_ceil(threads) * BLOCK;
    std::thread::scope(|scope| {
        for part in values.chunks_mut(per_thread) {
            scope.spawn(|| box_muller_serial(part));
        }
    });
}

/// `mul_add` is exact either way; with the CPU's FMA unit it is one instruction instead of a
/// libm call (about twice as fast overall).
fn box_muller_serial(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports FMA, checked just above.
        unsafe { box_muller_fma(values) };
        return;
    }
    values.chunks_exact_mut(BLOCK).for_each(box_muller_block);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn box_muller_fma(values: &mut [f32]) {
    values.chunks_exact_mut(BLOCK).for_each(box_muller_block);
}

/// `normal_fill_16_AVX2` with mean 0 and std 1: uniforms (j, j+8) -> normals, in place.
#[inline(always)]
fn box_muller_block(block: &mut [f32]) {
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    let (first, second) = block.split_at_mut(BLOCK / 2);
    for (a, b) in first.iter_mut().zip(second.iter_mut()) {
        let radius = (-2.0 * cephes::log(1.0 - *a)).sqrt();
        let (sin, cos) = cephes::sincos(two_pi * *b);
        // torch finishes with fmadd(n, std, mean) = n * 1 + 0, which turns -0 into +0.
        *a = radius * cos + 0.0;
        *b = radius * sin + 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randn_statistics_are_standard_normal() {
        let mut generator = TorchGenerator::new(7);
        let x = generator.randn(&[100_000]);
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / 1e5;
        let var = x
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / 1e5;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
    }

    #[test]
    fn a_saved_state_resumes_the_same_draws() {
        let mut generator = TorchGenerator::new(33);
        generator.randn(&[3, 5]); // small: leaves a cached Box-Muller half
        let state = generator.state();
        let json = serde_json::to_string(&state).unwrap();
        let mut resumed =
            TorchGenerator::from_state(&serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(resumed.normal_f64(), generator.normal_f64());
        assert_eq!(resumed.randn(&[4, 40]), generator.randn(&[4, 40]));
        let broken = GeneratorState {
            words: vec![1; 10],
            ..state
        };
        assert!(TorchGenerator::from_state(&broken).is_err());
    }

    #[test]
    fn randint_rejects_an_empty_range() {
        assert!(TorchGenerator::new(0).randint(3, 3, &[2]).is_err());
    }
}

//! Seeded, deterministic CPU noise for the samplers.
//!
//! [`TorchGenerator`] is the default source: it reproduces `torch.manual_seed(s)` +
//! `torch.randn` bit for bit, so stage 2 (whose reference draws its latents and DDIM noise
//! from a seeded CPU `torch.Generator`) gets the reference's exact noise. [`VideoNoise`] adds
//! StreamingT2V's optional noise modes (`t2v_enhanced/model/video_noise_generator.py`).

mod cephes;
mod mt19937;
mod torch_generator;
mod video;

pub use torch_generator::{GeneratorState, TorchGenerator};
pub use video::{frame_major_randn, NoiseMode, VideoNoise};

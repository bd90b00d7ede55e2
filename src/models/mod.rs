//! Typed wrappers over the ONNX graphs of a model set, one per role.
//!
//! The pipeline talks to these traits, not to ONNX Runtime, so it can be tested with fake
//! models. The ort-backed implementations own their sessions and check each graph's inputs
//! and outputs against the manifest and `models/roles.json` at load.

pub mod calls;
pub mod loader;
pub mod onnx;
pub mod roles;
pub mod session;
pub mod signature;

pub use calls::{CallLog, InputShape};
pub use loader::{lacks_enhancer, EnhancerModels, ModelLoader, StreamingModels};
pub use roles::Role;
pub use session::{GraphPlacement, GraphSession, LoadError};

use ndarray::{Array2, Array3, Array4, Array5};

/// Errors from running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("graph `{role}`: {message}")]
    Run { role: String, message: String },
    #[error("graph `{role}` input `{input}`: expected shape {expected}, got {actual:?}")]
    InputShape {
        role: String,
        input: String,
        expected: String,
        actual: Vec<usize>,
    },
    #[error("cancelled")]
    Cancelled,
}

pub type ModelResult<T> = Result<T, ModelError>;

/// The CAM's 12 down-block residuals and its mid-block residual, each (B*F_cond, C, h, w).
#[derive(Debug, Clone)]
pub struct CamResiduals {
    pub down: Vec<Array4<f32>>,
    pub mid: Array4<f32>,
}

/// G1 / G8: token ids (B, 77) -> hidden states (B, 77, D).
pub trait TextEncoder {
    fn encode(&mut self, input_ids: &Array2<i64>) -> ModelResult<Array3<f32>>;
}

/// G2: images (N, 3, H, W) in [-1, 1] -> pooled projected embeddings (N, E).
pub trait ImageEncoder {
    fn encode(&mut self, images: &Array4<f32>) -> ModelResult<Array2<f32>>;
}

/// G3: pooled embeddings (N, E) -> APM tokens (N, 16, D).
pub trait ApmResampler {
    fn tokens(&mut self, image_embeds: &Array2<f32>) -> ModelResult<Array3<f32>>;
}

/// G4a: CAM conditioning frames (F_cond, 3, H, W) in [-1, 1] -> E_cond features (F_cond, C, h, w).
pub trait CamCondEncoder {
    fn encode(&mut self, cond_frames: &Array4<f32>) -> ModelResult<Array4<f32>>;
}

/// G4: the CAM over the first F_cond noisy latent frames (B, 4, F_cond, h, w), timesteps (B,),
/// text tokens (B, 77, D) and E_cond features (F_cond, C, h, w) shared by the batch.
pub trait Cam {
    fn run(
        &mut self,
        sample: &Array5<f32>,
        timestep: &[i64],
        text_states: &Array3<f32>,
        cond_features: &Array4<f32>,
    ) -> ModelResult<CamResiduals>;
}

/// G5: the stage-2 UNet: sample (B, 4, F, h, w), timesteps (B,), text + APM tokens (B, 93, D)
/// and the CAM residuals -> noise prediction (B, 4, F, h, w).
pub trait StreamingUnet {
    fn run(
        &mut self,
        sample: &Array5<f32>,
        timestep: &[i64],
        context: &Array3<f32>,
        residuals: &CamResiduals,
    ) -> ModelResult<Array5<f32>>;
}

/// G7 / G9: a video UNet without CAM: sample (B, 4, F, h, w), timesteps (B,), context (B, 77, D)
/// -> model output (epsilon for stage 1, v for the enhancer).
pub trait VideoUnet {
    fn run(
        &mut self,
        sample: &Array5<f32>,
        timestep: &[i64],
        context: &Array3<f32>,
    ) -> ModelResult<Array5<f32>>;
}

/// G6 / G10 decoder: latents already divided by the scaling factor (N, 4, h, w) -> images
/// (N, 3, H, W) in about [-1, 1].
pub trait VaeDecoder {
    fn decode(&mut self, latents: &Array4<f32>) -> ModelResult<Array4<f32>>;
}

/// Posterior moments of the VAE encoder.
#[derive(Debug, Clone)]
pub struct LatentMoments {
    pub mean: Array4<f32>,
    pub logvar: Array4<f32>,
}

/// G6e / G10 encoder: images (N, 3, H, W) in [-1, 1] -> posterior moments (N, 4, h, w).
pub trait VaeEncoder {
    fn encode(&mut self, images: &Array4<f32>) -> ModelResult<LatentMoments>;
}

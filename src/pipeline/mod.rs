//! The StreamingT2V pipeline: stage 1 (initialization), stage 2 (streaming with CAM and APM),
//! stage 3 (refinement with randomized blending), composed over the model traits of
//! [`crate::models`] so it runs on ONNX Runtime sessions or on fakes in tests.
//!
//! Frames are handed to a [`FrameOutput`] as soon as they are final; progress goes to a
//! [`crate::progress::ProgressSink`]; a [`crate::progress::CancelToken`] is checked between
//! model calls.

pub mod checkpoint;
pub mod compose;
pub mod conditioning;
mod denoise;
pub mod noise;
pub mod options;
pub mod prompts;
pub mod run;
mod sink;
pub mod stage1;
pub mod stage2;
pub mod stage3;
mod tensor;

use std::path::PathBuf;

use crate::models::ModelError;
use crate::plan::PlanError;
use crate::sampling::SamplingError;
use crate::video::VideoError;

pub use checkpoint::{Checkpoints, JobState, OutputState};
pub use compose::{EnhancerGraphs, Outputs, Pipeline, PromptIds, RunSummary, StreamingGraphs};
pub use conditioning::TokenIds;
pub use options::{AnchorMode, EnhanceOptions, GenerateOptions, Stage2Guidance};
pub use prompts::PromptSchedule;
pub use run::{FrameOutput, LatentOutput, NpyLatentDir, RunContext};

/// Errors of a pipeline run. Frames already handed out stay valid.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error("{what}: expected shape {expected:?}, got {actual:?}")]
    Shape {
        what: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("invalid {field}: expected {expected}, got {actual}")]
    Invalid {
        field: String,
        expected: String,
        actual: String,
    },
    #[error("stage {stage} needs the `{role}` graph, which the model set does not have")]
    MissingGraph { stage: String, role: String },
    #[error(transparent)]
    Video(#[from] VideoError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
}

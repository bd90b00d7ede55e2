//! The engine's errors, and the one classification every shell maps to its own statuses
//! (exit statuses in the CLI, HTTP statuses in the server).

use std::error::Error as StdError;
use std::path::PathBuf;

use crate::eval::EvalError;
use crate::manifest::ManifestError;
use crate::models::LoadError;
use crate::pipeline::PipelineError;
use crate::plan::PlanError;
use crate::runtime::RuntimeError;
use crate::tokenizer::TokenizerError;
use crate::video::{Summary, VideoError};

use super::field::Field;
use super::job::JobError;

/// A request value that cannot be used, found before any model is loaded.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A value out of range or of the wrong kind.
    #[error("{}: expected {expected}, got {actual}", field.flag())]
    Value {
        field: Field,
        expected: String,
        actual: String,
    },
    /// A file or directory named by the request that cannot be read or written.
    #[error("{}", field.flag())]
    File {
        field: Field,
        #[source]
        source: VideoError,
    },
}

impl RequestError {
    pub fn value(field: Field, expected: impl Into<String>, actual: impl ToString) -> Self {
        Self::Value {
            field,
            expected: expected.into(),
            actual: actual.to_string(),
        }
    }

    /// The request field at fault.
    pub fn field(&self) -> Field {
        match self {
            Self::Value { field, .. } | Self::File { field, .. } => *field,
        }
    }
}

/// What a run that ended early left behind: every frame finished before the end is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptFrames {
    /// Frames in the main output.
    pub frames: usize,
    pub path: PathBuf,
    /// The stage-2 copy: the side file when stage 3 ran without a preview, or the preview.
    pub stage2: Option<Summary>,
    /// Whether `stage2` is the side file (and the main output holds enhanced frames).
    pub stage2_is_side_file: bool,
}

impl KeptFrames {
    /// Whether no file holds any frame.
    pub fn is_empty(&self) -> bool {
        self.frames == 0 && self.stage2.as_ref().is_none_or(|s| s.frames == 0)
    }
}

impl std::fmt::Display for KeptFrames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let finished = match self.stage2_is_side_file {
            true => "enhanced",
            false => "finished",
        };
        write!(
            f,
            "{} {finished} frames were written to {}",
            self.frames,
            self.path.display()
        )?;
        match (&self.stage2, self.stage2_is_side_file) {
            (Some(side), true) if side.frames == 0 => write!(f, "; no stage-2 frame was finished"),
            (Some(side), true) => write!(
                f,
                "; {} stage-2 frames (not enhanced) were kept in {}",
                side.frames,
                side.path.display()
            ),
            (Some(preview), false) => write!(
                f,
                "; the preview {} holds {} frames",
                preview.path.display(),
                preview.frames
            ),
            (None, _) => Ok(()),
        }
    }
}

/// Errors of the engine: bad requests, model-set and runtime problems, and runs that stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(
        "no model set given and no default found; looked for {default} in: {searched}\n  \
         pass --models DIR or set ST2V_MODELS"
    )]
    NoDefaultModels {
        default: &'static str,
        searched: String,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// A job directory or checkpoint that cannot be used.
    #[error(transparent)]
    Job(#[from] JobError),
    /// An output could not be opened or finished.
    #[error("{what}")]
    Output {
        what: String,
        #[source]
        source: Box<VideoError>,
    },
    /// The run was cancelled; the outputs keep the frames finished before.
    #[error("interrupted: {kept}")]
    Interrupted { kept: Box<KeptFrames> },
    /// The run failed part-way; the outputs keep the frames finished before.
    #[error("generation stopped; {kept}")]
    Stopped {
        kept: String,
        #[source]
        source: Box<PipelineError>,
    },
    /// A failure before any output was opened (bad input found while running, a model error).
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// What kind of failure an error is; each shell maps it to its statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Bad input (a flag, a request field, a model set), found before or while running
    /// (CLI exit status 2, HTTP 400/422).
    InvalidInput,
    /// ONNX Runtime or an execution provider is missing or unusable (exit 3, HTTP 503).
    Unavailable,
    /// A failure while running (exit 1, HTTP 500).
    Failed,
    /// The run was cancelled (exit 130).
    Cancelled,
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Request(_) | Self::NoDefaultModels { .. } | Self::Manifest(_) => {
                ErrorKind::InvalidInput
            }
            Self::Tokenizer(_) => ErrorKind::InvalidInput,
            Self::Job(err) => job_kind(err),
            // Paths were checked before any compute: a file that cannot be written now (a
            // full disk) is a failure while running.
            Self::Output { .. } => ErrorKind::Failed,
            Self::Runtime(err) => runtime_kind(err),
            Self::Load(err) => load_kind(err),
            Self::Interrupted { .. } => ErrorKind::Cancelled,
            Self::Stopped { source, .. } => pipeline_kind(source),
            Self::Pipeline(err) => pipeline_kind(err),
        }
    }
}

/// The kind of one error value of this library; `None` for foreign types. A shell walking an
/// error chain takes the first `Some`, so the outermost library error decides.
pub fn classify(err: &(dyn StdError + 'static)) -> Option<ErrorKind> {
    if let Some(engine) = err.downcast_ref::<EngineError>() {
        return Some(engine.kind());
    }
    if let Some(pipeline) = err.downcast_ref::<PipelineError>() {
        return Some(pipeline_kind(pipeline));
    }
    if let Some(runtime) = err.downcast_ref::<RuntimeError>() {
        return Some(runtime_kind(runtime));
    }
    if let Some(load) = err.downcast_ref::<LoadError>() {
        return Some(load_kind(load));
    }
    if let Some(job) = err.downcast_ref::<JobError>() {
        return Some(job_kind(job));
    }
    if let Some(eval) = err.downcast_ref::<EvalError>() {
        return Some(eval_kind(eval));
    }
    let invalid = err.is::<RequestError>()
        || err.is::<ManifestError>()
        || err.is::<TokenizerError>()
        || err.is::<VideoError>()
        || err.is::<PlanError>();
    invalid.then_some(ErrorKind::InvalidInput)
}

/// A job file that cannot be read is a failure; one that is not a usable job is bad input.
fn job_kind(err: &JobError) -> ErrorKind {
    match err {
        JobError::Io { .. } => ErrorKind::Failed,
        _ => ErrorKind::InvalidInput,
    }
}

/// `st2v eval`: a graph that fails while running is a failure, everything else it refuses is
/// bad input (videos, flags, a model set without the CLIP graphs).
fn eval_kind(err: &EvalError) -> ErrorKind {
    match err {
        EvalError::Load(load) => load_kind(load),
        EvalError::Model(_) => ErrorKind::Failed,
        EvalError::Cancelled => ErrorKind::Cancelled,
        _ => ErrorKind::InvalidInput,
    }
}

/// Bad input found by the pipeline is invalid usage; the rest are failures while running.
fn pipeline_kind(err: &PipelineError) -> ErrorKind {
    match err {
        PipelineError::Invalid { .. }
        | PipelineError::Plan(_)
        | PipelineError::MissingGraph { .. } => ErrorKind::InvalidInput,
        PipelineError::Cancelled => ErrorKind::Cancelled,
        _ => ErrorKind::Failed,
    }
}

fn runtime_kind(err: &RuntimeError) -> ErrorKind {
    match err {
        RuntimeError::EpSpec { .. } | RuntimeError::Option { .. } => ErrorKind::InvalidInput,
        RuntimeError::Session { .. } => ErrorKind::Failed,
        _ => ErrorKind::Unavailable,
    }
}

fn load_kind(err: &LoadError) -> ErrorKind {
    match err {
        LoadError::Runtime(runtime) => runtime_kind(runtime),
        _ => ErrorKind::InvalidInput,
    }
}

//! Progress events and cooperative cancellation.
//!
//! The pipeline reports through a [`ProgressSink`] and checks a [`CancelToken`] between model
//! calls, so the CLI (progress bars, `--events` JSON lines), the HTTP server (live progress,
//! cancellation) and the benchmarks are thin shells over the same library calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;

/// The three StreamingT2V stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Stage 1: the first chunk from the text-to-video base model.
    Initialization,
    /// Stage 2: autoregressive chunks with CAM and APM.
    Streaming,
    /// Stage 3: the high-resolution enhancer with randomized blending.
    Refinement,
}

impl Stage {
    /// `stage1`, `stage2`, `stage3`: the short name reports, metrics and latent files use.
    pub fn key(self) -> &'static str {
        match self {
            Stage::Initialization => "stage1",
            Stage::Streaming => "stage2",
            Stage::Refinement => "stage3",
        }
    }
}

/// One progress event. Serialized as one JSON object per line by `--events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    /// A stage starts; `chunks` and `steps` size its work.
    StageStarted {
        stage: Stage,
        chunks: usize,
        steps: usize,
    },
    /// One denoising step of one chunk finished.
    Step {
        stage: Stage,
        chunk: usize,
        step: usize,
        steps: usize,
    },
    /// A chunk is final; `frames` frames were appended to the stage's output.
    ChunkDone {
        stage: Stage,
        chunk: usize,
        frames: usize,
    },
    /// Frames written to the output so far.
    FramesWritten {
        total: usize,
    },
    StageFinished {
        stage: Stage,
        seconds: f64,
    },
    /// A non-fatal notice (rounded frame count, truncated prompt, ...).
    Warning {
        message: String,
    },
}

/// Receives progress events. Implemented for closures.
pub trait ProgressSink {
    fn emit(&self, event: &ProgressEvent);
}

impl<F: Fn(&ProgressEvent)> ProgressSink for F {
    fn emit(&self, event: &ProgressEvent) {
        self(event)
    }
}

/// A sink that drops every event.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn emit(&self, _event: &ProgressEvent) {}
}

/// Shared flag that asks a running generation to stop at the next model call.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

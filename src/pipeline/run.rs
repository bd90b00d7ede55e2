//! What a pipeline run reports to and receives from its caller: progress, cancellation, final
//! frames and (optionally) the final latents of every chunk.

use std::fs;
use std::path::{Path, PathBuf};

use ndarray::Array5;
use ndarray_npy::WriteNpyExt;

use super::checkpoint::Checkpoints;
use super::prompts::PromptSchedule;
use super::PipelineError;
use crate::progress::{CancelToken, ProgressEvent, ProgressSink, Stage};
use crate::video::{Frame, FrameSink, VideoError};

/// Receives each frame as soon as it is final.
pub trait FrameOutput {
    fn push(&mut self, frame: &Frame) -> Result<(), VideoError>;

    /// The leading frames in the output for good ([`FrameSink::durable_frames`]); `None` for
    /// an output a resumed job cannot continue.
    fn durable(&self) -> Option<usize> {
        None
    }

    /// Flushes the durable frames to the disk.
    fn sync(&mut self) -> Result<(), VideoError> {
        Ok(())
    }
}

impl FrameOutput for Box<dyn FrameSink> {
    fn push(&mut self, frame: &Frame) -> Result<(), VideoError> {
        self.write(frame)
    }

    fn durable(&self) -> Option<usize> {
        Some(FrameSink::durable_frames(&**self))
    }

    fn sync(&mut self) -> Result<(), VideoError> {
        FrameSink::sync(&mut **self)
    }
}

impl<F: FnMut(&Frame) -> Result<(), VideoError>> FrameOutput for F {
    fn push(&mut self, frame: &Frame) -> Result<(), VideoError> {
        self(frame)
    }
}

/// Receives the final latents of each chunk (`--save-latents`).
pub trait LatentOutput {
    fn save(
        &mut self,
        stage: Stage,
        chunk: usize,
        latents: &Array5<f32>,
    ) -> Result<(), PipelineError>;
}

/// Writes `stage1_chunk000.npy`, `stage2_chunk001.npy`, ... into a directory.
pub struct NpyLatentDir {
    dir: PathBuf,
}

impl NpyLatentDir {
    /// Creates the directory if needed.
    pub fn create(dir: &Path) -> Result<Self, PipelineError> {
        fs::create_dir_all(dir).map_err(|source| PipelineError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn file_name(stage: Stage, chunk: usize) -> String {
        format!("{}_chunk{chunk:03}.npy", stage.key())
    }
}

impl LatentOutput for NpyLatentDir {
    fn save(
        &mut self,
        stage: Stage,
        chunk: usize,
        latents: &Array5<f32>,
    ) -> Result<(), PipelineError> {
        let path = self.dir.join(Self::file_name(stage, chunk));
        let file = fs::File::create(&path).map_err(|source| PipelineError::Io {
            path: path.clone(),
            source,
        })?;
        latents
            .write_npy(std::io::BufWriter::new(file))
            .map_err(|err| PipelineError::Io {
                path,
                source: std::io::Error::other(err),
            })
    }
}

/// The caller's side of a run: where progress, frames and latents go, the cancel flag, and
/// (optionally) prompts that change along the video.
pub struct RunContext<'a> {
    pub progress: &'a dyn ProgressSink,
    pub cancel: &'a CancelToken,
    pub latents: Option<&'a mut dyn LatentOutput>,
    pub prompts: Option<&'a dyn PromptSchedule>,
    /// At most this many frames per stage-1/2 VAE decoder call (`None`: a chunk at once). The
    /// decoder works frame by frame; slicing bounds its activation memory (gigabytes per
    /// 16-frame call at full size).
    pub decode_batch: Option<usize>,
    /// Where the job's checkpoints go (`--job-dir`); `None`: no checkpoints.
    pub checkpoints: Option<&'a mut dyn Checkpoints>,
}

impl<'a> RunContext<'a> {
    pub fn new(progress: &'a dyn ProgressSink, cancel: &'a CancelToken) -> Self {
        Self {
            progress,
            cancel,
            latents: None,
            prompts: None,
            decode_batch: None,
            checkpoints: None,
        }
    }

    /// Stops the run if cancellation was requested; called before every model call.
    pub fn check_cancelled(&self) -> Result<(), PipelineError> {
        if self.cancel.is_cancelled() {
            return Err(PipelineError::Cancelled);
        }
        Ok(())
    }

    pub fn emit(&self, event: ProgressEvent) {
        self.progress.emit(&event);
    }

    pub fn save_latents(
        &mut self,
        stage: Stage,
        chunk: usize,
        latents: &Array5<f32>,
    ) -> Result<(), PipelineError> {
        match self.latents.as_deref_mut() {
            Some(out) => out.save(stage, chunk, latents),
            None => Ok(()),
        }
    }
}

//! The [`FrameSink`] trait and the factory that opens one for an output path.

use std::path::{Path, PathBuf};

use super::gif_sink::GifSink;
#[cfg(feature = "ffmpeg")]
use super::mp4_sink::Mp4Sink;
use super::png_sink::PngDirSink;
use super::{Frame, FrameSize, OutputFormat, OutputTarget, VideoError};

/// Frame rate of the reference's stage-2 and stage-3 videos.
pub const DEFAULT_FPS: u32 = 8;

/// What a finished sink wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub path: PathBuf,
    pub format: OutputFormat,
    pub frames: usize,
    pub size: FrameSize,
    pub fps: u32,
}

/// Receives frames one at a time and writes them out immediately.
///
/// Call [`FrameSink::finish`] when done, also after an error or a cancellation: the file then
/// holds the frames written so far and is valid. Dropping a sink without `finish` finishes it on
/// a best-effort basis (errors are lost). A sink that received no frame leaves no file behind.
pub trait FrameSink: Send {
    /// Encodes one frame; its size must equal the size the sink was opened with.
    fn write(&mut self, frame: &Frame) -> Result<(), VideoError>;

    /// Frames written so far.
    fn frames_written(&self) -> usize;

    /// The leading frames that are in the file for good: a resumed job keeps exactly these
    /// ([`resume_sink`]) and writes the rest again.
    fn durable_frames(&self) -> usize {
        self.frames_written()
    }

    /// Flushes the durable frames to the disk (before a checkpoint vouches for them).
    fn sync(&mut self) -> Result<(), VideoError> {
        Ok(())
    }

    /// Flushes and closes the output (MP4 trailer, GIF trailer).
    fn finish(self: Box<Self>) -> Result<Summary, VideoError>;
}

/// Opens the sink for `path`; `format` overrides the extension. `fps` must be positive.
pub fn open_sink(
    path: &Path,
    format: Option<OutputFormat>,
    fps: u32,
    size: FrameSize,
) -> Result<Box<dyn FrameSink>, VideoError> {
    let target = OutputTarget::check(path, format)?;
    if fps == 0 {
        return Err(invalid(
            path,
            "frame rate",
            "a positive number of frames per second",
            "0",
        ));
    }
    if size.width == 0 || size.height == 0 {
        return Err(invalid(
            path,
            "frame size",
            "non-zero width and height",
            &size.to_string(),
        ));
    }
    let spec = SinkSpec { target, fps, size };
    Ok(match spec.target.format {
        #[cfg(feature = "ffmpeg")]
        OutputFormat::Mp4 => Box::new(Mp4Sink::create(spec)?),
        #[cfg(not(feature = "ffmpeg"))]
        OutputFormat::Mp4 => {
            return Err(VideoError::NoFfmpeg {
                path: spec.target.path.clone(),
                what: "writing MP4",
            })
        }
        OutputFormat::Gif => Box::new(GifSink::create(spec)?),
        OutputFormat::PngDir => Box::new(PngDirSink::create(spec)?),
    })
}

/// Reopens the output of an interrupted job, keeping its first `keep` frames (the durable
/// frames its checkpoint recorded); the next frame written is frame `keep`. MP4 and PNG
/// outputs can be continued; a GIF cannot (its frames share one LZW stream per image and a
/// global palette decided up front).
pub fn resume_sink(
    path: &Path,
    format: Option<OutputFormat>,
    fps: u32,
    size: FrameSize,
    keep: usize,
) -> Result<Box<dyn FrameSink>, VideoError> {
    let target = OutputTarget::check(path, format)?;
    let spec = SinkSpec { target, fps, size };
    Ok(match spec.target.format {
        #[cfg(feature = "ffmpeg")]
        OutputFormat::Mp4 => Box::new(Mp4Sink::resume(spec, keep)?),
        #[cfg(not(feature = "ffmpeg"))]
        OutputFormat::Mp4 => {
            return Err(VideoError::NoFfmpeg {
                path: spec.target.path.clone(),
                what: "writing MP4",
            })
        }
        OutputFormat::PngDir => Box::new(PngDirSink::resume(spec, keep)?),
        OutputFormat::Gif => {
            return Err(invalid(
                path,
                "output format of a resumable job",
                "MP4 or a PNG directory",
                "GIF",
            ))
        }
    })
}

/// Everything a concrete sink is built from.
#[derive(Debug, Clone)]
pub(super) struct SinkSpec {
    pub target: OutputTarget,
    pub fps: u32,
    pub size: FrameSize,
}

impl SinkSpec {
    pub fn path(&self) -> &Path {
        &self.target.path
    }

    pub fn summary(&self, frames: usize) -> Summary {
        Summary {
            path: self.target.path.clone(),
            format: self.target.format,
            frames,
            size: self.size,
            fps: self.fps,
        }
    }

    /// Rejects a frame whose size differs from the sink's.
    pub fn check_frame(&self, frame: &Frame) -> Result<(), VideoError> {
        if frame.size() == self.size {
            return Ok(());
        }
        Err(invalid(
            self.path(),
            "frame size",
            &self.size.to_string(),
            &frame.size().to_string(),
        ))
    }
}

pub(super) fn invalid(path: &Path, what: &str, expected: &str, actual: &str) -> VideoError {
    VideoError::Invalid {
        path: path.to_owned(),
        what: what.to_owned(),
        expected: expected.to_owned(),
        actual: actual.to_owned(),
    }
}

/// Where a file sink writes until it is finished: `<stem>.partial.<ext>` next to the output.
/// A finished (or interrupted, or failed) run renames it into place; a killed run leaves it,
/// playable up to its last fragment.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_stem().unwrap_or_default().to_os_string();
    name.push(".partial");
    if let Some(ext) = path.extension() {
        name.push(".");
        name.push(ext);
    }
    path.with_file_name(name)
}

impl SinkSpec {
    /// The file a file sink writes into until it is finished.
    pub fn partial(&self) -> PathBuf {
        partial_path(self.path())
    }

    /// Renames the partial file into place (replacing an output the caller agreed to
    /// replace), or removes it when no frame was written.
    pub fn commit(&self, frames: usize) -> Result<(), VideoError> {
        let partial = self.partial();
        if frames == 0 {
            // Best effort: the file holds no frame.
            let _ = std::fs::remove_file(&partial);
            return Ok(());
        }
        std::fs::rename(&partial, self.path()).map_err(|source| VideoError::Io {
            path: partial,
            operation: "renaming the finished file into place",
            source,
        })
    }
}

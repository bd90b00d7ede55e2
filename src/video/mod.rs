//! Video I/O: frame sinks (MP4 H.264, animated GIF, PNG directory) and frame sources.
//!
//! Sinks stream: each frame is encoded as soon as it is written, and a sink finished early
//! (error, Ctrl-C) still leaves a valid file holding the frames written so far.
//!
//! - [`OutputTarget::check`] validates an output path before any compute.
//! - [`open_sink`] opens the sink for a path (format from the extension or explicit).
//! - [`open_source`] / [`read_video`] read a user's video back into [`Frame`]s.

mod error;
#[cfg(feature = "ffmpeg")]
mod ffmpeg_source;
pub mod fmp4;
mod format;
mod frame;
mod gif_sink;
#[cfg(feature = "ffmpeg")]
mod mp4_sink;
mod png_sink;
mod sink;
mod source;

pub use error::VideoError;
pub use format::{InputFormat, OutputFormat, OutputTarget};
pub use frame::{quantize, Frame, FrameSize, SampleRange};
pub use sink::{open_sink, partial_path, resume_sink, FrameSink, Summary, DEFAULT_FPS};
pub use source::{open_source, read_video, FrameSource, Video, VideoInfo};

//! Errors of the video layer. Every variant names the file at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("{path}: unknown video format `{extension}`; expected one of: {accepted}")]
    UnknownFormat {
        path: PathBuf,
        extension: String,
        accepted: String,
    },
    #[error("output {path}: {problem}")]
    OutputNotWritable { path: PathBuf, problem: String },
    #[error("input {path}: {problem}")]
    InputUnreadable { path: PathBuf, problem: String },
    #[error("{path}: invalid {what}: expected {expected}, got {actual}")]
    Invalid {
        path: PathBuf,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("invalid {what}: expected {expected}, got {actual}")]
    FrameShape {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("FFmpeg initialization failed: {message}")]
    FfmpegInit { message: String },
    #[cfg(feature = "ffmpeg")]
    #[error("{path}: {operation} failed: {source}")]
    Ffmpeg {
        path: PathBuf,
        operation: &'static str,
        source: video_rs::Error,
    },
    #[error(
        "{path}: {what} needs FFmpeg, and this st2v was built without it (the `ffmpeg` cargo \
         feature); write a GIF or a PNG directory (`--out frames/`), read GIF or PNG frames, \
         or use a build with the default features"
    )]
    NoFfmpeg { path: PathBuf, what: &'static str },
    #[error("{path}: {operation} failed: {source}")]
    Image {
        path: PathBuf,
        operation: &'static str,
        source: image::ImageError,
    },
    #[error("{path}: GIF encoding failed: {source}")]
    Gif {
        path: PathBuf,
        source: gif::EncodingError,
    },
    #[error("{path}: {operation} failed: {source}")]
    Io {
        path: PathBuf,
        operation: &'static str,
        source: std::io::Error,
    },
}

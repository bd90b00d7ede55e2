//! MP4 sink: H.264 (libx264, preset medium) yuv420p through video-rs / FFmpeg.

use std::sync::OnceLock;

use video_rs::encode::{Encoder, Settings};
use video_rs::Time;

use super::sink::{invalid, remove_empty_output, SinkSpec};
use super::{Frame, FrameSink, Summary, VideoError};

pub(super) struct Mp4Sink {
    spec: SinkSpec,
    encoder: Option<Encoder>,
    frames: usize,
}

/// Initializes FFmpeg once per process (idempotent, cheap afterwards).
pub(super) fn init_ffmpeg() -> Result<(), VideoError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| video_rs::init().map_err(|e| e.to_string()))
        .clone()
        .map_err(|message| VideoError::FfmpegInit { message })
}

impl Mp4Sink {
    pub fn create(spec: SinkSpec) -> Result<Self, VideoError> {
        // yuv420p subsamples chroma 2x2, so libx264 refuses odd sizes.
        let size = spec.size;
        if size.width % 2 != 0 || size.height % 2 != 0 {
            return Err(invalid(
                spec.path(),
                "frame size for H.264 yuv420p",
                "even width and height",
                &size.to_string(),
            ));
        }
        init_ffmpeg()?;
        let settings = Settings::preset_h264_yuv420p(size.width, size.height, false);
        let encoder = Encoder::new(spec.path(), settings).map_err(|source| VideoError::Ffmpeg {
            path: spec.path().to_owned(),
            operation: "opening the H.264 encoder",
            source,
        })?;
        Ok(Self {
            spec,
            encoder: Some(encoder),
            frames: 0,
        })
    }

    /// Flushes the encoder and writes the trailer; a sink with no frame removes its file.
    fn close(&mut self) -> Result<(), VideoError> {
        let Some(mut encoder) = self.encoder.take() else {
            return Ok(());
        };
        if self.frames == 0 {
            drop(encoder);
            remove_empty_output(self.spec.path());
            return Ok(());
        }
        encoder.finish().map_err(|source| VideoError::Ffmpeg {
            path: self.spec.path().to_owned(),
            operation: "finishing the MP4 file",
            source,
        })
    }
}

impl FrameSink for Mp4Sink {
    fn write(&mut self, frame: &Frame) -> Result<(), VideoError> {
        self.spec.check_frame(frame)?;
        let Some(encoder) = self.encoder.as_mut() else {
            return Err(invalid(self.spec.path(), "sink state", "open", "finished"));
        };
        // Timestamps in units of 1/fps give an exact constant frame rate.
        let timestamp = Time::from_units(self.frames, self.spec.fps as usize);
        encoder
            .encode(&frame.to_rgb8(), timestamp)
            .map_err(|source| VideoError::Ffmpeg {
                path: self.spec.path().to_owned(),
                operation: "encoding a frame",
                source,
            })?;
        self.frames += 1;
        Ok(())
    }

    fn frames_written(&self) -> usize {
        self.frames
    }

    fn finish(mut self: Box<Self>) -> Result<Summary, VideoError> {
        self.close()?;
        Ok(self.spec.summary(self.frames))
    }
}

impl Drop for Mp4Sink {
    fn drop(&mut self) {
        // Best effort: Drop cannot report errors; `finish` is the checked path.
        let _ = self.close();
    }
}

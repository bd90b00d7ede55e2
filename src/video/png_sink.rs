//! PNG directory sink: `frame_00000.png`, `frame_00001.png`, ... (8-bit RGB).

use std::path::{Path, PathBuf};

use image::{ExtendedColorType, ImageFormat};

use super::sink::{invalid, SinkSpec};
use super::{Frame, FrameSink, Summary, VideoError};

pub(super) struct PngDirSink {
    spec: SinkSpec,
    width: u32,
    height: u32,
    /// Whether this sink created the directory (then it removes it if no frame arrives).
    created_dir: bool,
    frames: usize,
}

/// File name of frame `index` inside a PNG directory.
pub(super) fn png_frame_name(index: usize) -> String {
    format!("frame_{index:05}.png")
}

impl PngDirSink {
    pub fn create(spec: SinkSpec) -> Result<Self, VideoError> {
        let (Ok(width), Ok(height)) = (
            u32::try_from(spec.size.width),
            u32::try_from(spec.size.height),
        ) else {
            return Err(invalid(
                spec.path(),
                "frame size for PNG",
                "at most 4294967295 pixels per side",
                &spec.size.to_string(),
            ));
        };
        let created_dir = !spec.path().is_dir();
        std::fs::create_dir_all(spec.path()).map_err(|source| VideoError::Io {
            path: spec.path().to_owned(),
            operation: "creating the PNG frame directory",
            source,
        })?;
        Ok(Self {
            spec,
            width,
            height,
            created_dir,
            frames: 0,
        })
    }

    /// Continues an interrupted job's directory after its first `keep` frames: later frames
    /// (written after the checkpoint) are removed, the next one written is `keep`.
    pub fn resume(spec: SinkSpec, keep: usize) -> Result<Self, VideoError> {
        let mut sink = Self::create(spec)?;
        let mut index = keep;
        while sink.frame_path(index).exists() {
            let path = sink.frame_path(index);
            std::fs::remove_file(&path).map_err(|source| VideoError::Io {
                path,
                operation: "removing a frame written after the checkpoint",
                source,
            })?;
            index += 1;
        }
        if !(0..keep).all(|i| sink.frame_path(i).exists()) {
            return Err(invalid(
                sink.spec.path(),
                "frames of the interrupted output",
                &format!(
                    "frame_00000.png to {}",
                    png_frame_name(keep.saturating_sub(1))
                ),
                "missing frames",
            ));
        }
        sink.frames = keep;
        sink.created_dir = false;
        Ok(sink)
    }

    fn frame_path(&self, index: usize) -> PathBuf {
        self.spec.path().join(png_frame_name(index))
    }

    /// Writes under a temporary name and renames, so an interrupted run never leaves a
    /// truncated `frame_*.png`.
    fn write_png_atomically(&self, path: &Path, frame: &Frame) -> Result<(), VideoError> {
        let tmp = path.with_extension("png.partial");
        image::save_buffer_with_format(
            &tmp,
            &frame.to_rgb8_bytes(),
            self.width,
            self.height,
            ExtendedColorType::Rgb8,
            ImageFormat::Png,
        )
        .map_err(|source| VideoError::Image {
            path: tmp.clone(),
            operation: "writing a PNG frame",
            source,
        })?;
        std::fs::rename(&tmp, path).map_err(|source| VideoError::Io {
            path: path.to_owned(),
            operation: "renaming the PNG frame into place",
            source,
        })
    }
}

impl FrameSink for PngDirSink {
    fn write(&mut self, frame: &Frame) -> Result<(), VideoError> {
        self.spec.check_frame(frame)?;
        self.write_png_atomically(&self.frame_path(self.frames), frame)?;
        self.frames += 1;
        Ok(())
    }

    fn frames_written(&self) -> usize {
        self.frames
    }

    fn finish(self: Box<Self>) -> Result<Summary, VideoError> {
        if self.frames == 0 && self.created_dir {
            // Only an empty directory is removed; best effort.
            let _ = std::fs::remove_dir(self.spec.path());
        }
        Ok(self.spec.summary(self.frames))
    }
}

//! Animated GIF sink: one NeuQuant palette per frame, infinite loop, frame delays that
//! average exactly `1/fps` (GIF delays are whole centiseconds, so 8 fps alternates 13 and 12).

use std::fs::File;
use std::io::{BufWriter, Write};

use super::sink::{invalid, SinkSpec};
use super::{Frame, FrameSink, Summary, VideoError};

/// NeuQuant sampling factor (1 = best, 30 = fastest); 10 keeps 1280x720 frames well under a
/// second each while the palette stays close to the best one.
const QUANTIZER_SPEED: i32 = 10;

type GifEncoder = gif::Encoder<BufWriter<File>>;

pub(super) struct GifSink {
    spec: SinkSpec,
    encoder: Option<GifEncoder>,
    width: u16,
    height: u16,
    frames: usize,
}

impl GifSink {
    pub fn create(spec: SinkSpec) -> Result<Self, VideoError> {
        let (width, height) = gif_dimensions(&spec)?;
        let file = File::create(spec.partial()).map_err(|source| VideoError::Io {
            path: spec.partial(),
            operation: "creating the GIF file",
            source,
        })?;
        let gif_error = |source| VideoError::Gif {
            path: spec.path().to_owned(),
            source,
        };
        let mut encoder =
            gif::Encoder::new(BufWriter::new(file), width, height, &[]).map_err(gif_error)?;
        encoder
            .set_repeat(gif::Repeat::Infinite)
            .map_err(gif_error)?;
        Ok(Self {
            spec,
            encoder: Some(encoder),
            width,
            height,
            frames: 0,
        })
    }

    /// Writes the trailer, flushes and renames the file into place (also when the trailer
    /// fails: the frames before it still decode); a sink with no frame removes its file.
    fn close(&mut self) -> Result<(), VideoError> {
        let Some(encoder) = self.encoder.take() else {
            return Ok(());
        };
        let finished = match self.frames {
            0 => {
                drop(encoder);
                Ok(())
            }
            _ => Self::write_trailer(encoder, self.spec.partial()),
        };
        self.spec.commit(self.frames)?;
        finished
    }

    fn write_trailer(encoder: GifEncoder, path: std::path::PathBuf) -> Result<(), VideoError> {
        let mut writer = encoder.into_inner().map_err(|source| VideoError::Gif {
            path: path.clone(),
            source,
        })?;
        writer.flush().map_err(|source| VideoError::Io {
            path,
            operation: "flushing the GIF file",
            source,
        })
    }
}

fn gif_dimensions(spec: &SinkSpec) -> Result<(u16, u16), VideoError> {
    let size = spec.size;
    match (u16::try_from(size.width), u16::try_from(size.height)) {
        (Ok(width), Ok(height)) => Ok((width, height)),
        _ => Err(invalid(
            spec.path(),
            "frame size for GIF",
            "at most 65535x65535",
            &size.to_string(),
        )),
    }
}

/// Delay of frame `index` in centiseconds: differences of the rounded cumulative times, so the
/// total duration after `n` frames is `n/fps` rounded to a centisecond.
fn delay_centiseconds(index: usize, fps: u32) -> u16 {
    let fps = u64::from(fps);
    let cumulative = |k: u64| (100 * k + fps / 2) / fps;
    let k = index as u64;
    u16::try_from(cumulative(k + 1) - cumulative(k)).unwrap_or(u16::MAX)
}

impl FrameSink for GifSink {
    fn write(&mut self, frame: &Frame) -> Result<(), VideoError> {
        self.spec.check_frame(frame)?;
        let Some(encoder) = self.encoder.as_mut() else {
            return Err(invalid(self.spec.path(), "sink state", "open", "finished"));
        };
        let rgb = frame.to_rgb8_bytes();
        let mut gif_frame =
            gif::Frame::from_rgb_speed(self.width, self.height, &rgb, QUANTIZER_SPEED);
        gif_frame.delay = delay_centiseconds(self.frames, self.spec.fps);
        encoder
            .write_frame(&gif_frame)
            .map_err(|source| VideoError::Gif {
                path: self.spec.path().to_owned(),
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

impl Drop for GifSink {
    fn drop(&mut self) {
        // Best effort: Drop cannot report errors; `finish` is the checked path.
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::delay_centiseconds;

    #[test]
    fn delays_average_to_the_frame_rate() {
        for fps in [1, 3, 7, 8, 24, 30] {
            let total: u64 = (0..fps as usize * 4)
                .map(|i| u64::from(delay_centiseconds(i, fps)))
                .sum();
            assert_eq!(total, 400, "fps {fps}: 4 seconds of frames");
        }
        assert_eq!(delay_centiseconds(0, 8), 13);
        assert_eq!(delay_centiseconds(1, 8), 12);
    }
}

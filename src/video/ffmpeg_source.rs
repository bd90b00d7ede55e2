//! Decoding FFmpeg containers (MP4, MOV, MKV, WebM, AVI) for `extend`, `enhance` and `eval`:
//! only in builds with the `ffmpeg` feature (the default).

use std::path::Path;

use super::mp4_sink::init_ffmpeg;
use super::{Frame, FrameSize, VideoError};

/// An opened FFmpeg decoder.
pub(super) struct FfmpegFrames(Box<video_rs::Decoder>);

/// The decoder, the frame size and the frame rate (when the container says).
pub(super) fn open(path: &Path) -> Result<(FfmpegFrames, FrameSize, Option<f64>), VideoError> {
    init_ffmpeg()?;
    let rotation = display_rotation(path)?;
    if rotation.abs() > 0.5 {
        return Err(VideoError::InputUnreadable {
            path: path.to_owned(),
            problem: format!(
                "has rotation metadata ({rotation:.0} degrees), which the decoder does not apply; \
                 re-encode it upright first (e.g. `ffmpeg -i in.mp4 upright.mp4` applies it)"
            ),
        });
    }
    let decoder = video_rs::Decoder::new(path).map_err(|source| VideoError::Ffmpeg {
        path: path.to_owned(),
        operation: "opening the video for decoding",
        source,
    })?;
    let (width, height) = decoder.size_out();
    let size = FrameSize::new(width as usize, height as usize);
    let rate = f64::from(decoder.frame_rate());
    let fps = (rate > 0.0).then_some(rate);
    Ok((FfmpegFrames(Box::new(decoder)), size, fps))
}

impl FfmpegFrames {
    /// The next frame; `None` at the end of the stream.
    pub(super) fn next(&mut self, path: &Path) -> Option<Result<Frame, VideoError>> {
        match self.0.decode() {
            Ok((_, rgb)) => Some(Frame::from_rgb8(rgb.view())),
            Err(video_rs::Error::DecodeExhausted | video_rs::Error::ReadExhausted) => None,
            Err(source) => Some(Err(VideoError::Ffmpeg {
                path: path.to_owned(),
                operation: "decoding a frame",
                source,
            })),
        }
    }
}

/// The rotation (degrees) a video stream's display matrix asks players to apply; 0 without one.
fn display_rotation(path: &Path) -> Result<f64, VideoError> {
    use video_rs::ffmpeg::codec::packet::side_data::Type;
    use video_rs::ffmpeg::{ffi, format, media};
    let input = format::input(&path).map_err(|source| VideoError::Ffmpeg {
        path: path.to_owned(),
        operation: "opening the video",
        source: video_rs::Error::BackendError(source),
    })?;
    let Some(stream) = input.streams().best(media::Type::Video) else {
        return Ok(0.0);
    };
    for side in stream.side_data() {
        let data = side.data();
        if side.kind() == Type::DisplayMatrix && data.len() >= 36 {
            let matrix: Vec<i32> = data[..36]
                .chunks_exact(4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            // SAFETY: `matrix` holds the 9 int32 values the function reads.
            let degrees = unsafe { ffi::av_display_rotation_get(matrix.as_ptr()) };
            return Ok(if degrees.is_nan() { 0.0 } else { degrees });
        }
    }
    Ok(0.0)
}

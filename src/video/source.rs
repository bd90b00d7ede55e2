//! Frame sources: read a user's video (FFmpeg containers, animated GIF, PNG directory).

use std::fs::File;
use std::io::BufReader;
use std::iter::Peekable;
use std::path::{Path, PathBuf};

use image::codecs::gif::GifDecoder;
use image::{AnimationDecoder, ImageDecoder};

use super::sink::invalid;
use super::{Frame, FrameSize, InputFormat, VideoError};

/// What is known about a source before its frames are decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub path: PathBuf,
    pub format: InputFormat,
    pub size: FrameSize,
    /// Frames per second, when the container says (`None` for PNG directories).
    pub fps: Option<f64>,
}

/// A whole video in memory.
#[derive(Debug, Clone)]
pub struct Video {
    pub info: VideoInfo,
    pub frames: Vec<Frame>,
}

/// Decodes a video frame by frame. Yields `Err` once and then ends if decoding fails.
pub struct FrameSource {
    info: VideoInfo,
    frames: Frames,
    failed: bool,
}

enum Frames {
    #[cfg(feature = "ffmpeg")]
    Ffmpeg(super::ffmpeg_source::FfmpegFrames),
    Gif(Box<Peekable<image::Frames<'static>>>),
    Png(std::vec::IntoIter<PathBuf>),
}

/// Opens `path`: a directory is read as PNG frames, files by extension.
pub fn open_source(path: &Path) -> Result<FrameSource, VideoError> {
    if !path.exists() {
        return Err(unreadable(path, "does not exist"));
    }
    let format = InputFormat::from_path(path)?;
    let (frames, size, fps) = match format {
        InputFormat::Ffmpeg => open_ffmpeg(path)?,
        InputFormat::Gif => open_gif(path)?,
        InputFormat::PngDir => open_png_dir(path)?,
    };
    let info = VideoInfo {
        path: path.to_owned(),
        format,
        size,
        fps,
    };
    Ok(FrameSource {
        info,
        frames,
        failed: false,
    })
}

/// Reads every frame of `path` into memory. A video without frames is an error.
pub fn read_video(path: &Path) -> Result<Video, VideoError> {
    open_source(path)?.read_all()
}

fn unreadable(path: &Path, problem: impl Into<String>) -> VideoError {
    VideoError::InputUnreadable {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

type Opened = (Frames, FrameSize, Option<f64>);

#[cfg(feature = "ffmpeg")]
fn open_ffmpeg(path: &Path) -> Result<Opened, VideoError> {
    let (frames, size, fps) = super::ffmpeg_source::open(path)?;
    Ok((Frames::Ffmpeg(frames), size, fps))
}

#[cfg(not(feature = "ffmpeg"))]
fn open_ffmpeg(path: &Path) -> Result<Opened, VideoError> {
    Err(VideoError::NoFfmpeg {
        path: path.to_owned(),
        what: "decoding this container",
    })
}

fn open_gif(path: &Path) -> Result<Opened, VideoError> {
    let image_error = |source| VideoError::Image {
        path: path.to_owned(),
        operation: "reading the GIF",
        source,
    };
    let file = File::open(path).map_err(|source| VideoError::Io {
        path: path.to_owned(),
        operation: "opening the GIF",
        source,
    })?;
    let mut decoder = GifDecoder::new(BufReader::new(file)).map_err(image_error)?;
    // A corrupt header can announce a gigapixel canvas; cap allocations at image's default.
    decoder
        .set_limits(image::Limits::default())
        .map_err(image_error)?;
    let (width, height) = decoder.dimensions();
    let size = FrameSize::new(width as usize, height as usize);
    let mut frames = decoder.into_frames().peekable();
    let fps = match frames.peek() {
        Some(Ok(first)) => fps_from_delay(first.delay()),
        _ => None,
    };
    Ok((Frames::Gif(Box::new(frames)), size, fps))
}

fn fps_from_delay(delay: image::Delay) -> Option<f64> {
    let (numer_ms, denom) = delay.numer_denom_ms();
    (numer_ms > 0).then(|| 1000.0 * f64::from(denom) / f64::from(numer_ms))
}

fn open_png_dir(path: &Path) -> Result<Opened, VideoError> {
    let files = png_files_sorted(path)?;
    let Some(first) = files.first() else {
        return Err(unreadable(path, "directory contains no .png frames"));
    };
    let (width, height) = image::image_dimensions(first).map_err(|source| VideoError::Image {
        path: first.clone(),
        operation: "reading the PNG header",
        source,
    })?;
    let size = FrameSize::new(width as usize, height as usize);
    Ok((Frames::Png(files.into_iter()), size, None))
}

/// The `.png` files of a directory in file-name order (`frame_00010` after `frame_00009`).
fn png_files_sorted(dir: &Path) -> Result<Vec<PathBuf>, VideoError> {
    let entries = std::fs::read_dir(dir).map_err(|source| VideoError::Io {
        path: dir.to_owned(),
        operation: "listing the PNG directory",
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| VideoError::Io {
            path: dir.to_owned(),
            operation: "listing the PNG directory",
            source,
        })?;
        let path = entry.path();
        let is_png = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        if is_png && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

impl FrameSource {
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Decodes the remaining frames into memory. A video without frames is an error.
    pub fn read_all(self) -> Result<Video, VideoError> {
        let info = self.info.clone();
        let frames = self.collect::<Result<Vec<_>, _>>()?;
        if frames.is_empty() {
            return Err(unreadable(&info.path, "contains no frames"));
        }
        Ok(Video { info, frames })
    }

    fn next_frame(&mut self) -> Option<Result<Frame, VideoError>> {
        let path = &self.info.path;
        match &mut self.frames {
            #[cfg(feature = "ffmpeg")]
            Frames::Ffmpeg(frames) => frames.next(path),
            Frames::Gif(frames) => frames.next().map(|frame| {
                let rgba = frame
                    .map_err(|source| VideoError::Image {
                        path: path.clone(),
                        operation: "decoding a GIF frame",
                        source,
                    })?
                    .into_buffer();
                let rgb = image::DynamicImage::ImageRgba8(rgba).into_rgb8();
                frame_from_rgb_image(&rgb, path)
            }),
            Frames::Png(files) => files.next().map(|file| read_png(&file)),
        }
    }

    /// Every frame must have the size announced by [`FrameSource::info`].
    fn check_size(&self, frame: Frame) -> Result<Frame, VideoError> {
        if frame.size() == self.info.size {
            return Ok(frame);
        }
        Err(invalid(
            &self.info.path,
            "frame size",
            &self.info.size.to_string(),
            &frame.size().to_string(),
        ))
    }
}

fn read_png(file: &Path) -> Result<Frame, VideoError> {
    let image = image::open(file).map_err(|source| VideoError::Image {
        path: file.to_owned(),
        operation: "reading a PNG frame",
        source,
    })?;
    let rgb = image.into_rgb8();
    frame_from_rgb_image(&rgb, file)
        .map_err(|_| invalid(file, "PNG frame", "a non-empty RGB image", "an empty image"))
}

fn frame_from_rgb_image(rgb: &image::RgbImage, path: &Path) -> Result<Frame, VideoError> {
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let view = ndarray::ArrayView3::from_shape((height, width, 3), rgb.as_raw()).map_err(|e| {
        invalid(
            path,
            "decoded frame buffer",
            "height*width*3 bytes",
            &e.to_string(),
        )
    })?;
    Frame::from_rgb8(view)
}

impl Iterator for FrameSource {
    type Item = Result<Frame, VideoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_frame()?.and_then(|frame| self.check_size(frame));
        self.failed = item.is_err();
        Some(item)
    }
}

//! The in-memory video frame shared by the pipeline, the plans and the sinks.
//!
//! A [`Frame`] is RGB, row-major `(height, width, 3)`, with `f32` samples nominally in `[0, 1]`.
//! Values are kept unclamped in memory (stage-2 frames stay float between chunks, as in the
//! reference); they are clamped only when quantized to 8 bits. Quantization TRUNCATES,
//! `u8(255 * clamp(x, 0, 1))`, like the reference's `IImage` and `tensor2vid`, so files written
//! here match the reference's byte values for the same float frames.

use ndarray::{s, Array3, ArrayView3, Axis};

use super::VideoError;

/// Width and height of a frame in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameSize {
    pub width: usize,
    pub height: usize,
}

impl FrameSize {
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height }
    }
}

impl std::fmt::Display for FrameSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// The value range of channel-first tensors exchanged with the graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleRange {
    /// `[0, 1]`, the frame convention.
    Unit,
    /// `[-1, 1]`, the VAE and image-encoder convention.
    Signed,
}

impl SampleRange {
    fn to_unit(self, x: f32) -> f32 {
        match self {
            SampleRange::Unit => x,
            SampleRange::Signed => x * 0.5 + 0.5,
        }
    }

    fn unit_to_range(self, x: f32) -> f32 {
        match self {
            SampleRange::Unit => x,
            SampleRange::Signed => x * 2.0 - 1.0,
        }
    }
}

/// One RGB frame, `(height, width, 3)`, `f32` in `[0, 1]` (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pixels: Array3<f32>,
}

impl Frame {
    /// Wraps an `(height, width, 3)` array of `[0, 1]` samples.
    pub fn new(pixels: Array3<f32>) -> Result<Self, VideoError> {
        let (height, width, channels) = pixels.dim();
        if channels != 3 || height == 0 || width == 0 {
            return Err(VideoError::FrameShape {
                what: "frame pixels (height, width, channels)".into(),
                expected: "(>0, >0, 3)".into(),
                actual: format!("({height}, {width}, {channels})"),
            });
        }
        Ok(Self { pixels })
    }

    /// A frame of one colour; handy for padding and tests.
    pub fn filled(size: FrameSize, rgb: [f32; 3]) -> Result<Self, VideoError> {
        let pixels = Array3::from_shape_fn((size.height, size.width, 3), |(_, _, c)| rgb[c]);
        Self::new(pixels)
    }

    /// Converts 8-bit RGB `(height, width, 3)` samples (as decoders produce them).
    pub fn from_rgb8(pixels: ArrayView3<'_, u8>) -> Result<Self, VideoError> {
        Self::new(pixels.mapv(|v| f32::from(v) / 255.0))
    }

    /// Converts one channel-first `(3, height, width)` image, e.g. one VAE-decoded frame.
    pub fn from_chw(chw: ArrayView3<'_, f32>, range: SampleRange) -> Result<Self, VideoError> {
        let hwc = chw.permuted_axes([1, 2, 0]);
        Self::new(hwc.mapv(|x| range.to_unit(x)))
    }

    /// The frame as a channel-first `(3, height, width)` array in `range`.
    pub fn to_chw(&self, range: SampleRange) -> Array3<f32> {
        let chw = self.pixels.view().permuted_axes([2, 0, 1]);
        chw.mapv(|x| range.unit_to_range(x))
    }

    pub fn size(&self) -> FrameSize {
        let (height, width, _) = self.pixels.dim();
        FrameSize { width, height }
    }

    pub fn width(&self) -> usize {
        self.size().width
    }

    pub fn height(&self) -> usize {
        self.size().height
    }

    /// The `(height, width, 3)` samples.
    pub fn pixels(&self) -> ArrayView3<'_, f32> {
        self.pixels.view()
    }

    pub fn into_pixels(self) -> Array3<f32> {
        self.pixels
    }

    /// 8-bit `(height, width, 3)` samples, quantized by truncation (see the module docs).
    pub fn to_rgb8(&self) -> Array3<u8> {
        self.pixels.mapv(quantize)
    }

    /// 8-bit samples as a packed row-major RGB byte vector.
    pub fn to_rgb8_bytes(&self) -> Vec<u8> {
        self.pixels.iter().copied().map(quantize).collect()
    }

    /// The sub-image `rows x cols` starting at (`top`, `left`); `None` if it does not fit.
    pub fn crop(&self, top: usize, left: usize, size: FrameSize) -> Option<Frame> {
        let fits = top + size.height <= self.height() && left + size.width <= self.width();
        if !fits || size.width == 0 || size.height == 0 {
            return None;
        }
        let view = self
            .pixels
            .slice(s![top..top + size.height, left..left + size.width, ..]);
        Some(Frame {
            pixels: view.to_owned(),
        })
    }

    /// Mean of every sample; used by tests and diagnostics.
    pub fn mean(&self) -> f32 {
        self.pixels.mean().unwrap_or(0.0)
    }

    /// Mean of each channel.
    pub fn channel_means(&self) -> [f32; 3] {
        let means = self
            .pixels
            .mean_axis(Axis(0))
            .and_then(|m| m.mean_axis(Axis(0)));
        match means {
            Some(m) => [m[0], m[1], m[2]],
            None => [0.0; 3],
        }
    }
}

/// `u8(255 * clamp(x, 0, 1))`; NaN maps to 0.
pub fn quantize(x: f32) -> u8 {
    (255.0 * x.clamp(0.0, 1.0)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_truncates_and_clamps() {
        assert_eq!(quantize(-0.5), 0);
        assert_eq!(quantize(1.5), 255);
        assert_eq!(quantize(1.0), 255);
        // 255 * 0.5 = 127.5 truncates to 127 (rounding would give 128).
        assert_eq!(quantize(0.5), 127);
        assert_eq!(quantize(f32::NAN), 0);
    }

    #[test]
    fn chw_round_trip_maps_signed_range() {
        let chw = Array3::from_shape_fn((3, 2, 4), |(c, y, x)| {
            c as f32 - 1.0 + 0.01 * (y * 4 + x) as f32
        });
        let frame = Frame::from_chw(chw.view(), SampleRange::Signed).unwrap();
        assert_eq!(frame.size(), FrameSize::new(4, 2));
        // At (0, 0) the channels are -1, 0, 1 in the signed range: 0, 0.5, 1 in the unit range.
        let rgb = frame.pixels().slice(s![0, 0, ..]).to_vec();
        assert_eq!(rgb, vec![0.0, 0.5, 1.0]);
        // Channel-first (c, y, x) becomes (y, x, c).
        assert!((frame.pixels()[[1, 2, 0]] - (0.5 * (-1.0 + 0.06) + 0.5)).abs() < 1e-6);
        let back = frame.to_chw(SampleRange::Signed);
        for (a, b) in back.iter().zip(chw.iter()) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn rejects_wrong_channel_count() {
        let err = Frame::new(Array3::zeros((2, 2, 4))).unwrap_err();
        assert!(err.to_string().contains("(2, 2, 4)"), "{err}");
    }

    #[test]
    fn rgb8_round_trip_is_exact() {
        let bytes = Array3::from_shape_fn((3, 5, 3), |(y, x, c)| (y * 50 + x * 7 + c * 3) as u8);
        let frame = Frame::from_rgb8(bytes.view()).unwrap();
        assert_eq!(frame.to_rgb8(), bytes);
    }

    #[test]
    fn crop_checks_bounds() {
        let frame = Frame::filled(FrameSize::new(6, 4), [0.2, 0.4, 0.6]).unwrap();
        let crop = frame.crop(1, 2, FrameSize::new(4, 3)).unwrap();
        assert_eq!(crop.size(), FrameSize::new(4, 3));
        assert!(frame.crop(1, 3, FrameSize::new(4, 3)).is_none());
    }
}

//! Stage-3 frame geometry of StreamingT2V (reference `t2v_enhanced/inference_utils.py`
//! `resize_to_fit` and `pad_to_fit`): stage-2 frames (256x256) are resized to the enhancer's
//! content size (720x720) with bicubic interpolation and padded with black bars to the
//! enhancer frame size (1280x720); the enhanced frames can be cropped back to the content.
//!
//! Frames are in the [`Frame`] convention, `[0, 1]`; the resize is PIL's bicubic
//! ([`resize_bicubic`]) and the bars are exact zeros (black). An odd size difference puts the
//! extra column (row) right (bottom), where the reference would make the frame a pixel short.

use ndarray::{s, Array3};

use super::{resize_bicubic, PlanError};
use crate::manifest::Stage3Config;
use crate::video::{Frame, FrameSize};

/// Content size and full frame size of the enhancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancerGeometry {
    /// Size stage-2 frames are resized to (720x720 in the reference).
    pub content: FrameSize,
    /// Enhancer frame size including the bars (1280x720).
    pub frame: FrameSize,
}

impl EnhancerGeometry {
    pub fn new(content: FrameSize, frame: FrameSize) -> Result<Self, PlanError> {
        let fits = content.width <= frame.width && content.height <= frame.height;
        if !fits || content.width == 0 || content.height == 0 {
            return Err(PlanError::new(
                "stage3.content_width/content_height",
                format!("non-zero and within the enhancer frame {frame}"),
                content,
            ));
        }
        Ok(Self { content, frame })
    }

    /// The geometry of a manifest's stage-3 section.
    pub fn from_stage3(config: &Stage3Config) -> Result<Self, PlanError> {
        Self::new(
            FrameSize::new(config.content_width, config.content_height),
            Self::frame_of(config),
        )
    }

    /// The enhancer's frame size (with the bars) of a manifest's stage-3 section.
    pub fn frame_of(config: &Stage3Config) -> FrameSize {
        FrameSize::new(config.width, config.height)
    }

    /// The largest size of `input`'s aspect ratio that fits in `frame` (the reference's
    /// `resize_to_fit`), with even sides so every output format can hold it.
    pub fn fit(input: FrameSize, frame: FrameSize) -> FrameSize {
        let scale = f64::min(
            frame.width as f64 / input.width.max(1) as f64,
            frame.height as f64 / input.height.max(1) as f64,
        );
        let even = |side: usize, limit: usize| {
            let scaled = ((side as f64 * scale).round() as usize).min(limit);
            (scaled - scaled % 2).max(2)
        };
        FrameSize::new(
            even(input.width, frame.width),
            even(input.height, frame.height),
        )
    }

    /// Width of the left bar (280 in the reference).
    pub fn pad_left(&self) -> usize {
        (self.frame.width - self.content.width) / 2
    }

    /// Height of the top bar (0 in the reference).
    pub fn pad_top(&self) -> usize {
        (self.frame.height - self.content.height) / 2
    }

    /// Resizes `frame` to the content size and centres it on a black frame.
    pub fn resize_and_pad(&self, frame: &Frame) -> Result<Frame, PlanError> {
        let content = resize_bicubic(frame, self.content)?;
        let mut padded = Array3::<f32>::zeros((self.frame.height, self.frame.width, 3));
        let (top, left) = (self.pad_top(), self.pad_left());
        padded
            .slice_mut(s![
                top..top + self.content.height,
                left..left + self.content.width,
                ..
            ])
            .assign(&content.pixels());
        to_frame(padded)
    }

    /// The content region of an enhancer-sized frame (drops the bars).
    pub fn crop_content(&self, frame: &Frame) -> Result<Frame, PlanError> {
        if frame.size() != self.frame {
            return Err(PlanError::new(
                "enhanced frame size",
                self.frame.to_string(),
                frame.size(),
            ));
        }
        frame
            .crop(self.pad_top(), self.pad_left(), self.content)
            .ok_or_else(|| {
                PlanError::new(
                    "content region",
                    format!("inside {}", self.frame),
                    self.content,
                )
            })
    }
}

fn to_frame(pixels: Array3<f32>) -> Result<Frame, PlanError> {
    let shape = format!("{:?}", pixels.shape());
    Frame::new(pixels).map_err(|_| PlanError::new("frame shape", "(>0, >0, 3)", shape))
}

#[cfg(test)]
mod fit_tests {
    use super::*;

    #[test]
    fn fit_keeps_the_aspect_ratio_with_even_sides() {
        let frame = FrameSize::new(1280, 720);
        assert_eq!(
            EnhancerGeometry::fit(FrameSize::new(256, 256), frame),
            FrameSize::new(720, 720),
            "the reference's square case"
        );
        assert_eq!(
            EnhancerGeometry::fit(FrameSize::new(640, 480), frame),
            FrameSize::new(960, 720)
        );
        assert_eq!(
            EnhancerGeometry::fit(FrameSize::new(1920, 800), frame),
            FrameSize::new(1280, 532)
        );
        assert_eq!(
            EnhancerGeometry::fit(FrameSize::new(64, 48), FrameSize::new(128, 80)),
            FrameSize::new(106, 80)
        );
    }
}

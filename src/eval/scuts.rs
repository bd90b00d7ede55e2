//! SCuts: scene cuts found by a port of PySceneDetect's `AdaptiveDetector` (PySceneDetect
//! 0.7.2, B. Castellano, <https://scenedetect.com>), the scene-consistency metric of the
//! StreamingT2V paper (Henschel et al., "StreamingT2V: Consistent, Dynamic, and Extendable Long
//! Video Generation from Text"): the number of cuts `AdaptiveDetector()` finds with its default
//! parameters on frames fed by a default `SceneManager`.
//!
//! What is reproduced (behaviour, not code), checked against scenedetect + cv2 5.0.0 by
//! `tests/eval_scuts.rs` on the videos of `tests/golden/eval/gen_scuts.py`:
//!
//! * Downscaling: `SceneManager`'s automatic factor is `max(width, height) / 256` (a float, the
//!   *larger* side counts, not just the width) when that side is at least 256 px, else none; the
//!   frame is resized only if the factor exceeds 1, to `max(1, round(side / factor))` per side
//!   with Python's round-half-to-even, by `cv2.INTER_LINEAR` (see `super::opencv_compat`).
//! * Frame score (`content_val`): mean absolute difference to the previous frame of the H, S
//!   and V planes of OpenCV's 8-bit HSV, weighted and divided by the sum of |weights|, summed
//!   in the same order as Python so that the f64 results are identical. The first frame has no
//!   predecessor; scenedetect gives it the score 0.0 (which does enter the rolling window below)
//!   but stores no `content_val` for it in its stats. `content_values[0]` is that 0.0.
//! * Adaptive ratio: once `2 * window_width + 1` scores are buffered, the middle frame's score
//!   over the mean of the others (capped at 255; 255 if that mean is below 1e-5 and the score
//!   reaches `min_content_val`, else 0). A cut is reported *at the middle frame* (the first
//!   frame of the new scene) when the ratio reaches `adaptive_threshold`, the score reaches
//!   `min_content_val`, and at least `min_scene_len` frames passed since the last cut, where the
//!   "last cut" starts out as frame 0. So a change within the first `min_scene_len` frames is
//!   never a cut, and a suppressed candidate does not restart the count.
//! * End of stream: scenedetect does not flush the window, so the first `window_width` and last
//!   `window_width` frames never get a ratio and can never be cuts; `finish` does the same.
//!
//! Not ported: the edge component (Canny + dilation). Its default weight is 0, in which case it
//! cannot change `content_val`; a non-zero edge weight is rejected with
//! [`ScutsError::EdgesNotSupported`]. Input frames are RGB (scenedetect sees BGR from OpenCV;
//! the port swaps the roles of the channels instead of the bytes).

use std::collections::VecDeque;
use std::fmt;

use super::opencv_compat::{HsvConverter, LinearResizer};

/// `SceneManager`'s target width for its automatic downscale factor.
pub const AUTO_DOWNSCALE_MIN_WIDTH: usize = 256;

/// Weights of ContentDetector's score components; Default = PySceneDetect's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContentWeights {
    pub delta_hue: f64,
    pub delta_sat: f64,
    pub delta_lum: f64,
    pub delta_edges: f64,
}

impl ContentWeights {
    /// The weights `luma_only` selects.
    pub const LUMA_ONLY: ContentWeights = ContentWeights {
        delta_hue: 0.0,
        delta_sat: 0.0,
        delta_lum: 1.0,
        delta_edges: 0.0,
    };
}

impl Default for ContentWeights {
    fn default() -> Self {
        Self {
            delta_hue: 1.0,
            delta_sat: 1.0,
            delta_lum: 1.0,
            delta_edges: 0.0,
        }
    }
}

/// AdaptiveDetector's parameters; Default = PySceneDetect's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveParams {
    pub adaptive_threshold: f64,
    /// In frames.
    pub min_scene_len: usize,
    /// Frames on each side of the frame under test.
    pub window_width: usize,
    pub min_content_val: f64,
    pub weights: ContentWeights,
    /// Overrides `weights` with [`ContentWeights::LUMA_ONLY`].
    pub luma_only: bool,
}

impl Default for AdaptiveParams {
    fn default() -> Self {
        Self {
            adaptive_threshold: 3.0,
            min_scene_len: 15,
            window_width: 2,
            min_content_val: 15.0,
            weights: ContentWeights::default(),
            luma_only: false,
        }
    }
}

/// Why a detector could not be built or fed.
#[derive(Debug, Clone, PartialEq)]
pub enum ScutsError {
    /// Width or height is zero (or the frame size overflows `usize`).
    BadFrameSize { width: usize, height: usize },
    /// A downscale factor of 0 was given (1 means none).
    ZeroDownscale,
    /// `window_width` must be at least 1.
    ZeroWindowWidth,
    /// The edge component (Canny) is not ported; its weight must be 0.
    EdgesNotSupported { weight: f64 },
    /// The weights sum to zero or are not finite (scenedetect would divide by zero).
    BadWeights { sum_abs: f64 },
    /// A frame of the wrong byte length.
    FrameLength {
        frame: usize,
        expected: usize,
        actual: usize,
    },
}

impl fmt::Display for ScutsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadFrameSize { width, height } => write!(
                f,
                "frame size must be non-zero (and fit in memory), got {width}x{height}"
            ),
            Self::ZeroDownscale => write!(f, "downscale factor must be at least 1, got 0"),
            Self::ZeroWindowWidth => write!(f, "window_width must be at least 1, got 0"),
            Self::EdgesNotSupported { weight } => write!(
                f,
                "edges not supported: delta_edges weight must be 0, got {weight}"
            ),
            Self::BadWeights { sum_abs } => write!(
                f,
                "content weights must have a finite non-zero sum of |weights|, got {sum_abs}"
            ),
            Self::FrameLength {
                frame,
                expected,
                actual,
            } => write!(
                f,
                "frame {frame}: expected {expected} bytes of RGB8 (width*height*3), got {actual}"
            ),
        }
    }
}

impl std::error::Error for ScutsError {}

/// The detector's result.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneCuts {
    /// Frame indices (0-based) where a new scene starts, as scenedetect reports cut frames.
    pub cuts: Vec<usize>,
    /// content_val per frame. Frame 0 has no predecessor: its entry is the 0.0 scenedetect puts
    /// in the adaptive window (scenedetect's stats hold no content_val for it).
    pub content_values: Vec<f64>,
    /// adaptive_ratio per frame where defined: `None` for the first and last `window_width`
    /// frames (and for all frames of a video shorter than `2 * window_width + 1`).
    pub adaptive_ratios: Vec<Option<f64>>,
    /// Frames pushed.
    pub frames: usize,
}

impl SceneCuts {
    /// The SCuts value: number of cuts.
    pub fn count(&self) -> usize {
        self.cuts.len()
    }
}

/// H, S and V planes of one (downscaled) frame.
#[derive(Debug, Clone, Default)]
struct HsvPlanes {
    hue: Vec<u8>,
    sat: Vec<u8>,
    val: Vec<u8>,
}

impl HsvPlanes {
    fn with_len(n: usize) -> Self {
        Self {
            hue: vec![0; n],
            sat: vec![0; n],
            val: vec![0; n],
        }
    }
}

/// Mean absolute difference of two equally sized planes (sum as an integer, then one division).
fn mean_pixel_distance(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.len() as f64
}

/// Scene cuts of a frame sequence fed one frame at a time.
#[derive(Debug, Clone)]
pub struct SceneCutDetector {
    params: AdaptiveParams,
    weights: ContentWeights,
    weight_sum: f64,
    frame_len: usize,
    factor: f64,
    resizer: Option<LinearResizer>,
    processed: (usize, usize),
    hsv: HsvConverter,
    small: Vec<u8>,
    current: HsvPlanes,
    previous: Option<HsvPlanes>,
    /// (frame index, score) of the last `2 * window_width + 1` frames.
    window: VecDeque<(usize, f64)>,
    last_cut: Option<usize>,
    out: SceneCuts,
}

impl SceneCutDetector {
    /// `downscale`: None = SceneManager's automatic factor for this width; Some(1) = none.
    pub fn new(
        params: AdaptiveParams,
        width: usize,
        height: usize,
        downscale: Option<usize>,
    ) -> Result<Self, ScutsError> {
        let frame_len = width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(3))
            .filter(|&n| n > 0)
            .ok_or(ScutsError::BadFrameSize { width, height })?;
        if params.window_width == 0 {
            return Err(ScutsError::ZeroWindowWidth);
        }
        let weights = if params.luma_only {
            ContentWeights::LUMA_ONLY
        } else {
            params.weights
        };
        if weights.delta_edges != 0.0 {
            return Err(ScutsError::EdgesNotSupported {
                weight: weights.delta_edges,
            });
        }
        let weight_sum = weights.delta_hue.abs()
            + weights.delta_sat.abs()
            + weights.delta_lum.abs()
            + weights.delta_edges.abs();
        if weight_sum == 0.0 || !weight_sum.is_finite() {
            return Err(ScutsError::BadWeights {
                sum_abs: weight_sum,
            });
        }
        let factor = match downscale {
            Some(0) => return Err(ScutsError::ZeroDownscale),
            Some(k) => k as f64,
            None => auto_downscale_factor(width, height),
        };
        let processed = processed_size(width, height, factor);
        let resizer = (processed != (width, height))
            .then(|| LinearResizer::new(3, (width, height), processed));
        let pixels = processed.0 * processed.1;
        Ok(Self {
            params,
            weights,
            weight_sum,
            frame_len,
            factor,
            resizer,
            processed,
            hsv: HsvConverter::new(),
            small: Vec::new(),
            current: HsvPlanes::with_len(pixels),
            previous: None,
            window: VecDeque::new(),
            last_cut: None,
            out: SceneCuts {
                cuts: Vec::new(),
                content_values: Vec::new(),
                adaptive_ratios: Vec::new(),
                frames: 0,
            },
        })
    }

    /// The downscale factor in use (1.0 = none), as SceneManager computes it.
    pub fn downscale_factor(&self) -> f64 {
        self.factor
    }

    /// `(width, height)` of the frames the detector actually compares.
    pub fn processed_size(&self) -> (usize, usize) {
        self.processed
    }

    /// One RGB8 frame, interleaved, row-major, width*height*3 bytes (note: RGB, not OpenCV's BGR).
    pub fn push(&mut self, rgb: &[u8]) -> Result<(), ScutsError> {
        let index = self.out.frames;
        if rgb.len() != self.frame_len {
            return Err(ScutsError::FrameLength {
                frame: index,
                expected: self.frame_len,
                actual: rgb.len(),
            });
        }
        let frame: &[u8] = match &self.resizer {
            Some(resizer) => {
                // Lengths were checked above, so the resize cannot fail.
                resizer.resize(rgb, &mut self.small);
                &self.small
            }
            None => rgb,
        };
        let cur = &mut self.current;
        self.hsv
            .convert_rgb(frame, &mut cur.hue, &mut cur.sat, &mut cur.val);
        let score = match &self.previous {
            None => 0.0,
            Some(prev) => {
                let w = &self.weights;
                let hue = mean_pixel_distance(&cur.hue, &prev.hue);
                let sat = mean_pixel_distance(&cur.sat, &prev.sat);
                let lum = mean_pixel_distance(&cur.val, &prev.val);
                // Same summation order as scenedetect; the edge term is 0 * weight 0.
                (hue * w.delta_hue + sat * w.delta_sat + lum * w.delta_lum + 0.0 * w.delta_edges)
                    / self.weight_sum
            }
        };
        // Keep this frame's planes as the next predecessor; reuse the old buffers.
        let pixels = cur.hue.len();
        let recycled = self
            .previous
            .take()
            .unwrap_or_else(|| HsvPlanes::with_len(pixels));
        self.previous = Some(std::mem::replace(&mut self.current, recycled));
        self.out.frames += 1;
        self.out.content_values.push(score);
        self.out.adaptive_ratios.push(None);
        self.adaptive_step(index, score);
        Ok(())
    }

    /// The rolling-window part of AdaptiveDetector for the frame just scored.
    fn adaptive_step(&mut self, index: usize, score: f64) {
        let ww = self.params.window_width;
        let last_cut = *self.last_cut.get_or_insert(index);
        self.window.push_back((index, score));
        if self.window.len() > 2 * ww + 1 {
            self.window.pop_front();
        }
        if self.window.len() < 2 * ww + 1 {
            return;
        }
        let (target, target_score) = self.window[ww];
        let others: f64 = self
            .window
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != ww)
            .fold(0.0, |acc, (_, &(_, s))| acc + s);
        let average = others / (2.0 * ww as f64);
        let ratio = if average.abs() >= 0.00001 {
            (target_score / average).min(255.0)
        } else if target_score >= self.params.min_content_val {
            255.0
        } else {
            0.0
        };
        if let Some(slot) = self.out.adaptive_ratios.get_mut(target) {
            *slot = Some(ratio);
        }
        let threshold_met =
            ratio >= self.params.adaptive_threshold && target_score >= self.params.min_content_val;
        let length_met = target.saturating_sub(last_cut) >= self.params.min_scene_len;
        if threshold_met && length_met {
            self.last_cut = Some(target);
            self.out.cuts.push(target);
        }
    }

    /// Ends the stream. Like scenedetect, nothing is flushed: the last `window_width` frames are
    /// never tested for a cut.
    pub fn finish(self) -> SceneCuts {
        self.out
    }
}

/// SceneManager's automatic downscale factor: the larger side over 256 when it is at least 256.
pub fn auto_downscale_factor(width: usize, height: usize) -> f64 {
    let side = width.max(height);
    if side < AUTO_DOWNSCALE_MIN_WIDTH {
        1.0
    } else {
        side as f64 / AUTO_DOWNSCALE_MIN_WIDTH as f64
    }
}

/// The size frames are resized to for `factor` (unchanged unless `factor > 1`), rounding each
/// side half-to-even like Python's `round`.
pub fn processed_size(width: usize, height: usize, factor: f64) -> (usize, usize) {
    if factor > 1.0 {
        let side = |n: usize| ((n as f64 / factor).round_ties_even() as usize).max(1);
        (side(width), side(height))
    } else {
        (width, height)
    }
}

/// SCuts of a whole clip (all frames RGB8, `width*height*3` bytes each) with default parameters
/// and automatic downscaling.
pub fn scene_cuts<'a>(
    width: usize,
    height: usize,
    frames: impl IntoIterator<Item = &'a [u8]>,
) -> Result<SceneCuts, ScutsError> {
    let mut detector = SceneCutDetector::new(AdaptiveParams::default(), width, height, None)?;
    for frame in frames {
        detector.push(frame)?;
    }
    Ok(detector.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic textured RGB frame whose colours depend on `seed`.
    fn frame(width: usize, height: usize, seed: usize) -> Vec<u8> {
        (0..width * height * 3)
            .map(|i| ((i * 7 + seed * 101 + (i / (width * 3)) * 13) % 251) as u8)
            .collect()
    }

    #[test]
    fn static_video_has_no_cuts() {
        let f = frame(64, 48, 1);
        let cuts = scene_cuts(64, 48, (0..40).map(|_| f.as_slice())).expect("valid input");
        assert_eq!(cuts.count(), 0);
        assert_eq!(cuts.frames, 40);
        assert!(cuts.content_values.iter().all(|&v| v == 0.0));
        assert_eq!(cuts.adaptive_ratios[0], None);
        assert_eq!(cuts.adaptive_ratios[2], Some(0.0));
        assert_eq!(cuts.adaptive_ratios[38], None);
    }

    #[test]
    fn hard_cut_is_found_at_the_new_scenes_first_frame() {
        let (a, b) = (frame(32, 24, 1), frame(32, 24, 2));
        let frames: Vec<&[u8]> = (0..50)
            .map(|i| if i < 30 { &a[..] } else { &b[..] })
            .collect();
        let cuts = scene_cuts(32, 24, frames).expect("valid input");
        assert!(cuts.content_values[30] > 15.0);
        assert_eq!(cuts.adaptive_ratios[30], Some(255.0));
        assert_eq!(cuts.cuts, vec![30]);
    }

    #[test]
    fn downscale_factor_follows_scene_manager() {
        assert_eq!(auto_downscale_factor(160, 96), 1.0);
        assert_eq!(auto_downscale_factor(640, 360), 2.5);
        assert_eq!(processed_size(640, 360, 2.5), (256, 144));
        // 289 / 2 = 144.5 rounds half to even.
        assert_eq!(processed_size(512, 289, 2.0), (256, 144));
        // The larger side picks the factor.
        assert_eq!(
            processed_size(200, 300, auto_downscale_factor(200, 300)),
            (171, 256)
        );
        assert_eq!(processed_size(1, 1, 2.0), (1, 1));
    }

    #[test]
    fn bad_inputs_are_errors_naming_the_values() {
        let p = AdaptiveParams::default;
        let e = SceneCutDetector::new(p(), 0, 10, None).map_err(|e| e.to_string());
        assert_eq!(
            e.err().as_deref(),
            Some("frame size must be non-zero (and fit in memory), got 0x10")
        );
        assert!(SceneCutDetector::new(p(), 4, 4, Some(0)).is_err());
        let edges = AdaptiveParams {
            weights: ContentWeights {
                delta_edges: 1.0,
                ..ContentWeights::default()
            },
            ..p()
        };
        let e = SceneCutDetector::new(edges, 4, 4, None).err();
        assert!(e.is_some_and(|e| e.to_string().contains("edges not supported")));
        let mut d = SceneCutDetector::new(p(), 4, 4, None).expect("valid");
        let e = d.push(&[0; 47]).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("frame 0: expected 48 bytes of RGB8 (width*height*3), got 47")
        );
    }
}

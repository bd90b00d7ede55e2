//! One pass over a video computes every requested metric: frames are decoded one at a time and
//! each metric keeps only what it needs (the previous frame, per-frame embeddings, histograms,
//! per-pair figures), so memory does not grow with resolution x length.

use std::path::Path;
use std::time::Instant;

use super::chunks::ChunkGeometry;
use super::clip::{clip_score, ClipModels};
use super::drift::{drift, ColourHistogram};
use super::flow::{farneback, rgb_to_gray, FarnebackParams, Flow};
use super::mawe::{forward_warp, mawe, resize_bilinear_u8, warp_error, PairScore};
use super::raft::RaftFlow;
use super::report::{ClipReport, MaweReport, ScutsReport, VideoReport};
use super::scuts::{AdaptiveParams, SceneCutDetector};
use super::seams::{frame_difference, seams};
use super::{EvalError, Metric};
use crate::progress::CancelToken;
use crate::video::{open_source, Frame, FrameSize};

/// Frames the CLIP image encoder gets per call while streaming.
const CLIP_BUFFER: usize = 8;

/// What to measure and how.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    pub metrics: Vec<Metric>,
    /// The prompt the CLIP score compares frames with.
    pub prompt: Option<String>,
    /// Chunk geometry of the generation (seams and drift).
    pub geometry: ChunkGeometry,
    /// The frame drift compares every chunk with (the reference's APM anchor: frame 0).
    pub anchor_frame: usize,
    /// The optical flow of mawe and seams.
    pub flow: FlowMethod,
    /// Side of the square frames Farneback flow runs on (the reference's MAWE: 720); RAFT
    /// runs at its graph's size.
    pub motion_size: Option<usize>,
}

/// Which optical flow measures motion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowMethod {
    /// OpenCV-compatible Farneback: no weights, works on any machine.
    Farneback,
    /// The model set's `raft` graph, as the reference's mawe.py.
    Raft,
}

impl FlowMethod {
    pub fn name(self) -> &'static str {
        match self {
            FlowMethod::Farneback => "farneback",
            FlowMethod::Raft => "raft",
        }
    }
}

/// The graphs an evaluation runs, loaded once.
#[derive(Default)]
pub struct EvalModels {
    pub clip: Option<ClipModels>,
    pub raft: Option<RaftFlow>,
}

impl EvalOptions {
    pub fn new(metrics: Vec<Metric>) -> Self {
        EvalOptions {
            metrics,
            prompt: None,
            geometry: ChunkGeometry::default(),
            anchor_frame: 0,
            flow: FlowMethod::Farneback,
            motion_size: None,
        }
    }

    pub fn wants(&self, metric: Metric) -> bool {
        self.metrics.contains(&metric)
    }

    pub fn needs_clip(&self) -> bool {
        self.metrics.iter().any(|m| m.needs_clip())
    }

    pub fn needs_raft(&self) -> bool {
        self.flow == FlowMethod::Raft && self.metrics.iter().any(|m| m.needs_flow())
    }

    /// Checks what can be checked before any video is read or model loaded.
    pub fn validate(&self) -> Result<(), EvalError> {
        if self.wants(Metric::Clip) && self.prompt.as_deref().is_none_or(|p| p.trim().is_empty()) {
            return Err(EvalError::invalid(
                "--prompt",
                "the prompt the video was made from (the CLIP score compares frames with it)",
                "none",
            ));
        }
        match (self.flow, self.motion_size) {
            (FlowMethod::Raft, Some(size)) => Err(EvalError::invalid(
                "--motion-size",
                "no size with --flow raft (RAFT runs at its graph's size)",
                size,
            )),
            (_, Some(size)) if !(16..=4096).contains(&size) => Err(EvalError::invalid(
                "--motion-size",
                "between 16 and 4096 pixels",
                size,
            )),
            _ => Ok(()),
        }
    }
}

/// Progress of an evaluation: frames decoded and measured.
pub trait EvalProgress {
    fn frame(&self, _frames_done: usize) {}
}

/// No progress display.
pub struct NoEvalProgress;

impl EvalProgress for NoEvalProgress {}

/// Evaluates videos with one set of options (and the graphs loaded once).
pub struct Evaluator {
    options: EvalOptions,
    clip: Option<ClipModels>,
    raft: Option<RaftFlow>,
    text: Option<Vec<f32>>,
}

impl Evaluator {
    /// `models`: the CLIP graphs (clip and drift) and RAFT (`--flow raft`) the options need.
    pub fn new(options: EvalOptions, models: EvalModels) -> Result<Self, EvalError> {
        options.validate()?;
        let EvalModels { mut clip, raft } = models;
        if (options.needs_clip() && clip.is_none()) || (options.needs_raft() && raft.is_none()) {
            return Err(EvalError::invalid(
                "--models",
                "a model set with the graphs the metrics run (clip and drift: CLIP; --flow \
                 raft: RAFT)",
                "none loaded",
            ));
        }
        let text = match (&mut clip, &options.prompt) {
            (Some(models), Some(prompt)) if options.wants(Metric::Clip) => {
                Some(models.text_embedding(prompt)?)
            }
            _ => None,
        };
        Ok(Evaluator {
            options,
            clip,
            raft,
            text,
        })
    }

    pub fn options(&self) -> &EvalOptions {
        &self.options
    }

    /// Decodes `path` once and computes every metric of the options.
    pub fn evaluate(
        &mut self,
        path: &Path,
        progress: &dyn EvalProgress,
        cancel: &CancelToken,
    ) -> Result<VideoReport, EvalError> {
        let started = Instant::now();
        let mut source = open_source(path)?;
        let info = source.info().clone();
        let motion_size = match &self.raft {
            Some(raft) => raft.size(),
            None => self.options.motion_size.unwrap_or(super::mawe::MAWE_SIZE),
        };
        let mut pass = Pass::new(&self.options, info.size, motion_size)?;
        for (index, frame) in source.by_ref().enumerate() {
            if cancel.is_cancelled() {
                return Err(EvalError::Cancelled);
            }
            // The source checks every frame against the first one's size.
            let frame = frame?;
            pass.push(frame, self.clip.as_mut(), self.raft.as_mut())?;
            progress.frame(index + 1);
        }
        pass.flush_clip(self.clip.as_mut())?;
        let mut report = pass.finish(path, &self.options, self.text.as_deref())?;
        report.fps = info.fps;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
}

/// The per-video state of one pass.
struct Pass {
    size: FrameSize,
    frames: usize,
    previous: Option<Vec<u8>>,
    differences: Vec<f64>,
    scuts: Option<SceneCutDetector>,
    motion: Option<Motion>,
    histograms: Option<Vec<ColourHistogram>>,
    clip_buffer: Option<Vec<Frame>>,
    embeddings: Vec<Vec<f32>>,
}

impl Pass {
    fn new(options: &EvalOptions, size: FrameSize, motion_size: usize) -> Result<Self, EvalError> {
        let scuts = match options.wants(Metric::Scuts) {
            true => Some(
                SceneCutDetector::new(AdaptiveParams::default(), size.width, size.height, None)
                    .map_err(|e| EvalError::SceneCuts(e.to_string()))?,
            ),
            false => None,
        };
        let flow = options.metrics.iter().any(|m| m.needs_flow());
        Ok(Pass {
            size,
            frames: 0,
            previous: None,
            differences: Vec::new(),
            scuts,
            motion: flow.then(|| Motion::new(motion_size)),
            histograms: options.wants(Metric::Drift).then(Vec::new),
            clip_buffer: options.needs_clip().then(Vec::new),
            embeddings: Vec::new(),
        })
    }

    fn push(
        &mut self,
        frame: Frame,
        clip: Option<&mut ClipModels>,
        raft: Option<&mut RaftFlow>,
    ) -> Result<(), EvalError> {
        let rgb = frame.to_rgb8_bytes();
        if let Some(previous) = &self.previous {
            self.differences.push(frame_difference(previous, &rgb));
        }
        if let Some(detector) = &mut self.scuts {
            detector
                .push(&rgb)
                .map_err(|e| EvalError::SceneCuts(e.to_string()))?;
        }
        if let Some(motion) = &mut self.motion {
            motion.push(&rgb, self.size, raft)?;
        }
        if let Some(histograms) = &mut self.histograms {
            histograms.push(ColourHistogram::of_rgb8(&rgb));
        }
        self.previous = Some(rgb);
        self.frames += 1;
        if let Some(buffer) = &mut self.clip_buffer {
            buffer.push(frame);
            if buffer.len() >= CLIP_BUFFER {
                self.flush_clip(clip)?;
            }
        }
        Ok(())
    }

    fn flush_clip(&mut self, clip: Option<&mut ClipModels>) -> Result<(), EvalError> {
        let (Some(buffer), Some(models)) = (&mut self.clip_buffer, clip) else {
            return Ok(());
        };
        if !buffer.is_empty() {
            self.embeddings.extend(models.image_embeddings(buffer)?);
            buffer.clear();
        }
        Ok(())
    }

    fn finish(
        self,
        path: &Path,
        options: &EvalOptions,
        text: Option<&[f32]>,
    ) -> Result<VideoReport, EvalError> {
        let frames = self.frames;
        let too_short = |metric: Metric, needed: String| EvalError::TooShort {
            path: path.to_owned(),
            metric,
            frames,
            needed,
        };
        let mut report = VideoReport::new(path, frames, self.size);
        if let Some(text) = text {
            let (score, per_frame) = clip_score(text, &self.embeddings)
                .ok_or_else(|| too_short(Metric::Clip, "at least 1 frame".into()))?;
            report.clip = Some(ClipReport { score, per_frame });
        }
        if let Some(detector) = self.scuts {
            report.scuts = Some(ScutsReport::from(detector.finish()));
        }
        let motion_size = self.motion.as_ref().map_or(0, |m| m.size);
        let pairs = self.motion.map(|m| m.pairs);
        if options.wants(Metric::Mawe) {
            let pairs = pairs.as_deref().unwrap_or_default();
            if pairs.is_empty() {
                return Err(too_short(Metric::Mawe, "at least 2 frames".into()));
            }
            report.mawe = Some(MaweReport::new(
                mawe(pairs),
                options.flow,
                motion_size,
                pairs,
            ));
        }
        if options.wants(Metric::Seams) {
            let warp: Option<Vec<Option<f64>>> =
                pairs.map(|p| p.iter().map(|s| s.warp_error).collect());
            let geometry = options.geometry;
            let needed = || format!("more than {} frames (one chunk boundary)", geometry.chunk);
            report.seams = Some(
                seams(geometry, &self.differences, warp.as_deref())
                    .ok_or_else(|| too_short(Metric::Seams, needed()))?,
            );
        }
        if let Some(histograms) = self.histograms {
            if options.anchor_frame >= frames {
                let needed = format!("the anchor frame {} (--anchor-frame)", options.anchor_frame);
                return Err(too_short(Metric::Drift, needed));
            }
            let embeddings = (!self.embeddings.is_empty()).then_some(self.embeddings.as_slice());
            report.drift = Some(drift(
                options.geometry,
                options.anchor_frame,
                embeddings,
                &histograms,
            ));
        }
        Ok(report)
    }
}

/// Optical flow and warp error between consecutive frames at a square size.
struct Motion {
    size: usize,
    params: FarnebackParams,
    previous: Option<(Vec<u8>, Vec<u8>)>,
    pairs: Vec<PairScore>,
}

impl Motion {
    fn new(size: usize) -> Self {
        Motion {
            size,
            params: FarnebackParams::default(),
            previous: None,
            pairs: Vec::new(),
        }
    }

    /// `raft`: use it for the flow (at its size, which is `self.size`), else Farneback.
    fn push(
        &mut self,
        rgb: &[u8],
        frame: FrameSize,
        raft: Option<&mut RaftFlow>,
    ) -> Result<(), EvalError> {
        let side = self.size;
        let resized = resize_bilinear_u8(rgb, frame.width, frame.height, side, side);
        // Farneback runs on grey frames; RAFT on the colour ones.
        let gray = match raft {
            Some(_) => Vec::new(),
            None => rgb_to_gray(&resized),
        };
        if let Some((left, left_gray)) = &self.previous {
            let flow: Flow = match raft {
                Some(raft) => raft.flow(left, &resized)?,
                None => farneback(left_gray, &gray, side, side, &self.params),
            };
            let (warped, known) = forward_warp(left, &flow);
            let error = warp_error(&resized, &warped, &known);
            self.pairs
                .push(PairScore::new(error, flow.mean_magnitude()));
        }
        self.previous = Some((resized, gray));
        Ok(())
    }
}

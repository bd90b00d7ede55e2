//! What a job checkpoint holds, as the pipeline sees it, and where the pipeline hands it.
//!
//! StreamingT2V's state between chunks is small and explicit: stage 2's conditioning frames,
//! anchor tokens and generator ([`StreamerState`]), stage 3's bounded wavefront
//! ([`EnhancerState`]), and, for each output, the frames written after its last durable
//! point (an MP4 keeps a keyframe interval in the encoder until the next keyframe). A job
//! resumed from a [`JobState`] writes the same frames, bit for bit, as one never stopped.

use std::collections::VecDeque;

use super::stage2::StreamerState;
use super::stage3::EnhancerState;
use super::PipelineError;
use crate::video::Frame;

/// A job's state after a finished unit of work (a stage-2 chunk, or stage-3 steps).
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    /// The next stage-2 chunk (chunk 0 is stage 1's).
    pub next_chunk: usize,
    pub streamer: StreamerState,
    /// `None` when the job does not enhance.
    pub enhancer: Option<EnhancerState>,
    /// Frames stage 2 produced so far.
    pub stage2_frames: usize,
    pub video: OutputState,
    /// The stage-2 copy (preview or side file), if the job writes one.
    pub preview: Option<OutputState>,
}

/// An output's progress: its first `durable` frames are in the file for good, and `tail`
/// holds the frames written after them (`durable + tail.len()` frames written in all).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputState {
    pub durable: usize,
    pub tail: Vec<Frame>,
}

impl OutputState {
    pub fn written(&self) -> usize {
        self.durable + self.tail.len()
    }
}

/// Where checkpoints go (a job directory).
pub trait Checkpoints {
    /// Called between stage-3 steps once stage 2 is done: whether one is due now.
    fn due(&mut self) -> bool;
    fn save(&mut self, state: &JobState) -> Result<(), PipelineError>;
}

/// The frames an output received after its last durable point.
#[derive(Debug, Default)]
pub(super) struct Tail {
    start: usize,
    frames: VecDeque<Frame>,
}

impl Tail {
    /// Continues after a resume that kept `durable` frames.
    pub fn starting_at(durable: usize) -> Self {
        Self {
            start: durable,
            frames: VecDeque::new(),
        }
    }

    /// Records frame `written - 1` and forgets the frames before `durable`.
    pub fn record(&mut self, frame: &Frame, durable: usize) {
        self.frames.push_back(frame.clone());
        while self.start < durable && !self.frames.is_empty() {
            self.frames.pop_front();
            self.start += 1;
        }
    }

    pub fn state(&self) -> OutputState {
        OutputState {
            durable: self.start,
            tail: self.frames.iter().cloned().collect(),
        }
    }
}

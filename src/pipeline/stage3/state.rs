//! What a job checkpoint holds of stage 3: the enhancer's wavefront between two chunk steps.

use ndarray::Array3;

use super::{Enhancer, FrameState};
use crate::pipeline::PipelineError;
use crate::sampling::{build_scheduler, SolverState};

/// The enhancer's wavefront between two chunk steps: what a job checkpoint holds of stage 3
/// ([`Enhancer::state`], [`Enhancer::resume`]). Its size is bounded by the window of about
/// `steps` chunks, whatever the video's length.
#[derive(Debug, Clone, PartialEq)]
pub struct EnhancerState {
    /// The padded-video index of `frames[0]`; frames before it were handed out.
    pub window_start: usize,
    pub frames: Vec<EnhancerFrameState>,
    /// The next solver step of each chunk.
    pub chunk_steps: Vec<usize>,
    pub last_clean: Option<Array3<f32>>,
}

/// One frame in flight: its sample, step, solver memory and (once its owner ran) blended x0.
#[derive(Debug, Clone, PartialEq)]
pub struct EnhancerFrameState {
    pub x: Array3<f32>,
    pub step: usize,
    pub solver: SolverState,
    pub x0: Option<Array3<f32>>,
    pub evaluations: usize,
}

impl Enhancer<'_> {
    /// The wavefront after the last chunk step (see [`EnhancerState`]).
    pub fn state(&self) -> EnhancerState {
        EnhancerState {
            window_start: self.window_start,
            frames: self
                .window
                .iter()
                .map(|f| EnhancerFrameState {
                    x: f.x.clone(),
                    step: f.step,
                    solver: f.solver.state(),
                    x0: f.x0.clone(),
                    evaluations: f.evaluations,
                })
                .collect(),
            chunk_steps: self.chunk_steps.clone(),
            last_clean: self.last_clean.clone(),
        }
    }

    /// Continues from `state`, taken by [`Enhancer::state`] of an enhancer made with the same
    /// config, options, frame count and seed: the next input frame is the first not admitted.
    pub fn resume(mut self, state: EnhancerState) -> Result<Self, PipelineError> {
        let admitted = state.window_start + state.frames.len();
        if state.chunk_steps.len() != self.plan.chunks.len() || admitted > self.plan.padded_frames {
            return Err(PipelineError::Invalid {
                field: "saved enhancer state".into(),
                expected: format!(
                    "{} chunks and at most {} frames",
                    self.plan.chunks.len(),
                    self.plan.padded_frames
                ),
                actual: format!("{} chunks, {admitted} frames", state.chunk_steps.len()),
            });
        }
        self.window.clear();
        for frame in state.frames {
            let mut solver =
                build_scheduler(&self.config.stage3.scheduler, self.options.steps, None)?;
            solver.restore(frame.solver)?;
            self.window.push_back(FrameState {
                x: frame.x,
                step: frame.step,
                solver,
                x0: frame.x0,
                evaluations: frame.evaluations,
            });
        }
        self.window_start = state.window_start;
        self.chunk_steps = state.chunk_steps;
        self.last_clean = state.last_clean;
        Ok(self)
    }
}

//! Where stage-2 frames go: the preview, and the enhancer or the output; and the job
//! checkpoints taken from them.

use ndarray::Array4;

use super::checkpoint::{JobState, OutputState, Tail};
use super::compose::{Outputs, RunSummary};
use super::run::{FrameOutput, RunContext};
use super::stage2::{Streamer, StreamerState};
use super::stage3::Enhancer;
use super::PipelineError;
use crate::progress::{ProgressEvent, ProgressSink};
use crate::video::{Frame, SampleRange, VideoError};

/// An output that counts its frames and, when the job checkpoints, keeps the frames written
/// after its last durable point.
pub(super) struct TrackedOutput<'o, 'p> {
    inner: &'o mut dyn FrameOutput,
    /// Reports `FramesWritten` (the video; not the preview).
    progress: Option<&'p dyn ProgressSink>,
    written: usize,
    tail: Option<Tail>,
}

impl<'o, 'p> TrackedOutput<'o, 'p> {
    fn new(inner: &'o mut dyn FrameOutput, progress: Option<&'p dyn ProgressSink>) -> Self {
        Self {
            inner,
            progress,
            written: 0,
            tail: None,
        }
    }

    /// Keeps a tail for checkpoints; the output must tell its durable frames.
    fn track(&mut self) -> Result<(), PipelineError> {
        if self.inner.durable().is_none() {
            return Err(PipelineError::Invalid {
                field: "output of a checkpointed job".into(),
                expected: "a file output (MP4 or PNG frames)".into(),
                actual: "an output that cannot be resumed".into(),
            });
        }
        self.tail = Some(Tail::default());
        Ok(())
    }

    /// Continues a resumed job's output: `state.durable` frames are kept in the file, and its
    /// tail is written again.
    fn resume(&mut self, state: &OutputState) -> Result<(), PipelineError> {
        self.track()?;
        self.written = state.durable;
        self.tail = Some(Tail::starting_at(state.durable));
        for frame in &state.tail {
            self.push(frame)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Option<OutputState>, PipelineError> {
        self.inner.sync()?;
        Ok(self.tail.as_ref().map(Tail::state))
    }
}

impl FrameOutput for TrackedOutput<'_, '_> {
    fn push(&mut self, frame: &Frame) -> Result<(), VideoError> {
        self.inner.push(frame)?;
        self.written += 1;
        if let (Some(tail), Some(durable)) = (self.tail.as_mut(), self.inner.durable()) {
            tail.record(frame, durable);
        }
        if let Some(progress) = self.progress {
            progress.emit(&ProgressEvent::FramesWritten {
                total: self.written,
            });
        }
        Ok(())
    }
}

/// Where stage-2 frames go: the preview, and the enhancer or the output.
pub(super) struct StageTwoSink<'o, 'e, 'p> {
    video: TrackedOutput<'o, 'p>,
    preview: Option<TrackedOutput<'o, 'p>>,
    enhancer: Option<Enhancer<'e>>,
    stage2_frames: usize,
    /// Stage 2's state at the last checkpoint (stage-3 checkpoints after stage 2 reuse it).
    streamer: Option<(usize, StreamerState)>,
}

impl<'o, 'e, 'p> StageTwoSink<'o, 'e, 'p> {
    pub fn new(
        enhancer: Option<Enhancer<'e>>,
        outputs: Outputs<'o>,
        progress: &'p dyn ProgressSink,
    ) -> Self {
        Self {
            video: TrackedOutput::new(outputs.video, Some(progress)),
            preview: outputs.preview.map(|p| TrackedOutput::new(p, None)),
            enhancer,
            stage2_frames: 0,
            streamer: None,
        }
    }

    /// Keeps what checkpoints need when the run takes them.
    pub fn prepare_checkpoints(&mut self, run: &RunContext<'_>) -> Result<(), PipelineError> {
        if run.checkpoints.is_some() {
            self.video.track()?;
            if let Some(preview) = self.preview.as_mut() {
                preview.track()?;
            }
        }
        Ok(())
    }

    /// Continues from a checkpoint: the outputs' tails are written again (the outputs were
    /// reopened keeping their durable frames) and the enhancer, if any, was resumed.
    pub fn resume(&mut self, state: &JobState) -> Result<(), PipelineError> {
        self.video.resume(&state.video)?;
        if let (Some(preview), Some(saved)) = (self.preview.as_mut(), state.preview.as_ref()) {
            preview.resume(saved)?;
        }
        self.stage2_frames = state.stage2_frames;
        self.streamer = Some((state.next_chunk, state.streamer.clone()));
        Ok(())
    }

    /// Hands on (F, 3, H, W) frames in [0, 1]. The whole chunk reaches the preview before the
    /// enhancer runs, so a run cancelled while enhancing still keeps every stage-2 frame.
    pub fn push_chunk(
        &mut self,
        frames: &Array4<f32>,
        run: &mut RunContext<'_>,
    ) -> Result<(), PipelineError> {
        self.admit_chunk(frames, run)?;
        self.pump(run, false)
    }

    /// [`StageTwoSink::push_chunk`] for the stage-2 chunk `next_chunk - 1`, which `streamer`
    /// made: the enhancer's steps that became possible run with checkpoints between them when
    /// due, and a checkpoint follows.
    pub fn push_streamed_chunk(
        &mut self,
        frames: &Array4<f32>,
        next_chunk: usize,
        streamer: &Streamer<'_>,
        run: &mut RunContext<'_>,
    ) -> Result<(), PipelineError> {
        self.admit_chunk(frames, run)?;
        if run.checkpoints.is_some() {
            self.streamer = Some((next_chunk, streamer.state()));
        }
        self.pump(run, true)?;
        self.save(run)
    }

    /// Writes the chunk to the preview, then to the enhancer's input (no step runs yet) or
    /// to the output.
    fn admit_chunk(
        &mut self,
        frames: &Array4<f32>,
        run: &RunContext<'_>,
    ) -> Result<(), PipelineError> {
        let frames = frames
            .outer_iter()
            .map(|chw| Frame::from_chw(chw, SampleRange::Unit))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(preview) = self.preview.as_mut() {
            for frame in &frames {
                preview.push(frame)?;
            }
        }
        for frame in &frames {
            self.stage2_frames += 1;
            match &mut self.enhancer {
                Some(enhancer) => enhancer.admit_frame(frame, run)?,
                None => self.video.push(frame)?,
            }
        }
        Ok(())
    }

    pub fn push_frame(&mut self, frame: &Frame, run: &RunContext<'_>) -> Result<(), PipelineError> {
        if let Some(preview) = self.preview.as_mut() {
            preview.push(frame)?;
        }
        self.stage2_frames += 1;
        match &mut self.enhancer {
            Some(enhancer) => enhancer.push(frame, run, &mut self.video),
            None => Ok(self.video.push(frame)?),
        }
    }

    /// Runs the enhancer's ready steps; with `checkpoints`, writes one between steps when due.
    fn pump(&mut self, run: &mut RunContext<'_>, checkpoints: bool) -> Result<(), PipelineError> {
        let Some(mut enhancer) = self.enhancer.take() else {
            return Ok(());
        };
        let pumped = loop {
            // One UNet call's worth of chunk steps between two looks at the checkpoints.
            let steps = enhancer.batch();
            match enhancer.pump_at_most(steps, run, &mut self.video) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(err) => break Err(err),
            }
            if checkpoints && run.checkpoints.as_deref_mut().is_some_and(|c| c.due()) {
                self.enhancer = Some(enhancer);
                self.save(run)?;
                enhancer = self.enhancer.take().expect("just put back");
            }
        };
        self.enhancer = Some(enhancer);
        pumped
    }

    /// Writes a checkpoint (when the run takes them) after stage-2 chunk `next_chunk - 1`.
    pub fn checkpoint(
        &mut self,
        next_chunk: usize,
        streamer: &Streamer<'_>,
        run: &mut RunContext<'_>,
    ) -> Result<(), PipelineError> {
        if run.checkpoints.is_none() {
            return Ok(());
        }
        self.streamer = Some((next_chunk, streamer.state()));
        self.save(run)
    }

    fn save(&mut self, run: &mut RunContext<'_>) -> Result<(), PipelineError> {
        let Some((next_chunk, streamer)) = self.streamer.clone() else {
            return Ok(());
        };
        let Some(video) = self.video.state()? else {
            return Ok(());
        };
        let preview = match self.preview.as_mut() {
            Some(preview) => preview.state()?,
            None => None,
        };
        let state = JobState {
            next_chunk,
            streamer,
            enhancer: self.enhancer.as_ref().map(Enhancer::state),
            stage2_frames: self.stage2_frames,
            video,
            preview,
        };
        match run.checkpoints.as_deref_mut() {
            Some(checkpoints) => checkpoints.save(&state),
            None => Ok(()),
        }
    }

    /// Runs the enhancer over the collected frames, if any (with checkpoints when due).
    pub fn finish(mut self, run: &mut RunContext<'_>) -> Result<RunSummary, PipelineError> {
        self.pump(run, true)?;
        if let Some(enhancer) = self.enhancer.take() {
            enhancer.finish(run, &mut self.video)?;
        }
        Ok(RunSummary {
            stage2_frames: self.stage2_frames,
            frames_written: self.video.written,
        })
    }
}

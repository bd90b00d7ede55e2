//! A run's timeline: every progress event with its time, turned into per-step, per-chunk and
//! per-stage durations, time to first frame and the gaps between chunks.
//!
//! Stages 2 and 3 interleave (the enhancer is a wavefront piped after stage 2), so durations
//! are attributed event by event: the time between two consecutive events belongs to the stage
//! of the later one. A stage-2 step is then exactly its CAM + UNet + guidance + scheduler work.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

use crate::progress::{ProgressEvent, ProgressSink, Stage};
use crate::video::{Frame, VideoError};

/// Records events (and forwards them) while a run goes on.
pub struct Timeline<'a> {
    start: Instant,
    events: RefCell<Vec<(f64, ProgressEvent)>>,
    first_preview: RefCell<Option<f64>>,
    forward: &'a dyn ProgressSink,
}

/// Durations of one run, in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunTimes {
    pub end_to_end: f64,
    /// Per stage: the time attributed to it, its steps and its chunks.
    pub stages: BTreeMap<&'static str, StageTimes>,
    pub first_preview_frame: Option<f64>,
    pub first_final_frame: Option<f64>,
    /// Wall time between consecutive stage-2 chunks reaching the preview.
    pub preview_chunk_gaps: Vec<f64>,
    /// Wall time between consecutive batches of final frames.
    pub final_chunk_gaps: Vec<f64>,
    pub final_frames: usize,
}

/// One stage's share of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageTimes {
    pub seconds: f64,
    pub steps: Vec<f64>,
    pub chunks: Vec<f64>,
}

impl<'a> Timeline<'a> {
    pub fn new(forward: &'a dyn ProgressSink) -> Self {
        Self {
            start: Instant::now(),
            events: RefCell::new(Vec::new()),
            first_preview: RefCell::new(None),
            forward,
        }
    }

    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Notes a preview frame (stage-2 output) arriving.
    pub fn preview_frame(&self) {
        let now = self.now();
        self.first_preview.borrow_mut().get_or_insert(now);
    }

    /// A frame sink that records preview arrivals and keeps the frames as RGB8.
    pub fn preview_sink<'s>(
        &'s self,
        keep: &'s RefCell<Vec<Vec<u8>>>,
    ) -> impl FnMut(&Frame) -> Result<(), VideoError> + 's {
        move |frame: &Frame| {
            self.preview_frame();
            keep.borrow_mut().push(frame.to_rgb8_bytes());
            Ok(())
        }
    }

    /// Ends the run and derives its durations.
    pub fn finish(self) -> RunTimes {
        let end = self.now();
        let events = self.events.into_inner();
        let mut times = RunTimes {
            end_to_end: end,
            first_preview_frame: self.first_preview.into_inner(),
            ..RunTimes::default()
        };
        let mut previous = 0.0;
        let mut chunk_time: BTreeMap<(&'static str, usize), f64> = BTreeMap::new();
        let mut last_preview_chunk = None;
        let mut last_final_batch: Option<f64> = None;
        for (at, event) in &events {
            let delta = at - previous;
            previous = *at;
            match event {
                ProgressEvent::Step { stage, chunk, .. } => {
                    let key = stage.key();
                    let stage = times.stages.entry(key).or_default();
                    stage.seconds += delta;
                    stage.steps.push(delta);
                    *chunk_time.entry((key, *chunk)).or_default() += delta;
                }
                ProgressEvent::ChunkDone { stage, chunk, .. } => {
                    let key = stage.key();
                    times.stages.entry(key).or_default().seconds += delta;
                    *chunk_time.entry((key, *chunk)).or_default() += delta;
                    if *stage == Stage::Streaming || *stage == Stage::Initialization {
                        if let Some(last) = last_preview_chunk.replace(*at) {
                            times.preview_chunk_gaps.push(at - last);
                        }
                    }
                }
                ProgressEvent::StageStarted { stage, .. }
                | ProgressEvent::StageFinished { stage, .. } => {
                    times.stages.entry(stage.key()).or_default().seconds += delta;
                }
                ProgressEvent::FramesWritten { total } => {
                    times.final_frames = *total;
                    times.first_final_frame.get_or_insert(*at);
                    // Frames of one chunk arrive back to back; a new batch starts after a gap.
                    match last_final_batch {
                        Some(last) if at - last > 1e-3 => times.final_chunk_gaps.push(at - last),
                        _ => {}
                    }
                    last_final_batch = Some(*at);
                }
                ProgressEvent::Warning { .. } => {}
            }
        }
        for ((stage, _), seconds) in chunk_time {
            times.stages.entry(stage).or_default().chunks.push(seconds);
        }
        times
    }
}

impl ProgressSink for Timeline<'_> {
    fn emit(&self, event: &ProgressEvent) {
        self.events.borrow_mut().push((self.now(), event.clone()));
        self.forward.emit(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn durations_go_to_the_stage_of_the_later_event() {
        let timeline = Timeline::new(&NoProgress);
        let step = |stage, chunk, step| ProgressEvent::Step {
            stage,
            chunk,
            step,
            steps: 2,
        };
        let script = [
            (0.1, step(Stage::Streaming, 1, 1)),
            (0.3, step(Stage::Streaming, 1, 2)),
            (
                0.35,
                ProgressEvent::ChunkDone {
                    stage: Stage::Streaming,
                    chunk: 1,
                    frames: 8,
                },
            ),
            (0.6, step(Stage::Refinement, 0, 1)),
            (0.6, ProgressEvent::FramesWritten { total: 1 }),
        ];
        timeline
            .events
            .borrow_mut()
            .extend(script.iter().map(|(t, e)| (*t, e.clone())));
        let times = timeline.finish();
        let s2 = &times.stages["stage2"];
        assert!((s2.seconds - 0.35).abs() < 1e-9);
        assert_eq!(s2.steps.len(), 2);
        assert!((s2.steps[1] - 0.2).abs() < 1e-9);
        assert!((s2.chunks[0] - 0.35).abs() < 1e-9);
        assert!((times.stages["stage3"].seconds - 0.25).abs() < 1e-9);
        assert_eq!(times.first_final_frame, Some(0.6));
        assert_eq!(times.final_frames, 1);
    }
}

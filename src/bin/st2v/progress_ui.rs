//! Progress for humans (indicatif bars per stage with ETA, on stderr) and for programs
//! (`--events FILE|-`: one JSON `ProgressEvent` per line).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use streamingt2v::progress::{ProgressEvent, ProgressSink, Stage};

const BAR_TEMPLATE: &str =
    "{prefix:>13} [{bar:30}] {pos}/{len} {msg} ({elapsed_precise}, ETA {eta_precise})";

/// Forwards every event to the bars (unless quiet) and the event stream (if asked).
pub struct CliProgress {
    bars: Option<Bars>,
    events: Option<RefCell<Box<dyn Write>>>,
}

struct Bars {
    multi: MultiProgress,
    by_stage: RefCell<HashMap<&'static str, ProgressBar>>,
}

impl CliProgress {
    /// `events`: a file path, or `-` for stdout.
    pub fn new(quiet: bool, events: Option<&Path>) -> anyhow::Result<Self> {
        let events = match events {
            None => None,
            Some(path) if path == Path::new("-") => {
                Some(Box::new(std::io::stdout()) as Box<dyn Write>)
            }
            Some(path) => {
                let file = File::create(path)
                    .with_context(|| format!("--events: cannot create {}", path.display()))?;
                Some(Box::new(BufWriter::new(file)) as Box<dyn Write>)
            }
        };
        let bars = (!quiet).then(|| Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            by_stage: RefCell::new(HashMap::new()),
        });
        Ok(Self {
            bars,
            events: events.map(RefCell::new),
        })
    }

    /// A message above the bars (or on stderr when quiet).
    pub fn note(&self, message: &str) {
        match &self.bars {
            Some(bars) if !bars.multi.is_hidden() => {
                let _ = bars.multi.println(message);
            }
            _ => eprintln!("{message}"),
        }
    }

    /// Flushes the event stream and clears unfinished bars.
    pub fn close(&self) {
        if let Some(events) = &self.events {
            let _ = events.borrow_mut().flush();
        }
        if let Some(bars) = &self.bars {
            for bar in bars.by_stage.borrow().values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        }
    }

    fn write_event(&self, event: &ProgressEvent) {
        self.write_json(event);
    }

    /// One JSON line on the event stream (progress events, and `generate --eval`'s report).
    pub fn write_json(&self, value: &impl serde::Serialize) {
        if let Some(events) = &self.events {
            let mut out = events.borrow_mut();
            if let Ok(line) = serde_json::to_string(value) {
                // A closed event pipe must not stop the generation.
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
            }
        }
    }
}

impl ProgressSink for CliProgress {
    fn emit(&self, event: &ProgressEvent) {
        self.write_event(event);
        if let ProgressEvent::Warning { message } = event {
            self.note(&format!("warning: {message}"));
        }
        if let Some(bars) = &self.bars {
            bars.update(event);
        }
    }
}

impl Bars {
    fn update(&self, event: &ProgressEvent) {
        match event {
            ProgressEvent::StageStarted {
                stage,
                chunks,
                steps,
            } => {
                let bar = self.multi.add(ProgressBar::new((chunks * steps) as u64));
                if let Ok(style) = ProgressStyle::with_template(BAR_TEMPLATE) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_prefix(stage_name(*stage));
                self.by_stage.borrow_mut().insert(stage_name(*stage), bar);
            }
            ProgressEvent::Step {
                stage,
                chunk,
                step,
                steps,
            } => {
                if let Some(bar) = self.by_stage.borrow().get(stage_name(*stage)) {
                    bar.inc(1);
                    bar.set_message(format!("chunk {chunk} step {step}/{steps}"));
                }
            }
            ProgressEvent::StageFinished { stage, .. } => {
                if let Some(bar) = self.by_stage.borrow().get(stage_name(*stage)) {
                    bar.finish_with_message("done");
                }
            }
            ProgressEvent::ChunkDone { .. }
            | ProgressEvent::FramesWritten { .. }
            | ProgressEvent::Warning { .. } => {}
        }
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Initialization => "stage 1",
        Stage::Streaming => "stage 2",
        Stage::Refinement => "stage 3",
    }
}

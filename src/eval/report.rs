//! `st2v eval`'s results: JSON (serde), a readable table with one column per video, and a
//! per-frame CSV for spreadsheets and plotting tools.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::drift::DriftReport;
use super::evaluate::{EvalOptions, FlowMethod};
use super::mawe::PairScore;
use super::scuts::SceneCuts;
use super::seams::SeamReport;
use super::{ChunkGeometry, Metric};
use crate::video::FrameSize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClipReport {
    /// Mean over frames of 100 x cosine(prompt, frame).
    pub score: f64,
    pub per_frame: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScutsReport {
    /// SCuts: the number of scene cuts.
    pub count: usize,
    /// Frames where a new scene starts.
    pub cuts: Vec<usize>,
}

impl From<SceneCuts> for ScutsReport {
    fn from(cuts: SceneCuts) -> Self {
        ScutsReport {
            count: cuts.count(),
            cuts: cuts.cuts,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaweReport {
    /// Mean over pairs of warp error / (9.5 x mean flow); `None` when no pair moves.
    pub value: Option<f64>,
    /// The optical flow used (MAWE values from different flows are not comparable).
    pub flow: FlowMethod,
    /// Side of the square frames flow and warp ran on.
    pub size: usize,
    /// Pairs whose ratio is defined (a pair without motion has none).
    pub pairs_defined: usize,
    pub pairs: Vec<PairFigures>,
}

/// One consecutive pair's MAWE figures (see [`PairScore`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairFigures {
    pub warp_error: Option<f64>,
    pub mean_flow: f64,
    pub ratio: Option<f64>,
}

impl MaweReport {
    pub fn new(value: Option<f64>, flow: FlowMethod, size: usize, pairs: &[PairScore]) -> Self {
        MaweReport {
            value,
            flow,
            size,
            pairs_defined: pairs.iter().filter(|p| p.ratio.is_some()).count(),
            pairs: pairs
                .iter()
                .map(|p| PairFigures {
                    warp_error: p.warp_error,
                    mean_flow: p.mean_flow,
                    ratio: p.ratio,
                })
                .collect(),
        }
    }
}

/// Every metric of one video.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoReport {
    pub path: String,
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    pub fps: Option<f64>,
    pub seconds: f64,
    pub clip: Option<ClipReport>,
    pub scuts: Option<ScutsReport>,
    pub mawe: Option<MaweReport>,
    pub seams: Option<SeamReport>,
    pub drift: Option<DriftReport>,
}

impl VideoReport {
    pub fn new(path: &Path, frames: usize, size: FrameSize) -> Self {
        VideoReport {
            path: path.display().to_string(),
            frames,
            width: size.width,
            height: size.height,
            fps: None,
            seconds: 0.0,
            clip: None,
            scuts: None,
            mawe: None,
            seams: None,
            drift: None,
        }
    }
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub tool: String,
    pub prompt: Option<String>,
    pub metrics: Vec<Metric>,
    pub geometry: ChunkGeometry,
    pub anchor_frame: usize,
    /// The model set whose CLIP graphs gave the clip and drift figures.
    pub model_set: Option<String>,
    pub videos: Vec<VideoReport>,
}

fn fixed(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

/// The last chunk's drift figures.
fn last_drift(v: &VideoReport) -> Option<&super::drift::ChunkDrift> {
    v.drift.as_ref().and_then(|d| d.chunks.last())
}

type Row = (&'static str, Metric, fn(&VideoReport) -> String);

/// One table row per figure: label, the metric it belongs to, how to read it from a video.
const ROWS: [Row; 11] = [
    ("CLIP score (x100, mean)", Metric::Clip, |v| {
        fixed(v.clip.as_ref().map(|c| c.score), 2)
    }),
    ("SCuts (scene cuts)", Metric::Scuts, |v| {
        v.scuts.as_ref().map_or("-".into(), |s| s.count.to_string())
    }),
    ("MAWE (lower is better)", Metric::Mawe, |v| {
        v.mawe.as_ref().map_or("-".into(), |m| {
            format!("{} ({})", fixed(m.value, 4), m.flow.name())
        })
    }),
    ("seams: frame diff boundary/inside", Metric::Seams, |v| {
        fixed(v.seams.as_ref().and_then(|s| s.frame_difference.ratio), 3)
    }),
    ("seams: warp error boundary/inside", Metric::Seams, |v| {
        let warp = v.seams.as_ref().and_then(|s| s.warp_error);
        fixed(warp.and_then(|w| w.ratio), 3)
    }),
    ("seams: flagged / boundaries", Metric::Seams, |v| {
        v.seams
            .as_ref()
            .map_or("-".into(), |s| format!("{} / {}", s.flagged, s.seams.len()))
    }),
    ("drift: last chunk vs anchor (cos)", Metric::Drift, |v| {
        fixed(last_drift(v).and_then(|c| c.anchor_similarity), 4)
    }),
    ("drift: min chunk vs previous (cos)", Metric::Drift, |v| {
        let chunks = v.drift.as_ref().map(|d| d.chunks.as_slice()).unwrap_or(&[]);
        let min = chunks
            .iter()
            .filter_map(|c| c.previous_similarity)
            .reduce(f64::min);
        fixed(min, 4)
    }),
    ("drift: last chunk colour distance", Metric::Drift, |v| {
        fixed(last_drift(v).map(|c| c.histogram_distance), 4)
    }),
    ("frames", Metric::Scuts, |v| v.frames.to_string()),
    ("seconds", Metric::Scuts, |v| format!("{:.1}", v.seconds)),
];

impl EvalReport {
    /// The report of `videos` evaluated with `options`.
    pub fn new(
        tool: String,
        options: &EvalOptions,
        model_set: Option<String>,
        videos: Vec<VideoReport>,
    ) -> Self {
        EvalReport {
            tool,
            prompt: options.prompt.clone(),
            metrics: options.metrics.clone(),
            geometry: options.geometry,
            anchor_frame: options.anchor_frame,
            model_set,
            videos,
        }
    }

    /// A plain-text table: one row per figure, one column per video.
    pub fn table(&self) -> String {
        let names: Vec<String> = self.videos.iter().map(|v| short_name(&v.path)).collect();
        let rows: Vec<(&str, Vec<String>)> = ROWS
            .iter()
            .filter(|(label, metric, _)| {
                self.metrics.contains(metric) || matches!(*label, "frames" | "seconds")
            })
            .map(|(label, _, read)| (*label, self.videos.iter().map(read).collect()))
            .collect();
        let label_width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(6).max(6);
        let widths: Vec<usize> = (0..names.len())
            .map(|i| {
                let cells = rows.iter().map(|(_, c)| c[i].len());
                cells.chain([names[i].len()]).max().unwrap_or(1)
            })
            .collect();
        let mut out = String::new();
        let _ = write!(out, "{:<label_width$}", "metric");
        for (name, width) in names.iter().zip(&widths) {
            let _ = write!(out, "  {name:>width$}");
        }
        out.push('\n');
        for (label, cells) in &rows {
            let _ = write!(out, "{label:<label_width$}");
            for (cell, width) in cells.iter().zip(&widths) {
                let _ = write!(out, "  {cell:>width$}");
            }
            out.push('\n');
        }
        out
    }

    /// One row per frame of every video: the per-frame and per-pair series.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "video,frame,chunk,chunk_start,clip_score,frame_difference,warp_error,mean_flow,\
             mawe_ratio,scene_cut\n",
        );
        for video in &self.videos {
            let ranges = self.geometry.chunk_ranges(video.frames);
            let pairs = video.mawe.as_ref().map(|m| m.pairs.as_slice());
            let cuts = video.scuts.as_ref().map(|s| s.cuts.as_slice());
            for frame in 0..video.frames {
                let chunk = ranges.iter().position(|r| r.contains(&frame)).unwrap_or(0);
                let pair = pairs.and_then(|p| p.get(frame));
                let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
                let _ = writeln!(
                    out,
                    "{},{frame},{chunk},{},{},{},{},{},{},{}",
                    csv_quote(&video.path),
                    u8::from(ranges.get(chunk).is_some_and(|r| r.start == frame)),
                    cell(
                        video
                            .clip
                            .as_ref()
                            .and_then(|c| c.per_frame.get(frame).copied())
                    ),
                    cell(frame_difference_at(video, frame)),
                    cell(pair.and_then(|p| p.warp_error)),
                    cell(pair.map(|p| p.mean_flow)),
                    cell(pair.and_then(|p| p.ratio)),
                    cuts.map_or(String::new(), |c| u8::from(c.contains(&frame)).to_string()),
                );
            }
        }
        out
    }
}

/// The difference between `frame` and the next one, where seams kept it.
fn frame_difference_at(video: &VideoReport, frame: usize) -> Option<f64> {
    video
        .seams
        .as_ref()
        .and_then(|s| s.differences.get(frame).copied())
}

fn csv_quote(text: &str) -> String {
    match text.contains([',', '"', '\n']) {
        true => format!("\"{}\"", text.replace('"', "\"\"")),
        false => text.to_owned(),
    }
}

/// The file name of a path (the table's column header).
pub fn short_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned())
}

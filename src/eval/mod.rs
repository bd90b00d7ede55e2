//! `st2v eval`: the quality metrics of the StreamingT2V paper (Henschel et al. 2024) and the
//! seam and drift metrics this engine adds, on any video.
//!
//! - [`clip`]: CLIP text-image score (x100, mean over frames).
//! - [`scuts`]: scene cuts, a port of PySceneDetect's AdaptiveDetector (the paper's SCuts).
//! - [`mawe`] over [`flow`]: motion-aware warp error as the reference's `mawe.py` computes it,
//!   with a classical optical flow (Farneback) that needs no weights, or [`raft`] (the
//!   reference's RAFT, exported into the model set).
//! - [`seams`]: frame pairs across chunk boundaries against pairs inside chunks.
//! - [`drift`]: per chunk, similarity to the anchor and the previous chunk, colour distance.
//!
//! Pure numerics live in their modules; [`evaluate`] runs them over a decoded video in one pass
//! (frames are not kept: a long 720p video fits), [`report`] and [`plot`] present the results.

pub mod chunks;
pub mod clip;
pub mod drift;
pub mod evaluate;
pub mod farneback;
pub mod flow;
pub mod mawe;
pub mod opencv_compat;
pub mod plot;
pub mod raft;
pub mod report;
pub mod scuts;
pub mod seams;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use chunks::ChunkGeometry;
pub use clip::ClipModels;
pub use evaluate::{EvalModels, EvalOptions, EvalProgress, Evaluator, FlowMethod};
pub use report::{EvalReport, VideoReport};

use crate::models::{LoadError, ModelError};
use crate::plan::PlanError;
use crate::tokenizer::TokenizerError;
use crate::video::VideoError;

/// One metric `st2v eval` can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Clip,
    Scuts,
    Mawe,
    Seams,
    Drift,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::Clip,
        Metric::Scuts,
        Metric::Mawe,
        Metric::Seams,
        Metric::Drift,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Clip => "clip",
            Metric::Scuts => "scuts",
            Metric::Mawe => "mawe",
            Metric::Seams => "seams",
            Metric::Drift => "drift",
        }
    }

    /// Whether the metric runs the model set's CLIP graphs.
    pub fn needs_clip(self) -> bool {
        matches!(self, Metric::Clip | Metric::Drift)
    }

    /// Whether the metric needs optical flow between consecutive frames.
    pub fn needs_flow(self) -> bool {
        matches!(self, Metric::Mawe | Metric::Seams)
    }

    /// Parses `clip,scuts,...`; `all` is every metric.
    pub fn parse_list(text: &str) -> Result<Vec<Metric>, EvalError> {
        let mut metrics = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                metrics.extend(Metric::ALL);
                continue;
            }
            metrics.push(name.parse()?);
        }
        metrics.sort();
        metrics.dedup();
        if metrics.is_empty() {
            return Err(EvalError::invalid("--metrics", "at least one metric", text));
        }
        Ok(metrics)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = EvalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                EvalError::invalid(
                    "--metrics",
                    "a comma-separated list of clip, scuts, mawe, seams, drift (or all)",
                    s,
                )
            })
    }
}

/// Everything that can go wrong evaluating videos.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{field}: expected {expected}, got {actual}")]
    Invalid {
        field: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{path}: {frames} frame(s) is too short for {metric}, which needs {needed}")]
    TooShort {
        path: PathBuf,
        metric: Metric,
        frames: usize,
        needed: String,
    },
    #[error("scene-cut detection: {0}")]
    SceneCuts(String),
    #[error(transparent)]
    Video(#[from] VideoError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("evaluation cancelled")]
    Cancelled,
}

impl EvalError {
    pub fn invalid(
        field: &'static str,
        expected: impl Into<String>,
        actual: impl ToString,
    ) -> Self {
        EvalError::Invalid {
            field,
            expected: expected.into(),
            actual: actual.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lists_parse_dedup_and_name_the_flag_when_wrong() {
        assert_eq!(
            Metric::parse_list("seams, clip,clip").expect("valid"),
            vec![Metric::Clip, Metric::Seams]
        );
        assert_eq!(
            Metric::parse_list("all").expect("valid"),
            Metric::ALL.to_vec()
        );
        let err = Metric::parse_list("clip,ssim")
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("--metrics") && err.contains("ssim"), "{err}");
        assert!(Metric::parse_list(" ,").is_err());
    }
}

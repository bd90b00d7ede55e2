//! What the API shows of a job (`GET /v1/videos/{id}`), persisted as the job directory's
//! `job.json`: its status, progress, timings and error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    pub const ALL: [JobStatus; 5] = [
        Self::Queued,
        Self::InProgress,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Where a running job is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobProgress {
    pub stage: Option<String>,
    pub chunk: usize,
    pub step: usize,
    pub steps: usize,
    /// Stage-2 frames in the preview so far.
    pub preview_frames: usize,
    /// Frames in the final video so far.
    pub final_frames: usize,
}

/// A stable error type and its message.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// What the API shows of a job.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobRecord {
    pub id: String,
    pub object: String,
    pub status: JobStatus,
    pub prompt: String,
    pub frames_requested: usize,
    pub enhance: bool,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub progress: JobProgress,
    /// Seconds per stage.
    pub timings: BTreeMap<String, f64>,
    pub time_to_first_frame_s: Option<f64>,
    pub error: Option<JobError>,
    /// The replica running (or that last ran) the job, in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

/// One server-sent event of a job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobEvent {
    pub id: u64,
    pub name: String,
    pub data: serde_json::Value,
}

impl JobRecord {
    /// Writes the record as `dir/job.json` (through a temporary file and a rename).
    pub fn write_to(&self, dir: &std::path::Path) {
        let Ok(text) = serde_json::to_string_pretty(self) else {
            return;
        };
        let tmp = dir.join("job.json.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, dir.join("job.json"));
        }
    }
}

/// Newest first, the records after the one with id `after`, at most `limit`, and whether more
/// follow.
pub fn page(
    mut records: Vec<&JobRecord>,
    after: Option<&str>,
    limit: usize,
) -> (Vec<JobRecord>, bool) {
    records.sort_by(|a, b| b.created_at.total_cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let start = after
        .and_then(|after| records.iter().position(|r| r.id == after))
        .map_or(0, |p| p + 1);
    let page: Vec<JobRecord> = records
        .iter()
        .skip(start)
        .take(limit)
        .map(|r| (*r).clone())
        .collect();
    let more = records.len() > start + page.len();
    (page, more)
}

//! The job directories replicas share (`--data` on a shared file system): each job's record
//! (`job.json`), written by whichever replica holds the job, read by every other one to answer
//! for jobs it does not run; and its events (`events.jsonl`), which every replica streams.

use std::path::Path;

use std::io::Write;

use super::jobs::{JobEvent, JobRecord};

/// Writes `record` as `dir/job.json` (through a temporary file and a rename).
pub fn write_record(dir: &Path, record: &JobRecord) {
    let Ok(text) = serde_json::to_string_pretty(record) else {
        return;
    };
    let tmp = dir.join("job.json.tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join("job.json"));
    }
}

/// The record of job `id` under `data_dir`, if there is one. Ids are the server's own
/// (`video_`, hex digits and `_`): anything else is not looked up, so no request reaches a path.
pub fn read_record(data_dir: &Path, id: &str) -> Option<JobRecord> {
    let own = id.strip_prefix("video_")?;
    if own.is_empty() || !own.chars().all(|c| c.is_ascii_hexdigit() || c == '_') {
        return None;
    }
    let text = std::fs::read_to_string(data_dir.join(id).join("job.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Every record under `data_dir`.
pub fn all_records(data_dir: &Path) -> Vec<JobRecord> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| read_record(data_dir, e.file_name().to_str()?))
        .collect()
}

/// Appends one event to `dir/events.jsonl`.
pub fn append_event(dir: &Path, event: &JobEvent) {
    let Ok(mut line) = serde_json::to_string(event) else {
        return;
    };
    line.push('\n');
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("events.jsonl"));
    if let Ok(mut file) = file {
        // One write per line: readers see whole lines (or none of a line being written).
        let _ = file.write_all(line.as_bytes());
    }
}

/// The events in `dir/events.jsonl` (a line cut short by a writer is left for the next read).
pub fn read_events(dir: &Path) -> Vec<JobEvent> {
    let Ok(text) = std::fs::read_to_string(dir.join("events.jsonl")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

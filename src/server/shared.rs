//! The job directories replicas share (`--data` on a shared file system): each job's record
//! (`job.json`), written by whichever replica holds the job, read by every other one to answer
//! for jobs it does not run.

use std::path::Path;

use super::jobs::JobRecord;

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

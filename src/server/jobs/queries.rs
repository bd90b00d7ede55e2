//! What the API reads of the jobs: a record with its queue position, pages of records, a job's
//! events, its directory and the counts per status. In a cluster, a job this replica does not
//! hold is read from Redis ([`SharedJobs`](super::super::shared::SharedJobs)).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{JobEvent, JobRecord, JobStatus, Store};

impl Store {
    /// Whether this server runs (or ran) job `id` itself.
    pub fn holds(&self, id: &str) -> bool {
        self.lock().jobs.contains_key(id)
    }

    /// A job's record with its queue position.
    pub fn get(&self, id: &str) -> Option<(JobRecord, Option<usize>)> {
        let inner = self.lock();
        let Some(entry) = inner.jobs.get(id) else {
            drop(inner);
            let record = self.shared.as_ref()?.read_record(id)?;
            return Some((record, None));
        };
        let record = entry.record.clone();
        let position = inner.queue.iter().position(|q| q == id).map(|p| p + 1);
        Some((record, position))
    }

    /// Records newest first, after `after` (an id), at most `limit`.
    pub fn list(&self, after: Option<&str>, limit: usize) -> (Vec<JobRecord>, bool) {
        let elsewhere = match &self.shared {
            Some(shared) => shared.all_records(),
            None => Vec::new(),
        };
        let inner = self.lock();
        let local = inner.jobs.values().map(|e| &e.record);
        let shared = elsewhere.iter().filter(|r| !inner.jobs.contains_key(&r.id));
        crate::server::record::page(local.chain(shared).collect(), after, limit)
    }

    /// Events after `after`, and whether the job has ended.
    pub fn events_after(&self, id: &str, after: Option<u64>) -> Option<(Vec<JobEvent>, bool)> {
        let inner = self.lock();
        let Some(entry) = inner.jobs.get(id) else {
            drop(inner);
            // Another replica's job: its log in Redis.
            let shared = self.shared.as_ref()?;
            let record = shared.read_record(id)?;
            return Some((shared.events_after(id, after), record.status.is_terminal()));
        };
        let newer = |e: &JobEvent| after.is_none_or(|a| e.id > a);
        // A job continued here: the events other replicas logged come first.
        let earlier = entry.event_base > 0 && after.is_none_or(|a| a < entry.event_base);
        let mut events: Vec<JobEvent> = match (earlier, &self.shared) {
            (true, Some(shared)) => shared
                .events_after(id, after)
                .into_iter()
                .filter(|e| e.id <= entry.event_base)
                .collect(),
            _ => Vec::new(),
        };
        events.extend(entry.events.iter().filter(|e| newer(e)).cloned());
        Some((events, entry.record.status.is_terminal()))
    }

    pub fn job_dir(&self, id: &str) -> Option<(PathBuf, JobStatus)> {
        let inner = self.lock();
        if let Some(entry) = inner.jobs.get(id) {
            return Some((entry.dir.clone(), entry.record.status));
        }
        drop(inner);
        // Another replica's job: its files are fetched from the store into this directory.
        let record = self.shared.as_ref()?.read_record(id)?;
        Some((self.data_dir.join(id), record.status))
    }

    /// Jobs per status and the queue depth.
    pub fn counts(&self) -> (BTreeMap<&'static str, usize>, usize) {
        let inner = self.lock();
        let mut counts: BTreeMap<&'static str, usize> =
            JobStatus::ALL.iter().map(|s| (s.name(), 0)).collect();
        for entry in inner.jobs.values() {
            *counts.entry(entry.record.status.name()).or_default() += 1;
        }
        (counts, inner.queue.len())
    }
}

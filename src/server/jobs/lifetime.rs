//! Jobs that arrive or leave other than through `submit`: taken from the cluster's queue
//! (`adopt`) or handed to another replica (`release`), found on disk by a restarted server
//! (`requeue`, `restore`), and forgotten when finished long enough (`prune`).

use std::path::PathBuf;

use serde_json::json;

use super::{now, prompt_plan, Assigned, Entry, JobRecord, JobStatus, Store};
use crate::engine::Request;
use crate::progress::CancelToken;

impl Store {
    /// Takes a job this replica claimed from the cluster's queue: it runs here now.
    pub fn adopt(&self, mut record: JobRecord, dir: PathBuf, request: Request) -> Assigned {
        let mut inner = self.lock();
        let id = record.id.clone();
        record.status = JobStatus::InProgress;
        record.started_at = record.started_at.or(Some(now()));
        let cancel = CancelToken::new();
        // Its events go on from those other replicas logged.
        let event_base = match &self.shared {
            Some(shared) => shared.last_event(&id).unwrap_or_else(|err| {
                tracing::warn!("job {id}: reading its last event: {err}");
                0
            }),
            None => 0,
        };
        let entry = Entry {
            record,
            events: Vec::new(),
            cancel: cancel.clone(),
            dir: dir.clone(),
            request: None,
            plan: prompt_plan(&request),
            persisted_at: 0.0,
            event_base,
        };
        inner.jobs.insert(id.clone(), entry);
        inner.running += 1;
        self.push_event(&mut inner, &id, "in_progress", json!({}));
        self.persist(&mut inner, &id);
        drop(inner);
        self.bump();
        Assigned {
            id,
            request,
            cancel,
            dir,
        }
    }

    /// Lets go of a job another replica holds now (or will: this one is stopping), without
    /// touching its record.
    pub fn release(&self, id: &str) {
        let mut inner = self.lock();
        if inner.jobs.remove(id).is_some() {
            inner.running = inner.running.saturating_sub(1);
        }
        drop(inner);
        self.bump();
    }

    /// Queues again a job a killed server was running or had queued (a restart), whatever the
    /// queue's bound: it was accepted before. The worker continues it from its checkpoint.
    pub fn requeue(&self, mut record: JobRecord, dir: PathBuf, request: Request) {
        record.status = JobStatus::Queued;
        self.enqueue(self.lock(), record, dir, request, true);
    }

    /// Adds a job found on disk (a restart).
    pub fn restore(&self, record: JobRecord, dir: PathBuf) {
        let mut inner = self.lock();
        let id = record.id.clone();
        let name = record.status.name().to_owned();
        let data = json!({"restored": true, "error": record.error});
        inner.jobs.insert(
            id.clone(),
            Entry {
                record,
                events: Vec::new(),
                cancel: CancelToken::new(),
                dir,
                request: None,
                plan: None,
                persisted_at: 0.0,
                event_base: 0,
            },
        );
        self.push_event(&mut inner, &id, &name, data);
    }

    /// Forgets finished jobs beyond `keep` (newest kept) or older than `max_age` seconds, and
    /// deletes their directories (the server made every file in them); their ids.
    pub fn prune(&self, keep: usize, max_age: f64) -> Vec<String> {
        let removed: Vec<(String, PathBuf)> = {
            let mut inner = self.lock();
            let mut finished: Vec<(f64, String)> = inner
                .jobs
                .values()
                .filter(|e| e.record.status.is_terminal())
                .map(|e| {
                    (
                        e.record.finished_at.unwrap_or(e.record.created_at),
                        e.record.id.clone(),
                    )
                })
                .collect();
            finished.sort_by(|a, b| b.0.total_cmp(&a.0));
            let cutoff = now() - max_age;
            let doomed: Vec<String> = finished
                .iter()
                .enumerate()
                .filter(|(i, (at, _))| *i >= keep || *at < cutoff)
                .map(|(_, (_, id))| id.clone())
                .collect();
            doomed
                .into_iter()
                .filter_map(|id| inner.jobs.remove(&id).map(|e| (id, e.dir)))
                .collect()
        };
        removed
            .into_iter()
            .map(|(id, dir)| {
                let _ = std::fs::remove_dir_all(dir);
                if let Some(shared) = &self.shared {
                    if let Err(err) = shared.forget(&id) {
                        tracing::warn!("job {id}: forgetting its record: {err}");
                    }
                }
                id
            })
            .collect()
    }
}

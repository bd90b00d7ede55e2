//! The server's jobs: records (what `GET /v1/videos/{id}` shows, persisted as `job.json` in
//! the job's directory), their event logs (what SSE streams replay), the bounded queue and the
//! cancellation tokens. One lock guards it all; workers block on a condition variable. In a
//! cluster the store holds the jobs this replica runs, writes their records and events to
//! Redis and reads the others' from there ([`SharedJobs`]).
//!
//! This file holds a submitted job's way through the queue; `queries` what the API reads, and
//! `lifetime` jobs adopted, released, restored after a restart or pruned.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::engine::{PromptPlan, Request};
use crate::progress::CancelToken;

pub use super::record::{JobError, JobEvent, JobProgress, JobRecord, JobStatus};

mod lifetime;
mod queries;
use super::shared::SharedJobs;

struct Entry {
    record: JobRecord,
    events: Vec<JobEvent>,
    cancel: CancelToken,
    dir: PathBuf,
    request: Option<Request>,
    /// The job's prompt plan, for steering.
    plan: Option<Arc<PromptPlan>>,
    /// When its record was last written.
    persisted_at: f64,
    /// Events logged for the job before this store held it (by other replicas).
    event_base: u64,
}

struct Inner {
    jobs: BTreeMap<String, Entry>,
    queue: VecDeque<String>,
    running: usize,
    next_id: u64,
    stopping: bool,
}

/// All jobs of one server.
pub struct Store {
    inner: Mutex<Inner>,
    work: Condvar,
    changed: watch::Sender<u64>,
    capacity: usize,
    data_dir: PathBuf,
    /// In a cluster: where records and events also go, and where the jobs not held here are
    /// read from.
    shared: Option<Arc<SharedJobs>>,
}

/// A job handed to a worker.
pub struct Assigned {
    pub id: String,
    pub request: Request,
    pub cancel: CancelToken,
    /// The job's directory (outputs, record, checkpoints).
    pub dir: PathBuf,
}

/// Why a job could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    QueueFull {
        capacity: usize,
    },
    Stopping,
    /// The cluster's queue (Redis) or store cannot be reached.
    Unavailable(String),
    /// The job's directory cannot be created.
    NoDirectory(String),
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Store {
    pub fn new(data_dir: &Path, capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                jobs: BTreeMap::new(),
                queue: VecDeque::new(),
                running: 0,
                next_id: 1,
                stopping: false,
            }),
            work: Condvar::new(),
            changed: watch::channel(0).0,
            capacity,
            data_dir: data_dir.to_owned(),
            shared: None,
        }
    }

    /// A store of one replica of a cluster: jobs run in directories under `data_dir` (local
    /// to this replica); records and events go to `shared`, where other replicas read them.
    pub fn shared(data_dir: &Path, capacity: usize, shared: Arc<SharedJobs>) -> Self {
        Self {
            shared: Some(shared),
            ..Self::new(data_dir, capacity)
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A new job id and its (created) directory.
    pub fn reserve(&self) -> Result<(String, PathBuf), Refused> {
        let no_directory = |err: std::io::Error| Refused::NoDirectory(err.to_string());
        std::fs::create_dir_all(&self.data_dir).map_err(no_directory)?;
        loop {
            let number = match &self.shared {
                // Replicas number their jobs from one counter.
                Some(shared) => shared
                    .next_number()
                    .map_err(|err| Refused::Unavailable(err.to_string()))?,
                None => {
                    let mut inner = self.lock();
                    inner.next_id += 1;
                    inner.next_id - 1
                }
            };
            let id = format!("video_{:x}_{number}", (now() * 1e3) as u64);
            // A directory left by an earlier server with the same name is skipped.
            let dir = self.data_dir.join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok((id, dir)),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(no_directory(err)),
            }
        }
    }

    /// Queues a validated request; refuses at once when the queue is full.
    pub fn submit(
        &self,
        record: JobRecord,
        dir: PathBuf,
        request: Request,
    ) -> Result<usize, Refused> {
        let inner = self.lock();
        if inner.stopping {
            return Err(Refused::Stopping);
        }
        if inner.queue.len() >= self.capacity {
            return Err(Refused::QueueFull {
                capacity: self.capacity,
            });
        }
        Ok(self.enqueue(inner, record, dir, request, false))
    }

    /// Puts a job at the end of the queue, logs its `queued` event and wakes a worker.
    fn enqueue(
        &self,
        mut inner: MutexGuard<'_, Inner>,
        record: JobRecord,
        dir: PathBuf,
        request: Request,
        resumed: bool,
    ) -> usize {
        let id = record.id.clone();
        inner.queue.push_back(id.clone());
        let position = inner.queue.len();
        let plan = prompt_plan(&request);
        let entry = Entry {
            record,
            events: Vec::new(),
            cancel: CancelToken::new(),
            dir,
            request: Some(request),
            plan,
            persisted_at: 0.0,
            event_base: 0,
        };
        inner.jobs.insert(id.clone(), entry);
        let data = match resumed {
            true => json!({"position": position, "resumed": true}),
            false => json!({"position": position}),
        };
        self.push_event(&mut inner, &id, "queued", data);
        self.persist(&mut inner, &id);
        drop(inner);
        self.work.notify_one();
        self.bump();
        position
    }

    /// Blocks until a job is queued (or the server stops: `None`).
    pub fn next_job(&self) -> Option<Assigned> {
        let mut inner = self.lock();
        loop {
            if inner.stopping {
                return None;
            }
            if let Some(id) = inner.queue.pop_front() {
                inner.running += 1;
                let entry = inner.jobs.get_mut(&id)?;
                entry.record.status = JobStatus::InProgress;
                entry.record.started_at = Some(now());
                let assigned = Assigned {
                    id: id.clone(),
                    request: entry.request.take()?,
                    cancel: entry.cancel.clone(),
                    dir: entry.dir.clone(),
                };
                self.push_event(&mut inner, &id, "in_progress", json!({}));
                self.persist(&mut inner, &id);
                drop(inner);
                self.bump();
                return Some(assigned);
            }
            inner = self.work.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Applies `update` to a job's record and logs `event` (if any).
    pub fn update(
        &self,
        id: &str,
        event: Option<(&str, Value)>,
        update: impl FnOnce(&mut JobRecord),
    ) {
        let mut inner = self.lock();
        let Some(entry) = inner.jobs.get_mut(id) else {
            return;
        };
        update(&mut entry.record);
        // Other replicas read the progress of a cluster's job from its record.
        let shared_progress = self.shared.is_some() && now() - entry.persisted_at >= 1.0;
        if let Some((name, data)) = event {
            self.push_event(&mut inner, id, name, data);
        }
        if shared_progress {
            self.persist(&mut inner, id);
        }
        drop(inner);
        self.bump();
    }

    /// Ends a job: its final status, event and error; the record is written to disk.
    pub fn finish(&self, id: &str, status: JobStatus, error: Option<JobError>) {
        let mut inner = self.lock();
        let Some(entry) = inner.jobs.get_mut(id) else {
            return;
        };
        let was_running = entry.record.status == JobStatus::InProgress;
        entry.record.status = status;
        entry.record.finished_at = Some(now());
        entry.record.error = error.clone();
        let data = match &error {
            Some(error) => json!({"error": error}),
            None => json!({"frames": entry.record.progress.final_frames}),
        };
        if was_running {
            inner.running = inner.running.saturating_sub(1);
        }
        self.push_event(&mut inner, id, status.name(), data);
        self.persist(&mut inner, id);
        drop(inner);
        self.bump();
    }

    /// Cancels a job: a queued one leaves the queue, a running one stops at its next model
    /// call. `None` for an unknown id; the status before.
    pub fn cancel(&self, id: &str) -> Option<JobStatus> {
        let mut inner = self.lock();
        let status = inner.jobs.get(id)?.record.status;
        match status {
            JobStatus::Queued => {
                inner.queue.retain(|q| q != id);
                drop(inner);
                self.finish(id, JobStatus::Cancelled, None);
            }
            JobStatus::InProgress => inner.jobs.get(id)?.cancel.cancel(),
            _ => {}
        }
        Some(status)
    }

    /// Changes the prompt of the chunks not started yet: `Ok(from_frame)`, or the status of a
    /// job that cannot change any more (`None` for an unknown id).
    pub fn steer(&self, id: &str, prompt: &str) -> Option<Result<usize, JobStatus>> {
        let mut inner = self.lock();
        let entry = inner.jobs.get(id)?;
        let status = entry.record.status;
        let Some(plan) = entry.plan.clone().filter(|_| !status.is_terminal()) else {
            return Some(Err(status));
        };
        let from = plan.steer(prompt);
        self.push_event(
            &mut inner,
            id,
            "prompt_changed",
            json!({"from_frame": from, "prompt": prompt}),
        );
        drop(inner);
        self.bump();
        Some(Ok(from))
    }

    /// Waits for any change (an event, a status) or a stop.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn is_stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Stops handing out jobs and cancels the queued ones; running jobs go on.
    pub fn stop_accepting(&self) {
        let queued: Vec<String> = {
            let mut inner = self.lock();
            inner.stopping = true;
            inner.queue.drain(..).collect()
        };
        for id in queued {
            self.finish(&id, JobStatus::Cancelled, None);
        }
        self.work.notify_all();
        self.bump();
    }

    pub fn running(&self) -> usize {
        self.lock().running
    }

    /// Cancels every running job (after the shutdown grace period).
    pub fn cancel_running(&self) {
        let inner = self.lock();
        for entry in inner.jobs.values() {
            if entry.record.status == JobStatus::InProgress {
                entry.cancel.cancel();
            }
        }
    }
}

/// The prompt plan a running job reads, which steering changes.
fn prompt_plan(request: &Request) -> Option<Arc<PromptPlan>> {
    match request {
        Request::Generate(r) => r.prompt_plan().cloned(),
        _ => None,
    }
}

impl Store {
    fn push_event(&self, inner: &mut Inner, id: &str, name: &str, data: Value) {
        if let Some(entry) = inner.jobs.get_mut(id) {
            let event = JobEvent {
                id: entry.event_base + entry.events.len() as u64 + 1,
                name: name.to_owned(),
                data,
            };
            if let Some(Err(err)) = self.shared.as_ref().map(|s| s.append_event(id, &event)) {
                tracing::warn!("job {id}: sharing event {}: {err}", event.id);
            }
            entry.events.push(event);
        }
    }

    /// Writes the record: `job.json` (write then rename: a restarted server lists the job), or in
    /// a cluster the shared record.
    fn persist(&self, inner: &mut Inner, id: &str) {
        if let Some(entry) = inner.jobs.get_mut(id) {
            match &self.shared {
                Some(shared) => {
                    if let Err(err) = shared.write_record(&entry.record) {
                        tracing::warn!("job {id}: sharing its record: {err}");
                    }
                }
                None => entry.record.write_to(&entry.dir),
            }
            entry.persisted_at = now();
        }
    }
}

/// Persists a record now (status changes call this themselves).
pub fn persist_record(store: &Store, id: &str) {
    store.persist(&mut store.lock(), id);
}

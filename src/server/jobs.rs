//! The server's jobs: records (what `GET /v1/videos/{id}` shows, persisted as `job.json` in
//! the job's directory), their event logs (what SSE streams replay), the bounded queue and the
//! cancellation tokens. One lock guards it all; workers block on a condition variable. In a
//! cluster the store holds the jobs this replica runs, and reads the others' records from the
//! shared data directory.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::watch;

use std::sync::Arc;

use crate::engine::{PromptPlan, Request};
use crate::progress::CancelToken;

pub use super::record::{JobError, JobProgress, JobRecord, JobStatus};

/// One server-sent event of a job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobEvent {
    pub id: u64,
    pub name: String,
    pub data: Value,
}

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
    /// Replicas share the data directory: events are also appended to each job's
    /// `events.jsonl`, where other replicas read them.
    shared: bool,
}

/// All jobs of one server.
pub struct Store {
    inner: Mutex<Inner>,
    work: Condvar,
    changed: watch::Sender<u64>,
    capacity: usize,
    data_dir: PathBuf,
    /// Replicas share `data_dir`: jobs not held here are read from their records there.
    shared: bool,
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
    /// The cluster's queue (Redis) cannot be reached.
    Unavailable(String),
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
                shared: false,
            }),
            work: Condvar::new(),
            changed: watch::channel(0).0,
            capacity,
            data_dir: data_dir.to_owned(),
            shared: false,
        }
    }

    /// A store of one replica of a cluster: jobs other replicas hold are read from `data_dir`.
    pub fn shared(data_dir: &Path, capacity: usize) -> Self {
        let store = Self {
            shared: true,
            ..Self::new(data_dir, capacity)
        };
        store.lock().shared = true;
        store
    }

    /// Takes a job this replica claimed from the cluster's queue: it runs here now.
    pub fn adopt(&self, mut record: JobRecord, dir: PathBuf, request: Request) -> Assigned {
        let mut inner = self.lock();
        let id = record.id.clone();
        record.status = JobStatus::InProgress;
        record.started_at = record.started_at.or(Some(now()));
        let cancel = CancelToken::new();
        // Its events go on from those other replicas logged.
        let event_base = super::shared::read_events(&dir).last().map_or(0, |e| e.id);
        let entry = Entry {
            record,
            events: Vec::new(),
            cancel: cancel.clone(),
            dir: dir.clone(),
            request: None,
            plan: None,
            persisted_at: 0.0,
            event_base,
        };
        inner.jobs.insert(id.clone(), entry);
        inner.running += 1;
        push_event(&mut inner, &id, "in_progress", json!({}));
        persist(&mut inner, &id);
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

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A new job id and its (created) directory.
    pub fn reserve(&self) -> std::io::Result<(String, PathBuf)> {
        std::fs::create_dir_all(&self.data_dir)?;
        loop {
            let id = {
                let mut inner = self.lock();
                let id = format!("video_{:x}_{}", (now() * 1e3) as u64, inner.next_id);
                inner.next_id += 1;
                id
            };
            // Replicas share the data directory: a name another one took is skipped.
            let dir = self.data_dir.join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok((id, dir)),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err),
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
        let plan = match &request {
            Request::Generate(r) => r.prompt_plan().cloned(),
            _ => None,
        };
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
        push_event(&mut inner, &id, "queued", data);
        persist(&mut inner, &id);
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
                push_event(&mut inner, &id, "in_progress", json!({}));
                persist(&mut inner, &id);
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
        let shared_progress = self.shared && now() - entry.persisted_at >= 1.0;
        if let Some((name, data)) = event {
            push_event(&mut inner, id, name, data);
        }
        if shared_progress {
            persist(&mut inner, id);
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
        push_event(&mut inner, id, status.name(), data);
        persist(&mut inner, id);
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

    /// A job's record with its queue position.
    pub fn get(&self, id: &str) -> Option<(JobRecord, Option<usize>)> {
        let inner = self.lock();
        let Some(entry) = inner.jobs.get(id) else {
            let shared = self
                .shared
                .then(|| super::shared::read_record(&self.data_dir, id));
            return shared.flatten().map(|record| (record, None));
        };
        let record = entry.record.clone();
        let position = inner.queue.iter().position(|q| q == id).map(|p| p + 1);
        Some((record, position))
    }

    /// Records newest first, after `after` (an id), at most `limit`.
    pub fn list(&self, after: Option<&str>, limit: usize) -> (Vec<JobRecord>, bool) {
        let inner = self.lock();
        let on_disk = match self.shared {
            true => super::shared::all_records(&self.data_dir),
            false => Vec::new(),
        };
        let local = inner.jobs.values().map(|e| &e.record);
        let shared = on_disk.iter().filter(|r| !inner.jobs.contains_key(&r.id));
        let mut records: Vec<&JobRecord> = local.chain(shared).collect();
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

    /// Events after `after`, and whether the job has ended.
    pub fn events_after(&self, id: &str, after: Option<u64>) -> Option<(Vec<JobEvent>, bool)> {
        let inner = self.lock();
        let Some(entry) = inner.jobs.get(id) else {
            // Another replica's job: its log in the shared directory.
            let record = self
                .shared
                .then(|| super::shared::read_record(&self.data_dir, id))??;
            let events = super::shared::read_events(&self.data_dir.join(id))
                .into_iter()
                .filter(|e| after.is_none_or(|a| e.id > a))
                .collect();
            return Some((events, record.status.is_terminal()));
        };
        let newer = |e: &JobEvent| after.is_none_or(|a| e.id > a);
        // A job continued here: the events other replicas logged come first.
        let earlier = entry.event_base > 0 && after.is_none_or(|a| a < entry.event_base);
        let mut events: Vec<JobEvent> = match earlier {
            true => super::shared::read_events(&entry.dir)
                .into_iter()
                .filter(|e| e.id <= entry.event_base && newer(e))
                .collect(),
            false => Vec::new(),
        };
        events.extend(entry.events.iter().filter(|e| newer(e)).cloned());
        Some((events, entry.record.status.is_terminal()))
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
        push_event(
            &mut inner,
            id,
            "prompt_changed",
            json!({"from_frame": from, "prompt": prompt}),
        );
        drop(inner);
        self.bump();
        Some(Ok(from))
    }

    pub fn job_dir(&self, id: &str) -> Option<(PathBuf, JobStatus)> {
        let inner = self.lock();
        match inner.jobs.get(id) {
            Some(entry) => Some((entry.dir.clone(), entry.record.status)),
            None if self.shared => super::shared::read_record(&self.data_dir, id)
                .map(|record| (self.data_dir.join(id), record.status)),
            None => None,
        }
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
        push_event(&mut inner, &id, &name, data);
    }

    /// Forgets finished jobs beyond `keep` (newest kept) or older than `max_age` seconds, and
    /// deletes their directories (the server made every file in them).
    pub fn prune(&self, keep: usize, max_age: f64) {
        let removed: Vec<PathBuf> = {
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
                .iter()
                .filter_map(|id| inner.jobs.remove(id).map(|e| e.dir))
                .collect()
        };
        for dir in removed {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn push_event(inner: &mut Inner, id: &str, name: &str, data: Value) {
    let shared = inner.shared;
    if let Some(entry) = inner.jobs.get_mut(id) {
        let event = JobEvent {
            id: entry.event_base + entry.events.len() as u64 + 1,
            name: name.to_owned(),
            data,
        };
        if shared {
            super::shared::append_event(&entry.dir, &event);
        }
        entry.events.push(event);
    }
}

/// Writes `job.json` (write then rename): a restarted server lists the job.
fn persist(inner: &mut Inner, id: &str) {
    if let Some(entry) = inner.jobs.get_mut(id) {
        super::shared::write_record(&entry.dir, &entry.record);
        entry.persisted_at = now();
    }
}

/// Persists a record now (status changes call this themselves).
pub fn persist_record(store: &Store, id: &str) {
    persist(&mut store.lock(), id);
}

//! Workers: each owns one [`Engine`] (its own copy of every session), loads it before the
//! server reports ready, and runs queued jobs one at a time. A panic inside a job fails that
//! job; the worker reopens its engine and goes on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::json;

use crate::engine::{
    Engine, EngineError, ErrorKind, GenerateParams, GenerateRequest, JobDir, Request,
    RuntimeSettings,
};
use crate::models::GraphPlacement;
use crate::progress::{ProgressEvent, ProgressSink, Stage};

use super::jobs::{Assigned, JobError, JobStatus, Store};
use super::metrics::Metrics;
use super::replica::{self, Cluster, Lease};

/// What workers share with the HTTP side.
pub struct Workers {
    pub ready: AtomicUsize,
    pub count: usize,
    pub placements: std::sync::Mutex<Vec<GraphPlacement>>,
    pub load_error: std::sync::Mutex<Option<String>>,
}

/// Starts `count` workers over the model set in `models`; a job running longer than
/// `max_job` is stopped (its frames kept) and fails with type `timeout`.
pub fn spawn(
    count: usize,
    models: PathBuf,
    settings: RuntimeSettings,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    max_job: Option<std::time::Duration>,
    cluster: Option<Arc<Cluster>>,
) -> (Arc<Workers>, Vec<JoinHandle<()>>) {
    let workers = Arc::new(Workers {
        ready: AtomicUsize::new(0),
        count,
        placements: std::sync::Mutex::new(Vec::new()),
        load_error: std::sync::Mutex::new(None),
    });
    let handles = (0..count)
        .map(|index| {
            let (models, settings) = (models.clone(), settings.clone());
            let (store, metrics, workers) = (store.clone(), metrics.clone(), workers.clone());
            let cluster = cluster.clone();
            std::thread::Builder::new()
                .name(format!("st2v-worker-{index}"))
                .spawn(move || {
                    let shared = Shared {
                        store: &store,
                        metrics: &metrics,
                        workers: &workers,
                        cluster: cluster.as_ref(),
                    };
                    work(&models, &settings, &shared, max_job)
                })
                .expect("a worker thread starts")
        })
        .collect();
    (workers, handles)
}

/// Opens an engine, loads every graph a full job needs and warms them with one short run
/// (one step per stage, frames discarded): ONNX Runtime plans and allocates on a session's
/// first run, which the first user's job should not pay for.
fn open_engine(
    models: &std::path::Path,
    settings: &RuntimeSettings,
    scratch: &std::path::Path,
) -> Result<Engine, EngineError> {
    let mut engine = Engine::open(models, settings.clone())?;
    let mut params = GenerateParams::new("warm-up", scratch.join("warmup.mp4"));
    params.stage1_steps = Some(1);
    params.streaming.steps = Some(1);
    if let Some(enhance) = params.enhance.as_mut() {
        enhance.steps = Some(1);
    }
    if crate::models::lacks_enhancer(engine.model_set()) {
        params.enhance = None; // a stage-2 set: nothing of stage 3 to warm
    }
    let request: Request = GenerateRequest::new(&params, engine.model_set())?.into();
    let discard = |_: &crate::video::Frame| -> Result<(), crate::video::VideoError> { Ok(()) };
    let (mut video, mut preview) = (discard, discard);
    let outputs = crate::pipeline::Outputs {
        video: &mut video,
        preview: Some(&mut preview),
    };
    let cancel = crate::progress::CancelToken::new();
    engine.run(&request, outputs, &crate::progress::NoProgress, &cancel)?;
    Ok(engine)
}

/// What a worker shares with the server: the jobs, the metrics, the workers' state and, in a
/// cluster, what the replicas share.
struct Shared<'a> {
    store: &'a Arc<Store>,
    metrics: &'a Metrics,
    workers: &'a Workers,
    cluster: Option<&'a Arc<Cluster>>,
}

impl Shared<'_> {
    /// The next job: from the local queue, or in a cluster from the shared one (with its lease).
    fn next_job(&self, set: &crate::manifest::ModelSet) -> Option<(Assigned, Option<Lease>)> {
        match self.cluster {
            None => self.store.next_job().map(|job| (job, None)),
            Some(cluster) => replica::next_job(cluster, self.store, set).map(|(j, l)| (j, Some(l))),
        }
    }
}

fn work(
    models: &std::path::Path,
    settings: &RuntimeSettings,
    shared: &Shared<'_>,
    max_job: Option<std::time::Duration>,
) {
    let Shared {
        store,
        metrics,
        workers,
        ..
    } = *shared;
    let scratch = store.data_dir().to_owned();
    let mut engine = match open_engine(models, settings, &scratch) {
        Ok(engine) => engine,
        Err(err) => {
            tracing::error!("a worker could not load the model set: {err}");
            *workers.load_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(err.to_string());
            return;
        }
    };
    *workers.placements.lock().unwrap_or_else(|p| p.into_inner()) = engine.placements();
    workers.ready.fetch_add(1, Ordering::SeqCst);
    while let Some((job, lease)) = shared.next_job(engine.model_set()) {
        let progress = JobProgressSink {
            store,
            metrics,
            id: &job.id,
            started: std::time::Instant::now(),
            last: std::cell::Cell::new(std::time::Instant::now()),
            chunk_start: Default::default(),
        };
        let timer = max_job.map(|limit| Timeout::start(limit, job.cancel.clone()));
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            failpoint(&job.request);
            run_job(&mut engine, &job, &progress, shared.cluster)
        }));
        let timed_out = timer.is_some_and(|t| t.stop());
        // In a cluster: a job another replica took over is its to finish; one this replica
        // stopped because it is shutting down is left for another one to continue.
        let held = lease.map(Lease::end);
        let stopped_here = matches!(&outcome, Ok(Err(e)) if e.kind() == ErrorKind::Cancelled)
            && store.is_stopping();
        if matches!(held, Some(None)) || (held.is_some() && stopped_here) {
            store.release(&job.id);
            continue;
        }
        // The files go to the cluster's store before the record says the job ended.
        let stored = match shared.cluster {
            Some(cluster) => cluster.push(&job.id, &job.dir, true),
            None => Ok(()),
        };
        if let Err(err) = &stored {
            tracing::warn!("job {}: storing its files: {err}", job.id);
        }
        match outcome {
            Ok(Ok(_)) if stored.is_err() => {
                let error = JobError {
                    kind: "store_unavailable".into(),
                    message: format!(
                        "the video was made but could not be copied to the shared store ({}); \
                         its frames are kept on replica {}",
                        stored.as_ref().err().map(|e| chain(e)).unwrap_or_default(),
                        shared.cluster.map_or("", |c| c.queue.consumer()),
                    ),
                };
                store.finish(&job.id, JobStatus::Failed, Some(error));
                metrics.job_finished("failed", Some("store_unavailable"));
            }
            Ok(Err(err)) if timed_out && err.kind() == ErrorKind::Cancelled => {
                let limit = max_job.unwrap_or_default().as_secs_f64();
                let error = JobError {
                    kind: "timeout".into(),
                    message: format!(
                        "the job ran longer than the server's limit of {limit} s; {}",
                        chain(&err)
                    ),
                };
                store.finish(&job.id, JobStatus::Failed, Some(error));
                metrics.job_finished("failed", Some("timeout"));
            }
            Ok(Ok(written)) => {
                store.update(&job.id, None, |r| {
                    r.progress.final_frames = written.output.frames
                });
                store.finish(&job.id, JobStatus::Completed, None);
                metrics.job_finished("completed", None);
            }
            Ok(Err(err)) if err.kind() == ErrorKind::Cancelled => {
                store.finish(&job.id, JobStatus::Cancelled, None);
                metrics.job_finished("cancelled", None);
            }
            Ok(Err(err)) => {
                let kind = error_type(err.kind());
                let error = JobError {
                    kind: kind.to_owned(),
                    message: chain(&err),
                };
                store.finish(&job.id, JobStatus::Failed, Some(error));
                metrics.job_finished("failed", Some(kind));
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a panic".into());
                let error = JobError {
                    kind: "internal_error".into(),
                    message: format!("the job panicked: {message}"),
                };
                store.finish(&job.id, JobStatus::Failed, Some(error));
                metrics.job_finished("failed", Some("internal_error"));
                // The engine's state is unknown after a panic: start over.
                match open_engine(models, settings, &scratch) {
                    Ok(fresh) => engine = fresh,
                    Err(err) => {
                        tracing::error!("a worker could not reload after a panic: {err}");
                        workers.ready.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
        // The record is final: the job leaves the cluster's queue.
        if let Some(Some((queue, claimed))) = held {
            if let Err(err) = queue.finish(&claimed) {
                tracing::warn!("job {}: acknowledging it: {err}", job.id);
            }
        }
    }
}

/// Runs a job into its directory, with checkpoints where it has a checkpoint directory (every
/// job the API created; a resumed one continues from its last checkpoint).
fn run_job(
    engine: &mut Engine,
    job: &Assigned,
    progress: &JobProgressSink<'_>,
    cluster: Option<&Arc<Cluster>>,
) -> Result<crate::engine::WrittenFiles, EngineError> {
    let Ok(mut dir) = JobDir::open(&super::resume_dir(&job.dir)) else {
        return engine.run_to_files(&job.request, progress, &job.cancel);
    };
    // In a cluster every checkpoint is copied to the shared store with the frames it vouches
    // for: a replica that takes the job over continues from there.
    if let Some(cluster) = cluster {
        let (cluster, id, job_dir) = (cluster.clone(), job.id.clone(), job.dir.clone());
        dir.after_save(move || {
            if let Err(err) = cluster.push(&id, &job_dir, false) {
                tracing::warn!("job {id}: copying its checkpoint to the shared store: {err}");
            }
        });
    }
    let result = engine.run_job(&job.request, &mut dir, progress, &job.cancel);
    let concluded = match &result {
        Ok(written) => dir.conclude(
            crate::engine::JobStatus::Finished,
            Some(written.output.frames),
            None,
        ),
        Err(err) => dir.conclude(
            crate::engine::JobStatus::Stopped,
            None,
            Some(err.to_string()),
        ),
    };
    if let Err(err) = concluded {
        tracing::warn!(
            "job {}: recording its end in its checkpoint directory: {err}",
            job.id
        );
    }
    result
}

/// Cancels a job when its time is up, unless stopped first.
struct Timeout {
    done: std::sync::mpsc::Sender<()>,
    fired: Arc<std::sync::atomic::AtomicBool>,
}

impl Timeout {
    fn start(limit: std::time::Duration, cancel: crate::progress::CancelToken) -> Self {
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = fired.clone();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                flag.store(true, Ordering::SeqCst);
                cancel.cancel();
            }
        });
        Self { done, fired }
    }

    /// Stops the timer; whether it had fired.
    fn stop(self) -> bool {
        let _ = self.done.send(());
        self.fired.load(Ordering::SeqCst)
    }
}

/// Test builds only: `ST2V_FAILPOINT=panic:<prompt>` makes a job with that prompt panic, so
/// the tests can check that a panic fails one job and the server goes on.
fn failpoint(request: &Request) {
    if cfg!(debug_assertions) {
        if let (Ok(spec), Request::Generate(r)) = (std::env::var("ST2V_FAILPOINT"), request) {
            if spec.strip_prefix("panic:") == Some(r.text().prompt.as_str()) {
                panic!("failpoint for prompt {:?}", r.text().prompt);
            }
        }
    }
}

/// The stable error type of a failed job.
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "invalid_request",
        ErrorKind::Unavailable => "provider_unavailable",
        ErrorKind::Failed => "generation_failed",
        ErrorKind::Cancelled => "cancelled",
    }
}

/// An error and its causes on one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Turns engine progress into the job's record, its events and the metrics.
struct JobProgressSink<'a> {
    store: &'a Store,
    metrics: &'a Metrics,
    id: &'a str,
    started: std::time::Instant,
    last: std::cell::Cell<std::time::Instant>,
    /// When the previous chunk of each stage ended (or its stage started).
    chunk_start: std::cell::RefCell<std::collections::BTreeMap<&'static str, std::time::Instant>>,
}

impl ProgressSink for JobProgressSink<'_> {
    fn emit(&self, event: &ProgressEvent) {
        let now_instant = std::time::Instant::now();
        let since_last = now_instant
            .duration_since(self.last.replace(now_instant))
            .as_secs_f64();
        let store = self.store;
        match event {
            ProgressEvent::StageStarted {
                stage,
                chunks,
                steps,
            } => {
                let key = stage.key();
                self.chunk_start.borrow_mut().insert(key, now_instant);
                store.update(
                    self.id,
                    Some((
                        "stage_started",
                        json!({"stage": stage.key(), "chunks": chunks, "steps": steps}),
                    )),
                    |r| r.progress.stage = Some(key.into()),
                );
            }
            ProgressEvent::Step {
                stage,
                chunk,
                step,
                steps,
            } => {
                self.metrics.observe("step", stage.key(), since_last);
                store.update(
                    self.id,
                    Some((
                        "step",
                        json!({"stage": stage.key(), "chunk": chunk, "step": step, "steps": steps}),
                    )),
                    |r| {
                        r.progress.stage = Some(stage.key().into());
                        (r.progress.chunk, r.progress.step, r.progress.steps) =
                            (*chunk, *step, *steps);
                    },
                );
            }
            ProgressEvent::ChunkDone {
                stage,
                chunk,
                frames,
            } => {
                let key = stage.key();
                let mut starts = self.chunk_start.borrow_mut();
                let since = starts.insert(key, now_instant).unwrap_or(self.started);
                self.metrics.observe(
                    "chunk",
                    key,
                    now_instant.duration_since(since).as_secs_f64(),
                );
                drop(starts);
                let variant = match stage {
                    Stage::Refinement => "final",
                    _ => "preview",
                };
                store.update(
                    self.id,
                    Some(("chunk_ready", json!({"stage": stage.key(), "chunk": chunk, "frames": frames, "variant": variant}))),
                    |r| {
                        if *stage != Stage::Refinement {
                            r.progress.preview_frames += frames;
                        }
                    },
                );
            }
            ProgressEvent::FramesWritten { total } => {
                let elapsed = self.started.elapsed().as_secs_f64();
                let first = *total == 1;
                if first {
                    self.metrics
                        .observe("time_to_first_frame", "final", elapsed);
                }
                store.update(self.id, None, |r| {
                    r.progress.final_frames = *total;
                    if first {
                        r.time_to_first_frame_s = Some(elapsed);
                    }
                });
            }
            ProgressEvent::StageFinished { stage, seconds } => {
                self.metrics.observe("stage", stage.key(), *seconds);
                store.update(
                    self.id,
                    Some((
                        "stage_finished",
                        json!({"stage": stage.key(), "seconds": seconds}),
                    )),
                    |r| {
                        r.timings.insert(stage.key().into(), *seconds);
                    },
                );
            }
            ProgressEvent::Warning { message } => {
                store.update(
                    self.id,
                    Some(("warning", json!({"message": message}))),
                    |_| {},
                );
            }
        }
    }
}

//! `st2v serve`: a video-generation server over the library [`crate::engine::Engine`].
//!
//! Jobs are validated into the same typed requests the CLI builds, queued in a bounded queue
//! (full: 429 with `Retry-After` at once) and run by `workers` threads, each owning one engine.
//! Every job writes into its own directory under the data directory (the server chooses every
//! name): `video.mp4` and `preview.mp4` (fragmented MP4, streamed while they grow), `job.json`
//! and its checkpoints (`resume/`). A restarted server lists jobs it finds there; those that
//! were queued or running continue from their last checkpoint. SIGTERM or Ctrl-C: stop
//! accepting, let running jobs finish for the grace period, then cancel them (their frames are
//! kept), exit 0.
//!
//! With `--queue redis://... --store DIR|s3://...` the server is one replica of a cluster
//! ([`cluster`], [`replica`]): jobs go into a queue every replica shares, their records and
//! events into the same Redis ([`shared`]), their files into a shared store ([`bucket`]), and a
//! replica that dies hands its jobs on.

pub mod api;
pub mod body;
pub mod bucket;
pub mod cluster;
pub mod content;
pub mod jobs;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod record;
pub mod replica;
pub mod shared;
pub mod worker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::engine::{EngineError, RuntimeSettings};
use crate::manifest::ModelSet;
use crate::video::partial_path;

use api::{error, App, CreateVideo};
use bucket::{Bucket, BucketError};
use cluster::{ClusterError, ClusterQueue};
use jobs::{JobError, JobRecord, JobStatus, Store};
use metrics::Metrics;
use replica::Cluster;
use shared::SharedJobs;

/// Request limits; a violation is a 422 naming the field, the limit and the value.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_frames: usize,
    pub max_steps: usize,
    pub max_prompt_bytes: usize,
    pub max_guidance: f32,
    pub max_body_bytes: usize,
    /// Entries of a prompt schedule.
    pub max_schedule: usize,
    /// Enhancer chunks per UNet call (each adds the activations of one chunk).
    pub max_enhance_batch: usize,
    /// Finished jobs kept (newest first) and their maximum age in seconds.
    pub keep_jobs: usize,
    pub keep_seconds: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frames: 1200,
            max_steps: 100,
            max_prompt_bytes: 2000,
            max_guidance: 30.0,
            max_body_bytes: 64 * 1024,
            max_schedule: 64,
            max_enhance_batch: 16,
            keep_jobs: 200,
            keep_seconds: 7.0 * 24.0 * 3600.0,
        }
    }
}

impl Limits {
    /// The violation of a limit, as the response to send (`None` within every limit).
    pub fn check(&self, body: &CreateVideo) -> Option<Response> {
        let over = |field: &str, limit: f64, value: f64| {
            Some(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "limit_exceeded",
                format!("{field}: the server's limit is {limit}, got {value}"),
                json!({"field": field, "limit": limit, "value": value}),
            ))
        };
        if body.prompts.len() > self.max_schedule {
            return over(
                "prompts",
                self.max_schedule as f64,
                body.prompts.len() as f64,
            );
        }
        let scheduled = body.prompts.iter().map(|e| e.prompt.len());
        let prompt_bytes = scheduled
            .chain([body.prompt.len(), body.negative_prompt.len()])
            .max()
            .unwrap_or(0);
        if prompt_bytes > self.max_prompt_bytes {
            return over("prompt", self.max_prompt_bytes as f64, prompt_bytes as f64);
        }
        if let Some(batch) = body.enhance_batch.filter(|b| *b > self.max_enhance_batch) {
            return over("enhance_batch", self.max_enhance_batch as f64, batch as f64);
        }
        if let Some(frames) = body.frames.filter(|f| *f > self.max_frames) {
            return over("frames", self.max_frames as f64, frames as f64);
        }
        let steps = [
            ("steps", body.steps),
            ("stage1_steps", body.stage1_steps),
            ("enhance_steps", body.enhance_steps),
        ];
        for (field, steps) in steps {
            if let Some(steps) = steps.filter(|s| *s > self.max_steps) {
                return over(field, self.max_steps as f64, steps as f64);
            }
        }
        if let Some(guidance) = &body.guidance {
            for (field, scale) in [
                ("guidance.scale", guidance.scale),
                ("guidance.text_scale", guidance.text_scale),
                ("guidance.anchor_scale", guidance.anchor_scale),
            ] {
                if let Some(scale) = scale.filter(|s| s.abs() > self.max_guidance) {
                    return over(field, f64::from(self.max_guidance), f64::from(scale));
                }
            }
        }
        None
    }
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub models: PathBuf,
    pub settings: RuntimeSettings,
    pub workers: usize,
    pub queue_capacity: usize,
    pub data_dir: PathBuf,
    pub api_key: Option<String>,
    pub limits: Limits,
    /// How long running jobs may go on after SIGTERM before they are cancelled.
    pub grace: Duration,
    /// The longest a job may run.
    pub max_job: Option<Duration>,
    /// Run as one replica of a cluster (`--queue redis://...`); `None`: a single server.
    pub cluster: Option<ClusterOptions>,
}

/// A replica's place in a cluster: the shared Redis and store, its name, the lease, the global
/// bound.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub redis_url: String,
    /// Where the jobs' files go: a directory or `s3://BUCKET[/PREFIX]`.
    pub store: String,
    pub replica: String,
    pub lease: Duration,
    /// Jobs admitted and not finished, across every replica (`queue_capacity` is unused).
    pub bound: usize,
}

/// Errors that keep the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--queue: {0}")]
    Queue(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] BucketError),
}

/// Serves until SIGTERM or Ctrl-C; `on_listening` gets the bound address (port 0 picks one).
pub fn serve(
    options: ServeOptions,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let set = ModelSet::open(&options.models).map_err(EngineError::from)?;
    let cluster = options.cluster.as_ref().map(join_cluster).transpose()?;
    std::fs::create_dir_all(&options.data_dir).map_err(|source| ServeError::Io {
        what: format!("creating the data directory {}", options.data_dir.display()),
        source,
    })?;
    let (store, cluster) = match cluster {
        // Replicas find one another's jobs through the shared queue, not at start-up.
        Some(cluster) => {
            let store = Store::shared(
                &options.data_dir,
                options.queue_capacity,
                cluster.jobs.clone(),
            );
            (Arc::new(store), Some(Arc::new(cluster)))
        }
        None => {
            let store = Arc::new(Store::new(&options.data_dir, options.queue_capacity));
            restore_jobs(&store, &options.data_dir, &set);
            (store, None)
        }
    };
    let metrics = Arc::new(Metrics::default());
    let (workers, handles) = worker::spawn(
        options.workers,
        options.models.clone(),
        options.settings.clone(),
        store.clone(),
        metrics.clone(),
        options.max_job,
        cluster.clone(),
    );
    let app = Arc::new(App {
        store: store.clone(),
        metrics,
        workers,
        set,
        limits: options.limits.clone(),
        api_key: options.api_key.clone(),
        cluster,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ServeError::Io {
            what: "starting the async runtime".into(),
            source,
        })?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| ServeError::Io {
                what: format!("listening on {}", options.listen),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| ServeError::Io {
            what: "reading the bound address".into(),
            source,
        })?;
        on_listening(address);
        let shutdown_store = store.clone();
        axum::serve(listener, api::router(app))
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                tracing::warn!("shutting down: no new jobs; running jobs get the grace period");
                shutdown_store.stop_accepting();
            })
            .await
            .map_err(|source| ServeError::Io {
                what: "serving".into(),
                source,
            })
    })?;
    finish_running(&store, options.grace);
    for handle in handles {
        let _ = handle.join();
    }
    Ok(())
}

/// Connects to the cluster's Redis (queue, records, events) and opens its store.
fn join_cluster(options: &ClusterOptions) -> Result<Cluster, ServeError> {
    let files = Bucket::open(&options.store)?;
    let queue = ClusterQueue::connect(
        &options.redis_url,
        options.replica.clone(),
        options.lease,
        options.bound,
    )?;
    let jobs = SharedJobs::connect(&options.redis_url)?;
    files.check()?;
    Ok(Cluster {
        queue: Arc::new(queue),
        jobs: Arc::new(jobs),
        files: Arc::new(files),
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// Lets running jobs finish within `grace`, then cancels them (they keep their frames).
fn finish_running(store: &Store, grace: Duration) {
    let deadline = std::time::Instant::now() + grace;
    while store.running() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    store.cancel_running();
}

/// Where a job's checkpoints go inside its directory.
pub fn resume_dir(job_dir: &Path) -> PathBuf {
    job_dir.join("resume")
}

/// Lists the jobs a previous run of the server left in `data_dir`. A job that was queued or
/// running when that server died is queued again and continues from its last checkpoint (its
/// video ends up identical to an uninterrupted run's); one that cannot be (no checkpoint
/// directory, a request this model set refuses) is failed, its partial videos renamed into
/// place.
fn restore_jobs(store: &Store, data_dir: &Path, set: &ModelSet) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for dir in entries.filter_map(Result::ok).map(|e| e.path()) {
        let Ok(text) = std::fs::read_to_string(dir.join("job.json")) else {
            continue;
        };
        let Ok(mut record) = serde_json::from_str::<JobRecord>(&text) else {
            continue;
        };
        let id = record.id.clone();
        if !record.status.is_terminal() {
            match resumable(&dir, set) {
                Ok(request) => {
                    store.requeue(record, dir, request);
                    jobs::persist_record(store, &id);
                    continue;
                }
                Err(reason) => {
                    for name in ["video.mp4", "preview.mp4"] {
                        let partial = partial_path(&dir.join(name));
                        if partial.exists() {
                            let _ = std::fs::rename(&partial, dir.join(name));
                        }
                    }
                    record.status = JobStatus::Failed;
                    record.finished_at = Some(jobs::now());
                    record.error = Some(JobError {
                        kind: "server_stopped".into(),
                        message: format!(
                            "the server stopped while this job ran and it cannot continue \
                             ({reason}); the frames written before are kept"
                        ),
                    });
                }
            }
        }
        store.restore(record, dir);
        jobs::persist_record(store, &id);
    }
}

/// The request of a job a killed server left unfinished, from its checkpoint directory.
pub(crate) fn resumable(dir: &Path, set: &ModelSet) -> Result<crate::engine::Request, String> {
    let job = crate::engine::JobDir::open(&resume_dir(dir)).map_err(|e| e.to_string())?;
    let mut params = job.record().request.clone();
    // Its outputs exist by now: they are continued, not replaced.
    params.output.force = true;
    // In `dir`, wherever the job started (another replica's data directory).
    for path in std::iter::once(&mut params.output.out).chain(params.preview_out.as_mut()) {
        if let Some(name) = path.file_name() {
            *path = dir.join(name);
        }
    }
    let request = crate::engine::GenerateRequest::new(&params, set).map_err(|e| e.to_string())?;
    Ok(request.into())
}

//! `st2v serve` flags, with those of a replica of a cluster.

use std::path::PathBuf;

use clap::Args;

use crate::args::RuntimeArgs;

#[derive(Debug, Clone, Args)]
#[command(after_help = "\
API (JSON; OpenAI /v1/videos naming):
  POST   /v1/videos                 {prompt, frames, seed, steps, ...} -> 202 {id, urls} (429 when full)
  GET    /v1/videos[?after=ID&limit=N], /v1/videos/ID
  GET    /v1/videos/ID/events       server-sent events (Last-Event-ID resumes)
  GET    /v1/videos/ID/content?variant=preview|final   fragmented MP4, streamed while it grows
  DELETE /v1/videos/ID              cancel (finished frames stay downloadable)
  GET    /healthz /readyz /metrics /v1/models, and / (a page that plays the preview live)

Examples:
  st2v serve --models models/tiny --listen 127.0.0.1:8080 --data st2v-data
  st2v serve --queue redis://10.0.0.5:6379 --store s3://videos/st2v ...   (one replica of a
    cluster: run one per machine; a replica that dies hands its jobs to the others)")]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(
        long,
        env = "ST2V_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: String,
    /// Directory for the jobs' videos and records (created if missing); in a cluster, this
    /// replica's working directory (the shared copies go to --store).
    #[arg(
        long,
        env = "ST2V_DATA",
        default_value = "st2v-data",
        value_name = "DIR"
    )]
    pub data: PathBuf,
    /// Independent engines, each with its own copy of every session (memory: one model set
    /// per worker).
    #[arg(long, env = "ST2V_WORKERS", default_value_t = 1, value_name = "N")]
    pub workers: usize,
    /// Jobs that may wait for a worker (more are refused with 429); or `redis://HOST:PORT`:
    /// run as one replica of a cluster sharing that Redis and --store (see --queue-bound).
    #[arg(
        long,
        env = "ST2V_QUEUE",
        default_value = "8",
        value_name = "N|redis://HOST:PORT"
    )]
    pub queue: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Require `Authorization: Bearer KEY` on /v1/*.
    #[arg(long, env = "ST2V_API_KEY", value_name = "KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Largest `frames` a request may ask for.
    #[arg(
        long,
        env = "ST2V_MAX_FRAMES",
        default_value_t = 1200,
        value_name = "N"
    )]
    pub max_frames: usize,
    /// Largest step count (each of steps, stage1_steps, enhance_steps).
    #[arg(long, env = "ST2V_MAX_STEPS", default_value_t = 100, value_name = "N")]
    pub max_steps: usize,
    /// Largest prompt, in bytes.
    #[arg(
        long,
        env = "ST2V_MAX_PROMPT_BYTES",
        default_value_t = 2000,
        value_name = "N"
    )]
    pub max_prompt_bytes: usize,
    /// Largest request body, in bytes.
    #[arg(
        long,
        env = "ST2V_MAX_BODY_BYTES",
        default_value_t = 65536,
        value_name = "N"
    )]
    pub max_body_bytes: usize,
    /// Finished jobs kept (newest first); older ones and their files are deleted.
    #[arg(long, env = "ST2V_KEEP_JOBS", default_value_t = 200, value_name = "N")]
    pub keep_jobs: usize,
    /// Finished jobs older than this are deleted.
    #[arg(
        long,
        env = "ST2V_KEEP_HOURS",
        default_value_t = 168.0,
        value_name = "HOURS"
    )]
    pub keep_hours: f64,
    /// Longest a job may run (seconds); it is then stopped, keeping its frames, and fails
    /// with type `timeout`. 0: no limit.
    #[arg(
        long,
        env = "ST2V_MAX_JOB_SECONDS",
        default_value_t = 0,
        value_name = "S"
    )]
    pub max_job_seconds: u64,
    /// Seconds running jobs may go on after SIGTERM before they are cancelled.
    #[arg(
        long,
        env = "ST2V_GRACE_SECONDS",
        default_value_t = 30,
        value_name = "S"
    )]
    pub grace_seconds: u64,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `st2v serve --queue redis://...`: one replica of a cluster.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// In a cluster: where every replica finds the jobs' videos and checkpoints: a directory
    /// all of them mount, or `s3://BUCKET[/PREFIX]` (credentials, region and endpoint from
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL; AWS_ALLOW_HTTP=true
    /// for a plain-HTTP S3-compatible server).
    #[arg(long, env = "ST2V_STORE", value_name = "DIR|s3://BUCKET[/PREFIX]")]
    pub store: Option<String>,
    /// In a cluster: jobs admitted and not finished across every replica; more get 429.
    #[arg(long, env = "ST2V_QUEUE_BOUND", default_value_t = 8, value_name = "N")]
    pub queue_bound: usize,
    /// In a cluster: a replica that has not renewed its job's lease for this long is taken for
    /// dead, and another replica continues the job from its last checkpoint.
    #[arg(
        long,
        env = "ST2V_LEASE_SECONDS",
        default_value_t = 30.0,
        value_name = "S"
    )]
    pub lease_seconds: f64,
    /// In a cluster: this replica's name (unique) [default: host name and process id].
    #[arg(long, env = "ST2V_REPLICA", value_name = "NAME")]
    pub replica: Option<String>,
}

//! `st2v serve`: flags to [`ServeOptions`]; prints where it listens.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use streamingt2v::server::{serve, ClusterOptions, Limits, ServeOptions};

use crate::args_serve::ServeArgs;
use crate::config::{models_dir, runtime_settings};

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let listen: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen: expected an address like 127.0.0.1:8080, got `{}`",
            args.listen
        )
    })?;
    let (queue_capacity, cluster) = queue(args)?;
    if args.workers == 0 {
        anyhow::bail!("--workers: expected at least 1, got 0");
    }
    let options = ServeOptions {
        listen,
        models: models_dir(&args.runtime.models)?,
        settings: runtime_settings(&args.runtime.engine)?,
        workers: args.workers,
        queue_capacity,
        data_dir: args.data.clone(),
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        limits: Limits {
            max_frames: args.max_frames,
            max_steps: args.max_steps,
            max_prompt_bytes: args.max_prompt_bytes,
            max_body_bytes: args.max_body_bytes,
            keep_jobs: args.keep_jobs,
            keep_seconds: args.keep_hours * 3600.0,
            ..Limits::default()
        },
        grace: Duration::from_secs(args.grace_seconds),
        max_job: (args.max_job_seconds > 0).then(|| Duration::from_secs(args.max_job_seconds)),
        cluster,
    };
    let open = options.api_key.is_none();
    let replica = options.cluster.as_ref().map(|c| c.replica.clone());
    serve(options, |address| {
        eprintln!("st2v serve: listening on http://{address}");
        if let Some(cluster) = &replica {
            eprintln!(
                "st2v serve: replica {cluster} of the cluster at {}",
                args.queue
            );
        }
        if open && !address.ip().is_loopback() {
            eprintln!("warning: no --api-key and not on loopback: anyone who reaches {address} can submit jobs");
        } else if open {
            eprintln!("note: no --api-key: only this machine can reach it (loopback)");
        }
    })?;
    eprintln!("st2v serve: stopped");
    Ok(())
}

/// `--queue N` (a single server's bound) or `--queue redis://...` (a replica of a cluster).
fn queue(args: &ServeArgs) -> anyhow::Result<(usize, Option<ClusterOptions>)> {
    if args.queue.starts_with("redis://") || args.queue.starts_with("rediss://") {
        let c = &args.cluster;
        if c.queue_bound == 0 {
            anyhow::bail!("--queue-bound: expected at least 1, got 0");
        }
        let lease = Duration::try_from_secs_f64(c.lease_seconds)
            .ok()
            .filter(|l| !l.is_zero())
            .with_context(|| {
                format!(
                    "--lease-seconds: expected a positive number, got {}",
                    c.lease_seconds
                )
            })?;
        let replica = c.replica.clone().unwrap_or_else(default_replica_name);
        let store = c.store.clone().context(
            "--queue redis://... needs --store DIR|s3://BUCKET[/PREFIX]: where the replicas \
             keep the jobs' videos and checkpoints (--data stays this replica's own)",
        )?;
        let cluster = ClusterOptions {
            redis_url: args.queue.clone(),
            store,
            replica,
            lease,
            bound: c.queue_bound,
        };
        return Ok((c.queue_bound, Some(cluster)));
    }
    if args.cluster.store.is_some() {
        anyhow::bail!(
            "--store: only for a replica of a cluster (--queue redis://HOST:PORT); a single \
             server keeps its jobs in --data"
        );
    }
    match args.queue.parse::<usize>() {
        Ok(n) if n > 0 => Ok((n, None)),
        _ => anyhow::bail!(
            "--queue: expected a number of jobs (at least 1) or redis://HOST:PORT, got `{}`",
            args.queue
        ),
    }
}

/// The host name and the process id: unique per replica.
fn default_replica_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "replica".into());
    format!("{host}-{}", std::process::id())
}

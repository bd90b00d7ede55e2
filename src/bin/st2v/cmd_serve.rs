//! `st2v serve`: flags to [`ServeOptions`]; prints where it listens.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use streamingt2v::server::{serve, Limits, ServeOptions};

use crate::args::ServeArgs;
use crate::config::{models_dir, runtime_settings};

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let listen: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen: expected an address like 127.0.0.1:8080, got `{}`",
            args.listen
        )
    })?;
    if args.workers == 0 || args.queue == 0 {
        anyhow::bail!("--workers and --queue: expected at least 1");
    }
    let options = ServeOptions {
        listen,
        models: models_dir(&args.runtime.models)?,
        settings: runtime_settings(&args.runtime.engine)?,
        workers: args.workers,
        queue_capacity: args.queue,
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
    };
    let open = options.api_key.is_none();
    serve(options, |address| {
        eprintln!("st2v serve: listening on http://{address}");
        if open && !address.ip().is_loopback() {
            eprintln!("warning: no --api-key and not on loopback: anyone who reaches {address} can submit jobs");
        } else if open {
            eprintln!("note: no --api-key: only this machine can reach it (loopback)");
        }
    })?;
    eprintln!("st2v serve: stopped");
    Ok(())
}

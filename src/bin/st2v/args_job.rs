//! Flags of resumable jobs: `generate --job-dir` and `st2v resume`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::args::RuntimeArgs;

#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// Run as a resumable job: its request and checkpoints go to DIR (created; it must not
    /// hold a job). A checkpoint follows every stage-2 chunk and, once stage 2 is done, every
    /// --checkpoint-interval of stage 3. `st2v resume DIR` continues the job after a kill, a
    /// crash or Ctrl-C and writes the same frames, bit for bit, as a run never stopped. Needs
    /// an MP4 or PNG output (a GIF cannot be continued).
    #[arg(long, value_name = "DIR")]
    pub job_dir: Option<PathBuf>,
    #[command(flatten)]
    pub interval: IntervalArg,
}

#[derive(Debug, Clone, Args)]
pub struct IntervalArg {
    /// Least seconds between two stage-3 checkpoints after stage 2 (each holds the enhancer's
    /// window of latents).
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub checkpoint_interval: f64,
}

impl IntervalArg {
    pub fn duration(&self) -> anyhow::Result<Duration> {
        Duration::try_from_secs_f64(self.checkpoint_interval).map_err(|_| {
            anyhow::anyhow!(
                "--checkpoint-interval: expected a number of seconds >= 0, got {}",
                self.checkpoint_interval
            )
        })
    }
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "The request is the job's own (DIR/job.json). The model set defaults to the one \
    the job started with; the runtime flags (--ep, --threads, ...) may differ from the first \
    run.\n\nExample:\n  st2v generate --prompt \"a cat\" --frames 240 --out cat.mp4 \
    --job-dir cat.job\n  (killed)\n  st2v resume cat.job"
)]
pub struct ResumeArgs {
    /// The job directory `st2v generate --job-dir` wrote.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub interval: IntervalArg,
    /// No progress bars.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Write progress events as JSON lines to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Replace an existing --events file.
    #[arg(long)]
    pub force: bool,
    /// Runtime flags; the model set defaults to the one the job started with.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

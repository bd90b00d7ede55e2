//! `st2v resume DIR`: continues a job `st2v generate --job-dir DIR` started, from its last
//! checkpoint. A finished job is left alone.

use streamingt2v::engine::{GenerateRequest, JobDir, JobStatus};

use crate::args_job::ResumeArgs;
use crate::job::{self, UiArgs};

pub fn run(args: &ResumeArgs) -> anyhow::Result<()> {
    let mut dir = JobDir::open(&args.dir)?;
    let record = dir.record().clone();
    if record.status == JobStatus::Finished {
        eprintln!(
            "job {} already finished ({} frames in {}); nothing to do",
            args.dir.display(),
            record.frames.unwrap_or(0),
            record.request.output.out.display()
        );
        return Ok(());
    }
    let models = args.runtime.models.models.clone().unwrap_or(record.models);
    let mut engine = job::open_engine(&args.runtime, &models)?;
    let mut params = record.request;
    // The job's own outputs exist by now: they are continued, not replaced.
    params.output.force = true;
    let request = GenerateRequest::new(&params, engine.model_set())?.into();
    dir.set_interval(args.interval.duration()?);
    dir.restart()?;
    let ui = UiArgs {
        quiet: args.quiet,
        events: args.events.as_deref(),
        force: args.force,
    };
    job::execute(&mut engine, &request, &ui, Some(&mut dir), |_, _| Ok(()))
}

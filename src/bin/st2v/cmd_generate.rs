//! `st2v generate`: text to video through stages 1, 2 and (unless `--no-enhance`, or the model
//! set has no enhancer) 3.

use std::path::Path;

use streamingt2v::engine::{Field, GenerateParams, GenerateRequest, JobDir, RequestError};

use crate::args::GenerateArgs;
use crate::config::models_dir;
use crate::job::UiArgs;
use crate::{cmd_eval, job};

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let mut params = GenerateParams {
        prompt: args.prompt.clone(),
        frames: args.frames,
        stage1_steps: args.stage1_steps,
        streaming: job::streaming_params(&args.streaming),
        enhance: job::stage3_params(&args.enhancer, args.no_enhance),
        output: job::output_params(&args.output),
        preview_out: args.preview_out.clone(),
        init_noise: args.init_noise.clone(),
        save_latents: args.save_latents.clone(),
        prompt_schedule: match &args.prompt_schedule {
            Some(path) => read_schedule(path)?,
            None => Vec::new(),
        },
        steerable: false,
    };
    if let Some(dir) = &args.job.job_dir {
        return run_job(args, params, dir);
    }
    let build = |set: &_| {
        job::enhance_where_possible(&mut params.enhance, set, args.output.quiet);
        GenerateRequest::new(&params, set).map(Into::into)
    };
    match args.eval {
        true => job::run_then(&args.runtime, &args.output, build, |engine, ui| {
            cmd_eval::after_generate(args, engine, ui)
        }),
        false => job::run(&args.runtime, &args.output, build),
    }
}

/// `--job-dir`: the request is validated before the job directory is created.
fn run_job(args: &GenerateArgs, mut params: GenerateParams, dir: &Path) -> anyhow::Result<()> {
    if args.eval {
        anyhow::bail!("--eval: not available with --job-dir (run `st2v eval` on the output)");
    }
    let runtime = &args.runtime;
    let mut engine = job::open_engine(runtime, &models_dir(&runtime.models)?)?;
    job::enhance_where_possible(&mut params.enhance, engine.model_set(), args.output.quiet);
    let request = GenerateRequest::new(&params, engine.model_set())?.into();
    streamingt2v::engine::job::check_resumable(&request)?;
    let mut job_dir = JobDir::create(dir, &engine.model_set().dir, &params)?;
    job_dir.set_interval(args.job.interval.duration()?);
    let ui = UiArgs::of(&args.output);
    job::execute(
        &mut engine,
        &request,
        &ui,
        Some(&mut job_dir),
        |_, _| Ok(()),
    )
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleEntry {
    from_frame: usize,
    prompt: String,
}

/// `--prompt-schedule FILE`: `[{"from_frame": N, "prompt": "..."}, ...]`.
fn read_schedule(path: &Path) -> Result<Vec<(usize, String)>, RequestError> {
    let fail = |problem: String| {
        RequestError::value(
            Field::PromptSchedule,
            "a JSON list of {\"from_frame\": N, \"prompt\": \"...\"}",
            format!("{}: {problem}", path.display()),
        )
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let entries: Vec<ScheduleEntry> =
        serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    Ok(entries
        .into_iter()
        .map(|e| (e.from_frame, e.prompt))
        .collect())
}

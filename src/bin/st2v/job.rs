//! What `generate`, `extend` and `enhance` share in the shell: flags mapped to the engine's
//! plain request values, the engine opened, signals, the progress UI and the closing message.
//! Validation, loading, running and keeping partial outputs are the library engine's.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use streamingt2v::engine::{
    check_distinct, Engine, EngineError, Field, GuidanceKind, GuidanceParams, JobDir, JobStatus,
    OutputParams, Request, RequestError, RunPath, Stage3Params, StreamingParams, WrittenFiles,
};
use streamingt2v::manifest::ModelSet;
use streamingt2v::pipeline::AnchorMode;
use streamingt2v::progress::CancelToken;
use streamingt2v::video::OutputFormat;

use crate::args::{
    self, AnchorArg, EnhancerArgs, GuidanceMode, OutputArgs, RuntimeArgs, StreamingArgs,
};
use crate::config::{models_dir, runtime_settings};
use crate::progress_ui::CliProgress;

/// The signal that stopped the run (0: none yet).
static STOPPED_BY: AtomicI32 = AtomicI32::new(0);

/// The signal (SIGINT, SIGTERM, SIGHUP) that asked the run to stop, if any.
pub fn stopping_signal() -> Option<i32> {
    match STOPPED_BY.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// Opens the model set, validates the request `build` makes from it (before any model
/// loads), runs it into its files and reports what was written or kept.
pub fn run(
    runtime: &RuntimeArgs,
    output: &OutputArgs,
    build: impl FnOnce(&ModelSet) -> Result<Request, RequestError>,
) -> anyhow::Result<()> {
    run_then(runtime, output, build, |_, _| Ok(()))
}

/// [`run`], then `after` on the finished output (not when the run fails or is stopped).
pub fn run_then(
    runtime: &RuntimeArgs,
    output: &OutputArgs,
    build: impl FnOnce(&ModelSet) -> Result<Request, RequestError>,
    after: impl FnOnce(&Engine, &CliProgress) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut engine = open_engine(runtime, &models_dir(&runtime.models)?)?;
    let request = build(engine.model_set())?;
    let ui = UiArgs::of(output);
    execute(&mut engine, &request, &ui, None, after)
}

/// The engine over the model set in `models`, with the runtime flags.
pub fn open_engine(runtime: &RuntimeArgs, models: &Path) -> anyhow::Result<Engine> {
    let settings = runtime_settings(&runtime.engine)?;
    Ok(Engine::open(models, settings)?)
}

/// How a run reports: progress bars, the events file.
pub struct UiArgs<'a> {
    pub quiet: bool,
    pub events: Option<&'a Path>,
    pub force: bool,
}

impl<'a> UiArgs<'a> {
    pub fn of(output: &'a OutputArgs) -> Self {
        Self {
            quiet: output.quiet,
            events: output.events.as_deref(),
            force: output.force,
        }
    }
}

/// Runs a validated request into its files (as a resumable job in `job`, if given), reports
/// what was written or kept, then `after` on a finished output.
pub fn execute(
    engine: &mut Engine,
    request: &Request,
    ui_args: &UiArgs<'_>,
    mut job: Option<&mut JobDir>,
    after: impl FnOnce(&Engine, &CliProgress) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if let Some(events) = ui_args.events.filter(|p| *p != Path::new("-")) {
        check_events_path(events, request, engine.model_set(), ui_args.force)?;
    }
    let ui = CliProgress::new(ui_args.quiet, ui_args.events)?;
    let cancel = cancel_on_signals()?;
    let result = match job.as_deref_mut() {
        Some(job) => engine.run_job(request, job, &ui, &cancel),
        None => engine.run_to_files(request, &ui, &cancel),
    };
    ui.close();
    if let Some(job) = job {
        record_end(job, &result, &ui)?;
    }
    let written = match (result, stopping_signal()) {
        (Ok(written), _) => written,
        (Err(err), Some(signal)) => {
            return Err(anyhow::Error::new(err).context(format!("stopped by {}", name(signal))))
        }
        (Err(err), None) => return Err(err.into()),
    };
    if let Some(preview) = &written.preview {
        ui.note(&format!(
            "preview: {} frames ({}) in {}",
            preview.frames,
            preview.size,
            preview.path.display()
        ));
    }
    let summary = &written.output;
    ui.note(&format!(
        "wrote {} frames ({}) to {}",
        summary.frames,
        summary.size,
        summary.path.display()
    ));
    let finished = after(engine, &ui);
    ui.close();
    finished
}

/// Writes how a job ended into its directory; a stopped one says how to continue it.
fn record_end(
    job: &mut JobDir,
    result: &Result<WrittenFiles, EngineError>,
    ui: &CliProgress,
) -> anyhow::Result<()> {
    match result {
        Ok(written) => job.conclude(JobStatus::Finished, Some(written.output.frames), None)?,
        Err(err) => {
            job.conclude(JobStatus::Stopped, None, Some(err.to_string()))?;
            ui.note(&format!(
                "the job can continue from its last checkpoint: st2v resume {}",
                job.dir().display()
            ));
        }
    }
    Ok(())
}

/// `--events FILE` is written like an output: not over an existing file (unless `--force`)
/// nor over any path the run reads or writes.
fn check_events_path(
    events: &Path,
    request: &Request,
    set: &ModelSet,
    force: bool,
) -> Result<(), RequestError> {
    if events.exists() && !force {
        return Err(RequestError::value(
            Field::Events,
            "a path that does not exist yet (pass --force to replace it)",
            format!("{} exists", events.display()),
        ));
    }
    let mut paths = request.paths();
    paths.insert(0, RunPath::written(Field::Events, events));
    check_distinct(&paths, &set.dir)
}

/// Asks the run to stop on SIGINT (Ctrl-C), SIGTERM (`timeout`, systemd, Kubernetes) and
/// SIGHUP (a closed terminal): the pipeline stops at its next model call and every output
/// keeps the frames finished so far. A second signal exits at once.
pub fn cancel_on_signals() -> anyhow::Result<CancelToken> {
    let cancel = CancelToken::new();
    let token = cancel.clone();
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("installing the signal handlers")?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if STOPPED_BY.swap(signal, Ordering::SeqCst) != 0 {
                eprintln!("{}: stopping at once", name(signal));
                std::process::exit(128 + signal);
            }
            token.cancel();
        }
    });
    Ok(cancel)
}

fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT (Ctrl-C)",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Seed, steps, guidance and anchor flags (generate and extend).
pub fn streaming_params(args: &StreamingArgs) -> StreamingParams {
    StreamingParams {
        negative_prompt: args.negative_prompt.clone(),
        seed: args.seed,
        stage2_seed: args.stage2_seed,
        steps: args.steps,
        guidance: GuidanceParams {
            kind: match args.guidance {
                GuidanceMode::Joint => GuidanceKind::Joint,
                GuidanceMode::Multi => GuidanceKind::Multi,
            },
            scale: args.guidance_scale,
            text_scale: args.text_scale,
            anchor_scale: args.anchor_scale,
        },
        anchor: match args.anchor {
            AnchorArg::First => AnchorMode::First,
            AnchorArg::PreviousChunk => AnchorMode::PreviousChunk,
        },
    }
}

/// Enhancer flags; `None` with `--no-enhance`.
pub fn stage3_params(args: &EnhancerArgs, no_enhance: bool) -> Option<Stage3Params> {
    (!no_enhance).then_some(Stage3Params {
        steps: args.enhance_steps,
        chunk: args.chunk,
        overlap: args.overlap,
        keep_padding: args.keep_padding,
        batch: args.enhance_batch,
    })
}

/// Stage 3 by default only where the model set has it: a set with no enhancer graph at all (a
/// stage-2 set) stops after stage 2, with a note. A set missing only some of them still fails,
/// naming the graph.
pub fn enhance_where_possible(enhance: &mut Option<Stage3Params>, set: &ModelSet, quiet: bool) {
    if enhance.is_some() && streamingt2v::models::lacks_enhancer(set) {
        if !quiet {
            eprintln!(
                "note: {} has no enhancer graphs: stopping after stage 2 (as --no-enhance)",
                set.dir.display()
            );
        }
        *enhance = None;
    }
}

/// `--out`, `--format`, `--fps`.
pub fn output_params(args: &OutputArgs) -> OutputParams {
    OutputParams {
        out: args.out.clone(),
        format: args.format.map(|format| match format {
            args::OutputFormat::Mp4 => OutputFormat::Mp4,
            args::OutputFormat::Gif => OutputFormat::Gif,
            args::OutputFormat::Png => OutputFormat::PngDir,
        }),
        fps: args.fps,
        force: args.force,
    }
}

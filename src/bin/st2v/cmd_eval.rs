//! `st2v eval`: flags to [`EvalOptions`], a progress bar per video, the table on stdout and the
//! report files.

use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use streamingt2v::eval::evaluate::NoEvalProgress;
use streamingt2v::eval::raft::RaftFlow;
use streamingt2v::eval::{
    plot, ChunkGeometry, ClipModels, EvalError, EvalModels, EvalOptions, EvalProgress, EvalReport,
    Evaluator, FlowMethod, Metric,
};
use streamingt2v::manifest::ModelSet;
use streamingt2v::models::{ModelLoader, Role};
use streamingt2v::progress::CancelToken;

use crate::args::{EvalArgs, FlowArg, RuntimeArgs};
use crate::config::{models_dir, runtime_settings};

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let metrics = Metric::parse_list(&args.metrics)?;
    check_report_paths(args)?;
    let mut options = EvalOptions::new(metrics);
    options.prompt = args.prompt.clone();
    options.anchor_frame = args.anchor_frame;
    options.motion_size = args.motion_size;
    options.flow = match args.flow {
        FlowArg::Farneback => FlowMethod::Farneback,
        FlowArg::Raft => FlowMethod::Raft,
    };
    options.validate()?;
    let needs_graphs = options.needs_clip() || options.needs_raft();
    // The model set gives the chunk geometry; it is required only for the graphs' metrics.
    let set = match needs_graphs || args.runtime.models.models.is_some() {
        true => Some(ModelSet::open(models_dir(&args.runtime.models)?)?),
        false => None,
    };
    options.geometry = geometry(args, set.as_ref())?;
    for video in &args.videos {
        if !video.exists() {
            return Err(EvalError::invalid(
                "VIDEO",
                "an existing video file or PNG directory",
                video.display(),
            )
            .into());
        }
    }
    let models = match &set {
        Some(set) if needs_graphs => load_models(set, &options, &args.runtime)?,
        _ => EvalModels::default(),
    };
    let report = evaluate(args, options, models, set.as_ref())?;
    write_reports(args, &report)?;
    print!("{}", report.table());
    Ok(())
}

/// Evaluates every video with one evaluator (the CLIP graphs load once).
pub fn evaluate(
    args: &EvalArgs,
    options: EvalOptions,
    models: EvalModels,
    set: Option<&ModelSet>,
) -> anyhow::Result<EvalReport> {
    let mut evaluator = Evaluator::new(options, models)?;
    let cancel = crate::job::cancel_on_signals()?;
    let mut videos = Vec::new();
    for (index, path) in args.videos.iter().enumerate() {
        let display = Display::new(args.quiet, path, index, args.videos.len());
        let result = evaluator.evaluate(path, &display, &cancel);
        display.bar.finish_and_clear();
        videos.push(result.with_context(|| format!("evaluating {}", path.display()))?);
    }
    Ok(EvalReport::new(
        format!("st2v eval {}", env!("CARGO_PKG_VERSION")),
        evaluator.options(),
        set.map(|s| s.dir.display().to_string()),
        videos,
    ))
}

/// The graphs the options need, each checked present before any is opened.
fn load_models(
    set: &ModelSet,
    options: &EvalOptions,
    runtime: &RuntimeArgs,
) -> anyhow::Result<EvalModels> {
    let factory = runtime_settings(&runtime.engine)?.factory()?;
    let mut roles = Vec::new();
    if options.needs_clip() {
        roles.extend([Role::ClipTextEncoder, Role::ImageEncoder]);
    }
    if options.needs_raft() {
        roles.push(Role::Raft);
    }
    ModelLoader::new(set, &factory).require(&roles, "the metrics asked for")?;
    let clip = match options.needs_clip() {
        true => Some(ClipModels::load(set, &factory)?),
        false => None,
    };
    let raft = match options.needs_raft() {
        true => Some(RaftFlow::load(set, &factory)?),
        false => None,
    };
    Ok(EvalModels { clip, raft })
}

/// `--chunk`/`--overlap`, else the model set's stage-2 chunk, else 16/8.
fn geometry(args: &EvalArgs, set: Option<&ModelSet>) -> Result<ChunkGeometry, EvalError> {
    let stage2 = set.map(|s| &s.manifest.pipeline.stage2);
    let default = ChunkGeometry::default();
    let chunk = args
        .chunk
        .or(stage2.map(|s| s.chunk_frames))
        .unwrap_or(default.chunk);
    let overlap = args
        .overlap
        .or(stage2.map(|s| s.cond_frames))
        .unwrap_or(default.overlap);
    ChunkGeometry::new(chunk, overlap).ok_or_else(|| {
        EvalError::invalid(
            "--overlap",
            format!("fewer frames than --chunk ({chunk})"),
            overlap,
        )
    })
}

/// Report files are not written over existing files (unless --force) nor over a video.
fn check_report_paths(args: &EvalArgs) -> Result<(), EvalError> {
    let outputs: Vec<(&'static str, &PathBuf)> = [
        ("--json", &args.json),
        ("--csv", &args.csv),
        ("--plot", &args.plot),
    ]
    .into_iter()
    .filter_map(|(flag, path)| path.as_ref().map(|p| (flag, p)))
    .collect();
    for (i, (flag, path)) in outputs.iter().enumerate() {
        if args.videos.iter().any(|v| same_file(v, path)) {
            return Err(EvalError::invalid(
                flag,
                "a path other than the videos read",
                path.display(),
            ));
        }
        if outputs[..i].iter().any(|(_, other)| same_file(other, path)) {
            return Err(EvalError::invalid(
                flag,
                "a path no other report file uses",
                path.display(),
            ));
        }
        if path.exists() && !args.force {
            let actual = format!("{} exists", path.display());
            return Err(EvalError::invalid(
                flag,
                "a path that does not exist yet (pass --force to replace it)",
                actual,
            ));
        }
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

fn write_reports(args: &EvalArgs, report: &EvalReport) -> anyhow::Result<()> {
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    };
    if let Some(path) = &args.json {
        write(path, &serde_json::to_string_pretty(report)?)?;
    }
    if let Some(path) = &args.csv {
        write(path, &report.csv())?;
    }
    if let Some(path) = &args.plot {
        match plot::svg(report) {
            Some(svg) => write(path, &svg)?,
            None => eprintln!(
                "--plot: nothing to draw (the seams, drift and clip metrics make the curves); \
                 {} not written",
                path.display()
            ),
        }
    }
    Ok(())
}

/// A spinner per video with the frames measured so far.
struct Display {
    bar: ProgressBar,
}

impl Display {
    fn new(quiet: bool, path: &Path, index: usize, count: usize) -> Self {
        let target = match quiet {
            true => ProgressDrawTarget::hidden(),
            false => ProgressDrawTarget::stderr(),
        };
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {prefix} {pos} frames ({per_sec})",
        ) {
            bar.set_style(style);
        }
        bar.set_prefix(format!("eval {}/{count} {}", index + 1, path.display()));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Self { bar }
    }
}

impl EvalProgress for Display {
    fn frame(&self, frames_done: usize) {
        self.bar.set_position(frames_done as u64);
    }
}

/// `generate --eval`: every metric the model set has graphs for, on the finished video; the
/// table goes to stderr (stdout may carry `--events -`), the report to the event stream.
pub fn after_generate(
    args: &crate::args::GenerateArgs,
    engine: &streamingt2v::engine::Engine,
    ui: &crate::progress_ui::CliProgress,
) -> anyhow::Result<()> {
    let set = engine.model_set();
    let has_clip = [Role::ClipTextEncoder, Role::ImageEncoder]
        .iter()
        .all(|role| set.manifest.graph(role.name()).is_some());
    let mut metrics = vec![Metric::Scuts, Metric::Mawe, Metric::Seams];
    if has_clip {
        metrics.extend([Metric::Clip, Metric::Drift]);
    } else {
        ui.note(&format!(
            "eval: {} has no clip_text_encoder graph, so no CLIP score or drift (add it with \
             `PYTHONPATH=export .venv/bin/python -m st2v_export --preset {} --out {} --only \
             clip_text_encoder`)",
            set.dir.display(),
            set.manifest.preset,
            set.dir.display()
        ));
    }
    metrics.sort();
    let mut options = EvalOptions::new(metrics);
    options.prompt = Some(args.prompt.clone());
    let stage2 = &set.manifest.pipeline.stage2;
    options.geometry =
        ChunkGeometry::new(stage2.chunk_frames, stage2.cond_frames).unwrap_or_default();
    let clip = match has_clip {
        true => Some(ClipModels::load(set, &engine.settings().factory()?)?),
        false => None,
    };
    let mut evaluator = Evaluator::new(options, EvalModels { clip, raft: None })?;
    ui.note("eval: scoring the video");
    let video = evaluator.evaluate(&args.output.out, &NoEvalProgress, &CancelToken::new())?;
    ui.write_json(&serde_json::json!({"event": "eval", "report": &video}));
    let report = EvalReport::new(
        format!("st2v generate --eval {}", env!("CARGO_PKG_VERSION")),
        evaluator.options(),
        Some(set.dir.display().to_string()),
        vec![video],
    );
    ui.note(report.table().trim_end());
    Ok(())
}

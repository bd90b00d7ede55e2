//! `st2v bench`: flags to [`BenchOptions`], a progress display, the report files.

use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use streamingt2v::bench::{self, peers::PeerOptions, BenchOptions, BenchProgress};
use streamingt2v::engine::{Engine, Field, RequestError, RuntimeSettings};
use streamingt2v::progress::{ProgressEvent, ProgressSink};

use crate::args::BenchArgs;
use crate::config::{models_dir, runtime_settings};

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let models = models_dir(&args.runtime.models)?;
    let enhance = parse_stages(&args.stages)?;
    let memory_frames = parse_pair(&args.memory_frames)?;
    for path in [&args.json, &args.markdown].into_iter().flatten() {
        if path.exists() && !args.force {
            anyhow::bail!("{} exists; pass --force to replace it", path.display());
        }
    }
    let providers = providers(args)?;
    // The model set and every value are checked before anything is measured.
    let engine = Engine::open(&models, providers[0].1.clone())?;
    let preset = engine.model_set().manifest.preset.to_string();
    drop(engine);
    let work_dir = std::env::temp_dir().join(format!("st2v-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir).context("creating the benchmark's scratch directory")?;
    let options = BenchOptions {
        models,
        providers,
        warmup: args.warmup,
        runs: args.runs,
        frames: args.frames,
        stage1_steps: args.stage1_steps,
        steps: args.steps,
        enhance_steps: enhance.then_some(args.enhance_steps),
        enhance_batch: args.enhance_batch,
        seed: args.seed,
        memory_frames,
        profile: !args.no_profile,
        peers: peer_options(args, preset),
        work_dir: work_dir.clone(),
    };
    let display = Display::new(args.quiet);
    let report = bench::run(&options, &display);
    display.bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&work_dir);
    let report = report?;
    let markdown = report.markdown();
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    match &args.markdown {
        Some(path) => std::fs::write(path, &markdown)
            .with_context(|| format!("writing {}", path.display()))?,
        None => print!("{markdown}"),
    }
    Ok(())
}

/// `--ep cpu,cuda`: one provider per item, each benchmarked on its own.
fn providers(args: &BenchArgs) -> anyhow::Result<Vec<(String, RuntimeSettings)>> {
    args.runtime
        .engine
        .ep
        .split(',')
        .map(str::trim)
        .filter(|ep| !ep.is_empty())
        .map(|ep| {
            let mut engine = args.runtime.engine.clone();
            engine.ep = ep.to_owned();
            Ok((ep.to_owned(), runtime_settings(&engine)?))
        })
        .collect()
}

fn invalid(field: Field, expected: &str, actual: &str) -> anyhow::Error {
    RequestError::value(field, expected, actual).into()
}

/// `1,2` or `1,2,3`: whether stage 3 runs.
fn parse_stages(stages: &str) -> anyhow::Result<bool> {
    let mut list: Vec<&str> = stages.split(',').map(str::trim).collect();
    list.sort_unstable();
    match list.as_slice() {
        ["1", "2"] => Ok(false),
        ["1", "2", "3"] => Ok(true),
        _ => Err(anyhow::anyhow!(
            "--stages: expected `1,2` or `1,2,3` (stage 2 needs stage 1's chunk, stage 3 enhances \
             stage 2's frames), got `{stages}`"
        )),
    }
}

fn parse_pair(text: &str) -> anyhow::Result<(usize, usize)> {
    let parsed: Option<(usize, usize)> = text
        .split_once(',')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    match parsed {
        Some((small, large)) if small >= 16 && large > small => Ok((small, large)),
        _ => Err(invalid(
            Field::Frames,
            "--memory-frames SMALL,LARGE with 16 <= SMALL < LARGE",
            text,
        )),
    }
}

fn peer_options(args: &BenchArgs, preset: String) -> Option<PeerOptions> {
    if args.no_peers {
        return None;
    }
    let scripts = bench::default_peer_scripts()?;
    let python = args.python.clone().or_else(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        venv.is_file().then_some(venv)
    })?;
    Some(PeerOptions {
        python,
        scripts,
        preset,
    })
}

/// A spinner with the current phase and the step count of the current run.
struct Display {
    bar: ProgressBar,
}

impl Display {
    fn new(quiet: bool) -> Self {
        let target = match quiet {
            true => ProgressDrawTarget::hidden(),
            false => ProgressDrawTarget::stderr(),
        };
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Self { bar }
    }
}

impl BenchProgress for Display {
    fn phase(&self, message: &str) {
        self.bar.set_message(message.to_owned());
        self.bar.println(format!("bench: {message}"));
    }

    fn events(&self) -> &dyn ProgressSink {
        self
    }
}

impl ProgressSink for Display {
    fn emit(&self, event: &ProgressEvent) {
        if let ProgressEvent::Step { .. } = event {
            self.bar.inc(1);
        }
    }
}

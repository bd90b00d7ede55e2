//! `st2v bench`: latency per graph, step, chunk, stage and end to end, per execution provider,
//! through the same library [`Engine`] that `st2v generate` runs, with orchestration overhead,
//! memory, time to first frame, numerical drift, FLOPs and the Python and PyTorch peers.
//!
//! Method: every provider gets a fresh engine; sessions are created (timed), `warmup` runs are
//! made and discarded, `runs` runs are measured with every progress event timed and every graph
//! call logged; then each graph is replayed alone at the shapes the pipeline ran it at; then a
//! second engine with ONNX Runtime profiling replays each graph once for FLOPs and per-operator
//! time (and times session creation again: engine-cache reuse); then memory is measured at two
//! lengths with one step per stage. Frames stay in memory: no video encoding is timed (`cargo
//! bench --bench plan` measures encoding).

pub mod graphs;
pub mod machine;
pub mod peers;
pub mod profile;
pub mod report;
pub mod stats;
pub mod timeline;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::{
    CheckpointStats, Engine, EngineError, GenerateParams, GenerateRequest, JobDir, Request,
    RuntimeSettings,
};
use crate::pipeline::Outputs;
use crate::progress::{CancelToken, NoProgress, ProgressSink};
use crate::video::{Frame, VideoError};

use graphs::time_graph;
use machine::{peak_rss_mib, reset_peak_rss, Machine};
use peers::{PeerOptions, PeerReport, PeerWork};
use report::{
    BenchReport, BenchSettings, CheckpointCost, Drift, EndToEnd, GraphReport, Memory, ModelSetInfo,
    Overhead, ProviderReport, StageReport,
};
use stats::Latency;
use timeline::{RunTimes, Timeline};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub models: PathBuf,
    /// Each provider is benchmarked on its own, side by side (name, settings).
    pub providers: Vec<(String, RuntimeSettings)>,
    pub warmup: usize,
    pub runs: usize,
    pub frames: usize,
    pub stage1_steps: Option<usize>,
    pub steps: Option<usize>,
    /// `None` leaves stage 3 out.
    pub enhance_steps: Option<Option<usize>>,
    /// Enhancer chunks per UNet call (`--enhance-batch`; `None`: 1).
    pub enhance_batch: Option<usize>,
    pub seed: u64,
    pub memory_frames: (usize, usize),
    pub profile: bool,
    pub peers: Option<PeerOptions>,
    /// Scratch space (profiles, peer JSON).
    pub work_dir: PathBuf,
}

/// Progress of the benchmark: a message per phase.
pub trait BenchProgress {
    fn phase(&self, message: &str);
    /// Step-level events of the runs, for a progress bar.
    fn events(&self) -> &dyn ProgressSink;
}

/// Runs the whole benchmark.
pub fn run(
    options: &BenchOptions,
    progress: &dyn BenchProgress,
) -> Result<BenchReport, EngineError> {
    let mut providers = Vec::new();
    let mut reference: Option<(String, Vec<Vec<u8>>)> = None;
    let mut cpu_graphs = Vec::new();
    for (name, settings) in &options.providers {
        let (mut report, frames, graphs) = bench_provider(options, name, settings, progress)?;
        match &reference {
            Some((reference_name, reference_frames)) => {
                report.drift = Some(drift(reference_name, reference_frames, &frames));
            }
            None => reference = Some((name.clone(), frames)),
        }
        if cpu_graphs.is_empty() {
            cpu_graphs = graphs;
        }
        providers.push(report);
    }
    let engine = Engine::open(&options.models, RuntimeSettings::cpu())?;
    let set = engine.model_set();
    let first = providers.first();
    let settings = bench_settings(options, &engine);
    let mut peers = PeerReport::default();
    if let (Some(peer), Some(first)) = (&options.peers, first) {
        progress.phase("peers: Python orchestrator and PyTorch eager");
        run_peers(options, peer, &settings, first, &cpu_graphs, &mut peers);
    }
    let runtime = options
        .providers
        .first()
        .map(|(_, s)| s.runtime())
        .transpose()?;
    Ok(BenchReport {
        tool: format!("st2v bench {}", env!("CARGO_PKG_VERSION")),
        git_commit: machine::git_commit(env!("CARGO_MANIFEST_DIR").as_ref()),
        machine: Machine::probe(),
        onnxruntime: runtime.map_or_else(|| "-".into(), |r| r.library().version.clone()),
        model_set: ModelSetInfo {
            dir: options.models.display().to_string(),
            name: set.manifest.name.clone(),
            preset: set.manifest.preset.to_string(),
            precision: set
                .manifest
                .graphs
                .iter()
                .map(|(role, g)| (role.clone(), format!("{:?}", g.precision).to_lowercase()))
                .collect(),
        },
        settings,
        providers,
        peers,
    })
}

fn bench_settings(options: &BenchOptions, engine: &Engine) -> BenchSettings {
    let config = engine.config();
    let eps = options.providers.first().map(|(_, s)| &s.eps);
    BenchSettings {
        frames: options.frames,
        stage1_steps: options
            .stage1_steps
            .unwrap_or(config.stage1.num_inference_steps),
        stage2_steps: options.steps.unwrap_or(config.stage2.num_inference_steps),
        stage3_steps: options
            .enhance_steps
            .map(|s| s.unwrap_or(config.stage3.num_inference_steps)),
        enhance_batch: options.enhance_batch.unwrap_or(1),
        warmup: options.warmup,
        runs: options.runs,
        seed: options.seed,
        threads: eps.and_then(|e| e.intra_threads),
        opt_level: eps.map_or_else(|| "-".into(), |e| format!("{:?}", e.opt_level)),
        cpu_arena: eps.is_none_or(|e| !e.disable_cpu_arena),
        vae_batch: options.providers.first().and_then(|(_, s)| s.decode_batch),
        memory_frames: options.memory_frames,
    }
}

/// The request every provider runs (frames stay in memory; the path is never written).
fn request(
    options: &BenchOptions,
    engine: &Engine,
    frames: usize,
    fast: bool,
) -> Result<Request, EngineError> {
    let params = request_params(options, frames, fast);
    Ok(GenerateRequest::new(&params, engine.model_set())?.into())
}

fn request_params(options: &BenchOptions, frames: usize, fast: bool) -> GenerateParams {
    let mut params = GenerateParams::new(
        "a red car driving on a coastal road",
        options.work_dir.join("bench.mp4"),
    );
    params.frames = Some(frames);
    params.streaming.seed = options.seed;
    let one = |steps: Option<usize>| if fast { Some(1) } else { steps };
    params.stage1_steps = one(options.stage1_steps);
    params.streaming.steps = one(options.steps);
    params.enhance = options
        .enhance_steps
        .map(|steps| crate::engine::Stage3Params {
            steps: one(steps),
            batch: options.enhance_batch,
            ..Default::default()
        });
    params
}

/// Runs `request` once, keeping the final frames as RGB8 when `keep` is set.
fn timed_run(
    engine: &mut Engine,
    request: &Request,
    progress: &dyn ProgressSink,
    keep: bool,
) -> Result<(RunTimes, Vec<Vec<u8>>), EngineError> {
    let timeline = Timeline::new(progress);
    let kept = RefCell::new(Vec::new());
    let previews = RefCell::new(Vec::new());
    let mut video = |frame: &Frame| -> Result<(), VideoError> {
        if keep {
            kept.borrow_mut().push(frame.to_rgb8_bytes());
        }
        Ok(())
    };
    let mut preview = timeline.preview_sink(&previews);
    let outputs = Outputs {
        video: &mut video,
        preview: Some(&mut preview),
    };
    engine.run(request, outputs, &timeline, &CancelToken::new())?;
    drop(preview);
    Ok((timeline.finish(), kept.into_inner()))
}

type ProviderResult = (ProviderReport, Vec<Vec<u8>>, Vec<graphs::GraphTiming>);

fn bench_provider(
    options: &BenchOptions,
    name: &str,
    settings: &RuntimeSettings,
    progress: &dyn BenchProgress,
) -> Result<ProviderResult, EngineError> {
    progress.phase(&format!("{name}: creating sessions"));
    let mut engine = Engine::open(&options.models, settings.clone())?;
    let req = request(options, &engine, options.frames, false)?;
    engine.load(&req)?;
    let creation: f64 = engine.graphs_mut().iter().map(|g| g.load_seconds()).sum();
    let mut measured = Vec::new();
    let mut call_logs = Vec::new();
    let mut frames = Vec::new();
    for run in 0..options.warmup + options.runs.max(1) {
        let warm = run < options.warmup;
        let label = if warm { "warm-up" } else { "run" };
        progress.phase(&format!("{name}: end-to-end {label} {}", run + 1));
        let (times, kept) = timed_run(
            &mut engine,
            &req,
            progress.events(),
            !warm && frames.is_empty(),
        )?;
        let logs: BTreeMap<String, (usize, f64, f64)> = engine
            .graphs_mut()
            .into_iter()
            .map(|g| {
                let log = g.take_calls();
                let role = g.role().name().to_owned();
                (role, (log.calls(), log.ort_total(), log.call_total()))
            })
            .collect();
        if !warm {
            if frames.is_empty() {
                frames = kept;
            }
            measured.push(times);
            call_logs.push(logs);
        }
    }
    progress.phase(&format!(
        "{name}: one run as a resumable job (checkpoint cost)"
    ));
    let checkpoints = measure_checkpoints(options, &mut engine, name)?;
    progress.phase(&format!("{name}: each graph alone"));
    let mut timings = Vec::new();
    for graph in engine.graphs_mut() {
        if let Some(timing) = time_graph(graph, options.warmup, options.runs)
            .map_err(crate::pipeline::PipelineError::from)?
        {
            timings.push(timing);
        }
    }
    progress.phase(&format!(
        "{name}: memory at {} and {} frames",
        options.memory_frames.0, options.memory_frames.1
    ));
    let memory = measure_memory(options, &mut engine)?;
    // The profiling engine opens every session again: the first one goes before, so the two
    // never hold memory together (a full-size set on a CPU has room for one).
    drop(engine);
    let (profiles, creation_again) = match options.profile {
        true => {
            progress.phase(&format!("{name}: profiling each graph (FLOPs)"));
            profile_graphs(options, name, settings, &req, &timings)?
        }
        false => (BTreeMap::new(), None),
    };
    let calls_per_run = call_logs.first().cloned().unwrap_or_default();
    let cpu_peak = Machine::probe()
        .cpu_peak_gflops_estimate
        .filter(|_| name == "cpu");
    let graphs = timings
        .iter()
        .map(|timing| {
            let profile = profiles.get(&timing.role).cloned();
            let achieved_gflops = profile
                .as_ref()
                .map(|p: &profile::GraphProfile| p.flops / (timing.latency.p50_ms / 1e3) / 1e9);
            GraphReport {
                share_of_peak: stats::ratio(achieved_gflops, cpu_peak),
                calls_per_run: calls_per_run.get(&timing.role).map_or(0, |c| c.0),
                timing: timing.clone(),
                profile,
                achieved_gflops,
            }
        })
        .collect();
    let end_to_end = end_to_end(&measured, &call_logs);
    let checkpoints = checkpoints.map(|(stats, chunks)| {
        let stage2 = end_to_end.stages.get("stage2");
        let chunk_ms = stage2.and_then(|s| s.chunk).map(|l| l.p50_ms);
        CheckpointCost {
            count: stats.count,
            mean_ms: stats.seconds * 1e3 / stats.count.max(1) as f64,
            bytes: stats.bytes,
            share_of_stage2_chunks: chunk_ms
                .map(|ms| stats.seconds * 1e3 / (ms * chunks as f64))
                .filter(|s| s.is_finite()),
        }
    });
    let report = ProviderReport {
        ep: name.to_owned(),
        session_creation_s: creation,
        session_creation_again_s: creation_again,
        graphs,
        end_to_end,
        memory,
        drift: None,
        checkpoints,
    };
    Ok((report, frames, timings))
}

/// Runs the benchmark's request once more as a resumable job (PNG frames and the job in the
/// work directory, a checkpoint after every stage-2 chunk, as `--job-dir` writes) and returns its
/// checkpoint statistics with the number of stage-2 chunks.
fn measure_checkpoints(
    options: &BenchOptions,
    engine: &mut Engine,
    name: &str,
) -> Result<Option<(CheckpointStats, usize)>, EngineError> {
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = options.work_dir.join(format!("job-{safe}"));
    let frames_dir = options.work_dir.join(format!("job-{safe}-frames"));
    let _ = std::fs::remove_dir_all(&dir); // the benchmark's own scratch space
    let _ = std::fs::remove_dir_all(&frames_dir);
    let mut params = request_params(options, options.frames, false);
    params.output = crate::engine::OutputParams::new(&frames_dir);
    let req: Request = GenerateRequest::new(&params, engine.model_set())?.into();
    let mut job = JobDir::create(&dir, &options.models, &params)?;
    engine.run_job(&req, &mut job, &NoProgress, &CancelToken::new())?;
    let chunks = crate::plan::FramePlan::new(
        options.frames,
        engine.config().stage2.chunk_frames,
        engine.config().stage2.cond_frames,
    )
    .map_or(0, |plan| plan.chunks.saturating_sub(1));
    let _ = std::fs::remove_dir_all(&frames_dir);
    Ok(Some((job.stats(), chunks)))
}

/// A second engine with profiling on: one replay per graph, FLOPs and operator times; and the
/// time to create the sessions again.
fn profile_graphs(
    options: &BenchOptions,
    name: &str,
    settings: &RuntimeSettings,
    req: &Request,
    timings: &[graphs::GraphTiming],
) -> Result<(BTreeMap<String, profile::GraphProfile>, Option<f64>), EngineError> {
    let mut settings = settings.clone();
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    settings.eps.profile_prefix = Some(options.work_dir.join(format!("profile-{safe}")));
    let mut engine = Engine::open(&options.models, settings)?;
    engine.load(req)?;
    let again: f64 = engine.graphs_mut().iter().map(|g| g.load_seconds()).sum();
    let mut profiles = BTreeMap::new();
    for graph in engine.graphs_mut() {
        let role = graph.role().name().to_owned();
        let Some(timing) = timings.iter().find(|t| t.role == role) else {
            let _ = graph.end_profiling();
            continue;
        };
        let inputs = graphs::replay_inputs(&timing.inputs);
        // A warm-up call, then the profiled one (the summary keeps the last run).
        for _ in 0..2 {
            graphs::replay(graph, &inputs).map_err(crate::pipeline::PipelineError::from)?;
        }
        let file = graph
            .end_profiling()
            .map_err(crate::pipeline::PipelineError::from)?;
        match profile::read_profile(&file) {
            Ok(summary) => {
                profiles.insert(role, summary);
            }
            Err(err) => tracing::warn!("profile of {role}: {err}"),
        }
        let _ = std::fs::remove_file(&file);
    }
    Ok((profiles, Some(again)))
}

/// Peak RSS at the two lengths, one step per stage, the peak reset in between.
fn measure_memory(options: &BenchOptions, engine: &mut Engine) -> Result<Memory, EngineError> {
    let overall = peak_rss_mib();
    let mut peak_at = |frames| -> Result<Option<f64>, EngineError> {
        let req = request(options, engine, frames, true)?;
        let resettable = reset_peak_rss();
        timed_run(engine, &req, &NoProgress, false)?;
        Ok(peak_rss_mib().filter(|_| resettable))
    };
    let small = peak_at(options.memory_frames.0)?;
    let large = peak_at(options.memory_frames.1)?;
    Ok(Memory {
        gpu_memory_used_mib: machine::gpu_memory_used_mib(),
        peak_rss_mib: overall,
        peak_rss_mib_small: small,
        peak_rss_mib_large: large,
        ratio: stats::ratio(large, small),
    })
}

fn end_to_end(runs: &[RunTimes], logs: &[BTreeMap<String, (usize, f64, f64)>]) -> EndToEnd {
    let seconds: Vec<f64> = runs.iter().map(|r| r.end_to_end).collect();
    let e2e = Latency::from_seconds(&seconds).expect("at least one measured run");
    let median = e2e.p50_ms / 1e3;
    let frames = runs.first().map_or(0, |r| r.final_frames);
    let collect = |f: &dyn Fn(&RunTimes) -> Vec<f64>| {
        Latency::from_seconds(&runs.iter().flat_map(f).collect::<Vec<_>>())
    };
    let mut stages = BTreeMap::new();
    for key in ["stage1", "stage2", "stage3"] {
        let seconds = collect(&|r| r.stages.get(key).map(|s| s.seconds).into_iter().collect());
        if let Some(seconds) = seconds {
            stages.insert(
                key.to_owned(),
                StageReport {
                    seconds,
                    step: collect(&|r| {
                        r.stages
                            .get(key)
                            .map(|s| s.steps.clone())
                            .unwrap_or_default()
                    }),
                    chunk: collect(&|r| {
                        r.stages
                            .get(key)
                            .map(|s| s.chunks.clone())
                            .unwrap_or_default()
                    }),
                },
            );
        }
    }
    let stage3 = stages.get("stage3").map(|s| s.seconds.p50_ms / 1e3);
    let total = |index: usize| -> f64 {
        logs.iter()
            .map(|l| {
                l.values()
                    .map(|v| if index == 1 { v.1 } else { v.2 })
                    .sum::<f64>()
            })
            .sum::<f64>()
            / logs.len().max(1) as f64
    };
    let decode = logs
        .iter()
        .filter_map(|l| l.get("vae_decoder").map(|v| v.1))
        .sum::<f64>()
        / logs.len().max(1) as f64;
    let (ort, calls) = (total(1), total(2));
    let mean_e2e = seconds.iter().sum::<f64>() / seconds.len() as f64;
    let fps = |time: f64| (time > 0.0).then(|| frames as f64 / time);
    EndToEnd {
        frames,
        seconds: e2e,
        time_to_first_preview_frame: collect(&|r| r.first_preview_frame.into_iter().collect()),
        time_to_first_final_frame: collect(&|r| r.first_final_frame.into_iter().collect()),
        preview_chunk_gap: collect(&|r| r.preview_chunk_gaps.clone()),
        final_chunk_gap: collect(&|r| r.final_chunk_gaps.clone()),
        fps: fps(median).unwrap_or(0.0),
        fps_without_enhancer: stage3.and_then(|s3| fps(median - s3)),
        fps_without_vae_decode_and_enhancer: fps(median - stage3.unwrap_or(0.0) - decode),
        overhead: Overhead {
            onnxruntime: ort / mean_e2e,
            graph_boundary_copies: (calls - ort) / mean_e2e,
            orchestration: 1.0 - calls / mean_e2e,
            outside_onnxruntime: 1.0 - ort / mean_e2e,
        },
        stages,
    }
}

/// Frame differences on the 0-255 scale and the PSNR over every compared frame.
fn drift(reference: &str, expected: &[Vec<u8>], actual: &[Vec<u8>]) -> Drift {
    let mut max_abs = 0.0f64;
    let (mut squared, mut count) = (0.0f64, 0usize);
    for (a, b) in expected.iter().zip(actual) {
        for (x, y) in a.iter().zip(b) {
            let d = f64::from(*x) - f64::from(*y);
            max_abs = max_abs.max(d.abs());
            squared += d * d;
            count += 1;
        }
    }
    let mse = squared / count.max(1) as f64;
    Drift {
        reference: reference.to_owned(),
        frames_compared: expected.len().min(actual.len()),
        max_abs,
        psnr_db: (mse > 0.0).then(|| 10.0 * (255.0f64 * 255.0 / mse).log10()),
    }
}

fn run_peers(
    options: &BenchOptions,
    peer: &PeerOptions,
    settings: &BenchSettings,
    first: &ProviderReport,
    graphs: &[graphs::GraphTiming],
    report: &mut PeerReport,
) {
    let work = PeerWork {
        models: &options.models,
        frames: options.frames,
        steps: (
            settings.stage1_steps,
            settings.stage2_steps,
            settings.stage3_steps,
        ),
        runs: options.runs,
        warmup: options.warmup,
        seed: options.seed,
        threads: settings.threads,
        cpu_arena: settings.cpu_arena,
        vae_batch: settings.vae_batch,
    };
    match peers::run_python(peer, &work, &options.work_dir.join("python.json")) {
        Ok(value) => report.python = Some(value),
        Err(err) => report.notes.push(format!("Python orchestrator: {err}")),
    }
    match peers::run_torch(peer, &work, graphs, &options.work_dir) {
        Ok(value) => report.torch = Some(value),
        Err(err) => report.notes.push(format!("PyTorch eager: {err}")),
    }
    let e2e = &first.end_to_end;
    let steps: Vec<(String, f64)> = e2e
        .stages
        .iter()
        .filter_map(|(stage, s)| Some((stage.clone(), s.step?.p50_ms)))
        .collect();
    report.compare_python(e2e.seconds.p50_ms / 1e3, &steps);
    report.compare_torch(graphs);
}

/// The directory of the peer scripts in this repository, if present.
pub fn default_peer_scripts() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches");
    dir.join("py_orchestrator.py").is_file().then_some(dir)
}

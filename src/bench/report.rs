//! The benchmark report: serde types (the JSON) and their Markdown rendering.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::graphs::GraphTiming;
use super::machine::Machine;
use super::peers::PeerReport;
use super::profile::GraphProfile;
use super::stats::Latency;

/// Everything one `st2v bench` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub tool: String,
    pub git_commit: String,
    pub machine: Machine,
    pub onnxruntime: String,
    pub model_set: ModelSetInfo,
    pub settings: BenchSettings,
    pub providers: Vec<ProviderReport>,
    pub peers: PeerReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelSetInfo {
    pub dir: String,
    pub name: String,
    pub preset: String,
    /// Precision of each graph (`fp32`, `fp16`).
    pub precision: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchSettings {
    pub frames: usize,
    pub stage1_steps: usize,
    pub stage2_steps: usize,
    /// `None` without stage 3.
    pub stage3_steps: Option<usize>,
    /// Enhancer chunks per UNet call.
    pub enhance_batch: usize,
    pub warmup: usize,
    pub runs: usize,
    pub seed: u64,
    pub threads: Option<usize>,
    pub opt_level: String,
    /// ONNX Runtime's CPU memory arena (`--no-cpu-arena` turns it off).
    pub cpu_arena: bool,
    /// Frames per stage-1/2 VAE decoder call (`--vae-batch`; `None`: a chunk).
    pub vae_batch: Option<usize>,
    /// Frame counts of the two memory runs (1 step per stage).
    pub memory_frames: (usize, usize),
}

/// One execution provider's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderReport {
    pub ep: String,
    /// Seconds to create every session the first time in the process (a TensorRT engine build
    /// included), and a second time (engine and timing caches reused).
    pub session_creation_s: f64,
    pub session_creation_again_s: Option<f64>,
    pub graphs: Vec<GraphReport>,
    pub end_to_end: EndToEnd,
    pub memory: Memory,
    /// Frames against the first provider's (CPU fp32 when listed first), same seed.
    pub drift: Option<Drift>,
    /// One more run as a resumable job (`--job-dir`): what its checkpoints cost.
    pub checkpoints: Option<CheckpointCost>,
}

/// Checkpoints of one job run (one after every stage-2 chunk, and between stage-3 steps).
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointCost {
    pub count: usize,
    /// Mean time to write one (encode, write, fsync, rename; outputs synced).
    pub mean_ms: f64,
    /// Size of the last one.
    pub bytes: u64,
    /// All checkpoint time over the stage-2 chunks' compute (median run): the goal is
    /// under 2%.
    pub share_of_stage2_chunks: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphReport {
    #[serde(flatten)]
    pub timing: GraphTiming,
    pub calls_per_run: usize,
    pub profile: Option<GraphProfile>,
    /// FLOPs per call / p50 latency.
    pub achieved_gflops: Option<f64>,
    /// `achieved_gflops` over the machine's estimated peak (CPU providers).
    pub share_of_peak: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndToEnd {
    pub frames: usize,
    pub seconds: Latency,
    pub stages: BTreeMap<String, StageReport>,
    pub time_to_first_preview_frame: Option<Latency>,
    pub time_to_first_final_frame: Option<Latency>,
    pub preview_chunk_gap: Option<Latency>,
    pub final_chunk_gap: Option<Latency>,
    pub fps: f64,
    pub fps_without_enhancer: Option<f64>,
    pub fps_without_vae_decode_and_enhancer: Option<f64>,
    pub overhead: Overhead,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub seconds: Latency,
    pub step: Option<Latency>,
    pub chunk: Option<Latency>,
}

/// Where end-to-end time goes, as shares of it (median run).
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    /// Inside ONNX Runtime's `run`.
    pub onnxruntime: f64,
    /// Copies at the graph boundary (input layout, output extraction).
    pub graph_boundary_copies: f64,
    /// Everything else in Rust: guidance, schedulers, noise, blending, resizing, frame
    /// conversion (no video encoding: the benchmark keeps frames in memory).
    pub orchestration: f64,
    /// `1 - onnxruntime`: the share the 2% goal is about.
    pub outside_onnxruntime: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub peak_rss_mib: Option<f64>,
    pub peak_rss_mib_small: Option<f64>,
    pub peak_rss_mib_large: Option<f64>,
    /// large / small: 1.0 means memory does not grow with the video's length.
    pub ratio: Option<f64>,
    /// GPU memory in use after the runs (`nvidia-smi`), per GPU, when there is one.
    pub gpu_memory_used_mib: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub reference: String,
    pub frames_compared: usize,
    /// On the 0-255 scale.
    pub max_abs: f64,
    pub psnr_db: Option<f64>,
}

fn ms(value: f64) -> String {
    match value {
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 1.0 => format!("{v:.2}"),
        v => format!("{v:.3}"),
    }
}

fn opt<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "-".into(), show)
}

impl BenchReport {
    /// The report as Markdown tables.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let s = &self.settings;
        let _ = writeln!(md, "# st2v bench: {}\n", self.model_set.name);
        let peak = opt(m.cpu_peak_gflops_estimate, |g| {
            format!("; CPU fp32 peak ~{g:.0} GFLOP/s (estimate)")
        });
        let _ = writeln!(
            md,
            "- machine: {} ({} cores{peak}){}; {}\n- ONNX Runtime {}; commit {}\n- model set `{}` \
             (preset {}); {} frames; steps {}/{}/{}; enhancer batch {}; seed {}; {} warm-up + {} \
             runs; threads {}; opt level {}; CPU arena {}; VAE decode batch {}\n",
            m.cpu,
            m.cores,
            if m.gpus.is_empty() {
                String::new()
            } else {
                format!("; {}", m.gpus.join(", "))
            },
            m.os,
            self.onnxruntime,
            self.git_commit,
            self.model_set.dir,
            self.model_set.preset,
            s.frames,
            s.stage1_steps,
            s.stage2_steps,
            opt(s.stage3_steps, |v| v.to_string()),
            s.enhance_batch,
            s.seed,
            s.warmup,
            s.runs,
            opt(s.threads, |v| v.to_string()),
            s.opt_level,
            if s.cpu_arena { "on" } else { "off" },
            opt(s.vae_batch, |v| v.to_string())
        );
        self.end_to_end_table(&mut md);
        for provider in &self.providers {
            graph_table(&mut md, provider);
        }
        self.peers.markdown(&mut md);
        md
    }

    fn end_to_end_table(&self, md: &mut String) {
        let _ = writeln!(md, "## End to end\n");
        let _ = writeln!(
            md,
            "| provider | end to end p50 (s) | / first | stage 1 (s) | stage 2 step p50 (ms) | stage 2 chunk p50 (ms) | stage 3 step p50 (ms) | first preview frame (s) | first final frame (s) | chunk gap p50/p99 (ms) | fps | fps w/o enhancer | fps w/o decode+enhancer | outside ORT | peak RSS (MiB) | RSS {}/{} frames | drift max abs / PSNR |",
            self.settings.memory_frames.0, self.settings.memory_frames.1
        );
        let _ = writeln!(md, "|{}", "---|".repeat(17));
        let first = self.providers.first().map(|p| p.end_to_end.seconds.p50_ms);
        for p in &self.providers {
            let e = &p.end_to_end;
            let stage = |key: &str| e.stages.get(key);
            let _ = writeln!(
                md,
                "| {} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {:.1}% | {} | {} | {} |",
                p.ep,
                e.seconds.p50_ms / 1e3,
                opt(super::stats::ratio(Some(e.seconds.p50_ms), first), |r| format!("x{r:.3}")),
                opt(stage("stage1"), |s| format!("{:.2}", s.seconds.p50_ms / 1e3)),
                opt(stage("stage2").and_then(|s| s.step), |l| ms(l.p50_ms)),
                opt(stage("stage2").and_then(|s| s.chunk), |l| ms(l.p50_ms)),
                opt(stage("stage3").and_then(|s| s.step), |l| ms(l.p50_ms)),
                opt(e.time_to_first_preview_frame, |l| format!("{:.2}", l.p50_ms / 1e3)),
                opt(e.time_to_first_final_frame, |l| format!("{:.2}", l.p50_ms / 1e3)),
                opt(e.preview_chunk_gap, |l| format!("{} / {}", ms(l.p50_ms), ms(l.p99_ms))),
                e.fps,
                opt(e.fps_without_enhancer, |v| format!("{v:.2}")),
                opt(e.fps_without_vae_decode_and_enhancer, |v| format!("{v:.2}")),
                e.overhead.outside_onnxruntime * 100.0,
                opt(p.memory.peak_rss_mib, |v| format!("{v:.0}")),
                opt(p.memory.ratio, |r| format!(
                    "{:.0} / {:.0} (x{r:.3})",
                    p.memory.peak_rss_mib_small.unwrap_or(0.0),
                    p.memory.peak_rss_mib_large.unwrap_or(0.0)
                )),
                opt(p.drift.as_ref(), |d| format!(
                    "{:.1} / {}",
                    d.max_abs,
                    opt(d.psnr_db, |v| format!("{v:.1} dB"))
                )),
            );
        }
        let _ = writeln!(md);
        for p in &self.providers {
            let o = &p.end_to_end.overhead;
            let _ = writeln!(
                md,
                "- {}: ONNX Runtime {:.1}%, graph-boundary copies {:.1}%, orchestration {:.1}% of \
                 end-to-end time; sessions created in {:.2} s ({} the second time){}",
                p.ep,
                o.onnxruntime * 100.0,
                o.graph_boundary_copies * 100.0,
                o.orchestration * 100.0,
                p.session_creation_s,
                opt(p.session_creation_again_s, |v| format!("{v:.2} s")),
                opt(p.checkpoints.as_ref(), |c| {
                    format!(
                    "; job checkpoints: {} of {:.1} ms each ({} kB), {} of the stage-2 chunks' time",
                    c.count,
                    c.mean_ms,
                    c.bytes / 1000,
                    opt(c.share_of_stage2_chunks, |s| format!("{:.2}%", s * 100.0)),
                )
                }),
            );
        }
        let _ = writeln!(md);
    }
}

fn graph_table(md: &mut String, p: &ProviderReport) {
    let _ = writeln!(md, "## Graphs on {}\n", p.ep);
    let _ = writeln!(
        md,
        "| role | inputs | calls/run | session (s) | min | p50 | p90 | p99 | max (ms) | call p50 (ms) | GFLOP/call | GFLOP/s | % of peak | top operators (kernel ms) |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for g in &p.graphs {
        let t = &g.timing;
        let l = &t.latency;
        let inputs: Vec<String> = t
            .inputs
            .iter()
            .map(|i| format!("{}{:?}", i.name, i.shape))
            .collect();
        let top = g.profile.as_ref().map(|profile| {
            profile
                .operators
                .iter()
                .take(3)
                .map(|o| format!("{} {}", o.op, ms(o.kernel_ms)))
                .collect::<Vec<_>>()
                .join(", ")
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.role,
            inputs.join(" "),
            g.calls_per_run,
            t.session_creation_s,
            ms(l.min_ms),
            ms(l.p50_ms),
            ms(l.p90_ms),
            ms(l.p99_ms),
            ms(l.max_ms),
            ms(t.call_latency.p50_ms),
            opt(g.profile.as_ref(), |p| format!("{:.3}", p.flops / 1e9)),
            opt(g.achieved_gflops, |v| format!("{v:.1}")),
            opt(g.share_of_peak, |v| format!("{:.1}%", v * 100.0)),
            top.unwrap_or_else(|| "-".into()),
        );
    }
    let _ = writeln!(md);
}

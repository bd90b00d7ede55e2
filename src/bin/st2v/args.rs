//! Raw command-line arguments (clap derive). `config.rs` turns them into checked configuration.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "StreamingT2V long text-to-video generation on ONNX Runtime";

const EXAMPLES: &str = "\
Examples:
  st2v doctor                                   check ONNX Runtime, providers, GPU and the model set
  st2v generate --prompt \"a cat running on the street\" --frames 48 --out cat.mp4
  st2v generate --prompt \"waves at dusk\" --ep cuda --no-enhance --out waves.gif
  st2v extend --input cat.mp4 --prompt \"the cat jumps\" --frames 48 --out longer.mp4
  st2v enhance --input draft.mp4 --prompt \"waves at dusk\" --out sharp.mp4
  st2v eval cat.mp4 --prompt \"a cat running on the street\" --plot cat.svg
  st2v models inspect models/tiny --verify

Execution providers (--ep, env ST2V_EP):
  cpu | cuda | tensorrt               one provider; an error if it cannot be used
  tensorrt,cuda,cpu                   tried in order, each fallback is reported
  cuda,unet=tensorrt,vae=cpu          per graph: `role=` (or a role prefix) starts its own list

Exit status: 0 success, 1 failure while running (a full disk included), 2 invalid usage or
input found before any compute (flags, paths, model set), 3 ONNX Runtime or execution provider
unavailable, 128+N stopped by signal N: 130 interrupted (Ctrl-C), 143 SIGTERM, 129 SIGHUP (the
outputs keep every frame finished so far).";

#[derive(Debug, Parser)]
#[command(name = "st2v", version, about = ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a video from a prompt (stages 1, 2 and 3).
    Generate(GenerateArgs),
    /// Continue an existing video (stage 2 conditioned on its last frames, then stage 3).
    Extend(ExtendArgs),
    /// Enhance an existing video with the high-resolution refiner (stage 3 only).
    Enhance(EnhanceArgs),
    /// Continue a job `generate --job-dir` started, from its last checkpoint.
    Resume(crate::args_job::ResumeArgs),
    /// Serve generation over HTTP.
    Serve(crate::args_serve::ServeArgs),
    /// Measure per-stage speed and memory on this machine.
    Bench(BenchArgs),
    /// Score videos with the paper's metrics (CLIP score, SCuts, MAWE), seams and drift.
    Eval(EvalArgs),
    /// Report ONNX Runtime, execution providers, CPU/GPU facts, and check a model set.
    Doctor(DoctorArgs),
    /// Inspect model sets.
    #[command(subcommand)]
    Models(ModelsCommand),
}

/// Where the model set is.
#[derive(Debug, Clone, Args)]
pub struct ModelsArg {
    /// Model-set directory (holding manifest.json) [default: models/toy of the repository or
    /// the current directory].
    #[arg(long, env = "ST2V_MODELS", value_name = "DIR")]
    pub models: Option<PathBuf>,
}

/// How ONNX Runtime is found and how sessions are built.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Execution providers: `cpu`, `cuda`, `tensorrt`, an ordered fallback list
    /// (`tensorrt,cuda,cpu`) or per-graph placement (`cuda,unet=tensorrt`).
    #[arg(long, env = "ST2V_EP", default_value = "cpu", value_name = "SPEC")]
    pub ep: String,
    /// GPU ordinal for CUDA and TensorRT.
    #[arg(long, env = "ST2V_DEVICE_ID", default_value_t = 0, value_name = "N")]
    pub device_id: i32,
    /// Intra-op threads per session [default: chosen by ONNX Runtime].
    #[arg(long, env = "ST2V_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// Graph optimization level: disable, basic, extended, all.
    #[arg(long, default_value = "all", value_name = "LEVEL")]
    pub opt_level: String,
    /// TensorRT: build fp16 engines.
    #[arg(long)]
    pub trt_fp16: bool,
    /// TensorRT: directory for the engine and timing caches (reused across runs).
    #[arg(long, env = "ST2V_TRT_CACHE", value_name = "DIR")]
    pub trt_cache: Option<PathBuf>,
    /// CUDA/TensorRT: capture CUDA graphs (static shapes only).
    #[arg(long)]
    pub cuda_graph: bool,
    /// CPU: turn ONNX Runtime's memory arena off, so each graph call returns its activation
    /// memory instead of every session keeping its peak (needed to run a full-size set on a CPU
    /// with under ~40 GiB; memory is then allocated per call).
    #[arg(long, env = "ST2V_NO_CPU_ARENA")]
    pub no_cpu_arena: bool,
    /// Decode at most N frames per stage-1/2 VAE decoder call [default: a whole chunk]. The
    /// decoder's activations at full size take gigabytes per 16-frame call; fewer frames per
    /// call bound them.
    #[arg(long, env = "ST2V_VAE_BATCH", value_name = "N")]
    pub vae_batch: Option<usize>,
    /// ONNX Runtime shared library (libonnxruntime.so); ORT_DYLIB_PATH is honoured next, then
    /// the repository's runtime/ directory, then the onnxruntime Python package.
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
}

/// Model set plus engine flags: what every model-running command takes.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    #[command(flatten)]
    pub models: ModelsArg,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GuidanceMode {
    /// One scale over text and anchor: batch [uncond, cond] (the reference).
    Joint,
    /// Separate --text-scale and --anchor-scale: batch of three.
    Multi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AnchorArg {
    /// The first frame of the video anchors every chunk.
    First,
    /// The last frame of the previous chunk anchors the next.
    PreviousChunk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Mp4,
    Gif,
    Png,
}

/// Stage-2 (streaming) sampling flags.
#[derive(Debug, Clone, Args)]
pub struct StreamingArgs {
    /// Negative prompt for classifier-free guidance.
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub negative_prompt: String,
    /// Random seed of every stage (stage 1 noise, stage 2 chunks, stage 3 noise and blending).
    #[arg(long, default_value_t = 33, value_name = "S")]
    pub seed: u64,
    /// Seed stage 2 alone [default: --seed]. The reference seeds stage 2 with 33 whatever its
    /// --seed: `--stage2-seed 33` reproduces it.
    #[arg(long, value_name = "S")]
    pub stage2_seed: Option<u64>,
    /// Stage-2 denoising steps [default: from the manifest, 50].
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Guidance mode.
    #[arg(long, value_enum, default_value_t = GuidanceMode::Joint)]
    pub guidance: GuidanceMode,
    /// Joint guidance scale [default: from the manifest, 7.5].
    #[arg(long, value_name = "W")]
    pub guidance_scale: Option<f32>,
    /// Multi-condition guidance: text scale.
    #[arg(long, value_name = "W", requires = "anchor_scale")]
    pub text_scale: Option<f32>,
    /// Multi-condition guidance: anchor (APM) scale.
    #[arg(long, value_name = "W", requires = "text_scale")]
    pub anchor_scale: Option<f32>,
    /// Which frame the appearance module anchors to.
    #[arg(long, value_enum, default_value_t = AnchorArg::First)]
    pub anchor: AnchorArg,
}

/// Stage-3 (enhancer) flags.
#[derive(Debug, Clone, Args)]
pub struct EnhancerArgs {
    /// Enhancer denoising steps [default: from the manifest, 30].
    #[arg(long, value_name = "N")]
    pub enhance_steps: Option<usize>,
    /// Enhancer chunk length in frames [default: from the manifest, 24].
    #[arg(long, value_name = "N")]
    pub chunk: Option<usize>,
    /// Enhancer chunk overlap in frames [default: from the manifest, 8].
    #[arg(long, value_name = "N")]
    pub overlap: Option<usize>,
    /// Keep the black padding the enhancer's frame size adds.
    #[arg(long)]
    pub keep_padding: bool,
    /// Enhancer chunks whose steps run in one UNet call (throughput on a GPU; results equal
    /// to a chunk at a time within float rounding) [default: 1].
    #[arg(long, value_name = "N")]
    pub enhance_batch: Option<usize>,
}

/// Where and how results are written and reported.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output file (.mp4, .gif) or directory of PNG frames.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub out: PathBuf,
    /// Output format [default: from the --out extension].
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Frames per second of the written video.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub fps: u32,
    /// No progress bars.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Write progress events as JSON lines to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Replace existing outputs (--out, --preview-out, the stage-2 side file, --save-latents,
    /// --events). Without it an existing output is an error and nothing is written.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Example:\n  st2v generate --prompt \"a cat running on the street\" --frames 48 --out cat.mp4"
)]
pub struct GenerateArgs {
    /// What the video shows.
    #[arg(long, short = 'p', value_name = "TEXT")]
    pub prompt: String,
    /// Number of frames (rounded to what the chunk arithmetic produces; the message says so).
    #[arg(long, short = 'n', value_name = "N")]
    pub frames: Option<usize>,
    /// Stage-1 denoising steps [default: from the manifest, 50].
    #[arg(long, value_name = "N")]
    pub stage1_steps: Option<usize>,
    /// Stop after stage 2 (no enhancement). Implied for a model set with no enhancer graphs
    /// (a stage-2 set).
    #[arg(long)]
    pub no_enhance: bool,
    /// Also write the stage-2 (pre-enhancement) video here.
    #[arg(long, value_name = "PATH")]
    pub preview_out: Option<PathBuf>,
    /// Save each chunk's final latents as .npy files in DIR.
    #[arg(long, value_name = "DIR")]
    pub save_latents: Option<PathBuf>,
    /// Start stage 1 from this noise (.npy, shape (1, 4, F, h, w)) instead of the seed.
    #[arg(long, value_name = "FILE.npy")]
    pub init_noise: Option<PathBuf>,
    /// Prompts for later parts of the video: a JSON list
    /// `[{"from_frame": 120, "prompt": "..."}, ...]` (frames increasing, above 0; --prompt is
    /// frame 0's). Each stage-2 chunk and enhancer chunk takes the prompt in effect at its
    /// first frame.
    #[arg(long, value_name = "FILE.json")]
    pub prompt_schedule: Option<PathBuf>,
    /// After writing the video, score it as `st2v eval` does (every metric the model set has
    /// graphs for; seams at the stage-2 chunk geometry), print the table and append an `eval`
    /// event to --events.
    #[arg(long)]
    pub eval: bool,
    #[command(flatten)]
    pub job: crate::args_job::JobArgs,
    #[command(flatten)]
    pub streaming: StreamingArgs,
    #[command(flatten)]
    pub enhancer: EnhancerArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Example:\n  st2v extend --input cat.mp4 --prompt \"the cat jumps\" --frames 48 --out longer.mp4"
)]
pub struct ExtendArgs {
    /// Video to continue: its last frames condition the CAM, its first frame is the anchor.
    #[arg(long, short = 'i', value_name = "VIDEO")]
    pub input: PathBuf,
    /// What the continuation shows.
    #[arg(long, short = 'p', value_name = "TEXT")]
    pub prompt: String,
    /// Number of new frames.
    #[arg(long, short = 'n', value_name = "N")]
    pub frames: Option<usize>,
    /// Stop after stage 2 (no enhancement). Implied for a model set with no enhancer graphs
    /// (a stage-2 set).
    #[arg(long)]
    pub no_enhance: bool,
    #[command(flatten)]
    pub streaming: StreamingArgs,
    #[command(flatten)]
    pub enhancer: EnhancerArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Example:\n  st2v enhance --input draft.mp4 --prompt \"waves at dusk\" --out sharp.mp4"
)]
pub struct EnhanceArgs {
    /// Video to enhance.
    #[arg(long, short = 'i', value_name = "VIDEO")]
    pub input: PathBuf,
    /// What the video shows (conditions the enhancer).
    #[arg(long, short = 'p', value_name = "TEXT")]
    pub prompt: String,
    /// Negative prompt for classifier-free guidance.
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub negative_prompt: String,
    /// Random seed.
    #[arg(long, default_value_t = 33, value_name = "S")]
    pub seed: u64,
    #[command(flatten)]
    pub enhancer: EnhancerArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Measures, per execution provider (--ep cpu,cuda,tensorrt: each one on its own, side by side):
  - each graph alone at the shapes the pipeline runs it at: min/p50/p90/p99/max after warm-up,
    session creation apart, FLOPs per call and GFLOP/s from ONNX Runtime's profile;
  - per denoising step, per chunk, per stage and end to end; time to the first preview and
    final frame; gaps between chunks; frames per second with and without the VAE decode and
    the enhancer; the share of time outside ONNX Runtime and where it goes;
  - peak memory, and at two lengths (--memory-frames) with their ratio;
  - drift of every provider's frames against the first provider's (same seed).
With the repository's Python environment, the same work through onnxruntime's Python API +
NumPy (benches/py_orchestrator.py) and PyTorch eager per graph (benches/torch_eager.py).

Example:
  st2v bench --models models/tiny --frames 48 --runs 3 --json bench.json --markdown bench.md")]
pub struct BenchArgs {
    /// Frames per measured generation.
    #[arg(long, default_value_t = 48, value_name = "N")]
    pub frames: usize,
    /// Unmeasured runs before the measured ones (per provider and per graph).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub warmup: usize,
    /// Measured runs (end to end; also calls per graph).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub runs: usize,
    /// Stages to run: `1,2` (no enhancer) or `1,2,3`.
    #[arg(long, default_value = "1,2,3", value_name = "LIST")]
    pub stages: String,
    /// Stage-1 steps [default: the manifest's].
    #[arg(long, value_name = "N")]
    pub stage1_steps: Option<usize>,
    /// Stage-2 steps [default: the manifest's].
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Stage-3 steps [default: the manifest's].
    #[arg(long, value_name = "N")]
    pub enhance_steps: Option<usize>,
    /// Enhancer chunks per UNet call (as generate's --enhance-batch) [default: 1].
    #[arg(long, value_name = "N")]
    pub enhance_batch: Option<usize>,
    #[arg(long, default_value_t = 33, value_name = "S")]
    pub seed: u64,
    /// The two lengths of the memory runs (one step per stage).
    #[arg(long, default_value = "48,480", value_name = "SMALL,LARGE")]
    pub memory_frames: String,
    /// Skip the per-graph ONNX Runtime profile (FLOPs, operator times).
    #[arg(long)]
    pub no_profile: bool,
    /// Skip the Python and PyTorch peers.
    #[arg(long)]
    pub no_peers: bool,
    /// Python interpreter for the peers [default: the repository's .venv].
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// The report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The report as Markdown [default: printed on stdout].
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Replace existing report files.
    #[arg(long)]
    pub force: bool,
    /// No progress display.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlowArg {
    Farneback,
    Raft,
}

const EVAL_HELP: &str = "\
Metrics (--metrics, default all):
  clip    CLIP text-image score: mean over frames of 100 x cos(prompt, frame) with the model
          set's CLIP towers (clip_text_encoder + image_encoder); frames centre-cropped
  scuts   scene cuts: PySceneDetect's AdaptiveDetector with its defaults (the paper's SCuts);
          a generated video should have 0
  mawe    motion-aware warp error (the paper's MAWE, as the reference's mawe.py): frames at
          720x720, optical flow (--flow: Farneback by default; the reference uses RAFT, values
          are comparable only between runs with the same flow), mean over frame pairs of
          warp error / (9.5 x mean flow); lower is better
  seams   frame difference and warp error across chunk boundaries vs inside chunks; a seam is
          flagged when it jumps more than anything inside its two chunks
  drift   per chunk: CLIP similarity to the anchor frame and to the previous chunk, colour
          distance to the first chunk

Examples:
  st2v eval cat.mp4 --prompt \"a cat running on the street\"
  st2v eval a.mp4 b.mp4 --prompt \"waves at dusk\" --json eval.json --plot eval.svg
  st2v eval enhanced.mp4 --metrics seams,scuts --chunk 24 --overlap 8";

#[derive(Debug, Clone, Args)]
#[command(after_help = EVAL_HELP)]
pub struct EvalArgs {
    /// Videos to score (MP4 and other FFmpeg containers, GIF, PNG directories); several are
    /// compared side by side.
    #[arg(required = true, value_name = "VIDEO")]
    pub videos: Vec<PathBuf>,
    /// The prompt the videos were made from (needed by the clip metric).
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// Comma-separated metrics: clip, scuts, mawe, seams, drift, or all.
    #[arg(long, default_value = "all", value_name = "LIST")]
    pub metrics: String,
    /// Frames per generated chunk [default: the model set's stage-2 chunk, 16].
    #[arg(long, value_name = "N")]
    pub chunk: Option<usize>,
    /// Frames each chunk shares with the previous one [default: the model set's stage-2
    /// conditioning frames, 8]; use --chunk 24 --overlap 8 for enhanced (stage-3) videos.
    #[arg(long, value_name = "N")]
    pub overlap: Option<usize>,
    /// The frame drift compares every chunk with (the reference's APM anchor is frame 0).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub anchor_frame: usize,
    /// Optical flow for mawe and seams: farneback (no weights, any machine) or raft (the
    /// model set's `raft` graph, as the reference's mawe.py; random-weight sets give
    /// arbitrary flow).
    #[arg(long, value_enum, default_value = "farneback")]
    pub flow: FlowArg,
    /// Side of the square frames Farneback flow runs on [default: 720, as the reference's
    /// MAWE; smaller is faster]. RAFT runs at its graph's size.
    #[arg(long, value_name = "PIXELS")]
    pub motion_size: Option<usize>,
    /// Write the full report (every per-frame and per-chunk figure) as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one row per frame of every video as CSV.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Draw the seam, drift and CLIP curves as an SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Replace existing report files.
    #[arg(long)]
    pub force: bool,
    /// No progress display.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Example:\n  st2v doctor --json --models models/tiny")]
pub struct DoctorArgs {
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Print a model set's manifest summary and open every graph to check its signature.
    #[command(after_help = "Example:\n  st2v models inspect models/tiny --verify")]
    Inspect(InspectArgs),
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Model-set directory (holding manifest.json).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Also check the sha256 of every file (streams every byte).
    #[arg(long)]
    pub verify: bool,
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

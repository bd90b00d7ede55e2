//! Peak memory and wall time of a whole generation on the tiny model set, at 48 and 480
//! frames: streaming keeps stage-2 memory flat and stage 3 holds a bounded window, so the
//! peak should barely grow with the video's length (target ratio <= 1.1).
//!
//! `cargo bench --bench pipeline` (steps cut to 2 per stage; `ST2V_MODELS` overrides the set).
//! Each measurement runs in a fresh child process, because peak RSS (`VmHWM`) only grows.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use streamingt2v::manifest::ModelSet;
use streamingt2v::models::ModelLoader;
use streamingt2v::pipeline::{
    EnhancerGraphs, GenerateOptions, Outputs, Pipeline, PromptIds, RunContext, StreamingGraphs,
    TokenIds,
};
use streamingt2v::progress::{CancelToken, NoProgress};
use streamingt2v::runtime::{EpConfig, OrtRuntime, SessionFactory};
use streamingt2v::tokenizer::ClipTokenizer;
use streamingt2v::video::{Frame, VideoError};

const CHILD_ENV: &str = "ST2V_BENCH_FRAMES";
const LENGTHS: [usize; 2] = [48, 480];

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(frames) => measure(frames.parse().expect("frame count")),
        Err(_) => compare(),
    }
}

/// Runs one child per length and prints peak RSS, time and the ratio.
fn compare() {
    let exe = std::env::current_exe().expect("bench executable path");
    let mut peaks = Vec::new();
    println!("{:>7} {:>14} {:>9}", "frames", "peak RSS (MiB)", "seconds");
    for frames in LENGTHS {
        let out = Command::new(&exe)
            .env(CHILD_ENV, frames.to_string())
            .output()
            .expect("bench child runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |name: &str| -> f64 {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name))
                .and_then(|v| v.parse().ok())
                .expect("child reports its measurements")
        };
        let (peak_kib, seconds) = (field("peak_kib="), field("seconds="));
        println!("{frames:>7} {:>14.1} {seconds:>9.2}", peak_kib / 1024.0);
        peaks.push(peak_kib);
    }
    println!(
        "peak RSS ratio {}/{} frames: {:.3} (target <= 1.1)",
        LENGTHS[1],
        LENGTHS[0],
        peaks[1] / peaks[0]
    );
}

/// One generation with enhancement, frames discarded as they arrive.
fn measure(frames: usize) {
    let dir = std::env::var_os("ST2V_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny"));
    let set = ModelSet::open(&dir).expect("model set opens");
    let factory = SessionFactory::new(
        OrtRuntime::load(None).expect("ONNX Runtime"),
        EpConfig::cpu(),
    );
    let loader = ModelLoader::new(&set, &factory);
    let mut streaming = loader.streaming(true).expect("stage 1/2 graphs");
    let mut enhancer = loader.enhancer().expect("stage 3 graphs");
    let tokenizer = ClipTokenizer::open(&set, &set.manifest.tokenizers.text).expect("tokenizer");
    let ids = |text: &str| TokenIds(tokenizer.encode(text).expect("tokenizes").ids);
    let text = PromptIds {
        prompt: ids("a cat running on the street"),
        negative: ids(""),
    };
    let enhancer_text = PromptIds {
        prompt: ids("a cat running on the street, "),
        negative: ids(""),
    };
    let config = &set.manifest.pipeline;
    let mut options = GenerateOptions::from_config(config, frames);
    options.stage1.steps = 2;
    options.stage2.steps = 2;
    if let Some(enhance) = options.enhance.as_mut() {
        enhance.steps = 2;
    }
    let cancel = CancelToken::new();
    let mut run = RunContext::new(&NoProgress, &cancel);
    let mut written = 0usize;
    let mut discard = |_: &Frame| -> Result<(), VideoError> {
        written += 1;
        Ok(())
    };
    let started = Instant::now();
    Pipeline::new(config)
        .with_streaming(StreamingGraphs::from_onnx(&mut streaming))
        .with_enhancer(EnhancerGraphs::from_onnx(&mut enhancer))
        .generate(
            &text,
            Some(&enhancer_text),
            &options,
            None,
            &mut run,
            Outputs {
                video: &mut discard,
                preview: None,
            },
        )
        .expect("generation succeeds");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(written, frames);
    println!("peak_kib={} seconds={seconds}", peak_rss_kib());
}

/// `VmHWM` of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

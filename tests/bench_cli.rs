//! `st2v bench` on the tiny set, one short run: every figure the report promises is present and
//! consistent (percentiles ordered, shares in [0, 1], every graph the pipeline ran timed and
//! profiled). Speed itself is never asserted (these machines are noisy).

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny")
}

fn bench(dir: &Path, extra: &[&str]) -> Value {
    let json = dir.join("bench.json");
    let markdown = dir.join("bench.md");
    Command::cargo_bin("st2v")
        .unwrap()
        .args(["bench", "--models"])
        .arg(tiny())
        .args(["--quiet", "--frames", "24", "--warmup", "0", "--runs", "2"])
        .args([
            "--stage1-steps",
            "1",
            "--steps",
            "2",
            "--enhance-steps",
            "1",
        ])
        .args(["--memory-frames", "16,40", "--json"])
        .arg(&json)
        .arg("--markdown")
        .arg(&markdown)
        .args(extra)
        .assert()
        .success();
    let text = std::fs::read_to_string(&markdown).unwrap();
    for heading in [
        "## End to end",
        "## Graphs on cpu",
        "## Peers on the same work",
    ] {
        assert!(text.contains(heading), "{heading} in the Markdown report");
    }
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

fn number(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is a number: {value}"))
}

fn ordered_latency(latency: &Value, what: &str) {
    let keys = ["min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"];
    let values: Vec<f64> = keys.iter().map(|k| number(&latency[k], what)).collect();
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "{what}: {values:?}"
    );
}

#[test]
fn the_report_has_every_figure_for_the_tiny_set() {
    let dir = TempDir::new().unwrap();
    let report = bench(dir.path(), &["--no-peers", "--enhance-batch", "2"]);
    assert!(report["onnxruntime"].as_str().unwrap().starts_with("1."));
    assert_eq!(report["settings"]["enhance_batch"], 2);
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    assert_ne!(report["git_commit"], "");
    let cpu = &report["providers"][0];
    assert_eq!(cpu["ep"], "cpu");
    let graphs = cpu["graphs"].as_array().unwrap();
    assert_eq!(graphs.len(), 12, "every graph the pipeline runs");
    for graph in graphs {
        let role = graph["role"].as_str().unwrap();
        ordered_latency(&graph["latency"], role);
        assert!(graph["calls_per_run"].as_u64().unwrap() >= 1, "{role}");
        assert!(!graph["inputs"].as_array().unwrap().is_empty(), "{role}");
        assert!(number(&graph["session_creation_s"], role) > 0.0);
    }
    let unet = graphs.iter().find(|g| g["role"] == "unet").unwrap();
    assert!(number(&unet["profile"]["flops"], "unet flops") > 1e6);
    assert!(number(&unet["achieved_gflops"], "unet GFLOP/s") > 0.0);

    let e2e = &cpu["end_to_end"];
    assert_eq!(e2e["frames"], 24);
    assert_eq!(e2e["seconds"]["count"], 2);
    for stage in ["stage1", "stage2", "stage3"] {
        ordered_latency(&e2e["stages"][stage]["seconds"], stage);
    }
    assert_eq!(
        e2e["stages"]["stage2"]["step"]["count"], 4,
        "2 steps x 1 chunk x 2 runs"
    );
    let first_preview = number(&e2e["time_to_first_preview_frame"]["p50_ms"], "preview");
    let first_final = number(&e2e["time_to_first_final_frame"]["p50_ms"], "final");
    assert!(
        first_preview < first_final,
        "the preview comes before the enhanced frames"
    );
    let overhead = &e2e["overhead"];
    let shares: Vec<f64> = ["onnxruntime", "graph_boundary_copies", "orchestration"]
        .iter()
        .map(|k| number(&overhead[k], k))
        .collect();
    assert!(shares.iter().all(|s| (0.0..=1.0).contains(s)), "{shares:?}");
    assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(number(&e2e["fps"], "fps") > 0.0);
    assert!(number(&e2e["fps_without_enhancer"], "fps") > number(&e2e["fps"], "fps"));
    let memory = &cpu["memory"];
    assert!(number(&memory["peak_rss_mib"], "peak") > 10.0);
    assert!(number(&memory["ratio"], "ratio") > 0.5);
    assert!(report["peers"]["python"].is_null());
    let checkpoints = &cpu["checkpoints"];
    assert_eq!(
        checkpoints["count"], 2,
        "one per stage-2 chunk of 24 frames"
    );
    assert!(number(&checkpoints["mean_ms"], "checkpoint time") > 0.0);
    assert!(number(&checkpoints["bytes"], "checkpoint size") > 1000.0);
    assert!(number(&checkpoints["share_of_stage2_chunks"], "share") > 0.0);
}

#[test]
fn two_providers_are_compared_side_by_side_with_drift() {
    let dir = TempDir::new().unwrap();
    let report = bench(
        dir.path(),
        &[
            "--no-peers",
            "--no-profile",
            "--stages",
            "1,2",
            "--ep",
            "cpu,cpu",
        ],
    );
    let providers = report["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 2);
    let drift = &providers[1]["drift"];
    assert_eq!(drift["reference"], "cpu");
    assert_eq!(drift["frames_compared"], 24);
    assert_eq!(
        number(&drift["max_abs"], "drift"),
        0.0,
        "same provider, same seed"
    );
    assert!(providers[0]["end_to_end"]["stages"]["stage3"].is_null());
}

/// The peers run when the repository's Python environment has them (`scripts/setup.sh --dev`).
#[test]
fn the_python_and_pytorch_peers_do_the_same_work() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let has_torch = std::process::Command::new(&python)
        .args(["-c", "import torch, onnxruntime, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_torch {
        eprintln!("skipped: no .venv with torch, onnxruntime and numpy (scripts/setup.sh --dev)");
        return;
    }
    let dir = TempDir::new().unwrap();
    let report = bench(dir.path(), &["--no-profile", "--stages", "1,2"]);
    let peers = &report["peers"];
    assert_eq!(peers["python"]["tool"], "python-onnxruntime", "{peers}");
    assert_eq!(peers["python"]["frames"], 24);
    assert!(number(&peers["rust_over_python_end_to_end"], "ratio") > 0.0);
    assert_eq!(peers["torch"]["tool"], "torch-eager");
    let ratios = peers["onnxruntime_over_torch"].as_array().unwrap();
    assert_eq!(ratios.len(), 8, "every graph of stages 1 and 2: {peers}");
}

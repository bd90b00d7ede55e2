//! Peers on the same work in the same run: the Python reference orchestrator (the same graphs
//! through onnxruntime's Python API and NumPy) and PyTorch eager on the export code's modules
//! at the same shapes. Both are scripts in `benches/` run as subprocesses; their JSON is kept
//! whole in the report and compared here.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde_json::{json, Value};

use super::graphs::GraphTiming;
use super::stats::percentile;

/// How to run the peers.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// A Python interpreter with onnxruntime, numpy (and torch for the eager peer).
    pub python: PathBuf,
    /// The directory holding `py_orchestrator.py` and `torch_eager.py`.
    pub scripts: PathBuf,
    /// The export preset whose PyTorch modules the eager peer builds.
    pub preset: String,
}

/// The work both sides did, as the scripts take it.
#[derive(Debug, Clone)]
pub struct PeerWork<'a> {
    pub models: &'a Path,
    pub frames: usize,
    pub steps: (usize, usize, Option<usize>),
    pub runs: usize,
    pub warmup: usize,
    pub seed: u64,
    pub threads: Option<usize>,
    pub cpu_arena: bool,
    pub vae_batch: Option<usize>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerReport {
    /// `py_orchestrator.py`'s JSON.
    pub python: Option<Value>,
    /// `torch_eager.py`'s JSON.
    pub torch: Option<Value>,
    /// Rust end-to-end p50 / Python end-to-end p50 (below 1: Rust is faster).
    pub rust_over_python_end_to_end: Option<f64>,
    /// The Python orchestrator's share of end-to-end time outside onnxruntime (median run),
    /// next to the Rust engine's `overhead.outside_onnxruntime`.
    pub python_outside_onnxruntime: Option<f64>,
    /// Per stage: Rust step p50 / Python step p50.
    pub rust_over_python_step: Vec<(String, f64)>,
    /// Per graph: ONNX Runtime p50 / PyTorch eager p50 (below 1: ONNX Runtime is faster).
    pub onnxruntime_over_torch: Vec<(String, f64)>,
    /// What could not run, and why.
    pub notes: Vec<String>,
}

/// Runs the Python orchestrator; `Err` says why it could not.
pub fn run_python(options: &PeerOptions, work: &PeerWork<'_>, out: &Path) -> Result<Value, String> {
    let script = options.scripts.join("py_orchestrator.py");
    let (s1, s2, s3) = work.steps;
    let mut command = Command::new(&options.python);
    command
        .arg(&script)
        .arg("--models")
        .arg(work.models)
        .args(["--frames", &work.frames.to_string()])
        .args([
            "--stage1-steps",
            &s1.to_string(),
            "--steps",
            &s2.to_string(),
        ])
        .args(["--enhance-steps", &s3.unwrap_or(1).to_string()])
        .args(["--runs", &(work.runs + work.warmup.min(1)).to_string()])
        .args(["--seed", &work.seed.to_string()])
        .args(["--threads", &work.threads.unwrap_or(0).to_string()])
        .arg("--json")
        .arg(out);
    if s3.is_none() {
        command.arg("--no-enhance");
    }
    if !work.cpu_arena {
        command.arg("--no-cpu-arena");
    }
    if let Some(frames) = work.vae_batch {
        command.args(["--vae-batch", &frames.to_string()]);
    }
    run_script(command, &script, out)
}

/// Runs PyTorch eager at the shapes `graphs` were timed at.
pub fn run_torch(
    options: &PeerOptions,
    work: &PeerWork<'_>,
    graphs: &[GraphTiming],
    dir: &Path,
) -> Result<Value, String> {
    let script = options.scripts.join("torch_eager.py");
    let shapes: serde_json::Map<String, Value> = graphs
        .iter()
        .map(|g| {
            let inputs: serde_json::Map<String, Value> = g
                .inputs
                .iter()
                .map(|i| (i.name.clone(), json!({"shape": i.shape, "dtype": i.dtype})))
                .collect();
            (g.role.clone(), Value::Object(inputs))
        })
        .collect();
    let shapes_file = dir.join("torch_shapes.json");
    std::fs::write(&shapes_file, Value::Object(shapes).to_string()).map_err(|e| e.to_string())?;
    let roles: Vec<&str> = graphs.iter().map(|g| g.role.as_str()).collect();
    let out = dir.join("torch_eager.json");
    let mut command = Command::new(&options.python);
    command
        .arg(&script)
        .args(["--preset", &options.preset, "--roles", &roles.join(",")])
        .arg("--shapes")
        .arg(&shapes_file)
        .args([
            "--warmup",
            &work.warmup.to_string(),
            "--runs",
            &work.runs.max(1).to_string(),
        ])
        .args(["--threads", &work.threads.unwrap_or(0).to_string()])
        .arg("--json")
        .arg(&out);
    run_script(command, &script, &out)
}

fn run_script(mut command: Command, script: &Path, out: &Path) -> Result<Value, String> {
    if !script.is_file() {
        return Err(format!("{} not found", script.display()));
    }
    let output = command
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(format!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            last.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    let text = std::fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", out.display()))
}

/// The median of a JSON list of numbers.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(percentile(&values, 50.0))
}

impl PeerReport {
    /// Compares the Python run with the Rust end-to-end p50 (seconds) and step p50s (ms).
    pub fn compare_python(&mut self, rust_seconds: f64, rust_steps: &[(String, f64)]) {
        let Some(python) = &self.python else { return };
        let runs = python["runs"].as_array().cloned().unwrap_or_default();
        let python_e2e = median(runs.iter().filter_map(|r| r["end_to_end_s"].as_f64()));
        self.rust_over_python_end_to_end = python_e2e.map(|p| rust_seconds / p);
        self.python_outside_onnxruntime = median(
            runs.iter()
                .filter_map(|r| Some(1.0 - r["ort_s"].as_f64()? / r["end_to_end_s"].as_f64()?)),
        );
        for (stage, rust_ms) in rust_steps {
            let steps = runs.iter().flat_map(|r| {
                r["stages"][stage]["step_ms"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            });
            if let Some(python_ms) = median(steps.filter_map(|v| v.as_f64())) {
                self.rust_over_python_step
                    .push((stage.clone(), rust_ms / python_ms));
            }
        }
    }

    /// Compares PyTorch eager with ONNX Runtime's p50 per graph.
    pub fn compare_torch(&mut self, graphs: &[GraphTiming]) {
        let Some(torch) = &self.torch else { return };
        for graph in graphs {
            let entry = &torch["graphs"][&graph.role];
            if let Some(error) = entry["error"].as_str() {
                self.notes
                    .push(format!("torch eager {}: {error}", graph.role));
                continue;
            }
            let runs = entry["ms"].as_array().cloned().unwrap_or_default();
            if let Some(torch_ms) = median(runs.iter().filter_map(Value::as_f64)) {
                let ratio = graph.latency.p50_ms / torch_ms;
                self.onnxruntime_over_torch
                    .push((graph.role.clone(), ratio));
            }
        }
    }

    pub fn markdown(&self, md: &mut String) {
        let _ = writeln!(md, "## Peers on the same work\n");
        match self.rust_over_python_end_to_end {
            Some(ratio) => {
                let _ = writeln!(
                    md,
                    "- Rust / Python orchestrator, end to end p50: **{ratio:.3}** (below 1: Rust is faster)"
                );
            }
            None => {
                let _ = writeln!(md, "- Python orchestrator: not run");
            }
        }
        if let Some(share) = self.python_outside_onnxruntime {
            let _ = writeln!(
                md,
                "- Python orchestrator's time outside onnxruntime: {:.1}%",
                share * 100.0
            );
        }
        for (stage, ratio) in &self.rust_over_python_step {
            let _ = writeln!(md, "- Rust / Python, {stage} step p50: {ratio:.3}");
        }
        if !self.onnxruntime_over_torch.is_empty() {
            let _ = writeln!(
                md,
                "\n| role | ONNX Runtime p50 / PyTorch eager p50 |\n|---|---|"
            );
            for (role, ratio) in &self.onnxruntime_over_torch {
                let _ = writeln!(md, "| {role} | {ratio:.3} |");
            }
        }
        for note in &self.notes {
            let _ = writeln!(md, "- note: {note}");
        }
        let _ = writeln!(md);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_runs_are_compared_by_their_medians() {
        let mut report = PeerReport {
            python: Some(json!({"runs": [
                {"end_to_end_s": 2.0, "ort_s": 1.5, "stages": {"stage2": {"step_ms": [10.0, 30.0]}}},
                {"end_to_end_s": 4.0, "ort_s": 3.0, "stages": {"stage2": {"step_ms": [20.0]}}}
            ]})),
            ..PeerReport::default()
        };
        report.compare_python(1.5, &[("stage2".into(), 10.0)]);
        assert_eq!(report.rust_over_python_end_to_end, Some(0.5));
        assert_eq!(report.rust_over_python_step, vec![("stage2".into(), 0.5)]);
        assert_eq!(report.python_outside_onnxruntime, Some(0.25));
    }
}

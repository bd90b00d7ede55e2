//! What a report was measured on, and the process's memory (Linux `/proc`).

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// The machine, as a report records it.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    /// `nvidia-smi -L` lines, empty without an NVIDIA GPU.
    pub gpus: Vec<String>,
    /// A rough fp32 peak: cores x clock x FLOPs per cycle from the vector units the CPU
    /// reports (AVX-512 FMA 64, AVX2 FMA 32, else 8). For scale, not a measurement.
    pub cpu_peak_gflops_estimate: Option<f64>,
    pub os: String,
}

impl Machine {
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_owned())
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let flags = field("flags").unwrap_or_default();
        let per_cycle = match (
            flags.contains("avx512f"),
            flags.contains("avx2") && flags.contains("fma"),
        ) {
            (true, _) => 64.0,
            (false, true) => 32.0,
            _ => 8.0,
        };
        let mhz = field("cpu MHz").and_then(|v| v.parse::<f64>().ok());
        Self {
            cpu: field("model name").unwrap_or_else(|| "unknown".into()),
            cores,
            gpus: command_lines("nvidia-smi", &["-L"]),
            cpu_peak_gflops_estimate: mhz.map(|mhz| cores as f64 * mhz / 1e3 * per_cycle),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

fn command_lines(program: &str, args: &[&str]) -> Vec<String> {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// GPU memory in use per GPU (MiB), from `nvidia-smi`; empty without one.
pub fn gpu_memory_used_mib() -> Vec<f64> {
    let query = ["--query-gpu=memory.used", "--format=csv,noheader,nounits"];
    command_lines("nvidia-smi", &query)
        .iter()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The git commit of the repository holding `dir` (`unknown` outside one).
pub fn git_commit(dir: &Path) -> String {
    let dir = dir.to_string_lossy();
    let lines = command_lines("git", &["-C", &dir, "rev-parse", "--short=12", "HEAD"]);
    let dirty = !command_lines(
        "git",
        &["-C", &dir, "status", "--porcelain", "--untracked-files=no"],
    )
    .is_empty();
    match lines.first() {
        Some(commit) if dirty => format!("{commit}-dirty"),
        Some(commit) => commit.clone(),
        None => "unknown".into(),
    }
}

/// Peak resident memory of this process so far, in MiB (`VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the peak to the current resident size (Linux >= 4.0), so the next peak measures one
/// phase; `false` where the kernel does not allow it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_grows_with_a_large_allocation_and_resets() {
        let Some(before) = peak_rss_mib() else {
            return; // not Linux
        };
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let peak = peak_rss_mib().unwrap();
        assert!(peak >= before.max(64.0), "{peak} MiB after touching 64 MiB");
        drop(block);
        if reset_peak_rss() {
            assert!(peak_rss_mib().unwrap() < peak, "the peak was reset");
        }
    }
}

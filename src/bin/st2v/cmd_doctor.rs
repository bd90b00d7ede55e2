//! `st2v doctor`: what this machine offers and whether the model set works on it.

use std::path::PathBuf;
use std::process::Command;

use serde::Serialize;
use streamingt2v::engine::RuntimeSettings;
use streamingt2v::manifest::ModelSet;
use streamingt2v::runtime::{
    EpConfig, LibraryInfo, OrtRuntime, Provider, Rejection, RuntimeError, SessionFactory,
};
use streamingt2v::tokenizer::{ClipTokenizer, TokenizerError};

use crate::args::DoctorArgs;
use crate::checks::{self, GraphCheck};
use crate::config::{models_dir, runtime_settings};

/// The report; field names are stable (scripts read `--json`).
#[derive(Debug, Serialize)]
pub struct DoctorReport {
    /// Every check passed.
    pub ok: bool,
    pub onnxruntime: OrtReport,
    pub providers: Vec<ProviderReport>,
    pub cpu: CpuReport,
    pub gpu: GpuReport,
    pub model_set: ModelSetReport,
}

#[derive(Debug, Serialize)]
pub struct OrtReport {
    pub loaded: bool,
    pub path: Option<PathBuf>,
    pub source: Option<String>,
    pub version: Option<String>,
    pub build_info: Option<String>,
    /// Locations tried that were not used (or all of them, when nothing loaded).
    pub searched: Vec<Rejection>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProviderReport {
    pub name: Provider,
    /// Built into the loaded library (registration may still need drivers and libraries).
    pub compiled_in: bool,
}

#[derive(Debug, Serialize)]
pub struct CpuReport {
    pub logical_cores: usize,
    pub model: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct GpuReport {
    /// Whether `nvidia-smi` ran.
    pub nvidia_smi: bool,
    /// One line per GPU: name, memory, driver.
    pub devices: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ModelSetReport {
    pub dir: Option<PathBuf>,
    pub manifest_ok: bool,
    pub name: Option<String>,
    pub preset: Option<String>,
    /// Every tokenizer of the manifest loads and agrees with its entry.
    pub tokenizers_ok: bool,
    pub graphs: Vec<GraphCheck>,
    pub error: Option<String>,
}

/// Some check failed; the report says which (exit status 1).
#[derive(Debug, thiserror::Error)]
#[error("st2v doctor found problems (see the report above)")]
pub struct DoctorFailed;

pub fn run(args: &DoctorArgs) -> anyhow::Result<()> {
    let engine = runtime_settings(&args.runtime.engine)?;
    let runtime = engine.runtime();
    let onnxruntime = ort_report(&runtime);
    let providers = match &runtime {
        Ok(rt) => provider_report(rt),
        Err(_) => Vec::new(),
    };
    let model_set = model_set_report(
        args,
        runtime
            .ok()
            .map(|rt| SessionFactory::new(rt, cpu_config(&engine))),
    );
    let ok = onnxruntime.loaded
        && model_set.manifest_ok
        && model_set.tokenizers_ok
        && model_set.graphs.iter().all(|g| g.ok);
    let report = DoctorReport {
        ok,
        onnxruntime,
        providers,
        cpu: cpu_report(),
        gpu: gpu_report(),
        model_set,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", render(&report));
    }
    if !report.ok {
        return Err(DoctorFailed.into());
    }
    Ok(())
}

/// Graphs are checked on CPU (always available) with the user's other session options.
fn cpu_config(engine: &RuntimeSettings) -> EpConfig {
    EpConfig {
        placement: EpConfig::cpu().placement,
        ..engine.eps.clone()
    }
}

fn ort_report(runtime: &Result<std::sync::Arc<OrtRuntime>, RuntimeError>) -> OrtReport {
    match runtime {
        Ok(rt) => {
            let LibraryInfo {
                path,
                source,
                version,
                build_info,
                skipped,
            } = rt.library().clone();
            OrtReport {
                loaded: true,
                path: Some(path),
                source: Some(source.to_string()),
                version: Some(version),
                build_info: Some(build_info),
                searched: skipped,
                error: None,
            }
        }
        Err(err) => OrtReport {
            loaded: false,
            path: None,
            source: None,
            version: None,
            build_info: None,
            searched: match err {
                RuntimeError::LibraryNotFound(nf) => nf.rejections.clone(),
                _ => Vec::new(),
            },
            error: Some(err.to_string()),
        },
    }
}

fn provider_report(runtime: &OrtRuntime) -> Vec<ProviderReport> {
    let available = runtime.available_providers();
    Provider::ALL
        .into_iter()
        .map(|name| ProviderReport {
            name,
            compiled_in: available.contains(&name),
        })
        .collect()
}

fn model_set_report(args: &DoctorArgs, factory: Option<SessionFactory>) -> ModelSetReport {
    let mut report = ModelSetReport {
        dir: None,
        manifest_ok: false,
        name: None,
        preset: None,
        tokenizers_ok: false,
        graphs: Vec::new(),
        error: None,
    };
    let dir = match models_dir(&args.runtime.models) {
        Ok(dir) => dir,
        Err(err) => {
            report.error = Some(err.to_string());
            return report;
        }
    };
    report.dir = Some(dir.clone());
    let set = match ModelSet::open(&dir) {
        Ok(set) => set,
        Err(err) => {
            report.error = Some(err.to_string());
            return report;
        }
    };
    report.manifest_ok = true;
    match check_tokenizers(&set) {
        Ok(()) => report.tokenizers_ok = true,
        Err(err) => report.error = Some(err.to_string()),
    }
    report.name = Some(set.manifest.name.clone());
    report.preset = serde_json::to_value(set.manifest.preset)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned));
    match factory {
        Some(factory) => report.graphs = checks::open_all(&set, &factory).0,
        None => {
            report.error = Some(String::from(
                "graphs not opened: ONNX Runtime is not loaded",
            ))
        }
    }
    report
}

fn check_tokenizers(set: &ModelSet) -> Result<(), TokenizerError> {
    let tokenizers = &set.manifest.tokenizers;
    for entry in std::iter::once(&tokenizers.text).chain(&tokenizers.enhancer_text) {
        ClipTokenizer::open(set, entry)?;
    }
    Ok(())
}

fn cpu_report() -> CpuReport {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, name)| name.trim().to_owned());
    CpuReport {
        logical_cores: std::thread::available_parallelism().map_or(1, usize::from),
        model,
    }
}

fn gpu_report() -> GpuReport {
    let output = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total,driver_version",
            "--format=csv,noheader",
        ])
        .output();
    match output {
        Ok(out) if out.status.success() => GpuReport {
            nvidia_smi: true,
            devices: String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect(),
        },
        _ => GpuReport {
            nvidia_smi: false,
            devices: Vec::new(),
        },
    }
}

fn render(report: &DoctorReport) -> String {
    let ort = &report.onnxruntime;
    let mut lines = vec![match (&ort.version, &ort.path, &ort.source, &ort.error) {
        (Some(version), Some(path), Some(source), _) => {
            format!("ONNX Runtime  {version} at {} ({source})", path.display())
        }
        (_, _, _, error) => format!(
            "ONNX Runtime  NOT LOADED: {}",
            error.as_deref().unwrap_or("unknown error")
        ),
    }];
    let built: Vec<&str> = report
        .providers
        .iter()
        .filter(|p| p.compiled_in)
        .map(|p| p.name.name())
        .collect();
    let missing: Vec<&str> = report
        .providers
        .iter()
        .filter(|p| !p.compiled_in)
        .map(|p| p.name.name())
        .collect();
    if !report.providers.is_empty() {
        let mut text = format!("providers     {}", built.join(", "));
        if !missing.is_empty() {
            text.push_str(&format!(" (not in this build: {})", missing.join(", ")));
        }
        lines.push(text);
    }
    let cpu_model = report.cpu.model.as_deref().unwrap_or("unknown model");
    lines.push(format!(
        "CPU           {} logical cores, {cpu_model}",
        report.cpu.logical_cores
    ));
    lines.push(match report.gpu.devices.is_empty() {
        true => String::from("GPU           none"),
        false => format!("GPU           {}", report.gpu.devices.join("; ")),
    });
    lines.push(render_model_set(&report.model_set));
    lines.push(String::from(match report.ok {
        true => "result        all checks passed",
        false => "result        PROBLEMS FOUND",
    }));
    lines.join("\n")
}

fn render_model_set(set: &ModelSetReport) -> String {
    let dir = set
        .dir
        .as_ref()
        .map_or_else(|| String::from("?"), |d| d.display().to_string());
    let mut text = match (&set.name, &set.preset) {
        (Some(name), Some(preset)) => {
            format!("model set     {dir}: manifest ok ({name}, preset {preset})")
        }
        _ => format!("model set     {dir}"),
    };
    if let Some(error) = &set.error {
        text.push_str(&format!("\n  {}", error.replace('\n', "\n  ")));
    }
    if !set.graphs.is_empty() {
        text.push('\n');
        text.push_str(&checks::render(&set.graphs));
    }
    text
}

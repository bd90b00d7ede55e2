//! The one place ONNX Runtime sessions are built: a graph path and an [`EpConfig`] in, a session
//! on the first provider of the graph's list that can be used out.
//!
//! Providers are registered with `error_on_failure()`: ort's default silently runs on CPU when a
//! GPU provider fails to register, and a user who asked for CUDA must get CUDA or an error. When a
//! fallback list is given, each failed provider is logged (tracing warn) and returned in
//! [`OpenedSession::fallbacks`].

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;

use ort::ep::ExecutionProviderDispatch;
use ort::session::Session;
use serde::Serialize;

use super::providers::{EpConfig, Provider};
use super::{OrtRuntime, RuntimeError};

/// A provider that was tried for a graph and could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderAttempt {
    pub provider: Provider,
    pub message: String,
}

/// A session and the provider it runs on.
#[derive(Debug)]
pub struct OpenedSession {
    pub session: Session,
    pub provider: Provider,
    /// Providers tried first that could not be used.
    pub fallbacks: Vec<ProviderAttempt>,
}

/// Builds sessions for one runtime and one EP configuration.
#[derive(Debug, Clone)]
pub struct SessionFactory {
    runtime: Arc<OrtRuntime>,
    config: EpConfig,
}

impl SessionFactory {
    pub fn new(runtime: Arc<OrtRuntime>, config: EpConfig) -> Self {
        SessionFactory { runtime, config }
    }

    pub fn config(&self) -> &EpConfig {
        &self.config
    }

    pub fn runtime(&self) -> &Arc<OrtRuntime> {
        &self.runtime
    }

    /// Opens `graph` for `role` on the role's provider list (see [`super::Placement`]).
    pub fn open(&self, role: &str, graph: &Path) -> Result<OpenedSession, RuntimeError> {
        let list = self.config.placement.for_role(role).providers();
        let mut attempts = Vec::new();
        for &provider in list {
            match self.build(provider, graph) {
                Ok(session) => {
                    report_fallbacks(role, provider, &attempts);
                    return Ok(OpenedSession {
                        session,
                        provider,
                        fallbacks: attempts,
                    });
                }
                Err(message) => attempts.push(ProviderAttempt { provider, message }),
            }
        }
        Err(self.open_error(graph, attempts))
    }

    fn open_error(&self, graph: &Path, mut attempts: Vec<ProviderAttempt>) -> RuntimeError {
        let graph = graph.to_owned();
        match attempts.pop() {
            Some(only) if attempts.is_empty() && only.provider == Provider::Cpu => {
                RuntimeError::Session {
                    graph,
                    message: only.message,
                }
            }
            Some(only) if attempts.is_empty() => RuntimeError::ProviderUnavailable {
                hint: provider_hint(only.provider, &only.message, &self.runtime.library().path),
                graph,
                provider: only.provider,
                message: only.message,
            },
            last => {
                attempts.extend(last);
                RuntimeError::AllProvidersFailed { graph, attempts }
            }
        }
    }

    fn build(&self, provider: Provider, graph: &Path) -> Result<Session, String> {
        build_session(&self.runtime, &self.config, provider, graph).map_err(|e| e.to_string())
    }
}

/// One warning per (unusable provider, fallback) pair in a process, not one per graph.
fn report_fallbacks(role: &str, provider: Provider, attempts: &[ProviderAttempt]) {
    static REPORTED: Mutex<Vec<(Provider, Provider)>> = Mutex::new(Vec::new());
    let mut reported = REPORTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for attempt in attempts {
        if reported.contains(&(attempt.provider, provider)) {
            continue;
        }
        reported.push((attempt.provider, provider));
        tracing::warn!(
            "execution provider {} cannot be used ({}); falling back to {provider} \
             (first for graph {role}; every graph that asks for it does the same)",
            attempt.provider,
            attempt.message
        );
    }
}

fn build_session(
    runtime: &OrtRuntime,
    config: &EpConfig,
    provider: Provider,
    graph: &Path,
) -> ort::Result<Session> {
    let mut builder = Session::builder(runtime.environment())?
        .with_optimization_level(config.opt_level.to_ort())?;
    if let Some(threads) = config.intra_threads {
        builder = builder.with_intra_threads(threads)?;
    }
    if let Some(prefix) = &config.profile_prefix {
        // One prefix per graph: ONNX Runtime names profiles by prefix and start time (ms), and
        // sessions created in the same millisecond would share a file.
        let stem = graph.file_stem().unwrap_or_default().to_string_lossy();
        let mut path = prefix.clone().into_os_string();
        path.push(format!("-{stem}"));
        builder = builder.with_profiling(path)?;
    }
    let mut eps = dispatches(config, provider);
    if config.disable_cpu_arena {
        // The CPU provider's registration is where ONNX Runtime takes the arena setting; it
        // also serves the nodes a GPU provider does not take.
        eps.push(ort::ep::CPU::default().with_arena_allocator(false).build());
    }
    if !eps.is_empty() {
        builder = builder.with_execution_providers(eps)?;
    }
    builder.commit_from_file(graph)
}

/// The ort registrations for a provider. TensorRT gets CUDA behind it for the nodes TensorRT
/// does not take, as ONNX Runtime recommends; CPU needs no registration.
fn dispatches(config: &EpConfig, provider: Provider) -> Vec<ExecutionProviderDispatch> {
    match provider {
        Provider::Cpu => Vec::new(),
        Provider::Cuda => vec![cuda(config)],
        Provider::TensorRt => vec![tensorrt(config), cuda(config)],
    }
}

fn cuda(config: &EpConfig) -> ExecutionProviderDispatch {
    ort::ep::CUDA::default()
        .with_device_id(config.device_id)
        .with_cuda_graph(config.cuda_graph)
        .build()
        .error_on_failure()
}

fn tensorrt(config: &EpConfig) -> ExecutionProviderDispatch {
    let mut trt = ort::ep::TensorRT::default()
        .with_device_id(config.device_id)
        .with_fp16(config.trt_fp16)
        .with_cuda_graph(config.cuda_graph);
    if let Some(dir) = &config.trt_engine_cache {
        trt = trt
            .with_engine_cache(true)
            .with_engine_cache_path(dir.display());
    }
    if let Some(dir) = &config.trt_timing_cache {
        trt = trt
            .with_timing_cache(true)
            .with_timing_cache_path(dir.display());
    }
    trt.build().error_on_failure()
}

/// What to install when a provider cannot be registered, read from ONNX Runtime's message.
fn provider_hint(provider: Provider, message: &str, library: &Path) -> String {
    let library = library.display();
    if message.contains("not enabled in this build") {
        return format!(
            "the ONNX Runtime library {library} was built without {provider}; install the GPU \
             build (`.venv/bin/pip install onnxruntime-gpu==1.31.1`) and pass its \
             libonnxruntime.so with --ort-lib"
        );
    }
    if let Some(missing) = missing_shared_object(message) {
        let needs = match provider {
            Provider::TensorRt => "TensorRT 10, cuDNN 9 and the CUDA 13 runtime",
            _ => "the CUDA 13 runtime and cuDNN 9 (e.g. `pip install onnxruntime-gpu[cuda,cudnn]`)",
        };
        return format!("{missing} is missing: {provider} needs {needs} on the library path");
    }
    if message.contains("CUDA driver") || message.contains("no CUDA-capable device") {
        return String::from("no usable NVIDIA GPU or driver: check `nvidia-smi`");
    }
    format!("check `st2v doctor` for the providers {library} offers")
}

/// `libcublasLt.so.13` from "...: libcublasLt.so.13: cannot open shared object file".
fn missing_shared_object(message: &str) -> Option<&str> {
    let (before, _) = message.split_once(": cannot open shared object file")?;
    before.rsplit([' ', ':']).find(|part| !part.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_names_the_missing_library() {
        let msg = "Failed to load library /x/libonnxruntime_providers_cuda.so with error: \
                   libcublasLt.so.13: cannot open shared object file: No such file or directory";
        let hint = provider_hint(Provider::Cuda, msg, Path::new("/lib/ort.so"));
        assert!(hint.starts_with("libcublasLt.so.13 is missing"), "{hint}");
        assert!(hint.contains("CUDA 13"), "{hint}");
    }

    #[test]
    fn hint_for_a_cpu_only_build_names_the_gpu_wheel() {
        let msg = "CUDA execution provider is not enabled in this build.";
        let hint = provider_hint(Provider::Cuda, msg, Path::new("/lib/ort.so"));
        assert!(
            hint.contains("/lib/ort.so was built without cuda"),
            "{hint}"
        );
        assert!(hint.contains("onnxruntime-gpu"), "{hint}");
    }

    #[test]
    fn tensorrt_registers_cuda_behind_it() {
        let config = EpConfig::cpu();
        let names: Vec<&str> = dispatches(&config, Provider::TensorRt)
            .iter()
            .map(|d| d.name())
            .collect();
        assert_eq!(
            names,
            ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
        );
        assert!(dispatches(&config, Provider::Cpu).is_empty());
    }
}

//! Resolves raw arguments into checked configuration before anything runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use streamingt2v::models::Role;
use streamingt2v::runtime::{
    EpConfig, OrtRuntime, Placement, RuntimeError, SearchEnv, SessionFactory,
};

use crate::args::{EngineArgs, ModelsArg};

/// The model set used when `--models` and `ST2V_MODELS` are absent.
pub const DEFAULT_MODELS: &str = "models/tiny";

/// Invalid usage that clap cannot see (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no model set given and no default found; looked for {DEFAULT_MODELS} in: {searched}\n  \
         pass --models DIR or set ST2V_MODELS"
    )]
    NoDefaultModels { searched: String },
}

/// Checked engine settings: how to find ONNX Runtime and how to build sessions.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub eps: EpConfig,
    pub ort_lib: Option<PathBuf>,
}

impl EngineConfig {
    pub fn from_args(args: &EngineArgs) -> Result<Self, RuntimeError> {
        let trt_cache = args.trt_cache.clone();
        let eps = EpConfig {
            placement: Placement::parse(&args.ep, &Role::names())?,
            device_id: args.device_id,
            intra_threads: args.threads,
            opt_level: args.opt_level.parse()?,
            trt_fp16: args.trt_fp16,
            trt_timing_cache: trt_cache.clone(),
            trt_engine_cache: trt_cache,
            cuda_graph: args.cuda_graph,
        };
        Ok(EngineConfig {
            eps,
            ort_lib: args.ort_lib.clone(),
        })
    }

    /// Loads ONNX Runtime (see `runtime::library` for the search order).
    pub fn runtime(&self) -> Result<Arc<OrtRuntime>, RuntimeError> {
        OrtRuntime::load(self.ort_lib.as_deref())
    }

    /// Loads ONNX Runtime and returns the session factory for these settings.
    pub fn factory(&self) -> Result<SessionFactory, RuntimeError> {
        Ok(SessionFactory::new(self.runtime()?, self.eps.clone()))
    }
}

/// `--models`, else `models/tiny` under the current directory, else under the repository the
/// executable belongs to.
pub fn models_dir(arg: &ModelsArg) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = &arg.models {
        return Ok(dir.clone());
    }
    let mut bases: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    for root in SearchEnv::from_process(None).repo_roots() {
        if !bases.contains(&root) {
            bases.push(root);
        }
    }
    match bases
        .iter()
        .map(|b| b.join(DEFAULT_MODELS))
        .find(|d| d.is_dir())
    {
        Some(dir) => Ok(dir),
        None => Err(ConfigError::NoDefaultModels {
            searched: bases
                .iter()
                .map(|b| display(b))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

//! How an engine finds its model set and ONNX Runtime, and how it builds sessions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::runtime::{EpConfig, OrtRuntime, RuntimeError, SearchEnv, SessionFactory};

use super::error::EngineError;

/// The model set used when none is given: the committed toy set (trained on the toy world:
/// stages 1 and 2 at 64x64, no enhancer). `models/tiny` (random weights, every graph) is the
/// tests' set.
pub const DEFAULT_MODELS: &str = "models/toy";

/// Where ONNX Runtime is and how sessions are built.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub eps: EpConfig,
    /// `None` searches as [`crate::runtime::library`] describes.
    pub ort_lib: Option<PathBuf>,
    /// At most this many frames per stage-1/2 VAE decoder call (memory; `None`: a chunk).
    pub decode_batch: Option<usize>,
}

impl RuntimeSettings {
    /// The CPU provider with ONNX Runtime's defaults, the library found by the usual search.
    pub fn cpu() -> Self {
        Self {
            eps: EpConfig::cpu(),
            ort_lib: None,
            decode_batch: None,
        }
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

/// `dir` if given; else [`DEFAULT_MODELS`] under the current directory, else under the
/// repository the executable belongs to.
pub fn models_dir(dir: Option<&Path>) -> Result<PathBuf, EngineError> {
    if let Some(dir) = dir {
        return Ok(dir.to_owned());
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
        None => Err(EngineError::NoDefaultModels {
            default: DEFAULT_MODELS,
            searched: bases
                .iter()
                .map(|b| b.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

//! ONNX Runtime: locating and loading the shared library, execution providers, sessions.
//!
//! - [`library`]: where `libonnxruntime.so` is searched for, in a fixed, testable order.
//! - [`providers`]: execution providers chosen at run time (`--ep`), per-graph placement.
//! - [`factory`]: the one place sessions are built from a graph path and an [`EpConfig`].
//!
//! Call [`OrtRuntime::load`] once; it loads the library, checks its version and creates the
//! ONNX Runtime environment every session is built in.

pub mod factory;
pub mod library;
pub mod providers;
pub mod version;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

pub use factory::{OpenedSession, ProviderAttempt, SessionFactory};
pub use library::{FoundLibrary, LibraryNotFound, LibrarySource, Rejection, SearchEnv};
pub use providers::{EpConfig, OptLevel, Placement, Provider, ProviderList};

/// Errors from loading ONNX Runtime or building sessions.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    LibraryNotFound(#[from] LibraryNotFound),
    #[error("cannot create the ONNX Runtime environment: {message}")]
    Environment { message: String },
    #[error("invalid --ep value `{value}`: {reason}")]
    EpSpec { value: String, reason: String },
    #[error("invalid {field} `{value}`: expected {expected}")]
    Option {
        field: &'static str,
        value: String,
        expected: String,
    },
    #[error(
        "graph {graph}: execution provider {provider} was requested but cannot be used: \
         {message}\n  hint: {hint}"
    )]
    ProviderUnavailable {
        graph: PathBuf,
        provider: Provider,
        message: String,
        hint: String,
    },
    #[error("graph {graph}: no requested execution provider could be used:{}", render_attempts(.attempts))]
    AllProvidersFailed {
        graph: PathBuf,
        attempts: Vec<ProviderAttempt>,
    },
    #[error(
        "graph {graph}: cannot build a session: {message}\n  \
         (`st2v models inspect {} --verify` checks every file of the model set)",
        graph.parent().map(|d| d.display().to_string()).unwrap_or_else(|| ".".into())
    )]
    Session { graph: PathBuf, message: String },
}

fn render_attempts(attempts: &[ProviderAttempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("\n  - {}: {}", a.provider, a.message))
        .collect()
}

/// Facts about the loaded library, for logs, `st2v doctor` and `st2v models inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LibraryInfo {
    pub path: PathBuf,
    pub source: LibrarySource,
    /// ONNX Runtime version, e.g. `1.31.1`.
    pub version: String,
    /// ONNX Runtime's build-info string.
    pub build_info: String,
    /// Locations tried before the one used.
    pub skipped: Vec<Rejection>,
}

/// A loaded ONNX Runtime: the library and the environment sessions are created in.
pub struct OrtRuntime {
    environment: ort::environment::Environment,
    library: LibraryInfo,
}

impl std::fmt::Debug for OrtRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtRuntime")
            .field("library", &self.library)
            .finish_non_exhaustive()
    }
}

/// ONNX Runtime is process-global: the first successful load is kept and shared.
static LOADED: Mutex<Option<Arc<OrtRuntime>>> = Mutex::new(None);

impl OrtRuntime {
    /// Finds and loads the library (see [`library`] for the order) and creates the environment.
    /// `ort_lib` is `--ort-lib`. Later calls return the runtime loaded first.
    pub fn load(ort_lib: Option<&Path>) -> Result<Arc<OrtRuntime>, RuntimeError> {
        Self::load_with(&SearchEnv::from_process(ort_lib.map(Path::to_owned)))
    }

    /// [`OrtRuntime::load`] over an explicit search environment.
    pub fn load_with(env: &SearchEnv) -> Result<Arc<OrtRuntime>, RuntimeError> {
        let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(runtime) = loaded.as_ref() {
            return Ok(Arc::clone(runtime));
        }
        let found = library::search(env, load_library, library::probe_python_package)?;
        let environment =
            ort::init()
                .with_name("st2v")
                .build()
                .map_err(|e| RuntimeError::Environment {
                    message: e.to_string(),
                })?;
        let library = LibraryInfo {
            version: found.version,
            build_info: ort::info().to_owned(),
            path: found.path,
            source: found.source,
            skipped: found.skipped,
        };
        tracing::info!(path = %library.path.display(), version = %library.version, "loaded ONNX Runtime");
        let runtime = Arc::new(OrtRuntime {
            environment,
            library,
        });
        *loaded = Some(Arc::clone(&runtime));
        Ok(runtime)
    }

    pub fn library(&self) -> &LibraryInfo {
        &self.library
    }

    pub(crate) fn environment(&self) -> &ort::environment::Environment {
        &self.environment
    }

    /// Providers this library was built with, among those the engine can drive.
    pub fn available_providers(&self) -> Vec<Provider> {
        Provider::ALL
            .into_iter()
            .filter(|p| p.is_compiled_in())
            .collect()
    }
}

/// Checks one candidate's version, then hands it to `ort` (which dlopens it for good).
fn load_library(path: &Path) -> Result<String, String> {
    let version = version::library_version(path)?;
    if version::minor_version(&version).is_none_or(|minor| minor < ort::MINOR_VERSION) {
        return Err(format!(
            "version {version} is older than 1.{} (the ONNX Runtime API this engine is built against)",
            ort::MINOR_VERSION
        ));
    }
    ort::init_from(path).map_err(|e| e.to_string())?;
    Ok(version)
}

//! Opening every graph of a model set, shared by `st2v doctor` and `st2v models inspect`.

use std::path::PathBuf;

use serde::Serialize;
use streamingt2v::manifest::{ModelSet, MANIFEST_FILE};
use streamingt2v::models::{GraphSession, LoadError, Role};
use streamingt2v::runtime::{Provider, ProviderAttempt, SessionFactory};

/// The outcome of opening one graph and checking its signature.
#[derive(Debug, Clone, Serialize)]
pub struct GraphCheck {
    pub role: String,
    pub file: PathBuf,
    pub ok: bool,
    /// The provider the session runs on, when it opened.
    pub provider: Option<Provider>,
    /// Providers tried first that could not be used.
    pub fallbacks: Vec<ProviderAttempt>,
    pub error: Option<String>,
}

/// Opens every graph of `set` (in manifest order) and reports each; never stops at the first
/// failure, so one run shows everything that is wrong. Also returns the first failure itself,
/// whose type decides the exit status.
pub fn open_all(set: &ModelSet, factory: &SessionFactory) -> (Vec<GraphCheck>, Option<LoadError>) {
    let mut first_error = None;
    let checks = set
        .manifest
        .graphs
        .iter()
        .map(|(key, entry)| {
            let file = set.path_of(&entry.file);
            let opened = match key.parse::<Role>() {
                Ok(role) => GraphSession::open(set, role, factory),
                Err(_) => Err(unknown_role(set, key)),
            };
            match opened {
                Ok(graph) => GraphCheck {
                    role: key.clone(),
                    file,
                    ok: true,
                    provider: Some(graph.placement().provider),
                    fallbacks: graph.placement().fallbacks.clone(),
                    error: None,
                },
                Err(error) => {
                    let message = error.to_string();
                    first_error.get_or_insert(error);
                    GraphCheck {
                        role: key.clone(),
                        file,
                        ok: false,
                        provider: None,
                        fallbacks: Vec::new(),
                        error: Some(message),
                    }
                }
            }
        })
        .collect();
    (checks, first_error)
}

fn unknown_role(set: &ModelSet, key: &str) -> LoadError {
    LoadError::UnknownRole {
        manifest: set.path_of(MANIFEST_FILE),
        key: key.to_owned(),
        known: Role::names().join(", "),
    }
}

/// One line per graph for text output.
pub fn render(checks: &[GraphCheck]) -> String {
    let width = checks.iter().map(|c| c.role.len()).max().unwrap_or(0);
    let lines: Vec<String> = checks
        .iter()
        .map(|check| match (&check.provider, &check.error) {
            (Some(provider), _) => {
                let fallbacks: Vec<&str> =
                    check.fallbacks.iter().map(|a| a.provider.name()).collect();
                let note = match fallbacks.is_empty() {
                    true => String::new(),
                    false => format!(" (fell back from {})", fallbacks.join(", ")),
                };
                format!("  {:width$}  ok on {provider}{note}", check.role)
            }
            (None, error) => {
                let error = error.as_deref().unwrap_or("failed");
                format!(
                    "  {:width$}  FAILED: {}",
                    check.role,
                    error.replace('\n', "\n    ")
                )
            }
        })
        .collect();
    lines.join("\n")
}

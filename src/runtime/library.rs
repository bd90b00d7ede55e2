//! Finding the ONNX Runtime shared library.
//!
//! `ort` is built with `load-dynamic`: nothing is linked at build time, so the engine has to find
//! `libonnxruntime.so` at start-up. The search order is fixed and documented:
//!
//! 1. `--ort-lib PATH` (an explicit choice: used or reported, never skipped),
//! 2. the `ORT_DYLIB_PATH` environment variable (explicit too),
//! 3. `<repo>/runtime/libonnxruntime.so`, the symlink `scripts/setup.sh` creates, where `<repo>` is
//!    a directory holding `scripts/setup.sh` above the executable or the current directory,
//! 4. `onnxruntime/capi/libonnxruntime.so*` inside the `onnxruntime` Python package of the project
//!    venv (`<repo>/.venv/bin/python`) or of `python3`.
//!
//! The search is a function of a [`SearchEnv`] and a loader callback, so tests drive it with a
//! fake environment and a fake loader instead of mutating the process environment.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

/// The environment variable `ort` itself honours; we read it first-hand to report it.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";
/// Path of the project-local library inside a repository checkout.
pub const PROJECT_LIBRARY: &str = "runtime/libonnxruntime.so";
/// A file that marks a directory as the repository root.
const REPO_MARKER: &str = "scripts/setup.sh";
/// The command that installs a suitable ONNX Runtime.
pub const FIX_COMMAND: &str = "scripts/setup.sh";

/// Where a candidate library came from, in search order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LibrarySource {
    /// `--ort-lib PATH`.
    Flag,
    /// `ORT_DYLIB_PATH`.
    EnvVar,
    /// `<repo>/runtime/libonnxruntime.so`.
    ProjectRuntime,
    /// The `onnxruntime` Python package.
    PythonPackage,
}

impl LibrarySource {
    fn is_explicit(self) -> bool {
        matches!(self, LibrarySource::Flag | LibrarySource::EnvVar)
    }
}

impl fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            LibrarySource::Flag => "--ort-lib",
            LibrarySource::EnvVar => ORT_DYLIB_ENV,
            LibrarySource::ProjectRuntime => "project runtime/ directory",
            LibrarySource::PythonPackage => "onnxruntime Python package",
        };
        f.write_str(s)
    }
}

/// Everything the search looks at, gathered once from the process (or built by a test).
#[derive(Debug, Clone, Default)]
pub struct SearchEnv {
    /// Value of `--ort-lib`.
    pub flag: Option<PathBuf>,
    /// Value of `ORT_DYLIB_PATH` (empty counts as unset).
    pub env_var: Option<PathBuf>,
    /// Directories whose ancestors may hold the repository (the executable's and the current one).
    pub start_dirs: Vec<PathBuf>,
    /// Python interpreters to ask for the `onnxruntime` package, in order. `<repo>/.venv/bin/python`
    /// of every repository found is tried before these.
    pub interpreters: Vec<PathBuf>,
}

impl SearchEnv {
    /// The process's view: `flag` from the command line, the rest from the environment.
    pub fn from_process(flag: Option<PathBuf>) -> Self {
        let env_var = std::env::var_os(ORT_DYLIB_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_owned));
        let start_dirs = exe_dir
            .into_iter()
            .chain(std::env::current_dir().ok())
            .collect();
        SearchEnv {
            flag,
            env_var,
            start_dirs,
            interpreters: vec![PathBuf::from("python3")],
        }
    }

    /// Repository roots (directories holding `scripts/setup.sh`) above the start directories,
    /// nearest first, without duplicates.
    pub fn repo_roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = Vec::new();
        for dir in &self.start_dirs {
            let found = dir.ancestors().find(|a| a.join(REPO_MARKER).is_file());
            if let Some(root) = found {
                if !roots.iter().any(|r| r == root) {
                    roots.push(root.to_owned());
                }
            }
        }
        roots
    }
}

/// One location that was looked at and why it was not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub source: LibrarySource,
    pub location: String,
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.location, self.source, self.reason)
    }
}

/// The library that was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundLibrary {
    pub path: PathBuf,
    pub source: LibrarySource,
    /// The version string the loader reported.
    pub version: String,
    /// Locations tried before this one.
    pub skipped: Vec<Rejection>,
}

/// No usable library: every location tried, with the reason it was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_not_found(.rejections, *.explicit))]
pub struct LibraryNotFound {
    pub rejections: Vec<Rejection>,
    /// Whether the search stopped at an explicit choice (`--ort-lib` or `ORT_DYLIB_PATH`).
    pub explicit: bool,
}

fn render_not_found(rejections: &[Rejection], explicit: bool) -> String {
    let mut text = if explicit {
        String::from("the ONNX Runtime library you named cannot be used:")
    } else {
        format!(
            "no usable ONNX Runtime library (version >= 1.{} needed) was found; searched:",
            ort::MINOR_VERSION
        )
    };
    for rejection in rejections {
        text.push_str("\n  - ");
        text.push_str(&rejection.to_string());
    }
    text.push_str(&format!(
        "\nfix: run `{FIX_COMMAND}` in the repository (installs onnxruntime into .venv and links \
         {PROJECT_LIBRARY}), or pass --ort-lib /path/to/libonnxruntime.so (or set {ORT_DYLIB_ENV})"
    ));
    text
}

/// Searches in the documented order. `load` tries one existing file and returns its version or
/// why it is unusable (for example a version older than the API `ort` needs); `probe_python`
/// maps an interpreter to the directory of its `onnxruntime` package.
pub fn search(
    env: &SearchEnv,
    mut load: impl FnMut(&Path) -> Result<String, String>,
    probe_python: impl Fn(&Path) -> Result<PathBuf, String>,
) -> Result<FoundLibrary, LibraryNotFound> {
    let mut rejections = Vec::new();
    let explicit = [
        (LibrarySource::Flag, &env.flag),
        (LibrarySource::EnvVar, &env.env_var),
    ];
    for (source, path) in explicit {
        if let Some(path) = path {
            return try_candidate(source, path, &mut load, rejections).map_err(|rejections| {
                LibraryNotFound {
                    rejections,
                    explicit: true,
                }
            });
        }
    }
    let roots = env.repo_roots();
    if roots.is_empty() {
        rejections.push(no_repo_rejection(env));
    }
    for root in &roots {
        let path = root.join(PROJECT_LIBRARY);
        match try_candidate(LibrarySource::ProjectRuntime, &path, &mut load, rejections) {
            Ok(found) => return Ok(found),
            Err(back) => rejections = back,
        }
    }
    let venv_pythons = roots.iter().map(|r| r.join(".venv/bin/python"));
    let interpreters: Vec<PathBuf> = venv_pythons
        .chain(env.interpreters.iter().cloned())
        .collect();
    for interpreter in &interpreters {
        let package = match probe_python(interpreter) {
            Ok(dir) => dir,
            Err(reason) => {
                rejections.push(Rejection {
                    source: LibrarySource::PythonPackage,
                    location: format!("{} -c 'import onnxruntime'", interpreter.display()),
                    reason,
                });
                continue;
            }
        };
        for path in package_libraries(&package, &mut rejections) {
            match try_candidate(LibrarySource::PythonPackage, &path, &mut load, rejections) {
                Ok(found) => return Ok(found),
                Err(back) => rejections = back,
            }
        }
    }
    Err(LibraryNotFound {
        rejections,
        explicit: false,
    })
}

fn no_repo_rejection(env: &SearchEnv) -> Rejection {
    let dirs: Vec<String> = env
        .start_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    Rejection {
        source: LibrarySource::ProjectRuntime,
        location: format!("<repo>/{PROJECT_LIBRARY}"),
        reason: format!(
            "no repository (a directory holding {REPO_MARKER}) above {}",
            dirs.join(" or ")
        ),
    }
}

/// Tries one path; on rejection hands the (extended) rejection list back.
fn try_candidate(
    source: LibrarySource,
    path: &Path,
    load: &mut impl FnMut(&Path) -> Result<String, String>,
    mut rejections: Vec<Rejection>,
) -> Result<FoundLibrary, Vec<Rejection>> {
    let reason = if !path.exists() {
        String::from("file does not exist")
    } else if path.is_dir() {
        String::from("is a directory, expected the libonnxruntime.so file")
    } else {
        match load(path) {
            Ok(version) => {
                return Ok(FoundLibrary {
                    path: path.to_owned(),
                    source,
                    version,
                    skipped: rejections,
                })
            }
            Err(reason) => reason,
        }
    };
    let note = if source.is_explicit() {
        " (an explicit choice: other locations were not searched)"
    } else {
        ""
    };
    rejections.push(Rejection {
        source,
        location: path.display().to_string(),
        reason: format!("{reason}{note}"),
    });
    Err(rejections)
}

/// `capi/libonnxruntime.so*` inside a package directory, newest version first.
fn package_libraries(package: &Path, rejections: &mut Vec<Rejection>) -> Vec<PathBuf> {
    let capi = package.join("capi");
    let entries = match std::fs::read_dir(&capi) {
        Ok(entries) => entries,
        Err(err) => {
            rejections.push(Rejection {
                source: LibrarySource::PythonPackage,
                location: capi.display().to_string(),
                reason: format!("cannot list directory: {err}"),
            });
            return Vec::new();
        }
    };
    let mut libraries: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .collect();
    libraries.sort_by_key(|p| std::cmp::Reverse(version_key(p)));
    if libraries.is_empty() {
        rejections.push(Rejection {
            source: LibrarySource::PythonPackage,
            location: capi.join("libonnxruntime.so*").display().to_string(),
            reason: String::from("no matching file"),
        });
    }
    libraries
}

/// Numeric version suffix of `libonnxruntime.so.1.31.1` as `[1, 31, 1]`.
fn version_key(path: &Path) -> Vec<u64> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.trim_start_matches("libonnxruntime.so")
        .split('.')
        .filter_map(|part| part.parse().ok())
        .collect()
}

/// Asks an interpreter where its `onnxruntime` package lives.
pub fn probe_python_package(interpreter: &Path) -> Result<PathBuf, String> {
    let output = Command::new(interpreter)
        .args([
            "-c",
            "import os, onnxruntime; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .output()
        .map_err(|err| format!("cannot run: {err}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("failed").trim().to_owned();
        return Err(last);
    }
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if dir.is_empty() {
        return Err(String::from("printed no package directory"));
    }
    Ok(PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake library file whose content is its version, loaded by `fake_load`.
    fn write_lib(path: &Path, version: &str) {
        fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        fs::write(path, version).expect("write");
    }

    fn fake_load(path: &Path) -> Result<String, String> {
        let version = fs::read_to_string(path).map_err(|e| e.to_string())?;
        let minor: u32 = version
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if minor < 31 {
            return Err(format!("version {version} is older than 1.31"));
        }
        Ok(version)
    }

    fn no_python(_: &Path) -> Result<PathBuf, String> {
        Err(String::from("No module named 'onnxruntime'"))
    }

    fn repo(dir: &Path) -> PathBuf {
        let root = dir.join("repo");
        write_lib(&root.join(REPO_MARKER), "#!/bin/sh");
        root
    }

    #[test]
    fn flag_wins_over_everything() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = repo(tmp.path());
        write_lib(&root.join(PROJECT_LIBRARY), "1.31.1");
        let flag = tmp.path().join("flag/libonnxruntime.so");
        write_lib(&flag, "1.32.0");
        let env_lib = tmp.path().join("env/libonnxruntime.so");
        write_lib(&env_lib, "1.31.1");
        let env = SearchEnv {
            flag: Some(flag.clone()),
            env_var: Some(env_lib),
            start_dirs: vec![root.join("target/release")],
            interpreters: vec![],
        };
        let found = search(&env, fake_load, no_python).expect("found");
        assert_eq!(found.path, flag);
        assert_eq!(found.source, LibrarySource::Flag);
    }

    #[test]
    fn env_var_wins_over_project_runtime() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = repo(tmp.path());
        write_lib(&root.join(PROJECT_LIBRARY), "1.31.1");
        let env_lib = tmp.path().join("env/libonnxruntime.so");
        write_lib(&env_lib, "1.31.1");
        let env = SearchEnv {
            env_var: Some(env_lib.clone()),
            start_dirs: vec![root.clone()],
            ..SearchEnv::default()
        };
        let found = search(&env, fake_load, no_python).expect("found");
        assert_eq!((found.path, found.source), (env_lib, LibrarySource::EnvVar));
    }

    #[test]
    fn explicit_choice_that_fails_is_final() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = repo(tmp.path());
        write_lib(&root.join(PROJECT_LIBRARY), "1.31.1");
        let old = tmp.path().join("old/libonnxruntime.so.1.30.0");
        write_lib(&old, "1.30.0");
        let env = SearchEnv {
            flag: Some(old.clone()),
            start_dirs: vec![root],
            ..SearchEnv::default()
        };
        let err = search(&env, fake_load, no_python).expect_err("old library rejected");
        assert!(err.explicit);
        assert_eq!(err.rejections.len(), 1);
        let text = err.to_string();
        assert!(text.contains(&old.display().to_string()), "{text}");
        assert!(text.contains("older than 1.31"), "{text}");
        assert!(text.contains("scripts/setup.sh"), "{text}");
    }

    #[test]
    fn project_runtime_found_from_executable_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = repo(tmp.path());
        write_lib(&root.join(PROJECT_LIBRARY), "1.31.1");
        let env = SearchEnv {
            start_dirs: vec![root.join("target/debug/deps")],
            ..SearchEnv::default()
        };
        let found = search(&env, fake_load, no_python).expect("found");
        assert_eq!(found.path, root.join(PROJECT_LIBRARY));
        assert_eq!(found.source, LibrarySource::ProjectRuntime);
    }

    #[test]
    fn python_package_is_last_and_newest_file_first() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = repo(tmp.path());
        let package = tmp.path().join("site-packages/onnxruntime");
        write_lib(&package.join("capi/libonnxruntime.so.1.31.1"), "1.31.1");
        write_lib(&package.join("capi/libonnxruntime.so.1.32.0"), "1.32.0");
        let env = SearchEnv {
            start_dirs: vec![root.clone()],
            interpreters: vec![PathBuf::from("python3")],
            ..SearchEnv::default()
        };
        let venv_python = root.join(".venv/bin/python");
        let probe = |interp: &Path| {
            if interp == venv_python {
                Ok(package.clone())
            } else {
                Err(String::from("not asked"))
            }
        };
        let found = search(&env, fake_load, probe).expect("found");
        assert_eq!(found.path, package.join("capi/libonnxruntime.so.1.32.0"));
        assert_eq!(found.source, LibrarySource::PythonPackage);
        // The missing runtime/ symlink was looked at first and is reported as skipped.
        assert_eq!(found.skipped.len(), 1);
        assert_eq!(found.skipped[0].source, LibrarySource::ProjectRuntime);
    }

    #[test]
    fn nothing_found_lists_every_location_and_the_fix() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = repo(tmp.path());
        let old = root.join(PROJECT_LIBRARY);
        write_lib(&old, "1.29.0");
        let env = SearchEnv {
            start_dirs: vec![root.clone()],
            interpreters: vec![PathBuf::from("python3")],
            ..SearchEnv::default()
        };
        let err = search(&env, fake_load, no_python).expect_err("nothing usable");
        assert!(!err.explicit);
        let sources: Vec<LibrarySource> = err.rejections.iter().map(|r| r.source).collect();
        assert_eq!(
            sources,
            [
                LibrarySource::ProjectRuntime,
                LibrarySource::PythonPackage,
                LibrarySource::PythonPackage
            ]
        );
        let text = err.to_string();
        assert!(text.contains("1.29.0 is older than 1.31"), "{text}");
        assert!(text.contains("No module named 'onnxruntime'"), "{text}");
        assert!(text.contains("fix: run `scripts/setup.sh`"), "{text}");
    }

    #[test]
    fn no_repository_is_reported() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let env = SearchEnv {
            start_dirs: vec![tmp.path().to_owned()],
            ..SearchEnv::default()
        };
        let err = search(&env, fake_load, no_python).expect_err("nothing");
        assert_eq!(err.rejections.len(), 1);
        assert!(err.rejections[0].reason.contains("no repository"));
    }

    #[test]
    fn version_key_orders_numerically() {
        let a = version_key(Path::new("libonnxruntime.so.1.9.0"));
        let b = version_key(Path::new("libonnxruntime.so.1.31.1"));
        assert!(b > a);
        assert!(version_key(Path::new("libonnxruntime.so")).is_empty());
    }
}

//! Nothing the user did not ask to replace is written over: every path a run writes is checked
//! before any compute against the files it would replace and against every other path the run
//! reads or writes (inputs, outputs, previews, side files, latents, events, the model set).

use std::path::{Path, PathBuf};

use crate::video::{partial_path, OutputFormat, OutputTarget};

use super::error::RequestError;
use super::field::Field;

/// How a path takes part in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPath {
    pub field: Field,
    pub path: PathBuf,
    pub written: bool,
}

impl RunPath {
    pub fn read(field: Field, path: &Path) -> Self {
        Self {
            field,
            path: path.to_owned(),
            written: false,
        }
    }

    pub fn written(field: Field, path: &Path) -> Self {
        Self {
            field,
            path: path.to_owned(),
            written: true,
        }
    }
}

/// The path with its directory resolved (symlinks, `..`, relative to the current directory),
/// so two spellings of one file compare equal. Works for paths that do not exist yet.
pub fn identity(path: &Path) -> PathBuf {
    if let Ok(resolved) = path.canonicalize() {
        return resolved;
    }
    let absolute = match path.is_absolute() {
        true => path.to_owned(),
        false => std::env::current_dir().unwrap_or_default().join(path),
    };
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .unwrap_or_else(|_| parent.to_owned())
            .join(name),
        _ => absolute,
    }
}

/// Refuses a written path that is also read or written elsewhere in the run, or that lies in
/// the model set's directory.
pub fn check_distinct(paths: &[RunPath], model_dir: &Path) -> Result<(), RequestError> {
    let model_dir = identity(model_dir);
    let ids: Vec<PathBuf> = paths.iter().map(|p| identity(&p.path)).collect();
    for (i, path) in paths.iter().enumerate().filter(|(_, p)| p.written) {
        if ids[i].starts_with(&model_dir) {
            return Err(RequestError::value(
                path.field,
                "a path outside the model set's directory",
                path.path.display(),
            ));
        }
        let clash = paths
            .iter()
            .zip(&ids)
            .enumerate()
            .find(|&(j, (_, id))| j != i && *id == ids[i]);
        if let Some((_, (other, _))) = clash {
            return Err(RequestError::value(
                path.field,
                format!("a path different from {}", other.field.flag()),
                format!("{} for both", path.path.display()),
            ));
        }
    }
    Ok(())
}

/// Refuses to write over an existing output unless `force`: a file, its partial file (the
/// frames of an earlier run that was killed), or a PNG directory that already holds frames.
pub fn check_replaceable(
    field: Field,
    target: &OutputTarget,
    force: bool,
) -> Result<(), RequestError> {
    if force {
        return Ok(());
    }
    let path = &target.path;
    let existing = match target.format {
        OutputFormat::PngDir => png_frames(path).first().cloned(),
        _ => path.exists().then(|| path.clone()),
    };
    if let Some(existing) = existing {
        return Err(RequestError::value(
            field,
            "a path that does not exist yet (pass --force to replace it)",
            format!("{} exists", existing.display()),
        ));
    }
    let partial = partial_path(path);
    if !target.format.is_directory() && partial.exists() {
        return Err(RequestError::value(
            field,
            format!(
                "no leftover {} (the frames of an earlier run that did not finish: \
                 move it away, or pass --force to replace it)",
                partial.display()
            ),
            "one exists",
        ));
    }
    Ok(())
}

/// Refuses a latent directory that already holds latents, unless `force`.
pub fn check_latent_dir(path: &Path, force: bool) -> Result<(), RequestError> {
    if path.exists() && !path.is_dir() {
        return Err(RequestError::value(
            Field::SaveLatents,
            "a directory",
            format!("{} (an existing file)", path.display()),
        ));
    }
    let holds_latents = std::fs::read_dir(path).into_iter().flatten().any(|entry| {
        entry.is_ok_and(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("stage") && name.ends_with(".npy")
        })
    });
    match holds_latents && !force {
        true => Err(RequestError::value(
            Field::SaveLatents,
            "a directory without latents (pass --force to replace them)",
            format!("{} holds stage*_chunk*.npy files", path.display()),
        )),
        false => Ok(()),
    }
}

/// The `frame_*.png` files of a PNG directory (none when it does not exist), sorted.
pub fn png_frames(dir: &Path) -> Vec<PathBuf> {
    let mut frames: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("frame_") && name.ends_with(".png")
        })
        .collect();
    frames.sort();
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_spellings_of_one_file_are_one_identity() {
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let direct = dir.path().join("a.mp4");
        let roundabout = dir.path().join("sub/../a.mp4");
        assert_eq!(identity(&direct), identity(&roundabout));
    }

    #[test]
    fn a_written_path_may_not_be_read_too() {
        let dir = tempfile::TempDir::new().unwrap();
        let video = dir.path().join("a.mp4");
        let paths = [
            RunPath::read(Field::Input, &video),
            RunPath::written(Field::Out, &video),
        ];
        let err = check_distinct(&paths, &dir.path().join("models")).unwrap_err();
        assert_eq!(err.field(), Field::Out);
        assert!(err.to_string().contains("--input"), "{err}");
    }
}

//! Output and input formats, chosen from a path, and the pre-flight check of an output path.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::VideoError;

/// What a sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum OutputFormat {
    /// H.264 (libx264) yuv420p in an MP4 container.
    Mp4,
    /// Animated GIF, looping forever.
    Gif,
    /// A directory of `frame_00000.png`, `frame_00001.png`, ...
    PngDir,
}

const OUTPUT_ACCEPTED: &str =
    "`.mp4`, `.gif`, or a directory for PNG frames (no extension, or a trailing `/`)";
const INPUT_ACCEPTED: &str =
    "`.mp4`, `.mov`, `.mkv`, `.webm`, `.avi` (FFmpeg), `.gif`, or a directory of PNG frames";

impl OutputFormat {
    /// The format implied by the path: `.mp4`, `.gif`, or a PNG directory (no extension, a
    /// trailing separator as in `frames.v2/`, or an existing directory).
    pub fn from_path(path: &Path) -> Result<Self, VideoError> {
        if names_directory(path) {
            return Ok(OutputFormat::PngDir);
        }
        match lowercase_extension(path).as_deref() {
            Some("mp4") => Ok(OutputFormat::Mp4),
            Some("gif") => Ok(OutputFormat::Gif),
            None => Ok(OutputFormat::PngDir),
            Some(other) => Err(VideoError::UnknownFormat {
                path: path.to_owned(),
                extension: other.to_owned(),
                accepted: OUTPUT_ACCEPTED.to_owned(),
            }),
        }
    }

    /// Whether the path names a directory rather than a file.
    pub fn is_directory(self) -> bool {
        self == OutputFormat::PngDir
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputFormat::Mp4 => "mp4",
            OutputFormat::Gif => "gif",
            OutputFormat::PngDir => "png",
        })
    }
}

impl FromStr for OutputFormat {
    type Err = String;

    /// Parses the names `--format` accepts: `mp4`, `gif`, `png`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "mp4" => Ok(OutputFormat::Mp4),
            "gif" => Ok(OutputFormat::Gif),
            "png" => Ok(OutputFormat::PngDir),
            other => Err(format!(
                "unknown output format `{other}`; expected mp4, gif or png"
            )),
        }
    }
}

/// How a source is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputFormat {
    /// Any container FFmpeg decodes (MP4 and friends).
    Ffmpeg,
    Gif,
    PngDir,
}

impl InputFormat {
    /// A directory is read as PNG frames; files by extension.
    pub fn from_path(path: &Path) -> Result<Self, VideoError> {
        if path.is_dir() {
            return Ok(InputFormat::PngDir);
        }
        match lowercase_extension(path).as_deref() {
            Some("mp4" | "mov" | "mkv" | "webm" | "avi" | "m4v") => Ok(InputFormat::Ffmpeg),
            Some("gif") => Ok(InputFormat::Gif),
            other => Err(VideoError::UnknownFormat {
                path: path.to_owned(),
                extension: other.unwrap_or("").to_owned(),
                accepted: INPUT_ACCEPTED.to_owned(),
            }),
        }
    }
}

/// `frames.v2/` or an existing `frames.v2`: a directory whatever its name's dots say.
fn names_directory(path: &Path) -> bool {
    let ends_with_separator = path
        .as_os_str()
        .to_string_lossy()
        .chars()
        .last()
        .is_some_and(std::path::is_separator);
    ends_with_separator || path.is_dir()
}

fn lowercase_extension(path: &Path) -> Option<String> {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
}

/// An output path whose format is known and whose directory was found writable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputTarget {
    pub path: PathBuf,
    pub format: OutputFormat,
}

impl OutputTarget {
    /// Resolves the format (explicit, else from the extension) and checks that the output can
    /// be created, so a bad path fails before any compute. Nothing is left on disk.
    pub fn check(path: &Path, format: Option<OutputFormat>) -> Result<Self, VideoError> {
        let format = match format {
            Some(format) => format,
            None => OutputFormat::from_path(path)?,
        };
        if format == OutputFormat::Mp4 && !cfg!(feature = "ffmpeg") {
            return Err(VideoError::NoFfmpeg {
                path: path.to_owned(),
                what: "writing MP4",
            });
        }
        if format.is_directory() {
            check_output_dir(path)?;
        } else {
            check_output_file(path)?;
        }
        Ok(Self {
            path: path.to_owned(),
            format,
        })
    }
}

fn not_writable(path: &Path, problem: impl Into<String>) -> VideoError {
    VideoError::OutputNotWritable {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

fn check_output_file(path: &Path) -> Result<(), VideoError> {
    if path.is_dir() {
        return Err(not_writable(path, "is a directory, expected a file path"));
    }
    check_writable_dir(path, &parent_dir(path))
}

/// A PNG directory may exist (frames are overwritten) or be created in an existing parent.
fn check_output_dir(path: &Path) -> Result<(), VideoError> {
    if path.is_dir() {
        return check_writable_dir(path, path);
    }
    if path.exists() {
        return Err(not_writable(path, "exists and is not a directory"));
    }
    check_writable_dir(path, &parent_dir(path))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Creates and removes a probe file: permission bits alone do not tell (root, read-only mounts).
fn check_writable_dir(output: &Path, dir: &Path) -> Result<(), VideoError> {
    if !dir.is_dir() {
        return Err(not_writable(
            output,
            format!("directory {} does not exist", dir.display()),
        ));
    }
    let probe = dir.join(format!(".st2v-write-probe-{}", std::process::id()));
    let created = OpenOptions::new().write(true).create_new(true).open(&probe);
    match created {
        Ok(file) => {
            drop(file);
            // Best effort: the probe is empty and uniquely named.
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(err) => Err(not_writable(
            output,
            format!("directory {} is not writable: {err}", dir.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_format_from_extension() {
        let cases = [
            ("out.mp4", Some(OutputFormat::Mp4)),
            ("OUT.MP4", Some(OutputFormat::Mp4)),
            ("a/b.gif", Some(OutputFormat::Gif)),
            ("frames", Some(OutputFormat::PngDir)),
            ("runs/frames.v2/", Some(OutputFormat::PngDir)),
            ("clip.avi", None),
            ("clip.png", None),
        ];
        for (path, expected) in cases {
            let got = OutputFormat::from_path(Path::new(path)).ok();
            assert_eq!(got, expected, "{path}");
        }
    }

    #[test]
    fn an_existing_directory_with_a_dot_is_a_png_directory() {
        let dir = tempfile::TempDir::new().unwrap();
        let frames = dir.path().join("frames.v2");
        assert!(OutputFormat::from_path(&frames).is_err());
        std::fs::create_dir(&frames).unwrap();
        assert_eq!(
            OutputFormat::from_path(&frames).ok(),
            Some(OutputFormat::PngDir)
        );
    }

    #[test]
    fn unknown_extension_names_path_and_choices() {
        let err = OutputFormat::from_path(Path::new("x/clip.webp")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("x/clip.webp") && msg.contains("webp"), "{msg}");
        assert!(msg.contains(".mp4") && msg.contains(".gif"), "{msg}");
    }

    #[test]
    fn format_names_parse() {
        assert_eq!("PNG".parse::<OutputFormat>(), Ok(OutputFormat::PngDir));
        assert!("avi".parse::<OutputFormat>().is_err());
    }
}

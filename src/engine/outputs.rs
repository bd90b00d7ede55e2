//! A job's output files: the video, and its stage-2 copy (the preview, or a side file kept
//! only when a run ends early, so the frames stage 3 had not enhanced yet are not lost).
//! Every sink is finished whatever way the run ends, so each file is valid and playable.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::pipeline::{FrameOutput, JobState, Outputs, PipelineError, RunSummary};
use crate::progress::{ProgressEvent, ProgressSink};
use crate::video::{
    open_sink, partial_path, resume_sink, FrameSink, FrameSize, OutputTarget, Summary, VideoError,
};

use super::error::{EngineError, KeptFrames, RequestError};
use super::field::Field;
use super::paths::{check_replaceable, png_frames, RunPath};

/// Where a run also writes its stage-2 frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage2Copy {
    pub target: OutputTarget,
    /// A side file (removed after a successful run), not a preview the user asked for.
    pub side_file: bool,
}

impl Stage2Copy {
    /// `preview` if given; else, when stage 3 runs, `<out>.stage2.<ext>`. Checked like `out`.
    pub fn check(
        out: &OutputTarget,
        preview: Option<&Path>,
        enhance: bool,
        force: bool,
    ) -> Result<Option<Self>, RequestError> {
        if let Some(path) = preview {
            let target = OutputTarget::check(path, None).map_err(|source| RequestError::File {
                field: Field::PreviewOut,
                source,
            })?;
            check_replaceable(Field::PreviewOut, &target, force)?;
            return Ok(Some(Self {
                target,
                side_file: false,
            }));
        }
        if !enhance {
            return Ok(None);
        }
        let target = OutputTarget::check(&side_path(out), Some(out.format)).map_err(|source| {
            RequestError::File {
                field: Field::Out,
                source,
            }
        })?;
        check_replaceable(Field::Out, &target, force)?;
        Ok(Some(Self {
            target,
            side_file: true,
        }))
    }
}

/// The checked outputs of a request: the video and its stage-2 copy, with their frame sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPlan {
    pub target: OutputTarget,
    pub fps: u32,
    pub size: FrameSize,
    /// `None` when no stage-2 frame is written apart from the video.
    pub stage2: Option<(Stage2Copy, FrameSize)>,
}

impl OutputPlan {
    /// Every path the outputs write, with the partial files of file outputs.
    pub fn paths(&self) -> Vec<RunPath> {
        let mut targets = vec![(Field::Out, &self.target)];
        if let Some((copy, _)) = &self.stage2 {
            let field = match copy.side_file {
                true => Field::Out,
                false => Field::PreviewOut,
            };
            targets.push((field, &copy.target));
        }
        let mut paths = Vec::new();
        for (field, target) in targets {
            paths.push(RunPath::written(field, &target.path));
            if !target.format.is_directory() {
                paths.push(RunPath::written(field, &partial_path(&target.path)));
            }
        }
        paths
    }
}

/// What a successful run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFiles {
    pub output: Summary,
    /// The preview asked for, if any.
    pub preview: Option<Summary>,
    pub run: RunSummary,
}

/// The open sinks of an [`OutputPlan`].
pub struct OpenOutputs {
    plan: OutputPlan,
    video: Box<dyn FrameSink>,
    stage2: Option<Box<dyn FrameSink>>,
}

impl OpenOutputs {
    /// Creates the files (the video first, then its stage-2 copy). A PNG directory's old
    /// frames are removed first: the request was validated, so they are frames the caller
    /// agreed to replace (`force`), and left mixed with the new ones they would mislead.
    pub fn open(plan: &OutputPlan) -> Result<Self, EngineError> {
        let copy = plan.stage2.as_ref().map(|(copy, _)| &copy.target);
        for target in std::iter::once(&plan.target).chain(copy) {
            if target.format.is_directory() {
                remove_stale_frames(&target.path)?;
            }
        }
        let video = open(
            &plan.target,
            plan.fps,
            plan.size,
            "opening the output",
            None,
        )?;
        let stage2 = plan
            .stage2
            .as_ref()
            .map(|(copy, size)| {
                let what = "opening the stage-2 copy";
                open(&copy.target, plan.fps, *size, what, None)
            })
            .transpose()?;
        Ok(Self {
            plan: plan.clone(),
            video,
            stage2,
        })
    }

    /// Reopens the outputs of an interrupted job, each cut back to the durable frames its
    /// checkpoint recorded (the pipeline writes their tails again).
    pub fn resume(plan: &OutputPlan, state: &JobState) -> Result<Self, EngineError> {
        let what = "reopening the output";
        let video = open(
            &plan.target,
            plan.fps,
            plan.size,
            what,
            Some(state.video.durable),
        )?;
        let stage2 = match (&plan.stage2, &state.preview) {
            (Some((copy, size)), Some(saved)) => {
                let what = "reopening the stage-2 copy";
                Some(open(
                    &copy.target,
                    plan.fps,
                    *size,
                    what,
                    Some(saved.durable),
                )?)
            }
            (None, None) => None,
            _ => {
                return Err(EngineError::Pipeline(PipelineError::Invalid {
                    field: "checkpoint".into(),
                    expected: "the same stage-2 copy as the request".into(),
                    actual: "a checkpoint with or without one where the request differs".into(),
                }))
            }
        };
        Ok(Self {
            plan: plan.clone(),
            video,
            stage2,
        })
    }

    /// The sinks, as the pipeline takes them.
    pub fn outputs(&mut self) -> Outputs<'_> {
        Outputs {
            video: &mut self.video as &mut dyn FrameOutput,
            preview: self.stage2.as_mut().map(|s| s as &mut dyn FrameOutput),
        }
    }

    /// Finishes every sink, then reports what was written, or why the run stopped and which
    /// frames were kept. A side file is removed after a success (a failure to remove it is a
    /// warning: it costs disk space, not the run).
    pub fn conclude(
        self,
        result: Result<RunSummary, PipelineError>,
        progress: &dyn ProgressSink,
    ) -> Result<WrittenFiles, EngineError> {
        let written = self.video.frames_written();
        let finished = self.video.finish();
        let side_file = self.plan.stage2.as_ref().is_some_and(|(c, _)| c.side_file);
        let stage2 = self.stage2.map(|sink| sink.finish());
        // The side file goes only when the run and the video both finished: after a full disk
        // at the end, it may hold the only complete copy of the frames.
        let succeeded = result.is_ok() && finished.is_ok();
        let stage2 = match (stage2, side_file, succeeded) {
            (Some(_), true, true) => {
                let (copy, _) = self.plan.stage2.as_ref().expect("a side file was planned");
                remove_side_file(&copy.target, progress);
                None
            }
            (Some(Ok(summary)), _, _) => Some(summary),
            (Some(Err(source)), _, _) if succeeded => {
                return Err(EngineError::Output {
                    what: "finishing the stage-2 copy".into(),
                    source: Box::new(source),
                })
            }
            // The run's own error (or the video's) is the one to report.
            (Some(Err(_)), _, _) => None,
            (None, _, _) => None,
        };
        let kept = KeptFrames {
            frames: written,
            path: self.plan.target.path.clone(),
            stage2: stage2.clone(),
            stage2_is_side_file: side_file,
        };
        // A video that cannot be finished (a full disk) still holds every fragment written.
        let unfinished = |source: VideoError| EngineError::Output {
            what: format!("finishing the output failed; {kept}"),
            source: Box::new(source),
        };
        match (result, finished) {
            (Ok(run), Ok(output)) => Ok(WrittenFiles {
                output,
                preview: stage2,
                run,
            }),
            (Ok(_) | Err(PipelineError::Cancelled), Err(source)) => Err(unfinished(source)),
            (Err(PipelineError::Cancelled), Ok(_)) => Err(EngineError::Interrupted {
                kept: Box::new(kept),
            }),
            (Err(source), finished) => {
                let kept = match finished {
                    Ok(_) if kept.is_empty() => {
                        "no frame was finished, nothing was written".to_owned()
                    }
                    Ok(_) => kept.to_string(),
                    Err(err) => format!("the output could not be finished either: {err}"),
                };
                Err(EngineError::Stopped {
                    kept,
                    source: Box::new(source),
                })
            }
        }
    }
}

/// Opens a sink, or (`keep`) reopens an interrupted job's output keeping its first frames.
fn open(
    target: &OutputTarget,
    fps: u32,
    size: FrameSize,
    what: &str,
    keep: Option<usize>,
) -> Result<Box<dyn FrameSink>, EngineError> {
    let format = Some(target.format);
    let sink = match keep {
        Some(keep) => resume_sink(&target.path, format, fps, size, keep),
        None => open_sink(&target.path, format, fps, size),
    };
    sink.map_err(|source| EngineError::Output {
        what: format!("{what} {}", target.path.display()),
        source: Box::new(source),
    })
}

fn remove_stale_frames(dir: &Path) -> Result<(), EngineError> {
    for frame in png_frames(dir) {
        std::fs::remove_file(&frame).map_err(|source| EngineError::Output {
            what: format!("removing the old frame {}", frame.display()),
            source: Box::new(VideoError::Io {
                path: frame.clone(),
                operation: "removing an old frame",
                source,
            }),
        })?;
    }
    Ok(())
}

/// `<stem>.stage2.<ext>` next to a file output; `<dir>.stage2` next to a PNG directory.
fn side_path(out: &OutputTarget) -> PathBuf {
    let path = &out.path;
    let mut name = match out.format.is_directory() {
        true => path.file_name(),
        false => path.file_stem(),
    }
    .map(OsString::from)
    .unwrap_or_else(|| OsString::from("output"));
    name.push(".stage2");
    if let (false, Some(ext)) = (out.format.is_directory(), path.extension()) {
        name.push(".");
        name.push(ext);
    }
    path.with_file_name(name)
}

/// Best effort, whether or not the side file finished cleanly.
fn remove_side_file(side: &OutputTarget, progress: &dyn ProgressSink) {
    let removed = match side.format.is_directory() {
        true => remove_png_frames(&side.path),
        false => std::fs::remove_file(&side.path),
    };
    match removed {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            progress.emit(&ProgressEvent::Warning {
                message: format!(
                    "could not remove the stage-2 side file {}: {err}",
                    side.path.display()
                ),
            })
        }
        _ => {}
    }
}

/// Removes the `frame_*.png` files of a PNG directory, then the directory if that emptied it
/// (files of the user's in it are left alone).
fn remove_png_frames(dir: &Path) -> std::io::Result<()> {
    for frame in png_frames(dir) {
        std::fs::remove_file(&frame)?;
    }
    match std::fs::remove_dir(dir) {
        Err(err) if err.kind() == std::io::ErrorKind::DirectoryNotEmpty => Ok(()),
        other => other,
    }
}

impl From<VideoError> for EngineError {
    fn from(source: VideoError) -> Self {
        EngineError::Output {
            what: "writing the output".into(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::OutputFormat;

    fn target(path: &str, format: OutputFormat) -> OutputTarget {
        OutputTarget {
            path: PathBuf::from(path),
            format,
        }
    }

    /// Opens a GIF output with a side file in `dir` and writes `frames` frames to each.
    fn open_with_frames(dir: &Path, frames: usize) -> OpenOutputs {
        let size = FrameSize::new(8, 8);
        let out = target(dir.join("v.gif").to_str().unwrap(), OutputFormat::Gif);
        let copy = Stage2Copy::check(&out, None, true, false).unwrap().unwrap();
        let plan = OutputPlan {
            target: out,
            fps: 8,
            size,
            stage2: Some((copy, size)),
        };
        let mut files = OpenOutputs::open(&plan).unwrap();
        let frame = crate::video::Frame::filled(size, [0.2, 0.4, 0.6]).unwrap();
        let outputs = files.outputs();
        let preview = outputs.preview.expect("a side file");
        for _ in 0..frames {
            outputs.video.push(&frame).unwrap();
            preview.push(&frame).unwrap();
        }
        files
    }

    #[test]
    fn a_failing_chunk_keeps_the_output_and_the_side_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let files = open_with_frames(dir.path(), 3);
        let failure = PipelineError::Model(crate::models::ModelError::Run {
            role: "unet".into(),
            message: "out of memory".into(),
        });
        let err = files.conclude(Err(failure), &crate::progress::NoProgress);
        let message = err.unwrap_err().to_string();
        assert!(
            message.contains("3 enhanced frames were written to"),
            "{message}"
        );
        assert!(
            message.contains("3 stage-2 frames (not enhanced) were kept in"),
            "{message}"
        );
        assert!(dir.path().join("v.gif").exists(), "renamed into place");
        assert!(
            dir.path().join("v.stage2.gif").exists(),
            "the side file is kept"
        );
        assert!(!dir.path().join("v.partial.gif").exists());
    }

    #[test]
    fn a_successful_run_removes_only_the_side_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let files = open_with_frames(dir.path(), 2);
        let run = RunSummary {
            stage2_frames: 2,
            frames_written: 2,
        };
        let written = files
            .conclude(Ok(run), &crate::progress::NoProgress)
            .unwrap();
        assert_eq!(written.output.frames, 2);
        assert!(dir.path().join("v.gif").exists());
        assert!(!dir.path().join("v.stage2.gif").exists());
    }

    #[test]
    fn side_file_sits_next_to_the_output() {
        let mp4 = side_path(&target("/tmp/a/cat.mp4", OutputFormat::Mp4));
        assert_eq!(mp4, PathBuf::from("/tmp/a/cat.stage2.mp4"));
        let png = side_path(&target("/tmp/a/frames", OutputFormat::PngDir));
        assert_eq!(png, PathBuf::from("/tmp/a/frames.stage2"));
    }
}

//! Resumable jobs: a job directory holds the request (`job.json`) and the state after the last
//! finished unit of work (`checkpoint.st2v`, see [`super::checkpoint_file`]); the outputs
//! themselves hold the frames. Both files are replaced atomically (written, synced, renamed),
//! so a job killed at any moment leaves the previous checkpoint or the next one, never half
//! of one.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::pipeline::{Checkpoints, JobState, PipelineError};

use super::checkpoint_file;
use super::error::RequestError;
use super::field::Field;
use super::params::GenerateParams;
use super::request::Request;
use crate::video::OutputFormat;

pub const JOB_FILE: &str = "job.json";
pub const CHECKPOINT_FILE: &str = "checkpoint.st2v";
const JOB_FORMAT: &str = "st2v-job";
const JOB_VERSION: u32 = 1;

/// Problems with a job directory or its files.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{path}: not a st2v job file: {problem}")]
    Foreign { path: PathBuf, problem: String },
    #[error("{path}: written in job format version {found}; this st2v reads version {expected}")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{path}: corrupt: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    #[error("--job-dir {path}: {problem}")]
    Dir { path: PathBuf, problem: String },
    #[error("{path}: {operation}: {source}")]
    Io {
        path: PathBuf,
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Started, and not known to have ended (it may have been killed).
    Running,
    /// Ended early (cancelled or failed); `st2v resume` continues it.
    Stopped,
    Finished,
}

/// `job.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub format: String,
    pub version: u32,
    pub status: JobStatus,
    /// The model set's directory.
    pub models: PathBuf,
    /// The request, with absolute paths.
    pub request: GenerateParams,
    /// Frames in the output when the job finished.
    pub frames: Option<usize>,
    /// Why a stopped job stopped.
    pub message: Option<String>,
}

/// Time and size of the checkpoints a job wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckpointStats {
    pub count: usize,
    pub seconds: f64,
    pub bytes: u64,
}

/// An open job directory; also where the pipeline hands its checkpoints.
#[derive(Debug)]
pub struct JobDir {
    dir: PathBuf,
    record: JobRecord,
    /// Least time between two stage-3 checkpoints once stage 2 is done.
    interval: Duration,
    last: Instant,
    stats: CheckpointStats,
    after_save: Option<AfterSave>,
}

/// What runs after each checkpoint is on disk (a server replica copies the job's files to the
/// store its peers share).
struct AfterSave(Box<dyn FnMut() + Send>);

impl std::fmt::Debug for AfterSave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterSave")
    }
}

impl JobDir {
    /// Starts a job in `dir` (created if needed; it must not hold a job already).
    pub fn create(dir: &Path, models: &Path, params: &GenerateParams) -> Result<Self, JobError> {
        if dir.join(JOB_FILE).exists() {
            return Err(JobError::Dir {
                path: dir.to_owned(),
                problem: format!(
                    "already holds a job; continue it with `st2v resume {}` or use another directory",
                    dir.display()
                ),
            });
        }
        fs::create_dir_all(dir).map_err(io(dir, "creating the job directory"))?;
        let mut request = params.clone();
        absolutize(&mut request);
        let record = JobRecord {
            format: JOB_FORMAT.into(),
            version: JOB_VERSION,
            status: JobStatus::Running,
            models: std::path::absolute(models).unwrap_or_else(|_| models.to_owned()),
            request,
            frames: None,
            message: None,
        };
        let job = Self::with_record(dir, record);
        job.write_record()?;
        Ok(job)
    }

    /// Opens the job in `dir`.
    pub fn open(dir: &Path) -> Result<Self, JobError> {
        let path = dir.join(JOB_FILE);
        if !path.exists() {
            return Err(JobError::Dir {
                path: dir.to_owned(),
                problem: format!("holds no {JOB_FILE} (not a job directory)"),
            });
        }
        let text = fs::read(&path).map_err(io(&path, "reading the job"))?;
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| JobError::Foreign {
                path: path.clone(),
                problem: format!("not JSON ({e})"),
            })?;
        if value["format"] != JOB_FORMAT {
            return Err(JobError::Foreign {
                path,
                problem: format!("its `format` is {}, not \"{JOB_FORMAT}\"", value["format"]),
            });
        }
        if value["version"] != JOB_VERSION {
            return Err(JobError::Version {
                path,
                found: value["version"].as_u64().unwrap_or(0) as u32,
                expected: JOB_VERSION,
            });
        }
        let record = serde_json::from_value(value).map_err(|e| JobError::Corrupt {
            path,
            problem: e.to_string(),
        })?;
        Ok(Self::with_record(dir, record))
    }

    fn with_record(dir: &Path, record: JobRecord) -> Self {
        Self {
            dir: dir.to_owned(),
            record,
            interval: Duration::from_secs(60),
            last: Instant::now(),
            stats: CheckpointStats::default(),
            after_save: None,
        }
    }

    /// Runs `hook` after every checkpoint is written (outside the checkpoint's timing).
    pub fn after_save(&mut self, hook: impl FnMut() + Send + 'static) {
        self.after_save = Some(AfterSave(Box::new(hook)));
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn record(&self) -> &JobRecord {
        &self.record
    }

    pub fn stats(&self) -> CheckpointStats {
        self.stats
    }

    /// Least time between two stage-3 checkpoints after stage 2 (stage-2 chunks always
    /// checkpoint).
    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// The last checkpoint, if the job got that far (a job killed in stage 1 has none).
    pub fn checkpoint(&self) -> Result<Option<JobState>, JobError> {
        let path = self.dir.join(CHECKPOINT_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = fs::read(&path).map_err(io(&path, "reading the checkpoint"))?;
        checkpoint_file::decode(&bytes, &path).map(Some)
    }

    /// Records how the job ended.
    pub fn conclude(
        &mut self,
        status: JobStatus,
        frames: Option<usize>,
        message: Option<String>,
    ) -> Result<(), JobError> {
        self.record.status = status;
        self.record.frames = frames;
        self.record.message = message;
        self.write_record()
    }

    /// Marks a resumed job as running again.
    pub fn restart(&mut self) -> Result<(), JobError> {
        self.conclude(JobStatus::Running, None, None)
    }

    fn write_record(&self) -> Result<(), JobError> {
        let json = serde_json::to_vec_pretty(&self.record).expect("the record serializes");
        write_atomically(&self.dir.join(JOB_FILE), &json)
    }
}

impl Checkpoints for JobDir {
    fn due(&mut self) -> bool {
        self.last.elapsed() >= self.interval
    }

    fn save(&mut self, state: &JobState) -> Result<(), PipelineError> {
        let started = Instant::now();
        let bytes = checkpoint_file::encode(state);
        let path = self.dir.join(CHECKPOINT_FILE);
        write_atomically(&path, &bytes).map_err(|err| PipelineError::Io {
            path,
            source: std::io::Error::other(err),
        })?;
        self.last = Instant::now();
        self.stats.count += 1;
        self.stats.seconds += started.elapsed().as_secs_f64();
        self.stats.bytes = bytes.len() as u64;
        if let Some(AfterSave(hook)) = self.after_save.as_mut() {
            hook();
        }
        Ok(())
    }
}

/// A job continues its outputs after a restart: each must be an MP4 file or a PNG directory.
pub fn check_resumable(request: &Request) -> Result<(), RequestError> {
    let plan = request.output();
    let copy = plan
        .stage2
        .as_ref()
        .map(|(copy, _)| (&copy.target, copy.side_file));
    let targets = std::iter::once((&plan.target, true)).chain(copy);
    for (target, is_out) in targets {
        if target.format == OutputFormat::Gif {
            let field = match is_out {
                true => Field::Out,
                false => Field::PreviewOut,
            };
            return Err(RequestError::value(
                field,
                "an MP4 file or a PNG directory (a resumable job continues its outputs; a GIF \
                 cannot be continued)",
                target.path.display(),
            ));
        }
    }
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), JobError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(io(path, "writing atomically"))
}

fn io(path: &Path, operation: &'static str) -> impl Fn(std::io::Error) -> JobError {
    let path = path.to_owned();
    move |source| JobError::Io {
        path: path.clone(),
        operation,
        source,
    }
}

/// Makes the request's paths absolute, so the job resumes from any directory.
fn absolutize(params: &mut GenerateParams) {
    let absolute = |path: &mut PathBuf| {
        if let Ok(abs) = std::path::absolute(&*path) {
            *path = abs;
        }
    };
    absolute(&mut params.output.out);
    for path in [
        &mut params.preview_out,
        &mut params.init_noise,
        &mut params.save_latents,
    ]
    .into_iter()
    .flatten()
    {
        absolute(path);
    }
}

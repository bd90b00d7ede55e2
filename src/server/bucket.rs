//! The file store replicas of a cluster share (`--store DIR|s3://BUCKET[/PREFIX]`, through the
//! `object_store` crate): each job's outputs and checkpoint directory under `<id>/`.
//!
//! A replica runs a job in a local directory (ffmpeg writes the MP4 fragments there) and
//! mirrors it into the store after every checkpoint: first the outputs, then the checkpoint
//! directory, so the stored checkpoint never vouches for frames the stored outputs lack (an
//! output holding more than its checkpoint says is cut back on resume). A replica that takes the
//! job over pulls the directory and continues from that checkpoint; when a job ends its final
//! files are pushed and the partial ones removed. Any replica serves any job's videos from the
//! store.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("--store {0}: expected a directory or s3://BUCKET[/PREFIX]")]
    Spec(String),
    #[error("--store {store}: {source}")]
    Store {
        store: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path}: {operation}: {source}")]
    Io {
        path: PathBuf,
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A job directory's files, mirrored in the shared store.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// The store's clients run here; workers block on it, HTTP handlers through
    /// `spawn_blocking`.
    runtime: Option<tokio::runtime::Runtime>,
    spec: String,
    /// (length, modified) of each local file when it was last pushed: unchanged ones are not
    /// sent again.
    pushed: Mutex<HashMap<PathBuf, (u64, SystemTime)>>,
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // The last handle may go in an async context, where a runtime cannot block to stop.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Bucket {
    /// Opens `spec`: a local directory (created if missing) or `s3://BUCKET[/PREFIX]`, whose
    /// credentials, region and endpoint come from the usual `AWS_*` variables
    /// (`AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP=true` for an S3-compatible server).
    pub fn open(spec: &str) -> Result<Self, BucketError> {
        let store: Arc<dyn ObjectStore> = match spec.strip_prefix("s3://") {
            Some(rest) => s3(spec, rest)?,
            None if spec.contains("://") => return Err(BucketError::Spec(spec.to_owned())),
            None => {
                std::fs::create_dir_all(spec).map_err(|source| BucketError::Io {
                    path: spec.into(),
                    operation: "creating the store directory",
                    source,
                })?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(spec)
                    .map_err(|source| store_error(spec, source))?;
                Arc::new(local)
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("st2v-store")
            .enable_all()
            .build()
            .map_err(|source| BucketError::Io {
                path: spec.into(),
                operation: "starting the store's runtime",
                source,
            })?;
        Ok(Self {
            store,
            runtime: Some(runtime),
            spec: spec.to_owned(),
            pushed: Mutex::new(HashMap::new()),
        })
    }

    /// Runs `future` on the store's runtime (never call from async code: see `spawn_blocking`).
    fn block<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime
            .as_ref()
            .expect("open until dropped")
            .block_on(future)
    }

    fn error(&self, source: object_store::Error) -> BucketError {
        store_error(&self.spec, source)
    }

    /// Checks that the store answers (a listing: a missing bucket or bad credentials fail),
    /// before the replica takes jobs.
    pub fn check(&self) -> Result<(), BucketError> {
        self.list("st2v-probe").map(drop)
    }

    /// Sends the files of `dir` that changed since they were last sent to `<id>/`: the
    /// outputs first, the checkpoint directory last.
    pub fn push(&self, id: &str, dir: &Path) -> Result<(), BucketError> {
        let mut files = local_files(dir)?;
        // `resume/job.json` and then `resume/checkpoint.st2v` go last (sorted after the rest).
        files.sort_by_key(|(relative, _)| {
            let rank = match relative.to_str() {
                Some(r) if r.ends_with(crate::engine::CHECKPOINT_FILE) => 2,
                Some(r) if r.starts_with("resume") => 1,
                _ => 0,
            };
            (rank, relative.clone())
        });
        for (relative, path) in files {
            let meta = std::fs::metadata(&path).map_err(io(&path, "reading"))?;
            let stamp = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            if self.lock_pushed().get(&path) == Some(&stamp) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io(&path, "reading"))?;
            let location = object_path(id, &relative);
            self.block(self.store.put(&location, PutPayload::from(bytes)))
                .map_err(|e| self.error(e))?;
            self.lock_pushed().insert(path, stamp);
        }
        Ok(())
    }

    /// Pushes `dir` and removes what the store holds under `<id>/` that `dir` does not (the
    /// partial outputs once the final ones are in place).
    pub fn push_final(&self, id: &str, dir: &Path) -> Result<(), BucketError> {
        self.push(id, dir)?;
        let local: Vec<String> = local_files(dir)?
            .iter()
            .map(|(relative, _)| object_path(id, relative).to_string())
            .collect();
        for meta in self.list(id)? {
            if !local.contains(&meta.location.to_string()) {
                self.block(self.store.delete(&meta.location))
                    .map_err(|e| self.error(e))?;
            }
        }
        self.lock_pushed().retain(|path, _| !path.starts_with(dir));
        Ok(())
    }

    /// Replaces `dir` by the files the store holds under `<id>/`; how many there were.
    pub fn pull(&self, id: &str, dir: &Path) -> Result<usize, BucketError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir, "clearing"))?;
        }
        std::fs::create_dir_all(dir).map_err(io(dir, "creating"))?;
        let objects = self.list(id)?;
        let prefix = format!("{id}/");
        for meta in &objects {
            let location = meta.location.to_string();
            let Some(relative) = location.strip_prefix(&prefix) else {
                continue;
            };
            self.download(&meta.location, &dir.join(relative))?;
        }
        self.lock_pushed().retain(|path, _| !path.starts_with(dir));
        Ok(objects.len())
    }

    /// Copies `<id>/<name>` to `dest` unless `dest` already has its length; `false` when the
    /// store has no such object.
    pub fn fetch(&self, id: &str, name: &str, dest: &Path) -> Result<bool, BucketError> {
        let Some(size) = self.size(id, name)? else {
            return Ok(false);
        };
        if std::fs::metadata(dest).is_ok_and(|m| m.len() == size) {
            return Ok(true);
        }
        self.download(&object_path(id, Path::new(name)), dest)?;
        Ok(true)
    }

    /// The length of `<id>/<name>`, `None` when there is none.
    pub fn size(&self, id: &str, name: &str) -> Result<Option<u64>, BucketError> {
        let location = object_path(id, Path::new(name));
        match self.block(self.store.head(&location)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(self.error(err)),
        }
    }

    /// Bytes `range` of `<id>/<name>`.
    pub fn read_range(
        &self,
        id: &str,
        name: &str,
        range: Range<u64>,
    ) -> Result<Vec<u8>, BucketError> {
        let location = object_path(id, Path::new(name));
        let bytes = self
            .block(self.store.get_range(&location, range))
            .map_err(|e| self.error(e))?;
        Ok(bytes.to_vec())
    }

    /// Removes everything under `<id>/`.
    pub fn delete(&self, id: &str) -> Result<(), BucketError> {
        for meta in self.list(id)? {
            self.block(self.store.delete(&meta.location))
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    fn list(&self, id: &str) -> Result<Vec<object_store::ObjectMeta>, BucketError> {
        let prefix = ObjectPath::from(id);
        self.block(self.store.list(Some(&prefix)).try_collect::<Vec<_>>())
            .map_err(|e| self.error(e))
    }

    /// Writes an object to `dest` through a temporary file and a rename.
    fn download(&self, location: &ObjectPath, dest: &Path) -> Result<(), BucketError> {
        let bytes = self
            .block(async { self.store.get(location).await?.bytes().await })
            .map_err(|e| self.error(e))?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent, "creating"))?;
        }
        let tmp = dest.with_extension("download");
        std::fs::write(&tmp, &bytes).map_err(io(&tmp, "writing"))?;
        std::fs::rename(&tmp, dest).map_err(io(dest, "renaming into place"))
    }

    fn lock_pushed(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (u64, SystemTime)>> {
        self.pushed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `s3://BUCKET[/PREFIX]` with the settings of the `AWS_*` environment variables.
fn s3(spec: &str, rest: &str) -> Result<Arc<dyn ObjectStore>, BucketError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(BucketError::Spec(spec.to_owned()));
    }
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|source| store_error(spec, source))?;
    let prefix = prefix.trim_matches('/');
    Ok(match prefix.is_empty() {
        true => Arc::new(s3),
        false => Arc::new(object_store::prefix::PrefixStore::new(s3, prefix)),
    })
}

fn store_error(spec: &str, source: object_store::Error) -> BucketError {
    BucketError::Store {
        store: spec.to_owned(),
        source,
    }
}

fn io(path: &Path, operation: &'static str) -> impl Fn(std::io::Error) -> BucketError {
    let path = path.to_owned();
    move |source| BucketError::Io {
        path: path.clone(),
        operation,
        source,
    }
}

fn object_path(id: &str, relative: &Path) -> ObjectPath {
    let mut parts = vec![id.to_owned()];
    parts.extend(
        relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    ObjectPath::from_iter(parts)
}

/// (path relative to `dir`, path) of every file under `dir`, but temporary ones.
fn local_files(dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>, BucketError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(io(&current, "listing"))?;
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let is_temporary = path
                .extension()
                .is_some_and(|e| e == "tmp" || e == "download");
            if path.is_dir() {
                pending.push(path);
            } else if !is_temporary {
                let relative = path.strip_prefix(dir).unwrap_or(&path).to_owned();
                files.push((relative, path));
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::Bucket;
    use std::path::Path;

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn stored(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = super::local_files(root)
            .unwrap()
            .into_iter()
            .map(|(relative, _)| relative.to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_job_directory_goes_to_the_store_and_comes_back() {
        let root = tempfile::tempdir().unwrap();
        let store = root.path().join("store");
        let bucket = Bucket::open(store.to_str().unwrap()).unwrap();
        bucket.check().unwrap();
        let job = root.path().join("a/video_1");
        write(&job.join("video.partial.mp4"), b"fragments");
        write(&job.join("resume/job.json"), b"{}");
        write(&job.join("resume/checkpoint.st2v"), b"state");
        write(&job.join("resume/checkpoint.tmp"), b"half");
        bucket.push("video_1", &job).unwrap();
        assert_eq!(
            stored(&store.join("video_1")),
            [
                "resume/checkpoint.st2v",
                "resume/job.json",
                "video.partial.mp4"
            ]
        );
        assert_eq!(
            bucket.size("video_1", "video.partial.mp4").unwrap(),
            Some(9)
        );
        assert_eq!(
            bucket
                .read_range("video_1", "video.partial.mp4", 2..5)
                .unwrap(),
            b"agm"
        );

        // Another replica takes the job over: its directory is replaced by the stored one.
        let other = root.path().join("b/video_1");
        write(&other.join("stale.mp4"), b"old");
        assert_eq!(bucket.pull("video_1", &other).unwrap(), 3);
        assert_eq!(
            stored(&other),
            [
                "resume/checkpoint.st2v",
                "resume/job.json",
                "video.partial.mp4"
            ]
        );
        assert_eq!(
            std::fs::read(other.join("resume/checkpoint.st2v")).unwrap(),
            b"state"
        );

        // It finishes: the final video replaces the partial one in the store.
        std::fs::rename(other.join("video.partial.mp4"), other.join("video.mp4")).unwrap();
        bucket.push_final("video_1", &other).unwrap();
        assert_eq!(
            stored(&store.join("video_1")),
            ["resume/checkpoint.st2v", "resume/job.json", "video.mp4"]
        );
        let served = root.path().join("c/video.mp4");
        assert!(bucket.fetch("video_1", "video.mp4", &served).unwrap());
        assert_eq!(std::fs::read(&served).unwrap(), b"fragments");
        assert!(!bucket.fetch("video_1", "preview.mp4", &served).unwrap());

        bucket.delete("video_1").unwrap();
        assert_eq!(bucket.size("video_1", "video.mp4").unwrap(), None);
    }

    #[test]
    fn a_store_that_is_neither_a_directory_nor_s3_is_refused() {
        let err = Bucket::open("gs://videos").err().unwrap();
        assert_eq!(
            err.to_string(),
            "--store gs://videos: expected a directory or s3://BUCKET[/PREFIX]"
        );
        assert!(Bucket::open("s3://").is_err());
    }
}

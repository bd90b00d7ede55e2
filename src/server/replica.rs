//! A replica's side of a cluster job (`st2v serve --queue redis://... --store ...`): taking the
//! next job from the shared queue (a new one, or one whose replica died, which continues from
//! its last checkpoint in the shared store), holding its lease while it runs, mirroring its
//! files into the store, and letting go of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::bucket::{Bucket, BucketError};
use super::cluster::{Claimed, ClusterQueue};
use super::jobs::{now, Assigned, JobError, JobStatus, Store};
use super::shared::SharedJobs;
use crate::manifest::ModelSet;
use crate::progress::CancelToken;

/// What a replica shares with the others: the queue, the records and events (Redis) and the
/// files (the store).
pub struct Cluster {
    pub queue: Arc<ClusterQueue>,
    pub jobs: Arc<SharedJobs>,
    pub files: Arc<Bucket>,
}

impl Cluster {
    /// Copies a job's directory into the store; the `last` copy also removes what the
    /// directory no longer has (the partial outputs of a finished job).
    pub fn push(&self, id: &str, dir: &std::path::Path, last: bool) -> Result<(), BucketError> {
        match last {
            true => self.files.push_final(id, dir),
            false => self.files.push(id, dir),
        }
    }
}

/// How long `take` waits for a job before looking at whether the server stops.
const POLL: Duration = Duration::from_secs(1);

/// Waits for this replica's next job (`None` once the server stops).
pub fn next_job(
    cluster: &Cluster,
    store: &Arc<Store>,
    set: &ModelSet,
) -> Option<(Assigned, Lease)> {
    while !store.is_stopping() {
        let claimed = match cluster.queue.take(POLL) {
            Ok(Some(claimed)) => claimed,
            Ok(None) => continue,
            Err(err) => {
                tracing::warn!("the job queue: {err}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        if let Some(job) = start(cluster, store, set, claimed) {
            return Some(job);
        }
    }
    None
}

/// Adopts a claimed job (its files pulled from the store), or ends it here: one cancelled (or
/// finished) meanwhile is acknowledged, one that cannot run is failed.
fn start(
    cluster: &Cluster,
    store: &Arc<Store>,
    set: &ModelSet,
    claimed: Claimed,
) -> Option<(Assigned, Lease)> {
    let queue = &cluster.queue;
    let dir = store.data_dir().join(&claimed.job);
    let Some(mut record) = cluster.jobs.read_record(&claimed.job) else {
        tracing::warn!("job {}: no record in the cluster's Redis", claimed.job);
        let _ = queue.finish(&claimed);
        return None;
    };
    let cancelled = queue.is_cancelled(&claimed.job).unwrap_or(false);
    let pulled = match (record.status.is_terminal(), cancelled) {
        (false, false) => cluster.files.pull(&claimed.job, &dir).map(drop),
        _ => Ok(()),
    };
    let ended = match (record.status.is_terminal(), cancelled, pulled) {
        (true, _, _) => None,
        (false, true, _) => Some((JobStatus::Cancelled, None)),
        // The store is unreachable: leave the job for a retry (here or elsewhere).
        (false, false, Err(err)) => {
            tracing::warn!("job {}: fetching its files: {err}", claimed.job);
            std::thread::sleep(POLL);
            return None;
        }
        (false, false, Ok(())) => match super::resumable(&dir, set) {
            Ok(request) => {
                record.replica = Some(queue.consumer().to_owned());
                let assigned = store.adopt(record, dir, request);
                // Prompt changes sent to any replica reach the job here.
                let (store, id) = (store.clone(), assigned.id.clone());
                let steer = move |prompt: &str| {
                    let _ = store.steer(&id, prompt);
                };
                let lease = Lease::hold(queue.clone(), claimed, assigned.cancel.clone(), steer);
                return Some((assigned, lease));
            }
            Err(reason) => Some((
                JobStatus::Failed,
                Some(JobError {
                    kind: "invalid_request".into(),
                    message: format!("this replica cannot run the job: {reason}"),
                }),
            )),
        },
    };
    if let Some((status, error)) = ended {
        record.status = status;
        record.finished_at = Some(now());
        record.error = error;
        if let Err(err) = cluster.jobs.write_record(&record) {
            tracing::warn!("job {}: recording its end: {err}", claimed.job);
        }
    }
    let _ = queue.finish(&claimed);
    None
}

/// A claimed job's lease, renewed in the background while it runs. Losing it (another replica
/// took the job over) or a cancel flag set by any replica cancels the local run; prompt changes
/// sent to any replica are applied.
pub struct Lease {
    stop: mpsc::Sender<()>,
    lost: Arc<AtomicBool>,
    renewer: JoinHandle<()>,
    queue: Arc<ClusterQueue>,
    claimed: Claimed,
}

impl Lease {
    fn hold(
        queue: Arc<ClusterQueue>,
        claimed: Claimed,
        cancel: CancelToken,
        steer: impl Fn(&str) + Send + 'static,
    ) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (queue, claimed, lost) = (queue.clone(), claimed.clone(), lost.clone());
            std::thread::spawn(move || loop {
                match stopped.recv_timeout(queue.lease() / 3) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                match queue.renew(&claimed) {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("job {}: another replica holds it now", claimed.job);
                        lost.store(true, Ordering::SeqCst);
                        cancel.cancel();
                        return;
                    }
                    Err(err) => tracing::warn!("job {}: renewing its lease: {err}", claimed.job),
                }
                if queue.is_cancelled(&claimed.job).unwrap_or(false) {
                    cancel.cancel();
                }
                for prompt in queue.take_steers(&claimed.job).unwrap_or_default() {
                    steer(&prompt);
                }
            })
        };
        Self {
            stop,
            lost,
            renewer,
            queue,
            claimed,
        }
    }

    /// Stops renewing. `Some` (the queue and the entry to acknowledge once the job's record
    /// is final) while the job is still this replica's.
    pub fn end(self) -> Option<(Arc<ClusterQueue>, Claimed)> {
        let _ = self.stop.send(());
        let _ = self.renewer.join();
        match self.lost.load(Ordering::SeqCst) {
            true => None,
            false => Some((self.queue, self.claimed)),
        }
    }
}

//! The replicas' shared queue (`streamingt2v::server::cluster`) against a real Redis (Debian's
//! `redis-server`, started on a loopback port; `scripts/setup.sh --dev` installs it): the
//! global bound, one owner per job, a dead owner's job taken over after its lease, the old owner
//! unable to complete it, cancel flags seen by every replica.

use std::time::{Duration, Instant};

use streamingt2v::server::cluster::ClusterQueue;

mod support;

const LEASE: Duration = Duration::from_millis(400);
const NO_WAIT: Duration = Duration::from_millis(1);

#[test]
fn a_dead_replicas_job_is_taken_over_once_and_completed_once() {
    let Some((_redis, url)) = support::start_redis() else {
        eprintln!("skipped: redis-server is not installed (scripts/setup.sh --dev installs it)");
        return;
    };
    let a = ClusterQueue::connect(&url, "replica-a", LEASE, 2).unwrap();
    let b = ClusterQueue::connect(&url, "replica-b", LEASE, 2).unwrap();
    assert!(a.admit("job-1").unwrap());
    assert!(b.admit("job-2").unwrap());
    assert!(!a.admit("job-3").unwrap(), "the global bound is 2");
    assert_eq!(a.active().unwrap(), 2);

    let first = a.take(NO_WAIT).unwrap().expect("a job");
    let second = b.take(NO_WAIT).unwrap().expect("a job");
    assert_eq!(
        (first.job.as_str(), second.job.as_str()),
        ("job-1", "job-2")
    );
    assert!(!first.reclaimed && !second.reclaimed);
    assert_eq!(b.take(NO_WAIT).unwrap(), None, "nothing else queued");
    assert_eq!(a.pending().unwrap(), 2);

    // b keeps its lease; a dies (stops renewing): after the lease b takes a's job over.
    let deadline = Instant::now() + LEASE * 3;
    let taken_over = loop {
        assert!(b.renew(&second).unwrap());
        if let Some(claimed) = b.take(NO_WAIT).unwrap() {
            break claimed;
        }
        assert!(
            Instant::now() < deadline,
            "a's job is taken over after its lease"
        );
        std::thread::sleep(LEASE / 4);
    };
    assert_eq!(taken_over.job, "job-1");
    assert!(taken_over.reclaimed);
    assert!(!a.renew(&first).unwrap(), "a learns it lost the job");
    assert!(!a.finish(&first).unwrap(), "a cannot complete it");
    assert_eq!(a.active().unwrap(), 2, "nothing freed by a");
    assert!(b.finish(&taken_over).unwrap());
    assert!(b.finish(&second).unwrap());
    assert!(!b.finish(&second).unwrap(), "a job is completed once");
    assert_eq!((b.active().unwrap(), b.pending().unwrap()), (0, 0));
    assert!(a.admit("job-3").unwrap(), "places are free again");
}

#[test]
fn a_cancel_flag_set_by_one_replica_is_seen_by_another() {
    let Some((_redis, url)) = support::start_redis() else {
        eprintln!("skipped: redis-server is not installed (scripts/setup.sh --dev installs it)");
        return;
    };
    let a = ClusterQueue::connect(&url, "replica-a", LEASE, 4).unwrap();
    let c = ClusterQueue::connect(&url, "replica-c", LEASE, 4).unwrap();
    assert!(!a.is_cancelled("job-9").unwrap());
    c.cancel("job-9").unwrap();
    assert!(a.is_cancelled("job-9").unwrap());
    let blocked = Instant::now();
    assert_eq!(a.take(Duration::from_millis(200)).unwrap(), None);
    assert!(
        blocked.elapsed() >= Duration::from_millis(150),
        "take waits for a job"
    );
}

//! Three `st2v serve` replicas on the tiny set, sharing one Redis (Debian's `redis-server` on a
//! loopback port) and one store (a directory; `cluster_s3.rs` runs an S3 one), each with its own
//! data directory: a replica killed (SIGKILL) mid-job loses nothing,
//! another continues the job from its checkpoint to the video a single-process run (and a fresh
//! job) makes, no job is lost or completed twice, its events stream from any replica, a cancel
//! sent to any replica stops the job wherever it runs, the global bound answers 429, a replica
//! stopped by SIGTERM hands its job on, and without Redis a new job gets 503.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use streamingt2v::server::cluster::ClusterQueue;
use tempfile::TempDir;

mod support;

use support::replica::{single_process_frames, Replica};
use support::{framemd5, start_redis};

#[test]
fn a_killed_replicas_job_completes_on_another_and_cancel_and_the_bound_hold_cluster_wide() {
    let Some((redis, url)) = start_redis() else {
        eprintln!("skipped: redis-server is not installed (scripts/setup.sh --dev installs it)");
        return;
    };
    let data = TempDir::new().unwrap();
    let store = data.path().join("store");
    let store_spec = store.to_str().unwrap();
    let mut replicas: Vec<Replica> = ["r0", "r1", "r2"]
        .iter()
        .map(|name| Replica::start(data.path(), store_spec, &url, name, &[]))
        .collect();

    let body = json!({"prompt": "a long road", "frames": 96, "steps": 4, "stage1_steps": 2, "enhance": false});
    let id = replicas[0].submit(&body);
    let running = replicas[1].wait_for(&id, |r| r["replica"].is_string());
    let owner = running["replica"].as_str().unwrap().to_owned();
    let index = replicas.iter().position(|r| r.name == owner).unwrap();
    replicas[index].wait_for(&id, |r| r["progress"]["final_frames"].as_u64() >= Some(32));
    let killed = replicas.remove(index);
    let mut child = killed.process;
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let done = replicas[0].wait_for(&id, |r| r["status"] == "completed");
    assert_ne!(
        done["replica"],
        owner.as_str(),
        "another replica finished it: {done}"
    );
    assert_eq!(done["progress"]["final_frames"], 96, "{done}");
    // Its events, from any replica: the log both owners wrote, numbered on.
    let events = replicas[1].sse(&id);
    let names: Vec<&str> = events.iter().map(|(_, name)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"queued"), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| **n == "in_progress").count(),
        2,
        "{names:?}"
    );
    assert_eq!(names.last(), Some(&"completed"), "{names:?}");
    assert!(
        events.windows(2).all(|w| w[0].0 < w[1].0),
        "ids increase: {events:?}"
    );
    let fresh = replicas[1].submit(&body);
    // A replica that does not run it streams the video as the store receives it.
    let running = replicas[1].wait_for(&fresh, |r| r["replica"].is_string());
    let stranger = replicas
        .iter()
        .find(|r| running["replica"] != r.name.as_str());
    let streamed = stranger.unwrap().content(&fresh);
    replicas[1].wait_for(&fresh, |r| r["status"] == "completed");
    let stored = std::fs::read(store.join(&fresh).join("video.mp4")).unwrap();
    assert!(
        streamed == stored,
        "streamed {} of {} bytes",
        streamed.len(),
        stored.len()
    );
    let resumed = framemd5(&store.join(&id).join("video.mp4"));
    assert_eq!(resumed.len(), 96);
    // Only the final videos and the checkpoint directory are left in the store.
    let mut stored: Vec<String> = std::fs::read_dir(store.join(&id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    stored.sort();
    assert_eq!(stored, ["preview.mp4", "resume", "video.mp4"]);
    // Any replica serves it, also one that never ran it (from the store).
    let served = data.path().join("served.mp4");
    let stranger = replicas.iter().find(|r| done["replica"] != r.name.as_str());
    std::fs::write(&served, stranger.unwrap().content(&id)).unwrap();
    assert_eq!(framemd5(&served), resumed);
    // The same request run by a single process, start to end.
    let single = single_process_frames(96, &data.path().join("single.mp4"));
    assert_eq!(resumed, single, "the resumed job's frames");
    assert_eq!(resumed, framemd5(&store.join(&fresh).join("video.mp4")));

    // Cancel through the replica that does not run the job.
    let long = json!({"prompt": "a long road", "frames": 400, "steps": 10, "stage1_steps": 2, "enhance": false});
    let job = replicas[0].submit(&long);
    let running = replicas[0].wait_for(&job, |r| r["status"] == "in_progress");
    let other = replicas
        .iter()
        .find(|r| running["replica"] != r.name.as_str())
        .unwrap();
    // A prompt change sent to a replica that does not run the job reaches the one that does.
    let steer = json!({"prompt": "a long river"});
    let (status, accepted) = other.call("POST", &format!("/v1/videos/{job}/prompt"), Some(&steer));
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["replica"], running["replica"], "{accepted}");
    let changed = other.first_event(&job, "prompt_changed");
    assert_eq!(changed["prompt"], "a long river", "{changed}");
    assert!(changed["from_frame"].as_u64() >= Some(16), "{changed}");
    assert_eq!(
        other.call("DELETE", &format!("/v1/videos/{job}"), None).0,
        202
    );
    other.wait_for(&job, |r| r["status"] == "cancelled");

    // The bound (3) counts every replica's jobs: two run, one waits, the fourth is refused.
    let ids: Vec<String> = (0..3).map(|i| replicas[i % 2].submit(&long)).collect();
    let (status, refused) = replicas[1].call("POST", "/v1/videos", Some(&long));
    assert_eq!(status, 429, "{refused}");
    for id in &ids {
        assert_eq!(
            replicas[0]
                .call("DELETE", &format!("/v1/videos/{id}"), None)
                .0,
            202
        );
    }
    for id in &ids {
        replicas[1].wait_for(id, |r| r["status"] == "cancelled");
    }
    let (_, list) = replicas[1].call("GET", "/v1/videos?limit=100", None);
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        6,
        "every job listed by any replica"
    );

    // A replica stopped by SIGTERM lets go of its job (no grace here): another continues it.
    let id = replicas[0].submit(&body);
    let running = replicas[0].wait_for(&id, |r| r["progress"]["final_frames"].as_u64() >= Some(16));
    let owner = running["replica"].as_str().unwrap().to_owned();
    let index = replicas.iter().position(|r| r.name == owner).unwrap();
    let mut stopped = replicas.remove(index);
    let pid = stopped.process.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(stopped.process.0.wait().unwrap().code(), Some(0));
    let done = replicas[0].wait_for(&id, |r| r["status"] == "completed");
    assert_eq!(done["replica"], replicas[0].name.as_str(), "{done}");
    assert_eq!(framemd5(&store.join(&id).join("video.mp4")), resumed);

    let queue = ClusterQueue::connect(&url, "checker", Duration::from_secs(2), 3).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (queue.active().unwrap(), queue.pending().unwrap()) != (0, 0) {
        assert!(Instant::now() < deadline, "no job left in the queue");
        std::thread::sleep(Duration::from_millis(200));
    }

    drop(redis);
    let (status, error) = replicas[0].call("POST", "/v1/videos", Some(&body));
    assert_eq!(
        (status, &error["error"]["type"]),
        (503, &json!("queue_unavailable")),
        "{error}"
    );
}

#[test]
fn a_store_lost_mid_job_fails_the_job_keeping_its_frames_and_refuses_new_ones() {
    let Some((_redis, url)) = start_redis() else {
        eprintln!("skipped: redis-server is not installed (scripts/setup.sh --dev installs it)");
        return;
    };
    let root = TempDir::new().unwrap();
    let store = root.path().join("store");
    let replica = Replica::start(root.path(), store.to_str().unwrap(), &url, "r0", &[]);
    let body = json!({"prompt": "a long road", "frames": 200, "steps": 4, "stage1_steps": 2, "enhance": false});
    let id = replica.submit(&body);
    replica.wait_for(&id, |r| r["status"] == "in_progress");
    // The store goes away under the running job: its directory becomes a file.
    std::fs::rename(&store, root.path().join("store.gone")).unwrap();
    std::fs::write(&store, b"not a directory").unwrap();

    let failed = replica.wait_for(&id, |r| r["status"].as_str() != Some("in_progress"));
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["type"], "store_unavailable", "{failed}");
    // The job ran to its end: every frame is kept on the replica.
    let kept = root.path().join("r0").join(&id).join("video.mp4");
    assert_eq!(framemd5(&kept).len(), 200);
    let (status, refused) = replica.call("POST", "/v1/videos", Some(&body));
    assert_eq!(
        (status, &refused["error"]["type"]),
        (503, &json!("queue_unavailable")),
        "{refused}"
    );
}

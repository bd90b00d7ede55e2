//! Replicas whose shared store is S3 (`--store s3://BUCKET/PREFIX` against moto's
//! S3-compatible server on a loopback port; Redis for the queue): a replica killed mid-job hands
//! it on through the bucket, the other continues it from the checkpoint stored there to the
//! video a single-process run makes, and a replica started afterwards with an empty data
//! directory serves that video from the bucket.

use serde_json::json;
use tempfile::TempDir;

mod support;

use support::replica::{single_process_frames, Replica};
use support::{framemd5, start_redis, start_s3};

#[test]
fn a_job_survives_its_replica_through_an_s3_store() {
    let Some((_redis, url)) = start_redis() else {
        eprintln!("skipped: redis-server is not installed (scripts/setup.sh --dev installs it)");
        return;
    };
    let Some((_s3, endpoint)) = start_s3("st2v-test") else {
        eprintln!("skipped: moto_server is not installed (scripts/setup.sh --dev installs it)");
        return;
    };
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let store = "s3://st2v-test/jobs";
    let root = TempDir::new().unwrap();
    let mut replicas: Vec<Replica> = ["s0", "s1"]
        .iter()
        .map(|name| Replica::start(root.path(), store, &url, name, &env))
        .collect();

    let body = json!({"prompt": "a long road", "frames": 64, "steps": 4, "stage1_steps": 2, "enhance": false});
    let id = replicas[0].submit(&body);
    let running = replicas[1].wait_for(&id, |r| {
        r["replica"].is_string() && r["progress"]["final_frames"].as_u64() >= Some(16)
    });
    let owner = running["replica"].as_str().unwrap().to_owned();
    let index = replicas.iter().position(|r| r.name == owner).unwrap();
    let mut killed = replicas.remove(index);
    killed.process.0.kill().unwrap();
    killed.process.0.wait().unwrap();

    let survivor = &replicas[0];
    let done = survivor.wait_for(&id, |r| r["status"] == "completed");
    assert_eq!(done["replica"], survivor.name.as_str(), "{done}");
    let events = survivor.sse(&id);
    let starts = events.iter().filter(|(_, n)| n == "in_progress").count();
    assert_eq!(starts, 2, "started, then taken over: {events:?}");

    // A replica that joins later, with nothing on its disk, serves the video from the bucket.
    let late = Replica::start(root.path(), store, &url, "s2", &env);
    let served = root.path().join("served.mp4");
    std::fs::write(&served, late.content(&id)).unwrap();

    let expected = single_process_frames(64, &root.path().join("single.mp4"));
    assert_eq!(expected.len(), 64);
    assert_eq!(framemd5(&served), expected, "the resumed job's frames");
}

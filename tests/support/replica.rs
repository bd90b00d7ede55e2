//! A replica of `st2v serve` in a cluster, driven over HTTP by the cluster tests.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Process;

/// One `st2v serve` replica of a cluster on the tiny set (lease 2 s, global bound 3).
pub struct Replica {
    pub process: Process,
    pub base: String,
    pub name: String,
}

impl Replica {
    /// Starts replica `name` with its own data directory under `root`, the shared `store`
    /// (a directory or `s3://...`) and Redis, and waits until it is ready.
    pub fn start(root: &Path, store: &str, redis: &str, name: &str, env: &[(&str, &str)]) -> Self {
        let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny");
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("st2v"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--models"])
            .arg(tiny)
            .arg("--data")
            .arg(root.join(name))
            .args(["--store", store])
            .envs(env.iter().copied())
            .args([
                "--queue",
                redis,
                "--queue-bound",
                "3",
                "--lease-seconds",
                "2",
            ])
            .args(["--replica", name, "--grace-seconds", "0"]);
        let (child, base) = super::spawn_server(command);
        let replica = Self {
            process: Process(child),
            base,
            name: name.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while replica.call("GET", "/readyz", None).0 != 200 {
            assert!(Instant::now() < deadline, "the replica got ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        replica
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("POST", Some(body)) => agent.post(&url).send_json(body),
            ("DELETE", _) => agent.delete(&url).call(),
            _ => agent.get(&url).call(),
        };
        let mut response = response.unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn submit(&self, body: &Value) -> String {
        let (status, job) = self.call("POST", "/v1/videos", Some(body));
        assert_eq!(status, 202, "{job}");
        job["id"].as_str().unwrap().to_owned()
    }

    /// The (id, name) of every server-sent event of a finished job.
    pub fn sse(&self, id: &str) -> Vec<(u64, String)> {
        let url = format!("{}/v1/videos/{id}/events", self.base);
        let text = ureq::get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let mut events = Vec::new();
        let mut event_id = 0;
        for line in text.lines() {
            if let Some(value) = line.strip_prefix("id: ") {
                event_id = value.parse().unwrap();
            } else if let Some(name) = line.strip_prefix("event: ") {
                events.push((event_id, name.to_owned()));
            }
        }
        events
    }

    /// The data of job `id`'s first server-sent event named `name` (read live, while it runs).
    pub fn first_event(&self, id: &str, name: &str) -> Value {
        use std::io::BufRead;
        let url = format!("{}/v1/videos/{id}/events", self.base);
        let mut response = ureq::get(&url).call().unwrap();
        let reader = std::io::BufReader::new(response.body_mut().as_reader());
        let mut current = String::new();
        for line in reader.lines() {
            let line = line.unwrap();
            if let Some(event) = line.strip_prefix("event: ") {
                current = event.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ") {
                if current == name {
                    return serde_json::from_str(data).unwrap();
                }
            }
        }
        panic!("job {id}'s events ended without `{name}`")
    }

    /// The bytes of a job's final video, as the API serves them.
    pub fn content(&self, id: &str) -> Vec<u8> {
        let url = format!("{}/v1/videos/{id}/content", self.base);
        let mut response = ureq::get(&url).call().unwrap();
        response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap()
    }

    pub fn wait_for(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (_, record) = self.call("GET", &format!("/v1/videos/{id}"), None);
            if done(&record) {
                return record;
            }
            assert!(Instant::now() < deadline, "timed out: {record}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The frame digests of the cluster tests' request ("a long road", 4 steps, 2 stage-1 steps, no
/// enhancer) run by a single `st2v generate` process, start to end, into `out`.
pub fn single_process_frames(frames: usize, out: &Path) -> Vec<String> {
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny");
    let status = Command::new(assert_cmd::cargo::cargo_bin("st2v"))
        .args(["generate", "--quiet", "--models"])
        .arg(&tiny)
        .args(["--prompt", "a long road", "--frames", &frames.to_string()])
        .args([
            "--steps",
            "4",
            "--stage1-steps",
            "2",
            "--no-enhance",
            "--out",
        ])
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success());
    super::framemd5(out)
}

//! What the process-level tests share: model sets with graphs left out, decoded-frame digests,
//! a Redis and an S3-compatible server on loopback ports, and cluster replicas.
#![allow(dead_code)] // each test crate uses its part

pub mod replica;
pub mod server;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A copy of the model set `source` in `dir/set` whose manifest lacks the graphs of `roles`
/// (a broken set, or a stage-2 set when they are all of stage 3).
pub fn set_without(source: &Path, dir: &Path, roles: &[&str]) -> PathBuf {
    let set = dir.join("set");
    std::fs::create_dir(&set).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, set.join(path.file_name().unwrap())).unwrap();
    }
    let manifest_path = set.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let graphs = manifest["graphs"].as_object_mut().unwrap();
    for role in roles {
        graphs.remove(*role);
    }
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    set
}

/// The MD5 of every decoded frame of a video (`ffmpeg -f framemd5`).
pub fn framemd5(path: &Path) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg runs (scripts/setup.sh installs it)");
    assert!(out.status.success(), "ffmpeg decodes {}", path.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect()
}

/// A loopback port nothing listens on (now).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Debian's `redis-server` on a free loopback port, and its URL; `None` when not installed.
pub fn start_redis() -> Option<(Process, String)> {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let process = Process(child);
    let url = format!("redis://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .is_err()
    {
        assert!(Instant::now() < deadline, "redis-server started");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((process, url))
}

/// moto's S3-compatible server (the dev venv's `moto_server`) on a free loopback port, with
/// bucket `bucket` created, and its endpoint URL; `None` when moto is not installed.
pub fn start_s3(bucket: &str) -> Option<(Process, String)> {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if !server.exists() {
        return None;
    }
    let port = free_port();
    let child = Command::new(server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let process = Process(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server started");
        std::thread::sleep(Duration::from_millis(100));
    }
    // moto accepts an unsigned bucket creation.
    ureq::put(&format!("{endpoint}/{bucket}"))
        .send_empty()
        .expect("the bucket is created");
    Some((process, endpoint))
}

/// Starts `command` (an `st2v serve`) with its stderr piped and returns it with the address it
/// prints (`http://127.0.0.1:PORT`); the rest of its stderr is drained in the background.
pub fn spawn_server(mut command: Command) -> (Child, String) {
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .expect("st2v serve starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server prints its address")
            .unwrap();
        if let Some(address) = line.strip_prefix("st2v serve: listening on ") {
            break address.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

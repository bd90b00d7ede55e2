//! `st2v serve` on a loopback port for the server tests: started on a model set and a data
//! directory, killed when dropped, with the HTTP calls the tests make.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The committed random-weight set the server tests run on.
pub fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny")
}

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn start(data: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data, extra, &[])
    }

    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_on(&tiny(), data, extra, env)
    }

    pub fn start_on(models: &Path, data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("st2v"));
        command
            .envs(env.iter().copied())
            .args(["serve", "--listen", "127.0.0.1:0", "--models"])
            .arg(models)
            .arg("--data")
            .arg(data)
            .args(extra);
        let (child, base) = super::spawn_server(command);
        let server = Server { child, base };
        let deadline = Instant::now() + Duration::from_secs(120);
        while server.get("/readyz").0 != 200 {
            assert!(Instant::now() < deadline, "the server got ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut response = Self::agent()
            .get(format!("{}{path}", self.base))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn post(&self, body: Value, key: Option<&str>) -> (u16, Value, Option<String>) {
        let mut request = Self::agent().post(format!("{}/v1/videos", self.base));
        if let Some(key) = key {
            request = request.header("authorization", &format!("Bearer {key}"));
        }
        let mut response = request.send_json(body).unwrap();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.body_mut().read_to_string().unwrap();
        (
            response.status().as_u16(),
            serde_json::from_str(&text).unwrap(),
            retry,
        )
    }

    pub fn delete(&self, id: &str) -> u16 {
        let url = format!("{}/v1/videos/{id}", self.base);
        Self::agent().delete(url).call().unwrap().status().as_u16()
    }

    /// Event names from the job's SSE stream until it ends.
    pub fn events(&self, id: &str) -> Vec<(String, Value)> {
        let url = format!("{}/v1/videos/{id}/events", self.base);
        let response = Self::agent().get(url).call().unwrap();
        let reader = BufReader::new(response.into_body().into_reader());
        let mut events = Vec::new();
        let mut name = String::new();
        for line in reader.lines() {
            let line = line.unwrap();
            if let Some(event) = line.strip_prefix("event: ") {
                name = event.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ") {
                events.push((name.clone(), serde_json::from_str(data).unwrap()));
            }
        }
        events
    }

    /// Downloads a content URL for at most `limit`, into `to`.
    pub fn download(&self, url: &str, to: &Path, limit: Duration) -> u16 {
        let response = Self::agent()
            .get(format!("{}{url}", self.base))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        let mut reader = response.into_body().into_reader();
        let mut bytes = Vec::new();
        let deadline = Instant::now() + limit;
        let mut buffer = [0u8; 8192];
        while Instant::now() < deadline {
            match reader.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            }
        }
        std::fs::write(to, bytes).unwrap();
        status
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

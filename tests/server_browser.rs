//! The page at `/` in a real headless browser (Debian's chromium, driven over the DevTools
//! protocol): a user submits the form, and the preview `<video>` plays frames while the job is
//! still running. Skipped with a message where chromium is not installed
//! (`scripts/setup.sh --dev` installs it).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

/// Starts a process and returns it with the first stderr line containing `marker`.
fn start(mut command: Command, marker: &str) -> (Child, String) {
    let mut child = command.stderr(Stdio::piped()).spawn().expect("starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = loop {
        let line = lines.next().expect("prints its address").unwrap();
        if line.contains(marker) {
            break line;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, line)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct DevTools {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl DevTools {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let message = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::text(message.to_string()))
            .unwrap();
        loop {
            let reply = self.socket.read().unwrap();
            let Ok(text) = reply.to_text() else { continue };
            let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if value["id"] == id {
                return value["result"].clone();
            }
        }
    }

    fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true});
        self.call("Runtime.evaluate", params)["result"]["value"].clone()
    }
}

/// What the page shows and what its preview element did, for a failure message.
const DIAGNOSTICS: &str = "JSON.stringify({status: document.getElementById('status').textContent, \
    log: document.getElementById('log') && document.getElementById('log').textContent.slice(-2000), \
    job: window.job || null, src: document.getElementById('preview').src, \
    ready: document.getElementById('preview').readyState, \
    network: document.getElementById('preview').networkState, \
    error: document.getElementById('preview').error && document.getElementById('preview').error.message})";

#[test]
fn the_page_plays_the_preview_while_the_video_is_generated() {
    if Command::new("chromium").arg("--version").output().is_err() {
        eprintln!("skipped: chromium is not installed (scripts/setup.sh --dev installs it)");
        return;
    }
    let data = TempDir::new().unwrap();
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny");
    let mut serve = Command::new(assert_cmd::cargo::cargo_bin("st2v"));
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--models"])
        .arg(&tiny)
        .arg("--data")
        .arg(data.path());
    let (server, line) = start(serve, "listening on");
    let _server = Killed(server);
    let base = line.rsplit(' ').next().unwrap().to_owned();
    let profile = TempDir::new().unwrap();
    let mut browser = Command::new("chromium");
    browser
        .args([
            "--headless=new",
            "--no-sandbox",
            "--remote-debugging-port=0",
        ])
        // A closed network: no background requests, updates or first-run work to wait on.
        .args([
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .args(["--autoplay-policy=no-user-gesture-required", "--mute-audio"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank");
    let (chromium, line) = start(browser, "DevTools listening on");
    let _chromium = Killed(chromium);
    let devtools_port = line
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(120);
    while agent.get(format!("{base}/readyz")).call().unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "the server got ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let new_page = format!("http://127.0.0.1:{devtools_port}/json/new?{base}/");
    let mut response = agent.put(&new_page).send_empty().unwrap();
    let page: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    let (socket, _) = tungstenite::connect(page["webSocketDebuggerUrl"].as_str().unwrap()).unwrap();
    let mut tools = DevTools { socket, next: 0 };
    while tools.eval("document.readyState") != "complete" {
        std::thread::sleep(Duration::from_millis(100));
    }
    tools.eval(
        "document.getElementById('frames').value = '400'; \
         document.getElementById('steps').value = '10'; \
         document.getElementById('go').click(); 'submitted'",
    );
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if Instant::now() >= deadline {
            let page = tools.eval(DIAGNOSTICS);
            panic!("the preview never played; the page: {page}");
        }
        std::thread::sleep(Duration::from_millis(250));
        let played = tools.eval("document.getElementById('preview').currentTime");
        let Some(played) = played.as_f64().filter(|t| *t > 0.25) else {
            continue;
        };
        let id = tools.eval("window.job && window.job.id");
        let url = format!("{base}/v1/videos/{}", id.as_str().unwrap());
        let text = agent
            .get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let record: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            record["status"], "in_progress",
            "the preview played {played} s while the job still ran"
        );
        break;
    }
}

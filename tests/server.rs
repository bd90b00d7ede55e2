//! `st2v serve` over real HTTP on 127.0.0.1 (ephemeral ports) with the tiny model set: the job
//! lifecycle, SSE order, preview and final videos while and after running, Range, validation
//! errors, limits, 429, cancel, auth, SIGTERM and SIGKILL with a restart.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

mod support;

use support::server::{tiny, Server};

fn frames_in(path: &Path) -> (usize, String) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let frames = text
        .rsplit(',')
        .next()
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    (frames, text)
}

fn fast(frames: usize) -> Value {
    json!({"prompt": "a cat", "frames": frames, "steps": 2, "stage1_steps": 2, "enhance_steps": 2})
}

fn long_job(enhance: bool) -> Value {
    json!({"prompt": "a long road", "frames": 400, "steps": 10, "stage1_steps": 2, "enhance_steps": 2, "enhance": enhance})
}

fn wait_for(server: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, record) = server.get(&format!("/v1/videos/{id}"));
        if done(&record) {
            return record;
        }
        assert!(Instant::now() < deadline, "timed out: {record}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_job_goes_from_queued_to_completed_with_its_events_and_videos() {
    let data = TempDir::new().unwrap();
    let server = Server::start(data.path(), &[]);
    let (status, job, _) = server.post(fast(24), None);
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let events = server.events(&id);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..2], ["queued", "in_progress"], "{names:?}");
    assert_eq!(names.last(), Some(&"completed"));
    let first_preview = names.iter().position(|n| *n == "chunk_ready").unwrap();
    let first_step = names.iter().position(|n| *n == "step").unwrap();
    assert!(first_step < first_preview, "{names:?}");
    let record = wait_for(&server, &id, |r| r["status"] == "completed");
    assert_eq!(record["progress"]["final_frames"], 24);
    let url = format!("{}/v1/videos/{id}/events", server.base);
    let resumed = Server::agent()
        .get(url)
        .header("last-event-id", "3")
        .call()
        .unwrap();
    let text = resumed.into_body().read_to_string().unwrap();
    let first_id = text.lines().find_map(|l| l.strip_prefix("id: ")).unwrap();
    assert_eq!(
        first_id, "4",
        "Last-Event-ID resumes after the last event seen"
    );
    assert_eq!(text.matches("\nevent: ").count(), events.len() - 3);
    assert!(record["timings"]["stage1"].as_f64().unwrap() > 0.0);
    assert!(record["time_to_first_frame_s"].as_f64().unwrap() > 0.0);

    let final_mp4 = data.path().join("final.mp4");
    assert_eq!(
        server.download(
            &format!("/v1/videos/{id}/content?variant=final"),
            &final_mp4,
            Duration::from_secs(30)
        ),
        200
    );
    assert_eq!(frames_in(&final_mp4).1, "80,80,24");
    let preview = data.path().join("preview.mp4");
    server.download(
        &format!("/v1/videos/{id}/content"),
        &preview,
        Duration::from_secs(1),
    );
    let url = format!("{}/v1/videos/{id}/content?variant=preview", server.base);
    let mut ranged = Server::agent()
        .get(url)
        .header("range", "bytes=0-99")
        .call()
        .unwrap();
    assert_eq!(ranged.status().as_u16(), 206);
    assert!(ranged
        .headers()
        .get("content-range")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("bytes 0-99/"));
    assert_eq!(ranged.body_mut().read_to_vec().unwrap().len(), 100);

    let (_, list) = server.get("/v1/videos");
    assert_eq!(list["data"][0]["id"], id.as_str());
    let (_, metrics) = server.get("/metrics");
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains("st2v_jobs_finished_total{state=\"completed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("st2v_step_seconds_bucket{stage=\"stage2\""));
    assert!(
        metrics.contains("st2v_chunk_seconds_count{stage=\"stage2\"} 1"),
        "{metrics}"
    );
    let (_, models) = server.get("/v1/models");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(tiny().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        models["data"][0]["graphs"].as_array().unwrap().len(),
        manifest["graphs"].as_object().unwrap().len(),
        "every graph of the set is listed"
    );
    let (status, page) = server.get("/");
    assert!(status == 200 && page.as_str().unwrap().contains("<video id=\"preview\""));
    let (status, openapi) = server.get("/openapi.json");
    assert_eq!(status, 200);
    for path in [
        "/v1/videos",
        "/v1/videos/{id}/content",
        "/v1/videos/{id}/prompt",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} documented");
    }
    let schemas = &openapi["components"]["schemas"];
    for field in ["prompt", "prompts", "frames", "guidance", "enhance_steps"] {
        assert!(
            schemas["CreateVideo"]["properties"][field].is_object(),
            "{field}: {schemas}"
        );
    }
    let states = schemas["JobStatus"].to_string();
    assert!(
        states.contains("in_progress") && states.contains("cancelled"),
        "{states}"
    );
}

#[test]
fn bad_requests_name_the_field_and_the_limit() {
    let data = TempDir::new().unwrap();
    let server = Server::start(data.path(), &["--max-steps", "20"]);
    let cases = [
        (json!({"prompt": "a cat", "frames": 8}), "frames"),
        (json!({"prompt": " "}), "prompt"),
        (json!({"prompt": "a cat", "frame": 24}), "frame"),
        (
            json!({"prompt": "a cat", "guidance": {"mode": "joint", "scale": -1.0}}),
            "guidance_scale",
        ),
        (
            json!({"prompt": "a cat", "guidance": {"mode": "joint", "text_scale": 2.0}}),
            "text_scale",
        ),
        (json!({"prompt": "a cat", "fps": 0}), "fps"),
        (json!({"prompt": 7}), "prompt"),
        (json!({"prompt": "a cat", "format": "gif"}), "format"),
        (
            json!({"prompt": "a cat", "enhance_batch": 0}),
            "enhance_batch",
        ),
        (
            json!({"prompt": "a cat", "enhance_batch": 99}),
            "enhance_batch",
        ),
    ];
    for (body, field) in cases {
        let (status, error, _) = server.post(body.clone(), None);
        assert_eq!(status, 422, "{body}: {error}");
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
    }
    let (status, error, _) = server.post(json!({"prompt": "a cat", "steps": 50}), None);
    assert_eq!(status, 422);
    assert_eq!(error["error"]["type"], "limit_exceeded");
    assert_eq!(
        (
            error["error"]["limit"].as_f64(),
            error["error"]["value"].as_f64()
        ),
        (Some(20.0), Some(50.0))
    );
    let (_, list) = server.get("/v1/videos");
    assert!(
        list["data"].as_array().unwrap().is_empty(),
        "nothing was queued"
    );
}

#[test]
fn a_full_queue_answers_429_and_cancel_keeps_the_finished_frames() {
    let data = TempDir::new().unwrap();
    let server = Server::start(data.path(), &["--queue", "1"]);
    let (_, running, _) = server.post(long_job(false), None);
    let running = running["id"].as_str().unwrap().to_owned();
    wait_for(&server, &running, |r| r["status"] == "in_progress");
    let (status, queued, _) = server.post(fast(24), None);
    assert_eq!((status, queued["status"].as_str()), (202, Some("queued")));
    assert_eq!(queued["queue_position"], 1);
    let (status, error, retry) = server.post(fast(24), None);
    assert_eq!(status, 429, "{error}");
    assert_eq!(error["error"]["type"], "queue_full");
    assert!(retry.is_some(), "Retry-After");

    // The preview plays while the job runs: a partial download holds whole frames.
    let growing = data.path().join("growing.mp4");
    wait_for(&server, &running, |r| {
        r["progress"]["preview_frames"].as_u64() >= Some(24)
    });
    let url = format!("/v1/videos/{running}/content?variant=preview");
    assert_eq!(server.download(&url, &growing, Duration::from_secs(2)), 200);
    let (frames, _) = frames_in(&growing);
    assert!(
        frames >= 8,
        "{frames} frames playable from a video still being written"
    );

    assert_eq!(server.delete(queued["id"].as_str().unwrap()), 202);
    assert_eq!(server.delete(&running), 202);
    let record = wait_for(&server, &running, |r| r["status"] == "cancelled");
    let kept = record["progress"]["final_frames"].as_u64().unwrap() as usize;
    let video = data.path().join("cancelled.mp4");
    server.download(
        &format!("/v1/videos/{running}/content?variant=final"),
        &video,
        Duration::from_secs(10),
    );
    assert_eq!(
        frames_in(&video).0,
        kept,
        "every finished frame stays downloadable"
    );
    assert!(kept >= 24);
}

#[test]
fn an_api_key_is_required_when_set() {
    let data = TempDir::new().unwrap();
    let server = Server::start(data.path(), &["--api-key", "s3cret"]);
    assert_eq!(server.post(fast(16), None).0, 401);
    assert_eq!(server.post(fast(16), Some("wrong")).0, 401);
    assert_eq!(server.post(fast(16), Some("s3cret")).0, 202);
    assert_eq!(server.get("/healthz").0, 200, "health needs no key");
}

#[test]
fn sigterm_exits_cleanly_and_a_killed_server_resumes_its_jobs_after_a_restart() {
    let data = TempDir::new().unwrap();
    let mut server = Server::start(data.path(), &["--grace-seconds", "0"]);
    let (_, job, _) = server.post(long_job(false), None);
    let id = job["id"].as_str().unwrap().to_owned();
    wait_for(&server, &id, |r| {
        r["progress"]["final_frames"].as_u64() >= Some(24)
    });
    server.signal("-TERM");
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(data.path().join(&id).join("job.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["status"], "cancelled");

    // Killed mid-job: resumed after the restart, to the video an uninterrupted job makes. A
    // job whose checkpoints are gone fails, keeping its frames.
    let body = json!({"prompt": "a long road", "frames": 96, "steps": 4, "stage1_steps": 2, "enhance": false});
    let server = Server::start(data.path(), &[]);
    let (_, second, _) = server.post(body.clone(), None);
    let second = second["id"].as_str().unwrap().to_owned();
    wait_for(&server, &second, |r| {
        r["progress"]["final_frames"].as_u64() >= Some(32)
    });
    server.signal("-KILL");
    drop(server);
    let server = Server::start(data.path(), &[]);
    let (_, first) = server.get(&format!("/v1/videos/{id}"));
    assert_eq!(
        first["status"], "cancelled",
        "a cancelled job stays cancelled"
    );
    let resumed = wait_for(&server, &second, |r| r["status"] == "completed");
    assert_eq!(resumed["progress"]["final_frames"], 96, "{resumed}");
    let events = server.events(&second);
    assert!(
        events
            .iter()
            .any(|(name, data)| name == "queued" && data["resumed"] == true),
        "{events:?}"
    );
    let (_, third, _) = server.post(body, None);
    let third = third["id"].as_str().unwrap().to_owned();
    wait_for(&server, &third, |r| r["status"] == "completed");
    let md5 = |id: &str| {
        let video = data.path().join(format!("{id}-download.mp4"));
        server.download(
            &format!("/v1/videos/{id}/content?variant=final"),
            &video,
            Duration::from_secs(10),
        );
        support::framemd5(&video)
    };
    let resumed_frames = md5(&second);
    assert_eq!(resumed_frames.len(), 96);
    assert_eq!(resumed_frames, md5(&third), "the resumed job's frames");

    let (_, fourth, _) = server.post(long_job(false), None);
    let fourth = fourth["id"].as_str().unwrap().to_owned();
    wait_for(&server, &fourth, |r| {
        r["progress"]["final_frames"].as_u64() >= Some(24)
    });
    server.signal("-KILL");
    drop(server);
    std::fs::remove_dir_all(data.path().join(&fourth).join("resume")).unwrap();
    let server = Server::start(data.path(), &[]);
    let (_, killed) = server.get(&format!("/v1/videos/{fourth}"));
    assert_eq!(killed["status"], "failed", "{killed}");
    assert_eq!(killed["error"]["type"], "server_stopped");
    let video = data.path().join("killed.mp4");
    server.download(
        &format!("/v1/videos/{fourth}/content?variant=final"),
        &video,
        Duration::from_secs(10),
    );
    assert!(
        frames_in(&video).0 >= 16,
        "the killed job's frames play up to its last fragment"
    );
}

#[test]
fn steering_changes_the_prompt_of_the_chunks_not_started() {
    let data = TempDir::new().unwrap();
    let server = Server::start(data.path(), &[]);
    let body = json!({"prompts": [{"from_frame": 0, "prompt": "a cat"}, {"from_frame": 40, "prompt": "a dog"}],
                      "frames": 400, "steps": 10, "stage1_steps": 2, "enhance": false});
    let (status, job, _) = server.post(body, None);
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    wait_for(&server, &id, |r| {
        r["progress"]["preview_frames"].as_u64() >= Some(32)
    });
    let url = format!("{}/v1/videos/{id}/prompt", server.base);
    let mut response = Server::agent()
        .post(&url)
        .send_json(json!({"prompt": "a red bird flying"}))
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    let from = answer["from_frame"].as_u64().unwrap();
    assert!(
        from >= 32 && (from - 16).is_multiple_of(8),
        "a chunk not started yet: {answer}"
    );
    assert_eq!(server.delete(&id), 202);
    let events = server.events(&id);
    let changed = events
        .iter()
        .find(|(n, _)| n == "prompt_changed")
        .expect("a prompt_changed event");
    assert_eq!(changed.1["from_frame"], from);
    let mut late = Server::agent()
        .post(&url)
        .send_json(json!({"prompt": "too late"}))
        .unwrap();
    assert_eq!(
        late.status().as_u16(),
        409,
        "{}",
        late.body_mut().read_to_string().unwrap()
    );
}

/// The load script (benches/load.py) runs clean for a few seconds against a real server.
#[test]
fn the_load_script_runs_clean() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: no python3");
        return;
    }
    let data = TempDir::new().unwrap();
    let server = Server::start(data.path(), &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/load.py");
    let report = data.path().join("load.json");
    let status = Command::new("python3")
        .arg(&script)
        .args(["--url", &server.base, "--clients", "2", "--seconds", "3"])
        .args(["--frames", "16", "--steps", "1", "--json"])
        .arg(&report)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "no errors");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(report["completed"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["latency_s"]["p50"].as_f64().unwrap() > 0.0);
    assert!(report["time_to_first_frame_s"]["p50"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_panicking_job_fails_alone_and_a_job_over_the_time_limit_keeps_its_frames() {
    let data = TempDir::new().unwrap();
    let env = [("ST2V_FAILPOINT", "panic:boom")];
    // The limit leaves a 16-frame job room on a loaded machine; the 400-frame job exceeds it.
    let server = Server::start_with_env(data.path(), &["--max-job-seconds", "12"], &env);
    let (_, job, _) = server.post(
        json!({"prompt": "boom", "frames": 16, "steps": 1, "stage1_steps": 1}),
        None,
    );
    let panicked = job["id"].as_str().unwrap().to_owned();
    let record = wait_for(&server, &panicked, |r| r["status"] == "failed");
    assert_eq!(record["error"]["type"], "internal_error", "{record}");
    let (_, job, _) = server.post(fast(16), None);
    let next = job["id"].as_str().unwrap().to_owned();
    wait_for(&server, &next, |r| r["status"] == "completed");

    let (_, job, _) = server.post(long_job(false), None);
    let long = job["id"].as_str().unwrap().to_owned();
    let record = wait_for(&server, &long, |r| r["status"] == "failed");
    assert_eq!(record["error"]["type"], "timeout", "{record}");
    let kept = record["progress"]["final_frames"].as_u64().unwrap() as usize;
    let video = data.path().join("timed-out.mp4");
    server.download(
        &format!("/v1/videos/{long}/content?variant=final"),
        &video,
        Duration::from_secs(10),
    );
    assert_eq!(
        frames_in(&video).0,
        kept,
        "the frames finished before the limit are kept"
    );
    assert!(kept >= 16);
}

#[test]
fn a_stage2_set_serves_stage_2_videos_and_refuses_enhance() {
    let data = TempDir::new().unwrap();
    let sets = TempDir::new().unwrap();
    // models/toy without its enhancer graphs: a stage-2 set (a toy set exported without the
    // enhancer runs, a preview-only deployment).
    let toy = support::set_without(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("models/toy"),
        sets.path(),
        &streamingt2v::models::loader::ENHANCER_ROLES.map(|role| role.name()),
    );
    let server = Server::start_on(&toy, data.path(), &[], &[]);
    let (status, error, _) = server.post(
        json!({"prompt": "a red circle moving left on a blue background", "enhance": true}),
        None,
    );
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["field"], "enhance", "{error}");
    let body = json!({"prompt": "a red circle moving left on a blue background", "frames": 24, "steps": 2, "stage1_steps": 2});
    let (status, job, _) = server.post(body, None);
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["enhance"], false, "{job}");
    let id = job["id"].as_str().unwrap();
    let record = wait_for(&server, id, |r| {
        r["status"] != "queued" && r["status"] != "in_progress"
    });
    assert_eq!(record["status"], "completed", "{record}");
}

//! Resumable jobs through the real `st2v` binary on the tiny set: a job killed (SIGKILL) in
//! stage 1, in the middle of stage 2, between chunks or in the middle of stage 3, or stopped
//! by Ctrl-C, continues with `st2v resume` to outputs whose frames (ffmpeg framemd5) equal an
//! uninterrupted run's. Finished jobs are left alone; foreign, corrupt and wrong-version files
//! and GIF outputs are refused with clear errors.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use streamingt2v::engine::{JobDir, JobStatus};
use tempfile::TempDir;

mod support;

/// 56 frames: stage 1, five stage-2 chunks, three enhancer chunks.
const JOB: [&str; 10] = [
    "--prompt",
    "a cat",
    "--frames",
    "56",
    "--steps",
    "4",
    "--stage1-steps",
    "4",
    "--enhance-steps",
    "4",
];

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny")
}

fn s(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn st2v(command: &str) -> Command {
    let mut cmd = Command::cargo_bin("st2v").expect("the st2v binary is built");
    cmd.arg(command).args(["--models", s(&tiny()), "--quiet"]);
    cmd
}

/// The MD5 of every decoded frame (`ffmpeg -f framemd5`), or of the PNG files of a directory.
fn framemd5(path: &Path) -> Vec<String> {
    if path.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        return names
            .iter()
            .map(|p| format!("{:x}", md5_of(&std::fs::read(p).unwrap())))
            .collect();
    }
    support::framemd5(path)
}

fn md5_of(bytes: &[u8]) -> u128 {
    // The PNG files are compared whole; any stable digest does.
    use std::hash::{Hash, Hasher};
    let mut a = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    (bytes.len(), bytes).hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// Starts `st2v generate JOB --job-dir DIR` and kills it (SIGKILL) once `at` holds for its
/// events so far.
fn kill_when(out: &Path, dir: &Path, extra: &[&str], at: impl Fn(&str) -> bool) {
    let events = dir.with_extension("events");
    let mut child: Child = StdCommand::new(assert_cmd::cargo::cargo_bin("st2v"))
        .args(["generate", "--models", s(&tiny()), "--quiet"])
        .args(JOB)
        .args(extra)
        .args([
            "--out",
            s(out),
            "--job-dir",
            s(dir),
            "--checkpoint-interval",
            "0",
        ])
        .args(["--events", s(&events)])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        if at(&text) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before the kill point"
        );
        assert!(Instant::now() < deadline, "the kill point came");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn resume(dir: &Path) {
    StdCommand::new(assert_cmd::cargo::cargo_bin("st2v"))
        .args(["resume", "--quiet", s(dir)])
        .status()
        .unwrap()
        .success()
        .then_some(())
        .expect("st2v resume succeeds");
}

fn reference(tmp: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = tmp.join(name);
    st2v("generate")
        .args(JOB)
        .args(extra)
        .args(["--out", s(&out)])
        .assert()
        .success();
    out
}

/// A name and when to kill, given the events so far.
type KillPoint = (&'static str, fn(&str) -> bool);

#[test]
fn killed_jobs_resume_to_the_frames_of_an_uninterrupted_run() {
    let tmp = TempDir::new().unwrap();
    let preview = ["--preview-out"];
    let whole = reference(tmp.path(), "whole.mp4", &[]);
    let whole_preview = tmp.path().join("whole-preview.mp4");
    reference(tmp.path(), "whole2.mp4", &[preview[0], s(&whole_preview)]);
    let expected = framemd5(&whole);
    assert_eq!(expected.len(), 56);
    let kill_points: [KillPoint; 4] = [
        ("stage1", |t| {
            t.contains(r#""stage":"initialization","chunk":0,"step":2"#)
        }),
        ("mid-stage2", |t| {
            t.contains(r#""stage":"streaming","chunk":2,"step":2"#)
        }),
        ("between-chunks", |t| {
            t.contains(r#""chunk_done","stage":"streaming","chunk":3"#)
        }),
        ("mid-stage3", |t| {
            let after = t
                .split(r#""chunk_done","stage":"streaming","chunk":5"#)
                .nth(1);
            after.is_some_and(|rest| rest.matches(r#""stage":"refinement""#).count() >= 4)
        }),
    ];
    for (name, at) in kill_points {
        let out = tmp.path().join(format!("{name}.mp4"));
        let dir = tmp.path().join(format!("{name}.job"));
        let preview_out = tmp.path().join(format!("{name}-preview.mp4"));
        kill_when(&out, &dir, &[preview[0], s(&preview_out)], at);
        let job = JobDir::open(&dir).unwrap();
        assert_eq!(job.record().status, JobStatus::Running, "{name}");
        let state = job.checkpoint().unwrap();
        match name {
            "stage1" => assert!(state.is_none(), "no checkpoint before stage 2"),
            "mid-stage3" => {
                let state = state.expect("a checkpoint");
                assert_eq!(state.next_chunk, 6, "{name}: stage 2 was done");
                assert!(
                    state.enhancer.is_some(),
                    "{name}: with the enhancer's window"
                );
            }
            _ => assert!(state.is_some(), "{name}: a checkpoint"),
        }
        resume(&dir);
        assert_eq!(framemd5(&out), expected, "{name}: the video");
        assert_eq!(
            framemd5(&preview_out),
            framemd5(&whole_preview),
            "{name}: the preview"
        );
        let job = JobDir::open(&dir).unwrap();
        assert_eq!(job.record().status, JobStatus::Finished);
        assert_eq!(job.record().frames, Some(56));
    }
}

#[test]
fn a_job_stopped_by_ctrl_c_or_killed_twice_resumes_and_a_finished_one_is_left_alone() {
    let tmp = TempDir::new().unwrap();
    let whole = reference(tmp.path(), "whole", &["--no-enhance"]);
    let out = tmp.path().join("frames");
    let dir = tmp.path().join("png.job");
    let at = |t: &str| t.contains(r#""chunk_done","stage":"streaming","chunk":2"#);
    kill_when(&out, &dir, &["--no-enhance"], at);
    // Killed again while resuming, then stopped by SIGINT on the next resume.
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("st2v"))
        .args(["resume", "--quiet", s(&dir)])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = StdCommand::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    if !status.success() {
        let job = JobDir::open(&dir).unwrap();
        assert_eq!(job.record().status, JobStatus::Stopped);
    }
    resume(&dir);
    assert_eq!(framemd5(&out), framemd5(&whole));
    st2v("resume")
        .arg(s(&dir))
        .assert()
        .success()
        .stderr(predicate::str::contains("already finished"));
}

#[test]
fn bad_job_files_and_gif_outputs_are_refused() {
    let tmp = TempDir::new().unwrap();
    let gif = tmp.path().join("a.gif");
    st2v("generate")
        .args(JOB)
        .args(["--out", s(&gif), "--job-dir", s(&tmp.path().join("g.job"))])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--out").and(predicate::str::contains("GIF")));
    assert!(!tmp.path().join("g.job").exists(), "nothing created");

    let dir = tmp.path().join("j.job");
    let out = tmp.path().join("j.mp4");
    st2v("generate")
        .args(JOB)
        .args(["--no-enhance", "--out", s(&out), "--job-dir", s(&dir)])
        .assert()
        .success();
    st2v("generate")
        .args(JOB)
        .args(["--out", s(&tmp.path().join("k.mp4")), "--job-dir", s(&dir)])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already holds a job"));

    let checkpoint = dir.join("checkpoint.st2v");
    let mut bytes = std::fs::read(&checkpoint).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&checkpoint, &bytes).unwrap();
    let job = dir.join("job.json");
    let record = std::fs::read_to_string(&job).unwrap();
    std::fs::write(&job, record.replace("\"finished\"", "\"stopped\"")).unwrap();
    st2v("resume")
        .arg(s(&dir))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("corrupt").and(predicate::str::contains("checksum")));
    std::fs::write(
        &checkpoint,
        b"PK\x03\x04 not a checkpoint at all, a zip perhaps..........",
    )
    .unwrap();
    st2v("resume")
        .arg(s(&dir))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a st2v job file"));
    std::fs::write(&job, record.replace("\"version\": 1", "\"version\": 9")).unwrap();
    st2v("resume")
        .arg(s(&dir))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("version 9"));
    std::fs::write(&job, "{\"format\": \"something else\"}").unwrap();
    st2v("resume")
        .arg(s(&dir))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a st2v job file"));
}

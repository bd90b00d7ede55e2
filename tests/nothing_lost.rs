//! Nothing lost, ever: the real `st2v` binary on the tiny set never writes over a file it was
//! not asked to replace, and every way a run ends (a signal, a kill, a full disk) keeps the
//! finished frames in a playable file. Needs ONNX Runtime and `ffprobe`, like generate_cli.

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use tempfile::TempDir;

const FAST: [&str; 8] = [
    "--steps",
    "2",
    "--stage1-steps",
    "2",
    "--enhance-steps",
    "2",
    "--frames",
    "16",
];

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny")
}

fn s(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// `st2v <command> --models models/tiny --quiet <args...>`.
fn st2v(command: &str, args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("st2v").expect("the st2v binary is built");
    cmd.arg(command)
        .args(["--models", s(&tiny()), "--quiet"])
        .args(args);
    cmd
}

/// Frames ffprobe decodes from a video (0 when it cannot read it).
fn decoded_frames(path: &Path) -> usize {
    let out = StdCommand::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A 16-frame no-enhance video made by st2v itself.
fn make_video(path: &Path) {
    st2v(
        "generate",
        &["--prompt", "a cat", "--no-enhance", "--out", s(path)],
    )
    .args(FAST)
    .assert()
    .success();
}

#[test]
fn no_file_is_written_over_without_force() {
    let dir = TempDir::new().unwrap();
    let video = dir.path().join("a.mp4");
    make_video(&video);
    let original = std::fs::read(&video).unwrap();
    let other = dir.path().join("b.mp4");
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, b"the user's notes\n").unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    std::fs::write(frames.join("frame_00099.png"), b"stale").unwrap();
    let partial = dir.path().join("c.partial.mp4");
    std::fs::write(&partial, b"a killed run's frames").unwrap();

    let (c_mp4, in_models) = (dir.path().join("c.mp4"), tiny().join("x.mp4"));
    let extend_onto_input = [
        "--input",
        s(&video),
        "--prompt",
        "a cat",
        "--out",
        s(&video),
    ];
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("extend", extend_onto_input.to_vec(), "--force"),
        (
            "extend",
            [&extend_onto_input[..], &["--force"]].concat(),
            "--input",
        ),
        ("enhance", extend_onto_input.to_vec(), "--force"),
        (
            "generate",
            vec!["--prompt", "a cat", "--out", s(&video)],
            "exists",
        ),
        (
            "generate",
            vec![
                "--prompt",
                "a cat",
                "--out",
                s(&other),
                "--preview-out",
                s(&other),
            ],
            "--preview-out",
        ),
        (
            "generate",
            vec![
                "--prompt",
                "a cat",
                "--out",
                s(&other),
                "--events",
                s(&events),
            ],
            "--events",
        ),
        (
            "generate",
            vec![
                "--prompt",
                "a cat",
                "--out",
                s(&other),
                "--events",
                s(&other),
                "--force",
            ],
            "--out",
        ),
        (
            "generate",
            vec!["--prompt", "a cat", "--out", s(&frames)],
            "frame_00099.png",
        ),
        (
            "generate",
            vec!["--prompt", "a cat", "--out", s(&c_mp4)],
            "c.partial.mp4",
        ),
        (
            "generate",
            vec!["--prompt", "a cat", "--out", s(&in_models), "--force"],
            "outside the model set",
        ),
    ];
    for (command, args, needle) in cases {
        let fast: &[&str] = match command {
            "generate" => &FAST,
            "extend" => &FAST[..2],
            _ => &FAST[4..6],
        };
        let assert = st2v(command, &args).args(fast).assert().code(2);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(stderr.contains(needle), "{command} {args:?}: {stderr}");
    }
    assert_eq!(
        std::fs::read(&video).unwrap(),
        original,
        "the input is intact"
    );
    assert_eq!(std::fs::read(&events).unwrap(), b"the user's notes\n");
    assert!(!other.exists());
    assert!(frames.join("frame_00099.png").exists());
    assert_eq!(std::fs::read(&partial).unwrap(), b"a killed run's frames");
    assert!(!in_models.exists());

    // Asked to replace: the video and the stale PNG frames are replaced.
    st2v(
        "generate",
        &["--prompt", "a dog", "--no-enhance", "--force"],
    )
    .args(FAST)
    .args(["--out", s(&video)])
    .assert()
    .success();
    assert_ne!(std::fs::read(&video).unwrap(), original);
    assert!(
        !dir.path().join("a.partial.mp4").exists(),
        "renamed into place"
    );
    st2v(
        "generate",
        &["--prompt", "a dog", "--no-enhance", "--force"],
    )
    .args(FAST)
    .args(["--out", s(&frames)])
    .assert()
    .success();
    assert!(
        !frames.join("frame_00099.png").exists(),
        "no stale frame left"
    );
    assert!(frames.join("frame_00015.png").exists());
}

#[test]
fn bad_values_are_refused_before_any_compute() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("x.mp4");
    let doubles = dir.path().join("noise.npy");
    ndarray_npy::write_npy(&doubles, &ndarray::Array5::<f64>::zeros((1, 4, 16, 8, 8))).unwrap();
    let schedule = dir.path().join("schedule.json");
    std::fs::write(&schedule, r#"[{"from_frame": 0, "prompt": "a dog"}]"#).unwrap();
    let not_json = dir.path().join("schedule.txt");
    std::fs::write(&not_json, "from frame 8: a dog").unwrap();
    let cases = [
        (
            "--prompt-schedule",
            s(&schedule),
            "--prompt-schedule: expected entry 0",
        ),
        ("--prompt-schedule", s(&not_json), "a JSON list"),
        ("--guidance-scale", "NaN", "--guidance-scale"),
        ("--guidance-scale", "inf", "--guidance-scale"),
        ("--threads", "0", "--threads"),
        ("--threads", "100000", "this machine's cores"),
        ("--frames", "1000000", "at most 100000"),
        ("--init-noise", s(&doubles), "dtype <f8"),
    ];
    for (flag, value, needle) in cases {
        st2v("generate", &["--prompt", "a cat", "--out", s(&out)])
            .args(&FAST[..6])
            .args([flag, value])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(needle));
    }
    assert!(!out.exists());
}

/// Starts a long no-enhance `generate`, waits until `frames` frames were written, sends
/// `signal` and returns the exit status (None when killed) and stderr.
fn signal_generate(signal: &str, out: &Path, frames: usize) -> (Option<i32>, String) {
    let events = out.with_extension("events.jsonl");
    let child = StdCommand::new(assert_cmd::cargo::cargo_bin("st2v"))
        .args([
            "generate",
            "--models",
            s(&tiny()),
            "--quiet",
            "--no-enhance",
        ])
        .args([
            "--prompt",
            "a long road",
            "--frames",
            "400",
            "--steps",
            "10",
        ])
        .args([
            "--stage1-steps",
            "2",
            "--out",
            s(out),
            "--events",
            s(&events),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("st2v starts");
    let marker = format!(r#""total":{frames}}}"#);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !std::fs::read_to_string(&events)
        .unwrap_or_default()
        .contains(&marker)
    {
        assert!(
            Instant::now() < deadline,
            "{frames} frames not written in time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    let sent = StdCommand::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn sigterm_and_sighup_keep_the_finished_frames_and_say_so() {
    for (signal, status, name) in [("-TERM", 143, "SIGTERM"), ("-HUP", 129, "SIGHUP")] {
        let dir = TempDir::new().unwrap();
        let out = dir.path().join("long.mp4");
        let (code, stderr) = signal_generate(signal, &out, 24);
        assert_eq!(code, Some(status), "{stderr}");
        assert!(
            stderr.contains(&format!("stopped by {name}"))
                && stderr.contains("finished frames were written"),
            "{stderr}"
        );
        let frames = decoded_frames(&out);
        assert!(
            (24..400).contains(&frames),
            "{signal}: {frames} frames kept"
        );
        assert!(!dir.path().join("long.partial.mp4").exists());
    }
}

#[test]
fn a_killed_run_leaves_a_playable_partial_file() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("long.mp4");
    let (code, stderr) = signal_generate("-KILL", &out, 32);
    assert_eq!(code, None, "killed: {stderr}");
    let partial = dir.path().join("long.partial.mp4");
    let frames = decoded_frames(&partial);
    assert!(
        frames >= 16,
        "{frames} frames play from the fragments written before the kill"
    );
    assert!(!out.exists(), "the unfinished file keeps its partial name");
}

/// Unmounts on drop, also when an assertion fails.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = StdCommand::new("umount").arg(&self.0).status();
    }
}

/// Mounts a tiny tmpfs (root only) so the output fills the disk mid-run.
#[test]
fn a_full_disk_is_a_failure_that_keeps_what_was_written() {
    let dir = TempDir::new().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = StdCommand::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48k", "tmpfs", s(&disk)])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let _mount = Mount(disk.clone());
    let out = disk.join("long.mp4");
    let assert = st2v("generate", &["--prompt", "a long road", "--no-enhance"])
        .args(["--frames", "400", "--steps", "2", "--stage1-steps", "2"])
        .args(["--out", s(&out)])
        .assert();
    let output = assert.get_output();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a failure, not bad usage: {stderr}"
    );
    assert!(stderr.contains("No space left"), "{stderr}");
    assert!(
        stderr.contains("finished frames were written to"),
        "the message says what was kept: {stderr}"
    );
    let frames = decoded_frames(&out);
    assert!(frames >= 8, "{frames} frames kept on the full disk");
}

/// A test-pattern video made by the ffmpeg command line, optionally with rotation metadata.
fn ffmpeg_video(path: &Path, size: &str, rotate: Option<u32>) {
    let plain = path.with_extension("plain.mp4");
    let status = StdCommand::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi"])
        .args(["-i", &format!("testsrc=size={size}:rate=8")])
        .args(["-frames:v", "16", "-pix_fmt", "yuv420p", s(&plain)])
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let rotation = format!("rotate={}", rotate.unwrap_or(0));
    let status = StdCommand::new("ffmpeg")
        .args(["-v", "error", "-y", "-i", s(&plain), "-c", "copy"])
        .args(["-metadata:s:v:0", &rotation, s(path)])
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
}

#[test]
fn unusual_inputs_are_fitted_or_refused_never_distorted() {
    let dir = TempDir::new().unwrap();
    let wide = dir.path().join("wide.mp4");
    ffmpeg_video(&wide, "64x48", None);
    let rotated = dir.path().join("rotated.mp4");
    ffmpeg_video(&rotated, "64x64", Some(90));
    let out = dir.path().join("out.mp4");

    st2v(
        "extend",
        &["--input", s(&wide), "--prompt", "a cat", "--out", s(&out)],
    )
    .args(&FAST[..2])
    .assert()
    .code(2)
    .stderr(predicate::str::contains("aspect ratio"))
    .stderr(predicate::str::contains("64x48"));
    st2v(
        "enhance",
        &[
            "--input",
            s(&rotated),
            "--prompt",
            "a cat",
            "--out",
            s(&out),
        ],
    )
    .assert()
    .code(2)
    .stderr(predicate::str::contains("rotation metadata (90 degrees)"));
    assert!(!out.exists());

    // The enhancer fits a 4:3 video whole into its 128x80 frame: 106x80 of content.
    st2v(
        "enhance",
        &["--input", s(&wide), "--prompt", "a cat", "--out", s(&out)],
    )
    .args(["--enhance-steps", "1"])
    .assert()
    .success();
    let probe = StdCommand::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "106,80");
    assert_eq!(decoded_frames(&out), 16);
}

#[test]
fn a_piped_stderr_gets_plain_text_and_one_fallback_line() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("x.mp4");
    let assert = st2v(
        "generate",
        &["--prompt", "a cat", "--no-enhance", "--ep", "cuda,cpu"],
    )
    .args(FAST)
    .args(["--out", s(&out)])
    .assert()
    .success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        !stderr.contains('\u{1b}'),
        "no terminal colours: {stderr:?}"
    );
    assert!(!stderr.contains("libx264"), "no FFmpeg log lines: {stderr}");
    assert_eq!(
        stderr.matches("falling back to cpu").count(),
        1,
        "one line for the fallback, not one per graph: {stderr}"
    );
}

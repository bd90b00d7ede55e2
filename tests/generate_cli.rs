//! End to end on the embedded tiny model set (`models/tiny`, made by `export/`): the built
//! `st2v` binary generates, extends and enhances real files, and rejects bad input with a
//! clear message and a non-zero status. Step counts are cut (`--steps 2 ...`) to stay fast.
//!
//! Needs ONNX Runtime (found as `st2v` finds it; `scripts/setup.sh` provides it) and `ffprobe`.

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use tempfile::TempDir;

mod support;

const FAST: [&str; 6] = [
    "--steps",
    "2",
    "--stage1-steps",
    "2",
    "--enhance-steps",
    "2",
];

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny")
}

fn st2v() -> Command {
    Command::cargo_bin("st2v").expect("the st2v binary is built")
}

/// `st2v <command> --models models/tiny --quiet <args...>`.
fn run(command: &str, args: &[&str]) -> Command {
    let mut cmd = st2v();
    cmd.arg(command)
        .arg("--models")
        .arg(tiny())
        .arg("--quiet")
        .args(args);
    cmd
}

/// (frames, width, height) of a video, decoded by ffprobe.
fn probe(path: &Path) -> (usize, usize, usize) {
    let out = StdCommand::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<usize> = text
        .trim()
        .split(',')
        .map(|f| f.parse().expect("a number"))
        .collect();
    (fields[2], fields[0], fields[1])
}

/// The sorted names in a directory.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

#[test]
fn generates_a_48_frame_mp4_with_preview() {
    let dir = TempDir::new().unwrap();
    let (out, preview) = (dir.path().join("cat.mp4"), dir.path().join("preview.mp4"));
    let latents = dir.path().join("latents");
    run(
        "generate",
        &["--prompt", "a cat running on the street", "--frames", "48"],
    )
    .args(FAST)
    .args(["--out", path_str(&out), "--preview-out", path_str(&preview)])
    .args(["--save-latents", path_str(&latents)])
    .assert()
    .success()
    .stderr(predicate::str::contains("wrote 48 frames"));
    assert_eq!(
        probe(&out),
        (48, 80, 80),
        "enhanced content size of the tiny set"
    );
    assert_eq!(
        probe(&preview),
        (48, 64, 64),
        "stage-2 size of the tiny set"
    );
    let mut saved: Vec<String> = std::fs::read_dir(&latents)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    saved.sort();
    let expected = [
        "stage1_chunk000",
        "stage2_chunk001",
        "stage2_chunk002",
        "stage2_chunk003",
        "stage2_chunk004",
    ];
    assert_eq!(saved, expected.map(|s| format!("{s}.npy")));
}

/// Also checks that an over-long prompt is truncated with a warning, not rejected.
#[test]
fn same_seed_gives_identical_frames() {
    let dir = TempDir::new().unwrap();
    let prompt = "waves at dusk over a very long beach with many details ".repeat(10);
    let write = |name: &str| {
        let out = dir.path().join(name);
        run(
            "generate",
            &["--prompt", &prompt, "--frames", "24", "--format", "png"],
        )
        .args(FAST)
        .args(["--out", path_str(&out)])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("warning: --prompt is")
                .and(predicate::str::contains("only the first 75")),
        );
        let mut files: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read(f).unwrap())
            .collect::<Vec<_>>()
    };
    let first = write("a");
    assert_eq!(first.len(), 24);
    assert_eq!(first, write("b"));
    assert_eq!(
        entries(dir.path()),
        ["a", "b"],
        "a successful enhanced run leaves no stage-2 side directory"
    );
}

#[test]
fn extends_and_enhances_a_generated_video() {
    let dir = TempDir::new().unwrap();
    let draft = dir.path().join("draft.mp4");
    run(
        "generate",
        &["--prompt", "a red ball", "--frames", "24", "--no-enhance"],
    )
    .args(FAST)
    .args(["--out", path_str(&draft)])
    .assert()
    .success();
    assert_eq!(probe(&draft), (24, 64, 64));

    let longer = dir.path().join("longer.mp4");
    run(
        "extend",
        &[
            "--input",
            path_str(&draft),
            "--prompt",
            "the ball bounces",
            "--frames",
            "16",
        ],
    )
    .args([
        "--steps",
        "2",
        "--enhance-steps",
        "2",
        "--out",
        path_str(&longer),
    ])
    .assert()
    .success();
    assert_eq!(
        probe(&longer),
        (40, 80, 80),
        "24 input frames + 16 new, enhanced"
    );
    assert!(
        !dir.path().join("longer.stage2.mp4").exists(),
        "a successful enhanced run leaves no stage-2 side file"
    );

    let sharp = dir.path().join("sharp.gif");
    run(
        "enhance",
        &["--input", path_str(&draft), "--prompt", "a red ball"],
    )
    .args([
        "--enhance-steps",
        "2",
        "--keep-padding",
        "--out",
        path_str(&sharp),
    ])
    .assert()
    .success()
    .stderr(predicate::str::contains("wrote 24 frames (128x80)"));
}

/// Starts a long `generate` with `--events`, sends SIGINT once an event line contains
/// `marker`, and returns its status code and stderr.
fn interrupt_generate(extra: &[&str], out: &Path, events: &Path, marker: &str) -> (i32, String) {
    let child = StdCommand::new(assert_cmd::cargo::cargo_bin("st2v"))
        .args(["generate", "--models", path_str(&tiny()), "--quiet"])
        .args(extra)
        .args([
            "--prompt",
            "a long road",
            "--frames",
            "400",
            "--steps",
            "20",
            "--stage1-steps",
            "2",
        ])
        .args(["--out", path_str(out), "--events", path_str(events)])
        .stderr(Stdio::piped())
        .spawn()
        .expect("st2v starts");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !std::fs::read_to_string(events)
        .unwrap_or_default()
        .contains(marker)
    {
        assert!(Instant::now() < deadline, "no `{marker}` event in time");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = child.id().to_string();
    assert!(StdCommand::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().expect("st2v exits"), stderr)
}

#[test]
fn ctrl_c_leaves_a_playable_file_with_the_frames_so_far() {
    let dir = TempDir::new().unwrap();
    let (out, events) = (dir.path().join("long.mp4"), dir.path().join("events.jsonl"));
    let (code, stderr) = interrupt_generate(&["--no-enhance"], &out, &events, "frames_written");
    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains("interrupted") && stderr.contains("finished frames were written"),
        "{stderr}"
    );
    let (frames, width, height) = probe(&out);
    assert!((16..400).contains(&frames), "{frames} frames kept");
    assert_eq!((width, height), (64, 64));
    assert!(
        !dir.path().join("long.stage2.mp4").exists(),
        "no side file without stage 3"
    );
}

#[test]
fn ctrl_c_while_enhancing_keeps_the_stage2_frames_in_a_side_file() {
    let dir = TempDir::new().unwrap();
    let (out, events) = (dir.path().join("long.mp4"), dir.path().join("events.jsonl"));
    let first_stage2_chunk = r#""event":"chunk_done","stage":"streaming""#;
    let (code, stderr) =
        interrupt_generate(&["--enhance-steps", "2"], &out, &events, first_stage2_chunk);
    assert_eq!(code, 130, "{stderr}");
    let side = dir.path().join("long.stage2.mp4");
    assert!(
        stderr.contains("enhanced frames were written to")
            && stderr.contains("stage-2 frames (not enhanced) were kept in")
            && stderr.contains(path_str(&side)),
        "{stderr}"
    );
    let (frames, width, height) = probe(&side);
    assert!(
        (24..400).contains(&frames),
        "{frames} stage-2 frames kept: stage 1's 16 and at least the first stage-2 chunk's 8"
    );
    assert_eq!((width, height), (64, 64), "stage-2 size of the tiny set");
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("x.mp4");
    let avi = dir.path().join("x.avi");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--prompt", "  ", "--out", path_str(&out)], "--prompt"),
        (
            vec![
                "--prompt",
                "a cat",
                "--frames",
                "8",
                "--out",
                path_str(&out),
            ],
            "--frames",
        ),
        (vec!["--prompt", "a cat", "--out", path_str(&avi)], "avi"),
        (
            vec!["--prompt", "a cat", "--out", "/nonexistent-dir/x.mp4"],
            "/nonexistent-dir",
        ),
    ];
    for (args, needle) in cases {
        run("generate", &args)
            .args(FAST)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(needle));
    }
    let bad_noise = dir.path().join("noise.npy");
    ndarray_npy::write_npy(&bad_noise, &ndarray::Array5::<f32>::zeros((1, 4, 16, 4, 4))).unwrap();
    run(
        "generate",
        &[
            "--prompt",
            "a cat",
            "--init-noise",
            path_str(&bad_noise),
            "--out",
            path_str(&out),
        ],
    )
    .assert()
    .code(2)
    .stderr(
        predicate::str::contains("--init-noise").and(predicate::str::contains("[1, 4, 16, 8, 8]")),
    );
    let missing_input = dir.path().join("missing.mp4");
    run(
        "enhance",
        &[
            "--input",
            path_str(&missing_input),
            "--prompt",
            "a cat",
            "--out",
            path_str(&out),
        ],
    )
    .assert()
    .code(2)
    .stderr(predicate::str::contains("missing.mp4"));
    let not_a_video = dir.path().join("notes.mp4");
    std::fs::write(&not_a_video, b"not a video").unwrap();
    run(
        "extend",
        &[
            "--input",
            path_str(&not_a_video),
            "--prompt",
            "a cat",
            "--out",
            path_str(&out),
        ],
    )
    .assert()
    .failure()
    .stderr(predicate::str::contains("notes.mp4"));
    assert!(!out.exists(), "no output for rejected input");
}

#[test]
fn a_model_set_missing_one_enhancer_graph_names_it() {
    let dir = TempDir::new().unwrap();
    let set = support::set_without(&tiny(), dir.path(), &["enhancer_unet"]);
    let out = dir.path().join("x.mp4");
    let mut cmd = st2v();
    cmd.args([
        "generate",
        "--models",
        path_str(&set),
        "--quiet",
        "--prompt",
        "a cat",
        "--frames",
        "16",
    ])
    .args(FAST)
    .args(["--out", path_str(&out)])
    .assert()
    .code(2)
    .stderr(predicate::str::contains("enhancer_unet"));
    assert!(!out.exists());
}

#[test]
fn a_model_set_without_any_enhancer_graph_stops_after_stage_2() {
    let dir = TempDir::new().unwrap();
    let enhancer = [
        "enhancer_text_encoder",
        "enhancer_unet",
        "enhancer_vae_encoder",
        "enhancer_vae_decoder",
    ];
    let set = support::set_without(&tiny(), dir.path(), &enhancer);
    let out = dir.path().join("x.mp4");
    st2v()
        .args(["generate", "--models", path_str(&set), "--prompt", "a cat"])
        .args(["--frames", "24"])
        .args(FAST)
        .args(["--out", path_str(&out)])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "has no enhancer graphs: stopping after stage 2",
        ));
    // Stage-2 frames at the stage-2 resolution, not the enhancer's.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(set.join("manifest.json")).unwrap()).unwrap();
    let stage2 = &manifest["pipeline"]["stage2"];
    let size = (
        stage2["width"].as_u64().unwrap() as usize,
        stage2["height"].as_u64().unwrap() as usize,
    );
    assert_eq!(probe(&out), (24, size.0, size.1));
}

#[test]
fn the_default_model_set_is_the_toy_set_and_runs_all_three_stages() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("circle.gif");
    st2v()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("ST2V_MODELS")
        .args([
            "generate",
            "--prompt",
            "a red circle moving right on a blue background",
        ])
        .args(["--frames", "24", "--steps", "2", "--stage1-steps", "2"])
        .args(["--enhance-steps", "2"])
        .args(["--out", path_str(&out)])
        .assert()
        .success()
        .stderr(predicate::str::contains("has no enhancer graphs").not());
    // The enhancer's 80x80 content (64x64 stage-2 frames, upscaled by stage 3).
    assert_eq!(probe(&out), (24, 80, 80));
}

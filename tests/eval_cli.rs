//! `st2v eval` end to end: videos written as PNG directories (lossless, so every frame is known)
//! go through the built binary; the JSON report is checked against what the videos hold (cuts
//! at known frames, an injected seam, a pure translation), and every bad input gets a clear
//! message and exit status 2. `generate --eval` appends its report to the event stream.
//!
//! Needs ONNX Runtime (found as `st2v` finds it) for the CLIP metrics on `models/tiny`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::str::contains;
use serde_json::Value;
use tempfile::TempDir;

const SIZE: u32 = 64;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny")
}

fn st2v() -> Command {
    let mut cmd = Command::cargo_bin("st2v").expect("the st2v binary is built");
    cmd.env_remove("ST2V_MODELS").env_remove("ST2V_EP");
    cmd
}

/// A textured background (a smooth pattern per scene) with a bright square at `position`.
fn frame(scene: u32, position: (i64, i64)) -> image::RgbImage {
    image::RgbImage::from_fn(SIZE, SIZE, |x, y| {
        let (sx, sy) = (x as i64 - position.0, y as i64 - position.1);
        if (0..12).contains(&sx) && (0..12).contains(&sy) {
            return image::Rgb([250, 240, 40]);
        }
        let base = [(x * 3 + y) % 90, (y * 2 + x) % 70, (x + y * 3) % 80];
        let tint = [[40u32, 60, 170], [170, 50, 40], [40, 160, 60]][scene as usize % 3];
        image::Rgb(std::array::from_fn(|c| (base[c] + tint[c]) as u8))
    })
}

/// Writes frames 0..count as a PNG directory; `at(i)` gives each frame's scene and position.
fn png_video(
    dir: &Path,
    name: &str,
    count: usize,
    at: impl Fn(usize) -> (u32, (i64, i64)),
) -> PathBuf {
    let video = dir.join(name);
    std::fs::create_dir(&video).expect("video dir");
    for i in 0..count {
        let (scene, position) = at(i);
        frame(scene, position)
            .save(video.join(format!("{i:05}.png")))
            .expect("png");
    }
    video
}

/// Runs `st2v eval <args> --json` and returns the report.
fn eval_json(dir: &Path, args: &[&str]) -> Value {
    let json = dir.join(format!("report-{}.json", args.len() + rand_suffix(dir)));
    st2v()
        .arg("eval")
        .args(args)
        .arg("--quiet")
        .arg("--json")
        .arg(&json)
        .assert()
        .success();
    serde_json::from_str(&std::fs::read_to_string(json).expect("report")).expect("JSON")
}

fn rand_suffix(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

fn moving(i: usize) -> (u32, (i64, i64)) {
    (0, (4 + i as i64, 20))
}

#[test]
fn scene_cuts_static_and_cut_videos() {
    let dir = TempDir::new().expect("tempdir");
    let still = png_video(dir.path(), "still", 40, |_| (0, (20, 20)));
    // Scenes change at frames 20 and 45 (both at least min_scene_len = 15 apart).
    let cuts = png_video(dir.path(), "cuts", 70, |i| {
        ((i >= 20) as u32 + (i >= 45) as u32, (20, 20))
    });
    let report = eval_json(
        dir.path(),
        &[
            still.to_str().unwrap(),
            cuts.to_str().unwrap(),
            "--metrics",
            "scuts",
        ],
    );
    let videos = report["videos"].as_array().expect("videos");
    assert_eq!(videos[0]["scuts"]["count"], 0);
    assert_eq!(videos[1]["scuts"]["cuts"], serde_json::json!([20, 45]));
    assert_eq!(videos[1]["frames"], 70);
}

#[test]
fn an_injected_jump_at_a_chunk_boundary_is_the_flagged_seam() {
    let dir = TempDir::new().expect("tempdir");
    // Smooth motion of 1 px per frame, and a 20 px jump into frame 24 (a stage-2 boundary).
    let video = png_video(dir.path(), "jump", 40, |i| {
        let x = 4 + i as i64 + if i >= 24 { 20 } else { 0 };
        (0, (x, 20))
    });
    let report = eval_json(
        dir.path(),
        &[
            video.to_str().unwrap(),
            "--metrics",
            "seams,mawe",
            "--motion-size",
            "64",
        ],
    );
    let seams = &report["videos"][0]["seams"];
    let flagged: Vec<u64> = seams["seams"]
        .as_array()
        .expect("seams")
        .iter()
        .filter(|s| s["flagged"] == true)
        .map(|s| s["frame"].as_u64().expect("frame"))
        .collect();
    assert_eq!(flagged, vec![24]);
    assert_eq!(
        seams["seams"].as_array().unwrap().len(),
        3,
        "boundaries 16, 24, 32"
    );
    assert!(seams["frame_difference"]["ratio"].as_f64().unwrap() > 1.5);
}

#[test]
fn a_pure_translation_warps_with_small_error_and_reports_its_motion() {
    let dir = TempDir::new().expect("tempdir");
    let video = png_video(dir.path(), "pan", 12, moving);
    let report = eval_json(
        dir.path(),
        &[
            video.to_str().unwrap(),
            "--metrics",
            "mawe",
            "--motion-size",
            "64",
        ],
    );
    let mawe = &report["videos"][0]["mawe"];
    assert_eq!(mawe["flow"], "farneback");
    assert_eq!(mawe["pairs"].as_array().unwrap().len(), 11);
    for pair in mawe["pairs"].as_array().unwrap() {
        // The square moves 1 px per frame; the background stands still.
        let flow = pair["mean_flow"].as_f64().expect("flow");
        assert!(flow > 0.0 && flow < 1.0, "mean flow {flow}");
    }
    let value = mawe["value"].as_f64().expect("defined");
    assert!(value.is_finite() && value >= 0.0);
}

#[test]
fn clip_and_drift_run_on_the_tiny_graphs_deterministically_with_table_csv_and_plot() {
    let dir = TempDir::new().expect("tempdir");
    let video = png_video(dir.path(), "drift", 40, |i| {
        ((i >= 32) as u32, (4 + i as i64, 20))
    });
    let (csv, svg) = (dir.path().join("e.csv"), dir.path().join("e.svg"));
    let video = video.to_str().unwrap();
    let models = tiny();
    let args = [
        "--models",
        models.to_str().unwrap(),
        "--prompt",
        "a yellow square",
        "--motion-size",
        "64",
    ];
    let first = eval_json(dir.path(), &[&[video], &args[..]].concat());
    let second = eval_json(dir.path(), &[&[video], &args[..]].concat());
    let clip = |r: &Value| {
        r["videos"][0]["clip"]["score"]
            .as_f64()
            .expect("clip score")
    };
    assert_eq!(clip(&first), clip(&second));
    assert!(clip(&first).abs() <= 100.0);
    let chunks = first["videos"][0]["drift"]["chunks"]
        .as_array()
        .expect("chunks")
        .clone();
    assert_eq!(chunks.len(), 4, "0..16, 16..24, 24..32, 32..40");
    // The scene changes colour in the last chunk: its colour distance stands out.
    let distance = |k: usize| chunks[k]["histogram_distance"].as_f64().unwrap();
    assert!(distance(3) > 2.0 * distance(2).max(0.01), "{chunks:?}");
    st2v()
        .args(["eval", video])
        .args(args)
        .arg("--csv")
        .arg(&csv)
        .arg("--plot")
        .arg(&svg)
        .assert()
        .success()
        .stdout(contains("CLIP score (x100, mean)"))
        .stdout(contains("SCuts"))
        .stdout(contains("seams: flagged / boundaries"));
    let csv = std::fs::read_to_string(csv).expect("csv");
    assert_eq!(csv.lines().count(), 41, "a header and a row per frame");
    let svg = std::fs::read_to_string(svg).expect("svg");
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() >= 3);
}

#[test]
fn bad_inputs_are_named_with_status_2() {
    let dir = TempDir::new().expect("tempdir");
    let short = png_video(dir.path(), "short", 10, moving);
    let short = short.to_str().unwrap();
    let not_video = dir.path().join("notes.mp4");
    std::fs::write(&not_video, "not a video").expect("write");
    let existing = dir.path().join("taken.json");
    std::fs::write(&existing, "{}").expect("write");
    let models = tiny();
    let models = models.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![short, "--metrics", "seams"], "too short for seams"),
        (
            vec![not_video.to_str().unwrap(), "--metrics", "scuts"],
            "notes.mp4",
        ),
        (
            vec![short, "--metrics", "clip", "--models", models],
            "--prompt",
        ),
        (
            vec![
                short,
                "--metrics",
                "scuts",
                "--json",
                existing.to_str().unwrap(),
            ],
            "--force",
        ),
        (
            vec![
                short,
                "--metrics",
                "scuts",
                "--chunk",
                "8",
                "--overlap",
                "8",
            ],
            "--overlap",
        ),
        (
            vec![short, "--metrics", "mawe", "--motion-size", "4"],
            "--motion-size",
        ),
        (
            vec![
                short,
                "--metrics",
                "drift",
                "--anchor-frame",
                "30",
                "--models",
                models,
            ],
            "--anchor-frame",
        ),
        (
            vec![
                short,
                "--metrics",
                "mawe",
                "--flow",
                "raft",
                "--motion-size",
                "64",
            ],
            "--motion-size",
        ),
    ];
    for (args, message) in cases {
        st2v()
            .arg("eval")
            .args(&args)
            .arg("--quiet")
            .assert()
            .code(2)
            .stderr(contains(message));
    }
}

#[test]
fn a_model_set_without_the_clip_graphs_names_the_export_command() {
    let dir = TempDir::new().expect("tempdir");
    let set = dir.path().join("set");
    std::fs::create_dir(&set).expect("set dir");
    for entry in std::fs::read_dir(tiny()).expect("tiny") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_owned();
        if name != "manifest.json" {
            std::os::unix::fs::symlink(&path, set.join(name)).expect("link");
        }
    }
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(tiny().join("manifest.json")).unwrap())
            .unwrap();
    manifest["graphs"]
        .as_object_mut()
        .unwrap()
        .remove("clip_text_encoder");
    std::fs::write(set.join("manifest.json"), manifest.to_string()).expect("manifest");
    let video = png_video(dir.path(), "v", 4, moving);
    st2v()
        .args([
            "eval",
            video.to_str().unwrap(),
            "--metrics",
            "clip",
            "--prompt",
            "x",
            "--quiet",
        ])
        .arg("--models")
        .arg(&set)
        .assert()
        .code(2)
        .stderr(contains("clip_text_encoder"))
        .stderr(contains("--only clip_text_encoder"));
}

#[test]
fn generate_eval_appends_the_report_to_the_events() {
    let dir = TempDir::new().expect("tempdir");
    let (out, events) = (dir.path().join("v.mp4"), dir.path().join("events.jsonl"));
    st2v()
        .args([
            "generate",
            "--prompt",
            "a red ball",
            "--frames",
            "24",
            "--eval",
            "--quiet",
        ])
        .args(["--steps", "1", "--stage1-steps", "1", "--no-enhance"])
        .arg("--models")
        .arg(tiny())
        .arg("--out")
        .arg(&out)
        .arg("--events")
        .arg(&events)
        .assert()
        .success()
        .stderr(contains("CLIP score (x100, mean)"));
    let text = std::fs::read_to_string(events).expect("events");
    let last: Value = serde_json::from_str(text.lines().last().expect("a line")).expect("JSON");
    assert_eq!(last["event"], "eval");
    let report = &last["report"];
    assert_eq!(report["frames"], 24);
    assert!(report["clip"]["score"].is_number());
    assert_eq!(
        report["seams"]["seams"].as_array().unwrap().len(),
        1,
        "boundary at 16"
    );
    assert!(report["scuts"]["count"].is_number() && report["mawe"]["pairs"].is_array());
}

#[test]
fn clip_score_matches_the_python_reference() {
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/eval");
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir.join("clip.json")).unwrap())
            .unwrap();
    let dir = TempDir::new().expect("tempdir");
    let video = golden_dir.join("clip_video");
    for (prompt, expected) in golden["prompts"].as_object().expect("prompts") {
        let report = eval_json(
            dir.path(),
            &[
                video.to_str().unwrap(),
                "--metrics",
                "clip",
                "--prompt",
                prompt,
                "--models",
                tiny().to_str().unwrap(),
            ],
        );
        let actual = report["videos"][0]["clip"]["per_frame"]
            .as_array()
            .expect("per frame")
            .clone();
        let expected = expected["per_frame"].as_array().expect("golden per frame");
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            assert!((a - e).abs() < 2e-4, "{prompt}: {a} vs {e}");
        }
    }
}

#[test]
fn raft_mawe_matches_the_python_reference() {
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/eval");
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir.join("mawe_raft.json")).unwrap())
            .unwrap();
    let dir = TempDir::new().expect("tempdir");
    let video = golden_dir.join("clip_video");
    let models = tiny();
    let report = eval_json(
        dir.path(),
        &[
            video.to_str().unwrap(),
            "--metrics",
            "mawe",
            "--flow",
            "raft",
            "--models",
            models.to_str().unwrap(),
        ],
    );
    let mawe = &report["videos"][0]["mawe"];
    assert_eq!(mawe["flow"], "raft");
    assert_eq!(mawe["size"], golden["size"]);
    let close = |a: &Value, e: &Value, what: &str| {
        let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
        // ONNX Runtime and PyTorch differ in the flow's last digits; a rounding flip of a warp
        // target moves the error slightly.
        assert!(
            (a - e).abs() <= 1e-3 * e.abs().max(1.0),
            "{what}: {a} vs {e}"
        );
    };
    let pairs = mawe["pairs"].as_array().expect("pairs");
    for (actual, expected) in pairs.iter().zip(golden["pairs"].as_array().unwrap()) {
        close(&actual["mean_flow"], &expected["mean_flow"], "mean flow");
        close(&actual["warp_error"], &expected["warp_error"], "warp error");
    }
    close(&mawe["value"], &golden["mawe"], "MAWE");
}

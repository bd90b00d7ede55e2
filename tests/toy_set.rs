//! The committed toy set (`models/toy`) through the engine: the README's main job shows the
//! colours its caption asks for. The rules are the toy-world checker's
//! (`export/st2v_export/toy/checker.py`), in brief: a pixel has a palette colour when it is
//! within 60 (RGB distance) of it; a frame has the background when at least half of its pixels
//! have it; a shape is there when at least 0.4 % of the frame has its colour.
//!
//! The job runs all three stages: the enhanced frames are judged.
//!
//! Before the zero-terminal-SNR schedule this failed: the set drew an orange background for
//! "on a blue background" (`TRAINING.md`, "Zero terminal SNR").

use std::path::Path;

use assert_cmd::Command;
use tempfile::TempDir;

const PROMPT: &str = "a red circle moving right on a blue background";
const BLUE: [f32; 3] = [40.0, 70.0, 210.0]; // world.PALETTE
const RED: [f32; 3] = [220.0, 40.0, 40.0];
const COLOUR_MATCH_MAX: f32 = 60.0;
const BACKGROUND_PIXELS_MIN: f64 = 0.5;
const MIN_AREA_FRACTION: f64 = 0.004;

fn fraction_near(frame: &image::RgbImage, colour: [f32; 3]) -> f64 {
    let near = frame
        .pixels()
        .filter(|pixel| {
            let squared: f32 = (0..3)
                .map(|c| (f32::from(pixel[c]) - colour[c]).powi(2))
                .sum();
            squared.sqrt() <= COLOUR_MATCH_MAX
        })
        .count();
    near as f64 / f64::from(frame.width() * frame.height())
}

fn frames(dir: &Path) -> Vec<image::RgbImage> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| image::open(path).unwrap().to_rgb8())
        .collect()
}

#[test]
fn the_main_job_draws_the_captions_background_and_shape_colour_in_every_chunk() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("frames");
    Command::cargo_bin("st2v")
        .unwrap()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("ST2V_MODELS")
        .args(["generate", "--prompt", PROMPT, "--frames", "48", "--quiet"])
        .arg("--out")
        .arg(format!("{}/", out.display()))
        .assert()
        .success();
    let frames = frames(&out);
    assert_eq!(frames.len(), 48);
    // Stage 3 ran: the enhancer's 80x80 content (its 80x128 frame without the black bars).
    assert_eq!(frames[0].dimensions(), (80, 80));
    for (index, frame) in frames.iter().enumerate() {
        let blue = fraction_near(frame, BLUE);
        assert!(
            blue >= BACKGROUND_PIXELS_MIN,
            "frame {index}: {:.0} % of the pixels are the blue background",
            blue * 100.0
        );
    }
    let with_red = frames
        .iter()
        .filter(|frame| fraction_near(frame, RED) >= MIN_AREA_FRACTION)
        .count();
    assert!(
        with_red * 10 >= frames.len() * 9,
        "a red shape in {with_red} of {} frames",
        frames.len()
    );
}

//! The committed toy set (`models/toy`) through the engine: the README's main job shows the
//! colours its caption asks for. The rules are the toy-world checker's
//! (`export/st2v_export/toy/checker.py`), in brief: a pixel has a palette colour when it is
//! within 60 (RGB distance) of it; a frame has the background when at least half of its pixels
//! have it; a shape is there when at least 0.4 % of the frame has its colour.
//!
//! The job runs all three stages: the enhanced frames are judged.
//!
//! The shape's motion is read the way the world draws it: the world wraps around its edges (a
//! shape leaving on the right comes back on the left), so a step's horizontal motion is the
//! circular shift that best aligns two frames' red column profiles.
//!
//! Before the zero-terminal-SNR schedule this failed: the set drew an orange background for
//! "on a blue background" (`TRAINING.md`, "Zero terminal SNR").

use std::path::Path;
use std::sync::OnceLock;

use assert_cmd::Command;
use tempfile::TempDir;

const PROMPT: &str = "a red circle moving right on a blue background";
const BLUE: [f32; 3] = [40.0, 70.0, 210.0]; // world.PALETTE
const RED: [f32; 3] = [220.0, 40.0, 40.0];
const COLOUR_MATCH_MAX: f32 = 60.0;
const BACKGROUND_PIXELS_MIN: f64 = 0.5;
const MIN_AREA_FRACTION: f64 = 0.004;
/// The largest shift tried between consecutive frames (pixels of the 80-pixel stage-3 frame).
const MAX_STEP_SHIFT: i32 = 8;
/// Rightward travel asked of every 16 frames: a sixteenth of the frame's width.
const MIN_TRAVEL_PER_CHUNK: i32 = 5;

fn is_near(pixel: &image::Rgb<u8>, colour: [f32; 3]) -> bool {
    let squared: f32 = (0..3)
        .map(|c| (f32::from(pixel[c]) - colour[c]).powi(2))
        .sum();
    squared.sqrt() <= COLOUR_MATCH_MAX
}

fn fraction_near(frame: &image::RgbImage, colour: [f32; 3]) -> f64 {
    let near = frame
        .pixels()
        .filter(|pixel| is_near(pixel, colour))
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

/// The README's main job (default model set, seed and steps), run once for every test here.
fn main_job_frames() -> &'static [image::RgbImage] {
    static FRAMES: OnceLock<Vec<image::RgbImage>> = OnceLock::new();
    FRAMES.get_or_init(|| {
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
        frames(&out)
    })
}

/// Red pixels per column.
fn red_columns(frame: &image::RgbImage) -> Vec<f32> {
    let mut columns = vec![0.0; frame.width() as usize];
    for (x, _, pixel) in frame.enumerate_pixels() {
        if is_near(pixel, RED) {
            columns[x as usize] += 1.0;
        }
    }
    columns
}

/// The circular shift (pixels, positive to the right) that best aligns `after` with `before`.
fn horizontal_shift(before: &[f32], after: &[f32]) -> i32 {
    let width = before.len() as i32;
    let overlap = |shift: i32| -> f32 {
        (0..width)
            .map(|x| before[x as usize] * after[(x + shift).rem_euclid(width) as usize])
            .sum()
    };
    (-MAX_STEP_SHIFT..=MAX_STEP_SHIFT)
        .max_by(|a, b| overlap(*a).total_cmp(&overlap(*b)))
        .unwrap()
}

#[test]
fn the_main_job_draws_the_captions_background_and_shape_colour_in_every_chunk() {
    let frames = main_job_frames();
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

#[test]
fn the_main_job_moves_the_red_shape_right_for_the_whole_video() {
    let profiles: Vec<Vec<f32>> = main_job_frames().iter().map(red_columns).collect();
    let shifts: Vec<i32> = profiles
        .windows(2)
        .map(|pair| horizontal_shift(&pair[0], &pair[1]))
        .collect();
    let leftward = shifts.iter().filter(|shift| **shift < 0).count();
    assert!(
        leftward * 10 <= shifts.len(),
        "the shape stepped left in {leftward} of {} steps: {shifts:?}",
        shifts.len()
    );
    for (chunk, steps) in shifts.chunks(16).enumerate() {
        let travel: i32 = steps.iter().sum();
        assert!(
            travel >= MIN_TRAVEL_PER_CHUNK,
            "frames {}-{}: the shape travelled {travel} pixels right (at least \
             {MIN_TRAVEL_PER_CHUNK} expected): {shifts:?}",
            chunk * 16,
            chunk * 16 + steps.len()
        );
    }
}

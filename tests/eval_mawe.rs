//! Golden tests of the MAWE numerics (Henschel et al. 2024, StreamingT2V) against Python:
//! cv2 5.0.0's Farnebäck flow, torchvision 0.29.2's resize and the warp / error / ratio of
//! the reference `mawe.py`, on synthetic clips rebuilt exactly by `golden/eval/pairs.rs`.
//!
//! Fixture: `tests/golden/eval/mawe.json`, written by `tests/golden/eval/gen_mawe.py`
//! (`.venv/bin/python tests/golden/eval/gen_mawe.py`; versions in the JSON).
//!
//! Tolerances: frames, resize, grey and the warp with a given flow are bit-exact (checksums);
//! Farnebäck flows must agree with cv2 to a mean absolute difference below 0.02 px over the
//! sampled grid (the port reaches about 1e-6); per-pair terms to 1e-3 relative and the MAWE
//! value to 1% relative (achieved: far below, see the printed report).

use std::path::Path;

use serde_json::Value;
use streamingt2v::eval::{flow, mawe};

#[path = "golden/eval/pairs.rs"]
mod pairs;

/// Required agreement of Farnebäck flows with cv2 (mean absolute difference, pixels).
const FLOW_MAD_PX: f64 = 0.02;
/// Tolerance of mean flow components against cv2's, pixels.
const FLOW_MEAN_PX: f64 = 1e-3;
/// Relative tolerance of the per-pair terms computed from a Farnebäck flow.
const PAIR_RTOL: f64 = 1e-3;
/// Relative tolerance of the clip's MAWE.
const MAWE_RTOL: f64 = 0.01;
/// Relative tolerance where the flow is given (only the reference's f32 sums differ).
const GIVEN_RTOL: f64 = 1e-6;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/eval/mawe.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("fixture: array `{key}` missing"))
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("fixture: number `{key}` missing in {v}"))
}

fn opt_num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn uint(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("fixture: integer `{key}` missing in {v}"))
}

fn name(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("?")
}

fn checksums(v: &Value, key: &str) -> Vec<u64> {
    list(v, key).iter().filter_map(Value::as_u64).collect()
}

fn rel_err(ours: f64, expected: f64) -> f64 {
    (ours - expected).abs() / expected.abs().max(1e-12)
}

fn assert_rel(what: &str, ours: f64, expected: f64, rtol: f64) -> f64 {
    let err = rel_err(ours, expected);
    assert!(
        err <= rtol || ours == expected,
        "{what}: {ours} vs {expected} (rel {err:.3e})"
    );
    if ours == expected {
        0.0
    } else {
        err
    }
}

fn assert_opt_rel(what: &str, ours: Option<f64>, expected: Option<f64>, rtol: f64) -> f64 {
    match (ours, expected) {
        (Some(o), Some(e)) => assert_rel(what, o, e, rtol),
        (None, None) => 0.0,
        _ => panic!("{what}: {ours:?} vs {expected:?}"),
    }
}

/// Compares a flow with the fixture's summary of the cv2 flow; returns the sampled MAD.
fn check_flow(what: &str, ours: &flow::Flow, summary: &Value) -> f64 {
    let (origin, step) = (
        uint(summary, "sample_origin") as usize,
        uint(summary, "sample_step") as usize,
    );
    let (dx, dy) = (list(summary, "dx"), list(summary, "dy"));
    let mut expected = dx.iter().zip(dy).map(|(u, v)| (u.as_f64(), v.as_f64()));
    let (mut total, mut count) = (0f64, 0usize);
    for y in (origin..ours.height).step_by(step) {
        for x in (origin..ours.width).step_by(step) {
            let (Some((Some(eu), Some(ev))), Some((u, v))) = (expected.next(), ours.at(x, y))
            else {
                panic!("{what}: sample grid mismatch at ({x}, {y})");
            };
            total += (f64::from(u) - eu).abs() + (f64::from(v) - ev).abs();
            count += 2;
        }
    }
    assert!(
        expected.next().is_none(),
        "{what}: fixture has more samples than the grid"
    );
    let mad = total / count.max(1) as f64;
    assert!(mad < FLOW_MAD_PX, "{what}: sampled flow MAD {mad:.3e} px");
    let n = (ours.width * ours.height) as f64;
    let mean = |plane: &[f32]| plane.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    for (label, ours, key) in [
        ("dx", mean(&ours.dx), "mean_dx"),
        ("dy", mean(&ours.dy), "mean_dy"),
    ] {
        let expected = num(summary, key);
        assert!(
            (ours - expected).abs() < FLOW_MEAN_PX,
            "{what}: mean {label} {ours} vs {expected}"
        );
    }
    let mag = ours.mean_magnitude();
    assert!(
        (mag - num(summary, "mean_mag")).abs() < FLOW_MEAN_PX,
        "{what}: mean magnitude {mag}"
    );
    mad
}

fn gray_flow(
    left_rgb: &[u8],
    right_rgb: &[u8],
    w: usize,
    h: usize,
    p: &flow::FarnebackParams,
) -> flow::Flow {
    flow::farneback(
        &flow::rgb_to_gray(left_rgb),
        &flow::rgb_to_gray(right_rgb),
        w,
        h,
        p,
    )
}

#[test]
fn synthetic_frames_rebuild_exactly() {
    let fx = fixture();
    for case in list(&fx, "cases")
        .iter()
        .chain(list(&fx, "given_flow_cases"))
    {
        let scene = pairs::Scene::new(&case["scene"]);
        let frames = (0..checksums(case, "frame_checksums").len()).map(|t| scene.frame(t));
        let ours: Vec<u64> = frames.map(|f| pairs::checksum(&f)).collect();
        assert_eq!(ours, checksums(case, "frame_checksums"), "{}", name(case));
    }
}

#[test]
fn farneback_matches_cv2_on_full_size_frames() {
    let fx = fixture();
    for case in list(&fx, "cases") {
        let scene = pairs::Scene::new(&case["scene"]);
        let (f0, f1) = (scene.frame(0), scene.frame(1));
        let (w, h) = (scene.width, scene.height);
        let box_flow = gray_flow(&f0, &f1, w, h, &flow::FarnebackParams::default());
        let mad = check_flow(name(case), &box_flow, &case["flow"]);
        println!("{} {w}x{h}: box-window flow MAD {mad:.3e} px", name(case));
        if let Some(summary) = case.get("flow_gaussian") {
            let params = flow::FarnebackParams {
                gaussian_window: true,
                ..flow::FarnebackParams::default()
            };
            let mad = check_flow(name(case), &gray_flow(&f0, &f1, w, h, &params), summary);
            println!(
                "{} {w}x{h}: Gaussian-window flow MAD {mad:.3e} px",
                name(case)
            );
        }
    }
}

#[test]
fn mawe_pipeline_matches_the_reference() {
    let fx = fixture();
    let params = flow::FarnebackParams::default();
    for case in list(&fx, "cases") {
        let scene = pairs::Scene::new(&case["scene"]);
        let size = uint(case, "size") as usize;
        let frames = scene.all_frames();
        let mut scores = Vec::new();
        for (i, expected) in list(case, "pairs").iter().enumerate() {
            let what = format!("{} pair {i}", name(case));
            let left = mawe::resize_bilinear_u8(&frames[i], scene.width, scene.height, size, size);
            let right =
                mawe::resize_bilinear_u8(&frames[i + 1], scene.width, scene.height, size, size);
            let resized = vec![pairs::checksum(&left), pairs::checksum(&right)];
            assert_eq!(
                resized,
                checksums(expected, "resized_checksum"),
                "{what}: resize"
            );
            let (lg, rg) = (flow::rgb_to_gray(&left), flow::rgb_to_gray(&right));
            let grays = vec![pairs::checksum(&lg), pairs::checksum(&rg)];
            assert_eq!(grays, checksums(expected, "gray_checksum"), "{what}: grey");
            let pair_flow = flow::farneback(&lg, &rg, size, size, &params);
            let mad = check_flow(&what, &pair_flow, &expected["flow"]);
            let (warped, known) = mawe::forward_warp(&left, &pair_flow);
            let known_count = known.iter().filter(|&&k| k).count() as u64;
            let known_diff = known_count.abs_diff(uint(expected, "known"));
            assert!(
                known_diff * 1000 <= known_count,
                "{what}: known {known_count}"
            );
            let score = mawe::PairScore::new(
                mawe::warp_error(&right, &warped, &known),
                pair_flow.mean_magnitude(),
            );
            let we = assert_opt_rel(
                &what,
                score.warp_error,
                opt_num(expected, "warp_error"),
                PAIR_RTOL,
            );
            let mf = assert_rel(
                &what,
                score.mean_flow,
                num(expected, "mean_flow"),
                PAIR_RTOL,
            );
            let ratio = assert_opt_rel(&what, score.ratio, opt_num(expected, "ratio"), PAIR_RTOL);
            assert_eq!(
                score,
                mawe::score_pair(
                    &frames[i],
                    &frames[i + 1],
                    scene.width,
                    scene.height,
                    size,
                    &params
                )
            );
            println!(
                "{what} at {size}: flow MAD {mad:.2e} px, known diff {known_diff}, rel err WE {we:.2e} M {mf:.2e} ratio {ratio:.2e}"
            );
            scores.push(score);
        }
        let ours = mawe::mawe(&scores);
        let err = assert_opt_rel(name(case), ours, opt_num(case, "mawe"), MAWE_RTOL);
        println!("{}: MAWE {ours:?} rel err {err:.2e}", name(case));
        assert_eq!(
            scores,
            mawe::score_frames(&frames, scene.width, scene.height, size, &params)
        );
    }
}

#[test]
fn warp_with_given_flow_matches_the_reference_exactly() {
    let fx = fixture();
    for case in list(&fx, "given_flow_cases") {
        let scene = pairs::Scene::new(&case["scene"]);
        let (left, right) = (scene.frame(0), scene.frame(1));
        let (dx, dy) = pairs::given_flow(&case["flow"], scene.width, scene.height);
        let given = flow::Flow {
            width: scene.width,
            height: scene.height,
            dx,
            dy,
        };
        let (warped, known) = mawe::forward_warp(&left, &given);
        let known_count = known.iter().filter(|&&k| k).count() as u64;
        assert_eq!(known_count, uint(case, "known"), "{}: known", name(case));
        assert_eq!(
            pairs::checksum(&warped),
            uint(case, "warped_checksum"),
            "{}: warped",
            name(case)
        );
        let score = mawe::PairScore::new(
            mawe::warp_error(&right, &warped, &known),
            given.mean_magnitude(),
        );
        assert_opt_rel(
            name(case),
            score.warp_error,
            opt_num(case, "warp_error"),
            GIVEN_RTOL,
        );
        assert_rel(
            name(case),
            score.mean_flow,
            num(case, "mean_flow"),
            GIVEN_RTOL,
        );
        assert_opt_rel(name(case), score.ratio, opt_num(case, "ratio"), GIVEN_RTOL);
    }
}

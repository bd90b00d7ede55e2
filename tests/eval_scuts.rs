//! Golden test of the SCuts port (src/eval/scuts.rs) against scenedetect 0.7.2 + cv2 5.0.0:
//! tests/golden/eval/scuts.json, made by tests/golden/eval/gen_scuts.py.

use serde_json::Value;
use streamingt2v::eval::scuts::*;

#[path = "golden/eval/synthetic.rs"]
mod synthetic;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/eval/scuts.json");

/// Within 1e-6 relative or 1e-9 absolute.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 || (a - b).abs() <= 1e-6 * b.abs()
}

#[test]
fn adaptive_detector_matches_scenedetect() {
    let text = std::fs::read_to_string(GOLDEN).expect("read scuts.json");
    let golden: Value = serde_json::from_str(&text).expect("parse scuts.json");
    let videos = golden["videos"].as_array().expect("videos");
    assert!(videos.len() >= 8, "only {} videos", videos.len());
    let mut max_rel = 0.0f64;
    for v in videos {
        let name = v["name"].as_str().expect("name");
        let width = v["width"].as_u64().expect("width") as usize;
        let height = v["height"].as_u64().expect("height") as usize;
        let count = v["frames"].as_u64().expect("frames") as usize;
        let mut det = SceneCutDetector::new(AdaptiveParams::default(), width, height, None)
            .expect("detector");
        assert_eq!(
            det.downscale_factor(),
            v["downscale_factor"].as_f64().expect("factor"),
            "{name}"
        );
        let size = v["processed_size"].as_array().expect("processed_size");
        let size = (
            size[0].as_u64().expect("w") as usize,
            size[1].as_u64().expect("h") as usize,
        );
        assert_eq!(det.processed_size(), size, "{name}: processed size");
        for i in 0..count {
            det.push(&synthetic::frame(&v["spec"], width, height, i))
                .expect("push");
        }
        let got = det.finish();
        assert_eq!(got.frames, count, "{name}");
        let want_content = v["content_val"].as_array().expect("content_val");
        let want_ratio = v["adaptive_ratio"].as_array().expect("adaptive_ratio");
        assert_eq!(want_content.len(), count, "{name}");
        for i in 0..count {
            // scenedetect stores no content_val for frame 0; the port reports the 0.0 it uses.
            let want = want_content[i].as_f64().unwrap_or(0.0);
            let have = got.content_values[i];
            assert!(
                close(have, want),
                "{name} frame {i}: content_val {have} vs {want}"
            );
            if want != 0.0 {
                max_rel = max_rel.max((have - want).abs() / want.abs());
            }
            let want_r = want_ratio[i].as_f64();
            match (got.adaptive_ratios[i], want_r) {
                (Some(h), Some(w)) => assert!(close(h, w), "{name} frame {i}: ratio {h} vs {w}"),
                (h, w) => assert_eq!(h, w, "{name} frame {i}: adaptive_ratio presence"),
            }
        }
        let want_cuts: Vec<usize> = v["cuts"]
            .as_array()
            .expect("cuts")
            .iter()
            .map(|c| c.as_u64().expect("cut") as usize)
            .collect();
        assert_eq!(got.cuts, want_cuts, "{name}: cut frames");
        assert_eq!(got.count(), want_cuts.len(), "{name}");
        println!("{name}: {} cuts {:?}", got.count(), got.cuts);
    }
    println!("max relative content_val error: {max_rel:e}");
}

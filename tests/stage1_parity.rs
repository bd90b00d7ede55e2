//! Stage-1 parity with diffusers' reference pipeline on the embedded tiny model set (needs ONNX
//! Runtime, as `st2v` finds it).
//!
//! Fixture: `tests/golden/stage1_parity/`, written by `tests/golden/gen_stage1_parity.py`: it
//! rebuilds the PyTorch text encoder, stage-1 UNet and VAE behind `models/tiny` (checked against
//! the committed ONNX graphs) and runs diffusers' `TextToVideoSDPipeline` with the manifest's
//! `DPMSolverMultistepScheduler` config, guidance 9.0, a fixed initial noise (`latents=`) and
//! 4 steps. The engine runs the same request (16 frames, no enhancement, `init_noise`,
//! `save_latents`) and must give:
//! - the same prompt token ids;
//! - the same final stage-1 latents (before the decoder's 1 / scaling_factor): relative error
//!   `max|engine - reference| / max|reference|` <= 1e-4 (the reference UNet is PyTorch, the
//!   engine's is the ONNX graph: their per-call agreement is ~1e-6, guidance 9 amplifies it);
//! - the same decoded frames in [0, 1], on the frames the fixture keeps: max abs diff <= 1e-3.

use std::path::{Path, PathBuf};

use ndarray::{Array4, Array5, ArrayD, Axis};
use ndarray_npy::read_npy;
use serde_json::Value;
use streamingt2v::engine::{Engine, GenerateParams, GenerateRequest, Request, RuntimeSettings};
use streamingt2v::pipeline::Outputs;
use streamingt2v::progress::{CancelToken, NoProgress};
use streamingt2v::tokenizer::ClipTokenizer;
use streamingt2v::video::{Frame, VideoError};
use tempfile::TempDir;

/// Final latents: max|engine - reference| / max|reference|.
const LATENT_RTOL: f32 = 1e-4;
/// Decoded frames in [0, 1]: max|engine - reference|.
const FRAME_ATOL: f32 = 1e-3;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_dir() -> PathBuf {
    root().join("tests/golden/stage1_parity")
}

fn params() -> Value {
    let path = fixture_dir().join("params.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .expect("token ids are an array")
        .iter()
        .map(|v| v.as_i64().expect("token ids are integers"))
        .collect()
}

/// max|a - b| / max|b|, the relative error of `actual` against `expected`.
fn relative_error<'a>(
    actual: impl IntoIterator<Item = &'a f32>,
    expected: impl IntoIterator<Item = &'a f32> + Clone,
) -> f32 {
    let scale = expected
        .clone()
        .into_iter()
        .fold(0.0f32, |m, b| m.max(b.abs()));
    max_abs_diff(actual, expected) / scale
}

fn max_abs_diff<'a>(
    actual: impl IntoIterator<Item = &'a f32>,
    expected: impl IntoIterator<Item = &'a f32>,
) -> f32 {
    actual
        .into_iter()
        .zip(expected)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
}

#[test]
fn stage1_matches_diffusers_text_to_video_pipeline() {
    let fixture = params();
    let prompt = fixture["prompt"].as_str().unwrap();
    let negative = fixture["negative_prompt"].as_str().unwrap();
    let steps = fixture["steps"].as_u64().unwrap() as usize;
    let frames = fixture["num_frames"].as_u64().unwrap() as usize;

    let mut engine = Engine::open(&root().join("models/tiny"), RuntimeSettings::cpu())
        .expect("the tiny set opens");
    let config = engine.config().stage1.clone();
    assert_eq!(
        f64::from(config.guidance_scale),
        fixture["guidance_scale"].as_f64().unwrap(),
        "the engine's stage-1 guidance is the manifest's, the fixture's must be the same"
    );
    assert_eq!(config.num_frames, frames);

    // The same token ids as the reference pipeline's CLIPTokenizer.
    let set = engine.model_set();
    let tokenizer = ClipTokenizer::open(set, &set.manifest.tokenizers.text).expect("tokenizer");
    for (text, key) in [(prompt, "prompt_ids"), (negative, "negative_prompt_ids")] {
        assert_eq!(
            tokenizer.encode(text).unwrap().ids,
            ids(&fixture[key]),
            "{text:?}"
        );
    }

    let scratch = TempDir::new().unwrap();
    let latents_dir = scratch.path().join("latents");
    let mut p = GenerateParams::new(prompt, scratch.path().join("unused.gif"));
    p.frames = Some(frames);
    p.stage1_steps = Some(steps);
    p.enhance = None;
    p.init_noise = Some(fixture_dir().join("init_noise.npy"));
    p.save_latents = Some(latents_dir.clone());
    p.streaming.negative_prompt = negative.to_owned();
    let request: Request = GenerateRequest::new(&p, engine.model_set())
        .expect("a valid request")
        .into();

    let mut video = Vec::new();
    let mut push = |f: &Frame| -> Result<(), VideoError> {
        video.push(f.clone());
        Ok(())
    };
    let outputs = Outputs {
        video: &mut push,
        preview: None,
    };
    engine
        .run(&request, outputs, &NoProgress, &CancelToken::new())
        .expect("the run succeeds");
    assert_eq!(video.len(), frames, "16 frames are stage 1's chunk alone");

    let expected: Array5<f32> = read_npy(fixture_dir().join("latents.npy")).unwrap();
    let actual: ArrayD<f32> = read_npy(latents_dir.join("stage1_chunk000.npy")).unwrap();
    assert_eq!(actual.shape(), expected.shape());
    let error = relative_error(&actual, &expected);
    eprintln!(
        "stage-1 final latents: relative error {error:.3e} (max |reference| {:.3})",
        expected.iter().fold(0.0f32, |m, x| m.max(x.abs()))
    );
    assert!(
        error <= LATENT_RTOL,
        "stage-1 final latents differ from diffusers: relative error {error:.3e} > {LATENT_RTOL:.0e}"
    );

    let expected_frames: Array4<f32> = read_npy(fixture_dir().join("frames.npy")).unwrap();
    let indices: Vec<usize> = fixture["frame_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(expected_frames.len_of(Axis(0)), indices.len());
    let mut worst = 0.0f32;
    for (reference, &index) in expected_frames.outer_iter().zip(&indices) {
        let frame = video[index].pixels();
        assert_eq!(frame.shape(), reference.shape(), "frame {index}");
        worst = worst.max(max_abs_diff(frame, reference));
    }
    eprintln!("decoded frames {indices:?}: max abs diff {worst:.3e}");
    assert!(
        worst <= FRAME_ATOL,
        "decoded frames differ from diffusers: max abs diff {worst:.3e} > {FRAME_ATOL:.0e}"
    );
}

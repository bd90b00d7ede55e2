//! Stage-3 parity with modelscope's reference enhancer on the embedded tiny model set (the
//! parity test needs ONNX Runtime, as `st2v` finds it; the plan tests do not).
//!
//! Fixture: `tests/golden/stage3_parity/`, written by `tests/golden/gen_stage3_parity.py`: it
//! rebuilds the PyTorch enhancer modules behind `models/tiny` (checked against the committed
//! ONNX graphs) and runs modelscope's `GaussianDiffusion_SDEdit.sample` (DPM++ 2M SDE on the
//! logsnr_cosine_interp schedule, v-prediction, guidance 7.5 with rescale 0.2, 3 steps from
//! t = 599) with StreamingT2V's chunked x0 blending (24-frame chunks every 16 frames) on a
//! 40-frame video, with the engine's per-frame noise, SDE increments and blending offsets
//! injected. The engine's `Enhancer` runs the same video through the ONNX graphs and must give:
//! - the same caption / negative-prompt token ids (open_clip) and the same blending offsets;
//! - the same final latents (before the decoder's 1 / scaling_factor): relative error
//!   `max|engine - reference| / max|reference|` <= 1e-4;
//! - the same blended x0 at solver step 1, rebuilt from the engine's own UNet calls at that
//!   step (guidance, v-prediction and blending through the library): relative error <= 1e-4.
//!
//! The plan tests check the chunk geometry and the blending rule against the reference's rules
//! (`diffusion_sdedit.py` `model_fn`, `model_func.py` trimming) for 24/8 and a 200-frame video.

use std::path::{Path, PathBuf};

use ndarray::{s, Array3, Array4, Array5, Axis};
use ndarray_npy::read_npy;
use serde_json::Value;
use streamingt2v::manifest::ModelSet;
use streamingt2v::models::{ModelLoader, ModelResult, VaeDecoder, VideoUnet};
use streamingt2v::pipeline::conditioning::encode_text;
use streamingt2v::pipeline::noise::{frame_noise, NoiseStream};
use streamingt2v::pipeline::stage3::{Enhancer, Stage3Models};
use streamingt2v::pipeline::{EnhanceOptions, RunContext, TokenIds};
use streamingt2v::plan::{blend_offset, BlendSchedule, EnhancePlan};
use streamingt2v::progress::{CancelToken, NoProgress};
use streamingt2v::runtime::{EpConfig, OrtRuntime, SessionFactory};
use streamingt2v::sampling::{Dpmpp2mSde, Dpmpp2mSdeConfig, Guidance, Scheduler};
use streamingt2v::tokenizer::ClipTokenizer;
use streamingt2v::video::{Frame, VideoError};

/// Final latents and blended x0: max|engine - reference| / max|reference|.
const LATENT_RTOL: f32 = 1e-4;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_dir() -> PathBuf {
    root().join("tests/golden/stage3_parity")
}

fn params() -> Value {
    let path = fixture_dir().join("params.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn usize_of(value: &Value) -> usize {
    value.as_u64().expect("a non-negative integer") as usize
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
    let diff = actual
        .into_iter()
        .zip(expected)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// The fixture's input frames: each uint8 tile upsampled by repetition, divided by 255.
fn input_frames(fixture: &Value) -> Vec<Frame> {
    let tiles: Array4<u8> = read_npy(fixture_dir().join("frames.npy")).unwrap();
    let scale = usize_of(&fixture["tile_scale"]);
    let (_, th, tw, _) = tiles.dim();
    tiles
        .outer_iter()
        .map(|tile| {
            let pixels = Array3::from_shape_fn((th * scale, tw * scale, 3), |(y, x, c)| {
                f32::from(tile[[y / scale, x / scale, c]]) / 255.0
            });
            Frame::new(pixels).unwrap()
        })
        .collect()
}

/// One call of the enhancer UNet: its batched input (x * c_in), timesteps and output.
struct UnetCall {
    input: Array5<f32>,
    timesteps: Vec<i64>,
    output: Array5<f32>,
}

/// The ONNX UNet, recording every call.
struct RecordingUnet<'a> {
    inner: &'a mut dyn VideoUnet,
    calls: Vec<UnetCall>,
}

impl VideoUnet for RecordingUnet<'_> {
    fn run(
        &mut self,
        sample: &Array5<f32>,
        timestep: &[i64],
        context: &Array3<f32>,
    ) -> ModelResult<Array5<f32>> {
        let output = self.inner.run(sample, timestep, context)?;
        self.calls.push(UnetCall {
            input: sample.clone(),
            timesteps: timestep.to_vec(),
            output: output.clone(),
        });
        Ok(output)
    }
}

/// The ONNX VAE decoder, keeping the latents it is given (frame by frame, in frame order).
struct RecordingDecoder<'a> {
    inner: &'a mut dyn VaeDecoder,
    latents: Vec<Array4<f32>>,
}

impl VaeDecoder for RecordingDecoder<'_> {
    fn decode(&mut self, latents: &Array4<f32>) -> ModelResult<Array4<f32>> {
        self.latents.push(latents.clone());
        self.inner.decode(latents)
    }
}

#[test]
fn stage3_matches_modelscope_reference_enhancer() {
    let fixture = params();
    let seed = fixture["seed"].as_u64().unwrap();
    let steps = usize_of(&fixture["steps"]);
    let frames = usize_of(&fixture["frames"]);
    let x0_step = usize_of(&fixture["x0_step"]);

    let set = ModelSet::open(root().join("models/tiny")).expect("the tiny set opens");
    let config = set.manifest.pipeline.clone();
    let stage3 = &config.stage3;
    assert_eq!(
        (
            stage3.chunk_frames,
            stage3.overlap_frames,
            stage3.noise_timestep as usize
        ),
        (
            usize_of(&fixture["chunk_frames"]),
            usize_of(&fixture["overlap_frames"]),
            usize_of(&fixture["noise_timestep"])
        )
    );
    assert_eq!(
        (stage3.guidance_scale, stage3.guide_rescale),
        (
            fixture["guidance_scale"].as_f64().unwrap() as f32,
            fixture["guide_rescale"].as_f64().unwrap() as f32
        ),
        "the engine's stage-3 guidance is the manifest's, the fixture's must be the same"
    );

    // The noise keys: one probe value set tells a key-derivation mismatch from anything else.
    let probe = &fixture["noise_probe"];
    let (c, h, w) = (4, stage3.height / 8, stage3.width / 8);
    let noise = frame_noise(seed, NoiseStream::Sdedit, 0, 0, (c, h, w));
    let expected_probe: Vec<f32> = probe["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(
        noise
            .iter()
            .take(expected_probe.len())
            .copied()
            .collect::<Vec<_>>(),
        expected_probe,
        "frame_noise(seed, Sdedit, 0, 0) differs from the generator script's torch.randn"
    );

    // The same blending offsets as the reference run used.
    let plan = EnhancePlan::new(frames, stage3.chunk_frames, stage3.overlap_frames).unwrap();
    let starts: Vec<usize> = plan.chunks.iter().map(|c| c.start).collect();
    let expected_starts: Vec<usize> = fixture["chunk_starts"]
        .as_array()
        .unwrap()
        .iter()
        .map(usize_of)
        .collect();
    assert_eq!(starts, expected_starts);
    for (step, row) in fixture["blend_offsets"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        for (chunk, r) in row.as_array().unwrap().iter().enumerate() {
            let overlap = plan.chunks[chunk].overlap;
            assert_eq!(
                blend_offset(seed, chunk, step, overlap),
                usize_of(r),
                "blend offset of chunk {chunk} at step {step}"
            );
        }
    }

    // The same caption and negative-prompt token ids.
    let tokenizer = ClipTokenizer::open(
        &set,
        set.manifest
            .tokenizers
            .enhancer_text
            .as_ref()
            .expect("the tiny set has an enhancer tokenizer"),
    )
    .expect("tokenizer");
    let caption = fixture["caption"].as_str().unwrap();
    let negative = fixture["negative_prompt"].as_str().unwrap();
    let prompt_ids = ids(&fixture["prompt_ids"]);
    let negative_ids = ids(&fixture["negative_prompt_ids"]);
    assert_eq!(tokenizer.encode(caption).unwrap().ids, prompt_ids);
    assert_eq!(tokenizer.encode(negative).unwrap().ids, negative_ids);

    // The engine's stage 3 on the ONNX graphs, recording the UNet calls and decoder inputs.
    let runtime = OrtRuntime::load(None).expect("ONNX Runtime loads");
    let factory = SessionFactory::new(runtime, EpConfig::cpu());
    let mut models = ModelLoader::new(&set, &factory)
        .enhancer()
        .expect("the enhancer graphs open");
    let text = encode_text(
        &mut models.text_encoder,
        &TokenIds(prompt_ids),
        &TokenIds(negative_ids),
    )
    .expect("text encoder");
    let mut unet = RecordingUnet {
        inner: &mut models.unet,
        calls: Vec::new(),
    };
    let mut decoder = RecordingDecoder {
        inner: &mut models.vae_decoder,
        latents: Vec::new(),
    };
    let mut options = EnhanceOptions::from_config(&config);
    options.steps = steps;
    let input = input_frames(&fixture);
    assert_eq!(input.len(), frames);
    let cancel = CancelToken::new();
    let run = RunContext::new(&NoProgress, &cancel);
    let mut written = 0usize;
    let mut sink = |_: &Frame| -> Result<(), VideoError> {
        written += 1;
        Ok(())
    };
    let models3 = Stage3Models {
        unet: &mut unet,
        vae_encoder: &mut models.vae_encoder,
        vae_decoder: &mut decoder,
    };
    let mut enhancer =
        Enhancer::new(models3, &config, options, &text, frames, seed).expect("enhancer");
    for frame in &input {
        enhancer.push(frame, &run, &mut sink).expect("push");
    }
    enhancer.finish(&run, &mut sink).expect("finish");
    assert_eq!(written, frames);

    // Final latents: the decoder's inputs times the scaling factor.
    let expected: Array5<f32> = read_npy(fixture_dir().join("latents.npy")).unwrap();
    assert_eq!(decoder.latents.len(), frames);
    let mut actual = Array5::<f32>::zeros(expected.dim());
    for (f, latent) in decoder.latents.iter().enumerate() {
        actual.slice_mut(s![0, .., f, .., ..]).assign(
            &latent
                .index_axis(Axis(0), 0)
                .mapv(|v| v * config.vae_scaling_factor),
        );
    }
    let error = relative_error(&actual, &expected);
    eprintln!(
        "stage-3 final latents: relative error {error:.3e} (max |reference| {:.3})",
        expected.iter().fold(0.0f32, |m, x| m.max(x.abs()))
    );

    // Blended x0 at `x0_step`, from the engine's UNet calls at that step.
    let blended = engine_blended_x0(&unet.calls, &config, &plan, seed, steps, x0_step);
    let expected_x0: Array5<f32> = read_npy(fixture_dir().join("x0_step1.npy")).unwrap();
    assert_eq!(blended.shape(), expected_x0.shape());
    let x0_error = relative_error(&blended, &expected_x0);
    eprintln!("stage-3 blended x0 at step {x0_step}: relative error {x0_error:.3e}");

    assert!(
        x0_error <= LATENT_RTOL,
        "blended x0 at step {x0_step} differs from the reference: relative error \
         {x0_error:.3e} > {LATENT_RTOL:.0e}"
    );
    assert!(
        error <= LATENT_RTOL,
        "stage-3 final latents differ from the reference: relative error {error:.3e} > \
         {LATENT_RTOL:.0e}"
    );
}

/// The engine's blended x0 at `step`, rebuilt from its UNet calls: each call's guided output
/// becomes x0 from the call's own input (x * c_in), and the chunks are blended by the library's
/// [`BlendSchedule`]. A chunk's calls are told apart by their order within the step, checked by
/// the frames neighbouring chunks share (same frames, same step: identical inputs).
fn engine_blended_x0(
    calls: &[UnetCall],
    config: &streamingt2v::manifest::PipelineConfig,
    plan: &EnhancePlan,
    seed: u64,
    steps: usize,
    step: usize,
) -> Array5<f32> {
    let scheduler_config = Dpmpp2mSdeConfig::from_json(&config.stage3.scheduler.config).unwrap();
    let sampler = Dpmpp2mSde::new(scheduler_config, steps).unwrap();
    let timestep = sampler.model_timestep(step).unwrap();
    let at_step: Vec<&UnetCall> = calls
        .iter()
        .filter(|c| c.timesteps.iter().all(|&t| t == timestep))
        .collect();
    assert_eq!(
        calls.len(),
        plan.chunks.len() * steps,
        "one UNet call per chunk and step"
    );
    assert_eq!(
        at_step.len(),
        plan.chunks.len(),
        "calls at timestep {timestep}"
    );
    let guidance = Guidance::joint(config.stage3.guidance_scale)
        .with_rescale(config.stage3.guide_rescale)
        .unwrap();
    let (_, c, _, h, w) = at_step[0].input.dim();
    let mut x0 = Array5::<f32>::zeros((1, c, plan.padded_frames, h, w));
    let blend = BlendSchedule::new(plan, seed);
    for (chunk, call) in plan.chunks.iter().zip(&at_step) {
        if chunk.index > 0 {
            let previous = &at_step[chunk.index - 1];
            let shared = plan.chunks[chunk.index - 1].end - chunk.start;
            let prev_start = chunk.start - plan.chunks[chunk.index - 1].start;
            assert_eq!(
                previous
                    .input
                    .slice(s![.., .., prev_start..prev_start + shared, .., ..]),
                call.input.slice(s![.., .., ..shared, .., ..]),
                "calls at step {step} are not in chunk order"
            );
        }
        let guided = guidance.apply(call.output.view().into_dyn()).unwrap();
        let model_input = call.input.slice(s![0..1, .., .., .., ..]).to_owned();
        let chunk_x0 = sampler
            .denoised_from_model_input(guided.view(), step, model_input.view().into_dyn())
            .unwrap();
        blend
            .write_chunk_x0(
                chunk.index,
                step,
                chunk_x0.view(),
                x0.view_mut().into_dyn(),
                Axis(2),
            )
            .unwrap();
    }
    x0
}

// ---- chunk geometry and blending against the reference's rules -----------------------------

/// The reference's chunk starts (`diffusion_sdedit.py` `model_fn`): `cs = 0, 16, ...` while
/// `cs + chunk <= F`.
fn reference_starts(frames: usize, chunk: usize, overlap: usize) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut cs = 0;
    while cs + chunk <= frames {
        starts.push(cs);
        cs += chunk - overlap;
    }
    starts
}

/// Which chunk's x0 each frame takes at `step` under the reference's sequential overwrite
/// `x0[cs + r : cs + chunk] = D_c[r:]`, with r = 0 for the first chunk and `blend_offset`
/// otherwise (the engine's offsets replace Python's `random.randint(0, overlap - 1)`).
fn reference_owners(plan: &EnhancePlan, seed: u64, step: usize) -> Vec<usize> {
    let mut owner = vec![usize::MAX; plan.padded_frames];
    for (index, &cs) in reference_starts(plan.padded_frames, plan.chunk_frames, plan.overlap_frames)
        .iter()
        .enumerate()
    {
        let r = match cs {
            0 => 0,
            _ => blend_offset(seed, index, step, plan.overlap_frames),
        };
        for o in &mut owner[cs + r..cs + plan.chunk_frames] {
            *o = index;
        }
    }
    owner
}

#[test]
fn chunk_geometry_matches_the_reference_for_24_8() {
    for frames in [24, 40, 56, 200, 1192] {
        let plan = EnhancePlan::new(frames, 24, 8).unwrap();
        // The reference trims to n (chunk - overlap) + overlap frames: these lengths keep all.
        let n_chunks = (frames - 8) / 16;
        assert_eq!(
            n_chunks * 16 + 8,
            frames,
            "F={frames} is a reference length"
        );
        let starts = reference_starts(frames, 24, 8);
        assert_eq!(starts.len(), n_chunks);
        assert_eq!(plan.chunks.len(), n_chunks, "F={frames}");
        assert!(!plan.has_tail_chunk());
        assert_eq!(plan.padded_frames, frames);
        for (chunk, &cs) in plan.chunks.iter().zip(&starts) {
            assert_eq!((chunk.start, chunk.end), (cs, cs + 24), "F={frames}");
            match chunk.index {
                0 => assert_eq!(chunk.overlap, 0),
                _ => {
                    assert_eq!(chunk.overlap, 8, "F={frames} chunk {}", chunk.index);
                    assert_eq!(chunk.overlap_region(), cs..cs + 8);
                }
            }
        }
    }
}

#[test]
fn blending_follows_the_reference_overwrite_rule_on_a_long_video() {
    let plan = EnhancePlan::new(200, 24, 8).unwrap();
    let mut seen = [0usize; 8];
    for seed in [0, 33, 12345] {
        let blend = BlendSchedule::new(&plan, seed);
        for step in 0..30 {
            for chunk in &plan.chunks[1..] {
                let r = blend_offset(seed, chunk.index, step, chunk.overlap);
                assert!(
                    r < chunk.overlap,
                    "offset {r} outside [0, {})",
                    chunk.overlap
                );
                assert_eq!(blend.threshold(chunk.index, step), chunk.start + r);
                seen[r] += 1;
            }
            let owners = reference_owners(&plan, seed, step);
            let mut covered = vec![false; plan.padded_frames];
            for chunk in &plan.chunks {
                let owned = blend.owned_frames(chunk.index, step);
                for frame in owned.clone() {
                    assert!(!covered[frame], "frame {frame} owned twice at step {step}");
                    covered[frame] = true;
                }
                assert!(owned.start >= chunk.start && owned.end <= chunk.end);
            }
            assert!(covered.iter().all(|&c| c), "seed {seed} step {step}");
            for (frame, &expected) in owners.iter().enumerate() {
                assert_eq!(
                    blend.owner(frame, step),
                    expected,
                    "seed {seed} step {step} frame {frame}"
                );
                assert!(blend.owned_frames(expected, step).contains(&frame));
            }
        }
    }
    // 3 seeds x 30 steps x 11 offsets: every offset of 0..8 occurs, none dominates.
    let total: usize = seen.iter().sum();
    assert_eq!(total, 3 * 30 * 11);
    for (r, &count) in seen.iter().enumerate() {
        assert!(
            (count as f64) > 0.5 * total as f64 / 8.0 && (count as f64) < 1.5 * total as f64 / 8.0,
            "offset {r} drawn {count} times of {total}"
        );
    }
}

//! Pipeline behaviour with fake models (fast, no ONNX Runtime): frame counts, what the CAM and
//! APM are fed, reproducibility, cancellation, guidance batching and missing graphs. The fakes
//! live in `tests/common`.

use ndarray::{s, Array2, Array3, Array5, Axis};
use streamingt2v::models::{TextEncoder, VaeDecoder, VaeEncoder, VideoUnet};
use streamingt2v::pipeline::conditioning::TextEmbeddings;
use streamingt2v::pipeline::noise::{frame_noise, NoiseStream};
use streamingt2v::pipeline::stage3::Enhancer;
use streamingt2v::pipeline::{
    AnchorMode, EnhanceOptions, GenerateOptions, Outputs, Pipeline, PipelineError, PromptIds,
    RunContext, Stage2Guidance,
};
use streamingt2v::plan::{BlendSchedule, EnhancePlan, EnhancerGeometry};
use streamingt2v::progress::{CancelToken, NoProgress};
use streamingt2v::sampling::{build_scheduler, Guidance};
use streamingt2v::video::{Frame, FrameSize, SampleRange, VideoError};

mod common;
use common::*;

// ---- runs ----------------------------------------------------------------------------------

struct Generated {
    frames: Vec<Frame>,
    preview: Vec<Frame>,
    result: Result<usize, PipelineError>,
}

/// Runs `generate`, cancelling once `cancel_after` frames were written.
fn generate_with(
    fakes: &mut FakeStreaming,
    options: &GenerateOptions,
    cancel_after: Option<usize>,
) -> Generated {
    let config = config();
    let cancel = CancelToken::new();
    let mut frames = Vec::new();
    let mut preview = Vec::new();
    let mut collect = |frame: &Frame| -> Result<(), VideoError> {
        frames.push(frame.clone());
        if cancel_after.is_some_and(|n| frames.len() >= n) {
            cancel.cancel();
        }
        Ok(())
    };
    let mut collect_preview = |frame: &Frame| -> Result<(), VideoError> {
        preview.push(frame.clone());
        Ok(())
    };
    let mut run = RunContext::new(&NoProgress, &cancel);
    let (mut text, mut stage1) = (FakeText, FakeVideoUnet);
    let pipeline = Pipeline::new(&config)
        .with_streaming(fakes.graphs(&mut text, &mut stage1))
        .with_enhancer(enhancer_graphs());
    let outputs = Outputs {
        video: &mut collect,
        preview: Some(&mut collect_preview),
    };
    let result = pipeline
        .generate(
            &prompts(320),
            Some(&prompts(320)),
            options,
            None,
            &mut run,
            outputs,
        )
        .map(|summary| summary.frames_written);
    Generated {
        frames,
        preview,
        result,
    }
}

fn generate(options: &GenerateOptions) -> Generated {
    generate_with(&mut FakeStreaming::default(), options, None)
}

fn unit_chw(frame: &Frame) -> Array3<f32> {
    frame.to_chw(SampleRange::Unit)
}

#[test]
fn frame_counts_follow_the_chunk_arithmetic() {
    for (requested, expected) in [(16, 16), (24, 24), (31, 24), (48, 48), (50, 48)] {
        let run = generate(&options(requested, false));
        assert_eq!(run.result.unwrap(), expected, "--frames {requested}");
        assert_eq!(run.frames.len(), expected);
        assert_eq!(run.frames[0].size(), FrameSize::new(64, 64));
    }
}

#[test]
fn enhancement_keeps_every_frame_at_the_content_size() {
    for (requested, expected) in [(16, 16), (24, 24), (32, 32), (48, 48)] {
        let run = generate(&options(requested, true));
        assert_eq!(run.result.unwrap(), expected, "--frames {requested}");
        assert_eq!(run.frames.len(), expected);
        assert_eq!(run.preview.len(), expected);
        assert_eq!(run.frames[0].size(), FrameSize::new(80, 80));
        assert_eq!(run.preview[0].size(), FrameSize::new(64, 64));
    }
    let mut padded = options(24, true);
    padded.enhance.as_mut().unwrap().keep_padding = true;
    assert_eq!(generate(&padded).frames[0].size(), FrameSize::new(128, 80));
}

#[test]
fn cam_is_conditioned_on_the_last_frames_of_the_previous_chunk() {
    let mut fakes = FakeStreaming::default();
    let run = generate_with(&mut fakes, &options(40, false), None);
    assert_eq!(run.result.unwrap(), 40);
    let seen = fakes.cam_cond.seen.borrow();
    assert_eq!(seen.len(), 3, "E_cond runs once per generated chunk");
    for (k, cond) in seen.iter().enumerate() {
        // Chunk k+1 continues from output frames 8(k+1) .. 8(k+1)+8, given in [-1, 1].
        for (i, frame) in cond.outer_iter().enumerate() {
            let expected = unit_chw(&run.frames[8 * (k + 1) + i]).mapv(|x| 2.0 * x - 1.0);
            let diff = (&frame - &expected)
                .mapv(f32::abs)
                .fold(0.0f32, |a, &b| a.max(b));
            assert!(
                diff < 1e-5,
                "chunk {} cond frame {i}: max diff {diff}",
                k + 1
            );
        }
    }
}

#[test]
fn apm_anchor_is_frame_zero_or_the_previous_chunks_last_frame() {
    let mut fakes = FakeStreaming::default();
    let run = generate_with(&mut fakes, &options(32, false), None);
    let seen = fakes.image.seen.borrow();
    assert_eq!(
        seen.len(),
        1,
        "anchor and zero image are embedded once per video"
    );
    let anchor = unit_chw(&run.frames[0]).mapv(|x| 2.0 * x - 1.0);
    assert!((&seen[0].index_axis(Axis(0), 0) - &anchor)
        .iter()
        .all(|d| d.abs() < 1e-5));
    assert!(
        seen[0].index_axis(Axis(0), 1).iter().all(|&v| v == 0.0),
        "zero image"
    );

    let mut previous = options(32, false);
    previous.stage2.anchor = AnchorMode::PreviousChunk;
    let mut fakes = FakeStreaming::default();
    let run_prev = generate_with(&mut fakes, &previous, None);
    let seen = fakes.image.seen.borrow();
    assert_eq!(
        seen.len(),
        2,
        "one re-anchoring per generated chunk after the first"
    );
    for (call, frame) in [(0, 15), (1, 23)] {
        let last_of_previous = unit_chw(&run_prev.frames[frame]).mapv(|x| 2.0 * x - 1.0);
        let anchor = seen[call].index_axis(Axis(0), 0);
        assert!(
            (&anchor - &last_of_previous).iter().all(|d| d.abs() < 1e-5),
            "call {call}"
        );
    }
    assert_eq!(
        run.frames[..16],
        run_prev.frames[..16],
        "stage 1 has no anchor"
    );
    assert_ne!(
        run.frames[16..],
        run_prev.frames[16..],
        "the anchor changes later chunks"
    );
}

#[test]
fn same_seed_same_frames_other_seed_other_frames() {
    let first = generate(&options(32, true));
    let again = generate(&options(32, true));
    assert_eq!(first.frames, again.frames);
    assert_eq!(first.preview, again.preview);
    let mut other = options(32, true);
    other.seed = 34;
    assert_ne!(first.frames, generate(&other).frames);
}

#[test]
fn multi_condition_guidance_batches_three_conditions() {
    let mut multi = options(24, false);
    multi.stage2.guidance = Stage2Guidance::Multi {
        text_scale: 7.5,
        anchor_scale: 2.0,
    };
    let mut fakes = FakeStreaming::default();
    assert!(generate_with(&mut fakes, &multi, None).result.is_ok());
    assert_eq!(*fakes.unet.batches.borrow(), vec![3, 3]);

    let mut unguided = options(24, false);
    unguided.stage2.guidance = Stage2Guidance::Joint { scale: 1.0 };
    let mut fakes = FakeStreaming::default();
    assert!(generate_with(&mut fakes, &unguided, None).result.is_ok());
    assert_eq!(*fakes.unet.batches.borrow(), vec![1, 1]);
}

#[test]
fn cancellation_keeps_the_frames_written_so_far() {
    let mut fakes = FakeStreaming::default();
    let run = generate_with(&mut fakes, &options(48, false), Some(20));
    assert!(matches!(run.result, Err(PipelineError::Cancelled)));
    assert_eq!(
        run.frames.len(),
        24,
        "the chunk in flight is written whole, nothing after"
    );
    let full = generate(&options(48, false));
    assert_eq!(run.frames[..], full.frames[..24]);
}

#[test]
fn too_few_frames_is_an_error_naming_the_flag() {
    let run = generate(&options(8, false));
    let err = run.result.unwrap_err().to_string();
    assert!(err.contains("--frames") && err.contains("16"), "{err}");
    assert!(run.frames.is_empty());
}

#[test]
fn enhancing_without_enhancer_graphs_names_the_missing_graph() {
    let config = config();
    let cancel = CancelToken::new();
    let mut run = RunContext::new(&NoProgress, &cancel);
    let mut fakes = FakeStreaming::default();
    let (mut text, mut stage1) = (FakeText, FakeVideoUnet);
    let pipeline = Pipeline::new(&config).with_streaming(fakes.graphs(&mut text, &mut stage1));
    let mut sink = |_: &Frame| -> Result<(), VideoError> { Ok(()) };
    let outputs = Outputs {
        video: &mut sink,
        preview: None,
    };
    let err = pipeline
        .generate(
            &prompts(1),
            Some(&prompts(1)),
            &options(24, true),
            None,
            &mut run,
            outputs,
        )
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::MissingGraph { ref role, .. } if role == "enhancer_unet"),
        "{err}"
    );
}

#[test]
fn extend_continues_the_input_from_its_last_frames() {
    let config = config();
    let input: Vec<Frame> = (0..12)
        .map(|i| Frame::filled(FrameSize::new(64, 64), [i as f32 / 12.0, 0.5, 0.2]).unwrap())
        .collect();
    let cancel = CancelToken::new();
    let mut run = RunContext::new(&NoProgress, &cancel);
    let mut fakes = FakeStreaming::default();
    let (mut text, mut stage1) = (FakeText, FakeVideoUnet);
    let pipeline = Pipeline::new(&config).with_streaming(fakes.graphs(&mut text, &mut stage1));
    let mut frames = Vec::new();
    let mut sink = |f: &Frame| -> Result<(), VideoError> {
        frames.push(f.clone());
        Ok(())
    };
    let outputs = Outputs {
        video: &mut sink,
        preview: None,
    };
    let summary = pipeline
        .extend(
            &input,
            &prompts(5),
            None,
            &options(20, false),
            &mut run,
            outputs,
        )
        .unwrap();
    assert_eq!(
        summary.frames_written,
        12 + 16,
        "20 new frames round down to two chunks"
    );
    assert_eq!(frames[..12], input[..]);
    let first_cond = &fakes.cam_cond.seen.borrow()[0];
    let expected = input[4].to_chw(SampleRange::Signed);
    assert!((&first_cond.index_axis(Axis(0), 0) - &expected)
        .iter()
        .all(|d| d.abs() < 1e-6));
}

// ---- stage 3: the wavefront against a whole-video loop -----------------------------------

/// The reference algorithm written plainly: encode every frame, noise the whole video, and
/// at every step predict each chunk's x0, blend them, and step one solver over the video.
fn whole_video_enhance(
    input: &[Frame],
    prompt: &PromptIds,
    options: &EnhanceOptions,
    seed: u64,
) -> Vec<Frame> {
    let config = config();
    let plan = EnhancePlan::new(input.len(), options.chunk_frames, options.overlap_frames).unwrap();
    let geometry = EnhancerGeometry::from_stage3(&config.stage3).unwrap();
    let scaling = config.vae_scaling_factor;
    let mut solver = build_scheduler(&config.stage3.scheduler, options.steps, None).unwrap();
    let (c, h, w) = (4, 10, 16);
    let mut x = Array5::<f32>::zeros((1, c, plan.padded_frames, h, w));
    for f in 0..plan.padded_frames {
        let image = geometry
            .resize_and_pad(&input[plan.source_frame(f)])
            .unwrap();
        let moments = FakeEncoder
            .encode(&image.to_chw(SampleRange::Signed).insert_axis(Axis(0)))
            .unwrap();
        let eps = frame_noise(
            seed,
            NoiseStream::Posterior,
            0,
            plan.source_frame(f),
            (c, h, w),
        );
        let std = moments
            .logvar
            .index_axis(Axis(0), 0)
            .mapv(|lv| (0.5 * lv).exp());
        let clean = (&moments.mean.index_axis(Axis(0), 0) + &(&std * &eps)) * scaling;
        let noise = frame_noise(seed, NoiseStream::Sdedit, 0, f, (c, h, w));
        let noised = solver
            .add_noise(clean.view().into_dyn(), noise.view().into_dyn(), 599)
            .unwrap();
        x.slice_mut(s![0, .., f, .., ..]).assign(
            &solver
                .initial_sample(noised)
                .into_dimensionality::<ndarray::Ix3>()
                .unwrap(),
        );
    }
    let ids = Array2::from_shape_vec(
        (2, 77),
        prompt
            .negative
            .0
            .iter()
            .chain(&prompt.prompt.0)
            .copied()
            .collect(),
    )
    .unwrap();
    let context = FakeText.encode(&ids).unwrap();
    let guidance = Guidance::joint(options.guidance_scale)
        .with_rescale(options.guide_rescale)
        .unwrap();
    let blend = BlendSchedule::new(&plan, seed);
    for step in 0..options.steps {
        let mut x0 = Array5::<f32>::zeros(x.dim());
        for chunk in &plan.chunks {
            let sample = x
                .slice(s![.., .., chunk.start..chunk.end, .., ..])
                .to_owned();
            let input = solver
                .scale_model_input(sample.clone().into_dyn(), step)
                .unwrap();
            let input = input.into_dimensionality::<ndarray::Ix5>().unwrap();
            let batch = ndarray::concatenate(Axis(0), &[input.view(), input.view()]).unwrap();
            let t = solver.model_timestep(step).unwrap();
            let out = FakeVideoUnet.run(&batch, &[t, t], &context).unwrap();
            let guided = guidance.apply(out.into_dyn().view()).unwrap();
            let chunk_x0 = solver
                .predict_original(guided.view(), step, sample.view().into_dyn())
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
        let noise = solver.needs_noise(step).then(|| {
            let mut noise = Array5::<f32>::zeros(x.dim());
            for f in 0..plan.padded_frames {
                noise.slice_mut(s![0, .., f, .., ..]).assign(&frame_noise(
                    seed,
                    NoiseStream::Solver,
                    step + 1,
                    f,
                    (c, h, w),
                ));
            }
            noise
        });
        let out = solver
            .step_denoised(
                x0.view().into_dyn(),
                step,
                x.view().into_dyn(),
                noise.as_ref().map(|n| n.view().into_dyn()),
            )
            .unwrap();
        x = out.prev_sample.into_dimensionality().unwrap();
    }
    (0..plan.frames)
        .map(|f| {
            let latent = x
                .slice(s![0, .., f..f + 1, .., ..])
                .permuted_axes([1, 0, 2, 3])
                .mapv(|v| v / scaling);
            let image = FakeDecoder
                .decode(&latent)
                .unwrap()
                .mapv(|v| (v * 0.5 + 0.5).clamp(0.0, 1.0));
            let frame = Frame::from_chw(image.index_axis(Axis(0), 0), SampleRange::Unit).unwrap();
            geometry.crop_content(&frame).unwrap()
        })
        .collect()
}

fn enhance(input: &[Frame], prompt: &PromptIds, options: &EnhanceOptions, seed: u64) -> Vec<Frame> {
    let config = config();
    let cancel = CancelToken::new();
    let mut run = RunContext::new(&NoProgress, &cancel);
    let mut frames = Vec::new();
    let mut sink = |f: &Frame| -> Result<(), VideoError> {
        frames.push(f.clone());
        Ok(())
    };
    Pipeline::new(&config)
        .with_enhancer(enhancer_graphs())
        .enhance(input, prompt, options, seed, &mut run, &mut sink)
        .unwrap();
    frames
}

fn test_video(frames: usize) -> Vec<Frame> {
    (0..frames)
        .map(|i| {
            let pixels = Array3::from_shape_fn((64, 64, 3), |(y, x, c)| {
                ((i * 7 + y + 2 * x + 5 * c) % 64) as f32 / 63.0
            });
            Frame::new(pixels).unwrap()
        })
        .collect()
}

#[test]
fn wavefront_enhancement_equals_the_whole_video_loop() {
    let mut options = EnhanceOptions::from_config(&config());
    options.steps = 3;
    // 56 frames: three regular chunks; 50: a tail chunk with a larger overlap; 20: padding.
    for frames in [56, 50, 20] {
        let input = test_video(frames);
        let streamed = enhance(&input, &prompts(7), &options, 33);
        let reference = whole_video_enhance(&input, &prompts(7), &options, 33);
        assert_eq!(streamed.len(), frames);
        assert_eq!(streamed, reference, "{frames} frames");
    }
}

#[test]
fn enhanced_frames_stream_out_before_the_input_ends() {
    let config = config();
    let mut options = EnhanceOptions::from_config(&config);
    options.steps = 2;
    let cancel = CancelToken::new();
    let run = RunContext::new(&NoProgress, &cancel);
    let text = TextEmbeddings {
        cond: Array3::zeros((1, 77, DIM)),
        uncond: Array3::zeros((1, 77, DIM)),
    };
    let graphs = enhancer_graphs();
    let mut enhancer = Enhancer::new(graphs.stage3, &config, options, &text, 160, 1).unwrap();
    let mut written = 0usize;
    let mut sink = |_: &Frame| -> Result<(), VideoError> {
        written += 1;
        Ok(())
    };
    for frame in test_video(160).iter().take(100) {
        enhancer.push(frame, &run, &mut sink).unwrap();
    }
    assert!(
        written >= 48,
        "only {written} of the first 100 frames were final"
    );
}

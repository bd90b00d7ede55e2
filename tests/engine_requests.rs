//! Request validation through the library API, with no model loaded and no ONNX Runtime: every
//! checked field of generate, extend and enhance requests is refused with an error naming that
//! field, its expected and its actual value, and nothing is written.

use std::path::{Path, PathBuf};

use ndarray::Array5;
use streamingt2v::engine::{
    EnhanceParams, EnhanceRequest, ExtendParams, ExtendRequest, Field, GenerateParams,
    GenerateRequest, GuidanceKind, RequestError, Stage3Params, MAX_FRAMES,
};
use streamingt2v::manifest::ModelSet;
use streamingt2v::pipeline::Stage2Guidance;
use streamingt2v::video::{open_sink, Frame, FrameSize, OutputFormat};
use tempfile::TempDir;

fn tiny() -> ModelSet {
    ModelSet::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny")).unwrap()
}

/// A directory of `count` grey 64x64 PNG frames, readable as an input video.
fn png_video(dir: &Path, name: &str, count: usize) -> PathBuf {
    let path = dir.join(name);
    let size = FrameSize::new(64, 64);
    let mut sink = open_sink(&path, Some(OutputFormat::PngDir), 8, size).unwrap();
    for _ in 0..count {
        sink.write(&Frame::filled(size, [0.5, 0.5, 0.5]).unwrap())
            .unwrap();
    }
    sink.finish().unwrap();
    path
}

fn npy(dir: &Path, name: &str, noise: Array5<f32>) -> PathBuf {
    let path = dir.join(name);
    ndarray_npy::write_npy(&path, &noise).unwrap();
    path
}

fn assert_refused(result: Result<impl std::fmt::Debug, RequestError>, field: Field, case: &str) {
    let err = result.expect_err(case);
    assert_eq!(err.field(), field, "{case}: {err}");
    let message = err.to_string();
    assert!(
        message.starts_with(field.flag()),
        "{case}: the message names {}: {message}",
        field.flag()
    );
}

#[test]
fn every_generate_field_is_checked_before_any_model_loads() {
    let set = tiny();
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.mp4");
    let base = GenerateParams::new("a cat", &out);
    let shape = [1, 4, 16, 8, 8];
    let wrong_shape = npy(dir.path(), "wrong.npy", Array5::zeros((1, 4, 16, 4, 4)));
    let mut nan = Array5::zeros(shape);
    nan[[0, 1, 2, 3, 4]] = f32::NAN;
    let nan = npy(dir.path(), "nan.npy", nan);
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, b"x").unwrap();

    type Edit = Box<dyn Fn(&mut GenerateParams)>;
    let cases: Vec<(&str, Field, Edit)> = vec![
        (
            "blank prompt",
            Field::Prompt,
            Box::new(|p| p.prompt = " \t".into()),
        ),
        (
            "too few frames",
            Field::Frames,
            Box::new(|p| p.frames = Some(8)),
        ),
        (
            "more frames than the bound",
            Field::Frames,
            Box::new(|p| p.frames = Some(MAX_FRAMES + 1)),
        ),
        (
            "zero steps",
            Field::Steps,
            Box::new(|p| p.streaming.steps = Some(0)),
        ),
        (
            "more steps than training timesteps",
            Field::Steps,
            Box::new(|p| p.streaming.steps = Some(5000)),
        ),
        (
            "zero stage-1 steps",
            Field::Stage1Steps,
            Box::new(|p| p.stage1_steps = Some(0)),
        ),
        (
            "zero enhancer steps",
            Field::EnhanceSteps,
            Box::new(|p| p.enhance.as_mut().unwrap().steps = Some(0)),
        ),
        (
            "NaN guidance",
            Field::GuidanceScale,
            Box::new(|p| p.streaming.guidance.scale = Some(f32::NAN)),
        ),
        (
            "negative guidance",
            Field::GuidanceScale,
            Box::new(|p| p.streaming.guidance.scale = Some(-1.0)),
        ),
        (
            "text scale with joint guidance",
            Field::TextScale,
            Box::new(|p| p.streaming.guidance.text_scale = Some(5.0)),
        ),
        (
            "infinite text scale",
            Field::TextScale,
            Box::new(|p| {
                p.streaming.guidance.kind = GuidanceKind::Multi;
                p.streaming.guidance.text_scale = Some(f32::INFINITY);
            }),
        ),
        (
            "NaN anchor scale",
            Field::AnchorScale,
            Box::new(|p| {
                p.streaming.guidance.kind = GuidanceKind::Multi;
                p.streaming.guidance.anchor_scale = Some(f32::NAN);
            }),
        ),
        (
            "chunk the enhancer graph cannot take",
            Field::Chunk,
            Box::new(|p| p.enhance.as_mut().unwrap().chunk = Some(16)),
        ),
        (
            "overlap as long as the chunk",
            Field::Overlap,
            Box::new(|p| p.enhance.as_mut().unwrap().overlap = Some(24)),
        ),
        ("zero fps", Field::Fps, Box::new(|p| p.output.fps = 0)),
        (
            "unknown output extension",
            Field::Out,
            Box::new(|p| p.output.out = p.output.out.with_extension("avi")),
        ),
        (
            "output in a missing directory",
            Field::Out,
            Box::new(|p| p.output.out = PathBuf::from("/nonexistent-dir/x.mp4")),
        ),
        (
            "preview with an unknown extension",
            Field::PreviewOut,
            Box::new(|p| p.preview_out = Some(PathBuf::from("preview.avi"))),
        ),
        (
            "missing init noise",
            Field::InitNoise,
            Box::new(|p| p.init_noise = Some(PathBuf::from("/nonexistent/noise.npy"))),
        ),
        (
            "init noise of the wrong shape",
            Field::InitNoise,
            Box::new(move |p| p.init_noise = Some(wrong_shape.clone())),
        ),
        (
            "init noise with NaN",
            Field::InitNoise,
            Box::new(move |p| p.init_noise = Some(nan.clone())),
        ),
        (
            "latent directory that is a file",
            Field::SaveLatents,
            Box::new(move |p| p.save_latents = Some(a_file.clone())),
        ),
    ];
    for (case, field, edit) in cases {
        let mut params = base.clone();
        edit(&mut params);
        assert_refused(GenerateRequest::new(&params, &set), field, case);
    }
    assert!(!out.exists(), "validation writes nothing");
    assert!(!dir.path().join("out.stage2.mp4").exists());
}

#[test]
fn valid_generate_values_become_the_pipeline_options() {
    let set = tiny();
    let dir = TempDir::new().unwrap();
    let mut params = GenerateParams::new("a cat", dir.path().join("cat.gif"));
    params.frames = Some(30);
    params.streaming.steps = Some(3);
    params.streaming.seed = 7;
    params.streaming.guidance.kind = GuidanceKind::Multi;
    params.streaming.guidance.text_scale = Some(6.0);
    params.enhance = None;
    let request = GenerateRequest::new(&params, &set).unwrap();
    assert_eq!(request.plan().stage2_frames, 24, "30 rounds down to 16 + 8");
    let options = request.options();
    assert_eq!((options.stage2.steps, options.seed), (3, 7));
    assert_eq!(options.stage1.steps, 50, "the manifest's default");
    assert_eq!(
        options.stage2.guidance,
        Stage2Guidance::Multi {
            text_scale: 6.0,
            anchor_scale: 7.5
        },
        "the anchor scale defaults to the manifest's joint scale"
    );
    assert!(options.enhance.is_none());
    assert!(
        request.output().stage2.is_none(),
        "no side file without stage 3"
    );
    assert_eq!(request.output().size, FrameSize::new(64, 64));

    params.enhance = Some(Stage3Params::default());
    let request = GenerateRequest::new(&params, &set).unwrap();
    let (side, size) = request.output().stage2.clone().unwrap();
    assert!(side.side_file);
    assert_eq!(side.target.path, dir.path().join("cat.stage2.gif"));
    assert_eq!(size, FrameSize::new(64, 64));
    assert_eq!(
        request.output().size,
        FrameSize::new(80, 80),
        "content size"
    );
}

#[test]
fn extend_and_enhance_check_their_inputs() {
    let set = tiny();
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.mp4");
    let short = png_video(dir.path(), "short", 4);
    let video = png_video(dir.path(), "video", 16);

    let cases: Vec<(&str, Field, ExtendParams)> = vec![
        (
            "missing input",
            Field::Input,
            ExtendParams::new(dir.path().join("missing.mp4"), "a cat", &out),
        ),
        (
            "input shorter than the CAM's conditioning frames",
            Field::Input,
            ExtendParams::new(&short, "a cat", &out),
        ),
        (
            "blank prompt",
            Field::Prompt,
            ExtendParams::new(&video, "", &out),
        ),
        ("less than one chunk", Field::Frames, {
            let mut p = ExtendParams::new(&video, "a cat", &out);
            p.frames = Some(4);
            p
        }),
    ];
    for (case, field, params) in cases {
        assert_refused(ExtendRequest::new(&params, &set), field, case);
    }
    let request = ExtendRequest::new(&ExtendParams::new(&video, "a cat", &out), &set).unwrap();
    assert_eq!(request.input().len(), 16);

    let mut params = EnhanceParams::new(&video, "a cat", &out);
    params.stage3.overlap = Some(30);
    assert_refused(
        EnhanceRequest::new(&params, &set),
        Field::Overlap,
        "overlap",
    );
    params.stage3.overlap = None;
    params.output.fps = 0;
    assert_refused(EnhanceRequest::new(&params, &set), Field::Fps, "fps");
    params.output.fps = 8;
    let request = EnhanceRequest::new(&params, &set).unwrap();
    assert_eq!(
        request.output().stage2,
        None,
        "enhance writes no stage-2 copy"
    );
    assert!(!out.exists());
}

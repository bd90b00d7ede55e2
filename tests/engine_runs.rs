//! The library engine on the embedded tiny model set (needs ONNX Runtime, as `st2v` finds it):
//! sessions load lazily per stage, once per engine, and a second run on the same engine gives
//! the frames a fresh engine gives.

use std::path::{Path, PathBuf};

use streamingt2v::engine::{
    Engine, EnhanceParams, EnhanceRequest, GenerateParams, GenerateRequest, Request,
    RuntimeSettings,
};
use streamingt2v::pipeline::Outputs;
use streamingt2v::progress::{CancelToken, NoProgress};
use streamingt2v::video::{Frame, VideoError};
use tempfile::TempDir;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny")
}

fn engine() -> Engine {
    Engine::open(&tiny(), RuntimeSettings::cpu()).expect("the tiny set opens")
}

/// A 24-frame request at 2 steps per stage.
fn generate_params(out: &Path, enhance: bool) -> GenerateParams {
    let mut params = GenerateParams::new("a red ball bouncing", out);
    params.frames = Some(24);
    params.stage1_steps = Some(2);
    params.streaming.steps = Some(2);
    params.streaming.seed = 5;
    match enhance {
        true => params.enhance.as_mut().unwrap().steps = Some(2),
        false => params.enhance = None,
    }
    params
}

/// Runs `request` and returns the output frames and the preview frames, in memory.
fn frames_of(engine: &mut Engine, request: &Request) -> (Vec<Frame>, Vec<Frame>) {
    let mut video = Vec::new();
    let mut preview = Vec::new();
    let mut push_video = |f: &Frame| -> Result<(), VideoError> {
        video.push(f.clone());
        Ok(())
    };
    let mut push_preview = |f: &Frame| -> Result<(), VideoError> {
        preview.push(f.clone());
        Ok(())
    };
    let outputs = Outputs {
        video: &mut push_video,
        preview: Some(&mut push_preview),
    };
    let summary = engine
        .run(request, outputs, &NoProgress, &CancelToken::new())
        .expect("the run succeeds");
    assert_eq!(summary.frames_written, video.len());
    (video, preview)
}

#[test]
fn a_second_run_reuses_the_sessions_and_equals_a_fresh_engine() {
    let dir = TempDir::new().unwrap();
    let params = generate_params(&dir.path().join("unused.mp4"), true);
    let mut first = engine();
    assert_eq!(
        first.sessions_opened(),
        0,
        "opening a model set loads no graph"
    );
    let request: Request = GenerateRequest::new(&params, first.model_set())
        .unwrap()
        .into();
    let (video_a, preview_a) = frames_of(&mut first, &request);
    let opened = first.sessions_opened();
    assert_eq!(
        opened, 12,
        "stages 1, 2 and 3: every graph but the stage-2 VAE encoder"
    );
    let (video_b, preview_b) = frames_of(&mut first, &request);
    assert_eq!(
        first.sessions_opened(),
        opened,
        "no session is loaded twice"
    );

    let mut fresh = engine();
    let (video_c, preview_c) = frames_of(&mut fresh, &request);
    assert_eq!((video_a.len(), preview_a.len()), (24, 24));
    assert!(
        video_a == video_b,
        "second run on one engine differs from the first"
    );
    assert!(
        video_a == video_c,
        "a reused engine differs from a fresh one"
    );
    assert!(preview_a == preview_b && preview_a == preview_c);
}

#[test]
fn stages_load_lazily_and_files_are_written() {
    let dir = TempDir::new().unwrap();
    let mut engine = engine();
    let frames_dir = dir.path().join("stage2");
    let request: Request =
        GenerateRequest::new(&generate_params(&frames_dir, false), engine.model_set())
            .unwrap()
            .into();
    let written = engine
        .run_to_files(&request, &NoProgress, &CancelToken::new())
        .unwrap();
    assert_eq!(written.output.frames, 24);
    assert_eq!(written.output.path, frames_dir);
    assert_eq!(engine.sessions_opened(), 8, "stages 1 and 2 only");

    let mut params =
        EnhanceParams::new(&frames_dir, "a red ball bouncing", dir.path().join("x.gif"));
    params.stage3.steps = Some(2);
    let enhance: Request = EnhanceRequest::new(&params, engine.model_set())
        .unwrap()
        .into();
    let written = engine
        .run_to_files(&enhance, &NoProgress, &CancelToken::new())
        .unwrap();
    assert_eq!(written.output.frames, 24);
    assert!(written.preview.is_none());
    assert_eq!(
        engine.sessions_opened(),
        12,
        "the enhancer's four graphs added"
    );

    let enhanced: Request = GenerateRequest::new(
        &generate_params(&dir.path().join("y.mp4"), true),
        engine.model_set(),
    )
    .unwrap()
    .into();
    engine
        .run_to_files(&enhanced, &NoProgress, &CancelToken::new())
        .unwrap();
    assert_eq!(
        engine.sessions_opened(),
        12,
        "everything was loaded already"
    );
    assert!(
        !dir.path().join("y.stage2.mp4").exists(),
        "the side file is removed after a successful run"
    );
}

#[test]
fn stage2_seed_reseeds_stage_2_alone() {
    let dir = TempDir::new().unwrap();
    let mut engine = engine();
    let mut run_with = |stage2_seed: Option<u64>| {
        let mut params = generate_params(&dir.path().join("unused.gif"), false);
        params.streaming.stage2_seed = stage2_seed;
        let request: Request = GenerateRequest::new(&params, engine.model_set())
            .unwrap()
            .into();
        frames_of(&mut engine, &request).0
    };
    let default = run_with(None);
    let same = run_with(Some(5));
    let reference = run_with(Some(33));
    assert!(default == same, "the stage-2 seed defaults to --seed (5)");
    assert_eq!(default.len(), 24);
    assert!(
        default[..16] == reference[..16],
        "stage 1 (the first 16 frames) keeps --seed"
    );
    assert!(
        default[16..] != reference[16..],
        "stage 2's frames follow its own seed"
    );
}

#[test]
fn a_prompt_schedule_changes_only_the_chunks_from_its_frame() {
    let dir = TempDir::new().unwrap();
    let mut engine = engine();
    let mut run_with = |frames: usize, enhance: bool, edit: &dyn Fn(&mut GenerateParams)| {
        let mut params = generate_params(&dir.path().join("unused.gif"), enhance);
        params.frames = Some(frames);
        edit(&mut params);
        let request: Request = GenerateRequest::new(&params, engine.model_set())
            .unwrap()
            .into();
        frames_of(&mut engine, &request).0
    };
    // One prompt through the schedule path (what the server runs) equals the plain path.
    let plain = run_with(24, true, &|_| {});
    let steerable = run_with(24, true, &|p| p.steerable = true);
    assert!(
        plain == steerable,
        "a steerable job with one prompt is bit-identical"
    );

    let plain = run_with(32, false, &|_| {});
    let scheduled = run_with(32, false, &|p| {
        p.prompt_schedule = vec![(24, "a blue whale in deep water".into())];
    });
    assert!(
        plain[..24] == scheduled[..24],
        "frames before 24 keep the first prompt"
    );
    assert!(
        plain[24..] != scheduled[24..],
        "the chunk from frame 24 follows the new prompt"
    );

    let refused = |schedule: Vec<(usize, String)>| {
        let mut params = generate_params(&dir.path().join("x.gif"), false);
        params.frames = Some(32);
        params.prompt_schedule = schedule;
        GenerateRequest::new(&params, engine.model_set())
            .unwrap_err()
            .field()
    };
    use streamingt2v::engine::Field;
    assert_eq!(refused(vec![(0, "x".into())]), Field::PromptSchedule);
    assert_eq!(
        refused(vec![(24, "x".into()), (16, "y".into())]),
        Field::PromptSchedule
    );
    assert_eq!(
        refused(vec![(40, "x".into())]),
        Field::PromptSchedule,
        "beyond the video"
    );
    assert_eq!(refused(vec![(24, " ".into())]), Field::PromptSchedule);
}

#[test]
fn cancelling_reaches_a_running_graph_and_the_engine_runs_again() {
    use streamingt2v::engine::ErrorKind;
    use streamingt2v::models::Role;
    use streamingt2v::progress::{ProgressEvent, Stage};
    let dir = TempDir::new().unwrap();
    let mut engine = engine();
    let params = generate_params(&dir.path().join("unused.gif"), false);
    let request: Request = GenerateRequest::new(&params, engine.model_set())
        .unwrap()
        .into();
    engine.load(&request).unwrap();
    fn run(
        engine: &mut Engine,
        request: &Request,
        progress: &dyn streamingt2v::progress::ProgressSink,
        cancel: &CancelToken,
    ) -> Result<streamingt2v::pipeline::RunSummary, streamingt2v::engine::EngineError> {
        let discard = |_: &Frame| -> Result<(), VideoError> { Ok(()) };
        let (mut video, mut preview) = (discard, discard);
        let outputs = Outputs {
            video: &mut video,
            preview: Some(&mut preview),
        };
        engine.run(request, outputs, progress, cancel)
    }
    // What a cancel does to a graph in progress: its run options are terminated.
    let unet = engine
        .graphs_mut()
        .into_iter()
        .find(|g| g.role() == Role::Unet)
        .unwrap()
        .terminator();
    unet.terminate().unwrap();
    let err = run(&mut engine, &request, &NoProgress, &CancelToken::new()).unwrap_err();
    assert!(err.to_string().contains("unet"), "{err}");

    let cancel = CancelToken::new();
    let trigger = cancel.clone();
    let cancel_in_stage2 = move |event: &ProgressEvent| {
        if let ProgressEvent::Step {
            stage: Stage::Streaming,
            ..
        } = event
        {
            trigger.cancel();
        }
    };
    let err = run(&mut engine, &request, &cancel_in_stage2, &cancel).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    let (video, _) = frames_of(&mut engine, &request);
    assert_eq!(video.len(), 24, "the sessions run again after a cancel");
}

#[test]
fn decoding_in_slices_gives_the_frames_of_whole_chunk_decoding() {
    let dir = TempDir::new().unwrap();
    let params = generate_params(&dir.path().join("unused.gif"), false);
    let mut whole = engine();
    let request: Request = GenerateRequest::new(&params, whole.model_set())
        .unwrap()
        .into();
    let expected = frames_of(&mut whole, &request).0;
    let mut settings = RuntimeSettings::cpu();
    settings.decode_batch = Some(3);
    let mut sliced = Engine::open(&tiny(), settings).expect("the tiny set opens");
    let actual = frames_of(&mut sliced, &request).0;
    assert_close(&actual, &expected, 1e-5);
}

#[test]
fn enhancer_chunks_batched_in_one_call_give_the_frames_of_one_at_a_time() {
    let dir = TempDir::new().unwrap();
    let mut params = generate_params(&dir.path().join("unused.gif"), true);
    params.frames = Some(56); // three enhancer chunks, ready together at the end
    let mut engine = engine();
    let one: Request = GenerateRequest::new(&params, engine.model_set())
        .unwrap()
        .into();
    let expected = frames_of(&mut engine, &one).0;
    let calls_one = enhancer_calls(&mut engine);
    params.enhance.as_mut().unwrap().batch = Some(3);
    let batched: Request = GenerateRequest::new(&params, engine.model_set())
        .unwrap()
        .into();
    let actual = frames_of(&mut engine, &batched).0;
    let calls_batched = enhancer_calls(&mut engine);
    assert!(
        calls_batched < calls_one,
        "{calls_batched} calls, one at a time {calls_one}"
    );
    assert_eq!(actual.len(), 56);
    assert_close(&actual, &expected, 1e-5);
    params.enhance.as_mut().unwrap().batch = Some(0);
    let err = GenerateRequest::new(&params, engine.model_set()).unwrap_err();
    assert!(err.to_string().contains("--enhance-batch"), "{err}");
}

/// Enhancer UNet calls since the last look.
fn enhancer_calls(engine: &mut Engine) -> usize {
    let graphs = engine.graphs_mut();
    let unet = graphs
        .into_iter()
        .find(|g| g.role().name() == "enhancer_unet");
    unet.expect("stage 3 ran").take_calls().calls()
}

/// Every pixel of `actual` within `tolerance` of `expected`.
fn assert_close(actual: &[Frame], expected: &[Frame], tolerance: f32) {
    assert_eq!(actual.len(), expected.len());
    for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
        let worst = a
            .pixels()
            .iter()
            .zip(e.pixels().iter())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= tolerance, "frame {index} differs by {worst}");
    }
}

//! Stage 2 resumed from a saved [`StreamerState`] continues bit for bit: the chunks after the
//! state equal those of a streamer that never stopped (the basis of job checkpoints), in both
//! anchor modes. Fake models (no ONNX Runtime).

use ndarray::{Array3, Array4};
use streamingt2v::models::TextEncoder;
use streamingt2v::pipeline::conditioning::TextEmbeddings;
use streamingt2v::pipeline::options::Stage2Options;
use streamingt2v::pipeline::stage2::{StreamStart, Streamer, StreamerState};
use streamingt2v::pipeline::{AnchorMode, RunContext};
use streamingt2v::progress::{CancelToken, NoProgress};

mod common;
use common::*;

fn text() -> TextEmbeddings {
    let ids = |p: &streamingt2v::pipeline::PromptIds| {
        let prompt = ndarray::Array2::from_shape_vec((1, 77), p.prompt.0.clone()).unwrap();
        let negative = ndarray::Array2::from_shape_vec((1, 77), p.negative.0.clone()).unwrap();
        (prompt, negative)
    };
    let (prompt, negative) = ids(&prompts(320));
    TextEmbeddings {
        cond: FakeText.encode(&prompt).unwrap(),
        uncond: FakeText.encode(&negative).unwrap(),
    }
}

fn start() -> StreamStart {
    let frame =
        |f: usize, c: usize, y: usize, x: usize| ((f * 7 + c * 3 + y + 2 * x) % 17) as f32 / 17.0;
    StreamStart {
        anchor: Array3::from_shape_fn((3, 64, 64), |(c, y, x)| frame(0, c, y, x)),
        cond_frames: Array4::from_shape_fn((8, 3, 64, 64), |(f, c, y, x)| frame(f + 8, c, y, x)),
    }
}

fn stage2_options(anchor: AnchorMode) -> Stage2Options {
    let mut stage2 = options(48, false).stage2;
    stage2.anchor = anchor;
    stage2
}

/// Chunks 1..=`chunks` of one streamer, and the state after chunk `save_after`.
fn stream(
    anchor: AnchorMode,
    chunks: usize,
    save_after: usize,
) -> (Vec<Array4<f32>>, StreamerState) {
    let config = config();
    let (mut fakes, mut text_model, mut stage1) =
        (FakeStreaming::default(), FakeText, FakeVideoUnet);
    let graphs = fakes.graphs(&mut text_model, &mut stage1);
    let options = stage2_options(anchor);
    let mut streamer = Streamer::new(graphs.stage2, &config, options, text(), start(), 33).unwrap();
    let cancel = CancelToken::new();
    let mut run = RunContext::new(&NoProgress, &cancel);
    let mut frames = Vec::new();
    let mut saved = None;
    for chunk in 1..=chunks {
        frames.push(streamer.next_chunk(chunk, &mut run).unwrap());
        if chunk == save_after {
            saved = Some(streamer.state());
        }
    }
    (frames, saved.expect("a chunk to save after"))
}

#[test]
fn a_resumed_streamer_generates_the_same_chunks() {
    for anchor in [AnchorMode::First, AnchorMode::PreviousChunk] {
        let (straight, state) = stream(anchor, 4, 2);
        let config = config();
        let (mut fakes, mut text_model, mut stage1) =
            (FakeStreaming::default(), FakeText, FakeVideoUnet);
        let graphs = fakes.graphs(&mut text_model, &mut stage1);
        let options = stage2_options(anchor);
        let mut resumed = Streamer::resume(graphs.stage2, &config, options, text(), state).unwrap();
        let cancel = CancelToken::new();
        let mut run = RunContext::new(&NoProgress, &cancel);
        for chunk in 3..=4 {
            let frames = resumed.next_chunk(chunk, &mut run).unwrap();
            assert_eq!(frames, straight[chunk - 1], "{anchor:?}: chunk {chunk}");
        }
        // The comparison means something: consecutive chunks differ.
        assert_ne!(straight[2], straight[3]);
    }
}

#[test]
fn a_state_of_the_wrong_geometry_is_refused() {
    let (_, mut state) = stream(AnchorMode::First, 1, 1);
    state.cond_frames = Array4::zeros((4, 3, 64, 64));
    let config = config();
    let (mut fakes, mut text_model, mut stage1) =
        (FakeStreaming::default(), FakeText, FakeVideoUnet);
    let graphs = fakes.graphs(&mut text_model, &mut stage1);
    let result = Streamer::resume(
        graphs.stage2,
        &config,
        options(48, false).stage2,
        text(),
        state,
    );
    let message = result.err().expect("refused").to_string();
    assert!(message.contains("saved conditioning frames"), "{message}");
}

//! Per-frame and per-prompt costs outside the graphs: tokenization, frame conversion between
//! the pipeline's (3, H, W) tensors and RGB8, and encoding one frame into each output format.
//! Run with `cargo bench --bench io`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ndarray::Array3;
use streamingt2v::manifest::ModelSet;
use streamingt2v::tokenizer::ClipTokenizer;
use streamingt2v::video::{open_sink, Frame, FrameSize, OutputFormat, SampleRange};

fn frame(width: usize, height: usize) -> Frame {
    let pixels = Array3::from_shape_fn((height, width, 3), |(y, x, c)| {
        ((y * 7 + x * 3 + c * 50) % 256) as f32 / 255.0
    });
    Frame::new(pixels).expect("a valid frame")
}

fn tokenization(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny");
    let set = ModelSet::open(dir).expect("the tiny set opens");
    let tokenizer = ClipTokenizer::open(&set, &set.manifest.tokenizers.text).expect("tokenizer");
    let prompt = "A cat running on the street, cinematic lighting, 4k, highly detailed";
    c.bench_function("tokenize_prompt", |b| b.iter(|| tokenizer.encode(prompt)));
}

fn conversion(c: &mut Criterion) {
    let chw = frame(256, 256).to_chw(SampleRange::Signed);
    c.bench_function("frame_from_chw_256", |b| {
        b.iter(|| Frame::from_chw(chw.view(), SampleRange::Signed))
    });
    let hd = frame(1280, 720);
    c.bench_function("frame_to_rgb8_1280x720", |b| b.iter(|| hd.to_rgb8_bytes()));
}

/// One frame written into a fresh sink of `format` (the sink's set-up amortized over 16).
fn encoding(c: &mut Criterion) {
    let dir = tempfile::TempDir::new().expect("a temporary directory");
    let size = FrameSize::new(256, 256);
    let input = frame(256, 256);
    for (name, format, file) in [
        ("encode_mp4_16_frames_256", OutputFormat::Mp4, "x.mp4"),
        ("encode_gif_16_frames_256", OutputFormat::Gif, "x.gif"),
        ("encode_png_16_frames_256", OutputFormat::PngDir, "frames"),
    ] {
        let path = dir.path().join(file);
        c.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_dir_all(&path);
                    open_sink(&path, Some(format), 8, size).expect("sink")
                },
                |mut sink| {
                    for _ in 0..16 {
                        sink.write(&input).expect("frame written");
                    }
                    sink.finish().expect("finished")
                },
                BatchSize::PerIteration,
            )
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4)).sample_size(20);
    targets = tokenization, conversion, encoding
}
criterion_main!(benches);

//! Outputs of an interrupted job continue exactly: an MP4 cut back to its durable fragments and
//! continued by a fresh encoder decodes to the same frames as one written without a break, and a
//! PNG directory drops the frames after the checkpoint. GIFs cannot be continued.
#![cfg(feature = "ffmpeg")]

use std::path::Path;

use ndarray::Array3;
use streamingt2v::video::{
    fmp4, open_sink, partial_path, read_video, resume_sink, Frame, FrameSink, FrameSize,
};

const SIZE: FrameSize = FrameSize {
    width: 64,
    height: 48,
};
const FPS: u32 = 8;
const FRAMES: usize = 40;

/// Frame `i` of a noisy clip (noise makes every quantizer decision matter).
fn frame(i: usize) -> Frame {
    let mut state = 0x9e37_79b9_u32.wrapping_mul(i as u32 + 1);
    let pixels = Array3::from_shape_fn((SIZE.height, SIZE.width, 3), |(y, x, c)| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let wave =
            ((x + 2 * i) as f32 * 0.2).sin() * 0.3 + 0.5 + 0.05 * c as f32 - 0.002 * y as f32;
        (wave + (state % 1000) as f32 / 1000.0 * 0.2 - 0.1).clamp(0.0, 1.0)
    });
    Frame::new(pixels).unwrap()
}

fn write_all(frames: std::ops::Range<usize>, mut sink: Box<dyn FrameSink>) -> Box<dyn FrameSink> {
    for i in frames {
        sink.write(&frame(i)).unwrap();
    }
    sink
}

fn decoded(path: &Path) -> Vec<Vec<u8>> {
    let video = read_video(path).unwrap();
    video.frames.iter().map(Frame::to_rgb8_bytes).collect()
}

#[test]
fn a_killed_mp4_continues_to_the_same_decoded_frames() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.mp4");
    let sink = write_all(0..FRAMES, open_sink(&whole, None, FPS, SIZE).unwrap());
    sink.finish().unwrap();

    for killed_after in [5, 16, 23] {
        let out = dir.path().join(format!("resumed{killed_after}.mp4"));
        let sink = write_all(0..killed_after, open_sink(&out, None, FPS, SIZE).unwrap());
        let keep = sink.durable_frames();
        assert_eq!(keep, (killed_after - 1) / 8 * 8);
        std::mem::forget(sink); // killed: no trailer, the encoder's open interval is lost
        let layout = fmp4::layout(&partial_path(&out)).unwrap();
        assert!(
            layout.frames() >= keep,
            "{} durable frames on disk",
            layout.frames()
        );
        let sink = resume_sink(&out, None, FPS, SIZE, keep).unwrap();
        assert_eq!(sink.frames_written(), keep);
        let sink = write_all(keep..FRAMES, sink);
        let summary = sink.finish().unwrap();
        assert_eq!(summary.frames, FRAMES);
        assert!(!partial_path(&out).exists());
        assert_eq!(
            decoded(&out),
            decoded(&whole),
            "killed after {killed_after} frames"
        );
        let layout = fmp4::layout(&out).unwrap();
        assert_eq!(layout.frames(), FRAMES);
        let times: Vec<u64> = layout.fragments.iter().map(|f| f.decode_time).collect();
        let expected: Vec<u64> = (0..5).map(|k| k * layout.fragments[0].duration).collect();
        assert_eq!(times, expected, "one timeline");
    }
}

#[test]
fn a_resumed_mp4_refuses_frames_its_file_does_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("short.mp4");
    let sink = write_all(0..10, open_sink(&out, None, FPS, SIZE).unwrap());
    std::mem::forget(sink);
    let err = resume_sink(&out, None, FPS, SIZE, 16)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("16 frames"), "{err}");
    let err = resume_sink(&out, None, FPS, SIZE, 4)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("multiple of the keyframe interval"), "{err}");
}

#[test]
fn a_png_directory_drops_the_frames_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("frames");
    let sink = write_all(0..7, open_sink(&out, None, FPS, SIZE).unwrap());
    assert_eq!(sink.durable_frames(), 7);
    std::mem::forget(sink);
    let sink = resume_sink(&out, None, FPS, SIZE, 4).unwrap();
    assert!(!out.join("frame_00004.png").exists());
    let sink = write_all(4..9, sink);
    assert_eq!(sink.finish().unwrap().frames, 9);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 9);
}

#[test]
fn a_gif_cannot_be_continued() {
    let dir = tempfile::tempdir().unwrap();
    let err = resume_sink(&dir.path().join("a.gif"), None, FPS, SIZE, 0)
        .err()
        .unwrap();
    assert!(err.to_string().contains("GIF"), "{err}");
}

//! Integration tests of `streamingt2v::video`: every sink writes frames that read back, MP4s
//! pass `ffprobe` (checked when `ffprobe` is installed; `scripts/setup.sh` installs it), sinks
//! finished early or dropped leave playable files, and bad paths fail with clear errors.

use std::path::Path;
use std::process::Command;

use ndarray::Array3;
use streamingt2v::video::{
    open_sink, read_video, Frame, FrameSink, FrameSize, OutputFormat, OutputTarget, VideoError,
};

const SIZE: FrameSize = FrameSize {
    width: 64,
    height: 48,
};

/// Frame `i` of a test clip: a flat colour that changes with `i`, plus a horizontal ramp.
fn test_frame(i: usize, size: FrameSize) -> Frame {
    let base = [
        0.1 + 0.07 * i as f32,
        0.8 - 0.05 * i as f32,
        0.3 + 0.02 * i as f32,
    ];
    let pixels = Array3::from_shape_fn((size.height, size.width, 3), |(_, x, c)| {
        base[c] + 0.1 * x as f32 / size.width as f32
    });
    Frame::new(pixels).unwrap()
}

fn write_clip(path: &Path, frames: usize) -> Box<dyn FrameSink> {
    let mut sink = open_sink(path, None, 8, SIZE).unwrap();
    for i in 0..frames {
        sink.write(&test_frame(i, SIZE)).unwrap();
    }
    sink
}

struct Probe {
    codec: String,
    pix_fmt: String,
    frames: usize,
    rate: String,
    color_space: String,
}

/// `ffprobe` facts of the first video stream, or `None` when ffprobe is not installed.
fn ffprobe(path: &Path) -> Option<Probe> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,pix_fmt,nb_read_frames,r_frame_rate,color_space",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .ok()?;
    assert!(
        output.status.success(),
        "ffprobe rejects {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or_default()
            .to_owned()
    };
    Some(Probe {
        codec: field("codec_name"),
        pix_fmt: field("pix_fmt"),
        frames: field("nb_read_frames").parse().unwrap_or(0),
        rate: field("r_frame_rate"),
        color_space: field("color_space"),
    })
}

fn assert_close_colours(read: &[Frame], tolerance: f32) {
    for (i, frame) in read.iter().enumerate() {
        let expected = test_frame(i, SIZE).channel_means();
        let got = frame.channel_means();
        for c in 0..3 {
            assert!(
                (got[c] - expected[c]).abs() < tolerance,
                "frame {i} channel {c}: {got:?} vs {expected:?}"
            );
        }
    }
}

#[test]
fn mp4_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let summary = write_clip(&path, 10).finish().unwrap();
    assert_eq!(
        (summary.frames, summary.size, summary.fps, summary.format),
        (10, SIZE, 8, OutputFormat::Mp4)
    );
    if let Some(probe) = ffprobe(&path) {
        assert_eq!(
            (probe.codec.as_str(), probe.pix_fmt.as_str()),
            ("h264", "yuv420p")
        );
        assert_eq!(probe.frames, 10);
        assert_eq!(probe.rate, "8/1");
        assert_eq!(probe.color_space, "bt470bg");
    }
    let video = read_video(&path).unwrap();
    assert_eq!(video.frames.len(), 10);
    assert_eq!(video.info.size, SIZE);
    assert!((video.info.fps.unwrap() - 8.0).abs() < 1e-3);
    assert_close_colours(&video.frames, 0.03);
}

#[test]
fn gif_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.gif");
    let summary = write_clip(&path, 6).finish().unwrap();
    assert_eq!((summary.frames, summary.format), (6, OutputFormat::Gif));
    let video = read_video(&path).unwrap();
    assert_eq!(video.frames.len(), 6);
    assert_eq!(video.info.size, SIZE);
    // The first delay is 13 centiseconds (delays alternate 13/12 to average 8 fps).
    assert!((video.info.fps.unwrap() - 100.0 / 13.0).abs() < 1e-6);
    assert_close_colours(&video.frames, 0.03);
}

#[test]
fn png_directory_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frames");
    let summary = write_clip(&path, 4).finish().unwrap();
    assert_eq!((summary.frames, summary.format), (4, OutputFormat::PngDir));
    assert!(path.join("frame_00000.png").is_file() && path.join("frame_00003.png").is_file());
    let video = read_video(&path).unwrap();
    assert_eq!(video.frames.len(), 4);
    for (i, frame) in video.frames.iter().enumerate() {
        assert_eq!(frame.to_rgb8(), test_frame(i, SIZE).to_rgb8(), "frame {i}");
    }
}

#[test]
fn dropped_sinks_leave_playable_files_with_the_frames_so_far() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["early.mp4", "early.gif"] {
        let path = dir.path().join(name);
        drop(write_clip(&path, 3));
        assert_eq!(read_video(&path).unwrap().frames.len(), 3, "{name}");
        if name.ends_with(".mp4") {
            if let Some(probe) = ffprobe(&path) {
                assert_eq!(probe.frames, 3);
            }
        }
    }
}

#[test]
fn finish_after_a_rejected_frame_keeps_the_earlier_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.mp4");
    let mut sink = write_clip(&path, 2);
    let wrong = Frame::filled(FrameSize::new(32, 32), [0.5; 3]).unwrap();
    let err = sink.write(&wrong).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("partial.mp4") && message.contains("64x48") && message.contains("32x32"),
        "{message}"
    );
    assert_eq!(sink.finish().unwrap().frames, 2);
    assert_eq!(read_video(&path).unwrap().frames.len(), 2);
}

#[test]
fn sinks_without_frames_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["empty.mp4", "empty.gif", "empty_frames"] {
        let path = dir.path().join(name);
        let sink = open_sink(&path, None, 8, SIZE).unwrap();
        assert_eq!(sink.finish().unwrap().frames, 0);
        assert!(!path.exists(), "{name} should not exist");
    }
}

#[test]
fn explicit_format_overrides_the_extension() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.out");
    let mut sink = open_sink(&path, Some(OutputFormat::Gif), 8, SIZE).unwrap();
    sink.write(&test_frame(0, SIZE)).unwrap();
    sink.finish().unwrap();
    assert_eq!(&std::fs::read(&path).unwrap()[..6], b"GIF89a");
}

fn expect_not_writable(result: Result<OutputTarget, VideoError>, needle: &str) {
    match result {
        Err(err @ VideoError::OutputNotWritable { .. }) => {
            assert!(err.to_string().contains(needle), "{err}");
        }
        other => panic!("expected OutputNotWritable, got {other:?}"),
    }
}

#[test]
fn output_checks_fail_before_any_compute() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/out.mp4");
    expect_not_writable(OutputTarget::check(&missing, None), "does not exist");
    expect_not_writable(
        OutputTarget::check(dir.path(), Some(OutputFormat::Mp4)),
        "is a directory",
    );
    let file = dir.path().join("file.txt");
    std::fs::write(&file, "x").unwrap();
    expect_not_writable(
        OutputTarget::check(&file, Some(OutputFormat::PngDir)),
        "not a directory",
    );
    let err = OutputTarget::check(&dir.path().join("out.webm"), None).unwrap_err();
    assert!(matches!(err, VideoError::UnknownFormat { .. }), "{err}");
    let target = OutputTarget::check(&dir.path().join("ok.gif"), None).unwrap();
    assert_eq!(target.format, OutputFormat::Gif);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "the check leaves no probe file"
    );
}

#[test]
fn odd_sizes_are_rejected_for_mp4_only() {
    let dir = tempfile::tempdir().unwrap();
    let odd = FrameSize::new(63, 48);
    let Err(err) = open_sink(&dir.path().join("odd.mp4"), None, 8, odd) else {
        panic!("odd MP4 size accepted");
    };
    assert!(err.to_string().contains("even width and height"), "{err}");
    let mut sink = open_sink(&dir.path().join("odd.gif"), None, 8, odd).unwrap();
    sink.write(&Frame::filled(odd, [0.2; 3]).unwrap()).unwrap();
    assert_eq!(sink.finish().unwrap().size, odd);
    assert!(open_sink(&dir.path().join("zero.gif"), None, 0, SIZE).is_err());
}

#[test]
fn unreadable_inputs_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.mp4");
    let err = read_video(&missing).unwrap_err();
    assert!(
        matches!(err, VideoError::InputUnreadable { .. })
            && err.to_string().contains("missing.mp4"),
        "{err}"
    );
    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(&garbage, b"not a video at all").unwrap();
    let err = read_video(&garbage).unwrap_err();
    assert!(err.to_string().contains("garbage.mp4"), "{err}");
    let bad_gif = dir.path().join("bad.gif");
    std::fs::write(&bad_gif, b"GIF89a-truncated").unwrap();
    assert!(read_video(&bad_gif)
        .unwrap_err()
        .to_string()
        .contains("bad.gif"));
    let empty = dir.path().join("empty_dir");
    std::fs::create_dir(&empty).unwrap();
    assert!(read_video(&empty)
        .unwrap_err()
        .to_string()
        .contains("no .png frames"));
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "x").unwrap();
    assert!(matches!(
        read_video(&text).unwrap_err(),
        VideoError::UnknownFormat { .. }
    ));
}

#[test]
fn png_frames_of_different_sizes_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("mixed");
    write_clip(&frames, 2).finish().unwrap();
    let small = FrameSize::new(8, 8);
    let bytes = Frame::filled(small, [0.0; 3]).unwrap().to_rgb8_bytes();
    image::save_buffer(
        frames.join("frame_00002.png"),
        &bytes,
        8,
        8,
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    let err = read_video(&frames).unwrap_err();
    assert!(
        err.to_string().contains("64x48") && err.to_string().contains("8x8"),
        "{err}"
    );
}

//! MP4 sink: H.264 (libx264, preset medium) yuv420p, muxed with FFmpeg through the bindings
//! video-rs re-exports.
//!
//! video-rs's own `Encoder` leaves every packet's duration at 0, so the MP4 muxer's edit list
//! ends at the last frame's start and players drop that frame. Driving the codec here lets each
//! packet last exactly one frame (time base `1/fps`), so all frames play and the stream reports
//! the right frame rate.
//!
//! Every keyframe interval is encoded on its own (constant quantizer, keyframes exactly every
//! `fps` frames, a fixed number of slices): an interrupted job's output is cut back to whole
//! fragments and continued by a fresh encoder, and the frames decode exactly as they would
//! have without the interruption ([`fmp4`] splices the new fragments in).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::{codec, encoder, format, frame, Dictionary, Packet, Rational};
use video_rs::ffmpeg;

use super::fmp4::{self, Splicer};
use super::sink::{invalid, SinkSpec};
use super::{Frame, FrameSink, Summary, VideoError};

const STREAM_INDEX: usize = 0;
/// x264's constant quantizer (about the quality of its default CRF 23 at these sizes).
const QUANTIZER: &str = "21";
/// Slices per frame, fixed so the bitstream does not depend on the machine's cores.
const ENCODER_THREADS: &str = "4";

pub(super) struct Mp4Sink {
    spec: SinkSpec,
    /// `None` once closed.
    muxer: Option<Muxer>,
    frames: usize,
    /// Frames per keyframe interval (and fragment).
    gop: usize,
    /// A resumed sink encodes into a second file and splices its fragments into the output.
    resumed: Option<Resumed>,
}

/// Where a resumed sink's encoder writes, and how its fragments join the output.
struct Resumed {
    tail: PathBuf,
    splicer: Splicer,
}

/// The open FFmpeg state of one MP4 file.
struct Muxer {
    output: format::context::Output,
    encoder: encoder::Video,
    scaler: scaling::Context,
    encoder_time_base: Rational,
    rgb: frame::Video,
}

// SAFETY: the muxer exclusively owns its FFmpeg contexts (format, codec, scaler, frame); none
// is shared or aliased, and FFmpeg allows a context to move between threads as long as it is
// not used concurrently, which `&mut self` access guarantees. video-rs makes the same claim
// for its `Encoder`.
unsafe impl Send for Muxer {}

/// Initializes FFmpeg once per process (idempotent, cheap afterwards).
pub(super) fn init_ffmpeg() -> Result<(), VideoError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        video_rs::init().map_err(|e| e.to_string())?;
        // FFmpeg's own log lines (x264's settings, muxer notices) are noise on the user's
        // stderr; its errors reach the caller as `VideoError`s.
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
        Ok(())
    })
    .clone()
    .map_err(|message| VideoError::FfmpegInit { message })
}

fn ffmpeg_error(path: &Path, operation: &'static str) -> impl Fn(ffmpeg::Error) -> VideoError {
    let path = path.to_owned();
    move |source| VideoError::Ffmpeg {
        path: path.clone(),
        operation,
        source: video_rs::Error::BackendError(source),
    }
}

impl Mp4Sink {
    pub fn create(spec: SinkSpec) -> Result<Self, VideoError> {
        let partial = spec.partial();
        Self::open_into(spec, &partial)
    }

    /// A sink whose encoder writes into `path` (the partial file, or a resumed sink's tail).
    fn open_into(spec: SinkSpec, path: &Path) -> Result<Self, VideoError> {
        // yuv420p subsamples chroma 2x2, so libx264 refuses odd sizes.
        let size = spec.size;
        let dims = (u32::try_from(size.width), u32::try_from(size.height));
        let (Ok(width), Ok(height)) = dims else {
            return Err(invalid(
                spec.path(),
                "frame size",
                "at most 2^32-1 pixels per side",
                &size.to_string(),
            ));
        };
        if width % 2 != 0 || height % 2 != 0 {
            return Err(invalid(
                spec.path(),
                "frame size for H.264 yuv420p",
                "even width and height",
                &size.to_string(),
            ));
        }
        init_ffmpeg()?;
        let fps = i32::try_from(spec.fps).map_err(|_| {
            invalid(
                spec.path(),
                "frame rate",
                "at most 2^31-1",
                &spec.fps.to_string(),
            )
        })?;
        let muxer = Muxer::open(path, width, height, fps)?;
        Ok(Self {
            spec,
            muxer: Some(muxer),
            frames: 0,
            gop: fps.unsigned_abs() as usize,
            resumed: None,
        })
    }

    /// Continues the output of an interrupted job after its first `keep` frames (a multiple of
    /// the keyframe interval): the partial file (or the file a stopped run finished early) is
    /// cut back to them and the next frames go into fresh fragments after them.
    pub fn resume(spec: SinkSpec, keep: usize) -> Result<Self, VideoError> {
        let partial = spec.partial();
        if !partial.exists() && spec.path().exists() {
            std::fs::rename(spec.path(), &partial).map_err(|source| VideoError::Io {
                path: spec.path().to_owned(),
                operation: "reopening the interrupted output",
                source,
            })?;
        }
        if keep == 0 {
            return Self::create(spec);
        }
        if !keep.is_multiple_of(spec.fps as usize) {
            return Err(invalid(
                &partial,
                "frames kept by a resumed job",
                &format!("a multiple of the keyframe interval ({})", spec.fps),
                &keep.to_string(),
            ));
        }
        let kept = fmp4::truncate_to_frames(&partial, keep)?;
        let tail = resume_tail_path(&partial);
        let mut sink = Self::open_into(spec, &tail)?;
        sink.frames = keep;
        sink.resumed = Some(Resumed {
            tail,
            splicer: Splicer::after(&kept),
        });
        Ok(sink)
    }

    /// Moves the fragments a resumed sink's encoder completed into the output.
    fn splice(&mut self) -> Result<(), VideoError> {
        match self.resumed.as_mut() {
            Some(resumed) => resumed
                .splicer
                .copy_new(&resumed.tail, &self.spec.partial()),
            None => Ok(()),
        }
    }

    /// Flushes the encoder, writes the trailer and renames the file into place (also when
    /// the trailer fails: the fragments written so far still play); a sink with no frame
    /// removes its file.
    fn close(&mut self) -> Result<(), VideoError> {
        let Some(mut muxer) = self.muxer.take() else {
            return Ok(());
        };
        let written = self
            .resumed
            .as_ref()
            .map_or(self.spec.partial(), |r| r.tail.clone());
        let finished = match self.frames {
            0 => Ok(()),
            _ => muxer.finish(&written),
        };
        drop(muxer);
        let spliced = self.splice();
        if let Some(resumed) = self.resumed.take() {
            let _ = std::fs::remove_file(&resumed.tail); // best effort: its fragments moved
        }
        self.spec.commit(self.frames)?;
        finished.and(spliced)
    }
}

impl Muxer {
    fn open(path: &Path, width: u32, height: u32, fps: i32) -> Result<Self, VideoError> {
        let mut output =
            format::output_as(path, "mp4").map_err(ffmpeg_error(path, "creating the MP4 file"))?;
        let codec = encoder::find_by_name("libx264")
            .or_else(|| encoder::find(codec::Id::H264))
            .ok_or_else(|| invalid(path, "FFmpeg build", "an H.264 encoder (libx264)", "none"))?;
        let time_base = Rational::new(1, fps);
        let mut config = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(ffmpeg_error(path, "configuring the H.264 encoder"))?;
        config.set_width(width);
        config.set_height(height);
        config.set_format(Pixel::YUV420P);
        // swscale converts RGB with the BT.601 matrix into limited range; say so in the
        // stream, or players assume BT.709 for HD sizes and shift the colours.
        config.set_colorspace(ffmpeg::color::Space::BT470BG);
        config.set_color_range(ffmpeg::color::Range::MPEG);
        config.set_time_base(time_base);
        config.set_frame_rate(Some(Rational::new(fps, 1)));
        if output
            .format()
            .flags()
            .contains(format::Flags::GLOBAL_HEADER)
        {
            config.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        // A keyframe (and so a new fragment) every `fps` frames, and no frame held back for
        // lookahead or B-frames: each fragment reaches the disk as soon as it is complete.
        config.set_gop(fps.unsigned_abs());
        let mut options = Dictionary::new();
        options.set("preset", "medium");
        options.set("tune", "zerolatency");
        options.set("qp", QUANTIZER);
        options.set("sc_threshold", "0");
        options.set("keyint_min", &fps.to_string());
        options.set("threads", ENCODER_THREADS);
        let encoder = config
            .open_as_with(codec, options)
            .map_err(ffmpeg_error(path, "opening the H.264 encoder"))?;
        let mut stream = output
            .add_stream(codec)
            .map_err(ffmpeg_error(path, "adding the video stream"))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(time_base);
        stream.set_avg_frame_rate(Rational::new(fps, 1));
        output
            .write_header_with(fragmented_mp4_options())
            .map_err(ffmpeg_error(path, "writing the MP4 header"))?;
        let scaler = scaling::Context::get(
            Pixel::RGB24,
            width,
            height,
            Pixel::YUV420P,
            width,
            height,
            scaling::Flags::BILINEAR,
        )
        .map_err(ffmpeg_error(path, "creating the RGB to YUV converter"))?;
        Ok(Self {
            output,
            encoder,
            scaler,
            encoder_time_base: time_base,
            rgb: frame::Video::new(Pixel::RGB24, width, height),
        })
    }

    fn encode(&mut self, path: &Path, frame: &Frame, index: usize) -> Result<(), VideoError> {
        self.fill_rgb(frame);
        let mut yuv = frame::Video::empty();
        self.scaler
            .run(&self.rgb, &mut yuv)
            .map_err(ffmpeg_error(path, "converting RGB to YUV"))?;
        yuv.set_pts(i64::try_from(index).ok());
        self.encoder
            .send_frame(&yuv)
            .map_err(ffmpeg_error(path, "encoding a frame"))?;
        self.write_ready_packets(path)
    }

    /// Copies the quantized frame into the RGB24 buffer row by row (FFmpeg pads rows).
    fn fill_rgb(&mut self, frame: &Frame) {
        let bytes = frame.to_rgb8_bytes();
        let row_bytes = frame.width() * 3;
        let stride = self.rgb.stride(0);
        let data = self.rgb.data_mut(0);
        for (row, src) in bytes.chunks_exact(row_bytes).enumerate() {
            data[row * stride..row * stride + row_bytes].copy_from_slice(src);
        }
    }

    /// Moves every packet the encoder has ready into the file, each lasting one frame.
    fn write_ready_packets(&mut self, path: &Path) -> Result<(), VideoError> {
        let stream_time_base = self
            .output
            .stream(STREAM_INDEX)
            .map_or(self.encoder_time_base, |s| s.time_base());
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(STREAM_INDEX);
            packet.set_duration(1);
            packet.rescale_ts(self.encoder_time_base, stream_time_base);
            packet
                .write_interleaved(&mut self.output)
                .map_err(ffmpeg_error(path, "writing a packet"))?;
        }
        Ok(())
    }

    fn finish(&mut self, path: &Path) -> Result<(), VideoError> {
        self.encoder
            .send_eof()
            .map_err(ffmpeg_error(path, "flushing the encoder"))?;
        self.write_ready_packets(path)?;
        self.output
            .write_trailer()
            .map_err(ffmpeg_error(path, "writing the MP4 trailer"))
    }
}

/// Where a resumed sink's encoder writes before its fragments join `partial`.
fn resume_tail_path(partial: &Path) -> PathBuf {
    partial.with_extension("resume.mp4")
}

/// Fragmented MP4 (an empty `moov` up front, then one `moof`+`mdat` per keyframe interval),
/// flushed packet by packet: a run killed at any point leaves a file that plays up to its last
/// complete fragment, and browsers can play it while it grows.
fn fragmented_mp4_options() -> Dictionary<'static> {
    let mut options = Dictionary::new();
    options.set("movflags", "frag_keyframe+empty_moov+default_base_moof");
    options.set("flush_packets", "1");
    options
}

impl FrameSink for Mp4Sink {
    fn write(&mut self, frame: &Frame) -> Result<(), VideoError> {
        self.spec.check_frame(frame)?;
        let Some(muxer) = self.muxer.as_mut() else {
            return Err(invalid(self.spec.path(), "sink state", "open", "finished"));
        };
        let path = self
            .resumed
            .as_ref()
            .map_or(self.spec.partial(), |r| r.tail.clone());
        muxer.encode(&path, frame, self.frames)?;
        self.frames += 1;
        self.splice()
    }

    fn frames_written(&self) -> usize {
        self.frames
    }

    /// A fragment reaches the file when the next keyframe is encoded: the frames before the
    /// keyframe interval of the last frame written.
    fn durable_frames(&self) -> usize {
        match self.frames {
            0 => 0,
            n => (n - 1) / self.gop * self.gop,
        }
    }

    fn sync(&mut self) -> Result<(), VideoError> {
        match self.frames {
            0 => Ok(()),
            _ => fmp4::sync(&self.spec.partial()),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<Summary, VideoError> {
        self.close()?;
        Ok(self.spec.summary(self.frames))
    }
}

impl Drop for Mp4Sink {
    fn drop(&mut self) {
        // Best effort: Drop cannot report errors; `finish` is the checked path.
        let _ = self.close();
    }
}

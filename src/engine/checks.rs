//! The checks a request passes before any model loads. Each names the request field at fault
//! with the expected and the actual value.

use std::path::Path;

use ndarray::Array5;

use crate::manifest::{Dim, ModelSet, PipelineConfig, SchedulerEntry, Stage3Config};
use crate::pipeline::{EnhanceOptions, Stage2Guidance};
use crate::plan::EnhancerGeometry;
use crate::sampling::build_scheduler;
use crate::video::{read_video, FrameSize, OutputTarget, Video};

use super::error::RequestError;
use super::field::Field;
use super::params::{GuidanceKind, GuidanceParams, OutputParams, Stage3Params};
use super::paths::check_replaceable;

/// A prompt with visible text.
pub fn prompt(field: Field, text: &str) -> Result<String, RequestError> {
    match text.trim().is_empty() {
        true => Err(RequestError::value(
            field,
            "a non-empty text",
            format!("{text:?}"),
        )),
        false => Ok(text.to_owned()),
    }
}

/// At most `max` frames; the message estimates what the request would have cost.
pub fn frames_bound(
    frames: usize,
    max: usize,
    output: &OutputParams,
    config: &PipelineConfig,
) -> Result<(), RequestError> {
    if frames <= max {
        return Ok(());
    }
    let s2 = &config.stage2;
    let chunks = frames.saturating_sub(s2.cond_frames) / (s2.chunk_frames - s2.cond_frames);
    let s3 = &config.stage3;
    let png_bytes = frames as f64 * (s3.content_width * s3.content_height * 3) as f64;
    Err(RequestError::value(
        Field::Frames,
        format!("at most {max}"),
        format!(
            "{frames} ({:.1} hours of video at {} fps, {chunks} stage-2 chunks of {} steps \
             each, up to {:.1} GB as PNG frames)",
            frames as f64 / f64::from(output.fps.max(1)) / 3600.0,
            output.fps,
            s2.num_inference_steps,
            png_bytes / 1e9
        ),
    ))
}

/// A step count the stage's scheduler accepts (built here: it is pure numerics).
pub fn steps(
    field: Field,
    scheduler: &SchedulerEntry,
    steps: usize,
    eta: Option<f32>,
) -> Result<usize, RequestError> {
    if steps == 0 {
        return Err(RequestError::value(field, "at least 1 step", steps));
    }
    build_scheduler(scheduler, steps, eta).map_err(|err| {
        RequestError::value(
            field,
            format!("a step count the {:?} scheduler accepts", scheduler.kind),
            format!("{steps} ({err})"),
        )
    })?;
    Ok(steps)
}

/// A finite, non-negative guidance scale (NaN would give black frames).
pub fn scale(field: Field, value: f32) -> Result<f32, RequestError> {
    match value.is_finite() && value >= 0.0 {
        true => Ok(value),
        false => Err(RequestError::value(
            field,
            "a finite guidance scale >= 0",
            value,
        )),
    }
}

/// Stage-2 guidance over the manifest's default scale.
pub fn stage2_guidance(
    params: &GuidanceParams,
    config: &PipelineConfig,
) -> Result<Stage2Guidance, RequestError> {
    let default = match params.scale {
        Some(value) => scale(Field::GuidanceScale, value)?,
        None => config.stage2.guidance_scale,
    };
    let either = |field, value: Option<f32>| value.map_or(Ok(default), |v| scale(field, v));
    match params.kind {
        GuidanceKind::Joint => {
            for (field, value) in [
                (Field::TextScale, params.text_scale),
                (Field::AnchorScale, params.anchor_scale),
            ] {
                if let Some(value) = value {
                    return Err(RequestError::value(
                        field,
                        "no value with joint guidance (it needs multi-condition guidance)",
                        value,
                    ));
                }
            }
            Ok(Stage2Guidance::Joint { scale: default })
        }
        GuidanceKind::Multi => Ok(Stage2Guidance::Multi {
            text_scale: either(Field::TextScale, params.text_scale)?,
            anchor_scale: either(Field::AnchorScale, params.anchor_scale)?,
        }),
    }
}

/// Stage-3 options over the manifest's defaults; the chunk length must fit the enhancer
/// graph's frame axis when that axis is fixed.
pub fn stage3_options(
    params: &Stage3Params,
    set: &ModelSet,
) -> Result<EnhanceOptions, RequestError> {
    let config = &set.manifest.pipeline;
    let mut options = EnhanceOptions::from_config(config);
    let s3 = &config.stage3.scheduler;
    options.steps = steps(
        Field::EnhanceSteps,
        s3,
        params.steps.unwrap_or(options.steps),
        None,
    )?;
    options.chunk_frames = params.chunk.unwrap_or(options.chunk_frames);
    options.overlap_frames = params.overlap.unwrap_or(options.overlap_frames);
    options.keep_padding = params.keep_padding;
    options.batch = enhance_batch(params.batch.unwrap_or(1), set)?;
    let chunk = options.chunk_frames;
    match enhancer_frame_axis(set) {
        Some(fixed) if chunk as i64 != fixed => {
            return Err(RequestError::value(
                Field::Chunk,
                format!("{fixed} (the model set's enhancer graph has a fixed frame axis)"),
                chunk,
            ))
        }
        _ if chunk < 2 => return Err(RequestError::value(Field::Chunk, "at least 2", chunk)),
        _ => {}
    }
    if options.overlap_frames >= chunk {
        return Err(RequestError::value(
            Field::Overlap,
            format!("less than the chunk length ({chunk})"),
            options.overlap_frames,
        ));
    }
    Ok(options)
}

/// Chunks per enhancer UNet call: at least 1, and 1 for a graph with a fixed batch axis.
fn enhance_batch(batch: usize, set: &ModelSet) -> Result<usize, RequestError> {
    match enhancer_axis(set, 0) {
        _ if batch == 0 => Err(RequestError::value(Field::EnhanceBatch, "at least 1", 0)),
        Some(fixed) if batch > 1 => Err(RequestError::value(
            Field::EnhanceBatch,
            format!("1 (the model set's enhancer graph has a fixed batch axis of {fixed})"),
            batch,
        )),
        _ => Ok(batch),
    }
}

/// The fixed frame count of the enhancer UNet's `sample` input (B, C, F, h, w), if fixed.
fn enhancer_frame_axis(set: &ModelSet) -> Option<i64> {
    enhancer_axis(set, 2)
}

/// The size of axis `axis` of the enhancer UNet's `sample` input, if fixed.
fn enhancer_axis(set: &ModelSet, axis: usize) -> Option<i64> {
    let unet = set.manifest.graph("enhancer_unet")?;
    let sample = unet.inputs.iter().find(|t| t.name == "sample")?;
    match sample.shape.get(axis)? {
        Dim::Fixed(n) => Some(*n),
        Dim::Named(_) => None,
    }
}

/// The output file or directory, its format and frame rate; an existing output only with
/// `force`.
pub fn output(params: &OutputParams) -> Result<OutputTarget, RequestError> {
    if params.fps == 0 {
        return Err(RequestError::value(
            Field::Fps,
            "a positive number of frames per second",
            0,
        ));
    }
    let target =
        OutputTarget::check(&params.out, params.format).map_err(|source| RequestError::File {
            field: Field::Out,
            source,
        })?;
    check_replaceable(Field::Out, &target, params.force)?;
    Ok(target)
}

/// A float32 `.npy` of `shape` holding finite values. The declared type and shape are checked
/// from the header before any data is read.
pub fn init_noise(path: &Path, shape: [usize; 5]) -> Result<Array5<f32>, RequestError> {
    let field = Field::InitNoise;
    let expected = format!("a float32 .npy of shape {shape:?}");
    let fail = |actual: String| RequestError::value(field, &expected, actual);
    let (descr, declared) =
        npy_header(path).map_err(|err| fail(format!("{}: {err}", path.display())))?;
    if descr != "<f4" || declared != shape {
        return Err(fail(format!(
            "dtype {descr}, shape {declared:?} in {}",
            path.display()
        )));
    }
    let file =
        std::fs::File::open(path).map_err(|err| fail(format!("{}: {err}", path.display())))?;
    let noise: Array5<f32> = ndarray_npy::ReadNpyExt::read_npy(file)
        .map_err(|err| fail(format!("{}: {err}", path.display())))?;
    if let Some(bad) = noise.iter().find(|v| !v.is_finite()) {
        return Err(RequestError::value(
            field,
            "finite values",
            format!("{bad} in {}", path.display()),
        ));
    }
    Ok(noise)
}

/// The dtype descriptor and shape an `.npy` file declares (format versions 1 to 3).
fn npy_header(path: &Path) -> Result<(String, Vec<usize>), String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)
        .map_err(|_| "not an .npy file (too short)")?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err("not an .npy file (no NUMPY magic)".into());
    }
    let length = match magic[6] {
        1 => {
            let mut len = [0u8; 2];
            file.read_exact(&mut len).map_err(|e| e.to_string())?;
            usize::from(u16::from_le_bytes(len))
        }
        2 | 3 => {
            let mut len = [0u8; 4];
            file.read_exact(&mut len).map_err(|e| e.to_string())?;
            u32::from_le_bytes(len) as usize
        }
        v => return Err(format!("unknown .npy format version {v}")),
    };
    let mut header = vec![0u8; length.min(1 << 20)];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    let header = String::from_utf8_lossy(&header);
    let value_after = |key: &str| header.split(key).nth(1).map(str::trim_start);
    let descr = value_after("'descr':")
        .and_then(|rest| rest.strip_prefix('\'')?.split('\'').next())
        .ok_or("no dtype in the .npy header")?;
    let shape = value_after("'shape':")
        .and_then(|rest| rest.strip_prefix('(')?.split(')').next())
        .ok_or("no shape in the .npy header")?;
    let dims = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| format!("bad shape ({shape})"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((descr.to_owned(), dims))
}

/// Whether two sizes have the same aspect ratio, within 1%.
fn aspect_matches(a: FrameSize, b: FrameSize) -> bool {
    let ratio = |s: FrameSize| s.width as f64 / s.height.max(1) as f64;
    (ratio(a) / ratio(b) - 1.0).abs() <= 0.01
}

/// An input to continue must have the stage-2 aspect ratio: its frames are resized to the
/// stage-2 size, and another ratio would be distorted.
pub fn same_aspect(input: FrameSize, stage2: FrameSize) -> Result<(), RequestError> {
    match aspect_matches(input, stage2) {
        true => Ok(()),
        false => Err(RequestError::value(
            Field::Input,
            format!("a video with the stage-2 aspect ratio of {stage2} (it is resized to it)"),
            format!("{input} (crop or pad it first: resizing would distort it)"),
        )),
    }
}

/// The enhancer content size for an input of `input` size: `None` (the manifest's) when it
/// has the content's aspect ratio, else the input fitted whole into the enhancer frame.
pub fn enhancer_content(input: FrameSize, s3: &Stage3Config) -> Option<FrameSize> {
    let content = FrameSize::new(s3.content_width, s3.content_height);
    match aspect_matches(input, content) {
        true => None,
        false => Some(EnhancerGeometry::fit(input, EnhancerGeometry::frame_of(s3))),
    }
}

/// A readable video with at least `min_frames` frames.
pub fn input_video(path: &Path, min_frames: usize) -> Result<Video, RequestError> {
    let video = read_video(path).map_err(|source| RequestError::File {
        field: Field::Input,
        source,
    })?;
    if video.frames.len() < min_frames {
        return Err(RequestError::value(
            Field::Input,
            format!("a video of at least {min_frames} frames"),
            format!("{} frames in {}", video.frames.len(), path.display()),
        ));
    }
    Ok(video)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_declares_dtype_and_shape() {
        let dir = tempfile::TempDir::new().unwrap();
        let f32_path = dir.path().join("a.npy");
        ndarray_npy::write_npy(&f32_path, &ndarray::Array2::<f32>::zeros((2, 3))).unwrap();
        assert_eq!(npy_header(&f32_path).unwrap(), ("<f4".into(), vec![2, 3]));
        let f64_path = dir.path().join("b.npy");
        ndarray_npy::write_npy(&f64_path, &ndarray::Array1::<f64>::zeros(7)).unwrap();
        assert_eq!(npy_header(&f64_path).unwrap(), ("<f8".into(), vec![7]));
        let text = dir.path().join("c.npy");
        std::fs::write(&text, b"not numpy at all").unwrap();
        assert!(npy_header(&text).unwrap_err().contains("NUMPY"));
        let err = init_noise(&f64_path, [1, 4, 16, 8, 8]).unwrap_err();
        assert!(err.to_string().contains("dtype <f8, shape [7]"), "{err}");
    }
}

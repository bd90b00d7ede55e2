//! The checks a request passes before any model loads. Each names the request field at fault
//! with the expected and the actual value.

use std::path::Path;

use ndarray::Array5;

use crate::manifest::{Dim, ModelSet, PipelineConfig, SchedulerEntry};
use crate::pipeline::{EnhanceOptions, Stage2Guidance};
use crate::sampling::build_scheduler;
use crate::video::{read_video, OutputTarget, Video};

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

/// The fixed frame count of the enhancer UNet's `sample` input (B, C, F, h, w), if fixed.
fn enhancer_frame_axis(set: &ModelSet) -> Option<i64> {
    let unet = set.manifest.graph("enhancer_unet")?;
    let sample = unet.inputs.iter().find(|t| t.name == "sample")?;
    match sample.shape.get(2)? {
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

/// A float32 `.npy` of `shape` holding finite values.
pub fn init_noise(path: &Path, shape: [usize; 5]) -> Result<Array5<f32>, RequestError> {
    let field = Field::InitNoise;
    let expected = format!("a float32 .npy of shape {shape:?}");
    let file = std::fs::File::open(path).map_err(|err| {
        RequestError::value(field, &expected, format!("{}: {err}", path.display()))
    })?;
    let noise: Array5<f32> = ndarray_npy::ReadNpyExt::read_npy(file).map_err(|err| {
        RequestError::value(field, &expected, format!("{}: {err}", path.display()))
    })?;
    if noise.shape() != shape {
        return Err(RequestError::value(
            field,
            format!("shape {shape:?}"),
            format!("{:?} in {}", noise.shape(), path.display()),
        ));
    }
    if let Some(bad) = noise.iter().find(|v| !v.is_finite()) {
        return Err(RequestError::value(
            field,
            "finite values",
            format!("{bad} in {}", path.display()),
        ));
    }
    Ok(noise)
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

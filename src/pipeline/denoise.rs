//! The denoising loop shared by stages 1 and 2 (diffusers' `TextToVideoSDPipeline` loop and
//! StreamingT2V's `pipeline_text_to_video_w_controlnet_synth.py` loop), and chunk decoding.
//!
//! One batched model call per step holds every guidance condition; the scheduler steps on the
//! (1, C, F, h, w) latents. Stochastic schedulers (DDIM with eta > 0) draw their variance noise
//! from the run's generator in the reference's order and frame-major layout: diffusers draws
//! `randn(model_output.shape)` on the `(F, C, h, w)` view it steps on.

use ndarray::{s, Array4, Array5, Axis};

use super::run::RunContext;
use super::tensor::{
    decoded_to_unit, expect_shape, into_video, latents_to_frame_batch, repeat_batch,
};
use super::PipelineError;
use crate::models::VaeDecoder;
use crate::progress::{ProgressEvent, Stage};
use crate::sampling::noise::frame_major_randn;
use crate::sampling::{Guidance, Scheduler, TorchGenerator};

/// One batched denoising-model call: (sample batch, timesteps) -> model output batch.
pub type ModelCall<'m> = dyn FnMut(&Array5<f32>, &[i64]) -> Result<Array5<f32>, PipelineError> + 'm;

/// Where a denoising loop sits in the run, for progress events.
#[derive(Debug, Clone, Copy)]
pub struct LoopPosition {
    pub stage: Stage,
    pub chunk: usize,
}

/// Draws the initial latents `randn(1, C, F, h, w) * init_noise_sigma`.
pub fn initial_latents(
    scheduler: &dyn Scheduler,
    generator: &mut TorchGenerator,
    shape: [usize; 5],
) -> Result<Array5<f32>, PipelineError> {
    let noise = generator.randn(&shape);
    into_video(scheduler.initial_sample(noise), "initial latents")
}

/// Runs every step of `scheduler` from `latents`; `model` maps a batched sample and its
/// timesteps to the batched model output.
pub fn denoise(
    scheduler: &mut dyn Scheduler,
    mut latents: Array5<f32>,
    guidance: Guidance,
    generator: &mut TorchGenerator,
    run: &RunContext<'_>,
    position: LoopPosition,
    model: &mut ModelCall<'_>,
) -> Result<Array5<f32>, PipelineError> {
    let steps = scheduler.num_steps();
    for index in 0..steps {
        run.check_cancelled()?;
        let input = scheduler.scale_model_input(latents.clone().into_dyn(), index)?;
        let batch = repeat_batch(
            into_video(input, "model input")?.view(),
            guidance.batch_size(),
        );
        let timesteps = vec![scheduler.model_timestep(index)?; guidance.batch_size()];
        let output = model(&batch, &timesteps)?;
        expect_shape("denoising model output", output.shape(), batch.shape())?;
        let guided = guidance.apply(output.into_dyn().view())?;
        let noise = match scheduler.needs_noise(index) {
            true => Some(frame_major_randn(generator, latents.shape())?),
            false => None,
        };
        let step = scheduler.step(
            guided.view(),
            index,
            latents.view().into_dyn(),
            noise.as_ref().map(|n| n.view().into_dyn()),
        )?;
        latents = into_video(step.prev_sample, "scheduler output")?;
        run.emit(ProgressEvent::Step {
            stage: position.stage,
            chunk: position.chunk,
            step: index + 1,
            steps,
        });
    }
    Ok(latents)
}

/// Decodes (1, C, F, h, w) latents to F frames (F, 3, H, W) in [0, 1], at most
/// `max_frames` frames per decoder call (`None`: all at once).
pub fn decode_chunk(
    decoder: &mut dyn VaeDecoder,
    latents: &Array5<f32>,
    scaling_factor: f32,
    max_frames: Option<usize>,
) -> Result<Array4<f32>, PipelineError> {
    let batch = latents_to_frame_batch(latents, scaling_factor);
    let frames = batch.dim().0;
    let step = max_frames.unwrap_or(frames).clamp(1, frames.max(1));
    let mut slices = Vec::new();
    for start in (0..frames).step_by(step) {
        let slice = batch.slice(s![start..(start + step).min(frames), .., .., ..]);
        slices.push(decoder.decode(&slice.to_owned())?);
    }
    let views: Vec<_> = slices.iter().map(|s| s.view()).collect();
    let images = ndarray::concatenate(Axis(0), &views).map_err(|e| PipelineError::Invalid {
        field: "VAE decoder output".into(),
        expected: "slices of one frame size".into(),
        actual: e.to_string(),
    })?;
    let (_, _, height, width) = images.dim();
    expect_shape(
        "VAE decoder output",
        images.shape(),
        &[frames, 3, height, width],
    )?;
    Ok(decoded_to_unit(images))
}

//! Stage 3, refinement: the MS-Vid2Vid-XL enhancer with StreamingT2V's randomized blending
//! (Henschel et al. 2024, sec. 4.3; reference `t2v_enhanced/model_func.py` and
//! `thirdparty/modelscope/.../diffusion_sdedit.py`, `solvers_sdedit.py`).
//!
//! Each stage-2 frame is resized and padded to the enhancer size, VAE-encoded
//! (`mean + exp(logvar / 2) * eps`, times the scaling factor) and noised to `t = 599` with
//! noise shared by overlapping chunks. The DPM++(2M) SDE starts from `sigma_0 * x_t`; at every
//! step each 24-frame chunk predicts x0 (one batched `[uncond, cond]` UNet call, guidance with
//! std rescale, v-prediction), the chunks' x0 are blended with randomized offsets in their
//! overlaps, and the solver advances the whole video. Frames are decoded one by one and
//! cropped back to the content unless asked to keep the padding.

use ndarray::{s, Array3, Array5, Axis};

use super::conditioning::{text_conditions, text_context, TextEmbeddings};
use super::noise::{frame_noise, NoiseStream};
use super::options::EnhanceOptions;
use super::run::{FrameOutput, RunContext};
use super::tensor::{decoded_to_unit, expect_shape, into_video, repeat_batch};
use super::PipelineError;
use crate::manifest::PipelineConfig;
use crate::models::{VaeDecoder, VaeEncoder, VideoUnet};
use crate::plan::{BlendSchedule, EnhancePlan, EnhancerGeometry};
use crate::progress::{ProgressEvent, Stage};
use crate::sampling::{build_scheduler, Guidance, Scheduler};
use crate::video::{Frame, SampleRange};

/// The reference clamps the posterior log-variance to this range (`DiagonalGaussian`).
const LOGVAR_RANGE: (f32, f32) = (-30.0, 20.0);

/// The graphs stage 3 runs (its text encoder runs once, before).
pub struct Stage3Models<'a> {
    pub unet: &'a mut dyn VideoUnet,
    pub vae_encoder: &'a mut dyn VaeEncoder,
    pub vae_decoder: &'a mut dyn VaeDecoder,
}

/// Enhances a video whose frames arrive one at a time.
pub struct Enhancer<'a> {
    models: Stage3Models<'a>,
    config: &'a PipelineConfig,
    options: EnhanceOptions,
    seed: u64,
    plan: EnhancePlan,
    geometry: EnhancerGeometry,
    context: Array3<f32>,
    guidance: Guidance,
    /// Clean latents (C, h, w) of the frames received so far.
    latents: Vec<Array3<f32>>,
}

impl<'a> Enhancer<'a> {
    /// Prepares the enhancement of a `frames`-frame video; `text` is the enhancer text
    /// encoder's embedding of `"<prompt>, "` and of the negative prompt.
    pub fn new(
        models: Stage3Models<'a>,
        config: &'a PipelineConfig,
        options: EnhanceOptions,
        text: &TextEmbeddings,
        frames: usize,
        seed: u64,
    ) -> Result<Self, PipelineError> {
        let plan = EnhancePlan::new(frames, options.chunk_frames, options.overlap_frames)?;
        let geometry = EnhancerGeometry::from_stage3(&config.stage3)?;
        let guidance =
            Guidance::joint(options.guidance_scale).with_rescale(options.guide_rescale)?;
        let context = text_context(text, &text_conditions(options.guidance_scale));
        Ok(Self {
            models,
            config,
            options,
            seed,
            plan,
            geometry,
            context,
            guidance,
            latents: Vec::with_capacity(frames),
        })
    }

    /// The chunk plan (frames, chunks, padding).
    pub fn plan(&self) -> &EnhancePlan {
        &self.plan
    }

    /// Resizes, pads and VAE-encodes the next input frame.
    pub fn push(&mut self, frame: &Frame, run: &RunContext<'_>) -> Result<(), PipelineError> {
        let index = self.latents.len();
        if index >= self.plan.frames {
            return Err(PipelineError::Invalid {
                field: "enhancer input".into(),
                expected: format!("{} frames", self.plan.frames),
                actual: format!("frame {}", index + 1),
            });
        }
        run.check_cancelled()?;
        let padded = self.geometry.resize_and_pad(frame)?;
        let image = padded.to_chw(SampleRange::Signed).insert_axis(Axis(0));
        let moments = self.models.vae_encoder.encode(&image)?;
        expect_shape(
            "VAE encoder logvar",
            moments.logvar.shape(),
            moments.mean.shape(),
        )?;
        let (_, c, h, w) = moments.mean.dim();
        let eps = frame_noise(self.seed, NoiseStream::Posterior, 0, index, (c, h, w));
        let mean = moments.mean.index_axis(Axis(0), 0);
        let logvar = moments.logvar.index_axis(Axis(0), 0);
        let scaling = self.config.vae_scaling_factor;
        let latent = ndarray::Zip::from(&mean)
            .and(&logvar)
            .and(&eps)
            .map_collect(|&m, &lv, &e| {
                let std = (0.5 * lv.clamp(LOGVAR_RANGE.0, LOGVAR_RANGE.1)).exp();
                (m + std * e) * scaling
            });
        self.latents.push(latent);
        Ok(())
    }

    /// Runs every solver step over the whole video, then decodes and hands out the frames.
    pub fn finish(
        mut self,
        run: &mut RunContext<'_>,
        output: &mut dyn FrameOutput,
    ) -> Result<(), PipelineError> {
        if self.latents.len() != self.plan.frames {
            return Err(PipelineError::Invalid {
                field: "enhancer input".into(),
                expected: format!("{} frames", self.plan.frames),
                actual: format!("{} frames", self.latents.len()),
            });
        }
        let mut scheduler =
            build_scheduler(&self.config.stage3.scheduler, self.options.steps, None)?;
        run.emit(ProgressEvent::StageStarted {
            stage: Stage::Refinement,
            chunks: self.plan.chunks.len(),
            steps: self.options.steps,
        });
        let mut x = self.noised_start(scheduler.as_ref())?;
        for step in 0..scheduler.num_steps() {
            let denoised = self.blended_x0(scheduler.as_ref(), &x, step, run)?;
            let noise = match scheduler.needs_noise(step) {
                true => Some(self.video_noise(NoiseStream::Solver, step + 1, x.dim())),
                false => None,
            };
            let out = scheduler.step_denoised(
                denoised.view().into_dyn(),
                step,
                x.view().into_dyn(),
                noise.as_ref().map(|n| n.view().into_dyn()),
            )?;
            x = into_video(out.prev_sample, "enhancer latents")?;
        }
        run.save_latents(Stage::Refinement, 0, &x)?;
        self.decode_frames(&x, run, output)
    }

    /// `sigma_0 * (alpha_t * x0 + sigma_t * noise)` at the configured noise timestep.
    fn noised_start(&self, scheduler: &dyn Scheduler) -> Result<Array5<f32>, PipelineError> {
        let clean = self.padded_latents();
        let noise = self.video_noise(NoiseStream::Sdedit, 0, clean.dim());
        let timestep = usize::try_from(self.config.stage3.noise_timestep).map_err(|_| {
            PipelineError::Invalid {
                field: "manifest pipeline.stage3.noise_timestep".into(),
                expected: "a non-negative timestep".into(),
                actual: self.config.stage3.noise_timestep.to_string(),
            }
        })?;
        let noised =
            scheduler.add_noise(clean.view().into_dyn(), noise.view().into_dyn(), timestep)?;
        into_video(scheduler.initial_sample(noised), "enhancer start")
    }

    /// The (1, C, F_padded, h, w) clean latents; padding repeats the last frame.
    fn padded_latents(&self) -> Array5<f32> {
        let (c, h, w) = self.latents[0].dim();
        let mut video = Array5::zeros((1, c, self.plan.padded_frames, h, w));
        for frame in 0..self.plan.padded_frames {
            let source = &self.latents[self.plan.source_frame(frame)];
            video.slice_mut(s![0, .., frame, .., ..]).assign(source);
        }
        video
    }

    /// Per-frame standard normal noise laid out like the latents.
    fn video_noise(
        &self,
        stream: NoiseStream,
        step: usize,
        (b, c, f, h, w): (usize, usize, usize, usize, usize),
    ) -> Array5<f32> {
        let mut noise = Array5::zeros((b, c, f, h, w));
        for frame in 0..f {
            let values = frame_noise(self.seed, stream, step, frame, (c, h, w));
            noise.slice_mut(s![0, .., frame, .., ..]).assign(&values);
        }
        noise
    }

    /// Every chunk's x0 prediction at `step`, blended into one full-length x0.
    fn blended_x0(
        &mut self,
        scheduler: &dyn Scheduler,
        x: &Array5<f32>,
        step: usize,
        run: &RunContext<'_>,
    ) -> Result<Array5<f32>, PipelineError> {
        let blend = BlendSchedule::new(&self.plan, self.seed);
        let mut denoised = Array5::zeros(x.dim());
        for chunk in &self.plan.chunks {
            run.check_cancelled()?;
            let sample = x
                .slice(s![.., .., chunk.start..chunk.end, .., ..])
                .to_owned();
            let x0 = chunk_x0(
                &mut self.models,
                scheduler,
                &self.context,
                self.guidance,
                &sample,
                step,
            )?;
            blend.write_chunk_x0(
                chunk.index,
                step,
                x0.view().into_dyn(),
                denoised.view_mut().into_dyn(),
                Axis(2),
            )?;
            run.emit(ProgressEvent::Step {
                stage: Stage::Refinement,
                chunk: chunk.index,
                step: step + 1,
                steps: scheduler.num_steps(),
            });
        }
        Ok(denoised)
    }

    /// Decodes the real (unpadded) frames one by one and hands them out.
    fn decode_frames(
        &mut self,
        x: &Array5<f32>,
        run: &RunContext<'_>,
        output: &mut dyn FrameOutput,
    ) -> Result<(), PipelineError> {
        for frame in 0..self.plan.frames {
            run.check_cancelled()?;
            let latent = x
                .slice(s![0, .., frame..frame + 1, .., ..])
                .permuted_axes([1, 0, 2, 3])
                .mapv(|v| v / self.config.vae_scaling_factor);
            let image = decoded_to_unit(self.models.vae_decoder.decode(&latent)?);
            let enhanced = Frame::from_chw(image.index_axis(Axis(0), 0), SampleRange::Unit)?;
            let enhanced = match self.options.keep_padding {
                true => enhanced,
                false => self.geometry.crop_content(&enhanced)?,
            };
            output.push(&enhanced)?;
        }
        Ok(())
    }
}

/// One chunk's guided x0 prediction: a batched `[uncond, cond]` UNet call on `x * c_in`.
fn chunk_x0(
    models: &mut Stage3Models<'_>,
    scheduler: &dyn Scheduler,
    context: &Array3<f32>,
    guidance: Guidance,
    sample: &Array5<f32>,
    step: usize,
) -> Result<Array5<f32>, PipelineError> {
    let input = into_video(
        scheduler.scale_model_input(sample.clone().into_dyn(), step)?,
        "enhancer model input",
    )?;
    let batch = repeat_batch(input.view(), guidance.batch_size());
    let timesteps = vec![scheduler.model_timestep(step)?; guidance.batch_size()];
    let output = models.unet.run(&batch, &timesteps, context)?;
    expect_shape("enhancer UNet output", output.shape(), batch.shape())?;
    let guided = guidance.apply(output.into_dyn().view())?;
    into_video(
        scheduler.predict_original(guided.view(), step, sample.view().into_dyn())?,
        "enhancer x0",
    )
}

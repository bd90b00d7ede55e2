//! Stage 2, streaming: StreamingT2V's autoregressive chunks (Henschel et al. 2024, sec. 4;
//! reference `t2v_enhanced/model/video_ldm.py` `predict_step` and
//! `pipeline_text_to_video_w_controlnet_synth.py`).
//!
//! Each new 16-frame chunk is denoised by DDIM (eta 1) with the CAM conditioned on the last 8
//! frames of the previous chunk (E_cond runs once per chunk, the CAM every step on the first 8
//! noisy latent frames) and the APM anchored on frame 0 (or the previous chunk's last frame).
//! The chunk's first 8 frames re-generate the conditioning frames and are dropped; its last 8
//! are final. One generator, seeded once per video, draws each chunk's initial latents and then
//! its DDIM variance noise, in the reference's order. Only the conditioning frames are kept
//! between chunks, so memory does not grow with the video's length.

use ndarray::{s, Array3, Array4, Axis};

use super::conditioning::{
    apm_tokens, stage2_conditions, stage2_guidance, streaming_context, TextEmbeddings,
};
use super::denoise::{decode_chunk, denoise, initial_latents, LoopPosition};
use super::options::{AnchorMode, Stage2Options};
use super::run::RunContext;
use super::tensor::{
    chunk_latent_shape, expect_shape, leading_frames, single_frame_batch, unit_to_signed,
};
use super::PipelineError;
use crate::manifest::PipelineConfig;
use crate::models::{ApmResampler, Cam, CamCondEncoder, ImageEncoder, StreamingUnet, VaeDecoder};
use crate::progress::{ProgressEvent, Stage};
use crate::sampling::{build_scheduler, GeneratorState, TorchGenerator};

/// The graphs stage 2 runs.
pub struct Stage2Models<'a> {
    pub image_encoder: &'a mut dyn ImageEncoder,
    pub apm_resampler: &'a mut dyn ApmResampler,
    pub cam_cond_encoder: &'a mut dyn CamCondEncoder,
    pub cam: &'a mut dyn Cam,
    pub unet: &'a mut dyn StreamingUnet,
    pub vae_decoder: &'a mut dyn VaeDecoder,
}

/// Where streaming starts: the anchor frame and the frames the first new chunk continues.
pub struct StreamStart {
    /// The APM anchor, (3, H, W) in [0, 1] (frame 0 of the video).
    pub anchor: Array3<f32>,
    /// The last `cond_frames` frames so far, (F_cond, 3, H, W) in [0, 1].
    pub cond_frames: Array4<f32>,
}

/// What stage 2 carries from one chunk to the next, besides the graphs and the text: a job
/// checkpoint holds it between chunks, and [`Streamer::resume`] continues from it exactly where
/// [`Streamer::state`] was taken (the same frames, bit for bit, as a run that never stopped).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamerState {
    /// The last `cond_frames` frames so far, (F_cond, 3, H, W) in [0, 1].
    pub cond_frames: Array4<f32>,
    /// APM tokens of the anchor and of the zero image, (1, 16, D) each.
    pub anchor_tokens: Array3<f32>,
    pub zero_tokens: Array3<f32>,
    /// The generator after the last finished chunk.
    pub generator: GeneratorState,
    /// `previous-chunk` anchoring: the anchor is re-embedded before the next chunk.
    pub anchor_stale: bool,
}

/// Generates stage-2 chunks one at a time.
pub struct Streamer<'a> {
    models: Stage2Models<'a>,
    config: &'a PipelineConfig,
    options: Stage2Options,
    text: TextEmbeddings,
    zero_tokens: Array3<f32>,
    anchor_tokens: Array3<f32>,
    cond_frames: Array4<f32>,
    generator: TorchGenerator,
    /// In `previous-chunk` mode, set when a chunk finished: re-anchor before the next one.
    anchor_stale: bool,
}

impl<'a> Streamer<'a> {
    /// Prepares streaming: APM tokens of the anchor and of the zero image, in one call.
    pub fn new(
        models: Stage2Models<'a>,
        config: &'a PipelineConfig,
        options: Stage2Options,
        text: TextEmbeddings,
        start: StreamStart,
        seed: u64,
    ) -> Result<Self, PipelineError> {
        let s2 = &config.stage2;
        if s2.cond_frames == 0 || s2.chunk_frames < 2 * s2.cond_frames {
            return Err(PipelineError::Invalid {
                field: "manifest pipeline.stage2.chunk_frames".into(),
                expected: format!("at least twice cond_frames ({})", s2.cond_frames),
                actual: s2.chunk_frames.to_string(),
            });
        }
        let frame_shape = [3, s2.height, s2.width];
        expect_shape("stage-2 anchor frame", start.anchor.shape(), &frame_shape)?;
        let cond_shape = [s2.cond_frames, 3, s2.height, s2.width];
        expect_shape(
            "stage-2 conditioning frames",
            start.cond_frames.shape(),
            &cond_shape,
        )?;
        let zero = Array4::zeros((1, 3, s2.height, s2.width));
        let anchor_frame = match options.anchor {
            AnchorMode::First => start.anchor,
            AnchorMode::PreviousChunk => last_frame(&start.cond_frames),
        };
        let anchor = unit_to_signed(single_frame_batch(&anchor_frame).view());
        let both = ndarray::concatenate(Axis(0), &[anchor.view(), zero.view()]).map_err(|_| {
            PipelineError::Shape {
                what: "APM anchor next to the zero image".into(),
                expected: zero.shape().to_vec(),
                actual: anchor.shape().to_vec(),
            }
        })?;
        let tokens = apm_tokens(models.image_encoder, models.apm_resampler, &both)?;
        Ok(Self {
            models,
            config,
            options,
            text,
            anchor_tokens: tokens.slice(s![0..1, .., ..]).to_owned(),
            zero_tokens: tokens.slice(s![1..2, .., ..]).to_owned(),
            cond_frames: start.cond_frames,
            generator: TorchGenerator::new(seed),
            anchor_stale: false,
        })
    }

    /// Everything needed to continue after the last finished chunk (see [`StreamerState`]).
    pub fn state(&self) -> StreamerState {
        StreamerState {
            cond_frames: self.cond_frames.clone(),
            anchor_tokens: self.anchor_tokens.clone(),
            zero_tokens: self.zero_tokens.clone(),
            generator: self.generator.state(),
            anchor_stale: self.anchor_stale,
        }
    }

    /// A streamer that continues from `state` (taken by [`Streamer::state`] of a streamer with
    /// the same config, options and text); no graph runs until the next chunk.
    pub fn resume(
        models: Stage2Models<'a>,
        config: &'a PipelineConfig,
        options: Stage2Options,
        text: TextEmbeddings,
        state: StreamerState,
    ) -> Result<Self, PipelineError> {
        let s2 = &config.stage2;
        let cond_shape = [s2.cond_frames, 3, s2.height, s2.width];
        expect_shape(
            "saved conditioning frames",
            state.cond_frames.shape(),
            &cond_shape,
        )?;
        let generator = TorchGenerator::from_state(&state.generator)?;
        Ok(Self {
            models,
            config,
            options,
            text,
            zero_tokens: state.zero_tokens,
            anchor_tokens: state.anchor_tokens,
            cond_frames: state.cond_frames,
            generator,
            anchor_stale: state.anchor_stale,
        })
    }

    /// The text embeddings of the chunks to come (a prompt schedule changed the prompt).
    pub fn set_text(&mut self, text: TextEmbeddings) {
        self.text = text;
    }

    /// Generates the next chunk and returns its new, final frames (F - F_cond, 3, H, W) in
    /// [0, 1]. `chunk` numbers the chunk in the whole video (stage 1's chunk is 0).
    pub fn next_chunk(
        &mut self,
        chunk: usize,
        run: &mut RunContext<'_>,
    ) -> Result<Array4<f32>, PipelineError> {
        let s2 = &self.config.stage2;
        run.check_cancelled()?;
        self.refresh_anchor()?;
        let cond_signed = unit_to_signed(self.cond_frames.view());
        let cond_features = self.models.cam_cond_encoder.encode(&cond_signed)?;
        let conditions = stage2_conditions(self.options.guidance);
        let context = streaming_context(
            &self.text,
            self.anchor_tokens.view(),
            self.zero_tokens.view(),
            &conditions,
        )?;
        let cam_text = context
            .slice(s![.., ..self.config.text_tokens, ..])
            .to_owned();
        let mut scheduler = build_scheduler(&s2.scheduler, self.options.steps, Some(s2.eta))?;
        let shape = stage2_latent_shape(self.config);
        let latents = initial_latents(scheduler.as_ref(), &mut self.generator, shape)?;
        let models = &mut self.models;
        let position = LoopPosition {
            stage: Stage::Streaming,
            chunk,
        };
        let latents = denoise(
            scheduler.as_mut(),
            latents,
            stage2_guidance(self.options.guidance),
            &mut self.generator,
            run,
            position,
            &mut |sample, timesteps| {
                let cam_sample = leading_frames(sample, s2.cond_frames);
                let residuals =
                    models
                        .cam
                        .run(&cam_sample, timesteps, &cam_text, &cond_features)?;
                Ok(models.unet.run(sample, timesteps, &context, &residuals)?)
            },
        )?;
        run.save_latents(Stage::Streaming, chunk, &latents)?;
        run.check_cancelled()?;
        let frames = decode_chunk(
            self.models.vae_decoder,
            &latents,
            self.config.vae_scaling_factor,
            run.decode_batch,
        )?;
        let new_frames = frames.slice(s![s2.cond_frames.., .., .., ..]).to_owned();
        self.advance(&new_frames);
        run.emit(ProgressEvent::ChunkDone {
            stage: Stage::Streaming,
            chunk,
            frames: new_frames.len_of(Axis(0)),
        });
        Ok(new_frames)
    }

    /// Keeps the new frames' tail as the next chunk's conditioning (and, in `previous-chunk`
    /// mode, its last frame as the next anchor).
    fn advance(&mut self, new_frames: &Array4<f32>) {
        let cond = self.config.stage2.cond_frames;
        // `new` checked chunk_frames >= 2 * cond_frames, so there are enough new frames.
        let count = new_frames.len_of(Axis(0));
        self.cond_frames = new_frames.slice(s![count - cond.., .., .., ..]).to_owned();
        self.anchor_stale = self.options.anchor == AnchorMode::PreviousChunk;
    }

    /// Embeds the last conditioning frame as the anchor when it changed.
    fn refresh_anchor(&mut self) -> Result<(), PipelineError> {
        if self.anchor_stale {
            let last = single_frame_batch(&last_frame(&self.cond_frames));
            self.anchor_tokens = apm_tokens(
                self.models.image_encoder,
                self.models.apm_resampler,
                &unit_to_signed(last.view()),
            )?;
            self.anchor_stale = false;
        }
        Ok(())
    }
}

fn last_frame(frames: &Array4<f32>) -> Array3<f32> {
    let count = frames.len_of(Axis(0));
    frames
        .index_axis(Axis(0), count.saturating_sub(1))
        .to_owned()
}

/// The (1, C, F, h, w) latent shape of one stage-2 chunk.
pub fn stage2_latent_shape(config: &PipelineConfig) -> [usize; 5] {
    let s = &config.stage2;
    chunk_latent_shape(config, s.chunk_frames, s.height, s.width)
}

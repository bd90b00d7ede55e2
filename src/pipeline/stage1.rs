//! Stage 1, initialization: the first 16-frame chunk from the text-to-video base model
//! (ModelScope T2V through diffusers' `TextToVideoSDPipeline`: DPM-Solver++(2M), 50 steps,
//! guidance 9.0, batch `[uncond, cond]`, latents `randn(1, 4, 16, h, w)` from the seeded
//! generator). StreamingT2V (Henschel et al. 2024), reference `t2v_enhanced/model_func.py`.

use ndarray::{Array4, Array5, Axis};

use super::conditioning::{text_conditions, text_context, TextEmbeddings};
use super::denoise::{decode_chunk, denoise, initial_latents, LoopPosition};
use super::options::Stage1Options;
use super::run::RunContext;
use super::tensor::{chunk_latent_shape, expect_shape};
use super::PipelineError;
use crate::manifest::PipelineConfig;
use crate::models::{VaeDecoder, VideoUnet};
use crate::progress::{ProgressEvent, Stage};
use crate::sampling::{build_scheduler, Guidance, TorchGenerator};

/// The graphs stage 1 runs (the text encoder runs once per video, before the stages).
pub struct Stage1Models<'a> {
    pub unet: &'a mut dyn VideoUnet,
    pub vae_decoder: &'a mut dyn VaeDecoder,
}

/// The (1, C, F, h, w) latent shape of one stage-1 chunk.
pub fn stage1_latent_shape(config: &PipelineConfig) -> [usize; 5] {
    let s = &config.stage1;
    chunk_latent_shape(config, s.num_frames, s.height, s.width)
}

/// Generates the first chunk: (F, 3, H, W) frames in [0, 1].
///
/// `init_noise` replaces the generator's initial latents (`--init-noise`).
pub fn initial_chunk(
    models: Stage1Models<'_>,
    config: &PipelineConfig,
    options: &Stage1Options,
    text: &TextEmbeddings,
    seed: u64,
    init_noise: Option<Array5<f32>>,
    run: &mut RunContext<'_>,
) -> Result<Array4<f32>, PipelineError> {
    let mut scheduler = build_scheduler(&config.stage1.scheduler, options.steps, None)?;
    let mut generator = TorchGenerator::new(seed);
    let shape = stage1_latent_shape(config);
    let latents = match init_noise {
        Some(noise) => {
            expect_shape("--init-noise latents", noise.shape(), &shape)?;
            noise.mapv(|x| x * scheduler.init_noise_sigma())
        }
        None => initial_latents(scheduler.as_ref(), &mut generator, shape)?,
    };
    let guidance = Guidance::joint(options.guidance_scale);
    let context = text_context(text, &text_conditions(options.guidance_scale));
    run.emit(ProgressEvent::StageStarted {
        stage: Stage::Initialization,
        chunks: 1,
        steps: options.steps,
    });
    let position = LoopPosition {
        stage: Stage::Initialization,
        chunk: 0,
    };
    let latents = denoise(
        scheduler.as_mut(),
        latents,
        guidance,
        &mut generator,
        run,
        position,
        &mut |sample, timesteps| Ok(models.unet.run(sample, timesteps, &context)?),
    )?;
    run.save_latents(Stage::Initialization, 0, &latents)?;
    run.check_cancelled()?;
    let frames = decode_chunk(
        models.vae_decoder,
        &latents,
        config.vae_scaling_factor,
        run.decode_batch,
    )?;
    run.emit(ProgressEvent::ChunkDone {
        stage: Stage::Initialization,
        chunk: 0,
        frames: frames.len_of(Axis(0)),
    });
    Ok(frames)
}

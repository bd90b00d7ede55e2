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

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Instant;

use ndarray::{s, Array3, Array5, ArrayD, Axis, Ix3, Zip};

mod batch;
mod state;

pub use state::{EnhancerFrameState, EnhancerState};

use super::compose::PromptIds;
use super::conditioning::{encode_text, text_conditions, text_context, TextEmbeddings};
use super::noise::{frame_noise, NoiseStream};
use super::options::EnhanceOptions;
use super::run::{FrameOutput, RunContext};
use super::tensor::{decoded_to_unit, expect_shape};
use super::PipelineError;
use crate::manifest::PipelineConfig;
use crate::models::{TextEncoder, VaeDecoder, VaeEncoder, VideoUnet};
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

/// Enhances a video whose frames arrive one at a time, as a wavefront over (chunk, step).
///
/// Each frame carries its own solver state (the update is elementwise, so this equals one
/// solver over the whole video). A chunk runs step `s` once all its frames are at step `s`; a
/// frame advances once every chunk covering it has run step `s` and the blending owner has
/// given its x0. Frames that reached the last step are decoded, handed out and dropped, so
/// only a window of about `steps` chunks is held, whatever the video's length.
pub struct Enhancer<'a> {
    models: Stage3Models<'a>,
    config: &'a PipelineConfig,
    options: EnhanceOptions,
    seed: u64,
    plan: EnhancePlan,
    geometry: EnhancerGeometry,
    context: Array3<f32>,
    /// Re-encodes the text of chunks a prompt schedule gives another prompt.
    prompts: Option<ChunkPrompts<'a>>,
    guidance: Guidance,
    /// Answers the per-step questions (timesteps, input scaling, x0); never stepped.
    schedule: Box<dyn Scheduler>,
    noise_timestep: usize,
    /// Frames of the padded video, from `window_start` on, not yet handed out.
    window: VecDeque<FrameState>,
    window_start: usize,
    /// The next solver step of each chunk.
    chunk_steps: Vec<usize>,
    /// The last real frame's clean latent, kept to pad videos shorter than a chunk.
    last_clean: Option<Array3<f32>>,
    started: Option<Instant>,
}

/// The enhancer's text encoder, the request's prompt and each chunk's text (decided at its
/// first step: a chunk keeps the prompt it started with).
struct ChunkPrompts<'a> {
    encoder: &'a mut dyn TextEncoder,
    default: PromptIds,
    chunks: Vec<ChunkText>,
}

enum ChunkText {
    Undecided,
    Default,
    Custom(Array3<f32>),
}

/// One frame of the padded video in flight.
struct FrameState {
    /// The sample at `step`.
    x: Array3<f32>,
    step: usize,
    /// This frame's solver (it keeps the previous x0 of the second-order update).
    solver: Box<dyn Scheduler>,
    /// The blended x0 at `step`, once its owner chunk ran.
    x0: Option<Array3<f32>>,
    /// Chunks covering this frame that ran `step`.
    evaluations: usize,
}

/// The SDEdit noise level, checked against the solver's first timestep: a draft noised to
/// another level than the one the solver starts from would be denoised from the wrong noise.
fn sdedit_start(noise_timestep: i64, timesteps: &[f64]) -> Result<usize, PipelineError> {
    let first = timesteps.first().copied().unwrap_or(f64::NAN);
    match usize::try_from(noise_timestep) {
        Ok(t) if t as f64 == first.round() => Ok(t),
        _ => Err(PipelineError::Invalid {
            field: "manifest pipeline.stage3.noise_timestep".into(),
            expected: format!("the stage-3 scheduler's first timestep (its t_max), {first}"),
            actual: noise_timestep.to_string(),
        }),
    }
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
        let geometry = match options.content {
            Some(content) => {
                EnhancerGeometry::new(content, EnhancerGeometry::frame_of(&config.stage3))?
            }
            None => EnhancerGeometry::from_stage3(&config.stage3)?,
        };
        let guidance =
            Guidance::joint(options.guidance_scale).with_rescale(options.guide_rescale)?;
        let context = text_context(text, &text_conditions(options.guidance_scale));
        let schedule = build_scheduler(&config.stage3.scheduler, options.steps, None)?;
        let noise_timestep = sdedit_start(config.stage3.noise_timestep, schedule.timesteps())?;
        let chunk_steps = vec![0; plan.chunks.len()];
        Ok(Self {
            models,
            config,
            options,
            seed,
            plan,
            geometry,
            context,
            prompts: None,
            guidance,
            schedule,
            noise_timestep,
            window: VecDeque::new(),
            window_start: 0,
            chunk_steps,
            last_clean: None,
            started: None,
        })
    }

    /// Lets a prompt schedule ([`RunContext::prompts`]) give chunks other prompts than
    /// `default`, the ids the enhancer's text was encoded from.
    pub fn with_text_encoder(
        mut self,
        encoder: &'a mut dyn TextEncoder,
        default: PromptIds,
    ) -> Self {
        let chunks = self
            .plan
            .chunks
            .iter()
            .map(|_| ChunkText::Undecided)
            .collect();
        self.prompts = Some(ChunkPrompts {
            encoder,
            default,
            chunks,
        });
        self
    }

    /// Decides `chunk`'s text before its first step, from the schedule if there is one.
    fn decide_text(&mut self, chunk: usize, run: &RunContext<'_>) -> Result<(), PipelineError> {
        let (Some(schedule), Some(prompts)) = (run.prompts, self.prompts.as_mut()) else {
            return Ok(());
        };
        if !matches!(prompts.chunks[chunk], ChunkText::Undecided) {
            return Ok(());
        }
        let start = self.plan.source_frame(self.plan.chunks[chunk].start);
        prompts.chunks[chunk] = match schedule.enhancer_at(start) {
            Some(ids) if ids != prompts.default => {
                let text = encode_text(prompts.encoder, &ids.prompt, &ids.negative)?;
                let conditions = text_conditions(self.options.guidance_scale);
                ChunkText::Custom(text_context(&text, &conditions))
            }
            _ => ChunkText::Default,
        };
        Ok(())
    }

    /// Input frames taken so far (a resumed job feeds the enhancer from the next one).
    pub fn frames_received(&self) -> usize {
        self.received().min(self.plan.frames)
    }

    /// At most this many chunks' steps run in one UNet call.
    pub fn batch(&self) -> usize {
        self.options.batch.max(1)
    }

    /// The chunk plan (frames, chunks, padding).
    pub fn plan(&self) -> &EnhancePlan {
        &self.plan
    }

    /// Takes the next input frame, then runs every chunk step that became possible and hands
    /// out the frames that became final.
    pub fn push(
        &mut self,
        frame: &Frame,
        run: &RunContext<'_>,
        output: &mut dyn FrameOutput,
    ) -> Result<(), PipelineError> {
        self.admit_frame(frame, run)?;
        self.pump(run, output)
    }

    /// Takes the next input frame without running any chunk step ([`Enhancer::pump_at_most`]
    /// runs them).
    pub fn admit_frame(
        &mut self,
        frame: &Frame,
        run: &RunContext<'_>,
    ) -> Result<(), PipelineError> {
        let index = self.received();
        if index >= self.plan.frames {
            return Err(PipelineError::Invalid {
                field: "enhancer input".into(),
                expected: format!("{} frames", self.plan.frames),
                actual: format!("frame {}", index + 1),
            });
        }
        run.check_cancelled()?;
        let clean = self.encode(frame, index)?;
        self.admit(&clean, index)?;
        if index + 1 == self.plan.frames {
            for padded in self.plan.frames..self.plan.padded_frames {
                self.admit(&clean, padded)?;
            }
        } else if self.plan.padding() > 0 {
            self.last_clean = Some(clean);
        }
        Ok(())
    }

    /// Checks that the whole video went through and reports the stage's duration.
    pub fn finish(
        mut self,
        run: &RunContext<'_>,
        output: &mut dyn FrameOutput,
    ) -> Result<(), PipelineError> {
        self.pump(run, output)?;
        if self.window_start != self.plan.padded_frames {
            return Err(PipelineError::Invalid {
                field: "enhancer input".into(),
                expected: format!("{} frames", self.plan.frames),
                actual: format!("{} frames", self.received().min(self.plan.frames)),
            });
        }
        run.emit(ProgressEvent::StageFinished {
            stage: Stage::Refinement,
            seconds: self.started.map_or(0.0, |t| t.elapsed().as_secs_f64()),
        });
        Ok(())
    }

    /// Frames of the padded video admitted so far.
    fn received(&self) -> usize {
        self.window_start + self.window.len()
    }

    /// Resizes, pads and VAE-encodes a frame: `(mean + exp(logvar / 2) * eps) * scaling`.
    fn encode(&mut self, frame: &Frame, index: usize) -> Result<Array3<f32>, PipelineError> {
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
        Ok(Zip::from(&mean)
            .and(&logvar)
            .and(&eps)
            .map_collect(|&m, &lv, &e| {
                let std = (0.5 * lv.clamp(LOGVAR_RANGE.0, LOGVAR_RANGE.1)).exp();
                (m + std * e) * scaling
            }))
    }

    /// Noises a clean latent to the start of the solver: `sigma_0 * (alpha_t x0 + sigma_t eps)`.
    fn admit(&mut self, clean: &Array3<f32>, index: usize) -> Result<(), PipelineError> {
        let solver = build_scheduler(&self.config.stage3.scheduler, self.options.steps, None)?;
        let noise = frame_noise(self.seed, NoiseStream::Sdedit, 0, index, clean.dim());
        let noised = solver.add_noise(
            clean.view().into_dyn(),
            noise.view().into_dyn(),
            self.noise_timestep,
        )?;
        let x = into_frame(solver.initial_sample(noised))?;
        self.window.push_back(FrameState {
            x,
            step: 0,
            solver,
            x0: None,
            evaluations: 0,
        });
        Ok(())
    }

    /// Runs ready chunk steps until none is left, handing out final frames as they appear.
    fn pump(
        &mut self,
        run: &RunContext<'_>,
        output: &mut dyn FrameOutput,
    ) -> Result<(), PipelineError> {
        self.pump_at_most(usize::MAX, run, output).map(|_| ())
    }

    /// Runs at most `limit` ready chunk steps, handing out final frames as they appear;
    /// returns how many ran (0: nothing is ready until more frames arrive).
    pub fn pump_at_most(
        &mut self,
        limit: usize,
        run: &RunContext<'_>,
        output: &mut dyn FrameOutput,
    ) -> Result<usize, PipelineError> {
        let mut ran = 0;
        loop {
            let ready: Vec<usize> = (0..self.plan.chunks.len())
                .filter(|&chunk| self.chunk_ready(chunk))
                .take(limit - ran)
                .collect();
            // Chunk steps do not depend on their order (each reads its frames at its step and
            // a frame advances once every covering chunk ran), so ready chunks run together.
            for group in ready.chunks(self.batch()) {
                self.run_chunk_steps(group, run)?;
            }
            ran += ready.len();
            self.hand_out_final(run, output)?;
            if ready.is_empty() || ran == limit {
                return Ok(ran);
            }
        }
    }

    /// Whether all frames of `chunk` are present and at the chunk's next step.
    fn chunk_ready(&self, chunk: usize) -> bool {
        let range = self.plan.chunks[chunk].frames();
        let step = self.chunk_steps[chunk];
        step < self.options.steps
            && range.start >= self.window_start
            && range.end <= self.received()
            && range
                .clone()
                .all(|f| self.window[f - self.window_start].step == step)
    }

    /// Predicts `chunk`'s x0 at its next step, gives it to the frames it owns, and advances
    /// the frames every covering chunk has now seen.
    /// Predicts the x0 of `chunks` at their next steps (one batched UNet call), gives it to
    /// the frames each owns, and advances the frames every covering chunk has now seen.
    fn run_chunk_steps(
        &mut self,
        chunks: &[usize],
        run: &RunContext<'_>,
    ) -> Result<(), PipelineError> {
        run.check_cancelled()?;
        if self.started.is_none() {
            self.started = Some(Instant::now());
            run.emit(ProgressEvent::StageStarted {
                stage: Stage::Refinement,
                chunks: self.plan.chunks.len(),
                steps: self.options.steps,
            });
        }
        let mut inputs = Vec::with_capacity(chunks.len());
        for &chunk in chunks {
            self.decide_text(chunk, run)?;
            let context = match self.prompts.as_ref().map(|p| &p.chunks[chunk]) {
                Some(ChunkText::Custom(context)) => context,
                _ => &self.context,
            };
            inputs.push(batch::ChunkInput {
                sample: self.gather(self.plan.chunks[chunk].frames()),
                context: context.clone(),
                step: self.chunk_steps[chunk],
            });
        }
        let x0s = batch::chunks_x0(
            &mut self.models,
            self.schedule.as_ref(),
            self.guidance,
            &inputs,
        )?;
        for ((&chunk, input), x0) in chunks.iter().zip(&inputs).zip(x0s) {
            self.take_x0(chunk, input.step, &x0, run)?;
        }
        Ok(())
    }

    /// Gives `chunk`'s x0 at `step` to the frames it owns and advances the frames every
    /// covering chunk has now seen.
    fn take_x0(
        &mut self,
        chunk: usize,
        step: usize,
        x0: &Array5<f32>,
        run: &RunContext<'_>,
    ) -> Result<(), PipelineError> {
        let range = self.plan.chunks[chunk].frames();
        let owned = BlendSchedule::new(&self.plan, self.seed).owned_frames(chunk, step);
        for frame in range.clone() {
            let state = &mut self.window[frame - self.window_start];
            if owned.contains(&frame) {
                state.x0 = Some(x0.slice(s![0, .., frame - range.start, .., ..]).to_owned());
            }
            state.evaluations += 1;
        }
        self.chunk_steps[chunk] += 1;
        run.emit(ProgressEvent::Step {
            stage: Stage::Refinement,
            chunk,
            step: step + 1,
            steps: self.options.steps,
        });
        for frame in range {
            if self.window[frame - self.window_start].evaluations == self.covering_chunks(frame) {
                self.advance_frame(frame)?;
            }
        }
        Ok(())
    }

    /// (1, C, F, h, w) samples of the frames in `range`.
    fn gather(&self, range: Range<usize>) -> Array5<f32> {
        let (c, h, w) = self.window[range.start - self.window_start].x.dim();
        let mut sample = Array5::zeros((1, c, range.len(), h, w));
        for (i, frame) in range.enumerate() {
            let x = &self.window[frame - self.window_start].x;
            sample.slice_mut(s![0, .., i, .., ..]).assign(x);
        }
        sample
    }

    fn covering_chunks(&self, frame: usize) -> usize {
        self.plan
            .chunks
            .iter()
            .filter(|c| c.frames().contains(&frame))
            .count()
    }

    /// One solver step of one frame from its blended x0.
    fn advance_frame(&mut self, frame: usize) -> Result<(), PipelineError> {
        let seed = self.seed;
        let state = &mut self.window[frame - self.window_start];
        let step = state.step;
        let x0 = state.x0.take().ok_or_else(|| PipelineError::Invalid {
            field: "randomized blending".into(),
            expected: format!("an owner chunk for frame {frame} at step {step}"),
            actual: "none".into(),
        })?;
        let noise = state
            .solver
            .needs_noise(step)
            .then(|| frame_noise(seed, NoiseStream::Solver, step + 1, frame, state.x.dim()));
        let out = state.solver.step_denoised(
            x0.view().into_dyn(),
            step,
            state.x.view().into_dyn(),
            noise.as_ref().map(|n| n.view().into_dyn()),
        )?;
        state.x = into_frame(out.prev_sample)?;
        state.step += 1;
        state.evaluations = 0;
        Ok(())
    }

    /// Decodes, crops and hands out the leading frames that finished every step.
    fn hand_out_final(
        &mut self,
        run: &RunContext<'_>,
        output: &mut dyn FrameOutput,
    ) -> Result<(), PipelineError> {
        while self
            .window
            .front()
            .is_some_and(|f| f.step == self.options.steps)
        {
            let Some(state) = self.window.pop_front() else {
                break;
            };
            let index = self.window_start;
            self.window_start += 1;
            if index < self.plan.frames {
                run.check_cancelled()?;
                output.push(&self.decode(&state.x)?)?;
            }
        }
        Ok(())
    }

    /// Decodes one latent frame (C, h, w) and crops the padding unless asked to keep it.
    fn decode(&mut self, latent: &Array3<f32>) -> Result<Frame, PipelineError> {
        let scaled = latent
            .mapv(|v| v / self.config.vae_scaling_factor)
            .insert_axis(Axis(0));
        let image = decoded_to_unit(self.models.vae_decoder.decode(&scaled)?);
        let frame = Frame::from_chw(image.index_axis(Axis(0), 0), SampleRange::Unit)?;
        Ok(match self.options.keep_padding {
            true => frame,
            false => self.geometry.crop_content(&frame)?,
        })
    }
}

fn into_frame(array: ArrayD<f32>) -> Result<Array3<f32>, PipelineError> {
    let shape = array.shape().to_vec();
    array
        .into_dimensionality::<Ix3>()
        .map_err(|_| PipelineError::Invalid {
            field: "enhancer frame latent".into(),
            expected: "a (C, h, w) tensor".into(),
            actual: format!("shape {shape:?}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdedit_start_must_be_the_solvers_first_timestep() {
        assert_eq!(sdedit_start(300, &[300.0, 250.0]).unwrap(), 300);
        for (noise_timestep, timesteps) in [(599, &[300.0, 250.0][..]), (-1, &[300.0][..])] {
            let err = sdedit_start(noise_timestep, timesteps)
                .unwrap_err()
                .to_string();
            assert!(err.contains("pipeline.stage3.noise_timestep"), "{err}");
            assert!(err.contains("first timestep (its t_max), 300"), "{err}");
            assert!(err.contains(&noise_timestep.to_string()), "{err}");
        }
    }
}

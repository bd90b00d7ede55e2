//! The three StreamingT2V stages composed into the product's jobs: generate (stages 1, 2 and
//! optionally 3), extend a video (stage 2 continued from its frames, optionally 3) and
//! enhance a video (stage 3 alone).
//!
//! Frames flow as soon as they are final: stage-2 frames go to the preview and either to the
//! output (no enhancement) or into the enhancer, whose frames then go to the output.

use std::ops::Range;
use std::time::Instant;

use ndarray::{s, Array4, Array5, Axis};

use super::checkpoint::JobState;
use super::conditioning::{encode_text, TokenIds};
use super::options::{EnhanceOptions, GenerateOptions};
use super::run::{FrameOutput, RunContext};
use super::sink::StageTwoSink;
use super::stage1::{initial_chunk, Stage1Models};
use super::stage2::{Stage2Models, StreamStart, Streamer};
use super::stage3::{Enhancer, Stage3Models};
use super::PipelineError;
use crate::manifest::PipelineConfig;
use crate::models::{EnhancerModels, StreamingModels, TextEncoder, VideoUnet};
use crate::plan::{resize_bicubic, FramePlan};
use crate::progress::{ProgressEvent, Stage};
use crate::video::{Frame, FrameSize, SampleRange};

/// A prompt and its negative, tokenized for one text encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptIds {
    pub prompt: TokenIds,
    pub negative: TokenIds,
}

/// The graphs of stages 1 and 2, borrowed.
pub struct StreamingGraphs<'a> {
    pub text_encoder: &'a mut dyn TextEncoder,
    /// `None` when only extending videos.
    pub stage1_unet: Option<&'a mut dyn VideoUnet>,
    pub stage2: Stage2Models<'a>,
}

/// The graphs of stage 3, borrowed.
pub struct EnhancerGraphs<'a> {
    pub text_encoder: &'a mut dyn TextEncoder,
    pub stage3: Stage3Models<'a>,
}

impl<'a> StreamingGraphs<'a> {
    /// Borrows the ONNX Runtime sessions of a loaded model set.
    pub fn from_onnx(models: &'a mut StreamingModels) -> Self {
        Self {
            text_encoder: &mut models.text_encoder,
            stage1_unet: models.stage1_unet.as_mut().map(|u| u as &mut dyn VideoUnet),
            stage2: Stage2Models {
                image_encoder: &mut models.image_encoder,
                apm_resampler: &mut models.apm_resampler,
                cam_cond_encoder: &mut models.cam_cond_encoder,
                cam: &mut models.cam,
                unet: &mut models.unet,
                vae_decoder: &mut models.vae_decoder,
            },
        }
    }
}

impl<'a> EnhancerGraphs<'a> {
    /// Borrows the ONNX Runtime sessions of a loaded model set.
    pub fn from_onnx(models: &'a mut EnhancerModels) -> Self {
        Self {
            text_encoder: &mut models.text_encoder,
            stage3: Stage3Models {
                unet: &mut models.unet,
                vae_encoder: &mut models.vae_encoder,
                vae_decoder: &mut models.vae_decoder,
            },
        }
    }
}

/// Where the final frames go.
pub struct Outputs<'o> {
    pub video: &'o mut dyn FrameOutput,
    /// Receives the stage-2 frames too (`--preview-out`).
    pub preview: Option<&'o mut dyn FrameOutput>,
}

/// What a finished run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Frames produced by stage 2 (including an extended video's own frames).
    pub stage2_frames: usize,
    /// Frames handed to the output.
    pub frames_written: usize,
}

/// The StreamingT2V pipeline over borrowed graphs.
pub struct Pipeline<'a> {
    config: &'a PipelineConfig,
    streaming: Option<StreamingGraphs<'a>>,
    enhancer: Option<EnhancerGraphs<'a>>,
}

impl<'a> Pipeline<'a> {
    pub fn new(config: &'a PipelineConfig) -> Self {
        Self {
            config,
            streaming: None,
            enhancer: None,
        }
    }

    pub fn with_streaming(mut self, graphs: StreamingGraphs<'a>) -> Self {
        self.streaming = Some(graphs);
        self
    }

    pub fn with_enhancer(mut self, graphs: EnhancerGraphs<'a>) -> Self {
        self.enhancer = Some(graphs);
        self
    }

    /// Text to video: stage 1, then stage 2 up to `options.frames`, then (optionally) stage 3.
    /// `init_noise` replaces stage 1's initial latents.
    pub fn generate(
        self,
        text: &PromptIds,
        enhancer_text: Option<&PromptIds>,
        options: &GenerateOptions,
        init_noise: Option<Array5<f32>>,
        run: &mut RunContext<'_>,
        outputs: Outputs<'_>,
    ) -> Result<RunSummary, PipelineError> {
        let start = Start::Fresh(init_noise);
        self.generate_from(text, enhancer_text, options, start, run, outputs)
    }

    /// Continues an interrupted [`Pipeline::generate`] from its last checkpoint; the outputs
    /// were reopened keeping the durable frames `state` records. The frames written equal,
    /// bit for bit, those of a run that was never interrupted.
    pub fn resume_generate(
        self,
        text: &PromptIds,
        enhancer_text: Option<&PromptIds>,
        options: &GenerateOptions,
        state: JobState,
        run: &mut RunContext<'_>,
        outputs: Outputs<'_>,
    ) -> Result<RunSummary, PipelineError> {
        let start = Start::Resume(Box::new(state));
        self.generate_from(text, enhancer_text, options, start, run, outputs)
    }

    fn generate_from(
        mut self,
        text: &PromptIds,
        enhancer_text: Option<&PromptIds>,
        options: &GenerateOptions,
        start: Start,
        run: &mut RunContext<'_>,
        outputs: Outputs<'_>,
    ) -> Result<RunSummary, PipelineError> {
        let config = self.config;
        let s2 = &config.stage2;
        let plan = FramePlan::new(options.frames, s2.chunk_frames, s2.cond_frames)?;
        if let Some(message) = plan.rounding_message() {
            run.emit(ProgressEvent::Warning { message });
        }
        let StreamingGraphs {
            text_encoder,
            stage1_unet,
            stage2,
        } = self.take_streaming()?;
        let mut enhancer = self.start_enhancer(enhancer_text, options, plan.stage2_frames)?;
        if let Start::Resume(state) = &start {
            enhancer = enhancer
                .map(|fresh| {
                    let saved = state
                        .enhancer
                        .clone()
                        .ok_or_else(|| PipelineError::Invalid {
                            field: "checkpoint".into(),
                            expected: "the enhancer's state (the job enhances)".into(),
                            actual: "none".into(),
                        })?;
                    fresh.resume(saved)
                })
                .transpose()?;
        }
        let mut sink = StageTwoSink::new(enhancer, outputs, run.progress);
        sink.prepare_checkpoints(run)?;
        let ids = text.clone();
        let text = encode_text(&mut *text_encoder, &text.prompt, &text.negative)?;
        let (streamer, first_chunk) = match start {
            Start::Fresh(init_noise) => {
                let stage1 = Stage1Models {
                    unet: stage1_unet.ok_or_else(|| missing("1", "stage1_unet"))?,
                    vae_decoder: &mut *stage2.vae_decoder,
                };
                let first = timed(run, Stage::Initialization, |run| {
                    initial_chunk(
                        stage1,
                        config,
                        &options.stage1,
                        &text,
                        options.seed,
                        init_noise,
                        run,
                    )
                })?;
                sink.push_chunk(&first, run)?;
                let start = stream_start(&first, s2.cond_frames);
                let seed = options.stage2_seed();
                let streamer =
                    Streamer::new(stage2, config, options.stage2.clone(), text, start, seed)?;
                sink.checkpoint(1, &streamer, run)?;
                (streamer, 1)
            }
            Start::Resume(state) => {
                sink.resume(&state)?;
                let options = options.stage2.clone();
                let streamer = Streamer::resume(stage2, config, options, text, state.streamer)?;
                (streamer, state.next_chunk)
            }
        };
        let texts = ChunkTexts {
            encoder: text_encoder,
            current: ids,
            first_new_frame: s2.chunk_frames,
            new_per_chunk: s2.chunk_frames - s2.cond_frames,
        };
        stream(
            streamer,
            texts,
            first_chunk..plan.chunks,
            options.stage2.steps,
            &mut sink,
            run,
        )?;
        sink.finish(run)
    }

    /// Continues `input` by `options.frames` new frames (rounded down to whole chunks): the
    /// input's last frames condition the CAM and its first frame anchors the APM; stage 1 is
    /// skipped. The output holds the input's frames followed by the new ones.
    pub fn extend(
        mut self,
        input: &[Frame],
        text: &PromptIds,
        enhancer_text: Option<&PromptIds>,
        options: &GenerateOptions,
        run: &mut RunContext<'_>,
        outputs: Outputs<'_>,
    ) -> Result<RunSummary, PipelineError> {
        let config = self.config;
        let s2 = &config.stage2;
        let frames = stage2_frames(input, config)?;
        let new_per_chunk = s2.chunk_frames - s2.cond_frames;
        let chunks = extension_chunks(options.frames, new_per_chunk, run)?;
        let total = frames.len_of(Axis(0)) + chunks * new_per_chunk;
        let streaming = self.take_streaming()?;
        let enhancer = self.start_enhancer(enhancer_text, options, total)?;
        let mut sink = StageTwoSink::new(enhancer, outputs, run.progress);
        sink.push_chunk(&frames, run)?;
        let ids = text.clone();
        let text = encode_text(&mut *streaming.text_encoder, &text.prompt, &text.negative)?;
        let start = stream_start(&frames, s2.cond_frames);
        let streamer = Streamer::new(
            streaming.stage2,
            config,
            options.stage2.clone(),
            text,
            start,
            options.stage2_seed(),
        )?;
        let texts = ChunkTexts {
            encoder: streaming.text_encoder,
            current: ids,
            first_new_frame: frames.len_of(Axis(0)),
            new_per_chunk,
        };
        stream(
            streamer,
            texts,
            1..chunks + 1,
            options.stage2.steps,
            &mut sink,
            run,
        )?;
        sink.finish(run)
    }

    /// Stage 3 alone over `input`.
    pub fn enhance(
        mut self,
        input: &[Frame],
        enhancer_text: &PromptIds,
        options: &EnhanceOptions,
        seed: u64,
        run: &mut RunContext<'_>,
        output: &mut dyn FrameOutput,
    ) -> Result<RunSummary, PipelineError> {
        let graphs = self
            .enhancer
            .take()
            .ok_or_else(|| missing("3", "enhancer_unet"))?;
        let enhancer = start_enhancer(
            self.config,
            graphs,
            enhancer_text,
            options,
            input.len(),
            seed,
        )?;
        let outputs = Outputs {
            video: output,
            preview: None,
        };
        let mut sink = StageTwoSink::new(Some(enhancer), outputs, run.progress);
        for frame in input {
            sink.push_frame(frame, run)?;
        }
        sink.finish(run)
    }

    fn take_streaming(&mut self) -> Result<StreamingGraphs<'a>, PipelineError> {
        self.streaming.take().ok_or_else(|| missing("2", "unet"))
    }

    /// The enhancer for `frames` frames when `options` asks for stage 3.
    fn start_enhancer(
        &mut self,
        text: Option<&PromptIds>,
        options: &GenerateOptions,
        frames: usize,
    ) -> Result<Option<Enhancer<'a>>, PipelineError> {
        let Some(enhance) = &options.enhance else {
            return Ok(None);
        };
        let graphs = self
            .enhancer
            .take()
            .ok_or_else(|| missing("3", "enhancer_unet"))?;
        let text = text.ok_or_else(|| PipelineError::Invalid {
            field: "enhancer prompt".into(),
            expected: "token ids for the enhancer's text encoder".into(),
            actual: "none".into(),
        })?;
        start_enhancer(self.config, graphs, text, enhance, frames, options.seed).map(Some)
    }
}

fn start_enhancer<'a>(
    config: &'a PipelineConfig,
    graphs: EnhancerGraphs<'a>,
    text: &PromptIds,
    options: &EnhanceOptions,
    frames: usize,
    seed: u64,
) -> Result<Enhancer<'a>, PipelineError> {
    let embeddings = encode_text(&mut *graphs.text_encoder, &text.prompt, &text.negative)?;
    let enhancer = Enhancer::new(
        graphs.stage3,
        config,
        options.clone(),
        &embeddings,
        frames,
        seed,
    )?;
    Ok(enhancer.with_text_encoder(graphs.text_encoder, text.clone()))
}

/// Where [`Pipeline::generate_from`] starts.
enum Start {
    /// Stage 1 first, from these initial latents or seeded noise.
    Fresh(Option<Array5<f32>>),
    /// From a checkpoint.
    Resume(Box<JobState>),
}

/// The stage-2 text of each chunk: re-encoded when a prompt schedule changes it.
struct ChunkTexts<'e> {
    encoder: &'e mut dyn TextEncoder,
    current: PromptIds,
    /// The first new frame of chunk 1 (the stage-1 chunk's length, or the input's).
    first_new_frame: usize,
    new_per_chunk: usize,
}

impl ChunkTexts<'_> {
    /// Gives `streamer` the prompt in effect at `chunk`'s first new frame.
    fn update(
        &mut self,
        streamer: &mut Streamer<'_>,
        chunk: usize,
        run: &RunContext<'_>,
    ) -> Result<(), PipelineError> {
        let Some(schedule) = run.prompts else {
            return Ok(());
        };
        let frame = self.first_new_frame + self.new_per_chunk * (chunk - 1);
        let ids = schedule.streaming_at(frame);
        if ids != self.current {
            streamer.set_text(encode_text(self.encoder, &ids.prompt, &ids.negative)?);
            self.current = ids;
        }
        Ok(())
    }
}

/// Generates chunks `chunks` of stage 2 and hands their new frames on.
fn stream(
    mut streamer: Streamer<'_>,
    mut texts: ChunkTexts<'_>,
    chunks: Range<usize>,
    steps: usize,
    sink: &mut StageTwoSink<'_, '_, '_>,
    run: &mut RunContext<'_>,
) -> Result<(), PipelineError> {
    run.emit(ProgressEvent::StageStarted {
        stage: Stage::Streaming,
        chunks: chunks.len(),
        steps,
    });
    timed(run, Stage::Streaming, |run| {
        for chunk in chunks {
            texts.update(&mut streamer, chunk, run)?;
            let frames = streamer.next_chunk(chunk, run)?;
            sink.push_streamed_chunk(&frames, chunk + 1, &streamer, run)?;
        }
        Ok(())
    })
}

/// Runs `work` and reports the stage's duration when it succeeds.
fn timed<T>(
    run: &mut RunContext<'_>,
    stage: Stage,
    work: impl FnOnce(&mut RunContext<'_>) -> Result<T, PipelineError>,
) -> Result<T, PipelineError> {
    let started = Instant::now();
    let value = work(run)?;
    run.emit(ProgressEvent::StageFinished {
        stage,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(value)
}

/// Anchor = first frame; CAM conditioning = the last `cond` frames.
fn stream_start(frames: &Array4<f32>, cond: usize) -> StreamStart {
    let count = frames.len_of(Axis(0));
    StreamStart {
        anchor: frames.index_axis(Axis(0), 0).to_owned(),
        cond_frames: frames
            .slice(s![count.saturating_sub(cond).., .., .., ..])
            .to_owned(),
    }
}

/// An input video as (F, 3, H, W) stage-2 frames in [0, 1], resized if needed.
fn stage2_frames(input: &[Frame], config: &PipelineConfig) -> Result<Array4<f32>, PipelineError> {
    let s2 = &config.stage2;
    if input.len() < s2.cond_frames {
        return Err(PipelineError::Invalid {
            field: "--input".into(),
            expected: format!("a video of at least {} frames", s2.cond_frames),
            actual: format!("{} frames", input.len()),
        });
    }
    let size = FrameSize::new(s2.width, s2.height);
    let mut frames = Array4::zeros((input.len(), 3, s2.height, s2.width));
    for (mut out, frame) in frames.outer_iter_mut().zip(input) {
        let resized = resize_bicubic(frame, size)?;
        out.assign(&resized.to_chw(SampleRange::Unit));
    }
    Ok(frames)
}

/// Whole chunks covering `requested` new frames (rounded down, at least one).
fn extension_chunks(
    requested: usize,
    new_per_chunk: usize,
    run: &RunContext<'_>,
) -> Result<usize, PipelineError> {
    let chunks = requested / new_per_chunk;
    if chunks == 0 {
        return Err(PipelineError::Invalid {
            field: "--frames".into(),
            expected: format!("at least {new_per_chunk} new frames (one chunk)"),
            actual: requested.to_string(),
        });
    }
    if !requested.is_multiple_of(new_per_chunk) {
        run.emit(ProgressEvent::Warning {
            message: format!(
                "--frames {requested} is not a multiple of {new_per_chunk}; adding {} frames",
                chunks * new_per_chunk
            ),
        });
    }
    Ok(chunks)
}

fn missing(stage: &str, role: &str) -> PipelineError {
    PipelineError::MissingGraph {
        stage: stage.to_owned(),
        role: role.to_owned(),
    }
}

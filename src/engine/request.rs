//! Validated requests. Each constructor takes plain values ([`super::params`]) and the model
//! set, performs every check that needs no loaded model (prompts, frame counts, steps,
//! guidance, chunk geometry, output and side-file paths, input videos, initial noise) and
//! returns a [`RequestError`] naming the field. A request that exists is runnable as far as
//! anything short of the models can tell; its fields cannot be changed afterwards.

use std::path::{Path, PathBuf};

use ndarray::Array5;

use crate::manifest::{ModelSet, PipelineConfig};
use crate::pipeline::stage1::stage1_latent_shape;
use crate::pipeline::{EnhanceOptions, GenerateOptions};
use crate::plan::FramePlan;
use crate::video::{Frame, FrameSize, OutputTarget, VideoInfo};

use super::checks;
use super::error::RequestError;
use super::field::Field;
use super::outputs::{OutputPlan, Stage2Copy};
use super::params::{EnhanceParams, ExtendParams, GenerateParams, OutputParams, StreamingParams};

/// The reference's default length (`--num_frames 24`), also the default extension.
pub const DEFAULT_FRAMES: usize = 24;

/// A prompt and its negative, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptText {
    pub prompt: String,
    pub negative: String,
}

/// Text to video, validated.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    text: PromptText,
    options: GenerateOptions,
    plan: FramePlan,
    init_noise: Option<Array5<f32>>,
    save_latents: Option<PathBuf>,
    output: OutputPlan,
}

/// A video continued by new frames, validated; holds the decoded input.
#[derive(Debug, Clone)]
pub struct ExtendRequest {
    text: PromptText,
    options: GenerateOptions,
    input: Vec<Frame>,
    input_info: VideoInfo,
    output: OutputPlan,
}

/// A video enhanced by stage 3, validated; holds the decoded input.
#[derive(Debug, Clone)]
pub struct EnhanceRequest {
    text: PromptText,
    options: EnhanceOptions,
    seed: u64,
    input: Vec<Frame>,
    output: OutputPlan,
}

/// Any job the engine runs.
#[derive(Debug, Clone)]
pub enum Request {
    Generate(GenerateRequest),
    Extend(ExtendRequest),
    Enhance(EnhanceRequest),
}

impl GenerateRequest {
    pub fn new(params: &GenerateParams, set: &ModelSet) -> Result<Self, RequestError> {
        let config = &set.manifest.pipeline;
        let prompt = checks::prompt(Field::Prompt, &params.prompt)?;
        let target = checks::output(&params.output)?;
        let enhance = stage3(params.enhance.as_ref(), set)?;
        let stage2_copy =
            Stage2Copy::check(&target, params.preview_out.as_deref(), enhance.is_some())?;
        let frames = params.frames.unwrap_or(DEFAULT_FRAMES);
        let plan = FramePlan::for_stage2(frames, &config.stage2)
            .map_err(|err| RequestError::value(Field::Frames, err.expected, err.actual))?;
        let mut options = GenerateOptions::from_config(config, frames);
        options.stage1.steps = checks::steps(
            Field::Stage1Steps,
            &config.stage1.scheduler,
            params.stage1_steps.unwrap_or(options.stage1.steps),
            None,
        )?;
        apply_streaming(&mut options, &params.streaming, config)?;
        options.enhance = enhance;
        let init_noise = params
            .init_noise
            .as_deref()
            .map(|path| checks::init_noise(path, stage1_latent_shape(config)))
            .transpose()?;
        if let Some(dir) = &params.save_latents {
            checks::latent_dir(dir)?;
        }
        Ok(Self {
            text: PromptText {
                prompt,
                negative: params.streaming.negative_prompt.clone(),
            },
            output: streaming_output(target, &params.output, stage2_copy, config, &options),
            options,
            plan,
            init_noise,
            save_latents: params.save_latents.clone(),
        })
    }

    pub fn text(&self) -> &PromptText {
        &self.text
    }

    pub fn options(&self) -> &GenerateOptions {
        &self.options
    }

    /// Frames and chunks stage 2 will produce (the requested count rounded down).
    pub fn plan(&self) -> &FramePlan {
        &self.plan
    }

    pub fn init_noise(&self) -> Option<&Array5<f32>> {
        self.init_noise.as_ref()
    }

    pub fn save_latents(&self) -> Option<&Path> {
        self.save_latents.as_deref()
    }

    pub fn output(&self) -> &OutputPlan {
        &self.output
    }
}

impl ExtendRequest {
    pub fn new(params: &ExtendParams, set: &ModelSet) -> Result<Self, RequestError> {
        let config = &set.manifest.pipeline;
        let s2 = &config.stage2;
        let prompt = checks::prompt(Field::Prompt, &params.prompt)?;
        let target = checks::output(&params.output)?;
        let enhance = stage3(params.enhance.as_ref(), set)?;
        let stage2_copy = Stage2Copy::check(&target, None, enhance.is_some())?;
        let frames = params.frames.unwrap_or(DEFAULT_FRAMES);
        let new_per_chunk = s2.chunk_frames - s2.cond_frames;
        if frames < new_per_chunk {
            return Err(RequestError::value(
                Field::Frames,
                format!("at least {new_per_chunk} new frames (one chunk)"),
                frames,
            ));
        }
        let mut options = GenerateOptions::from_config(config, frames);
        apply_streaming(&mut options, &params.streaming, config)?;
        options.enhance = enhance;
        let video = checks::input_video(&params.input, s2.cond_frames)?;
        Ok(Self {
            text: PromptText {
                prompt,
                negative: params.streaming.negative_prompt.clone(),
            },
            output: streaming_output(target, &params.output, stage2_copy, config, &options),
            options,
            input: video.frames,
            input_info: video.info,
        })
    }

    pub fn text(&self) -> &PromptText {
        &self.text
    }

    pub fn options(&self) -> &GenerateOptions {
        &self.options
    }

    pub fn input(&self) -> &[Frame] {
        &self.input
    }

    pub fn input_info(&self) -> &VideoInfo {
        &self.input_info
    }

    pub fn output(&self) -> &OutputPlan {
        &self.output
    }
}

impl EnhanceRequest {
    pub fn new(params: &EnhanceParams, set: &ModelSet) -> Result<Self, RequestError> {
        let config = &set.manifest.pipeline;
        let prompt = checks::prompt(Field::Prompt, &params.prompt)?;
        let target = checks::output(&params.output)?;
        let options = checks::stage3_options(&params.stage3, set)?;
        let video = checks::input_video(&params.input, 1)?;
        Ok(Self {
            text: PromptText {
                prompt,
                negative: params.negative_prompt.clone(),
            },
            output: OutputPlan {
                target,
                fps: params.output.fps,
                size: enhanced_size(config, options.keep_padding),
                stage2: None,
            },
            options,
            seed: params.seed,
            input: video.frames,
        })
    }

    pub fn text(&self) -> &PromptText {
        &self.text
    }

    pub fn options(&self) -> &EnhanceOptions {
        &self.options
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn input(&self) -> &[Frame] {
        &self.input
    }

    pub fn output(&self) -> &OutputPlan {
        &self.output
    }
}

impl Request {
    pub fn output(&self) -> &OutputPlan {
        match self {
            Request::Generate(r) => r.output(),
            Request::Extend(r) => r.output(),
            Request::Enhance(r) => r.output(),
        }
    }

    /// Whether stage 3 runs.
    pub fn enhances(&self) -> bool {
        match self {
            Request::Generate(r) => r.options.enhance.is_some(),
            Request::Extend(r) => r.options.enhance.is_some(),
            Request::Enhance(_) => true,
        }
    }
}

impl From<GenerateRequest> for Request {
    fn from(request: GenerateRequest) -> Self {
        Request::Generate(request)
    }
}

impl From<ExtendRequest> for Request {
    fn from(request: ExtendRequest) -> Self {
        Request::Extend(request)
    }
}

impl From<EnhanceRequest> for Request {
    fn from(request: EnhanceRequest) -> Self {
        Request::Enhance(request)
    }
}

fn stage3(
    params: Option<&super::params::Stage3Params>,
    set: &ModelSet,
) -> Result<Option<EnhanceOptions>, RequestError> {
    params.map(|p| checks::stage3_options(p, set)).transpose()
}

/// Seed, stage-2 steps, guidance and anchor (shared by generate and extend).
fn apply_streaming(
    options: &mut GenerateOptions,
    params: &StreamingParams,
    config: &PipelineConfig,
) -> Result<(), RequestError> {
    let s2 = &config.stage2;
    options.seed = params.seed;
    options.stage2.steps = checks::steps(
        Field::Steps,
        &s2.scheduler,
        params.steps.unwrap_or(options.stage2.steps),
        Some(s2.eta),
    )?;
    options.stage2.guidance = checks::stage2_guidance(&params.guidance, config)?;
    options.stage2.anchor = params.anchor;
    Ok(())
}

/// The outputs of a generate or extend job: enhanced (or stage-2) frames, and the stage-2 copy.
fn streaming_output(
    target: OutputTarget,
    params: &OutputParams,
    stage2_copy: Option<Stage2Copy>,
    config: &PipelineConfig,
    options: &GenerateOptions,
) -> OutputPlan {
    let stage2_size = FrameSize::new(config.stage2.width, config.stage2.height);
    let size = match &options.enhance {
        Some(enhance) => enhanced_size(config, enhance.keep_padding),
        None => stage2_size,
    };
    OutputPlan {
        target,
        fps: params.fps,
        size,
        stage2: stage2_copy.map(|copy| (copy, stage2_size)),
    }
}

/// The size of enhanced output frames.
fn enhanced_size(config: &PipelineConfig, keep_padding: bool) -> FrameSize {
    let s3 = &config.stage3;
    match keep_padding {
        true => FrameSize::new(s3.width, s3.height),
        false => FrameSize::new(s3.content_width, s3.content_height),
    }
}

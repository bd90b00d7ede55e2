//! Validated requests. Each constructor takes plain values ([`super::params`]) and the model
//! set, performs every check that needs no loaded model (prompts, frame counts, steps,
//! guidance, chunk geometry, output and side-file paths, input videos, initial noise) and
//! returns a [`RequestError`] naming the field. A request that exists is runnable as far as
//! anything short of the models can tell; its fields cannot be changed afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::Array5;

use crate::manifest::{ModelSet, PipelineConfig};
use crate::pipeline::stage1::stage1_latent_shape;
use crate::pipeline::{EnhanceOptions, GenerateOptions};
use crate::plan::FramePlan;
use crate::video::{Frame, FrameSize, VideoInfo};

use super::checks;
use super::error::RequestError;
use super::field::Field;
use super::outputs::{OutputPlan, Stage2Copy};
use super::params::{
    EnhanceParams, ExtendParams, GenerateParams, OutputParams, Stage3Params, StreamingParams,
};
use super::paths::{check_distinct, check_latent_dir, RunPath};
use super::schedule::PromptPlan;

/// The reference's default length (`--num_frames 24`), also the default extension.
pub const DEFAULT_FRAMES: usize = 24;

/// The longest video one request makes: 100,000 frames is about 3.5 hours at 8 fps. Memory does
/// not grow with the length; time and disk do, so a typo (an extra zero) is caught here.
pub const MAX_FRAMES: usize = 100_000;

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
    prompt_plan: Option<Arc<PromptPlan>>,
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
    input_path: PathBuf,
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
        let frames = params.frames.unwrap_or(DEFAULT_FRAMES);
        let mut job = StreamingJob::new(
            &params.prompt,
            frames,
            &params.streaming,
            params.enhance.as_ref(),
            &params.output,
            params.preview_out.as_deref(),
            set,
        )?;
        let plan = FramePlan::for_stage2(frames, &config.stage2)
            .map_err(|err| RequestError::value(Field::Frames, err.expected, err.actual))?;
        job.options.stage1.steps = checks::steps(
            Field::Stage1Steps,
            &config.stage1.scheduler,
            params.stage1_steps.unwrap_or(job.options.stage1.steps),
            None,
        )?;
        let init_noise = params
            .init_noise
            .as_deref()
            .map(|path| checks::init_noise(path, stage1_latent_shape(config)))
            .transpose()?;
        let mut paths = job.output.paths();
        if let Some(dir) = &params.save_latents {
            check_latent_dir(dir, params.output.force)?;
            paths.push(RunPath::written(Field::SaveLatents, dir));
        }
        if let Some(noise) = &params.init_noise {
            paths.push(RunPath::read(Field::InitNoise, noise));
        }
        check_distinct(&paths, &set.dir)?;
        let prompt_plan = prompt_plan(params, &plan)?;
        Ok(Self {
            text: job.text,
            options: job.options,
            output: job.output,
            plan,
            init_noise,
            save_latents: params.save_latents.clone(),
            prompt_plan,
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

    /// The prompt plan (a schedule, or steerable), shared with whoever steers the job.
    pub fn prompt_plan(&self) -> Option<&Arc<PromptPlan>> {
        self.prompt_plan.as_ref()
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
        let s2 = &set.manifest.pipeline.stage2;
        let frames = params.frames.unwrap_or(DEFAULT_FRAMES);
        let job = StreamingJob::new(
            &params.prompt,
            frames,
            &params.streaming,
            params.enhance.as_ref(),
            &params.output,
            None,
            set,
        )?;
        let new_per_chunk = s2.chunk_frames - s2.cond_frames;
        if frames < new_per_chunk {
            return Err(RequestError::value(
                Field::Frames,
                format!("at least {new_per_chunk} new frames (one chunk)"),
                frames,
            ));
        }
        let mut paths = job.output.paths();
        paths.push(RunPath::read(Field::Input, &params.input));
        check_distinct(&paths, &set.dir)?;
        let video = checks::input_video(&params.input, s2.cond_frames)?;
        checks::same_aspect(video.info.size, FrameSize::new(s2.width, s2.height))?;
        Ok(Self {
            text: job.text,
            options: job.options,
            output: job.output,
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
        let mut options = checks::stage3_options(&params.stage3, set)?;
        let video = checks::input_video(&params.input, 1)?;
        options.content = checks::enhancer_content(video.info.size, &config.stage3);
        let s3 = &config.stage3;
        let size = match (options.keep_padding, options.content) {
            (true, _) => FrameSize::new(s3.width, s3.height),
            (false, Some(content)) => content,
            (false, None) => enhanced_size(config, false),
        };
        let output = OutputPlan {
            target,
            fps: params.output.fps,
            size,
            stage2: None,
        };
        let mut paths = output.paths();
        paths.push(RunPath::read(Field::Input, &params.input));
        check_distinct(&paths, &set.dir)?;
        Ok(Self {
            text: PromptText {
                prompt,
                negative: params.negative_prompt.clone(),
            },
            output,
            options,
            seed: params.seed,
            input: video.frames,
            input_path: params.input.clone(),
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
    /// Every path the run reads or writes, for a shell to check its own files against
    /// (`--events`) with [`super::paths::check_distinct`].
    pub fn paths(&self) -> Vec<RunPath> {
        let mut paths = self.output().paths();
        match self {
            Request::Generate(r) => {
                paths.extend(
                    r.save_latents()
                        .map(|d| RunPath::written(Field::SaveLatents, d)),
                );
            }
            Request::Extend(r) => paths.push(RunPath::read(Field::Input, &r.input_info.path)),
            Request::Enhance(r) => paths.push(RunPath::read(Field::Input, &r.input_path)),
        }
        paths
    }

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

/// The prompt plan of a generate request: checked entries (frames increasing, above 0 and
/// within the video, prompts with text), or `None` for one fixed prompt.
fn prompt_plan(
    params: &GenerateParams,
    plan: &FramePlan,
) -> Result<Option<Arc<PromptPlan>>, RequestError> {
    if params.prompt_schedule.is_empty() && !params.steerable {
        return Ok(None);
    }
    let mut previous = 0;
    for (index, (frame, prompt)) in params.prompt_schedule.iter().enumerate() {
        if *frame <= previous || *frame >= plan.stage2_frames {
            return Err(RequestError::value(
                Field::PromptSchedule,
                format!(
                    "entry {index}: a first frame above {previous} and below the video's {} frames",
                    plan.stage2_frames
                ),
                frame,
            ));
        }
        checks::prompt(Field::PromptSchedule, prompt)?;
        previous = *frame;
    }
    Ok(Some(Arc::new(PromptPlan::new(
        &params.prompt,
        &params.streaming.negative_prompt,
        &params.prompt_schedule,
        plan.chunk_frames,
        plan.new_frames_per_chunk(),
    ))))
}

/// What generate and extend share: the prompts, the options and the outputs.
struct StreamingJob {
    text: PromptText,
    options: GenerateOptions,
    output: OutputPlan,
}

impl StreamingJob {
    /// The prompt; seed, stage-2 steps, guidance and anchor over the set's defaults; stage 3
    /// (unless `enhance` is `None`); the output and its stage-2 copy (the preview, or the side
    /// file kept when a run with stage 3 ends early).
    fn new(
        prompt: &str,
        frames: usize,
        params: &StreamingParams,
        enhance: Option<&Stage3Params>,
        output: &OutputParams,
        preview: Option<&Path>,
        set: &ModelSet,
    ) -> Result<Self, RequestError> {
        let config = &set.manifest.pipeline;
        let s2 = &config.stage2;
        let prompt = checks::prompt(Field::Prompt, prompt)?;
        checks::frames_bound(frames, MAX_FRAMES, output, config)?;
        let target = checks::output(output)?;
        let mut options = GenerateOptions::from_config(config, frames);
        options.enhance = enhance
            .map(|p| checks::stage3_options(p, set))
            .transpose()?;
        let enhance = options.enhance.is_some();
        let stage2_copy = Stage2Copy::check(&target, preview, enhance, output.force)?;
        options.seed = params.seed;
        options.stage2.seed = params.stage2_seed;
        options.stage2.steps = checks::steps(
            Field::Steps,
            &s2.scheduler,
            params.steps.unwrap_or(options.stage2.steps),
            Some(s2.eta),
        )?;
        options.stage2.guidance = checks::stage2_guidance(&params.guidance, config)?;
        options.stage2.anchor = params.anchor;
        let stage2_size = FrameSize::new(s2.width, s2.height);
        let size = match &options.enhance {
            Some(enhance) => enhanced_size(config, enhance.keep_padding),
            None => stage2_size,
        };
        Ok(Self {
            text: PromptText {
                prompt,
                negative: params.negative_prompt.clone(),
            },
            options,
            output: OutputPlan {
                target,
                fps: output.fps,
                size,
                stage2: stage2_copy.map(|copy| (copy, stage2_size)),
            },
        })
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

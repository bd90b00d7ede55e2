//! Plain request values, as a shell receives them (command-line flags, JSON fields). Nothing
//! here is checked: [`super::request`] turns them into validated requests. `None` means "the
//! model set's default".

use std::path::PathBuf;

use crate::pipeline::options::DEFAULT_SEED;
use crate::pipeline::AnchorMode;
use crate::video::{OutputFormat, DEFAULT_FPS};

/// How stage 2 combines its conditions in classifier-free guidance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum GuidanceKind {
    /// One scale over text and anchor together (the reference).
    #[default]
    Joint,
    /// Separate text and anchor scales.
    Multi,
}

/// Stage-2 guidance: the kind and its scales.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GuidanceParams {
    pub kind: GuidanceKind,
    /// The joint scale, and the default of both multi-condition scales.
    pub scale: Option<f32>,
    /// Multi-condition guidance only.
    pub text_scale: Option<f32>,
    /// Multi-condition guidance only.
    pub anchor_scale: Option<f32>,
}

/// Stage-2 (streaming) settings shared by generate and extend.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StreamingParams {
    pub negative_prompt: String,
    /// Seeds every stage's randomness (see the README's "Randomness" section).
    pub seed: u64,
    /// Seeds stage 2 alone; `None` uses `seed`. `Some(33)` is the reference's seeding.
    pub stage2_seed: Option<u64>,
    pub steps: Option<usize>,
    pub guidance: GuidanceParams,
    pub anchor: AnchorMode,
}

impl Default for StreamingParams {
    fn default() -> Self {
        Self {
            negative_prompt: String::new(),
            seed: DEFAULT_SEED,
            stage2_seed: None,
            steps: None,
            guidance: GuidanceParams::default(),
            anchor: AnchorMode::First,
        }
    }
}

/// Stage-3 (enhancer) settings.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stage3Params {
    pub steps: Option<usize>,
    /// Enhancer chunk length in frames.
    pub chunk: Option<usize>,
    /// Frames shared by consecutive enhancer chunks.
    pub overlap: Option<usize>,
    /// Keep the black bars the enhancer's frame size adds around the content.
    pub keep_padding: bool,
    /// At most this many chunks' steps per enhancer UNet call; `None` is 1.
    #[serde(default)]
    pub batch: Option<usize>,
}

/// Where the video goes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutputParams {
    /// A file (`.mp4`, `.gif`) or a directory of PNG frames.
    pub out: PathBuf,
    /// Overrides the format `out`'s extension implies.
    pub format: Option<OutputFormat>,
    pub fps: u32,
    /// Replace existing outputs (the video, its preview or side file, latents, events).
    pub force: bool,
}

impl OutputParams {
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            format: None,
            fps: DEFAULT_FPS,
            force: false,
        }
    }
}

/// Text to video (stages 1, 2 and, unless `enhance` is `None`, 3).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerateParams {
    pub prompt: String,
    /// Requested length; `None` is [`super::DEFAULT_FRAMES`].
    pub frames: Option<usize>,
    pub stage1_steps: Option<usize>,
    pub streaming: StreamingParams,
    /// `None` stops after stage 2.
    pub enhance: Option<Stage3Params>,
    pub output: OutputParams,
    /// Also write the stage-2 (pre-enhancement) video here.
    pub preview_out: Option<PathBuf>,
    /// A float32 `.npy` replacing stage 1's seeded initial noise.
    pub init_noise: Option<PathBuf>,
    /// A directory for each chunk's final latents as `.npy`.
    pub save_latents: Option<PathBuf>,
    /// Prompts from later frames: (first frame, prompt), increasing frames above 0.
    pub prompt_schedule: Vec<(usize, String)>,
    /// Keep a prompt plan even with one prompt, so the prompt can change while it runs.
    pub steerable: bool,
}

impl GenerateParams {
    /// The model set's defaults for `prompt`, enhanced, written to `out`.
    pub fn new(prompt: impl Into<String>, out: impl Into<PathBuf>) -> Self {
        Self {
            prompt: prompt.into(),
            frames: None,
            stage1_steps: None,
            streaming: StreamingParams::default(),
            enhance: Some(Stage3Params::default()),
            output: OutputParams::new(out),
            preview_out: None,
            init_noise: None,
            save_latents: None,
            prompt_schedule: Vec::new(),
            steerable: false,
        }
    }
}

/// Continue a video by new frames (stage 2 conditioned on its last frames, then stage 3).
#[derive(Debug, Clone, PartialEq)]
pub struct ExtendParams {
    pub input: PathBuf,
    pub prompt: String,
    /// New frames; `None` is [`super::DEFAULT_FRAMES`].
    pub frames: Option<usize>,
    pub streaming: StreamingParams,
    pub enhance: Option<Stage3Params>,
    pub output: OutputParams,
}

impl ExtendParams {
    pub fn new(
        input: impl Into<PathBuf>,
        prompt: impl Into<String>,
        out: impl Into<PathBuf>,
    ) -> Self {
        Self {
            input: input.into(),
            prompt: prompt.into(),
            frames: None,
            streaming: StreamingParams::default(),
            enhance: Some(Stage3Params::default()),
            output: OutputParams::new(out),
        }
    }
}

/// Enhance an existing video (stage 3 alone).
#[derive(Debug, Clone, PartialEq)]
pub struct EnhanceParams {
    pub input: PathBuf,
    pub prompt: String,
    pub negative_prompt: String,
    pub seed: u64,
    pub stage3: Stage3Params,
    pub output: OutputParams,
}

impl EnhanceParams {
    pub fn new(
        input: impl Into<PathBuf>,
        prompt: impl Into<String>,
        out: impl Into<PathBuf>,
    ) -> Self {
        Self {
            input: input.into(),
            prompt: prompt.into(),
            negative_prompt: String::new(),
            seed: DEFAULT_SEED,
            stage3: Stage3Params::default(),
            output: OutputParams::new(out),
        }
    }
}

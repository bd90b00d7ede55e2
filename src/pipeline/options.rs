//! Generation options with defaults taken from the model set's manifest.
//!
//! The defaults reproduce the reference configuration (StreamingT2V, `StreamingModelscope`
//! branch): stage 1 DPM-Solver++ 50 steps at guidance 9.0, stage 2 DDIM 50 steps (eta 1.0) at
//! guidance 7.5 with seed 33 and the first frame as APM anchor, stage 3 30 DPM++(2M) SDE steps at
//! guidance 7.5 with rescale 0.2 over chunks of 24 frames overlapping by 8.

use crate::manifest::PipelineConfig;
use crate::video::FrameSize;

/// The seed the reference uses for stage 2 (`InferenceParams.seed`).
pub const DEFAULT_SEED: u64 = 33;

/// Which frame the appearance preservation module (APM) anchors every chunk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum AnchorMode {
    /// Frame 0 of the whole video, fixed for every chunk (the reference's `fixed`).
    #[default]
    First,
    /// The last frame of the previous chunk (the reference's `last_chunk`).
    PreviousChunk,
}

/// How the stage-2 conditions are guided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage2Guidance {
    /// One scale over text and anchor together: batch `[uncond, cond]` (the reference).
    Joint { scale: f32 },
    /// Separate text and anchor scales: batch `[(neg, no anchor), (text, no anchor), (text, anchor)]`.
    Multi { text_scale: f32, anchor_scale: f32 },
}

/// Stage-1 settings (the first chunk from the text-to-video base model).
#[derive(Debug, Clone, PartialEq)]
pub struct Stage1Options {
    pub steps: usize,
    pub guidance_scale: f32,
}

/// Stage-2 settings (autoregressive chunks with CAM and APM).
#[derive(Debug, Clone, PartialEq)]
pub struct Stage2Options {
    pub steps: usize,
    pub guidance: Stage2Guidance,
    pub anchor: AnchorMode,
    /// Seeds stage 2's generator; `None` uses the video's seed. The reference seeds stage 2
    /// with 33 (its `InferenceParams.seed`) whatever the stage-1 seed: `Some(33)` reproduces it.
    pub seed: Option<u64>,
}

/// Stage-3 settings (the enhancer with randomized blending).
#[derive(Debug, Clone, PartialEq)]
pub struct EnhanceOptions {
    pub steps: usize,
    pub guidance_scale: f32,
    pub guide_rescale: f32,
    pub chunk_frames: usize,
    pub overlap_frames: usize,
    /// Keep the black bars the enhancer's frame size adds around the content.
    pub keep_padding: bool,
    /// The size input frames are resized to inside the enhancer frame; `None` is the
    /// manifest's content size (stage-2 frames). Videos of another aspect ratio are fitted
    /// whole, as the reference's `resize_to_fit` does, instead of being distorted.
    pub content: Option<FrameSize>,
    /// At most this many chunks' steps run in one UNet call (1: a chunk at a time).
    pub batch: usize,
}

/// Everything a generation needs besides the models and the prompt text.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Requested length; rounded to what the chunk arithmetic can produce.
    pub frames: usize,
    /// Seeds stage 1's initial noise, stage 3's noise and blending offsets, and stage 2 unless
    /// `stage2.seed` is set.
    pub seed: u64,
    pub stage1: Stage1Options,
    pub stage2: Stage2Options,
    /// `None` stops after stage 2 (`--no-enhance`).
    pub enhance: Option<EnhanceOptions>,
}

impl Stage1Options {
    pub fn from_config(config: &PipelineConfig) -> Self {
        Self {
            steps: config.stage1.num_inference_steps,
            guidance_scale: config.stage1.guidance_scale,
        }
    }
}

impl Stage2Options {
    pub fn from_config(config: &PipelineConfig) -> Self {
        Self {
            steps: config.stage2.num_inference_steps,
            guidance: Stage2Guidance::Joint {
                scale: config.stage2.guidance_scale,
            },
            anchor: AnchorMode::First,
            seed: None,
        }
    }
}

impl EnhanceOptions {
    pub fn from_config(config: &PipelineConfig) -> Self {
        Self {
            steps: config.stage3.num_inference_steps,
            guidance_scale: config.stage3.guidance_scale,
            guide_rescale: config.stage3.guide_rescale,
            chunk_frames: config.stage3.chunk_frames,
            overlap_frames: config.stage3.overlap_frames,
            keep_padding: false,
            content: None,
            batch: 1,
        }
    }
}

impl GenerateOptions {
    /// The seed of stage 2's generator.
    pub fn stage2_seed(&self) -> u64 {
        self.stage2.seed.unwrap_or(self.seed)
    }

    /// The reference defaults of a model set, for `frames` frames.
    pub fn from_config(config: &PipelineConfig, frames: usize) -> Self {
        Self {
            frames,
            seed: DEFAULT_SEED,
            stage1: Stage1Options::from_config(config),
            stage2: Stage2Options::from_config(config),
            enhance: Some(EnhanceOptions::from_config(config)),
        }
    }
}

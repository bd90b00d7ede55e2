//! The JSON bodies the API takes, and how `POST /v1/videos` maps to the plain request values
//! the CLI builds too.

use std::path::Path;

use serde::Deserialize;

use crate::engine::{GenerateParams, GuidanceKind, Stage3Params};
use crate::manifest::ModelSet;
use crate::pipeline::AnchorMode;

/// The body of `POST /v1/videos`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVideo {
    /// Optional when `prompts` starts at frame 0.
    #[serde(default)]
    pub prompt: String,
    /// A schedule: `[{"from_frame": 0, "prompt": ...}, {"from_frame": 120, ...}]`.
    #[serde(default)]
    pub prompts: Vec<ScheduleEntry>,
    #[serde(default)]
    pub negative_prompt: String,
    pub frames: Option<usize>,
    pub seed: Option<u64>,
    pub stage2_seed: Option<u64>,
    pub steps: Option<usize>,
    pub stage1_steps: Option<usize>,
    pub enhance_steps: Option<usize>,
    /// Enhancer chunks whose steps run in one UNet call (throughput; default 1).
    pub enhance_batch: Option<usize>,
    pub guidance: Option<GuidanceBody>,
    pub anchor: Option<AnchorBody>,
    pub enhance: Option<bool>,
    pub fps: Option<u32>,
    /// `mp4` (fragmented, streamed while it grows): the only format the server serves.
    pub format: Option<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    pub from_frame: usize,
    pub prompt: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuidanceBody {
    pub mode: GuidanceModeBody,
    pub scale: Option<f32>,
    pub text_scale: Option<f32>,
    pub anchor_scale: Option<f32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GuidanceModeBody {
    Joint,
    Multi,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnchorBody {
    First,
    PreviousChunk,
}

impl CreateVideo {
    /// The plain request values; outputs go to the job's own directory.
    pub fn params(&self, dir: &Path, set: &ModelSet) -> GenerateParams {
        let mut later = self.prompts.clone();
        let prompt = match later.first() {
            Some(first) if first.from_frame == 0 && self.prompt.is_empty() => {
                later.remove(0).prompt
            }
            _ => self.prompt.clone(),
        };
        let mut params = GenerateParams::new(prompt, dir.join("video.mp4"));
        params.prompt_schedule = later
            .into_iter()
            .map(|e| (e.from_frame, e.prompt))
            .collect();
        params.steerable = true;
        params.frames = self.frames;
        params.stage1_steps = self.stage1_steps;
        params.preview_out = Some(dir.join("preview.mp4"));
        let streaming = &mut params.streaming;
        streaming.negative_prompt = self.negative_prompt.clone();
        streaming.seed = self.seed.unwrap_or(streaming.seed);
        streaming.stage2_seed = self.stage2_seed;
        streaming.steps = self.steps;
        if let Some(guidance) = &self.guidance {
            streaming.guidance.kind = match guidance.mode {
                GuidanceModeBody::Joint => GuidanceKind::Joint,
                GuidanceModeBody::Multi => GuidanceKind::Multi,
            };
            streaming.guidance.scale = guidance.scale;
            streaming.guidance.text_scale = guidance.text_scale;
            streaming.guidance.anchor_scale = guidance.anchor_scale;
        }
        streaming.anchor = match self.anchor {
            Some(AnchorBody::PreviousChunk) => AnchorMode::PreviousChunk,
            _ => AnchorMode::First,
        };
        // Unset: stage 3 where the set has it (a stage-2 set has none; an explicit `true` on
        // such a set is refused by `create`).
        let enhance = self.enhance.unwrap_or(!crate::models::lacks_enhancer(set));
        params.enhance = match enhance {
            true => Some(Stage3Params {
                steps: self.enhance_steps,
                batch: self.enhance_batch,
                ..Stage3Params::default()
            }),
            false => None,
        };
        params.output.fps = self.fps.unwrap_or(params.output.fps);
        params
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SteerBody {
    pub prompt: String,
}

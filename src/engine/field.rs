//! The names of request fields, as each shell spells them, so a validation error names what
//! the user actually set: the CLI flag or the JSON key.

/// One field of a generate, extend or enhance request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Prompt,
    NegativePrompt,
    Frames,
    Steps,
    Stage1Steps,
    EnhanceSteps,
    EnhanceBatch,
    GuidanceScale,
    TextScale,
    AnchorScale,
    Chunk,
    Overlap,
    Fps,
    Out,
    PreviewOut,
    InitNoise,
    SaveLatents,
    Input,
    Events,
    PromptSchedule,
    JobDir,
}

impl Field {
    pub const ALL: [Field; 21] = [
        Field::Prompt,
        Field::NegativePrompt,
        Field::Frames,
        Field::Steps,
        Field::Stage1Steps,
        Field::EnhanceSteps,
        Field::EnhanceBatch,
        Field::GuidanceScale,
        Field::TextScale,
        Field::AnchorScale,
        Field::Chunk,
        Field::Overlap,
        Field::Fps,
        Field::Out,
        Field::PreviewOut,
        Field::InitNoise,
        Field::SaveLatents,
        Field::Input,
        Field::Events,
        Field::PromptSchedule,
        Field::JobDir,
    ];

    /// The JSON key (snake_case), as an HTTP request spells it.
    pub fn json_key(self) -> &'static str {
        match self {
            Field::Prompt => "prompt",
            Field::NegativePrompt => "negative_prompt",
            Field::Frames => "frames",
            Field::Steps => "steps",
            Field::Stage1Steps => "stage1_steps",
            Field::EnhanceSteps => "enhance_steps",
            Field::EnhanceBatch => "enhance_batch",
            Field::GuidanceScale => "guidance_scale",
            Field::TextScale => "text_scale",
            Field::AnchorScale => "anchor_scale",
            Field::Chunk => "chunk",
            Field::Overlap => "overlap",
            Field::Fps => "fps",
            Field::Out => "out",
            Field::PreviewOut => "preview_out",
            Field::InitNoise => "init_noise",
            Field::SaveLatents => "save_latents",
            Field::Input => "input",
            Field::Events => "events",
            Field::PromptSchedule => "prompts",
            Field::JobDir => "job_dir",
        }
    }

    /// The command-line flag (`--` + the key in kebab-case).
    pub fn flag(self) -> &'static str {
        match self {
            Field::Prompt => "--prompt",
            Field::NegativePrompt => "--negative-prompt",
            Field::Frames => "--frames",
            Field::Steps => "--steps",
            Field::Stage1Steps => "--stage1-steps",
            Field::EnhanceSteps => "--enhance-steps",
            Field::EnhanceBatch => "--enhance-batch",
            Field::GuidanceScale => "--guidance-scale",
            Field::TextScale => "--text-scale",
            Field::AnchorScale => "--anchor-scale",
            Field::Chunk => "--chunk",
            Field::Overlap => "--overlap",
            Field::Fps => "--fps",
            Field::Out => "--out",
            Field::PreviewOut => "--preview-out",
            Field::InitNoise => "--init-noise",
            Field::SaveLatents => "--save-latents",
            Field::Input => "--input",
            Field::Events => "--events",
            // A file on the command line, a list in JSON.
            Field::PromptSchedule => "--prompt-schedule",
            Field::JobDir => "--job-dir",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_the_json_keys_in_kebab_case() {
        for field in Field::ALL
            .into_iter()
            .filter(|f| *f != Field::PromptSchedule)
        {
            let kebab = format!("--{}", field.json_key().replace('_', "-"));
            assert_eq!(field.flag(), kebab, "{field:?}");
        }
    }
}

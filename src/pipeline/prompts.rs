//! Prompts that change along the video: stage 2 asks for the prompt of each chunk (by its first
//! new frame) before generating it, the enhancer for each of its chunks (by its first frame)
//! before its first step. A chunk keeps the prompt it started with. Without a schedule the
//! pipeline runs on the request's one prompt, exactly as before.

use super::compose::PromptIds;

/// The prompt in effect at each frame; may change while a video is made (steering).
pub trait PromptSchedule: Send + Sync {
    /// Token ids for the stage-1/2 text encoder at `frame`.
    fn streaming_at(&self, frame: usize) -> PromptIds;
    /// Token ids for the enhancer's text encoder at `frame` (`None`: no enhancer tokenizer).
    fn enhancer_at(&self, frame: usize) -> Option<PromptIds>;
}

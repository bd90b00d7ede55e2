//! A prompt schedule for one job: the request's prompt from frame 0, then prompts from later
//! frames (`--prompt-schedule`, the JSON `prompts`), and prompts a server adds while the job
//! runs (steering), which take effect from the first chunk not yet started.

use std::sync::{Mutex, MutexGuard};

use crate::pipeline::{PromptIds, PromptSchedule, TokenIds};
use crate::tokenizer::ClipTokenizer;

/// The tokenizers a plan encodes its prompts with (attached by the engine when it runs).
#[derive(Debug, Clone)]
pub struct PlanTokenizers {
    pub text: ClipTokenizer,
    pub enhancer: Option<ClipTokenizer>,
}

#[derive(Debug)]
struct Inner {
    /// (from frame, prompt), sorted by frame; the first is frame 0.
    entries: Vec<(usize, String)>,
    negative: String,
    tokenizers: Option<PlanTokenizers>,
    /// The first new frame of the last stage-2 chunk that asked for its prompt.
    started: Option<usize>,
}

/// The prompts of one job.
#[derive(Debug)]
pub struct PromptPlan {
    inner: Mutex<Inner>,
    /// The first new frame of stage 2's first chunk, and frames added per chunk.
    first_chunk_frame: usize,
    new_per_chunk: usize,
}

impl PromptPlan {
    pub fn new(
        prompt: &str,
        negative: &str,
        later: &[(usize, String)],
        first_chunk_frame: usize,
        new_per_chunk: usize,
    ) -> Self {
        let mut entries = vec![(0, prompt.to_owned())];
        entries.extend(later.iter().cloned());
        Self {
            inner: Mutex::new(Inner {
                entries,
                negative: negative.to_owned(),
                tokenizers: None,
                started: None,
            }),
            first_chunk_frame,
            new_per_chunk,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn attach(&self, tokenizers: PlanTokenizers) {
        self.lock().tokenizers = Some(tokenizers);
    }

    /// (from frame, prompt) entries in effect.
    pub fn entries(&self) -> Vec<(usize, String)> {
        self.lock().entries.clone()
    }

    /// Changes the prompt of every stage-2 chunk not started yet (and the enhancer chunks
    /// from there on); returns the frame it takes effect from.
    pub fn steer(&self, prompt: &str) -> usize {
        let mut inner = self.lock();
        let from = match inner.started {
            Some(frame) => frame + self.new_per_chunk,
            None => self.first_chunk_frame,
        };
        inner.entries.retain(|(frame, _)| *frame < from);
        inner.entries.push((from, prompt.to_owned()));
        from
    }
}

fn text_at(entries: &[(usize, String)], frame: usize) -> &str {
    entries
        .iter()
        .rev()
        .find(|(from, _)| *from <= frame)
        .map_or("", |(_, text)| text.as_str())
}

fn ids(tokenizer: &ClipTokenizer, prompt: &str, negative: &str) -> PromptIds {
    let encode = |text: &str| TokenIds(tokenizer.encode(text).map(|t| t.ids).unwrap_or_default());
    PromptIds {
        prompt: encode(prompt),
        negative: encode(negative),
    }
}

impl PromptSchedule for PromptPlan {
    fn streaming_at(&self, frame: usize) -> PromptIds {
        let mut inner = self.lock();
        inner.started = Some(inner.started.map_or(frame, |s| s.max(frame)));
        let tokenizer = &inner
            .tokenizers
            .as_ref()
            .expect("attached before the run")
            .text;
        ids(tokenizer, text_at(&inner.entries, frame), &inner.negative)
    }

    fn enhancer_at(&self, frame: usize) -> Option<PromptIds> {
        let inner = self.lock();
        let tokenizers = inner.tokenizers.as_ref()?;
        let tokenizer = tokenizers.enhancer.as_ref()?;
        // The reference conditions the enhancer on "<prompt>, ".
        let caption = format!("{}, ", text_at(&inner.entries, frame));
        Some(ids(tokenizer, &caption, &inner.negative))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steering_takes_effect_from_the_next_chunk() {
        let plan = PromptPlan::new("a cat", "", &[(40, "a dog".into())], 16, 8);
        let entries = plan.entries();
        assert_eq!(text_at(&entries, 39), "a cat");
        assert_eq!(text_at(&entries, 40), "a dog");
        assert_eq!(
            plan.steer("a bird"),
            16,
            "before stage 2 starts: its first chunk"
        );
        plan.lock().started = Some(24);
        assert_eq!(plan.steer("a fish"), 32);
        assert_eq!(
            plan.entries(),
            vec![
                (0, "a cat".into()),
                (16, "a bird".into()),
                (32, "a fish".into())
            ]
        );
    }
}

//! CLIP tokenization for the text encoders, following each encoder's reference tokenizer exactly:
//!
//! * the ModelScope stages (1 and 2) use transformers' Python `CLIPTokenizer` with ftfy installed
//!   (the reference environment's), padding with "!": the prompt is first split on its added
//!   tokens (`<|startoftext|>`, `<|endoftext|>`, and "!", each its own id: "!!!" is three pads),
//!   then each piece is cleaned ([`clean_transformers`]) and split into words, where a literal
//!   `<|startoftext|>` / `<|endoftext|>` is the special token;
//! * the enhancer (stage 3) uses open_clip's `tokenize`: the whole prompt is cleaned
//!   ([`clean_open_clip`]) and split into words, where open_clip's own special names
//!   `<start_of_text>` / `<end_of_text>` are the special tokens and a literal `<|endoftext|>` is
//!   ordinary text.
//!
//! Both then byte-level BPE each word with the model set's `tokenizer.json` (tokenizers-rs, its
//! model only: the cleanup and word split are ours, in the `clean`, `ftfy`, `html` and `words`
//! modules),
//! and frame the ids: BOS 49406, the tokens, EOS 49407, padding with the manifest's `pad_id` to 77;
//! truncation keeps EOS last and is reported, not silent, so the pipeline can warn.
//!
//! Which reference a `tokenizer.json` follows is read from it: the ModelScope file has its pad
//! token among its added tokens (export/st2v_export/tokenizer.py), the open_clip file does not.

mod clean;
mod ftfy;
mod html;
mod html_entities;
mod words;

#[cfg(test)]
mod golden;

use std::path::{Path, PathBuf};

use ndarray::Array2;
use tokenizers::Model;

use crate::manifest::{ModelSet, TokenizerEntry};
use words::{byte_level, Word, WordSplitter};

pub use clean::{clean_open_clip, clean_transformers};
pub use ftfy::fix_text;

/// open_clip's names of its special tokens (its vocabulary's last two entries).
const OPEN_CLIP_SPECIALS: [&str; 2] = ["<start_of_text>", "<end_of_text>"];

/// open_clip's cleanup of a prompt (`ftfy.fix_text`, HTML unescape twice, whitespace collapse,
/// lower-case).
pub fn clean(text: &str) -> String {
    clean_open_clip(text)
}

/// Errors loading a tokenizer or encoding a prompt.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot load tokenizer {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("tokenizer {path}: `{field}` is {actual}, expected {expected}")]
    Entry {
        path: PathBuf,
        field: &'static str,
        expected: String,
        actual: String,
    },
    #[error("cannot tokenize {text:?}: {message}")]
    Encode { text: String, message: String },
}

/// A prompt that did not fit: `tokens` BPE tokens, of which `kept` were kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    pub tokens: usize,
    pub kept: usize,
}

/// Token ids of one prompt, exactly `max_length` long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<i64>,
    /// Set when the prompt was cut to fit.
    pub truncation: Option<Truncation>,
}

/// Which reference tokenizer's text handling applies.
#[derive(Debug, Clone)]
enum Reference {
    /// open_clip's `tokenize`.
    OpenClip,
    /// transformers' Python `CLIPTokenizer` with ftfy: the prompt is split on these added
    /// tokens (content, id) before any cleanup.
    Transformers { added: Vec<(String, u32)> },
}

/// A CLIP tokenizer bound to one manifest tokenizer entry.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    entry: TokenizerEntry,
    reference: Reference,
    words: WordSplitter,
}

impl ClipTokenizer {
    /// Loads `entry.file` of a model set.
    pub fn open(set: &ModelSet, entry: &TokenizerEntry) -> Result<Self, TokenizerError> {
        Self::from_file(&set.path_of(&entry.file), entry.clone())
    }

    /// Loads a `tokenizer.json` and checks the entry's special ids against its vocabulary.
    pub fn from_file(path: &Path, entry: TokenizerEntry) -> Result<Self, TokenizerError> {
        let load_error = |message: String| TokenizerError::Load {
            path: path.to_owned(),
            message,
        };
        let inner =
            tokenizers::Tokenizer::from_file(path).map_err(|e| load_error(e.to_string()))?;
        check_entry(path, &entry, inner.get_vocab_size(true))?;
        let added: Vec<(String, u32)> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, token)| (token.content, id))
            .collect();
        let pad_is_added = entry.pad_id != entry.bos_id
            && entry.pad_id != entry.eos_id
            && added.iter().any(|&(_, id)| id == entry.pad_id);
        let (reference, specials) = if pad_is_added {
            let name = |id: u32| {
                inner
                    .id_to_token(id)
                    .ok_or_else(|| load_error(format!("no token has the id {id}")))
            };
            let specials = vec![
                (name(entry.bos_id)?, entry.bos_id),
                (name(entry.eos_id)?, entry.eos_id),
            ];
            (Reference::Transformers { added }, specials)
        } else {
            let [bos, eos] = OPEN_CLIP_SPECIALS.map(String::from);
            (
                Reference::OpenClip,
                vec![(bos, entry.bos_id), (eos, entry.eos_id)],
            )
        };
        let words = WordSplitter::new(specials).map_err(|e| load_error(e.to_string()))?;
        Ok(ClipTokenizer {
            inner,
            entry,
            reference,
            words,
        })
    }

    pub fn max_length(&self) -> usize {
        self.entry.max_length
    }

    /// `[BOS, tokens..., EOS, pad...]`, `max_length` ids; an over-long prompt keeps its first
    /// `max_length - 2` tokens and EOS.
    pub fn encode(&self, text: &str) -> Result<Tokens, TokenizerError> {
        let ids = self
            .token_ids(text)
            .map_err(|message| TokenizerError::Encode {
                text: text.to_owned(),
                message,
            })?;
        Ok(self.frame(&ids))
    }

    /// The prompt's token ids, before framing.
    fn token_ids(&self, text: &str) -> Result<Vec<u32>, String> {
        let mut ids = Vec::new();
        match &self.reference {
            Reference::OpenClip => self.encode_words(&clean_open_clip(text), &mut ids)?,
            Reference::Transformers { added } => {
                for piece in split_added(text, added) {
                    match piece {
                        Word::Special(id) => ids.push(id),
                        Word::Text(piece) => {
                            self.encode_words(&clean_transformers(piece), &mut ids)?;
                        }
                    }
                }
            }
        }
        Ok(ids)
    }

    /// The ids of cleaned text: special tokens, and the BPE of each word.
    fn encode_words(&self, cleaned: &str, ids: &mut Vec<u32>) -> Result<(), String> {
        for word in self.words.split(cleaned) {
            match word {
                Word::Special(id) => ids.push(id),
                Word::Text(word) => {
                    let tokens = self
                        .inner
                        .get_model()
                        .tokenize(&byte_level(word))
                        .map_err(|e| e.to_string())?;
                    ids.extend(tokens.iter().map(|token| token.id));
                }
            }
        }
        Ok(())
    }

    /// Encodes several prompts into a `(len, max_length)` batch, with each prompt's truncation.
    pub fn encode_batch(
        &self,
        texts: &[&str],
    ) -> Result<(Array2<i64>, Vec<Option<Truncation>>), TokenizerError> {
        let width = self.entry.max_length;
        let mut ids = Vec::with_capacity(texts.len() * width);
        let mut truncations = Vec::with_capacity(texts.len());
        for text in texts {
            let tokens = self.encode(text)?;
            ids.extend(tokens.ids);
            truncations.push(tokens.truncation);
        }
        let batch = Array2::from_shape_vec((texts.len(), width), ids).map_err(|e| {
            TokenizerError::Encode {
                text: texts.join(" | "),
                message: e.to_string(),
            }
        })?;
        Ok((batch, truncations))
    }

    fn frame(&self, tokens: &[u32]) -> Tokens {
        let room = self.entry.max_length.saturating_sub(2);
        let kept = tokens.len().min(room);
        let mut ids = Vec::with_capacity(self.entry.max_length);
        ids.push(i64::from(self.entry.bos_id));
        ids.extend(tokens[..kept].iter().map(|&t| i64::from(t)));
        ids.push(i64::from(self.entry.eos_id));
        ids.resize(self.entry.max_length, i64::from(self.entry.pad_id));
        let truncation = (kept < tokens.len()).then_some(Truncation {
            tokens: tokens.len(),
            kept,
        });
        Tokens { ids, truncation }
    }
}

/// transformers' split of a raw prompt on its added tokens: at each position the longest added
/// token that starts there, the text between them as it is (empty pieces dropped).
fn split_added<'a>(text: &'a str, added: &[(String, u32)]) -> Vec<Word<'a>> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at < text.len() {
        let longest = added
            .iter()
            .filter(|(token, _)| !token.is_empty() && text[at..].starts_with(token.as_str()))
            .max_by_key(|(token, _)| token.len());
        match longest {
            Some((token, id)) => {
                if start < at {
                    pieces.push(Word::Text(&text[start..at]));
                }
                pieces.push(Word::Special(*id));
                at += token.len();
                start = at;
            }
            None => at += text[at..].chars().next().map_or(1, char::len_utf8),
        }
    }
    if start < text.len() {
        pieces.push(Word::Text(&text[start..]));
    }
    pieces
}

fn check_entry(
    path: &Path,
    entry: &TokenizerEntry,
    vocab_size: usize,
) -> Result<(), TokenizerError> {
    let entry_error = |field, expected: String, actual: String| TokenizerError::Entry {
        path: path.to_owned(),
        field,
        expected,
        actual,
    };
    if entry.max_length < 2 {
        return Err(entry_error(
            "max_length",
            String::from("at least 2 (BOS and EOS)"),
            entry.max_length.to_string(),
        ));
    }
    let ids = [
        ("bos_id", entry.bos_id),
        ("eos_id", entry.eos_id),
        ("pad_id", entry.pad_id),
    ];
    for (field, id) in ids {
        if usize::try_from(id).map_or(true, |id| id >= vocab_size) {
            return Err(entry_error(
                field,
                format!("an id below the vocabulary size {vocab_size}"),
                id.to_string(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer over a tiny vocabulary, enough to test framing.
    fn tiny_tokenizer(max_length: usize) -> ClipTokenizer {
        let json = r#"{
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "unk_token": "!",
                      "vocab": {"!": 0, "a": 1, "cat": 2, "runs": 3, "<s>": 4, "</s>": 5}}
        }"#;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, json).expect("write");
        let entry = TokenizerEntry {
            file: String::from("tokenizer.json"),
            max_length,
            pad_id: 0,
            bos_id: 4,
            eos_id: 5,
        };
        ClipTokenizer::from_file(&path, entry).expect("loads")
    }

    #[test]
    fn pads_after_eos() {
        let tokens = tiny_tokenizer(8).encode("A  cat\truns").expect("encodes");
        assert_eq!(tokens.ids, [4, 1, 2, 3, 5, 0, 0, 0]);
        assert_eq!(tokens.truncation, None);
    }

    #[test]
    fn empty_prompt_is_bos_eos_and_padding() {
        let tokens = tiny_tokenizer(4).encode("").expect("encodes");
        assert_eq!(tokens.ids, [4, 5, 0, 0]);
    }

    #[test]
    fn truncation_keeps_eos_last_and_is_reported() {
        let tokens = tiny_tokenizer(5)
            .encode("a cat runs a cat")
            .expect("encodes");
        assert_eq!(tokens.ids, [4, 1, 2, 3, 5]);
        assert_eq!(tokens.truncation, Some(Truncation { tokens: 5, kept: 3 }));
        // Exactly full is not truncated.
        let tokens = tiny_tokenizer(5).encode("a cat runs").expect("encodes");
        assert_eq!(tokens.truncation, None);
    }

    #[test]
    fn batch_stacks_rows() {
        let (batch, truncations) = tiny_tokenizer(4)
            .encode_batch(&["cat", "a cat runs"])
            .expect("encodes");
        assert_eq!(batch.shape(), [2, 4]);
        assert_eq!(batch.row(0).to_vec(), [4, 2, 5, 0]);
        assert_eq!(batch.row(1).to_vec(), [4, 1, 2, 5]);
        assert_eq!(truncations[1], Some(Truncation { tokens: 3, kept: 2 }));
    }

    #[test]
    fn rejects_ids_outside_the_vocabulary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokenizer.json");
        let tok = tiny_tokenizer(4);
        tok.inner.save(&path, false).expect("save");
        let entry = TokenizerEntry {
            file: String::from("tokenizer.json"),
            max_length: 77,
            pad_id: 0,
            bos_id: 49406,
            eos_id: 5,
        };
        let err = ClipTokenizer::from_file(&path, entry)
            .expect_err("bos out of range")
            .to_string();
        assert!(err.contains("`bos_id` is 49406"), "{err}");
        assert!(err.contains("vocabulary size 6"), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let entry = TokenizerEntry {
            file: String::from("nope.json"),
            max_length: 77,
            pad_id: 0,
            bos_id: 0,
            eos_id: 0,
        };
        let err = ClipTokenizer::from_file(Path::new("/no/such/tokenizer.json"), entry)
            .expect_err("missing")
            .to_string();
        assert!(err.contains("/no/such/tokenizer.json"), "{err}");
    }
}

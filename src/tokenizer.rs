//! CLIP tokenization for the text encoders (ModelScope's `CLIPTokenizer` and open_clip's
//! `tokenize`, which agree: BOS 49406, the BPE tokens, EOS 49407, padding with id 0 to 77).
//!
//! The BPE itself comes from the model set's `tokenizer.json` (tokenizers-rs); this module adds
//! what both references do around it: the text cleanup (`ftfy.fix_text` essentials, whitespace
//! collapse, lowercase, see [`clean`]), BOS/EOS, truncation that keeps EOS last, and padding with
//! the manifest's `pad_id`. Truncation is reported, not silent, so the pipeline can warn.

mod clean;

use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::manifest::{ModelSet, TokenizerEntry};

pub use clean::clean;

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

/// A CLIP tokenizer bound to one manifest tokenizer entry.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    entry: TokenizerEntry,
}

impl ClipTokenizer {
    /// Loads `entry.file` of a model set.
    pub fn open(set: &ModelSet, entry: &TokenizerEntry) -> Result<Self, TokenizerError> {
        Self::from_file(&set.path_of(&entry.file), entry.clone())
    }

    /// Loads a `tokenizer.json` and checks the entry's special ids against its vocabulary.
    pub fn from_file(path: &Path, entry: TokenizerEntry) -> Result<Self, TokenizerError> {
        let mut inner =
            tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizerError::Load {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        // Padding and truncation are ours (they must keep EOS and use the manifest's ids).
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| TokenizerError::Load {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        check_entry(path, &entry, inner.get_vocab_size(true))?;
        Ok(ClipTokenizer { inner, entry })
    }

    pub fn max_length(&self) -> usize {
        self.entry.max_length
    }

    /// `[BOS, tokens..., EOS, pad...]`, `max_length` ids; an over-long prompt keeps its first
    /// `max_length - 2` tokens and EOS.
    pub fn encode(&self, text: &str) -> Result<Tokens, TokenizerError> {
        let cleaned = clean(text);
        let encoding =
            self.inner
                .encode(cleaned.as_str(), false)
                .map_err(|e| TokenizerError::Encode {
                    text: text.to_owned(),
                    message: e.to_string(),
                })?;
        Ok(self.frame(encoding.get_ids()))
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

    /// Golden ids from the two reference tokenizers, written by tests/golden/gen_tokenizer_golden.py;
    /// the tokenizer files are the exported set's (export/st2v_export/tokenizer.py), read from
    /// `ST2V_TOKENIZER_DIR` or models/tiny.
    #[test]
    fn matches_the_reference_tokenizers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::var_os("ST2V_TOKENIZER_DIR")
            .map_or_else(|| root.join("models/tiny"), PathBuf::from);
        let golden_text = std::fs::read_to_string(root.join("tests/golden/tokenizer_golden.json"))
            .expect("golden file");
        let golden: serde_json::Value = serde_json::from_str(&golden_text).expect("golden JSON");
        let entry = |file: &str| TokenizerEntry {
            file: file.to_owned(),
            max_length: 77,
            pad_id: 0,
            bos_id: 49406,
            eos_id: 49407,
        };
        let references = [
            ("modelscope", "tokenizer_modelscope.json"),
            ("open_clip", "tokenizer.json"),
        ];
        for (column, file) in references {
            let tokenizer =
                ClipTokenizer::from_file(&dir.join(file), entry(file)).expect("tokenizer loads");
            let cases = golden["cases"].as_array().expect("cases");
            for case in cases {
                let prompt = case["prompt"].as_str().expect("prompt");
                let expected: Vec<i64> = serde_json::from_value(case[column].clone()).expect("ids");
                let tokens = tokenizer.encode(prompt).expect("encodes");
                assert_eq!(tokens.ids, expected, "{column}: {prompt:?}");
            }
        }
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

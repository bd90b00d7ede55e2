//! The CLIP word split both references apply to cleaned text, and the byte-level alphabet of the
//! BPE vocabulary.
//!
//! The expression is OpenAI CLIP's (`open_clip/tokenizer.py`, transformers'
//! `tokenization_clip.py`) with each reference's special tokens first: open_clip's
//! `<start_of_text>` / `<end_of_text>`, transformers' `<|startoftext|>` / `<|endoftext|>`. Theirs is
//! compiled case-insensitively, which (on lower-cased text) matters in two ways reproduced here:
//! `s` also matches `ſ` (so `'ſ` is a contraction and `<ſtart_of_text>` a match, though not the
//! special token: only an exact match stands for its id; any other match is a word), and U+0345
//! matches no alternative.

use regex::Regex;

/// One piece of cleaned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Word<'a> {
    Special(u32),
    Text(&'a str),
}

/// The CLIP word expression with a set of special tokens.
#[derive(Debug, Clone)]
pub struct WordSplitter {
    pattern: Regex,
    specials: Vec<(String, u32)>,
}

impl WordSplitter {
    pub fn new(specials: Vec<(String, u32)>) -> Result<Self, regex::Error> {
        let mut alternatives: Vec<String> = specials
            .iter()
            .map(|(token, _)| format!("(?i:{})", regex::escape(token)))
            .collect();
        alternatives.extend(
            [
                r"(?i:'s)",
                r"(?i:'t)",
                r"(?i:'re)",
                r"(?i:'ve)",
                r"(?i:'m)",
                r"(?i:'ll)",
                r"(?i:'d)",
            ]
            .map(String::from),
        );
        // Case-insensitivity changes one class member: U+0345 (a combining mark whose case
        // folding is a letter) then matches no alternative at all and is skipped.
        alternatives
            .extend([r"[\p{L}]+", r"[\p{N}]", r"[^\s\p{L}\p{N}\x{345}]+"].map(String::from));
        let pattern = Regex::new(&alternatives.join("|"))?;
        Ok(WordSplitter { pattern, specials })
    }

    /// The words of `text`, in order.
    pub fn split<'a>(&'a self, text: &'a str) -> impl Iterator<Item = Word<'a>> + 'a {
        self.pattern.find_iter(text).map(|m| {
            let word = m.as_str();
            match self.specials.iter().find(|(token, _)| token == word) {
                Some(&(_, id)) => Word::Special(id),
                None => Word::Text(word),
            }
        })
    }
}

/// GPT-2's byte-to-character map that byte-level BPE vocabularies are written in: printable
/// Latin-1 bytes stand for themselves, the others for U+0100 onwards in byte order.
pub fn byte_level(word: &str) -> String {
    word.bytes().map(byte_char).collect()
}

fn byte_char(byte: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    if printable(byte) {
        return char::from(byte);
    }
    let rank = (0..byte).filter(|&b| !printable(b)).count();
    char::from_u32(0x100 + rank as u32).unwrap_or('\u{fffd}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(splitter: &WordSplitter, text: &str) -> Vec<String> {
        splitter
            .split(text)
            .map(|w| match w {
                Word::Special(id) => format!("#{id}"),
                Word::Text(t) => t.to_owned(),
            })
            .collect()
    }

    #[test]
    fn splits_like_clip() {
        let open_clip = WordSplitter::new(vec![
            (String::from("<start_of_text>"), 1),
            (String::from("<end_of_text>"), 2),
        ])
        .expect("compiles");
        assert_eq!(
            words(
                &open_clip,
                "it's a cat's 42 toys!! <end_of_text> ?<end_of_text> <|endoftext|>"
            ),
            [
                "it",
                "'s",
                "a",
                "cat",
                "'s",
                "4",
                "2",
                "toys",
                "!!",
                "#2",
                "?<",
                "end",
                "_",
                "of",
                "_",
                "text",
                ">",
                "<|",
                "endoftext",
                "|>"
            ]
        );
        assert_eq!(
            words(&open_clip, "it'ſ <ſtart_of_text>"),
            ["it", "'ſ", "<ſtart_of_text>"]
        );
        assert_eq!(words(&open_clip, "a \u{345} ?\u{345}?"), ["a", "?", "?"]);
    }

    #[test]
    fn maps_bytes_like_gpt2() {
        assert_eq!(byte_level("a!~"), "a!~");
        assert_eq!(byte_char(0), '\u{100}');
        assert_eq!(byte_char(b' '), '\u{120}');
        assert_eq!(byte_char(0xad), '\u{143}');
        assert_eq!(byte_level("é"), "\u{c3}\u{a9}");
    }
}

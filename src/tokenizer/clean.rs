//! The text cleanup each reference tokenizer runs before its word split:
//!
//! * open_clip's `SimpleTokenizer` (`open_clip/tokenizer.py`, clean "lower"): `ftfy.fix_text`,
//!   `html.unescape` twice, whitespace runs to one space, trimmed, lower-case;
//! * transformers' Python `CLIPTokenizer` with ftfy installed (`_tokenize`): `ftfy.fix_text`,
//!   whitespace runs to one space, trimmed, lower-case (no HTML unescaping of its own).
//!
//! [`fix_text`] is our re-implementation of ftfy's; the lower-casing is Unicode's full mapping
//! (as Python's `str.lower`, final sigma included).

use super::ftfy::fix_text;
use super::html;

/// open_clip's cleanup of a prompt.
pub fn clean_open_clip(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html::unescape(&html::unescape(&fixed));
    whitespace_clean(&unescaped).to_lowercase()
}

/// transformers' `CLIPTokenizer` cleanup of one piece of a prompt (the text between its added
/// tokens).
pub fn clean_transformers(text: &str) -> String {
    whitespace_clean(&fix_text(text)).to_lowercase()
}

/// Python's `str.isspace()`: Unicode White_Space plus the separators U+1C-U+1F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `" ".join(text.split())`.
fn whitespace_clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(is_python_space).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_open_clip() {
        let cases = [
            ("A  Photo\tOF a CAT!!", "a photo of a cat!!"),
            ("  padded\n", "padded"),
            (
                "\u{201c}Curly\u{201d} \u{2018}quotes\u{2019}",
                "\"curly\" 'quotes'",
            ),
            ("\u{fb01}ne \u{fb02}ow", "fine flow"),
            (
                "\u{ff26}\u{ff35}\u{ff2c}\u{ff2c}\u{3000}width",
                "full width",
            ),
            (
                "fish &amp; chips &#39;n&#x27; &amp;amp; &unknown; & more",
                "fish & chips 'n' & &unknown; & more",
            ),
            ("zero\u{200b}width\u{0}", "zero\u{200b}width"),
            ("cafe\u{301}", "caf\u{e9}"),
            (
                "\u{39a}\u{391}\u{39b}\u{39f}\u{3a3}",
                "\u{3ba}\u{3b1}\u{3bb}\u{3bf}\u{3c2}",
            ),
            ("cafÃ© &lt;b&gt;", "café <b>"),
            ("a < b &amp;amp;", "a < b &"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean_open_clip(input), expected, "{input:?}");
        }
    }

    #[test]
    fn transformers_unescapes_only_through_ftfy() {
        assert_eq!(clean_transformers("a < b &amp;amp;"), "a < b &amp;amp;");
        assert_eq!(clean_transformers("&amp;amp; cafÃ©"), "& café");
    }
}

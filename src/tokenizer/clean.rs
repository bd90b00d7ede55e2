//! Prompt cleanup before BPE, as open_clip's `basic_clean` + `whitespace_clean` + `lower()`
//! (`open_clip/tokenizer.py`) and transformers' `CLIPTokenizer` with ftfy do it.
//!
//! ftfy's `fix_text` is large; prompts only meet the parts kept here: HTML entities, curly quotes,
//! Latin ligatures, full-width forms, control characters and NFC composition.

use tokenizers::NormalizedString;

/// Cleans a prompt: ftfy essentials, HTML unescape (twice, as open_clip), whitespace runs to one
/// space, trimmed, lowercase.
pub fn clean(text: &str) -> String {
    let fixed: String = text.chars().filter_map(fix_char).collect();
    let unescaped = unescape_html(&unescape_html(&fixed));
    let mut normalized = NormalizedString::from(unescaped.as_str());
    normalized.nfc();
    collapse_whitespace(normalized.get()).to_lowercase()
}

/// One character through ftfy's character fixes; `None` drops it.
fn fix_char(c: char) -> Option<char> {
    match c {
        '\u{2018}'..='\u{201b}' | '\u{02bc}' => Some('\''),
        '\u{201c}'..='\u{201f}' => Some('"'),
        // Full-width ASCII forms and the ideographic space.
        '\u{ff01}'..='\u{ff5e}' => char::from_u32(u32::from(c) - 0xff01 + 0x21),
        '\u{3000}' => Some(' '),
        '\t' | '\n' | '\r' => Some(c),
        '\u{0}'..='\u{1f}' | '\u{7f}' | '\u{feff}' | '\u{200b}' => None,
        _ => Some(c),
    }
}

/// Latin ligatures ftfy splits (`fix_latin_ligatures`); applied after the per-char pass.
const LIGATURES: [(char, &str); 8] = [
    ('\u{fb00}', "ff"),
    ('\u{fb01}', "fi"),
    ('\u{fb02}', "fl"),
    ('\u{fb03}', "ffi"),
    ('\u{fb04}', "ffl"),
    ('\u{fb06}', "st"),
    ('\u{0132}', "IJ"),
    ('\u{0133}', "ij"),
];

fn split_ligature(c: char, out: &mut String) {
    match LIGATURES.iter().find(|(lig, _)| *lig == c) {
        Some((_, letters)) => out.push_str(letters),
        None => out.push(c),
    }
}

/// Python's `str.isspace()`, which `\s` follows: Unicode whitespace plus the separators 0x1c-0x1f.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(is_python_space).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        word.chars().for_each(|c| split_ligature(c, &mut out));
    }
    out
}

/// The entities prompts use: the five XML ones, `&nbsp;` and numeric references.
fn unescape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        match decode_entity(tail) {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes an entity at the start of `text` (which starts with `&`): the char and bytes used.
fn decode_entity(text: &str) -> Option<(char, usize)> {
    let end = text.find(';').filter(|&end| end <= 10)?;
    let body = &text[1..end];
    let c = match body {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        _ => {
            let number = body.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((c, end + 1))
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
            ("zero\u{200b}width\u{0}", "zerowidth"),
            ("cafe\u{301}", "caf\u{e9}"),
            (
                "\u{39a}\u{391}\u{39b}\u{39f}\u{3a3}",
                "\u{3ba}\u{3b1}\u{3bb}\u{3bf}\u{3c2}",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(clean(input), expected, "{input:?}");
        }
    }
}

//! `ftfy.fix_text` with its default configuration, re-implemented from the behaviour of
//! python-ftfy 6.3 (<https://github.com/rspeer/python-ftfy>), which both reference tokenizers run
//! on every prompt: open_clip's `SimpleTokenizer` (`basic_clean`) and transformers' Python
//! `CLIPTokenizer` when ftfy is installed.
//!
//! The text is fixed line by line (each segment ends after a `\n`, at most 1,000,000
//! characters). Each segment goes through the fixes below, in ftfy's order, again and again until
//! it stops changing: HTML entities (only while no segment so far held a `<`, ftfy's "auto"),
//! mojibake ([`mojibake`]), C1 controls, Latin ligatures, character width, curly quotes, line
//! breaks, terminal escapes, control characters, then NFC. (ftfy also pairs UTF-16 surrogates;
//! Rust strings cannot hold them, and the mojibake decoder pairs CESU-8 ones itself.)

mod badness;
mod charmaps;
mod mojibake;

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use super::html;

/// ftfy's `max_decode_length`, in characters.
const MAX_SEGMENT: usize = 1_000_000;

/// `ftfy.fix_text(text)`.
pub fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut unescape_html = true;
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        if let Some((cut, _)) = rest[..end].char_indices().nth(MAX_SEGMENT) {
            end = cut;
        }
        let segment = &rest[..end];
        // Once a segment holds a '<' (HTML, whose entities must stay), no later one is unescaped.
        unescape_html &= !segment.contains('<');
        out.push_str(&fix_segment(segment, unescape_html));
        rest = &rest[end..];
    }
    out
}

fn fix_segment(segment: &str, unescape_html: bool) -> String {
    let mut text = segment.to_owned();
    loop {
        let mut fixed = if unescape_html {
            html::unescape_ftfy(&text)
        } else {
            text.clone()
        };
        fixed = mojibake::fix_encoding(&fixed);
        fixed = mojibake::fix_c1_controls(&fixed);
        fixed = fix_latin_ligatures(&fixed);
        fixed = fix_character_width(&fixed);
        fixed = uncurl_quotes(&fixed);
        fixed = fix_line_breaks(&fixed);
        fixed = remove_terminal_escapes(&fixed);
        fixed = remove_control_chars(&fixed);
        fixed = fixed.nfc().collect();
        if fixed == text {
            return fixed;
        }
        text = fixed;
    }
}

/// Latin typographic ligatures and the digraphs kept for legacy encodings, taken apart (not æ,
/// œ and other letters used on purpose).
fn fix_latin_ligatures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let letters = match c {
            '\u{132}' => "IJ",
            '\u{133}' => "ij",
            '\u{149}' => "\u{2bc}n",
            '\u{1f1}' => "DZ",
            '\u{1f2}' => "Dz",
            '\u{1f3}' => "dz",
            '\u{1c4}' => "D\u{17d}",
            '\u{1c5}' => "D\u{17e}",
            '\u{1c6}' => "d\u{17e}",
            '\u{1c7}' => "LJ",
            '\u{1c8}' => "Lj",
            '\u{1c9}' => "lj",
            '\u{1ca}' => "NJ",
            '\u{1cb}' => "Nj",
            '\u{1cc}' => "nj",
            '\u{fb00}' => "ff",
            '\u{fb01}' => "fi",
            '\u{fb02}' => "fl",
            '\u{fb03}' => "ffi",
            '\u{fb04}' => "ffl",
            '\u{fb05}' => "\u{17f}t",
            '\u{fb06}' => "st",
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push_str(letters);
    }
    out
}

/// Halfwidth and fullwidth forms (U+FF01-U+FFEF) as their NFKC forms, and the ideographic space
/// as a space.
static WIDTH_MAP: LazyLock<HashMap<char, String>> = LazyLock::new(|| {
    let mut map: HashMap<char, String> = (0xff01..0xfff0)
        .filter_map(char::from_u32)
        .filter_map(|c| {
            let normal: String = c.nfkc().collect();
            (normal.chars().ne(std::iter::once(c))).then_some((c, normal))
        })
        .collect();
    map.insert('\u{3000}', String::from(" "));
    map
});

fn fix_character_width(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match WIDTH_MAP.get(&c) {
            Some(normal) => out.push_str(normal),
            None => out.push(c),
        }
    }
    out
}

fn uncurl_quotes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
            '\u{201c}'..='\u{201f}' => '"',
            _ => c,
        })
        .collect()
}

/// CRLF, CR, U+2028, U+2029 and NEL as `\n`.
fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .map(|c| match c {
            '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => '\n',
            _ => c,
        })
        .collect()
}

/// ANSI terminal escapes such as colours (`ESC [ digits/; letter`).
fn remove_terminal_escapes(text: &str) -> String {
    static ANSI: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\x1b\[(?:\d|;)*[a-zA-Z]").expect("the ANSI expression compiles")
    });
    ANSI.replace_all(text, "").into_owned()
}

/// Control characters without a visible effect: C0 except tab, LF, FF and CR; DEL; the
/// deprecated Arabic format controls; interlinear annotation; the object replacement character;
/// the byte order mark. (C1 controls, joiners, bidi controls and tags stay.)
fn remove_control_chars(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            !matches!(c,
                '\u{0}'..='\u{8}'
                | '\u{b}'
                | '\u{e}'..='\u{1f}'
                | '\u{7f}'
                | '\u{206a}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffc}')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_like_ftfy() {
        let cases = [
            ("\u{2714} No problems", "\u{2714} No problems"),
            ("&macr;\\_(\u{e3}\u{83}\u{84})_/&macr;", "\u{af}\\_(\u{30c4})_/\u{af}"),
            ("Broken text&hellip; it&#x2019;s \u{fb02}ubberi\u{fb01}c!", "Broken text\u{2026} it's flubberific!"),
            ("\u{ff2c}\u{ff2f}\u{ff35}\u{ff24}\u{3000}\u{ff2e}\u{ff2f}\u{ff29}\u{ff33}\u{ff25}\u{ff33}", "LOUD NOISES"),
            ("\u{ff35}\u{ff80}\u{ff70}\u{ff9d}", "U\u{30bf}\u{30fc}\u{30f3}"),
            ("\u{ff76}\u{ff9e}", "\u{30ac}"),
            ("a\r\nb\rc\u{2028}d", "a\nb\nc\nd"),
            ("\u{1b}[36;44mblue\u{1b}[0m", "blue"),
            ("x\u{0}\u{7}y\u{feff}z\u{200d}", "xyz\u{200d}"),
            ("cafe\u{301}", "caf\u{e9}"),
            ("&amp;amp;lt;", "<"),
            ("a < b &amp; c", "a < b &amp; c"),
            ("&amp; one\n<two> &amp;\n&amp; three", "& one\n<two> &amp;\n&amp; three"),
            ("a \u{88} b \r \u{1b}]0;t\u{7}\u{1a} c", "a \u{2c6} b \n ]0;t c"),
            ("s \u{11}\u{84} t \u{97}\u{1a} n \u{1e} b \u{97} \u{9f}\u{5}", "s \" t \u{2014} n  b \u{2014} \u{178}"),
        ];
        for (input, expected) in cases {
            assert_eq!(fix_text(input), expected, "{input:?}");
        }
    }
}

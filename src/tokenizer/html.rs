//! HTML character references, decoded the two ways the reference tokenizers do:
//!
//! * [`unescape`]: Python's `html.unescape` (open_clip's `basic_clean` runs it twice after ftfy):
//!   numeric references with or without `;` (the HTML5 replacements for 0, 0x80-0x9F, surrogates
//!   and out-of-range numbers; non-characters removed), named references with `;`, the legacy
//!   ones without it, and the longest legacy name at the start of an unknown one (`&notit;` is
//!   `¬it;`);
//! * [`unescape_ftfy`]: ftfy's stricter `unescape_html`: only `&name;` / `&#number;` of at most
//!   24 letters and digits, the `;` required, plus all-caps spellings of lower-case names
//!   (`&EACUTE;` is `É`) when those are not references of their own.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::html_entities::ENTITIES;

/// Python's `html.entities.html5`: name (with its `;` if it has one) to value.
static HTML5: LazyLock<HashMap<&'static str, String>> = LazyLock::new(|| {
    ENTITIES
        .split_whitespace()
        .filter_map(|entry| {
            let (name, codes) = entry.split_once('=')?;
            let value = codes
                .split('+')
                .map(|hex| u32::from_str_radix(hex, 16).ok().and_then(char::from_u32))
                .collect::<Option<String>>()?;
            Some((name, value))
        })
        .collect()
});

/// ftfy's table: `&name;` for every HTML5 name with `;`, and `&NAME;` for the lower-case ones
/// whose all-caps spelling `html.unescape` leaves alone, standing for the upper-cased value.
static FTFY_ENTITIES: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    let mut table = HashMap::new();
    for (name, value) in HTML5.iter().filter(|(name, _)| name.ends_with(';')) {
        table.insert(format!("&{name}"), value.clone());
        if name.to_lowercase() == *name {
            let upper = format!("&{}", name.to_uppercase());
            if unescape(&upper) == upper {
                table.insert(upper, value.to_uppercase());
            }
        }
    }
    table
});

/// Python's `html.unescape`.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let body = &rest[amp + 1..];
        match reference_len(body) {
            Some(len) => {
                out.push_str(&replace_reference(&body[..len]));
                rest = &body[len..];
            }
            None => {
                out.push('&');
                rest = body;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The length of the reference after a `&` as Python's `html` module matches it:
/// `#[0-9]+;?`, `#[xX][0-9a-fA-F]+;?` or up to 32 characters other than tab, LF, FF, space,
/// `<`, `&`, `#`, `;`, then an optional `;`.
fn reference_len(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let run = |from: usize, accept: fn(&u8) -> bool| {
        bytes[from.min(bytes.len())..]
            .iter()
            .take_while(|b| accept(b))
            .count()
    };
    let with_semicolon = |end: usize| end + usize::from(bytes.get(end) == Some(&b';'));
    if bytes.first() == Some(&b'#') {
        if matches!(bytes.get(1), Some(b'x' | b'X')) {
            let digits = run(2, u8::is_ascii_hexdigit);
            if digits > 0 {
                return Some(with_semicolon(2 + digits));
            }
        }
        let digits = run(1, u8::is_ascii_digit);
        return (digits > 0).then(|| with_semicolon(1 + digits));
    }
    let end = body
        .char_indices()
        .take(32)
        .take_while(|&(_, c)| !matches!(c, '\t' | '\n' | '\u{c}' | ' ' | '<' | '&' | '#' | ';'))
        .last()
        .map(|(i, c)| i + c.len_utf8())?;
    Some(with_semicolon(end))
}

/// The text a matched reference (without its `&`) stands for.
fn replace_reference(reference: &str) -> String {
    if let Some(number) = reference.strip_prefix('#') {
        let number = number.trim_end_matches(';');
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => parse_saturating(hex, 16),
            None => parse_saturating(number, 10),
        };
        return numeric_reference(code);
    }
    if let Some(value) = HTML5.get(reference) {
        return value.clone();
    }
    // The longest known name at the start (at least two characters), the rest kept.
    let ends: Vec<usize> = reference.char_indices().map(|(i, _)| i).skip(2).collect();
    for &end in ends.iter().rev() {
        if let Some(value) = HTML5.get(&reference[..end]) {
            return format!("{value}{}", &reference[end..]);
        }
    }
    format!("&{reference}")
}

fn parse_saturating(digits: &str, radix: u32) -> u32 {
    digits.chars().fold(0u32, |acc, c| {
        let digit = c.to_digit(radix).unwrap_or(0);
        acc.saturating_mul(radix).saturating_add(digit)
    })
}

/// HTML5's rules for a numeric reference, as Python applies them.
fn numeric_reference(code: u32) -> String {
    let replaced = match code {
        0 => Some('\u{fffd}'),
        0x0d => Some('\r'),
        0x80..=0x9f => {
            let windows_1252 = "\u{20ac}\u{81}\u{201a}\u{192}\u{201e}\u{2026}\u{2020}\u{2021}\
                                \u{2c6}\u{2030}\u{160}\u{2039}\u{152}\u{8d}\u{17d}\u{8f}\u{90}\
                                \u{2018}\u{2019}\u{201c}\u{201d}\u{2022}\u{2013}\u{2014}\u{2dc}\
                                \u{2122}\u{161}\u{203a}\u{153}\u{9d}\u{17e}\u{178}";
            windows_1252.chars().nth((code - 0x80) as usize)
        }
        0xd800..=0xdfff | 0x11_0000.. => Some('\u{fffd}'),
        _ => None,
    };
    if let Some(c) = replaced {
        return c.to_string();
    }
    let noncharacter = matches!(code, 0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f | 0xfdd0..=0xfdef)
        || (code & 0xfffe) == 0xfffe;
    match char::from_u32(code) {
        Some(c) if !noncharacter => c.to_string(),
        _ => String::new(),
    }
}

/// ftfy's `unescape_html`.
pub fn unescape_ftfy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let candidate = &rest[amp..];
        match ftfy_reference_len(candidate) {
            Some(len) => {
                let reference = &candidate[..len];
                out.push_str(&ftfy_replacement(reference));
                rest = &candidate[len..];
            }
            None => {
                out.push('&');
                rest = &candidate[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `&#?[0-9A-Za-z]{1,24};` at the start of `candidate`: its length.
fn ftfy_reference_len(candidate: &str) -> Option<usize> {
    let bytes = candidate.as_bytes();
    let start = if bytes.get(1) == Some(&b'#') { 2 } else { 1 };
    let run = bytes[start..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    ((1..=24).contains(&run) && bytes.get(start + run) == Some(&b';')).then_some(start + run + 1)
}

fn ftfy_replacement(reference: &str) -> String {
    if let Some(value) = FTFY_ENTITIES.get(reference) {
        return value.clone();
    }
    if reference.starts_with("&#") {
        // Only a reference html.unescape consumes whole, semicolon included.
        let unescaped = unescape(reference);
        if !unescaped.contains(';') {
            return unescaped;
        }
    }
    reference.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_like_python() {
        let cases = [
            ("fish &amp; chips", "fish & chips"),
            ("&amp &lt;b&gt &copy2024", "& <b> \u{a9}2024"),
            ("&notit; &notin; &ampfoo", "\u{ac}it; \u{2209} &foo"),
            (
                "&#65;&#x42;&#X43 &#0; &#128; &#x9d; &#xD800; &#x110000;",
                "ABC \u{fffd} \u{20ac} \u{9d} \u{fffd} \u{fffd}",
            ),
            ("&#1;&#xFFFE;&#xfdd0;|&#99999999999999999999;", "|\u{fffd}"),
            (
                "&unknown; & amp; &; &#; &#x;",
                "&unknown; & amp; &; &#; &#x;",
            ),
            ("&fjlig;&NotEqualTilde;", "fj\u{2242}\u{338}"),
        ];
        for (input, expected) in cases {
            assert_eq!(unescape(input), expected, "{input:?}");
        }
    }

    #[test]
    fn unescapes_like_ftfy() {
        let cases = [
            ("&lt;tag&gt;", "<tag>"),
            (
                "P&EACUTE;REZ &SZLIG; &ntilde; &Ntilde; &NTILDE; &nTILDE;",
                "P\u{c9}REZ SS \u{f1} \u{d1} \u{d1} &nTILDE;",
            ),
            (
                "&amp &notit; &#65 &#65; &#x1F600; &#xZZ;",
                "&amp &notit; &#65 A \u{1f600} &#xZZ;",
            ),
            ("&#12ab; &#0; &#1;", "&#12ab; \u{fffd} "),
        ];
        for (input, expected) in cases {
            assert_eq!(unescape_ftfy(input), expected, "{input:?}");
        }
    }
}

//! ftfy's mojibake repair (python-ftfy 6.3, `fix_encoding`): text that was UTF-8 but got decoded
//! in a single-byte encoding is encoded back to those bytes and decoded as UTF-8, step after
//! step until nothing changes, with ftfy's helpers: a space put back as the byte 0xA0 it was,
//! UTF-8 sequences that lost bytes to U+FFFD decoded as U+FFFD, mojibake embedded in correct
//! text fixed piece by piece, and Latin-1 C1 controls read as Windows-1252.

use std::sync::LazyLock;

use regex::bytes::Regex as BytesRegex;

use super::badness::is_bad;
use super::charmaps::{decode_windows_1252_strict, Charmap, UTF8_CLUES};

/// Fixes mojibake until the text stops changing.
pub(super) fn fix_encoding(text: &str) -> String {
    let mut text = text.to_owned();
    loop {
        match fix_one_step(&text) {
            Some(fixed) if fixed != text => text = fixed,
            _ => return text,
        }
    }
}

/// One repair, or `None` when the text is left as it is.
fn fix_one_step(text: &str) -> Option<String> {
    if text.is_ascii() || !is_bad(text) {
        return None;
    }
    let mut latin1_possible = false;
    for charmap in Charmap::ALL {
        let Some(mut bytes) = charmap.encode(text) else {
            continue;
        };
        latin1_possible |= charmap == Charmap::Latin1;
        if charmap != Charmap::MacRoman && ALTERED_UTF8.is_match(&bytes) {
            bytes = restore_byte_a0(&bytes);
        }
        if charmap.is_sloppy() {
            bytes = LOSSY_UTF8
                .replace_all(&bytes, "\u{fffd}".as_bytes())
                .into_owned();
        }
        let decoded = if bytes.contains(&0xed) || bytes.contains(&0xc0) {
            decode_utf8_variants(&bytes)
        } else {
            String::from_utf8(bytes).ok()
        };
        if decoded.is_some() {
            return decoded;
        }
    }
    if let Some(fixed) = decode_inconsistent_utf8(text) {
        return Some(fixed);
    }
    // ftfy then checks for Windows-1252 among the possible encodings under a name its list never
    // holds, so Latin-1 text always gets here: its C1 controls read as (strict) Windows-1252.
    if latin1_possible {
        let bytes = Charmap::Latin1.encode(text)?;
        if let Some(fixed) = decode_windows_1252_strict(&bytes) {
            if fixed != text {
                return Some(fixed);
            }
        }
    }
    text.chars().any(is_c1).then(|| fix_c1_controls(text))
}

pub(super) fn is_c1(c: char) -> bool {
    ('\u{80}'..='\u{9f}').contains(&c)
}

/// C1 controls read as their (sloppy) Windows-1252 characters, as browsers do.
pub(super) fn fix_c1_controls(text: &str) -> String {
    text.chars()
        .map(|c| match u8::try_from(u32::from(c)) {
            Ok(byte) if is_c1(c) => Charmap::Windows1252.decode_byte(byte),
            _ => c,
        })
        .collect()
}

/// UTF-8 sequences that would be valid if a byte 0xA0 had not become a space.
static ALTERED_UTF8: LazyLock<BytesRegex> = LazyLock::new(|| {
    BytesRegex::new(
        r"(?-u)[\xc2\xc3\xc5\xce\xd0\xd9] |[\xe2\xe3] [\x80-\x84\x86-\x9f\xa1-\xbf]|[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf] |\xf0 [\x80-\xbf][\x80-\xbf]|\xf0[\x80-\xbf] [\x80-\xbf]|\xf0[\x80-\xbf][\x80-\xbf] ",
    )
    .expect("the altered-UTF-8 expression compiles")
});

/// UTF-8 (and CESU-8) sequences some of whose bytes were lost to U+FFFD (byte 0x1A in the sloppy
/// encodings) or, once per sequence, to '?'.
static LOSSY_UTF8: LazyLock<BytesRegex> = LazyLock::new(|| {
    BytesRegex::new(
        r"(?-u)[\xc2-\xdf]\x1a|[\xc2-\xc3]\?|\xed[\xa0-\xaf][\x1a?]\xed[\xb0-\xbf][\x1a?\x80-\xbf]|\xed[\xa0-\xaf][\x1a?\x80-\xbf]\xed[\xb0-\xbf][\x1a?]|[\xe0-\xef][\x1a?][\x1a\x80-\xbf]|[\xe0-\xef][\x1a\x80-\xbf][\x1a?]|[\xf0-\xf4][\x1a?][\x1a\x80-\xbf][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a?][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a\x80-\xbf][\x1a?]|\x1a",
    )
    .expect("the lossy-UTF-8 expression compiles")
});

/// Puts back the 0xA0 bytes that became spaces inside UTF-8 sequences. "Ã " as a word of its own
/// keeps its space ("à la"), except before Portuguese "às"/"àquele"/"àquela"/"àquilo".
fn restore_byte_a0(bytes: &[u8]) -> Vec<u8> {
    let mut spaced = Vec::with_capacity(bytes.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xc3
            && bytes.get(i + 1) == Some(&b' ')
            && !a_grave_exception(&bytes[i + 2..])
        {
            spaced.extend_from_slice(&[0xc3, 0xa0, b' ']);
            i += 2;
        } else {
            spaced.push(bytes[i]);
            i += 1;
        }
    }
    ALTERED_UTF8
        .replace_all(&spaced, |caps: &regex::bytes::Captures| {
            caps[0]
                .iter()
                .map(|&b| if b == b' ' { 0xa0 } else { b })
                .collect::<Vec<u8>>()
        })
        .into_owned()
}

fn a_grave_exception(rest: &[u8]) -> bool {
    [&b" "[..], b"quele", b"quela", b"quilo", b"s "]
        .iter()
        .any(|word| rest.starts_with(word))
}

/// UTF-8 as ftfy's "utf-8-variants" codec reads it: also CESU-8 surrogate pairs (six bytes for
/// one supplementary character) and Java's 0xC0 0x80 for U+0000. `None` on any other error.
fn decode_utf8_variants(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(&[0xc0, 0x80]) {
            out.push('\0');
            i += 2;
        } else if let Some(c) = cesu8_pair(rest) {
            out.push(c);
            i += 6;
        } else {
            let width = match rest[0] {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            let piece = std::str::from_utf8(rest.get(..width)?).ok()?;
            out.push_str(piece);
            i += width;
        }
    }
    Some(out)
}

fn cesu8_pair(b: &[u8]) -> Option<char> {
    let is = |i: usize, lo: u8, hi: u8| b.get(i).is_some_and(|&x| (lo..=hi).contains(&x));
    let pair = b.first() == Some(&0xed)
        && is(1, 0xa0, 0xaf)
        && is(2, 0x80, 0xbf)
        && b.get(3) == Some(&0xed)
        && is(4, 0xb0, 0xbf)
        && is(5, 0x80, 0xbf);
    if !pair {
        return None;
    }
    let bits = (u32::from(b[1] & 0x0f) << 16)
        | (u32::from(b[2] & 0x3f) << 10)
        | (u32::from(b[4] & 0x0f) << 6)
        | u32::from(b[5] & 0x3f);
    char::from_u32(bits + 0x10000)
}

/// Fixes runs that look like UTF-8 mojibake inside otherwise different text, each on its own
/// (ftfy's `decode_inconsistent_utf8`); `None` when there is no such run or nothing changed.
fn decode_inconsistent_utf8(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    let mut i = 0;
    while i < chars.len() {
        let after_strict = i > 0 && UTF8_CLUES.continuation_strict.contains(&chars[i - 1]);
        match (!after_strict).then(|| utf8_run(&chars, i)).flatten() {
            Some(end) => {
                found = true;
                let run: String = chars[i..end].iter().collect();
                if end - i < chars.len() && is_bad(&run) {
                    out.push_str(&fix_encoding(&run));
                } else {
                    out.push_str(&run);
                }
                i = end;
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    (found && out != text).then_some(out)
}

/// The end of the longest run of UTF-8-looking sequences starting at `start` (ftfy's
/// `UTF8_DETECTOR_RE` without its look-behind), each sequence taking the first form that fits.
fn utf8_run(chars: &[char], start: usize) -> Option<usize> {
    let clues = &*UTF8_CLUES;
    let is_continuation = |i: usize| chars.get(i).is_some_and(|c| clues.continuation.contains(c));
    let mut i = start;
    while let Some(&lead) = chars.get(i) {
        let forms = [
            (&clues.first_of_2, 1),
            (&clues.first_of_3, 2),
            (&clues.first_of_4, 3),
        ];
        let step = forms.iter().find_map(|(leads, continuations)| {
            (leads.contains(&lead) && (1..=*continuations).all(|k| is_continuation(i + k)))
                .then_some(1 + continuations)
        });
        match step {
            Some(step) => i += step,
            None => break,
        }
    }
    (i > start).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_utf8_read_as_single_byte_encodings() {
        let cases = [
            ("sÃ³", "só"),
            ("schÃ¶n", "schön"),
            ("voilÃ le travail", "voilà le travail"),
            ("Ã la mode", "à la mode"),
            ("â€œ like this â€\u{fffd}", "\u{201c} like this \u{fffd}"),
            ("Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "привет"),
            ("Ã°Å¸Ëœâ‚¬", "😀"),
            ("\u{ed}\u{a0}\u{bd}\u{ed}\u{b8}\u{80}", "😀"),
            (
                "The Mona Lisa doesnÃƒÂ¢Ã¢â€šÂ¬Ã¢â€žÂ¢t",
                "The Mona Lisa doesn\u{2019}t",
            ),
            ("café naïve", "café naïve"),
        ];
        for (input, expected) in cases {
            assert_eq!(fix_encoding(input), expected, "{input:?}");
        }
    }

    #[test]
    fn reads_c1_controls_as_windows_1252() {
        assert_eq!(
            fix_encoding("a \u{93}b\u{94} \u{81}"),
            "a \u{201c}b\u{201d} \u{81}"
        );
    }
}

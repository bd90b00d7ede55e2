//! ftfy's mojibake heuristic (python-ftfy 6.3, `badness.is_bad`): text "is bad" when it holds one
//! of a list of character juxtapositions that are far likelier to come from UTF-8 decoded in a
//! single-byte encoding than from anyone's intent, such as an accented capital followed by a
//! currency sign. The character categories and the juxtapositions are ftfy's; the expression
//! is written for the `regex` crate (Python's `\s` and `\w` spelled out as Python's `re` defines
//! them for text).

use std::sync::LazyLock;

use regex::Regex;

/// Characters found in mojibake of every kind and in ordinary text alike.
const COMMON: &str = "\u{a0}\u{ad}\u{b7}\u{b4}\u{2013}\u{2014}\u{2015}\u{2026}\u{2019}";
/// C1 controls: no use left outside mojibake.
const C1: &str = "\u{80}-\u{9f}";
/// Nearly only ever mojibake.
const BAD: &str = "\u{a6}\u{a4}\u{a8}\u{ac}\u{af}\u{b8}\u{192}\u{2c6}\u{2c7}\u{2d8}\u{2db}\u{2dc}\
                   \u{2020}\u{2021}\u{2030}\u{2310}\u{25ca}\u{fffd}\u{aa}\u{ba}";
const LAW: &str = "\u{b6}\u{a7}";
const CURRENCY: &str = "\u{a2}\u{a3}\u{a5}\u{20a7}\u{20ac}";
const START_PUNCTUATION: &str = "\u{a1}\u{ab}\u{bf}\u{a9}\u{384}\u{385}\u{2018}\u{201a}\u{201c}\
                                 \u{201e}\u{2022}\u{2039}\u{f8ff}";
const END_PUNCTUATION: &str = "\u{ae}\u{bb}\u{2dd}\u{201d}\u{203a}\u{2122}";
const NUMERIC: &str =
    "\u{b2}\u{b3}\u{b9}\u{b1}\u{bc}\u{bd}\u{be}\u{d7}\u{b5}\u{f7}\u{2044}\u{2202}\
                       \u{2206}\u{220f}\u{2211}\u{221a}\u{221e}\u{2229}\u{222b}\u{2248}\u{2260}\
                       \u{2261}\u{2264}\u{2265}\u{2116}";
/// Letters that emoticon faces (kaomoji) use, so they may appear in odd company.
const KAOMOJI: &str = "\u{d2}-\u{d6}\u{d9}-\u{dc}\u{f2}-\u{f6}\u{f8}-\u{fc}\u{150}\u{14c}\u{16a}\
                       \u{172}\u{b0}";
const UPPER_ACCENTED: &str = "\u{c0}-\u{d1}\u{d8}\u{dc}\u{dd}\u{102}\u{100}\u{104}\u{106}\u{10c}\
                              \u{10e}\u{110}\u{118}\u{11a}\u{112}\u{116}\u{11e}\u{122}\u{130}\
                              \u{12a}\u{136}\u{139}\u{13d}\u{141}\u{13b}\u{143}\u{147}\u{145}\
                              \u{152}\u{158}\u{15a}\u{15e}\u{160}\u{162}\u{164}\u{16e}\u{170}\
                              \u{178}\u{179}\u{17b}\u{17d}\u{490}";
const LOWER_ACCENTED: &str = "\u{df}\u{e0}-\u{f1}\u{103}\u{105}\u{101}\u{107}\u{10d}\u{10f}\
                              \u{111}\u{119}\u{11b}\u{113}\u{117}\u{11f}\u{123}\u{12f}\u{12b}\
                              \u{137}\u{13a}\u{13e}\u{142}\u{13c}\u{153}\u{155}\u{15b}\u{15f}\
                              \u{161}\u{165}\u{fc}\u{17a}\u{17c}\u{17e}\u{491}\u{fb01}\u{fb02}";
const UPPER_COMMON: &str = "\u{de}\u{391}-\u{3a9}\u{386}\u{388}\u{389}\u{38a}\u{38c}\u{38e}\
                            \u{38f}\u{3aa}\u{3ab}\u{401}-\u{42f}";
const LOWER_COMMON: &str = "\u{3b1}-\u{3c9}\u{3ac}\u{3ad}\u{3ae}\u{3af}\u{3b0}\u{430}-\u{45f}";
const BOX: &str = "\u{2502}\u{250c}\u{2510}\u{2518}\u{251c}\u{2524}\u{252c}\u{253c}\
                   \u{2550}-\u{256c}\u{2580}\u{2584}\u{2588}\u{258c}\u{2590}\u{2591}\u{2592}\
                   \u{2593}";

/// Python's `\s` for text: Unicode White_Space plus the separators U+1C-U+1F.
const PY_SPACE: &str = r"[\s\x1c-\x1f]";
/// Python's `\w` for text: letters, numbers and the underscore.
const PY_WORD: &str = r"[\p{L}\p{N}_]";

/// A character class made of category bodies and literal characters.
fn class(parts: &[&str]) -> String {
    format!("[{}]", parts.concat())
}

fn badness_pattern() -> String {
    let (la, ua) = (LOWER_ACCENTED, UPPER_ACCENTED);
    let (sp, ep) = (START_PUNCTUATION, END_PUNCTUATION);
    let arabic = class(&[
        COMMON,
        CURRENCY,
        BAD,
        NUMERIC,
        sp,
        "\u{178}\u{160}\u{ae}\u{b0}\u{b5}\u{bb}",
    ]);
    let alternatives = [
        class(&[C1]),
        class(&[BAD, la, ua, BOX, sp, ep, CURRENCY, NUMERIC, LAW]) + &class(&[BAD]),
        String::from("[a-zA-Z]") + &class(&[LOWER_COMMON, UPPER_COMMON]) + &class(&[BAD]),
        class(&[BAD]) + &class(&[la, ua, BOX, sp, ep, CURRENCY, NUMERIC, LAW]),
        class(&[la, LOWER_COMMON, BOX, ep, CURRENCY, NUMERIC]) + &class(&[ua]),
        class(&[BOX, ep, CURRENCY, NUMERIC]) + &class(&[la]),
        class(&[la, BOX, ep]) + &class(&[CURRENCY]),
        format!("{PY_SPACE}{}{}", class(&[ua]), class(&[CURRENCY])),
        class(&[ua, BOX]) + &class(&[NUMERIC, LAW]),
        class(&[la, ua, BOX, CURRENCY, ep]) + &class(&[sp]) + &class(&[NUMERIC]),
        class(&[la, ua, CURRENCY, NUMERIC, BOX, LAW]) + &class(&[ep]) + &class(&[sp]),
        class(&[CURRENCY, NUMERIC, BOX]) + &class(&[sp]),
        String::from("[a-z]") + &class(&[ua]) + &class(&[sp, CURRENCY]),
        class(&[BOX]) + &class(&[KAOMOJI]),
        class(&[la, ua, CURRENCY, NUMERIC, sp, ep, LAW]) + &class(&[BOX]),
        class(&[BOX]) + &class(&[ep]),
        class(&[la, ua]) + &class(&[sp, ep]) + PY_WORD,
        // The ligature œ not followed by an unaccented Latin letter.
        String::from("[\u{152}\u{153}][^A-Za-z]"),
        // A degree sign after a capital letter.
        class(&[ua]) + "\u{b0}",
        // Common Windows-1252 two-character mojibake not covered above.
        String::from("[\u{c2}\u{c3}\u{ce}\u{d0}]")
            + &class(&[
                "\u{20ac}\u{153}\u{160}\u{161}\u{a2}\u{a3}\u{178}\u{17e}\u{a0}\u{ad}\u{ae}\u{a9}\
                 \u{b0}\u{b7}\u{bb}",
                sp,
                ep,
                "\u{2013}\u{2014}\u{b4}",
            ]),
        String::from("\u{d7}[\u{b2}\u{b3}]"),
        // Windows-1252 mojibake of Arabic: four characters, as it includes the common ones.
        format!("[\u{d8}\u{d9}]{arabic}[\u{d8}\u{d9}]{arabic}"),
        // Windows-1252 starts of three-byte sequences of South Asian scripts.
        String::from("\u{e0}[\u{b2}\u{b5}\u{b9}\u{bc}\u{bd}\u{be}]"),
        // MacRoman mojibake.
        String::from(
            "\u{221a}[\u{b1}\u{2202}\u{2020}\u{2260}\u{ae}\u{2122}\u{b4}\u{2264}\u{2265}\u{a5}\u{b5}\u{f8}]",
        ),
        String::from("\u{2248}[\u{b0}\u{a2}]"),
        String::from("\u{201a}\u{c4}[\u{ec}\u{ee}\u{ef}\u{f2}\u{f4}\u{fa}\u{f9}\u{fb}\u{2020}\u{b0}\u{a2}\u{3c0}]"),
        String::from("\u{201a}[\u{e2}\u{f3}][\u{e0}\u{e4}\u{b0}\u{ea}]"),
        // Windows-1251 mojibake of the U+2000 range.
        String::from("\u{432}\u{402}"),
        // Windows-1251 mojibake of Latin-1 and Cyrillic: three characters.
        format!(
            "[\u{412}\u{413}\u{420}\u{421}]{}[\u{412}\u{413}\u{420}\u{421}]",
            class(&[C1, BAD, sp, ep, CURRENCY, "\u{b0}\u{b5}"])
        ),
        // Windows-1251 over Latin-1 over Windows-1252, next to a Latin letter.
        String::from("\u{413}\u{45e}\u{412}\u{402}\u{412}.[A-Za-z ]"),
        // Windows-1252 encodings of à, á and U+A0 itself.
        String::from("\u{c3}[\u{a0}\u{a1}]"),
        format!("[a-z]{PY_SPACE}?[\u{c3}\u{c2}] "),
        String::from("^[\u{c3}\u{c2}] "),
        // Â before a character it encodes as itself.
        format!("{}\u{c2}{}", class(&["a-z.,?!", ep]), class(&[" ", sp, ep])),
        // Windows-1253 mojibake of the U+2000 range.
        String::from("\u{3b2}\u{20ac}[\u{2122}\u{a0}\u{386}\u{ad}\u{ae}\u{b0}]"),
        // Windows-1253 mojibake of Latin-1 and Greek.
        format!(
            "[\u{392}\u{393}\u{39e}\u{39f}]{}[\u{392}\u{393}\u{39e}\u{39f}]",
            class(&[C1, BAD, sp, ep, CURRENCY, "\u{b0}"])
        ),
        // Windows-1257 mojibake of the U+2000 range.
        String::from("\u{101}\u{20ac}"),
    ];
    alternatives.join("|")
}

static BADNESS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&badness_pattern()).expect("the badness expression compiles"));

/// Whether `text` looks like it holds mojibake.
pub(super) fn is_bad(text: &str) -> bool {
    BADNESS.is_match(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mojibake_and_leaves_text_alone() {
        for bad in ["sÃ³", "cafÃ©", "â€œquoteâ€\u{9d}", "\u{85}", "Ã la", "Ð¿Ñ€"] {
            assert!(is_bad(bad), "{bad:?}");
        }
        for good in [
            "café",
            "naïve façade",
            "Straße",
            "“quotes”",
            "東京 🚀",
            "Привет",
            "½ cup",
        ] {
            assert!(!is_bad(good), "{good:?}");
        }
    }
}

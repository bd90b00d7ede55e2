//! Golden ids from the two reference tokenizers, written by tests/golden/gen_tokenizer_golden.py
//! (open_clip's `tokenize`; transformers' Python `CLIPTokenizer` with ftfy); the tokenizer files
//! are the exported set's (export/st2v_export/tokenizer.py), read from `ST2V_TOKENIZER_DIR` or
//! models/tiny. `ST2V_TOKENIZER_GOLDEN` names another golden file (the generator's `--scale`
//! makes larger ones).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ClipTokenizer;
use crate::manifest::TokenizerEntry;

/// The classes of generated prompts the golden file must cover.
const CLASSES: [&str; 9] = [
    "unicode_categories",
    "emoji",
    "html_entities",
    "control",
    "mojibake",
    "width_ligatures_quotes",
    "mixed_scripts",
    "special_tokens",
    "length",
];

struct Case {
    class: String,
    prompt: String,
    /// Expected ids per reference, unpadded where the file stores them so.
    open_clip: Vec<i64>,
    modelscope: Vec<i64>,
}

fn ids(value: &Value) -> Vec<i64> {
    serde_json::from_value(value.clone()).expect("ids")
}

/// The golden file's cases, and whether it is the committed file.
fn load_cases() -> (Vec<Case>, bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let other = std::env::var_os("ST2V_TOKENIZER_GOLDEN");
    let committed = other.is_none();
    let path = other.map_or_else(
        || root.join("tests/golden/tokenizer_golden.json"),
        PathBuf::from,
    );
    let text = std::fs::read_to_string(&path).expect("golden file");
    let golden: Value = serde_json::from_str(&text).expect("golden JSON");
    let mut cases = Vec::new();
    for case in golden["cases"].as_array().expect("cases") {
        cases.push(Case {
            class: String::from("hand_written"),
            prompt: case["prompt"].as_str().expect("prompt").to_owned(),
            open_clip: ids(&case["open_clip"]),
            modelscope: ids(&case["modelscope"]),
        });
    }
    for case in golden["generated"].as_array().expect("generated") {
        let open_clip = ids(&case["open_clip"]);
        let modelscope = case
            .get("modelscope")
            .map_or_else(|| open_clip.clone(), ids);
        cases.push(Case {
            class: case["class"].as_str().expect("class").to_owned(),
            prompt: case["prompt"].as_str().expect("prompt").to_owned(),
            open_clip,
            modelscope,
        });
    }
    (cases, committed)
}

fn padded(mut ids: Vec<i64>) -> Vec<i64> {
    ids.resize(77, 0);
    ids
}

fn tokenizer_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("ST2V_TOKENIZER_DIR").map_or_else(|| root.join("models/tiny"), PathBuf::from)
}

fn entry(file: &str) -> TokenizerEntry {
    TokenizerEntry {
        file: file.to_owned(),
        max_length: 77,
        pad_id: 0,
        bos_id: 49406,
        eos_id: 49407,
    }
}

fn unpadded(tokenizer: &ClipTokenizer, text: &str) -> Vec<i64> {
    let mut ids = tokenizer.encode(text).expect("encodes").ids;
    while ids.last() == Some(&0) {
        ids.pop();
    }
    ids
}

/// A typed special token is the special token for transformers (ModelScope) and text for
/// open_clip, whose own names for them are `<start_of_text>` / `<end_of_text>`; "!" is
/// ModelScope's pad token only where typed as "!".
#[test]
fn literal_special_tokens_follow_each_reference() {
    let dir = tokenizer_dir();
    let load = |file: &str| ClipTokenizer::from_file(&dir.join(file), entry(file)).expect("loads");
    let (modelscope, open_clip) = (load("tokenizer_modelscope.json"), load("tokenizer.json"));
    assert_eq!(
        unpadded(&modelscope, "<|endoftext|>"),
        [49406, 49407, 49407]
    );
    assert_eq!(unpadded(&open_clip, "<end_of_text>"), [49406, 49407, 49407]);
    let text = unpadded(&open_clip, "<|endoftext|>");
    assert!(
        text.len() > 3 && !text[1..text.len() - 1].contains(&49407),
        "{text:?}"
    );
    assert_eq!(unpadded(&modelscope, "wow!!!")[2..], [0, 0, 0, 49407]);
    let fullwidth = unpadded(&modelscope, "wow\u{ff01}\u{ff01}");
    assert!(!fullwidth.contains(&0), "{fullwidth:?}");
}

#[test]
fn matches_the_reference_tokenizers() {
    let dir = tokenizer_dir();
    let (cases, committed) = load_cases();
    for class in CLASSES.into_iter().filter(|_| committed) {
        let count = cases.iter().filter(|case| case.class == class).count();
        assert!(count >= 10, "the golden file has {count} `{class}` prompts");
    }
    let references = [
        ("modelscope", "tokenizer_modelscope.json"),
        ("open_clip", "tokenizer.json"),
    ];
    // (reference, class) -> (cases, mismatches)
    let mut tally: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for (column, file) in references {
        let tokenizer =
            ClipTokenizer::from_file(&dir.join(file), entry(file)).expect("tokenizer loads");
        for case in &cases {
            let expected = padded(match column {
                "modelscope" => case.modelscope.clone(),
                _ => case.open_clip.clone(),
            });
            let actual = tokenizer.encode(&case.prompt).expect("encodes").ids;
            let count = tally.entry((column, case.class.as_str())).or_default();
            count.0 += 1;
            if actual != expected {
                count.1 += 1;
                failures.push(format!(
                    "{column} [{}] {:?}\n  expected {:?}\n  actual   {:?}",
                    case.class, case.prompt, expected, actual
                ));
            }
        }
    }
    for ((column, class), (total, mismatches)) in &tally {
        eprintln!("{column:>10} {class:<24} {mismatches:>3} mismatches of {total}");
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

//! Manifest parsing and validation: the fixture manifest (tests/fixtures/set/, written by
//! tests/fixtures/make_fixtures.py) validates against models/manifest.schema.json and opens;
//! a table of malformed variants each fails with an error naming the field, the expected value
//! and the actual one; hashes are verified by streaming.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use streamingt2v::manifest::{Manifest, ManifestError, ModelSet, SCHEMA_JSON};
use streamingt2v::models::roles::check_set;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/set")
}

fn good_manifest() -> Value {
    let text =
        std::fs::read_to_string(fixture_dir().join("manifest.json")).expect("fixture manifest");
    serde_json::from_str(&text).expect("fixture manifest is JSON")
}

/// A copy of the fixture set whose manifest is `manifest`.
fn set_dir(manifest: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(fixture_dir()).expect("fixture dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    let text = serde_json::to_string_pretty(manifest).expect("serialize");
    std::fs::write(dir.path().join("manifest.json"), text).expect("write manifest");
    dir
}

fn schema_accepts(manifest: &Value) -> bool {
    let schema: Value = serde_json::from_str(SCHEMA_JSON).expect("schema is JSON");
    jsonschema::validator_for(&schema)
        .expect("schema compiles")
        .is_valid(manifest)
}

/// Applies `edit` at a JSON pointer (`None` removes the key).
fn edited(pointer: &str, edit: Option<Value>) -> Value {
    let mut manifest = good_manifest();
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    let target = manifest.pointer_mut(parent).expect("parent exists");
    match (edit, target) {
        (Some(value), Value::Array(items)) => items[key.parse::<usize>().expect("index")] = value,
        (Some(value), Value::Object(map)) => {
            map.insert(key.to_owned(), value);
        }
        (None, Value::Object(map)) => {
            map.remove(key);
        }
        (_, other) => panic!("cannot edit {pointer} in {other}"),
    }
    manifest
}

#[test]
fn fixture_manifest_follows_the_schema_and_opens() {
    let manifest = good_manifest();
    assert!(schema_accepts(&manifest));
    let set = ModelSet::open(fixture_dir()).expect("opens");
    check_set(&set).expect("follows roles.json");
    assert_eq!(set.manifest.graphs.len(), 4);
    // What the Rust types write back is still a schema-valid manifest with the same graphs.
    let round_trip = serde_json::to_value(&set.manifest).expect("serialize");
    assert!(schema_accepts(&round_trip));
    assert_eq!(round_trip["graphs"], manifest["graphs"]);
}

#[test]
fn malformed_manifests_fail_with_field_expected_and_actual() {
    let sha = "/graphs/text_encoder/sha256";
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "unknown schema version",
            edited("/schema_version", Some(json!(2))),
            &[
                "unknown manifest schema_version 2",
                "reads version 1",
                "re-export",
            ],
        ),
        (
            "missing required field",
            edited("/pipeline", None),
            &["missing field `pipeline`"],
        ),
        (
            "bad dtype",
            edited("/graphs/vae_decoder/inputs/0/dtype", Some(json!("float64"))),
            &["float64"],
        ),
        (
            "unknown field",
            edited("/graphs/vae_decoder/checksum", Some(json!("x"))),
            &["unknown field `checksum`"],
        ),
        (
            "bad preset",
            edited("/preset", Some(json!("huge"))),
            &["unknown variant `huge`"],
        ),
        (
            "short sha256",
            edited(sha, Some(json!("abc123"))),
            &[
                "graphs.text_encoder.sha256",
                "64 lowercase hex digits",
                "abc123",
            ],
        ),
        (
            "zero-sized axis",
            edited("/graphs/vae_decoder/inputs/0/shape/1", Some(json!(0))),
            &[
                "graphs.vae_decoder.inputs.latents.shape[1]",
                "a size >= 1",
                "found 0",
            ],
        ),
        (
            "bad axis name",
            edited(
                "/graphs/vae_decoder/inputs/0/shape/0",
                Some(json!("Frames")),
            ),
            &["shape[0]", "an axis name like `batch`", "Frames"],
        ),
        (
            "max_length below 2",
            edited("/tokenizers/text/max_length", Some(json!(1))),
            &["tokenizers.text.max_length", "at least 2", "found 1"],
        ),
        (
            "height not a multiple of the VAE factor",
            edited("/pipeline/stage2/height", Some(json!(60))),
            &[
                "pipeline.stage2.height",
                "multiple of vae_scale_factor 8",
                "found 60",
            ],
        ),
        (
            "cond frames not below the chunk",
            edited("/pipeline/stage2/cond_frames", Some(json!(16))),
            &[
                "pipeline.stage2.cond_frames",
                "between 1 and chunk_frames - 1 = 15",
                "found 16",
            ],
        ),
        (
            "overlap not below the chunk",
            edited("/pipeline/stage3/overlap_frames", Some(json!(24))),
            &[
                "pipeline.stage3.overlap_frames",
                "below chunk_frames = 24",
                "found 24",
            ],
        ),
        (
            "content larger than the frame",
            edited("/pipeline/stage3/content_width", Some(json!(128))),
            &[
                "content_height/content_width",
                "at most the frame size 64x112",
                "64x128",
            ],
        ),
        (
            "missing graph file",
            edited("/graphs/vae_decoder/file", Some(json!("gone.onnx"))),
            &["graph `vae_decoder` file", "gone.onnx", "is missing"],
        ),
        (
            "missing tokenizer file",
            edited("/tokenizers/text/file", Some(json!("nope.json"))),
            &["tokenizer `text` file", "nope.json", "is missing"],
        ),
    ];
    for (name, manifest, expected) in cases {
        let dir = set_dir(&manifest);
        let err = ModelSet::open(dir.path()).expect_err(name).to_string();
        assert!(err.contains("manifest.json"), "{name}: {err}");
        for fragment in expected {
            assert!(err.contains(fragment), "{name}: `{fragment}` not in: {err}");
        }
    }
}

#[test]
fn schema_and_engine_agree_on_structural_errors() {
    let cases = [
        edited("/schema_version", Some(json!(2))),
        edited("/pipeline", None),
        edited("/graphs/vae_decoder/inputs/0/dtype", Some(json!("float64"))),
        edited("/graphs/text_encoder/sha256", Some(json!("abc123"))),
        edited("/graphs/vae_decoder/inputs/0/shape/1", Some(json!(0))),
        edited("/tokenizers/text/max_length", Some(json!(1))),
        edited(
            "/graphs/transformer",
            Some(good_manifest()["graphs"]["vae_decoder"].clone()),
        ),
    ];
    for manifest in cases {
        assert!(!schema_accepts(&manifest), "schema accepts {manifest}");
        let dir = set_dir(&manifest);
        let rejected = ModelSet::open(dir.path()).map(|set| check_set(&set).is_err());
        assert!(!matches!(rejected, Ok(false)), "engine accepts {manifest}");
    }
}

#[test]
fn graph_keys_must_be_roles_and_follow_roles_json() {
    let unknown = edited(
        "/graphs/transformer",
        Some(good_manifest()["graphs"]["vae_decoder"].clone()),
    );
    let dir = set_dir(&unknown);
    let set = ModelSet::open(dir.path()).expect("structurally valid");
    let err = check_set(&set).expect_err("unknown role").to_string();
    assert!(
        err.contains("graph key `transformer` is not a role"),
        "{err}"
    );
    assert!(err.contains("text_encoder, image_encoder"), "{err}");

    let renamed = edited("/graphs/vae_decoder/inputs/0/name", Some(json!("z")));
    let dir = set_dir(&renamed);
    let set = ModelSet::open(dir.path()).expect("structurally valid");
    let err = check_set(&set).expect_err("input renamed").to_string();
    assert!(
        err.contains("graph `vae_decoder` does not follow the role interface"),
        "{err}"
    );
    assert!(err.contains("input `latents` is missing"), "{err}");
}

#[test]
fn missing_directory_is_named() {
    let err = ModelSet::open("/no/such/model/set").expect_err("missing");
    assert!(matches!(err, ManifestError::MissingDir { .. }));
    assert!(err.to_string().contains("/no/such/model/set"));
}

#[test]
fn unparsable_manifest_names_the_file() {
    let err =
        Manifest::from_json("{ not json", Path::new("x/manifest.json")).expect_err("bad JSON");
    assert!(
        err.to_string()
            .starts_with("x/manifest.json is not valid manifest JSON"),
        "{err}"
    );
}

#[test]
fn hashes_verify_and_a_changed_file_is_caught() {
    let set = ModelSet::open(fixture_dir()).expect("opens");
    let mut seen = Vec::new();
    let verified = set
        .verify_hashes(|role, _| seen.push(role.to_owned()))
        .expect("hashes match");
    assert_eq!(verified.len(), 4);
    assert_eq!(
        seen,
        ["stage1_unet", "text_encoder", "vae_decoder", "vae_encoder"]
    );

    let dir = set_dir(&good_manifest());
    let graph = dir.path().join("vae_encoder.onnx");
    let mut bytes = std::fs::read(&graph).expect("read");
    bytes.push(0);
    std::fs::write(&graph, bytes).expect("write");
    let set = ModelSet::open(dir.path()).expect("opens");
    match set.verify_hashes(|_, _| {}) {
        Err(ManifestError::HashMismatch {
            role,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(role, "vae_encoder");
            assert_eq!(expected, good_manifest()["graphs"]["vae_encoder"]["sha256"]);
            assert_ne!(actual, expected);
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
}

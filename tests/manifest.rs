//! Manifest parsing and validation: the fixture manifest (tests/fixtures/set/, written by
//! tests/fixtures/make_fixtures.py) validates against models/manifest.schema.json and opens;
//! a table of malformed variants each fails with an error naming the field, the expected value
//! and the actual one; any well-formed preset name (custom presets) is accepted with its
//! recorded dimensions, a malformed one refused; hashes are verified by streaming.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use streamingt2v::manifest::{
    Manifest, ManifestError, ModelSet, Preset, Stage2Padding, SCHEMA_JSON,
};
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
            "bad preset name",
            edited("/preset", Some(json!("toy/v1"))),
            &[
                "invalid field `preset`",
                "a preset name of 1 to 64 characters",
                "found \"toy/v1\"",
            ],
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
        edited("/preset", Some(json!(""))),
        edited("/preset", Some(json!("a/b"))),
        with_dimensions(|d| d["unet"]["layers"] = json!({"nested": 1})),
        with_dimensions(|d| d["resolutions"]["stage2"]["height"] = json!(0)),
        with_dimensions(|d| d["depth"] = json!(3)),
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

/// The fixture's sizes as `preset_dimensions` (what export writes), edited by `edit`.
fn with_dimensions(edit: impl FnOnce(&mut Value)) -> Value {
    let resolution = |height: u32, width: u32| json!({ "height": height, "width": width });
    let mut dimensions = json!({
        "text": { "hidden_size": 8, "num_hidden_layers": 1, "hidden_act": "gelu", "layer_norm_eps": 1e-5 },
        "vision": { "image_size": 32, "layers": 1, "width": 16, "mlp_ratio": 2.0 },
        "image_embed_dim": 16,
        "unet": { "block_out_channels": [8, 8, 8, 8], "layers_per_block": 2, "norm_num_groups": 4 },
        "merger_head_dim": 8,
        "merger_norm_groups": 4,
        "resampler_inner_dim": 32,
        "cond_embedding_channels": [4, 8, 8, 16],
        "vae": { "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"], "scaling_factor": 0.18215 },
        "resolutions": {
            "stage1": resolution(64, 64),
            "stage2": resolution(64, 64),
            "stage3": resolution(64, 112),
            "stage3_content": resolution(64, 64),
        },
        "enhancer": { "architecture": "tiny", "unet": { "dim": 32, "dim_mult": [1, 1, 1, 1] } },
    });
    edit(&mut dimensions);
    let mut manifest = edited("/preset", Some(json!("toy-world.v2_1")));
    manifest["preset_dimensions"] = dimensions;
    manifest
}

#[test]
fn custom_preset_names_and_their_dimensions_are_accepted() {
    let manifest = with_dimensions(|_| {});
    assert!(schema_accepts(&manifest));
    let dir = set_dir(&manifest);
    let set = ModelSet::open(dir.path()).expect("a custom preset opens");
    check_set(&set).expect("follows roles.json");
    let m = &set.manifest;
    assert_eq!(m.preset.as_str(), "toy-world.v2_1");
    assert_eq!(m.preset.to_string(), "toy-world.v2_1");
    assert!(!m.preset.is_builtin());
    let dimensions = m.preset_dimensions.as_ref().expect("dimensions parsed");
    assert_eq!(dimensions.unet["block_out_channels"], json!([8, 8, 8, 8]));
    assert_eq!(dimensions.resolutions.stage3.to_string(), "64x112");
    assert_eq!(dimensions.enhancer.architecture, "tiny");
    assert_eq!(dimensions.stage2_padding, None);
    // Written back, the manifest keeps the name and the dimensions and still follows the schema.
    let round_trip = serde_json::to_value(m).expect("serialize");
    assert!(schema_accepts(&round_trip));
    assert_eq!(round_trip["preset"], json!("toy-world.v2_1"));
    assert_eq!(
        round_trip["preset_dimensions"],
        manifest["preset_dimensions"]
    );

    // A set whose stage-2 convolutions wrap (the toy world's) says so, and keeps saying it.
    let wrapping = with_dimensions(|d| d["stage2_padding"] = json!("circular"));
    assert!(schema_accepts(&wrapping));
    let dir = set_dir(&wrapping);
    let set = ModelSet::open(dir.path()).expect("a wrapping set opens");
    let dimensions = set.manifest.preset_dimensions.as_ref().expect("dimensions");
    assert_eq!(dimensions.stage2_padding, Some(Stage2Padding::Circular));
    let round_trip = serde_json::to_value(&set.manifest).expect("serialize");
    assert_eq!(
        round_trip["preset_dimensions"],
        wrapping["preset_dimensions"]
    );

    // The built-in names are presets like any other; a manifest without dimensions still opens.
    assert_eq!("full-random".parse::<Preset>(), Ok(Preset::FULL_RANDOM));
    assert!(Preset::TINY.is_builtin());
    let set = ModelSet::open(fixture_dir()).expect("opens");
    assert_eq!(set.manifest.preset, Preset::TINY);
    assert!(set.manifest.preset_dimensions.is_none());
    let longest = "a".repeat(64);
    assert_eq!(
        longest.parse::<Preset>().map(|p| p.to_string()),
        Ok(longest.clone())
    );
    assert!(schema_accepts(&edited("/preset", Some(json!(longest)))));
}

#[test]
fn bad_preset_names_are_refused_by_schema_and_engine_with_the_rule() {
    let too_long = "a".repeat(65);
    for name in [
        "",
        "a/b",
        "../x",
        "Tiny",
        "-x",
        ".x",
        "toy world",
        "toy\n",
        "tøy",
        too_long.as_str(),
    ] {
        let manifest = edited("/preset", Some(json!(name)));
        assert!(!schema_accepts(&manifest), "schema accepts {name:?}");
        let dir = set_dir(&manifest);
        let err = ModelSet::open(dir.path()).expect_err(name).to_string();
        for fragment in [
            "manifest.json",
            "invalid field `preset`",
            "1 to 64 characters from a-z, 0-9, `.`, `_` and `-`, starting with a letter or a digit",
            &format!("found {name:?}"),
        ] {
            assert!(
                err.contains(fragment),
                "{name:?}: `{fragment}` not in: {err}"
            );
        }
        let parsed = name.parse::<Preset>().expect_err(name).to_string();
        assert!(parsed.contains("invalid field `preset`"), "{parsed}");
    }
    let not_a_string = edited("/preset", Some(json!(3)));
    assert!(!schema_accepts(&not_a_string));
    let dir = set_dir(&not_a_string);
    assert!(ModelSet::open(dir.path()).is_err());
}

#[test]
fn preset_dimensions_must_agree_with_the_pipeline() {
    let manifest =
        with_dimensions(|d| d["resolutions"]["stage3"] = json!({ "height": 80, "width": 128 }));
    // The schema cannot compare two fields: the engine does.
    assert!(schema_accepts(&manifest));
    let dir = set_dir(&manifest);
    let err = ModelSet::open(dir.path())
        .expect_err("mismatch")
        .to_string();
    for fragment in [
        "preset_dimensions.resolutions.stage3",
        "the pipeline's stage3 size 64x112",
        "found 80x128",
    ] {
        assert!(err.contains(fragment), "`{fragment}` not in: {err}");
    }

    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "nested keyword argument",
            with_dimensions(|d| d["unet"]["layers"] = json!({ "nested": 1 })),
            &["preset_dimensions.unet.layers", "a list of numbers"],
        ),
        (
            "zero size",
            with_dimensions(|d| d["merger_head_dim"] = json!(0)),
            &["preset_dimensions.merger_head_dim", "at least 1", "found 0"],
        ),
        (
            "unknown dimension",
            with_dimensions(|d| d["depth"] = json!(3)),
            &["unknown field `depth`"],
        ),
        (
            "unknown padding",
            with_dimensions(|d| d["stage2_padding"] = json!("reflect")),
            &[
                "preset_dimensions.stage2_padding",
                "unknown variant `reflect`, expected `zeros` or `circular`",
            ],
        ),
        (
            "missing enhancer",
            with_dimensions(|d| {
                d.as_object_mut().expect("object").remove("enhancer");
            }),
            &["missing field `enhancer`"],
        ),
    ];
    for (name, manifest, expected) in cases {
        assert!(!schema_accepts(&manifest), "schema accepts {name}");
        let dir = set_dir(&manifest);
        let err = ModelSet::open(dir.path()).expect_err(name).to_string();
        for fragment in expected {
            assert!(err.contains(fragment), "{name}: `{fragment}` not in: {err}");
        }
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

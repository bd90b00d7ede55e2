//! The `st2v` binary: `doctor --json` fields, `models inspect`, and the bad-input paths (each a
//! clear message naming the file or flag and a non-zero exit status). Graphs come from
//! tests/fixtures/ (written by tests/fixtures/make_fixtures.py).

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use assert_cmd::Command;
use predicates::str::contains;
use serde_json::Value;

fn st2v() -> Command {
    let mut cmd = Command::cargo_bin("st2v").expect("binary built");
    // The tests choose the library and model set themselves.
    cmd.env_remove("ORT_DYLIB_PATH")
        .env_remove("ST2V_MODELS")
        .env_remove("ST2V_EP");
    cmd
}

fn fixture_set() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/set")
}

/// A copy of the fixture set; `edit` may change files in it before use.
fn copied_set(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(fixture_set()).expect("fixture dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    edit(dir.path());
    dir
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_string(&manifest).expect("serialize")).expect("write");
}

#[test]
fn help_teaches_with_examples() {
    st2v()
        .arg("--help")
        .assert()
        .success()
        .stdout(contains("st2v generate --prompt"))
        .stdout(contains("tensorrt,cuda,cpu"))
        .stdout(contains("Exit status"))
        .stdout(contains("130 interrupted"));
    st2v()
        .args(["generate", "--help"])
        .assert()
        .success()
        .stdout(contains("--guidance-scale"));
}

#[test]
fn doctor_json_has_stable_fields() {
    let output = st2v()
        .args(["doctor", "--json", "--models"])
        .arg(fixture_set())
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(report["ok"], true);
    let ort = &report["onnxruntime"];
    assert_eq!(ort["loaded"], true);
    assert!(ort["version"].as_str().expect("version").starts_with("1."));
    assert!(Path::new(ort["path"].as_str().expect("path")).exists());
    assert!(
        ort["source"].is_string() && ort["build_info"].is_string() && ort["searched"].is_array()
    );
    let providers = report["providers"].as_array().expect("providers");
    let cpu = providers
        .iter()
        .find(|p| p["name"] == "cpu")
        .expect("cpu listed");
    assert_eq!(cpu["compiled_in"], true);
    assert!(providers.iter().any(|p| p["name"] == "cuda"));
    assert!(report["cpu"]["logical_cores"].as_u64().expect("cores") >= 1);
    assert!(report["gpu"]["nvidia_smi"].is_boolean() && report["gpu"]["devices"].is_array());
    let set = &report["model_set"];
    assert_eq!(set["manifest_ok"], true);
    assert_eq!(set["name"], "fixture");
    assert_eq!(set["tokenizers_ok"], true);
    let graphs = set["graphs"].as_array().expect("graphs");
    assert_eq!(graphs.len(), 4);
    for graph in graphs {
        assert_eq!(graph["ok"], true, "{graph}");
        assert_eq!(graph["provider"], "cpu");
    }
}

#[test]
fn doctor_reports_a_missing_model_set_and_fails() {
    let output = st2v()
        .args(["doctor", "--json", "--models", "/no/such/set"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(report["ok"], false);
    assert_eq!(report["onnxruntime"]["loaded"], true);
    assert!(report["model_set"]["error"]
        .as_str()
        .expect("error")
        .contains("/no/such/set"));
}

#[test]
fn doctor_reports_an_unusable_library() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"not a library").expect("write");
    let output = st2v()
        .args(["doctor", "--json", "--ort-lib"])
        .arg(&fake)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let ort = &report["onnxruntime"];
    assert_eq!(ort["loaded"], false);
    let error = ort["error"].as_str().expect("error");
    assert!(error.contains(&fake.display().to_string()), "{error}");
    assert!(error.contains("scripts/setup.sh"), "{error}");
    assert_eq!(ort["searched"][0]["source"], "flag");
}

#[test]
fn models_inspect_summarises_and_verifies() {
    st2v()
        .args(["models", "inspect", "--verify"])
        .arg(fixture_set())
        .assert()
        .success()
        .stdout(contains("input_ids: int64[batch, 77]"))
        .stdout(contains("4 files match the manifest"))
        .stdout(contains("stage 2: ddim 50 steps"));
    let output = st2v()
        .args(["models", "inspect", "--json"])
        .arg(fixture_set())
        .output()
        .expect("runs");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["ok"], true);
    assert_eq!(report["manifest"]["schema_version"], 1);
    assert_eq!(report["graphs"].as_array().expect("graphs").len(), 4);
    assert!(report["hashes"].is_null());
}

#[test]
fn hash_mismatch_names_the_file() {
    let set = copied_set(|dir| {
        let graph = dir.join("vae_decoder.onnx");
        let mut bytes = std::fs::read(&graph).expect("read");
        bytes.extend_from_slice(b"tampered");
        std::fs::write(&graph, bytes).expect("write");
    });
    st2v()
        .args(["models", "inspect", "--verify"])
        .arg(set.path())
        .assert()
        .code(2)
        .stderr(contains("vae_decoder.onnx has sha256"))
        .stderr(contains("the manifest says"));
}

#[test]
fn graph_differing_from_the_manifest_is_named_with_both_signatures() {
    let set = copied_set(|dir| {
        let bad = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/bad/text_encoder_int32.onnx");
        std::fs::copy(bad, dir.join("text_encoder.onnx")).expect("copy");
    });
    st2v()
        .args(["models", "inspect"])
        .arg(set.path())
        .assert()
        .code(2)
        .stderr(contains(
            "text_encoder.onnx) does not match its manifest entry",
        ))
        .stderr(contains("input_ids: int64[batch, 77]"))
        .stderr(contains("input_ids: int32[batch, 77]"));
}

#[test]
fn unknown_schema_version_asks_for_a_re_export() {
    let set = copied_set(|dir| edit_manifest(dir, |m| m["schema_version"] = Value::from(7)));
    st2v()
        .args(["models", "inspect"])
        .arg(set.path())
        .assert()
        .code(2)
        .stderr(contains("manifest.json: unknown manifest schema_version 7"))
        .stderr(contains("reads version 1"));
}

#[test]
fn missing_model_directory_is_named() {
    st2v()
        .args(["models", "inspect", "/no/such/set"])
        .assert()
        .code(2)
        .stderr(contains("/no/such/set does not exist"));
}

#[test]
fn unknown_provider_is_a_usage_error() {
    st2v()
        .args(["models", "inspect", "--ep", "cuda,rocm"])
        .arg(fixture_set())
        .assert()
        .code(2)
        .stderr(contains("invalid --ep value `cuda,rocm`"))
        .stderr(contains("expected one of cpu, cuda, tensorrt"));
}

#[test]
fn cuda_graphs_on_the_cpu_provider_are_refused() {
    let out = tempfile::tempdir().unwrap();
    st2v()
        .args(["generate", "--prompt", "a cat", "--cuda-graph", "--out"])
        .arg(out.path().join("cat.gif"))
        .arg("--models")
        .arg(fixture_set())
        .assert()
        .code(2)
        .stderr(contains("--cuda-graph"))
        .stderr(contains("a CUDA or TensorRT provider in --ep"));
    assert!(!out.path().join("cat.gif").exists());
}

#[test]
fn cuda_on_a_cpu_only_runtime_is_refused_not_silently_replaced() {
    st2v()
        .args(["models", "inspect", "--ep", "cuda"])
        .arg(fixture_set())
        .assert()
        .code(3)
        .stderr(contains(
            "execution provider cuda was requested but cannot be used",
        ))
        .stderr(contains("hint:"));
    // An explicit fallback list falls back and says so.
    st2v()
        .args(["models", "inspect", "--ep", "cuda,cpu"])
        .arg(fixture_set())
        .assert()
        .success()
        .stdout(contains("ok on cpu (fell back from cuda)"))
        .stderr(contains("falling back to cpu"));
}

/// A shared library that exports `OrtGetApiBase` and claims ONNX Runtime 1.20.0.
fn old_runtime(dir: &Path) -> PathBuf {
    let source = dir.join("fake_ort.c");
    std::fs::write(
        &source,
        "typedef struct { const void *(*get_api)(unsigned); const char *(*version)(void); } Base;\n\
         static const void *get_api(unsigned v) { (void)v; return 0; }\n\
         static const char *version(void) { return \"1.20.0\"; }\n\
         static const Base base = { get_api, version };\n\
         const Base *OrtGetApiBase(void) { return &base; }\n",
    )
    .expect("write C source");
    let library = dir.join("libonnxruntime.so.1.20.0");
    let status = Process::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("a C compiler (cc) is installed by scripts/setup.sh");
    assert!(status.success(), "cc failed");
    library
}

#[test]
fn too_old_onnx_runtime_is_rejected_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let library = old_runtime(dir.path());
    st2v()
        .args(["models", "inspect"])
        .arg(fixture_set())
        .arg("--ort-lib")
        .arg(&library)
        .assert()
        .code(3)
        .stderr(contains("version 1.20.0 is older than 1.31"))
        .stderr(contains(library.display().to_string()))
        .stderr(contains("fix: run `scripts/setup.sh`"));
}

#[test]
fn eval_names_a_missing_video_and_a_bad_metric_before_loading_anything() {
    st2v()
        .args(["eval", "missing.mp4", "--metrics", "scuts"])
        .assert()
        .code(2)
        .stderr(contains("VIDEO"))
        .stderr(contains("missing.mp4"));
    st2v()
        .args(["eval", "missing.mp4", "--metrics", "scuts,ssim"])
        .assert()
        .code(2)
        .stderr(contains("--metrics"))
        .stderr(contains("ssim"));
}

#[test]
fn a_manifest_cannot_name_files_outside_its_directory() {
    for file in ["../../etc/passwd", "/etc/passwd", "sub/../../x.onnx"] {
        let set = copied_set(|dir| {
            edit_manifest(dir, |m| {
                m["graphs"]["vae_decoder"]["file"] = Value::from(file)
            })
        });
        st2v()
            .args(["models", "inspect"])
            .arg(set.path())
            .assert()
            .code(2)
            .stderr(contains("graphs.vae_decoder.file"))
            .stderr(contains("inside the model set's directory"));
    }
}

#[test]
fn a_manifest_type_error_names_its_json_path() {
    let set = copied_set(|dir| {
        edit_manifest(dir, |m| {
            m["pipeline"]["stage2"]["chunk_frames"] = Value::from("sixteen")
        })
    });
    st2v()
        .args(["models", "inspect"])
        .arg(set.path())
        .assert()
        .code(2)
        .stderr(contains("pipeline.stage2.chunk_frames"));
}

#[test]
fn a_graph_that_fails_to_load_names_its_file_and_the_check_to_run() {
    let set = copied_set(|dir| {
        std::fs::write(dir.join("vae_decoder.onnx"), b"not an onnx graph").expect("write");
    });
    st2v()
        .args(["models", "inspect"])
        .arg(set.path())
        .assert()
        .failure()
        .stderr(contains("vae_decoder.onnx"))
        .stderr(contains("--verify"));
}

#[test]
fn serve_pairs_the_cluster_flags_queue_and_store() {
    let data = tempfile::tempdir().unwrap();
    let serve = |extra: &[&str]| {
        let mut cmd = st2v();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--models"])
            .arg(fixture_set())
            .arg("--data")
            .arg(data.path().join("data"))
            .args(extra);
        cmd
    };
    serve(&["--queue", "redis://127.0.0.1:1"])
        .assert()
        .failure()
        .stderr(contains(
            "--queue redis://... needs --store DIR|s3://BUCKET[/PREFIX]",
        ));
    serve(&["--store", "s3://videos"])
        .assert()
        .failure()
        .stderr(contains("--store: only for a replica of a cluster"));
    serve(&["--queue", "redis://127.0.0.1:1", "--store", "gs://videos"])
        .assert()
        .failure()
        .stderr(contains(
            "--store gs://videos: expected a directory or s3://BUCKET[/PREFIX]",
        ));
    serve(&["--queue", "redis://127.0.0.1:1", "--store"])
        .arg(data.path().join("store"))
        .assert()
        .failure()
        .stderr(contains("--queue: redis"));
    // Nothing was started: no data directory.
    assert!(!data.path().join("data").exists());
}

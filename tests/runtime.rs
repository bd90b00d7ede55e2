//! ONNX Runtime loading, execution-provider selection, signature checks and the role wrappers,
//! against the closed-form graphs in tests/fixtures/ (written by tests/fixtures/make_fixtures.py;
//! each graph's formula is in its builder's docstring there).
//!
//! The library is found by the engine's own discovery (the `runtime/` symlink scripts/setup.sh
//! makes). This machine's ONNX Runtime is the CPU wheel, so CUDA and TensorRT must fail clearly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array, Array2, Array3, Array4, Array5};
use streamingt2v::manifest::{DType, ModelSet, Precision};
use streamingt2v::models::onnx::{OnnxTextEncoder, OnnxVaeDecoder, OnnxVaeEncoder, OnnxVideoUnet};
use streamingt2v::models::{
    ApmResampler, Cam, CamCondEncoder, ImageEncoder, LoadError, ModelError, ModelLoader, Role,
    StreamingModels, StreamingUnet, TextEncoder, VaeDecoder, VaeEncoder, VideoUnet,
};
use streamingt2v::runtime::{
    EpConfig, OrtRuntime, Placement, Provider, RuntimeError, SessionFactory,
};
use streamingt2v::tokenizer::ClipTokenizer;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn runtime() -> Arc<OrtRuntime> {
    OrtRuntime::load(None).expect("ONNX Runtime found by discovery (run scripts/setup.sh)")
}

fn fixture_set() -> ModelSet {
    ModelSet::open(fixtures().join("set")).expect("fixture set opens")
}

fn factory(ep: &str) -> SessionFactory {
    let mut config = EpConfig::cpu();
    config.placement = Placement::parse(ep, &Role::names()).expect("valid --ep");
    SessionFactory::new(runtime(), config)
}

/// A copy of the fixture set in a temp dir with `role`'s graph file replaced by `graph`.
fn set_with_graph(role: Role, graph: &Path) -> (tempfile::TempDir, ModelSet) {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(fixtures().join("set")).expect("fixture dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    std::fs::copy(graph, dir.path().join(format!("{role}.onnx"))).expect("copy graph");
    let set = ModelSet::open(dir.path()).expect("copied set opens");
    (dir, set)
}

/// Same shape and every element within 1e-5.
fn assert_close<D: ndarray::Dimension>(actual: &Array<f32, D>, expected: &Array<f32, D>) {
    assert_eq!(actual.shape(), expected.shape());
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() <= 1e-5, "{a} != {e}");
    }
}

#[test]
fn discovery_loads_a_recent_onnx_runtime() {
    let runtime = runtime();
    let library = runtime.library();
    assert!(library.path.is_file(), "{}", library.path.display());
    let minor: u32 = library
        .version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .expect("version like 1.31.1");
    assert!(minor >= 31, "version {}", library.version);
    assert!(runtime.available_providers().contains(&Provider::Cpu));
}

#[test]
fn text_encoder_runs_with_any_batch() {
    let set = fixture_set();
    let factory = factory("cpu");
    let loader = ModelLoader::new(&set, &factory);
    let mut encoder =
        OnnxTextEncoder::new(loader.open(Role::TextEncoder).expect("opens")).expect("role");
    assert_eq!(encoder.graph().placement().provider, Provider::Cpu);
    for batch in [1, 2, 3] {
        let ids = Array2::from_shape_fn((batch, 77), |(b, t)| (b * 100 + t) as i64);
        let hidden: Array3<f32> = encoder.encode(&ids).expect("runs");
        assert_eq!(hidden.shape(), [batch, 77, 8]);
        // last_hidden_state[b, t, d] = input_ids[b, t] * (d + 1)
        for ((b, t, d), value) in hidden.indexed_iter() {
            assert_eq!(*value, ids[[b, t]] as f32 * (d + 1) as f32);
        }
    }
}

#[test]
fn video_unet_binds_sample_timestep_and_context_by_name() {
    let set = fixture_set();
    let factory = factory("cpu");
    let mut unet = OnnxVideoUnet::new(
        ModelLoader::new(&set, &factory)
            .open(Role::Stage1Unet)
            .expect("opens"),
    )
    .expect("role");
    let sample = Array5::from_shape_fn((2, 4, 16, 8, 8), |(b, c, f, h, w)| {
        (b + c + f + h + w) as f32 * 0.01
    });
    let context = Array3::from_shape_fn((2, 77, 8), |(b, _, _)| b as f32 + 0.5);
    let out = unet.run(&sample, &[3, 7], &context).expect("runs");
    // noise_pred[b] = sample[b] * timestep[b] + mean(context[b])
    let expected = Array::from_shape_fn(sample.raw_dim(), |(b, c, f, h, w)| {
        sample[[b, c, f, h, w]] * [3.0, 7.0][b] + (b as f32 + 0.5)
    });
    assert_close(&out, &expected);
}

#[test]
fn vae_wrappers_return_their_outputs_in_contract_order() {
    let set = fixture_set();
    let factory = factory("cpu");
    let loader = ModelLoader::new(&set, &factory);
    let mut decoder =
        OnnxVaeDecoder::new(loader.open(Role::VaeDecoder).expect("opens")).expect("role");
    let latents = Array4::from_shape_fn((3, 4, 8, 8), |(n, c, h, w)| {
        (n * 4 + c) as f32 + (h * w) as f32
    });
    let images = decoder.decode(&latents).expect("runs");
    // images = latents[:, :3] * 0.5
    assert_close(
        &images,
        &latents
            .slice(ndarray::s![.., ..3, .., ..])
            .mapv(|v| v * 0.5),
    );

    let mut encoder =
        OnnxVaeEncoder::new(loader.open(Role::VaeEncoder).expect("opens")).expect("role");
    let moments = encoder.encode(&images).expect("runs");
    // mean = images + 1, logvar = -images
    assert_close(&moments.mean, &images.mapv(|v| v + 1.0));
    assert_close(&moments.logvar, &images.mapv(|v| -v));
}

#[test]
fn bad_input_shapes_name_the_input() {
    let set = fixture_set();
    let factory = factory("cpu");
    let mut unet = OnnxVideoUnet::new(
        ModelLoader::new(&set, &factory)
            .open(Role::Stage1Unet)
            .expect("opens"),
    )
    .expect("role");
    let context = Array3::zeros((2, 77, 8));
    let wrong_frames = Array5::zeros((2, 4, 12, 8, 8));
    match unet.run(&wrong_frames, &[1, 1], &context) {
        Err(ModelError::InputShape {
            input,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(input, "sample");
            assert_eq!(expected, "[batch, 4, 16, 8, 8]");
            assert_eq!(actual, [2, 4, 12, 8, 8]);
        }
        other => panic!("expected an input shape error, got {other:?}"),
    }
    // The batch axis must agree across inputs: 2 samples, 3 timesteps.
    let sample = Array5::zeros((2, 4, 16, 8, 8));
    let err = unet
        .run(&sample, &[1, 1, 1], &context)
        .expect_err("batch mismatch");
    assert!(
        err.to_string().contains("`batch` = 2 as in input `sample`"),
        "{err}"
    );
}

#[test]
fn wrapper_refuses_a_session_of_another_role() {
    let set = fixture_set();
    let factory = factory("cpu");
    let graph = ModelLoader::new(&set, &factory)
        .open(Role::VaeDecoder)
        .expect("opens");
    let err = OnnxTextEncoder::new(graph)
        .expect_err("wrong role")
        .to_string();
    assert!(
        err.contains("`vae_decoder` cannot serve as OnnxTextEncoder"),
        "{err}"
    );
}

#[test]
fn graph_whose_input_type_differs_from_the_manifest_is_rejected() {
    let (_dir, set) = set_with_graph(
        Role::TextEncoder,
        &fixtures().join("bad/text_encoder_int32.onnx"),
    );
    let factory = factory("cpu");
    let err = ModelLoader::new(&set, &factory)
        .open(Role::TextEncoder)
        .expect_err("int32 ids");
    assert!(matches!(err, LoadError::Signature { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("graph `text_encoder`"), "{text}");
    assert!(text.contains("element type int64 != int32"), "{text}");
    assert!(text.contains("input_ids: int64[batch, 77]"), "{text}");
    assert!(text.contains("input_ids: int32[batch, 77]"), "{text}");
}

#[test]
fn graph_with_a_fixed_batch_is_rejected() {
    let (_dir, set) = set_with_graph(
        Role::TextEncoder,
        &fixtures().join("bad/text_encoder_fixed_batch.onnx"),
    );
    let factory = factory("cpu");
    let err = ModelLoader::new(&set, &factory)
        .open(Role::TextEncoder)
        .expect_err("fixed batch");
    let text = err.to_string();
    assert!(
        text.contains("axis 0 is fixed to 1, expected the dynamic axis `batch`"),
        "{text}"
    );
}

#[test]
fn float16_interfaces_are_refused_at_load() {
    let set = fixture_set();
    let mut manifest = set.manifest.clone();
    let entry = manifest.graphs.get_mut("vae_decoder").expect("entry");
    entry.precision = Precision::Fp16;
    entry.inputs[0].dtype = DType::Float16;
    let set = ModelSet {
        dir: set.dir.clone(),
        manifest,
    };
    let factory = factory("cpu");
    let err = ModelLoader::new(&set, &factory)
        .open(Role::VaeDecoder)
        .expect_err("float16 input");
    assert!(matches!(err, LoadError::HalfPrecisionIo { .. }), "{err:?}");
    assert!(
        err.to_string().contains("input `latents` is float16"),
        "{err}"
    );
}

#[test]
fn missing_graph_is_named_before_anything_opens() {
    let set = fixture_set();
    let factory = factory("cpu");
    let err = ModelLoader::new(&set, &factory)
        .streaming(true)
        .expect_err("no image encoder");
    let text = err.to_string();
    assert!(text.contains("no `image_encoder` graph"), "{text}");
    assert!(text.contains("stages 1 and 2"), "{text}");
    assert!(
        text.contains("graphs present: stage1_unet, text_encoder"),
        "{text}"
    );
}

#[test]
fn requesting_cuda_on_a_cpu_build_is_a_clear_error() {
    let set = fixture_set();
    for ep in ["cuda", "tensorrt"] {
        let factory = factory(ep);
        let err = ModelLoader::new(&set, &factory)
            .open(Role::TextEncoder)
            .expect_err("no GPU build");
        match &err {
            LoadError::Runtime(RuntimeError::ProviderUnavailable {
                provider,
                message,
                hint,
                ..
            }) => {
                assert_eq!(provider.name(), ep);
                assert!(!message.is_empty());
                assert!(
                    hint.contains("onnxruntime-gpu") || hint.contains("is missing"),
                    "{hint}"
                );
            }
            other => panic!("{ep}: expected ProviderUnavailable, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&format!("execution provider {ep} was requested")),
            "{text}"
        );
    }
}

#[test]
fn fallback_list_falls_back_and_reports_it() {
    let set = fixture_set();
    let factory = factory("tensorrt,cuda,cpu");
    let graph = ModelLoader::new(&set, &factory)
        .open(Role::TextEncoder)
        .expect("falls back to CPU");
    let placement = graph.placement();
    assert_eq!(placement.provider, Provider::Cpu);
    let tried: Vec<Provider> = placement.fallbacks.iter().map(|a| a.provider).collect();
    assert_eq!(tried, [Provider::TensorRt, Provider::Cuda]);
    assert!(placement.fallbacks.iter().all(|a| !a.message.is_empty()));
}

#[test]
fn per_graph_placement_applies_to_its_role_only() {
    let set = fixture_set();
    let factory = factory("cpu,stage1_unet=cuda");
    let loader = ModelLoader::new(&set, &factory);
    assert!(loader.open(Role::TextEncoder).is_ok());
    let err = loader
        .open(Role::Stage1Unet)
        .expect_err("cuda for the unet");
    assert!(err.to_string().contains("stage1_unet.onnx"), "{err}");
}

/// The committed tiny model set (models/tiny, written by export/): every stage loads, and the
/// stage-2 chain CAM -> UNet treats each batch entry independently (CFG batches of 3 give the
/// same result per entry as a batch of 1), which checks the residuals' (b f) layout.
#[test]
fn tiny_set_stage2_chain_is_batch_independent() {
    let set = ModelSet::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny"))
        .expect("tiny set");
    let factory = factory("cpu");
    let loader = ModelLoader::new(&set, &factory);
    let mut m = loader.streaming(true).expect("stages 1 and 2 load");
    assert_eq!(m.placements().len(), 8);
    assert_eq!(
        loader.enhancer().expect("stage 3 loads").placements().len(),
        4
    );

    let ids = Array2::from_shape_fn((3, 77), |(b, t)| {
        if t == 0 {
            49406
        } else {
            (b * 7 + t) as i64 % 400
        }
    });
    let text = m.text_encoder.encode(&ids).expect("text");
    let images = Array4::from_shape_fn((3, 3, 64, 64), |(n, c, h, w)| {
        ((n + c + h * w) % 17) as f32 / 8.5 - 1.0
    });
    let tokens = m
        .apm_resampler
        .tokens(&m.image_encoder.encode(&images).expect("embeds"))
        .expect("tokens");
    let context =
        ndarray::concatenate(ndarray::Axis(1), &[text.view(), tokens.view()]).expect("93 tokens");
    let cond = m
        .cam_cond_encoder
        .encode(
            &images
                .slice(ndarray::s![..1, .., .., ..])
                .broadcast((8, 3, 64, 64))
                .expect("8 frames")
                .to_owned(),
        )
        .expect("cond");
    let sample = Array5::from_shape_fn((3, 4, 16, 8, 8), |(b, c, f, h, w)| {
        ((b * 31 + c * 7 + f * 3 + h + w) % 13) as f32 / 6.5 - 1.0
    });
    let steps = [999, 500, 1];

    let run = |m: &mut StreamingModels, range: std::ops::Range<usize>| {
        let rows = ndarray::s![range.clone(), .., .., .., ..];
        let sample = sample.slice(rows).to_owned();
        let first = sample.slice(ndarray::s![.., .., ..8, .., ..]).to_owned();
        let text = text.slice(ndarray::s![range.clone(), .., ..]).to_owned();
        let context = context.slice(ndarray::s![range.clone(), .., ..]).to_owned();
        let residuals = m
            .cam
            .run(&first, &steps[range.clone()], &text, &cond)
            .expect("cam");
        assert_eq!(residuals.down.len(), 12);
        assert_eq!(residuals.mid.shape()[0], range.len() * 8);
        m.unet
            .run(&sample, &steps[range], &context, &residuals)
            .expect("unet")
    };
    let batched = run(&mut m, 0..3);
    assert_eq!(batched.shape(), [3, 4, 16, 8, 8]);
    assert!(batched.iter().all(|v| v.is_finite()));
    let single = run(&mut m, 1..2);
    assert_close(
        &batched.slice(ndarray::s![1..2, .., .., .., ..]).to_owned(),
        &single,
    );
}

#[test]
fn fixture_tokenizer_frames_prompts_with_the_manifest_ids() {
    let set = fixture_set();
    let tokenizer = ClipTokenizer::open(&set, &set.manifest.tokenizers.text).expect("loads");
    let tokens = tokenizer.encode("A cat  RUNS fast").expect("encodes");
    assert_eq!(tokens.ids.len(), 77);
    assert_eq!(tokens.ids[..6], [5, 1, 2, 3, 4, 6]);
    assert!(tokens.ids[6..].iter().all(|&id| id == 0));
}

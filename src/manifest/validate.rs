//! Checks of a parsed manifest beyond its JSON structure (what the schema says plus what the
//! engine relies on), and streamed sha256 verification of the files it names.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{
    Dim, GraphEntry, KwArgs, Manifest, ManifestError, ModelSet, PipelineConfig, PresetDimensions,
    Resolution, TensorSpec, TokenizerEntry,
};

/// Bytes read per step when hashing; model files are gigabytes and must not be read whole.
const HASH_CHUNK: usize = 1 << 20;

/// Collects the first violation with the manifest path.
struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn fail(&self, field: String, expected: &str, found: impl ToString) -> ManifestError {
        ManifestError::Invalid {
            path: self.path.to_owned(),
            field,
            expected: expected.to_owned(),
            found: found.to_string(),
        }
    }

    fn ensure(
        &self,
        ok: bool,
        field: impl FnOnce() -> String,
        expected: &str,
        found: impl ToString,
    ) -> Result<(), ManifestError> {
        if ok {
            Ok(())
        } else {
            Err(self.fail(field(), expected, found))
        }
    }
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_axis_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Manifest {
    /// Checks what serde cannot: hashes, axis names and sizes, tokenizer limits and the pipeline
    /// geometry. `path` is only used in error messages.
    pub fn validate(&self, path: &Path) -> Result<(), ManifestError> {
        let check = Checker { path };
        check.ensure(
            !self.graphs.is_empty(),
            || String::from("graphs"),
            "at least one graph",
            "none",
        )?;
        for (role, graph) in &self.graphs {
            check_graph(&check, role, graph)?;
        }
        check_tokenizer(&check, "tokenizers.text", &self.tokenizers.text)?;
        if let Some(enhancer) = &self.tokenizers.enhancer_text {
            check_tokenizer(&check, "tokenizers.enhancer_text", enhancer)?;
        }
        check_pipeline(&check, &self.pipeline)?;
        if let Some(dimensions) = &self.preset_dimensions {
            check_dimensions(&check, dimensions, &self.pipeline)?;
        }
        Ok(())
    }
}

/// A file of the set: a relative path that stays inside the set's directory (no `..`, no
/// absolute path), so a manifest cannot make the engine read or hash files elsewhere.
fn check_inside(check: &Checker<'_>, field: &str, file: &str) -> Result<(), ManifestError> {
    let inside = !file.is_empty()
        && Path::new(file)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    check.ensure(
        inside,
        || field.to_owned(),
        "a relative path inside the model set's directory (no `..`, not absolute)",
        format!("{file:?}"),
    )
}

fn check_graph(check: &Checker<'_>, role: &str, graph: &GraphEntry) -> Result<(), ManifestError> {
    let field = |name: &str| format!("graphs.{role}.{name}");
    check_inside(check, &field("file"), &graph.file)?;
    for (index, data) in graph.external_data.iter().enumerate() {
        check_inside(
            check,
            &field(&format!("external_data[{index}].file")),
            &data.file,
        )?;
    }
    check.ensure(
        is_sha256(&graph.sha256),
        || field("sha256"),
        "64 lowercase hex digits",
        &graph.sha256,
    )?;
    for (index, data) in graph.external_data.iter().enumerate() {
        let name = format!("external_data[{index}].sha256");
        check.ensure(
            is_sha256(&data.sha256),
            || field(&name),
            "64 lowercase hex digits",
            &data.sha256,
        )?;
    }
    check.ensure(
        !graph.outputs.is_empty(),
        || field("outputs"),
        "at least one output",
        "none",
    )?;
    let tensors = graph
        .inputs
        .iter()
        .map(|t| ("inputs", t))
        .chain(graph.outputs.iter().map(|t| ("outputs", t)));
    for (side, tensor) in tensors {
        check_tensor(check, &field(side), tensor)?;
    }
    Ok(())
}

fn check_tensor(
    check: &Checker<'_>,
    field: &str,
    tensor: &TensorSpec,
) -> Result<(), ManifestError> {
    check.ensure(
        !tensor.name.is_empty(),
        || format!("{field}[].name"),
        "a tensor name",
        "\"\"",
    )?;
    for (axis, dim) in tensor.shape.iter().enumerate() {
        let ok = match dim {
            Dim::Fixed(n) => *n >= 1,
            Dim::Named(name) => is_axis_name(name),
        };
        let name = || format!("{field}.{}.shape[{axis}]", tensor.name);
        check.ensure(ok, name, "a size >= 1 or an axis name like `batch`", dim)?;
    }
    Ok(())
}

fn check_tokenizer(
    check: &Checker<'_>,
    field: &str,
    entry: &TokenizerEntry,
) -> Result<(), ManifestError> {
    check.ensure(
        entry.max_length >= 2,
        || format!("{field}.max_length"),
        "at least 2 (BOS and EOS)",
        entry.max_length,
    )?;
    check_inside(check, &format!("{field}.file"), &entry.file)
}

fn check_pipeline(check: &Checker<'_>, p: &PipelineConfig) -> Result<(), ManifestError> {
    let scale = p.vae_scale_factor;
    check.ensure(
        scale >= 1,
        || String::from("pipeline.vae_scale_factor"),
        "at least 1",
        scale,
    )?;
    let sizes = [
        ("stage1.height", p.stage1.height),
        ("stage1.width", p.stage1.width),
        ("stage2.height", p.stage2.height),
        ("stage2.width", p.stage2.width),
        ("stage3.height", p.stage3.height),
        ("stage3.width", p.stage3.width),
    ];
    let multiple = format!("a positive multiple of vae_scale_factor {scale}");
    for (name, size) in sizes {
        let ok = size > 0 && scale > 0 && size % scale == 0;
        check.ensure(ok, || format!("pipeline.{name}"), &multiple, size)?;
    }
    let steps = [
        ("stage1", p.stage1.num_inference_steps),
        ("stage2", p.stage2.num_inference_steps),
        ("stage3", p.stage3.num_inference_steps),
    ];
    for (stage, n) in steps {
        check.ensure(
            n >= 1,
            || format!("pipeline.{stage}.num_inference_steps"),
            "at least 1",
            n,
        )?;
    }
    let s2 = &p.stage2;
    let below_chunk = format!(
        "between 1 and chunk_frames - 1 = {}",
        s2.chunk_frames.saturating_sub(1)
    );
    let ok = s2.cond_frames >= 1 && s2.cond_frames < s2.chunk_frames;
    check.ensure(
        ok,
        || String::from("pipeline.stage2.cond_frames"),
        &below_chunk,
        s2.cond_frames,
    )?;
    let s3 = &p.stage3;
    let below_chunk = format!("below chunk_frames = {}", s3.chunk_frames);
    let ok = s3.overlap_frames < s3.chunk_frames;
    check.ensure(
        ok,
        || String::from("pipeline.stage3.overlap_frames"),
        &below_chunk,
        s3.overlap_frames,
    )?;
    let fits = format!("at most the frame size {}x{}", s3.height, s3.width);
    let ok = s3.content_height <= s3.height && s3.content_width <= s3.width;
    let found = format!("{}x{}", s3.content_height, s3.content_width);
    check.ensure(
        ok,
        || String::from("pipeline.stage3.content_height/content_width"),
        &fits,
        found,
    )?;
    let ok = (0.0..=1.0).contains(&s3.guide_rescale);
    check.ensure(
        ok,
        || String::from("pipeline.stage3.guide_rescale"),
        "between 0 and 1",
        s3.guide_rescale,
    )
}

/// What the schema allows as a constructor argument: a scalar or a flat list of scalars.
fn is_kwarg(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Array(items) => items
            .iter()
            .all(|item| matches!(item, Value::Bool(_) | Value::Number(_) | Value::String(_))),
        Value::Object(_) => false,
        _ => true,
    }
}

fn check_kwargs(check: &Checker<'_>, field: &str, kwargs: &KwArgs) -> Result<(), ManifestError> {
    for (key, value) in kwargs {
        check.ensure(
            is_kwarg(value),
            || format!("{field}.{key}"),
            "a number, string, boolean, null or a list of numbers, strings or booleans",
            value,
        )?;
    }
    Ok(())
}

/// The preset's dimensions: positive sizes, schema-shaped keyword arguments, and resolutions
/// that agree with the pipeline's (the engine runs the pipeline's).
fn check_dimensions(
    check: &Checker<'_>,
    d: &PresetDimensions,
    p: &PipelineConfig,
) -> Result<(), ManifestError> {
    let field = |name: &str| format!("preset_dimensions.{name}");
    let sizes = [
        ("image_embed_dim", d.image_embed_dim),
        ("merger_head_dim", d.merger_head_dim),
        ("merger_norm_groups", d.merger_norm_groups),
        ("resampler_inner_dim", d.resampler_inner_dim),
    ]
    .into_iter()
    .chain(
        d.cond_embedding_channels
            .iter()
            .map(|&c| ("cond_embedding_channels[]", c)),
    );
    for (name, size) in sizes {
        check.ensure(size >= 1, || field(name), "at least 1", size)?;
    }
    let kwargs = [
        ("text", Some(&d.text)),
        ("vision", Some(&d.vision)),
        ("unet", Some(&d.unet)),
        ("vae", Some(&d.vae)),
        ("enhancer.unet", d.enhancer.unet.as_ref()),
        ("enhancer.vae", d.enhancer.vae.as_ref()),
        ("enhancer.text", d.enhancer.text.as_ref()),
    ];
    for (name, args) in kwargs {
        if let Some(args) = args {
            check_kwargs(check, &field(name), args)?;
        }
    }
    check.ensure(
        !d.enhancer.architecture.is_empty(),
        || field("enhancer.architecture"),
        "an architecture name",
        "\"\"",
    )?;
    let r = &d.resolutions;
    let pairs = [
        ("stage1", r.stage1, p.stage1.height, p.stage1.width),
        ("stage2", r.stage2, p.stage2.height, p.stage2.width),
        ("stage3", r.stage3, p.stage3.height, p.stage3.width),
        (
            "stage3_content",
            r.stage3_content,
            p.stage3.content_height,
            p.stage3.content_width,
        ),
    ];
    for (stage, resolution, height, width) in pairs {
        let pipeline = Resolution { height, width };
        check.ensure(
            resolution == pipeline,
            || field(&format!("resolutions.{stage}")),
            &format!("the pipeline's {stage} size {pipeline}"),
            resolution,
        )?;
    }
    Ok(())
}

/// One file whose hash was checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedFile {
    pub role: String,
    pub file: PathBuf,
    pub bytes: u64,
}

/// Streams a file through sha256: the hex digest and the byte count.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut reader = BufReader::with_capacity(HASH_CHUNK, File::open(path)?);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; HASH_CHUNK];
    let mut total = 0u64;
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        total += read as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

impl ModelSet {
    /// Checks the sha256 of every graph and external-data file; `on_file` is called before each
    /// file is hashed (for progress output).
    pub fn verify_hashes(
        &self,
        mut on_file: impl FnMut(&str, &Path),
    ) -> Result<Vec<VerifiedFile>, ManifestError> {
        let mut verified = Vec::new();
        for (role, graph) in &self.manifest.graphs {
            let files = std::iter::once((&graph.file, &graph.sha256))
                .chain(graph.external_data.iter().map(|e| (&e.file, &e.sha256)));
            for (file, expected) in files {
                let full = self.path_of(file);
                on_file(role, &full);
                let (actual, bytes) = sha256_file(&full).map_err(|source| ManifestError::Read {
                    path: full.clone(),
                    source,
                })?;
                if &actual != expected {
                    return Err(ManifestError::HashMismatch {
                        path: self.dir.join(super::MANIFEST_FILE),
                        role: role.clone(),
                        file: full,
                        expected: expected.clone(),
                        actual,
                    });
                }
                verified.push(VerifiedFile {
                    role: role.clone(),
                    file: full,
                    bytes,
                });
            }
        }
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_file_matches_the_known_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").expect("write");
        let (digest, bytes) = sha256_file(&path).expect("hash");
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(bytes, 3);
    }

    #[test]
    fn axis_names_follow_the_schema_pattern() {
        assert!(is_axis_name("batch"));
        assert!(is_axis_name("_n2"));
        assert!(!is_axis_name("Batch"));
        assert!(!is_axis_name("2n"));
        assert!(!is_axis_name(""));
    }
}

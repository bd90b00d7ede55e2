//! The model-set manifest (`manifest.json`), schema version 1.
//!
//! A model set is a directory holding ONNX graphs, tokenizer files and this manifest. `export/`
//! writes it; the engine reads it here. The one definition both sides test against is
//! `models/manifest.schema.json`; the per-role graph interfaces are in `models/roles.json`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod preset;
mod validate;

pub use preset::{
    EnhancerDimensions, InvalidPresetName, KwArgs, Preset, PresetDimensions, PresetResolutions,
    Resolution, Stage2Padding, PRESET_NAME_MAX, PRESET_NAME_RULE,
};
pub use validate::{sha256_file, VerifiedFile};

/// The manifest schema version this engine reads.
pub const SCHEMA_VERSION: u32 = 1;
/// File name of the manifest inside a model-set directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The JSON Schema, embedded so `st2v models inspect` can print it and tests can validate.
pub const SCHEMA_JSON: &str = include_str!("../models/manifest.schema.json");

/// Errors reading or validating a manifest. Each names the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("model set directory {path} does not exist or is not a directory")]
    MissingDir { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid manifest JSON: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Valid JSON whose value at `field` (a JSON path) has the wrong type or an unknown key.
    #[error("{path}: field `{field}`: {source}")]
    Structure {
        path: PathBuf,
        field: String,
        source: serde_json::Error,
    },
    #[error(
        "{path}: unknown manifest schema_version {found} (this engine reads version {expected}); \
         re-export the model set with this release's export/ scripts"
    )]
    UnknownVersion {
        path: PathBuf,
        found: serde_json::Value,
        expected: u32,
    },
    #[error("{path}: invalid field `{field}`: expected {expected}, found {found}")]
    Invalid {
        path: PathBuf,
        field: String,
        expected: String,
        found: String,
    },
    #[error("{path}: graph `{role}` file {file} is missing")]
    MissingFile {
        path: PathBuf,
        role: String,
        file: PathBuf,
    },
    #[error("{path}: tokenizer `{name}` file {file} is missing")]
    MissingTokenizer {
        path: PathBuf,
        name: String,
        file: PathBuf,
    },
    #[error(
        "{path}: graph `{role}` file {file} has sha256 {actual}, the manifest says {expected} \
         (the file changed after export, or the download is damaged)"
    )]
    HashMismatch {
        path: PathBuf,
        role: String,
        file: PathBuf,
        expected: String,
        actual: String,
    },
}

/// Tensor element types that appear in graph signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Float32,
    Float16,
    Int64,
    Int32,
    Bool,
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            DType::Float32 => "float32",
            DType::Float16 => "float16",
            DType::Int64 => "int64",
            DType::Int32 => "int32",
            DType::Bool => "bool",
        };
        f.write_str(s)
    }
}

/// One axis of a tensor shape: a fixed size or a named dynamic axis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(i64),
    Named(String),
}

impl Dim {
    /// Whether a concrete size fits this axis.
    pub fn accepts(&self, size: i64) -> bool {
        match self {
            Dim::Fixed(n) => *n == size,
            Dim::Named(_) => true,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Named(s) => f.write_str(s),
        }
    }
}

/// A named tensor of a graph signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.shape.iter().map(ToString::to_string).collect();
        write!(f, "{}: {}[{}]", self.name, self.dtype, dims.join(", "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Fp16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalData {
    pub file: String,
    pub sha256: String,
}

/// ONNX Runtime vs PyTorch error measured at export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parity {
    pub max_abs_err: f64,
    pub max_rel_err: f64,
    pub tolerance: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch_sizes: Vec<i64>,
}

/// One ONNX graph of the set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphEntry {
    pub file: String,
    pub sha256: String,
    pub precision: Precision,
    pub opset: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_data: Vec<ExternalData>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parity: Option<Parity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerEntry {
    pub file: String,
    pub max_length: usize,
    pub pad_id: u32,
    pub bos_id: u32,
    pub eos_id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokenizers {
    pub text: TokenizerEntry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhancer_text: Option<TokenizerEntry>,
}

/// Scheduler kind and its parameters, named as in diffusers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerEntry {
    #[serde(rename = "type")]
    pub kind: SchedulerKind,
    pub config: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    Ddim,
    DpmsolverMultistep,
    #[serde(rename = "dpmpp_2m_sde")]
    Dpmpp2mSde,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage1Config {
    pub scheduler: SchedulerEntry,
    pub num_inference_steps: usize,
    pub guidance_scale: f32,
    pub num_frames: usize,
    pub height: usize,
    pub width: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage2Config {
    pub scheduler: SchedulerEntry,
    pub num_inference_steps: usize,
    pub guidance_scale: f32,
    pub eta: f32,
    pub chunk_frames: usize,
    pub cond_frames: usize,
    pub height: usize,
    pub width: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage3Config {
    pub scheduler: SchedulerEntry,
    pub num_inference_steps: usize,
    pub guidance_scale: f32,
    pub guide_rescale: f32,
    pub chunk_frames: usize,
    pub overlap_frames: usize,
    pub noise_timestep: i64,
    /// Full enhancer frame size (content plus padding), e.g. 720x1280.
    pub height: usize,
    pub width: usize,
    /// Size the stage-2 frames are resized to before padding, e.g. 720x720.
    pub content_height: usize,
    pub content_width: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub vae_scaling_factor: f32,
    pub vae_scale_factor: usize,
    #[serde(default = "default_latent_channels")]
    pub latent_channels: usize,
    #[serde(default = "default_text_tokens")]
    pub text_tokens: usize,
    #[serde(default = "default_image_tokens")]
    pub image_tokens: usize,
    pub stage1: Stage1Config,
    pub stage2: Stage2Config,
    pub stage3: Stage3Config,
}

fn default_latent_channels() -> usize {
    4
}
fn default_text_tokens() -> usize {
    77
}
fn default_image_tokens() -> usize {
    16
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub export_tool: String,
    pub export_tool_version: String,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceFile>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub libraries: BTreeMap<String, String>,
}

/// The parsed `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    pub name: String,
    pub preset: Preset,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset_dimensions: Option<PresetDimensions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub graphs: BTreeMap<String, GraphEntry>,
    pub tokenizers: Tokenizers,
    pub pipeline: PipelineConfig,
    pub provenance: Provenance,
}

/// A manifest together with the directory it was read from.
#[derive(Debug, Clone)]
pub struct ModelSet {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Manifest {
    /// Parses manifest JSON text; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|source| ManifestError::Parse {
                path: path.to_owned(),
                source,
            })?;
        // Check the version before the structure, so an old or new manifest gets the clear
        // "re-export" message rather than a field-level parse error.
        let version = value.get("schema_version").cloned().unwrap_or_default();
        if version.as_u64() != Some(u64::from(SCHEMA_VERSION)) {
            return Err(ManifestError::UnknownVersion {
                path: path.to_owned(),
                found: version,
                expected: SCHEMA_VERSION,
            });
        }
        serde_path_to_error::deserialize(value).map_err(|err| ManifestError::Structure {
            path: path.to_owned(),
            field: err.path().to_string(),
            source: err.into_inner(),
        })
    }

    /// The graph entry of a role, if the set has one.
    pub fn graph(&self, role: &str) -> Option<&GraphEntry> {
        self.graphs.get(role)
    }
}

impl ModelSet {
    /// Reads `DIR/manifest.json`, validates it ([`Manifest::validate`]) and checks that every
    /// file it names exists. Hashes are checked separately ([`ModelSet::verify_hashes`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ManifestError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(ManifestError::MissingDir {
                path: dir.to_owned(),
            });
        }
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read {
            path: path.clone(),
            source,
        })?;
        let manifest = Manifest::from_json(&text, &path)?;
        manifest.validate(&path)?;
        let set = ModelSet {
            dir: dir.to_owned(),
            manifest,
        };
        set.check_files_exist()?;
        Ok(set)
    }

    /// Absolute path of a file named in the manifest.
    pub fn path_of(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    fn check_files_exist(&self) -> Result<(), ManifestError> {
        for (role, graph) in &self.manifest.graphs {
            let files =
                std::iter::once(&graph.file).chain(graph.external_data.iter().map(|e| &e.file));
            for file in files {
                let full = self.path_of(file);
                if !full.is_file() {
                    return Err(ManifestError::MissingFile {
                        path: self.manifest_path(),
                        role: role.clone(),
                        file: full,
                    });
                }
            }
        }
        let tokenizers = std::iter::once(("text", &self.manifest.tokenizers.text)).chain(
            self.manifest
                .tokenizers
                .enhancer_text
                .iter()
                .map(|t| ("enhancer_text", t)),
        );
        for (name, entry) in tokenizers {
            let full = self.path_of(&entry.file);
            if !full.is_file() {
                return Err(ManifestError::MissingTokenizer {
                    path: self.manifest_path(),
                    name: name.to_owned(),
                    file: full,
                });
            }
        }
        Ok(())
    }
}

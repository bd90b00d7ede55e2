//! Graph roles and their interface contract, `models/roles.json` (embedded at build time).
//!
//! The contract fixes each role's input and output names, element types and ranks; the manifest
//! adds concrete or named dimensions per graph. Export and engine test against the same file.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::Deserialize;

use super::session::LoadError;
use crate::manifest::{DType, GraphEntry, ModelSet, Precision, TensorSpec, MANIFEST_FILE};

/// The embedded `models/roles.json`.
pub const ROLES_JSON: &str = include_str!("../../models/roles.json");

/// One graph role of a model set (a key of `manifest.graphs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    TextEncoder,
    ImageEncoder,
    ApmResampler,
    CamCondEncoder,
    Cam,
    Unet,
    VaeDecoder,
    VaeEncoder,
    Stage1Unet,
    EnhancerTextEncoder,
    EnhancerUnet,
    EnhancerVaeEncoder,
    EnhancerVaeDecoder,
    /// CLIP text tower with projection: `st2v eval`'s CLIP score (no generation runs it).
    ClipTextEncoder,
    /// RAFT optical flow: `st2v eval --flow raft` (MAWE as the reference measures it).
    Raft,
}

impl Role {
    pub const ALL: [Role; 15] = [
        Role::TextEncoder,
        Role::ImageEncoder,
        Role::ApmResampler,
        Role::CamCondEncoder,
        Role::Cam,
        Role::Unet,
        Role::VaeDecoder,
        Role::VaeEncoder,
        Role::Stage1Unet,
        Role::EnhancerTextEncoder,
        Role::EnhancerUnet,
        Role::EnhancerVaeEncoder,
        Role::EnhancerVaeDecoder,
        Role::ClipTextEncoder,
        Role::Raft,
    ];

    /// The manifest / roles.json key.
    pub fn name(self) -> &'static str {
        match self {
            Role::TextEncoder => "text_encoder",
            Role::ImageEncoder => "image_encoder",
            Role::ApmResampler => "apm_resampler",
            Role::CamCondEncoder => "cam_cond_encoder",
            Role::Cam => "cam",
            Role::Unet => "unet",
            Role::VaeDecoder => "vae_decoder",
            Role::VaeEncoder => "vae_encoder",
            Role::Stage1Unet => "stage1_unet",
            Role::EnhancerTextEncoder => "enhancer_text_encoder",
            Role::EnhancerUnet => "enhancer_unet",
            Role::EnhancerVaeEncoder => "enhancer_vae_encoder",
            Role::EnhancerVaeDecoder => "enhancer_vae_decoder",
            Role::ClipTextEncoder => "clip_text_encoder",
            Role::Raft => "raft",
        }
    }

    /// Every role name, for `--ep role=...` keys and messages.
    pub fn names() -> Vec<&'static str> {
        Role::ALL.iter().map(|r| r.name()).collect()
    }

    /// This role's contract from the embedded roles.json.
    pub fn contract(self) -> &'static RoleContract {
        contracts().get(self)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown graph role `{s}`: expected one of {}",
                    Role::names().join(", ")
                )
            })
    }
}

/// One tensor of a role's interface: name, element type (of an fp32 graph) and rank.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TensorContract {
    pub name: String,
    pub dtype: DType,
    pub rank: usize,
}

impl fmt::Display for TensorContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} rank {}", self.name, self.dtype, self.rank)
    }
}

/// A role's inputs and outputs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleContract {
    pub inputs: Vec<TensorContract>,
    pub outputs: Vec<TensorContract>,
}

#[derive(Deserialize)]
struct RawContract {
    inputs: Vec<(String, DType, usize)>,
    outputs: Vec<(String, DType, usize)>,
}

fn to_tensors(raw: Vec<(String, DType, usize)>) -> Vec<TensorContract> {
    raw.into_iter()
        .map(|(name, dtype, rank)| TensorContract { name, dtype, rank })
        .collect()
}

/// All role contracts.
#[derive(Debug)]
pub struct RoleContracts(BTreeMap<Role, RoleContract>);

impl RoleContracts {
    /// Parses roles.json text; every role must be present and `_`-prefixed keys are comments.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("roles.json: {e}"))?;
        let mut contracts = BTreeMap::new();
        for (key, value) in raw.into_iter().filter(|(k, _)| !k.starts_with('_')) {
            let role: Role = key.parse()?;
            let contract: RawContract =
                serde_json::from_value(value).map_err(|e| format!("roles.json `{key}`: {e}"))?;
            let contract = RoleContract {
                inputs: to_tensors(contract.inputs),
                outputs: to_tensors(contract.outputs),
            };
            contracts.insert(role, contract);
        }
        match Role::ALL.iter().find(|r| !contracts.contains_key(r)) {
            Some(missing) => Err(format!("roles.json has no entry for `{missing}`")),
            None => Ok(RoleContracts(contracts)),
        }
    }

    fn get(&self, role: Role) -> &RoleContract {
        // `parse` guarantees every role is present.
        &self.0[&role]
    }
}

fn contracts() -> &'static RoleContracts {
    static CONTRACTS: OnceLock<RoleContracts> = OnceLock::new();
    CONTRACTS.get_or_init(|| {
        RoleContracts::parse(ROLES_JSON)
            .expect("the embedded models/roles.json is valid (checked by unit tests)")
    })
}

/// Whether a manifest tensor's element type fits the contract: fp16 graphs may carry float16
/// where the contract says float32; integer inputs never change.
fn dtype_fits(contract: DType, actual: DType, precision: Precision) -> bool {
    actual == contract
        || (precision == Precision::Fp16 && contract == DType::Float32 && actual == DType::Float16)
}

/// Checks one side (inputs or outputs) of a manifest graph entry against the contract and
/// returns every difference, worded for an error message.
fn side_differences(
    kind: &str,
    expected: &[TensorContract],
    actual: &[TensorSpec],
    precision: Precision,
) -> Vec<String> {
    let mut differences = Vec::new();
    for want in expected {
        match actual.iter().find(|t| t.name == want.name) {
            None => differences.push(format!(
                "{kind} `{}` is missing (expected {want})",
                want.name
            )),
            Some(have) => {
                if !dtype_fits(want.dtype, have.dtype, precision) {
                    differences.push(format!(
                        "{kind} `{}`: expected {}, found {}",
                        want.name, want.dtype, have.dtype
                    ));
                }
                if have.shape.len() != want.rank {
                    differences.push(format!(
                        "{kind} `{}`: expected rank {}, found {have}",
                        want.name, want.rank
                    ));
                }
            }
        }
    }
    for extra in actual
        .iter()
        .filter(|t| !expected.iter().any(|w| w.name == t.name))
    {
        differences.push(format!("unexpected {kind} `{extra}`"));
    }
    differences
}

impl RoleContract {
    /// Differences between a manifest graph entry and this contract (empty when it conforms).
    pub fn differences(&self, entry: &GraphEntry) -> Vec<String> {
        let mut all = side_differences("input", &self.inputs, &entry.inputs, entry.precision);
        all.extend(side_differences(
            "output",
            &self.outputs,
            &entry.outputs,
            entry.precision,
        ));
        all
    }
}

/// Checks that every graph of a model set has a known role and follows its contract, so a bad
/// manifest is reported before any graph is opened.
pub fn check_set(set: &ModelSet) -> Result<(), LoadError> {
    let manifest = set.path_of(MANIFEST_FILE);
    for (key, entry) in &set.manifest.graphs {
        let role: Role = key.parse().map_err(|_| LoadError::UnknownRole {
            manifest: manifest.clone(),
            key: key.clone(),
            known: Role::names().join(", "),
        })?;
        let differences = role.contract().differences(entry);
        if !differences.is_empty() {
            return Err(LoadError::Contract {
                manifest,
                role,
                differences,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Dim;

    fn spec(name: &str, dtype: DType, rank: usize) -> TensorSpec {
        TensorSpec {
            name: name.to_owned(),
            dtype,
            shape: (0..rank).map(|_| Dim::Named(String::from("n"))).collect(),
        }
    }

    fn entry(
        inputs: Vec<TensorSpec>,
        outputs: Vec<TensorSpec>,
        precision: Precision,
    ) -> GraphEntry {
        GraphEntry {
            file: String::from("g.onnx"),
            sha256: "0".repeat(64),
            precision,
            opset: 17,
            external_data: vec![],
            inputs,
            outputs,
            parity: None,
        }
    }

    #[test]
    fn embedded_roles_json_covers_every_role() {
        for role in Role::ALL {
            let contract = role.contract();
            assert!(!contract.outputs.is_empty(), "{role}");
            assert_eq!(role.name().parse::<Role>(), Ok(role));
        }
        assert_eq!(Role::Cam.contract().outputs.len(), 13);
        assert_eq!(Role::Unet.contract().inputs.len(), 16);
    }

    #[test]
    fn conforming_entry_has_no_differences() {
        let e = entry(
            vec![spec("input_ids", DType::Int64, 2)],
            vec![spec("last_hidden_state", DType::Float32, 3)],
            Precision::Fp32,
        );
        assert!(Role::TextEncoder.contract().differences(&e).is_empty());
    }

    #[test]
    fn fp16_graphs_may_use_half_floats_but_not_half_ids() {
        let ok = entry(
            vec![spec("latents", DType::Float16, 4)],
            vec![spec("images", DType::Float16, 4)],
            Precision::Fp16,
        );
        assert!(Role::VaeDecoder.contract().differences(&ok).is_empty());
        let bad = entry(
            vec![spec("input_ids", DType::Float16, 2)],
            vec![spec("last_hidden_state", DType::Float16, 3)],
            Precision::Fp16,
        );
        let diffs = Role::TextEncoder.contract().differences(&bad);
        assert_eq!(diffs, ["input `input_ids`: expected int64, found float16"]);
    }

    #[test]
    fn reports_missing_extra_and_rank_differences() {
        let e = entry(
            vec![spec("ids", DType::Int64, 2)],
            vec![spec("last_hidden_state", DType::Float32, 2)],
            Precision::Fp32,
        );
        let diffs = Role::TextEncoder.contract().differences(&e);
        assert_eq!(diffs.len(), 3, "{diffs:?}");
        assert!(diffs[0].contains("input `input_ids` is missing"));
        assert!(diffs[1].contains("unexpected input `ids"));
        assert!(diffs[2].contains("expected rank 3"));
    }

    #[test]
    fn parse_rejects_unknown_and_missing_roles() {
        let err = RoleContracts::parse(r#"{"transformer": {"inputs": [], "outputs": []}}"#)
            .expect_err("unknown role");
        assert!(err.contains("unknown graph role `transformer`"), "{err}");
        let err = RoleContracts::parse(r#"{"_comment": "x"}"#).expect_err("missing roles");
        assert!(err.contains("no entry for `text_encoder`"), "{err}");
    }
}

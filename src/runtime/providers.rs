//! Execution providers chosen at run time.
//!
//! `--ep` takes one provider (`cuda`), an ordered fallback list (`tensorrt,cuda,cpu`: the first
//! provider that can be used wins, and every fallback is reported), or per-graph placement
//! (`cuda,unet=tensorrt,cuda,vae=cpu`): a `key=` token starts the list for the graphs it names, and
//! the tokens before the first key form the default list. A key is a role (`unet`) or a role prefix
//! (`vae` covers `vae_decoder` and `vae_encoder`); the longest matching key wins.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use ort::ep::ExecutionProvider;
use serde::Serialize;

use super::RuntimeError;

/// An execution provider the engine can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Cpu,
    Cuda,
    TensorRt,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::TensorRt, Provider::Cuda, Provider::Cpu];

    /// The spelling used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
        }
    }

    /// Whether the loaded ONNX Runtime library was built with this provider. Compiled in is not
    /// usable: CUDA may still miss its libraries or a device, which shows when registering.
    pub fn is_compiled_in(self) -> bool {
        let available = match self {
            Provider::Cpu => ort::ep::CPU::is_available(),
            Provider::Cuda => ort::ep::CUDA::is_available(),
            Provider::TensorRt => ort::ep::TensorRT::is_available(),
        };
        available.unwrap_or(false)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Provider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Provider::Cpu),
            "cuda" => Ok(Provider::Cuda),
            "tensorrt" | "trt" => Ok(Provider::TensorRt),
            other => Err(format!(
                "unknown execution provider `{other}`: expected one of cpu, cuda, tensorrt"
            )),
        }
    }
}

/// A non-empty ordered list of providers without repeats: tried in order until one works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderList(Vec<Provider>);

impl ProviderList {
    pub fn single(provider: Provider) -> Self {
        ProviderList(vec![provider])
    }

    fn from_tokens(tokens: &[&str]) -> Result<Self, String> {
        let mut providers = Vec::new();
        for token in tokens.iter().filter(|t| !t.is_empty()) {
            let provider: Provider = token.parse()?;
            if providers.contains(&provider) {
                return Err(format!("provider `{provider}` is listed twice"));
            }
            providers.push(provider);
        }
        if providers.is_empty() {
            return Err(String::from("empty provider list"));
        }
        Ok(ProviderList(providers))
    }

    pub fn providers(&self) -> &[Provider] {
        &self.0
    }
}

impl fmt::Display for ProviderList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|p| p.name()).collect();
        f.write_str(&names.join(","))
    }
}

/// Which providers each graph gets: a default list and per-role overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub default: ProviderList,
    /// Role or role-prefix keys, as written after `key=`.
    pub by_key: BTreeMap<String, ProviderList>,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            default: ProviderList::single(Provider::Cpu),
            by_key: BTreeMap::new(),
        }
    }
}

impl Placement {
    /// Whether any graph may run on CUDA or TensorRT.
    pub fn uses_gpu(&self) -> bool {
        std::iter::once(&self.default)
            .chain(self.by_key.values())
            .flat_map(ProviderList::providers)
            .any(|p| *p != Provider::Cpu)
    }

    /// Parses an `--ep` value; `roles` are the role names keys may refer to.
    pub fn parse(value: &str, roles: &[&str]) -> Result<Self, RuntimeError> {
        let spec_error = |reason: String| RuntimeError::EpSpec {
            value: value.to_owned(),
            reason,
        };
        if value.trim().is_empty() {
            return Err(spec_error(String::from("empty provider list")));
        }
        let mut groups: Vec<(Option<&str>, Vec<&str>)> = vec![(None, Vec::new())];
        for token in value.split(',').map(str::trim) {
            match token.split_once('=') {
                Some((key, provider)) => groups.push((Some(key.trim()), vec![provider.trim()])),
                None => {
                    if let Some((_, tokens)) = groups.last_mut() {
                        tokens.push(token);
                    }
                }
            }
        }
        let mut placement = Placement::default();
        for (key, tokens) in groups {
            match key {
                None if tokens.is_empty() => {}
                None => {
                    placement.default = ProviderList::from_tokens(&tokens).map_err(spec_error)?
                }
                Some(key) => {
                    check_key(key, roles).map_err(spec_error)?;
                    let list = ProviderList::from_tokens(&tokens)
                        .map_err(|reason| spec_error(format!("`{key}=`: {reason}")))?;
                    if placement.by_key.insert(key.to_owned(), list).is_some() {
                        return Err(spec_error(format!("`{key}=` is given twice")));
                    }
                }
            }
        }
        Ok(placement)
    }

    /// The provider list of a role: the longest matching key, else the default.
    pub fn for_role(&self, role: &str) -> &ProviderList {
        self.by_key
            .iter()
            .filter(|(key, _)| key_matches(key, role))
            .max_by_key(|(key, _)| key.len())
            .map_or(&self.default, |(_, list)| list)
    }
}

fn key_matches(key: &str, role: &str) -> bool {
    role == key
        || role
            .strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('_'))
}

fn check_key(key: &str, roles: &[&str]) -> Result<(), String> {
    if roles.iter().any(|role| key_matches(key, role)) {
        return Ok(());
    }
    Err(format!(
        "`{key}` names no graph role; expected a role or role prefix among: {}",
        roles.join(", ")
    ))
}

/// ONNX Runtime graph optimization level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptLevel {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

impl OptLevel {
    pub(crate) fn to_ort(self) -> ort::session::builder::GraphOptimizationLevel {
        use ort::session::builder::GraphOptimizationLevel as L;
        match self {
            OptLevel::Disable => L::Disable,
            OptLevel::Basic => L::Level1,
            OptLevel::Extended => L::Level2,
            OptLevel::All => L::All,
        }
    }
}

impl FromStr for OptLevel {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "disable" | "0" => Ok(OptLevel::Disable),
            "basic" | "1" => Ok(OptLevel::Basic),
            "extended" | "2" => Ok(OptLevel::Extended),
            "all" | "3" => Ok(OptLevel::All),
            _ => Err(RuntimeError::Option {
                field: "--opt-level",
                value: s.to_owned(),
                expected: String::from("one of disable, basic, extended, all (or 0-3)"),
            }),
        }
    }
}

/// How sessions are built: providers per graph and their options.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct EpConfig {
    pub placement: Placement,
    /// GPU ordinal for CUDA and TensorRT.
    pub device_id: i32,
    /// Intra-op threads; `None` lets ONNX Runtime choose.
    pub intra_threads: Option<usize>,
    pub opt_level: OptLevel,
    /// TensorRT: build fp16 engines.
    pub trt_fp16: bool,
    /// TensorRT: directory for serialized engines (enables the engine cache).
    pub trt_engine_cache: Option<PathBuf>,
    /// TensorRT: directory for the timing cache (enables it).
    pub trt_timing_cache: Option<PathBuf>,
    /// CUDA / TensorRT: capture CUDA graphs (needs static shapes and fixed input addresses).
    pub cuda_graph: bool,
    /// Write ONNX Runtime's per-node profile (Chrome trace JSON) with this path prefix
    /// (`st2v bench` reads it for FLOPs and per-operator time).
    pub profile_prefix: Option<PathBuf>,
    /// CPU: no memory arena. ONNX Runtime's arena keeps each session's peak activation memory
    /// after the call; with many large sessions open (a full-size set on a CPU) the arenas
    /// together exceed the machine, while without them memory is returned after every call.
    pub disable_cpu_arena: bool,
}

impl EpConfig {
    /// CPU only, everything else default: what tests and `st2v doctor` use.
    pub fn cpu() -> Self {
        EpConfig::default()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_placement_uses_the_gpu_if_any_graph_may_run_there() {
        let roles = ["unet", "vae_decoder"];
        assert!(!Placement::parse("cpu", &roles).unwrap().uses_gpu());
        assert!(Placement::parse("cpu,unet=cuda", &roles)
            .unwrap()
            .uses_gpu());
        assert!(Placement::parse("tensorrt,cpu", &roles).unwrap().uses_gpu());
    }

    use super::*;

    const ROLES: &[&str] = &["unet", "stage1_unet", "vae_decoder", "vae_encoder", "cam"];

    fn list(providers: &[Provider]) -> ProviderList {
        ProviderList(providers.to_vec())
    }

    #[test]
    fn parses_single_and_fallback_lists() {
        let p = Placement::parse("cuda", ROLES).expect("valid");
        assert_eq!(p.default, list(&[Provider::Cuda]));
        let p = Placement::parse("tensorrt, cuda ,CPU", ROLES).expect("valid");
        assert_eq!(
            p.default,
            list(&[Provider::TensorRt, Provider::Cuda, Provider::Cpu])
        );
        assert!(p.by_key.is_empty());
    }

    #[test]
    fn parses_per_role_placement_with_prefixes() {
        let p = Placement::parse("cuda,cpu,unet=tensorrt,cuda,vae=cpu", ROLES).expect("valid");
        assert_eq!(
            p.for_role("unet"),
            &list(&[Provider::TensorRt, Provider::Cuda])
        );
        assert_eq!(p.for_role("vae_decoder"), &list(&[Provider::Cpu]));
        assert_eq!(p.for_role("vae_encoder"), &list(&[Provider::Cpu]));
        // `unet` is not a prefix of `stage1_unet`: it gets the default list.
        assert_eq!(
            p.for_role("stage1_unet"),
            &list(&[Provider::Cuda, Provider::Cpu])
        );
    }

    #[test]
    fn role_only_placement_defaults_to_cpu() {
        let p = Placement::parse("unet=cuda", ROLES).expect("valid");
        assert_eq!(p.for_role("cam"), &list(&[Provider::Cpu]));
        assert_eq!(p.for_role("unet"), &list(&[Provider::Cuda]));
    }

    #[test]
    fn longest_key_wins() {
        let p = Placement::parse("vae=cuda,vae_decoder=cpu", ROLES).expect("valid");
        assert_eq!(p.for_role("vae_decoder"), &list(&[Provider::Cpu]));
        assert_eq!(p.for_role("vae_encoder"), &list(&[Provider::Cuda]));
    }

    #[test]
    fn rejects_bad_specs_with_reasons() {
        let cases = [
            ("rocm", "unknown execution provider `rocm`"),
            ("cuda,cuda", "listed twice"),
            ("", "empty provider list"),
            ("unet=", "empty provider list"),
            ("transformer=cuda", "names no graph role"),
            ("unet=cuda,unet=cpu", "given twice"),
        ];
        for (value, expected) in cases {
            let err = Placement::parse(value, ROLES).expect_err(value).to_string();
            assert!(err.contains(expected), "{value}: {err}");
            assert!(err.contains(&format!("`{value}`")), "{value}: {err}");
        }
    }

    #[test]
    fn opt_level_parses_names_and_numbers() {
        assert_eq!("basic".parse::<OptLevel>().expect("valid"), OptLevel::Basic);
        assert_eq!("3".parse::<OptLevel>().expect("valid"), OptLevel::All);
        let err = "max".parse::<OptLevel>().expect_err("invalid").to_string();
        assert!(err.contains("--opt-level") && err.contains("max"), "{err}");
    }
}

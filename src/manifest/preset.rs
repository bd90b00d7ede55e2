//! Export presets as a manifest records them: the preset's name (any name of the schema's
//! pattern, kept inline so [`Preset`] is `Copy`) and, for exports since custom presets exist,
//! its dimensions.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest preset name, in bytes (the schema's `maxLength`).
pub const PRESET_NAME_MAX: usize = 64;

/// What a preset name looks like, for error messages (the schema's `preset` pattern).
pub const PRESET_NAME_RULE: &str =
    "a preset name of 1 to 64 characters from a-z, 0-9, `.`, `_` and \
     `-`, starting with a letter or a digit";

/// Which export preset produced the set: `tiny`, `full`, `full-random` or a custom one (its
/// dimensions are in [`Manifest::preset_dimensions`](crate::manifest::Manifest::preset_dimensions)). The name is checked when it is made or
/// parsed, and kept inline so the type stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Preset {
    len: u8,
    bytes: [u8; PRESET_NAME_MAX],
}

/// A string that is not a preset name ([`PRESET_NAME_RULE`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field `preset`: expected {PRESET_NAME_RULE}, found {0:?}")]
pub struct InvalidPresetName(pub String);

const fn is_preset_name(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > PRESET_NAME_MAX {
        return false;
    }
    let mut index = 0;
    while index < name.len() {
        let byte = name[index];
        let ok = byte.is_ascii_lowercase()
            || byte.is_ascii_digit()
            || (index > 0 && matches!(byte, b'.' | b'_' | b'-'));
        if !ok {
            return false;
        }
        index += 1;
    }
    true
}

impl Preset {
    pub const TINY: Preset = Preset::builtin("tiny");
    pub const FULL: Preset = Preset::builtin("full");
    pub const FULL_RANDOM: Preset = Preset::builtin("full-random");

    const fn builtin(name: &str) -> Preset {
        let source = name.as_bytes();
        assert!(is_preset_name(source));
        let mut bytes = [0u8; PRESET_NAME_MAX];
        let mut index = 0;
        while index < source.len() {
            bytes[index] = source[index];
            index += 1;
        }
        Preset {
            len: source.len() as u8,
            bytes,
        }
    }

    /// The preset called `name`, if it is a valid name.
    pub fn new(name: &str) -> Result<Preset, InvalidPresetName> {
        if !is_preset_name(name.as_bytes()) {
            return Err(InvalidPresetName(name.to_owned()));
        }
        let mut bytes = [0u8; PRESET_NAME_MAX];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Preset {
            len: name.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// Whether this is one of the presets `export/` defines itself (tiny, full, full-random).
    pub fn is_builtin(&self) -> bool {
        [Preset::TINY, Preset::FULL, Preset::FULL_RANDOM].contains(self)
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Preset").field(&self.as_str()).finish()
    }
}

impl std::str::FromStr for Preset {
    type Err = InvalidPresetName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Preset::new(name)
    }
}

impl Serialize for Preset {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Preset {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Preset::new(&name).map_err(serde::de::Error::custom)
    }
}

/// Constructor keyword arguments of a network, as the exporter passed them (diffusers,
/// transformers, open_clip or modelscope names): numbers, strings, booleans or lists of them.
pub type KwArgs = BTreeMap<String, serde_json::Value>;

/// A frame size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    pub height: usize,
    pub width: usize,
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.height, self.width)
    }
}

/// The resolutions of a preset; they must agree with the pipeline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetResolutions {
    pub stage1: Resolution,
    pub stage2: Resolution,
    /// Full enhancer frame (content plus padding).
    pub stage3: Resolution,
    pub stage3_content: Resolution,
}

/// The enhancer's widths: an architecture name and, when recorded, its constructor arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnhancerDimensions {
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unet: Option<KwArgs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae: Option<KwArgs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<KwArgs>,
}

/// The architecture and resolutions of the preset that produced the set (export's
/// `Preset.dimensions()`); optional, written by exports since custom presets exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetDimensions {
    pub text: KwArgs,
    pub vision: KwArgs,
    pub image_embed_dim: usize,
    pub unet: KwArgs,
    pub merger_head_dim: usize,
    pub merger_norm_groups: usize,
    pub resampler_inner_dim: usize,
    pub cond_embedding_channels: Vec<usize>,
    pub vae: KwArgs,
    pub resolutions: PresetResolutions,
    pub enhancer: EnhancerDimensions,
    /// How the stage-2 UNet's and the CAM's spatial convolutions pad; absent means ModelScope's
    /// zeros. The graphs carry it: the engine only reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage2_padding: Option<Stage2Padding>,
}

/// Padding of the stage-2 spatial convolutions (export's `Preset.stage2_padding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage2Padding {
    /// ModelScope's UNet3D.
    Zeros,
    /// Each edge wraps to the opposite one (the toy world's frames wrap).
    Circular,
}

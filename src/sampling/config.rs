//! Scheduler configuration: the option enums shared by the schedulers and the strict reading
//! of a manifest's JSON `config` object into a typed config.
//!
//! Field names and defaults mirror diffusers' scheduler configs, so an exporter can copy a
//! `scheduler_config.json` through. Keys starting with `_` (`_class_name`,
//! `_diffusers_version`) are metadata and skipped; any other unknown key, or a value of the
//! wrong type, is an error naming the field.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::SamplingError;

/// What the denoising model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The added noise, epsilon.
    Epsilon,
    /// The velocity v = alpha_t * eps - sigma_t * x0.
    VPrediction,
    /// The clean sample x0.
    Sample,
}

/// How inference timesteps are spread over the training timesteps (diffusers' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Linspace,
    Leading,
    Trailing,
}

/// Reads a JSON object into a config, starting from `C::default()`.
///
/// `foreign` lists keys of sibling diffusers schedulers that are accepted and ignored (as
/// diffusers' `from_config` does). Errors name the first field at fault: an unknown key, or a
/// value that does not have the field's type (an unknown enum variant included).
pub(crate) fn parse_config<C>(
    provided: &Map<String, Value>,
    foreign: &[&str],
) -> Result<C, SamplingError>
where
    C: Serialize + DeserializeOwned + Default,
{
    let defaults = default_fields::<C>()?;
    let relevant: Vec<(&String, &Value)> = provided
        .iter()
        .filter(|(key, _)| !key.starts_with('_') && !foreign.contains(&key.as_str()))
        .collect();
    for (key, value) in &relevant {
        if !defaults.contains_key(key.as_str()) {
            return Err(SamplingError::Config {
                field: (*key).clone(),
                expected: format!(
                    "one of the known fields ({})",
                    defaults.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                found: format!("unknown field set to {value}"),
            });
        }
    }
    let merged = with_overrides(&defaults, relevant.iter().copied());
    if let Ok(config) = serde_json::from_value(merged) {
        return Ok(config);
    }
    for (key, value) in &relevant {
        let single = with_overrides(&defaults, std::iter::once((*key, *value)));
        if let Err(err) = serde_json::from_value::<C>(single) {
            return Err(SamplingError::Config {
                field: (*key).clone(),
                expected: expected_from_serde(&err),
                found: value.to_string(),
            });
        }
    }
    Err(SamplingError::Config {
        field: "config".into(),
        expected: "a consistent set of fields".into(),
        found: Value::Object(provided.clone()).to_string(),
    })
}

/// Rejects a field value this engine does not implement, naming what it supports.
pub(crate) fn require<T: PartialEq + std::fmt::Debug>(
    field: &str,
    value: T,
    supported: T,
    reason: &str,
) -> Result<(), SamplingError> {
    if value == supported {
        return Ok(());
    }
    Err(SamplingError::Config {
        field: field.into(),
        expected: format!("{supported:?} ({reason})"),
        found: format!("{value:?}"),
    })
}

/// Rejects a value outside a range, naming the range.
pub(crate) fn require_range(
    field: &str,
    value: f64,
    ok: bool,
    expected: &str,
) -> Result<(), SamplingError> {
    if ok && value.is_finite() {
        return Ok(());
    }
    Err(SamplingError::Config {
        field: field.into(),
        expected: expected.into(),
        found: value.to_string(),
    })
}

fn default_fields<C: Serialize + Default>() -> Result<Map<String, Value>, SamplingError> {
    match serde_json::to_value(C::default()) {
        Ok(Value::Object(map)) => Ok(map),
        other => Err(SamplingError::Config {
            field: "config".into(),
            expected: "a config that serializes to a JSON object".into(),
            found: format!("{other:?}"),
        }),
    }
}

fn with_overrides<'a>(
    defaults: &Map<String, Value>,
    overrides: impl Iterator<Item = (&'a String, &'a Value)>,
) -> Value {
    let mut merged = defaults.clone();
    for (key, value) in overrides {
        merged.insert(key.clone(), value.clone());
    }
    Value::Object(merged)
}

/// serde says "invalid type: string \"x\", expected f64"; keep the part after "expected".
fn expected_from_serde(err: &serde_json::Error) -> String {
    let message = err.to_string();
    match message.rsplit_once(", expected ") {
        Some((_, expected)) => expected.to_string(),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Demo {
        steps: u32,
        prediction_type: PredictionType,
    }

    impl Default for Demo {
        fn default() -> Self {
            Demo {
                steps: 1000,
                prediction_type: PredictionType::Epsilon,
            }
        }
    }

    fn object(text: &str) -> Map<String, Value> {
        match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            other => panic!("test input is not an object: {other:?}"),
        }
    }

    #[test]
    fn missing_fields_take_defaults_and_metadata_is_skipped() {
        let demo: Demo = parse_config(&object(r#"{"_class_name": "X", "steps": 7}"#), &[]).unwrap();
        assert_eq!(
            demo,
            Demo {
                steps: 7,
                prediction_type: PredictionType::Epsilon
            }
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse_config::<Demo>(&object(r#"{"stepz": 7}"#), &[]).unwrap_err();
        match err {
            SamplingError::Config {
                field, expected, ..
            } => {
                assert_eq!(field, "stepz");
                assert!(expected.contains("prediction_type"), "{expected}");
            }
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn ill_typed_field_is_named_with_expectation_and_value() {
        let err = parse_config::<Demo>(&object(r#"{"steps": 3, "prediction_type": "x0"}"#), &[])
            .unwrap_err();
        match err {
            SamplingError::Config {
                field,
                expected,
                found,
            } => {
                assert_eq!(field, "prediction_type");
                assert!(expected.contains("v_prediction"), "{expected}");
                assert_eq!(found, "\"x0\"");
            }
            other => panic!("unexpected error {other}"),
        }
        let err = parse_config::<Demo>(&object(r#"{"steps": "many"}"#), &[]).unwrap_err();
        assert!(matches!(err, SamplingError::Config { ref field, .. } if field == "steps"));
    }
}

//! A graph's actual signature (read from an ONNX Runtime session) checked against its manifest
//! entry, so a wrong or re-exported file fails at load with both signatures side by side.

use std::collections::BTreeMap;

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use crate::manifest::{DType, Dim, GraphEntry, TensorSpec};

/// Inputs and outputs of a graph as ONNX Runtime sees them. Dynamic axes carry the graph's
/// symbol (or `?` when it has none).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphSignature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl GraphSignature {
    /// Reads a session's signature; a non-tensor value or an element type no role uses is an
    /// error naming the tensor.
    pub fn of_session(session: &Session) -> Result<Self, String> {
        let read =
            |outlets: &[ort::value::Outlet], kind: &str| -> Result<Vec<TensorSpec>, String> {
                outlets
                    .iter()
                    .map(|o| {
                        tensor_spec(o.name(), o.dtype())
                            .map_err(|e| format!("{kind} `{}`: {e}", o.name()))
                    })
                    .collect()
            };
        Ok(GraphSignature {
            inputs: read(session.inputs(), "input")?,
            outputs: read(session.outputs(), "output")?,
        })
    }

    /// Every difference from the manifest entry, worded for an error message (empty: matches).
    ///
    /// Names, element types and ranks must be equal. A fixed manifest dimension must be fixed to
    /// the same size or dynamic in the graph; a named (dynamic) manifest dimension must be dynamic
    /// in the graph, since the engine relies on feeding other sizes there (CFG batches 2 and 3).
    pub fn differences(&self, entry: &GraphEntry) -> Vec<String> {
        let mut all = side_differences("input", &entry.inputs, &self.inputs);
        all.extend(side_differences("output", &entry.outputs, &self.outputs));
        all
    }
}

/// One signature per line, for error messages.
pub fn render(tensors: &[TensorSpec]) -> String {
    let lines: Vec<String> = tensors.iter().map(|t| format!("      {t}")).collect();
    lines.join("\n")
}

fn tensor_spec(name: &str, value: &ValueType) -> Result<TensorSpec, String> {
    let ValueType::Tensor {
        ty,
        shape,
        dimension_symbols,
    } = value
    else {
        return Err(format!("is a {value:?}, expected a tensor"));
    };
    let dtype =
        dtype_of(*ty).ok_or_else(|| format!("element type {ty:?} is not used by any role"))?;
    let dims = shape
        .iter()
        .enumerate()
        .map(|(axis, &size)| {
            if size >= 0 {
                Dim::Fixed(size)
            } else {
                let symbol = dimension_symbols.get(axis).filter(|s| !s.is_empty());
                Dim::Named(symbol.map_or_else(|| String::from("?"), Clone::clone))
            }
        })
        .collect();
    Ok(TensorSpec {
        name: name.to_owned(),
        dtype,
        shape: dims,
    })
}

fn dtype_of(ty: TensorElementType) -> Option<DType> {
    match ty {
        TensorElementType::Float32 => Some(DType::Float32),
        TensorElementType::Float16 => Some(DType::Float16),
        TensorElementType::Int64 => Some(DType::Int64),
        TensorElementType::Int32 => Some(DType::Int32),
        TensorElementType::Bool => Some(DType::Bool),
        _ => None,
    }
}

fn side_differences(kind: &str, expected: &[TensorSpec], actual: &[TensorSpec]) -> Vec<String> {
    let by_name: BTreeMap<&str, &TensorSpec> =
        actual.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut differences = Vec::new();
    for want in expected {
        match by_name.get(want.name.as_str()) {
            None => differences.push(format!("{kind} `{}` is missing from the graph", want.name)),
            Some(have) => differences.extend(tensor_differences(kind, want, have)),
        }
    }
    for extra in actual
        .iter()
        .filter(|t| !expected.iter().any(|w| w.name == t.name))
    {
        differences.push(format!(
            "the graph has {kind} `{extra}`, which the manifest does not list"
        ));
    }
    differences
}

fn tensor_differences(kind: &str, want: &TensorSpec, have: &TensorSpec) -> Vec<String> {
    let mismatch = |what: String| {
        format!(
            "{kind} `{}`: {what} (manifest {want}, graph {have})",
            want.name
        )
    };
    if want.dtype != have.dtype {
        return vec![mismatch(format!(
            "element type {} != {}",
            want.dtype, have.dtype
        ))];
    }
    if want.shape.len() != have.shape.len() {
        return vec![mismatch(format!(
            "rank {} != {}",
            want.shape.len(),
            have.shape.len()
        ))];
    }
    want.shape
        .iter()
        .zip(&have.shape)
        .enumerate()
        .filter_map(|(axis, pair)| match pair {
            (Dim::Fixed(w), Dim::Fixed(h)) if w != h => {
                Some(mismatch(format!("axis {axis} is {h}, expected {w}")))
            }
            (Dim::Named(w), Dim::Fixed(h)) => Some(mismatch(format!(
                "axis {axis} is fixed to {h}, expected the dynamic axis `{w}`"
            ))),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Precision;

    fn spec(name: &str, dtype: DType, shape: &[Dim]) -> TensorSpec {
        TensorSpec {
            name: name.to_owned(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    fn named(s: &str) -> Dim {
        Dim::Named(s.to_owned())
    }

    fn entry(inputs: Vec<TensorSpec>, outputs: Vec<TensorSpec>) -> GraphEntry {
        GraphEntry {
            file: String::from("g.onnx"),
            sha256: "0".repeat(64),
            precision: Precision::Fp32,
            opset: 17,
            external_data: vec![],
            inputs,
            outputs,
            parity: None,
        }
    }

    fn manifest_text_encoder() -> GraphEntry {
        entry(
            vec![spec(
                "input_ids",
                DType::Int64,
                &[named("batch"), Dim::Fixed(77)],
            )],
            vec![spec(
                "last_hidden_state",
                DType::Float32,
                &[named("batch"), Dim::Fixed(77), Dim::Fixed(32)],
            )],
        )
    }

    #[test]
    fn matching_signature_has_no_differences() {
        let graph = GraphSignature {
            inputs: vec![spec(
                "input_ids",
                DType::Int64,
                &[named("batch"), Dim::Fixed(77)],
            )],
            // A dynamic graph axis where the manifest fixes one is accepted.
            outputs: vec![spec(
                "last_hidden_state",
                DType::Float32,
                &[named("batch"), named("?"), Dim::Fixed(32)],
            )],
        };
        assert!(graph.differences(&manifest_text_encoder()).is_empty());
    }

    #[test]
    fn reports_each_kind_of_difference() {
        let cases: [(GraphSignature, &str); 5] = [
            (
                GraphSignature {
                    inputs: vec![spec(
                        "input_ids",
                        DType::Int32,
                        &[named("batch"), Dim::Fixed(77)],
                    )],
                    outputs: manifest_text_encoder().outputs,
                },
                "element type int64 != int32",
            ),
            (
                GraphSignature {
                    inputs: vec![spec(
                        "input_ids",
                        DType::Int64,
                        &[Dim::Fixed(1), Dim::Fixed(77)],
                    )],
                    outputs: manifest_text_encoder().outputs,
                },
                "axis 0 is fixed to 1, expected the dynamic axis `batch`",
            ),
            (
                GraphSignature {
                    inputs: vec![spec(
                        "input_ids",
                        DType::Int64,
                        &[named("batch"), Dim::Fixed(64)],
                    )],
                    outputs: manifest_text_encoder().outputs,
                },
                "axis 1 is 64, expected 77",
            ),
            (
                GraphSignature {
                    inputs: vec![spec(
                        "tokens",
                        DType::Int64,
                        &[named("batch"), Dim::Fixed(77)],
                    )],
                    outputs: manifest_text_encoder().outputs,
                },
                "input `input_ids` is missing from the graph",
            ),
            (
                GraphSignature {
                    inputs: manifest_text_encoder().inputs,
                    outputs: vec![spec(
                        "last_hidden_state",
                        DType::Float32,
                        &[named("batch"), Dim::Fixed(77)],
                    )],
                },
                "rank 3 != 2",
            ),
        ];
        for (graph, expected) in cases {
            let diffs = graph.differences(&manifest_text_encoder());
            assert!(
                diffs.iter().any(|d| d.contains(expected)),
                "{expected}: {diffs:?}"
            );
        }
    }

    #[test]
    fn reports_inputs_the_manifest_does_not_list() {
        let mut graph = GraphSignature {
            inputs: manifest_text_encoder().inputs,
            outputs: manifest_text_encoder().outputs,
        };
        graph.inputs.push(spec(
            "attention_mask",
            DType::Int64,
            &[named("batch"), Dim::Fixed(77)],
        ));
        let diffs = graph.differences(&manifest_text_encoder());
        assert_eq!(diffs.len(), 1);
        assert!(diffs[0].contains("`attention_mask"), "{diffs:?}");
    }
}

//! FLOPs and per-operator time of one graph call, from ONNX Runtime's own profile (a Chrome
//! trace: one event per executed node, with its operator, its input and output shapes after
//! ONNX Runtime's graph optimizations, and its kernel time).
//!
//! FLOPs count multiply-adds as 2 and cover the operators that dominate these networks:
//! convolutions (`Conv`, `FusedConv`, `ConvTranspose`), matrix products (`MatMul`,
//! `FusedMatMul`, `Gemm`) and fused attention (`MultiHeadAttention`, `Attention`: the two
//! `QK^T` and `PV` products). Element-wise operators are left out (they are memory-bound).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// What one profiled call did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GraphProfile {
    pub flops: f64,
    /// Kernel time per operator type, most expensive first.
    pub operators: Vec<OperatorTime>,
}

/// One operator type's share of a call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatorTime {
    pub op: String,
    pub nodes: usize,
    pub kernel_ms: f64,
    pub flops: f64,
}

/// Reads a profile file written by a session that ran once.
pub fn read_profile(path: &Path) -> Result<GraphProfile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let events: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let events = events.as_array().ok_or("a profile is a JSON array")?;
    Ok(summarize(events))
}

/// Sums the node events of the last run in the profile (earlier runs are warm-up: the first
/// call of a session allocates and plans).
fn summarize(events: &[Value]) -> GraphProfile {
    let last_run = events
        .iter()
        .filter(|e| e["cat"] == "Session" && e["name"] == "model_run")
        .filter_map(|e| e["ts"].as_f64())
        .fold(0.0, f64::max);
    let mut by_op: BTreeMap<String, OperatorTime> = BTreeMap::new();
    for event in events {
        let in_last_run = event["ts"].as_f64().unwrap_or(0.0) >= last_run;
        let is_kernel = in_last_run
            && event["cat"] == "Node"
            && event["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("_kernel_time"));
        if !is_kernel {
            continue;
        }
        let args = &event["args"];
        let op = args["op_name"].as_str().unwrap_or("?").to_owned();
        let inputs = shapes(&args["input_type_shape"]);
        let outputs = shapes(&args["output_type_shape"]);
        let flops = node_flops(&op, &inputs, &outputs);
        let entry = by_op.entry(op.clone()).or_insert(OperatorTime {
            op,
            nodes: 0,
            kernel_ms: 0.0,
            flops: 0.0,
        });
        entry.nodes += 1;
        entry.kernel_ms += event["dur"].as_f64().unwrap_or(0.0) / 1e3;
        entry.flops += flops;
    }
    let mut operators: Vec<OperatorTime> = by_op.into_values().collect();
    operators.sort_by(|a, b| b.kernel_ms.total_cmp(&a.kernel_ms));
    GraphProfile {
        flops: operators.iter().map(|o| o.flops).sum(),
        operators,
    }
}

/// `[{"float": [2, 4, 8, 8]}, ...]` -> `[[2, 4, 8, 8], ...]`.
fn shapes(value: &Value) -> Vec<Vec<f64>> {
    value
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|typed| typed.as_object()?.values().next()?.as_array().cloned())
                .map(|dims| dims.iter().filter_map(Value::as_f64).collect())
                .collect()
        })
        .unwrap_or_default()
}

fn product(dims: &[f64]) -> f64 {
    dims.iter().product()
}

/// FLOPs of one node from its operator and shapes (0 for operators not counted).
pub fn node_flops(op: &str, inputs: &[Vec<f64>], outputs: &[Vec<f64>]) -> f64 {
    let (Some(x), Some(y)) = (inputs.first(), outputs.first()) else {
        return 0.0;
    };
    match op {
        // Each output element sums over Cin/groups x kernel: the weight's dims after the first.
        "Conv" | "FusedConv" => inputs.get(1).map_or(0.0, |w| {
            2.0 * product(y) * product(w.get(1..).unwrap_or_default())
        }),
        // Each input element scatters over Cout/groups x kernel.
        "ConvTranspose" => inputs.get(1).map_or(0.0, |w| {
            2.0 * product(x) * product(w.get(1..).unwrap_or_default())
        }),
        // Y[..., M, N] sums over K, the last dim of A.
        "MatMul" | "FusedMatMul" => 2.0 * product(y) * x.last().copied().unwrap_or(0.0),
        // Y[M, N] from A of M x K elements (transposed or not).
        "Gemm" => match y.first() {
            Some(&m) if m > 0.0 => 2.0 * product(y) * product(x) / m,
            _ => 0.0,
        },
        "MultiHeadAttention" | "Attention" => attention_flops(inputs),
        _ => 0.0,
    }
}

/// `Q K^T` and `P V` for query (B, S, D) and key (B, L, D): 2 x 2 x B x S x L x D.
fn attention_flops(inputs: &[Vec<f64>]) -> f64 {
    match (inputs.first(), inputs.get(1)) {
        (Some(q), Some(k)) if q.len() == 3 && k.len() == 3 => 4.0 * q[0] * q[1] * k[1] * q[2],
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flops_of_the_counted_operators() {
        // 3x3 conv, 4 -> 8 channels, 16x16 output: 2 * 8*16*16 * 4*9.
        let conv = node_flops(
            "Conv",
            &[vec![1., 4., 16., 16.], vec![8., 4., 3., 3.], vec![8.]],
            &[vec![1., 8., 16., 16.]],
        );
        assert_eq!(conv, 2.0 * 8.0 * 256.0 * 36.0);
        let matmul = node_flops(
            "MatMul",
            &[vec![2., 5., 7.], vec![7., 3.]],
            &[vec![2., 5., 3.]],
        );
        assert_eq!(matmul, 2.0 * 30.0 * 7.0);
        let gemm = node_flops("Gemm", &[vec![4., 6.], vec![6., 5.]], &[vec![4., 5.]]);
        assert_eq!(gemm, 2.0 * 20.0 * 6.0);
        let mha = node_flops(
            "MultiHeadAttention",
            &[vec![2., 10., 64.], vec![2., 77., 64.], vec![2., 77., 64.]],
            &[vec![2., 10., 64.]],
        );
        assert_eq!(mha, 4.0 * 2.0 * 10.0 * 77.0 * 64.0);
        assert_eq!(node_flops("Add", &[vec![3.]], &[vec![3.]]), 0.0);
    }

    #[test]
    fn a_profile_is_summed_per_operator() {
        let kernel = |op: &str, dur: f64, input: Value, output: Value| {
            json!({"cat": "Node", "name": format!("{op}_kernel_time"), "dur": dur,
                   "args": {"op_name": op, "input_type_shape": input, "output_type_shape": output}})
        };
        let events = vec![
            json!({"cat": "Session", "name": "model_run", "dur": 900, "ts": 0}),
            kernel(
                "MatMul",
                300.0,
                json!([{"float": [2, 3]}, {"float": [3, 4]}]),
                json!([{"float": [2, 4]}]),
            ),
            kernel(
                "MatMul",
                100.0,
                json!([{"float": [2, 3]}, {"float": [3, 4]}]),
                json!([{"float": [2, 4]}]),
            ),
            kernel(
                "Add",
                50.0,
                json!([{"float": [2, 4]}]),
                json!([{"float": [2, 4]}]),
            ),
        ];
        let profile = summarize(&events);
        assert_eq!(profile.flops, 2.0 * 2.0 * 8.0 * 3.0);
        assert_eq!(profile.operators[0].op, "MatMul");
        assert_eq!(profile.operators[0].nodes, 2);
        assert!((profile.operators[0].kernel_ms - 0.4).abs() < 1e-12);
        assert_eq!(profile.operators[1].op, "Add");
    }
}

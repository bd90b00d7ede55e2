//! Each graph alone: replayed at the shapes the pipeline ran it at (recorded by its call log),
//! after warm-up, with session creation timed apart.

use ndarray::{ArrayD, IxDyn};
use serde::Serialize;

use crate::manifest::DType;
use crate::models::session::InputView;
use crate::models::{GraphSession, InputShape, ModelResult};

use super::stats::Latency;

/// One graph's latency at the pipeline's shapes.
#[derive(Debug, Clone, Serialize)]
pub struct GraphTiming {
    pub role: String,
    pub provider: String,
    pub inputs: Vec<InputShape>,
    /// Seconds to create the session (the engine's load).
    pub session_creation_s: f64,
    /// Time inside ONNX Runtime per call.
    pub latency: Latency,
    /// The whole call, with the copies at the graph boundary.
    pub call_latency: Latency,
}

/// Inputs of the recorded shapes: deterministic values in [-1, 1) for floats, token ids and a
/// mid-schedule timestep for integers (values do not change the cost of these graphs).
pub fn replay_inputs(shapes: &[InputShape]) -> Vec<OwnedInput> {
    shapes
        .iter()
        .map(|input| {
            let count: usize = input.shape.iter().product();
            let shape = IxDyn(&input.shape);
            match input.dtype {
                DType::Int64 => {
                    let value = |i: usize| match input.name.contains("timestep") {
                        true => 500,
                        false => (i % 1000) as i64 + 1,
                    };
                    let data = (0..count).map(value).collect();
                    OwnedInput::I64(ArrayD::from_shape_vec(shape, data).expect("shape"))
                }
                _ => {
                    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
                    let data = (0..count)
                        .map(|_| {
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                        })
                        .collect();
                    OwnedInput::F32(ArrayD::from_shape_vec(shape, data).expect("shape"))
                }
            }
        })
        .collect()
}

/// An owned replay input.
pub enum OwnedInput {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
}

/// Runs `graph` once on `inputs`.
pub fn replay(graph: &mut GraphSession, inputs: &[OwnedInput]) -> ModelResult<()> {
    let views: Vec<InputView<'_>> = inputs
        .iter()
        .map(|input| match input {
            OwnedInput::F32(a) => InputView::F32(a.view()),
            OwnedInput::I64(a) => InputView::I64(a.view()),
        })
        .collect();
    graph.run(&views).map(drop)
}

/// Times `graph` at its recorded shapes: `warmup` calls, then `runs` measured calls. `None` when
/// the pipeline never ran it.
pub fn time_graph(
    graph: &mut GraphSession,
    warmup: usize,
    runs: usize,
) -> ModelResult<Option<GraphTiming>> {
    let Some(shapes) = graph.calls().first_inputs.clone() else {
        return Ok(None);
    };
    let inputs = replay_inputs(&shapes);
    for _ in 0..warmup {
        replay(graph, &inputs)?;
    }
    graph.take_calls();
    for _ in 0..runs.max(1) {
        replay(graph, &inputs)?;
    }
    let log = graph.take_calls();
    let (Some(latency), Some(call_latency)) = (
        Latency::from_seconds(&log.ort_seconds),
        Latency::from_seconds(&log.call_seconds),
    ) else {
        return Ok(None);
    };
    Ok(Some(GraphTiming {
        role: graph.role().name().to_owned(),
        provider: graph.placement().provider.to_string(),
        inputs: shapes,
        session_creation_s: graph.load_seconds(),
        latency,
        call_latency,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_inputs_follow_the_recorded_shapes() {
        let shapes = [
            InputShape {
                name: "sample".into(),
                dtype: DType::Float32,
                shape: vec![2, 3],
            },
            InputShape {
                name: "timestep".into(),
                dtype: DType::Int64,
                shape: vec![2],
            },
        ];
        let inputs = replay_inputs(&shapes);
        match (&inputs[0], &inputs[1]) {
            (OwnedInput::F32(a), OwnedInput::I64(t)) => {
                assert_eq!(a.shape(), &[2, 3]);
                assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
                assert_eq!(t.as_slice().unwrap(), &[500, 500]);
            }
            _ => panic!("dtypes follow the recorded inputs"),
        }
    }
}

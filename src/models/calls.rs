//! What each graph call cost: recorded by every [`super::GraphSession`] run (two clock reads
//! and a push), read by the benchmark to split end-to-end time into ONNX Runtime time and
//! orchestration overhead, and to replay each graph at the shapes the pipeline used.

use std::time::Duration;

use serde::Serialize;

use crate::manifest::DType;

/// One input of a recorded call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputShape {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// The calls of one graph since its session opened (or since the log was last taken).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallLog {
    /// Seconds inside ONNX Runtime's `run`, per call.
    pub ort_seconds: Vec<f64>,
    /// Seconds of the whole call (input layout copies, binding, `run`, output copies).
    pub call_seconds: Vec<f64>,
    /// The inputs of the first call: the shapes the pipeline runs this graph at.
    pub first_inputs: Option<Vec<InputShape>>,
}

impl CallLog {
    pub fn record(
        &mut self,
        ort: Duration,
        call: Duration,
        inputs: impl FnOnce() -> Vec<InputShape>,
    ) {
        self.ort_seconds.push(ort.as_secs_f64());
        self.call_seconds.push(call.as_secs_f64());
        if self.first_inputs.is_none() {
            self.first_inputs = Some(inputs());
        }
    }

    pub fn calls(&self) -> usize {
        self.ort_seconds.len()
    }

    pub fn ort_total(&self) -> f64 {
        self.ort_seconds.iter().sum()
    }

    pub fn call_total(&self) -> f64 {
        self.call_seconds.iter().sum()
    }
}

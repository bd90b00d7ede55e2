//! RAFT optical flow through the model set's `raft` graph: the flow the reference's `mawe.py`
//! uses (torchvision's RAFT-large, Teed & Deng 2020; StreamingT2V, Henschel et al. 2024).
//!
//! As `mawe.py` feeds it: both frames already resized (to the graph's fixed square size, 720 for
//! the real model), `uint8 / 255` normalised to `[-1, 1]` (the weights' transforms), and the
//! last of the flow updates, in pixels. A graph with random weights (the tiny and full-random
//! sets) gives arbitrary flow: its MAWE tests the arithmetic, not the video.

use ndarray::{Array4, Axis};

use super::flow::Flow;
use super::EvalError;
use crate::manifest::{Dim, ModelSet};
use crate::models::onnx::OnnxRaft;
use crate::models::{ModelLoader, Role};
use crate::runtime::SessionFactory;

/// The `raft` graph and the square size it was exported at.
pub struct RaftFlow {
    model: OnnxRaft,
    size: usize,
}

impl RaftFlow {
    pub fn load(set: &ModelSet, factory: &SessionFactory) -> Result<Self, EvalError> {
        let loader = ModelLoader::new(set, factory);
        loader.require(&[Role::Raft], "st2v eval --flow raft")?;
        let size = graph_size(set)?;
        Ok(RaftFlow {
            model: OnnxRaft::new(loader.open(Role::Raft)?)?,
            size,
        })
    }

    /// Side of the square frames the graph takes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Flow from `left` to `right`, both `size x size` interleaved RGB8.
    pub fn flow(&mut self, left: &[u8], right: &[u8]) -> Result<Flow, EvalError> {
        let flow = self.model.flow(&self.input(left), &self.input(right))?;
        let plane = |axis: usize| flow.index_axis(Axis(1), axis).iter().copied().collect();
        Ok(Flow {
            width: self.size,
            height: self.size,
            dx: plane(0),
            dy: plane(1),
        })
    }

    /// `(1, 3, S, S)` in `[-1, 1]`.
    fn input(&self, rgb: &[u8]) -> Array4<f32> {
        let side = self.size;
        Array4::from_shape_fn((1, 3, side, side), |(_, c, y, x)| {
            f32::from(rgb[(y * side + x) * 3 + c]) / 255.0 * 2.0 - 1.0
        })
    }
}

/// The fixed square size of the graph's `image1` input.
fn graph_size(set: &ModelSet) -> Result<usize, EvalError> {
    let entry = set.manifest.graph(Role::Raft.name());
    let shape = entry
        .and_then(|e| e.inputs.first())
        .map(|t| t.shape.as_slice());
    match shape {
        Some([_, _, Dim::Fixed(h), Dim::Fixed(w)]) if h == w && *h > 0 => Ok(*h as usize),
        other => Err(EvalError::invalid(
            "--flow raft",
            "a raft graph with a fixed square input (N, 3, S, S)",
            format!("{:?}", other.unwrap_or_default()),
        )),
    }
}

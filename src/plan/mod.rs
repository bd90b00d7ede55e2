//! Pure planning numerics (no ONNX Runtime): how many frames and chunks each stage produces,
//! where the enhancer's chunks lie, which chunk's x0 prediction each frame takes under
//! randomized blending, and the stage-3 resize/pad/crop geometry.

mod blending;
mod enhance_plan;
mod frames;
mod geometry;
mod resize;

pub use blending::{blend_offset, splitmix64, BlendSchedule};
pub use enhance_plan::{EnhanceChunk, EnhancePlan};
pub use frames::FramePlan;
pub use geometry::EnhancerGeometry;
pub use resize::resize_bicubic;

/// A plan input out of range; names the field (CLI flag or manifest key), expected and actual.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: expected {expected}, got {actual}")]
pub struct PlanError {
    pub field: String,
    pub expected: String,
    pub actual: String,
}

impl PlanError {
    pub(crate) fn new(
        field: impl Into<String>,
        expected: impl Into<String>,
        actual: impl ToString,
    ) -> Self {
        Self {
            field: field.into(),
            expected: expected.into(),
            actual: actual.to_string(),
        }
    }
}

//! Randomized blending of StreamingT2V's enhancer (Henschel et al. 2024, §4.3; reference
//! `thirdparty/.../diffusion_sdedit.py` `model_fn`). At every solver step each chunk `c > 0`
//! draws `r` uniformly in `0..overlap_c`; frames `< start_c + r` keep the previous chunk's x0
//! prediction and frames `>= start_c + r` take chunk `c`'s. Sequentially this is
//! `x0[cs+r : cs+24] = D_c[r:]` for `cs = 0, 16, ...`, later chunks overwriting earlier ones.
//!
//! The reference draws `r` from Python's global `random`, so its values depend on processing
//! order. Here `r` is a counter-based hash of `(seed, chunk, step)` (SplitMix64, Steele, Lea
//! and Flood 2014), so any processing order, e.g. a wavefront over (chunk, step), gives the
//! same x0.

use std::ops::Range;

use ndarray::{ArrayViewD, ArrayViewMutD, Axis};

use super::{EnhancePlan, PlanError};

/// The SplitMix64 output function applied to `state + golden gamma` (one generator step).
pub fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The blending offset `r` of `chunk` at solver `step`, uniform in `0..overlap` (0 when the
/// chunk overlaps nothing). Depends only on its arguments.
pub fn blend_offset(seed: u64, chunk: usize, step: usize, overlap: usize) -> usize {
    if overlap == 0 {
        return 0;
    }
    let hash = splitmix64(splitmix64(splitmix64(seed) ^ chunk as u64) ^ step as u64);
    // Multiply-high maps 64 random bits onto 0..overlap (bias below 2^-58 for overlap < 64).
    ((u128::from(hash) * overlap as u128) >> 64) as usize
}

/// Which chunk's x0 prediction each frame takes at each solver step.
#[derive(Debug, Clone, Copy)]
pub struct BlendSchedule<'a> {
    plan: &'a EnhancePlan,
    seed: u64,
}

impl<'a> BlendSchedule<'a> {
    pub fn new(plan: &'a EnhancePlan, seed: u64) -> Self {
        Self { plan, seed }
    }

    /// The first frame chunk `chunk` writes at `step`: `start + r`.
    ///
    /// Panics if `chunk` is not an index of the plan's chunks (as do the other per-chunk
    /// queries); indices come from the plan itself.
    pub fn threshold(&self, chunk: usize, step: usize) -> usize {
        let c = &self.plan.chunks[chunk];
        c.start + blend_offset(self.seed, chunk, step, c.overlap)
    }

    /// The chunk whose x0 frame `frame` (of the padded video) takes at `step`: the last chunk,
    /// in order, whose written range `threshold..end` contains it. Only the at most three
    /// chunks covering `frame` are consulted, so a wavefront needs a bounded window.
    pub fn owner(&self, frame: usize, step: usize) -> usize {
        self.plan
            .chunks
            .iter()
            .rev()
            .skip_while(|c| c.start > frame)
            .take_while(|c| c.end > frame)
            .find(|c| self.threshold(c.index, step) <= frame)
            .map_or(0, |c| c.index)
    }

    /// The frames whose x0 chunk `chunk` provides at `step` (possibly empty when a tail chunk
    /// overrides all of it). Over all chunks these ranges partition the padded video.
    pub fn owned_frames(&self, chunk: usize, step: usize) -> Range<usize> {
        let this = &self.plan.chunks[chunk];
        let overridden_from = self.plan.chunks[chunk + 1..]
            .iter()
            .take_while(|later| later.start < this.end)
            .map(|later| self.threshold(later.index, step))
            .fold(this.end, usize::min);
        let start = self.threshold(chunk, step);
        start..overridden_from.max(start)
    }

    /// Copies the frames chunk `chunk` owns at `step` from its x0 prediction `chunk_x0` (frame
    /// axis of length `chunk_frames`) into the full-length `x0` (frame axis of length
    /// `padded_frames`). Writing every chunk, in any order, assembles the blended x0.
    pub fn write_chunk_x0(
        &self,
        chunk: usize,
        step: usize,
        chunk_x0: ArrayViewD<'_, f32>,
        mut x0: ArrayViewMutD<'_, f32>,
        frame_axis: Axis,
    ) -> Result<(), PlanError> {
        if chunk >= self.plan.chunks.len() {
            return Err(PlanError::new(
                "chunk index",
                format!("below {}", self.plan.chunks.len()),
                chunk,
            ));
        }
        self.check_shapes(&chunk_x0, &x0, frame_axis)?;
        let owned = self.owned_frames(chunk, step);
        let start = self.plan.chunks[chunk].start;
        let local = owned.start - start..owned.end - start;
        x0.slice_axis_mut(frame_axis, owned.into())
            .assign(&chunk_x0.slice_axis(frame_axis, local.into()));
        Ok(())
    }

    fn check_shapes(
        &self,
        chunk_x0: &ArrayViewD<'_, f32>,
        x0: &ArrayViewMutD<'_, f32>,
        frame_axis: Axis,
    ) -> Result<(), PlanError> {
        let mut expected_chunk = x0.shape().to_vec();
        let Some(frames) = expected_chunk.get_mut(frame_axis.index()) else {
            return Err(PlanError::new(
                "x0 frame axis",
                format!("below the rank {}", x0.ndim()),
                frame_axis.index(),
            ));
        };
        if *frames != self.plan.padded_frames {
            return Err(PlanError::new(
                "x0 frame count",
                self.plan.padded_frames.to_string(),
                *frames,
            ));
        }
        *frames = self.plan.chunk_frames;
        if chunk_x0.shape() != expected_chunk.as_slice() {
            return Err(PlanError::new(
                "chunk x0 shape",
                format!("{expected_chunk:?}"),
                format!("{:?}", chunk_x0.shape()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// First output of SplitMix64 seeded with 0, from Vigna's reference `splitmix64.c`.
    #[test]
    fn splitmix64_matches_the_reference_generator() {
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn offsets_stay_in_range_and_vanish_without_overlap() {
        for step in 0..50 {
            for chunk in 0..20 {
                assert!(blend_offset(7, chunk, step, 8) < 8);
                assert_eq!(blend_offset(7, chunk, step, 0), 0);
                assert_eq!(blend_offset(7, chunk, step, 1), 0);
            }
        }
    }
}

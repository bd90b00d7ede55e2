//! Chunk plan of the stage-3 enhancer (MS-Vid2Vid-XL with randomized blending, StreamingT2V,
//! Henschel et al. 2024; reference `diffusion_sdedit.py` `model_fn`): chunks of `chunk` frames
//! (24) starting every `chunk - overlap` frames (0, 16, 32, ...).
//!
//! Two deliberate differences from the reference, which trims the video to `16k + 8` frames:
//! - Every frame is enhanced. When `(F - overlap)` is not a multiple of `chunk - overlap`, a final
//!   "tail" chunk is aligned to the end (`start = F - chunk`). Its overlap with the previous
//!   chunk is larger than `overlap`; blending draws its switch frame uniformly over that whole
//!   overlap (see [`super::BlendSchedule`]), which reduces to the reference rule when the
//!   overlap is exactly `overlap`.
//! - A video shorter than one chunk is padded by repeating its last frame up to `chunk` frames
//!   ([`EnhancePlan::source_frame`]); the padded frames are dropped after enhancement.

use std::ops::Range;

use super::PlanError;
use crate::manifest::Stage3Config;

/// One enhancer chunk: the frames `start..end` of the (padded) video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhanceChunk {
    pub index: usize,
    pub start: usize,
    pub end: usize,
    /// Frames shared with the previous chunk (`start..start + overlap`); 0 for the first chunk.
    pub overlap: usize,
}

impl EnhanceChunk {
    pub fn frames(&self) -> Range<usize> {
        self.start..self.end
    }

    /// The frames this chunk shares with the previous one, where blending switches owner.
    pub fn overlap_region(&self) -> Range<usize> {
        self.start..self.start + self.overlap
    }
}

/// The enhancer's chunks over a video of `frames` frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnhancePlan {
    /// Frames of the input video (and of the enhanced output).
    pub frames: usize,
    /// Frames the enhancer runs on: `max(frames, chunk_frames)`.
    pub padded_frames: usize,
    pub chunk_frames: usize,
    pub overlap_frames: usize,
    pub chunks: Vec<EnhanceChunk>,
}

impl EnhancePlan {
    /// Plans `frames` frames in chunks of `chunk_frames` overlapping by `overlap_frames`.
    pub fn new(
        frames: usize,
        chunk_frames: usize,
        overlap_frames: usize,
    ) -> Result<Self, PlanError> {
        if overlap_frames >= chunk_frames {
            return Err(PlanError::new(
                "stage3.overlap_frames",
                format!("less than stage3.chunk_frames = {chunk_frames}"),
                overlap_frames,
            ));
        }
        if frames == 0 {
            return Err(PlanError::new("enhancer input frames", "at least 1", 0));
        }
        let padded_frames = frames.max(chunk_frames);
        let chunks = chunk_layout(padded_frames, chunk_frames, overlap_frames);
        Ok(Self {
            frames,
            padded_frames,
            chunk_frames,
            overlap_frames,
            chunks,
        })
    }

    /// Plans `frames` frames with the chunk geometry of a manifest's stage-3 section.
    pub fn for_stage3(frames: usize, config: &Stage3Config) -> Result<Self, PlanError> {
        Self::new(frames, config.chunk_frames, config.overlap_frames)
    }

    /// Frames appended by repeating the last frame (0 unless `frames < chunk_frames`).
    pub fn padding(&self) -> usize {
        self.padded_frames - self.frames
    }

    /// The input frame that feeds position `index` of the padded video.
    pub fn source_frame(&self, index: usize) -> usize {
        index.min(self.frames - 1)
    }

    /// Whether the last chunk is an end-aligned tail chunk with a larger overlap.
    pub fn has_tail_chunk(&self) -> bool {
        self.chunks
            .last()
            .is_some_and(|last| last.overlap > self.overlap_frames)
    }
}

/// Regular chunks every `chunk - overlap` frames, then an end-aligned tail chunk if frames remain.
fn chunk_layout(frames: usize, chunk: usize, overlap: usize) -> Vec<EnhanceChunk> {
    let stride = chunk - overlap;
    let mut starts: Vec<usize> = (0..)
        .map(|i| i * stride)
        .take_while(|start| start + chunk <= frames)
        .collect();
    let covered = starts.last().map_or(0, |last| last + chunk);
    if covered < frames {
        starts.push(frames - chunk);
    }
    let mut chunks: Vec<EnhanceChunk> = Vec::with_capacity(starts.len());
    for (index, start) in starts.into_iter().enumerate() {
        let overlap = chunks.last().map_or(0, |prev| prev.end - start);
        chunks.push(EnhanceChunk {
            index,
            start,
            end: start + chunk,
            overlap,
        });
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(plan: &EnhancePlan) -> Vec<usize> {
        plan.chunks.iter().map(|c| c.start).collect()
    }

    #[test]
    fn aligned_lengths_match_the_reference_chunks() {
        // F = 16k + 8: the reference's own chunks, no tail.
        for (frames, expected) in [
            (24, vec![0]),
            (56, vec![0, 16, 32]),
            (200, (0..12).map(|i| i * 16).collect()),
        ] {
            let plan = EnhancePlan::new(frames, 24, 8).unwrap();
            assert_eq!(starts(&plan), expected, "F={frames}");
            assert!(!plan.has_tail_chunk());
            assert!(plan.chunks.iter().skip(1).all(|c| c.overlap == 8));
        }
    }

    #[test]
    fn unaligned_length_adds_an_end_aligned_tail() {
        // 32 frames: the reference drops frames 24..32; we add a chunk 8..32.
        let plan = EnhancePlan::new(32, 24, 8).unwrap();
        assert_eq!(starts(&plan), vec![0, 8]);
        assert_eq!(plan.chunks[1].overlap, 16);
        assert_eq!(plan.chunks[1].overlap_region(), 8..24);
        assert!(plan.has_tail_chunk());
        let plan = EnhancePlan::new(80, 24, 8).unwrap();
        assert_eq!(starts(&plan), vec![0, 16, 32, 48, 56]);
        assert_eq!(plan.chunks[4].overlap, 16);
    }

    #[test]
    fn chunks_cover_every_frame_with_positive_overlaps() {
        for frames in 1..200 {
            let plan = EnhancePlan::new(frames, 24, 8).unwrap();
            let first = plan.chunks[0];
            assert_eq!((first.start, first.overlap), (0, 0));
            assert_eq!(plan.chunks.last().unwrap().end, plan.padded_frames);
            for pair in plan.chunks.windows(2) {
                assert!(pair[1].start > pair[0].start, "F={frames}");
                assert!(pair[1].overlap >= 8 && pair[1].overlap < 24, "F={frames}");
                assert_eq!(pair[1].start + pair[1].overlap, pair[0].end);
            }
        }
    }

    #[test]
    fn short_videos_are_padded_with_the_last_frame() {
        let plan = EnhancePlan::new(16, 24, 8).unwrap();
        assert_eq!((plan.padded_frames, plan.padding()), (24, 8));
        assert_eq!(plan.chunks.len(), 1);
        assert_eq!(plan.source_frame(3), 3);
        assert_eq!(plan.source_frame(15), 15);
        assert_eq!(plan.source_frame(23), 15);
    }

    #[test]
    fn rejects_bad_configuration() {
        assert_eq!(
            EnhancePlan::new(48, 24, 24).unwrap_err().field,
            "stage3.overlap_frames"
        );
        assert!(EnhancePlan::new(0, 24, 8).is_err());
    }
}

//! Where a generated video's chunks start: the frame geometry `st2v eval` measures seams and
//! drift against.
//!
//! StreamingT2V (Henschel et al. 2024) makes a first chunk of `chunk` frames, then each next
//! chunk re-generates `overlap` conditioning frames and keeps `chunk - overlap` new ones
//! (stage 2: 16 and 8; the enhancer: 24 and 8). So new content starts at frame `chunk`, then
//! every `chunk - overlap` frames; each such start is a seam between frame `b - 1` and `b`.

use std::ops::Range;

/// Chunk length and overlap of the generation that made a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ChunkGeometry {
    pub chunk: usize,
    pub overlap: usize,
}

impl Default for ChunkGeometry {
    /// Stage 2's geometry (a generated video's frames come from stage 2's chunks).
    fn default() -> Self {
        ChunkGeometry {
            chunk: 16,
            overlap: 8,
        }
    }
}

impl ChunkGeometry {
    /// `None` unless `0 <= overlap < chunk`.
    pub fn new(chunk: usize, overlap: usize) -> Option<Self> {
        (overlap < chunk).then_some(ChunkGeometry { chunk, overlap })
    }

    /// New frames each chunk after the first adds.
    pub fn stride(&self) -> usize {
        self.chunk - self.overlap
    }

    /// The first frame of every chunk after the first, in a video of `frames` frames.
    pub fn boundaries(&self, frames: usize) -> Vec<usize> {
        (self.chunk..frames).step_by(self.stride()).collect()
    }

    /// The frames each chunk contributed: `[0, chunk)`, then `stride` more per chunk (the last
    /// one may be short).
    pub fn chunk_ranges(&self, frames: usize) -> Vec<Range<usize>> {
        let mut starts = vec![0];
        starts.extend(self.boundaries(frames));
        let mut ranges: Vec<Range<usize>> =
            starts.windows(2).map(|pair| pair[0]..pair[1]).collect();
        if let Some(&last) = starts.last() {
            if last < frames {
                ranges.push(last..frames);
            }
        }
        ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage2_geometry_starts_new_content_every_eight_frames_after_sixteen() {
        let g = ChunkGeometry::default();
        assert_eq!(g.boundaries(40), vec![16, 24, 32]);
        assert_eq!(g.chunk_ranges(40), vec![0..16, 16..24, 24..32, 32..40]);
        assert_eq!(g.chunk_ranges(36), vec![0..16, 16..24, 24..32, 32..36]);
        assert_eq!(g.chunk_ranges(10), vec![0..10]);
    }

    #[test]
    fn enhancer_geometry_and_invalid_overlap() {
        let g = ChunkGeometry::new(24, 8).expect("valid");
        assert_eq!(g.boundaries(64), vec![24, 40, 56]);
        assert!(ChunkGeometry::new(8, 8).is_none());
    }
}

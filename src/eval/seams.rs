//! Seams: do chunk boundaries show? Frame-difference and warp-error statistics of the frame
//! pairs that straddle a chunk boundary against the pairs inside chunks.
//!
//! StreamingT2V (Henschel et al. 2024) claims its CAM (short-term memory) and the enhancer's
//! randomized blending remove the jumps that plain autoregressive chunking leaves at chunk
//! boundaries. A seam is flagged when its frame difference exceeds the largest in-chunk
//! difference of the two chunks it joins: motion inside a chunk sets the scale, so a fast but
//! smooth video flags nothing, and a jump at one boundary stands out however still the rest is.

use serde::Serialize;

use super::chunks::ChunkGeometry;
use crate::bench::stats::percentile;

/// Summary of one per-pair series split into boundary and inside pairs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SplitStats {
    pub boundary_mean: f64,
    pub inside_mean: f64,
    pub inside_p95: f64,
    pub inside_max: f64,
    /// boundary_mean / inside_mean (1.0: seams look like any other frame pair); `None` when
    /// the inside pairs do not change at all.
    pub ratio: Option<f64>,
}

/// One chunk boundary: the pair (frame - 1, frame).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Seam {
    /// The first frame of the new chunk.
    pub frame: usize,
    pub frame_difference: f64,
    pub warp_error: Option<f64>,
    /// The largest frame difference inside the two chunks this seam joins.
    pub largest_inside: f64,
    /// frame_difference > largest_inside.
    pub flagged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeamReport {
    pub geometry: ChunkGeometry,
    /// Mean absolute difference of consecutive frames, RGB on the 0-255 scale.
    pub frame_difference: SplitStats,
    /// Warp error of consecutive frames (see `mawe`), when motion was measured.
    pub warp_error: Option<SplitStats>,
    pub seams: Vec<Seam>,
    pub flagged: usize,
    /// Per pair (i, i + 1), the frame difference (the series the plot draws).
    pub differences: Vec<f64>,
}

/// `None` when the video has no boundary or no pair inside a chunk.
///
/// `differences[i]` and `warp_errors[i]` belong to the pair (i, i + 1); a warp error may be
/// undefined for a pair (`None`, e.g. no pixel was reached by the flow).
pub fn seams(
    geometry: ChunkGeometry,
    differences: &[f64],
    warp_errors: Option<&[Option<f64>]>,
) -> Option<SeamReport> {
    let frames = differences.len() + 1;
    let boundaries = geometry.boundaries(frames);
    let is_boundary = |pair: usize| boundaries.contains(&(pair + 1));
    let frame_difference = split(differences.iter().map(|&d| Some(d)), &is_boundary)?;
    let warp_error = warp_errors.and_then(|w| split(w.iter().copied(), &is_boundary));
    let ranges = geometry.chunk_ranges(frames);
    let largest_in = |index: usize| -> f64 {
        let range = &ranges[index];
        (range.start..range.end.saturating_sub(1))
            .map(|pair| differences[pair])
            .fold(0.0, f64::max)
    };
    let seams: Vec<Seam> = boundaries
        .iter()
        .enumerate()
        .map(|(k, &frame)| {
            // Boundary k starts chunk k + 1 and ends chunk k.
            let largest_inside = largest_in(k).max(largest_in(k + 1));
            let frame_difference = differences[frame - 1];
            Seam {
                frame,
                frame_difference,
                warp_error: warp_errors.and_then(|w| w[frame - 1]),
                largest_inside,
                flagged: frame_difference > largest_inside,
            }
        })
        .collect();
    let flagged = seams.iter().filter(|s| s.flagged).count();
    Some(SeamReport {
        geometry,
        frame_difference,
        warp_error,
        seams,
        flagged,
        differences: differences.to_vec(),
    })
}

fn split(
    values: impl Iterator<Item = Option<f64>>,
    is_boundary: &dyn Fn(usize) -> bool,
) -> Option<SplitStats> {
    let (mut boundary, mut inside) = (Vec::new(), Vec::new());
    for (pair, value) in values.enumerate() {
        let Some(value) = value else { continue };
        match is_boundary(pair) {
            true => boundary.push(value),
            false => inside.push(value),
        }
    }
    if boundary.is_empty() || inside.is_empty() {
        return None;
    }
    inside.sort_by(f64::total_cmp);
    let boundary_mean = mean(&boundary);
    let inside_mean = mean(&inside);
    Some(SplitStats {
        boundary_mean,
        inside_mean,
        inside_p95: percentile(&inside, 95.0),
        inside_max: inside[inside.len() - 1],
        ratio: (inside_mean > 0.0).then(|| boundary_mean / inside_mean),
    })
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Mean absolute difference of two RGB8 frames of the same size, on the 0-255 scale.
pub fn frame_difference(a: &[u8], b: &[u8]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let total: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    total as f64 / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_at_one_boundary_is_flagged_and_no_other() {
        // 40 frames, stage-2 geometry: boundaries at 16, 24, 32; smooth motion of 1.0 per pair
        // with a little variation, and a jump of 9.0 into frame 24.
        let mut diffs: Vec<f64> = (0..39).map(|i| 1.0 + 0.1 * (i % 3) as f64).collect();
        diffs[23] = 9.0;
        let report = seams(ChunkGeometry::default(), &diffs, None).expect("boundaries");
        let flagged: Vec<usize> = report
            .seams
            .iter()
            .filter(|s| s.flagged)
            .map(|s| s.frame)
            .collect();
        assert_eq!(flagged, vec![24]);
        assert_eq!(report.flagged, 1);
        assert!(report.frame_difference.ratio.expect("moving") > 2.0);
        assert!(report.warp_error.is_none());
    }

    #[test]
    fn smooth_video_flags_nothing_and_short_video_has_no_report() {
        let diffs = vec![2.0; 39];
        let report = seams(ChunkGeometry::default(), &diffs, None).expect("boundaries");
        assert_eq!(report.flagged, 0);
        assert_eq!(report.frame_difference.ratio, Some(1.0));
        assert!(seams(ChunkGeometry::default(), &[1.0; 15], None).is_none());
    }

    #[test]
    fn frame_difference_is_mean_absolute_on_255_scale() {
        assert_eq!(frame_difference(&[0, 10, 255], &[10, 0, 255]), 20.0 / 3.0);
    }
}

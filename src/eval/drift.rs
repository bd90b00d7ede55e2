//! Drift: where a long video loses its identity. Per chunk, the CLIP image-embedding similarity
//! to the anchor frame and to the previous chunk, and the colour-histogram distance to the first
//! chunk.
//!
//! StreamingT2V (Henschel et al. 2024) conditions every chunk on an anchor frame through the APM
//! (long-term memory; the reference's anchor is frame 0) so that objects keep their appearance;
//! these curves show whether they do. Histogram distance: per RGB channel, 32 bins, the
//! Hellinger distance `sqrt(1 - sum_i sqrt(p_i q_i))` (0: same colours, 1: disjoint), averaged
//! over the channels; it needs no model, so it works on any model set.

use serde::Serialize;

use super::chunks::ChunkGeometry;

/// Bins per channel of the colour histograms.
pub const HISTOGRAM_BINS: usize = 32;

/// A normalised per-channel colour histogram: `3 * HISTOGRAM_BINS` values, each channel summing
/// to 1.
#[derive(Debug, Clone, PartialEq)]
pub struct ColourHistogram(Vec<f64>);

impl ColourHistogram {
    /// Of one RGB8 frame (interleaved).
    pub fn of_rgb8(rgb: &[u8]) -> Self {
        let mut counts = vec![0u64; 3 * HISTOGRAM_BINS];
        for pixel in rgb.chunks_exact(3) {
            for (channel, &value) in pixel.iter().enumerate() {
                let bin = usize::from(value) * HISTOGRAM_BINS / 256;
                counts[channel * HISTOGRAM_BINS + bin] += 1;
            }
        }
        let pixels = (rgb.len() / 3).max(1) as f64;
        ColourHistogram(counts.into_iter().map(|c| c as f64 / pixels).collect())
    }

    /// The mean of several histograms (a chunk's colours); `None` for none.
    pub fn mean<'a>(histograms: impl IntoIterator<Item = &'a ColourHistogram>) -> Option<Self> {
        let mut sum = vec![0.0; 3 * HISTOGRAM_BINS];
        let mut count = 0usize;
        for histogram in histograms {
            sum.iter_mut().zip(&histogram.0).for_each(|(s, v)| *s += v);
            count += 1;
        }
        (count > 0).then(|| ColourHistogram(sum.into_iter().map(|s| s / count as f64).collect()))
    }

    /// Mean over channels of the Hellinger distance.
    pub fn distance(&self, other: &ColourHistogram) -> f64 {
        let per_channel = |channel: usize| {
            let range = channel * HISTOGRAM_BINS..(channel + 1) * HISTOGRAM_BINS;
            let overlap: f64 = self.0[range.clone()]
                .iter()
                .zip(&other.0[range])
                .map(|(p, q)| (p * q).sqrt())
                .sum();
            (1.0 - overlap).max(0.0).sqrt()
        };
        (0..3).map(per_channel).sum::<f64>() / 3.0
    }
}

/// One chunk's drift figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkDrift {
    pub chunk: usize,
    pub first_frame: usize,
    pub frames: usize,
    /// Mean cosine similarity of the chunk's frames to the anchor frame (CLIP image space).
    pub anchor_similarity: Option<f64>,
    /// Cosine similarity of the chunk's mean embedding to the previous chunk's.
    pub previous_similarity: Option<f64>,
    /// Colour-histogram distance to the first chunk.
    pub histogram_distance: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    pub anchor_frame: usize,
    pub chunks: Vec<ChunkDrift>,
}

/// `embeddings`: per frame, L2-normalised CLIP image embeddings (`None` without the CLIP
/// graphs); `histograms`: per frame.
pub fn drift(
    geometry: ChunkGeometry,
    anchor_frame: usize,
    embeddings: Option<&[Vec<f32>]>,
    histograms: &[ColourHistogram],
) -> DriftReport {
    let ranges = geometry.chunk_ranges(histograms.len());
    let chunk_hist: Vec<ColourHistogram> = ranges
        .iter()
        .filter_map(|r| ColourHistogram::mean(&histograms[r.clone()]))
        .collect();
    let chunk_mean: Option<Vec<Vec<f32>>> = embeddings.map(|e| {
        ranges
            .iter()
            .map(|r| mean_direction(&e[r.clone()]))
            .collect()
    });
    let anchor = embeddings.and_then(|e| e.get(anchor_frame));
    let chunks = ranges
        .iter()
        .enumerate()
        .map(|(k, range)| ChunkDrift {
            chunk: k,
            first_frame: range.start,
            frames: range.len(),
            anchor_similarity: embeddings.zip(anchor).map(|(e, a)| {
                e[range.clone()].iter().map(|v| cosine(v, a)).sum::<f64>() / range.len() as f64
            }),
            previous_similarity: chunk_mean
                .as_ref()
                .filter(|_| k > 0)
                .map(|m| cosine(&m[k], &m[k - 1])),
            histogram_distance: chunk_hist[k].distance(&chunk_hist[0]),
        })
        .collect();
    DriftReport {
        anchor_frame,
        chunks,
    }
}

/// The normalised mean of unit vectors.
fn mean_direction(vectors: &[Vec<f32>]) -> Vec<f32> {
    let width = vectors.first().map_or(0, Vec::len);
    let mut sum = vec![0.0f32; width];
    for v in vectors {
        sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
    }
    normalized(sum)
}

/// `v / |v|` (zero stays zero).
pub fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut()
            .for_each(|x| *x = (f64::from(*x) / norm) as f32);
    }
    v
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator > 0.0 {
        dot / denominator
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(rgb: [u8; 3]) -> Vec<u8> {
        rgb.repeat(16)
    }

    #[test]
    fn histogram_distance_is_zero_for_same_colours_and_one_for_disjoint() {
        let red = ColourHistogram::of_rgb8(&solid([255, 0, 0]));
        let blue = ColourHistogram::of_rgb8(&solid([0, 0, 255]));
        assert_eq!(red.distance(&red), 0.0);
        // Green agrees (0 in both); red and blue channels are disjoint.
        assert!((red.distance(&blue) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn a_colour_change_in_the_third_chunk_shows_in_its_distance_and_similarities() {
        // 32 frames: chunks 0..16, 16..24, 24..32; the last chunk turns blue.
        let frames: Vec<Vec<u8>> = (0..32)
            .map(|i| solid(if i < 24 { [200, 10, 10] } else { [10, 10, 200] }))
            .collect();
        let histograms: Vec<_> = frames.iter().map(|f| ColourHistogram::of_rgb8(f)).collect();
        let embeddings: Vec<Vec<f32>> = (0..32)
            .map(|i| {
                if i < 24 {
                    vec![1.0, 0.0]
                } else {
                    vec![0.0, 1.0]
                }
            })
            .collect();
        let report = drift(ChunkGeometry::default(), 0, Some(&embeddings), &histograms);
        let c = &report.chunks;
        assert_eq!(c.len(), 3);
        assert_eq!(c[1].histogram_distance, 0.0);
        assert!(c[2].histogram_distance > 0.5);
        assert_eq!(c[1].anchor_similarity, Some(1.0));
        assert_eq!(c[2].anchor_similarity, Some(0.0));
        assert_eq!(c[0].previous_similarity, None);
        assert!(c[2].previous_similarity.expect("chunk 2") < 1e-6);
    }
}

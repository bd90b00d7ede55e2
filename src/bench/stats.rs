//! Latency statistics: percentiles by linear interpolation between order statistics (NumPy's
//! default `percentile` method), so a report's p50/p90/p99 read as a NumPy user expects.

use serde::Serialize;

/// Summary of a sample of durations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub count: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub total_ms: f64,
}

impl Latency {
    /// Summarizes durations given in seconds; `None` for an empty sample.
    pub fn from_seconds(samples: &[f64]) -> Option<Self> {
        let mut ms: Vec<f64> = samples.iter().map(|s| s * 1e3).collect();
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let total: f64 = ms.iter().sum();
        Some(Self {
            count: ms.len(),
            min_ms: ms[0],
            p50_ms: percentile(&ms, 50.0),
            p90_ms: percentile(&ms, 90.0),
            p99_ms: percentile(&ms, 99.0),
            max_ms: ms[ms.len() - 1],
            mean_ms: total / ms.len() as f64,
            total_ms: total,
        })
    }
}

/// The `q`-th percentile (0..=100) of an ascending, non-empty sample, interpolating linearly
/// between the two nearest ranks.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of an empty sample");
    let rank = q.clamp(0.0, 100.0) / 100.0 * (sorted.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
}

/// `a / b`, `None` when `b` is zero or either is missing.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile(np.arange(1, 11), [50, 90, 99]) == [5.5, 9.1, 9.91]
        let sample: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!((percentile(&sample, 50.0) - 5.5).abs() < 1e-12);
        assert!((percentile(&sample, 90.0) - 9.1).abs() < 1e-12);
        assert!((percentile(&sample, 99.0) - 9.91).abs() < 1e-12);
        assert_eq!(percentile(&[4.0], 99.0), 4.0);
    }

    #[test]
    fn latency_summarizes_seconds_in_milliseconds() {
        let latency = Latency::from_seconds(&[0.003, 0.001, 0.002]).unwrap();
        assert_eq!(latency.count, 3);
        assert!((latency.min_ms - 1.0).abs() < 1e-9 && (latency.max_ms - 3.0).abs() < 1e-9);
        assert!((latency.p50_ms - 2.0).abs() < 1e-9 && (latency.mean_ms - 2.0).abs() < 1e-9);
        assert!((latency.total_ms - 6.0).abs() < 1e-9);
        assert!(Latency::from_seconds(&[]).is_none());
    }

    #[test]
    fn ratio_needs_both_sides() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
    }
}

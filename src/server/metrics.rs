//! Prometheus metrics (text exposition format 0.0.4): queue depth, jobs by state, latency
//! histograms of stages, steps and time to first frame, finished jobs and errors by type.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds (seconds) shared by every histogram: from a tiny-set step to a long stage.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, value: f64) {
        for (bound, count) in BUCKETS.iter().zip(&mut self.counts) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// (metric, label) -> histogram.
    histograms: BTreeMap<(String, String), Histogram>,
    finished: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    rejected: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `metric` is `stage`, `step` or `time_to_first_frame`; `label` the stage or variant.
    pub fn observe(&self, metric: &str, label: &str, seconds: f64) {
        let mut inner = self.lock();
        let key = (metric.to_owned(), label.to_owned());
        inner.histograms.entry(key).or_default().observe(seconds);
    }

    pub fn job_finished(&self, status: &str, error: Option<&str>) {
        let mut inner = self.lock();
        *inner.finished.entry(status.to_owned()).or_default() += 1;
        if let Some(error) = error {
            *inner.errors.entry(error.to_owned()).or_default() += 1;
        }
    }

    pub fn rejected(&self) {
        self.lock().rejected += 1;
    }

    /// The exposition text, with the current queue depth and jobs by state.
    pub fn render(&self, jobs: &BTreeMap<&'static str, usize>, queue_depth: usize) -> String {
        let inner = self.lock();
        let mut out = String::new();
        let _ = writeln!(out, "# HELP st2v_queue_depth Jobs waiting for a worker.");
        let _ = writeln!(
            out,
            "# TYPE st2v_queue_depth gauge\nst2v_queue_depth {queue_depth}"
        );
        let _ = writeln!(out, "# HELP st2v_jobs Jobs the server knows, by state.");
        let _ = writeln!(out, "# TYPE st2v_jobs gauge");
        for (state, count) in jobs {
            let _ = writeln!(out, "st2v_jobs{{state=\"{state}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP st2v_jobs_finished_total Jobs that ended, by final state."
        );
        let _ = writeln!(out, "# TYPE st2v_jobs_finished_total counter");
        for (state, count) in &inner.finished {
            let _ = writeln!(out, "st2v_jobs_finished_total{{state=\"{state}\"}} {count}");
        }
        let _ = writeln!(out, "# HELP st2v_errors_total Failed jobs by error type.");
        let _ = writeln!(out, "# TYPE st2v_errors_total counter");
        for (kind, count) in &inner.errors {
            let _ = writeln!(out, "st2v_errors_total{{type=\"{kind}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP st2v_rejected_total Requests refused because the queue was full."
        );
        let _ = writeln!(
            out,
            "# TYPE st2v_rejected_total counter\nst2v_rejected_total {}",
            inner.rejected
        );
        let mut last_metric = "";
        for ((metric, label), histogram) in &inner.histograms {
            let name = format!("st2v_{metric}_seconds");
            let label_name = if metric == "time_to_first_frame" {
                "variant"
            } else {
                "stage"
            };
            if metric != last_metric {
                let _ = writeln!(out, "# HELP {name} Latency of each {metric}.");
                let _ = writeln!(out, "# TYPE {name} histogram");
                last_metric = metric;
            }
            for (bound, count) in BUCKETS.iter().zip(histogram.counts) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{label_name}=\"{label}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{{label_name}=\"{label}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "{name}_sum{{{label_name}=\"{label}\"}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "{name}_count{{{label_name}=\"{label}\"}} {}",
                histogram.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let metrics = Metrics::default();
        metrics.observe("step", "stage2", 0.02);
        metrics.observe("step", "stage2", 2.0);
        let text = metrics.render(&BTreeMap::from([("queued", 1)]), 1);
        assert!(text.contains("st2v_step_seconds_bucket{stage=\"stage2\",le=\"0.025\"} 1"));
        assert!(text.contains("st2v_step_seconds_bucket{stage=\"stage2\",le=\"5\"} 2"));
        assert!(text.contains("st2v_step_seconds_count{stage=\"stage2\"} 2"));
        assert!(text.contains("st2v_jobs{state=\"queued\"} 1"));
        assert!(text.contains("st2v_queue_depth 1"));
    }
}

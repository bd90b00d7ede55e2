//! `st2v eval --plot FILE.svg`: the per-frame and per-chunk curves as a standalone SVG (seams
//! over time with the chunk boundaries marked, drift per chunk, CLIP score per frame), one
//! colour per video. Hand-written SVG: no plotting dependency, opens in any browser.

use std::fmt::Write as _;

use super::report::{short_name, EvalReport, VideoReport};

const WIDTH: f64 = 900.0;
const PANEL_HEIGHT: f64 = 240.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 45.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// One curve.
struct Series {
    label: String,
    colour: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// One chart: curves, and vertical markers (chunk boundaries).
struct Panel {
    title: String,
    x_label: &'static str,
    series: Vec<Series>,
    markers: Vec<f64>,
}

/// The SVG of every panel the report has data for; `None` when it has none.
pub fn svg(report: &EvalReport) -> Option<String> {
    let panels: Vec<Panel> = [seams_panel(report), drift_panel(report), clip_panel(report)]
        .into_iter()
        .flatten()
        .collect();
    if panels.is_empty() {
        return None;
    }
    let height = PANEL_HEIGHT * panels.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (index, panel) in panels.iter().enumerate() {
        draw(&mut out, panel, index as f64 * PANEL_HEIGHT);
    }
    out.push_str("</svg>\n");
    Some(out)
}

fn colour(index: usize) -> &'static str {
    COLOURS[index % COLOURS.len()]
}

fn seams_panel(report: &EvalReport) -> Option<Panel> {
    let series: Vec<Series> = report
        .videos
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let seams = v.seams.as_ref()?;
            Some(Series {
                label: short_name(&v.path),
                colour: colour(i),
                dashed: false,
                points: indexed(seams.differences.iter().copied(), 1.0),
            })
        })
        .collect();
    let longest = report.videos.iter().map(|v| v.frames).max().unwrap_or(0);
    let markers = report.geometry.boundaries(longest);
    let geometry = report.geometry;
    (!series.is_empty()).then(|| Panel {
        title: format!(
            "Seams: mean |frame(i) - frame(i-1)| (0-255); dashed lines: chunk starts (chunk {}, \
             overlap {})",
            geometry.chunk, geometry.overlap
        ),
        x_label: "frame",
        series,
        markers: markers.into_iter().map(|b| b as f64).collect(),
    })
}

fn drift_panel(report: &EvalReport) -> Option<Panel> {
    let mut series = Vec::new();
    for (i, video) in report.videos.iter().enumerate() {
        let Some(drift) = &video.drift else { continue };
        let name = short_name(&video.path);
        let anchor: Vec<(f64, f64)> = drift
            .chunks
            .iter()
            .filter_map(|c| Some((c.chunk as f64, c.anchor_similarity?)))
            .collect();
        if !anchor.is_empty() {
            series.push(Series {
                label: format!("{name}: cos to anchor frame"),
                colour: colour(i),
                dashed: false,
                points: anchor,
            });
        }
        series.push(Series {
            label: format!("{name}: colour distance to chunk 0"),
            colour: colour(i),
            dashed: true,
            points: drift
                .chunks
                .iter()
                .map(|c| (c.chunk as f64, c.histogram_distance))
                .collect(),
        });
    }
    (!series.is_empty()).then(|| Panel {
        title: "Drift per chunk".into(),
        x_label: "chunk",
        series,
        markers: Vec::new(),
    })
}

fn clip_panel(report: &EvalReport) -> Option<Panel> {
    let series: Vec<Series> = report
        .videos
        .iter()
        .enumerate()
        .filter_map(|(i, v): (usize, &VideoReport)| {
            let clip = v.clip.as_ref()?;
            Some(Series {
                label: short_name(&v.path),
                colour: colour(i),
                dashed: false,
                points: indexed(clip.per_frame.iter().copied(), 0.0),
            })
        })
        .collect();
    (!series.is_empty()).then(|| Panel {
        title: "CLIP score per frame (x100)".into(),
        x_label: "frame",
        series,
        markers: Vec::new(),
    })
}

/// `(offset + i, value)`; a pair (i - 1, i) is drawn at frame i.
fn indexed(values: impl Iterator<Item = f64>, offset: f64) -> Vec<(f64, f64)> {
    values
        .enumerate()
        .map(|(i, v)| (offset + i as f64, v))
        .collect()
}

/// The data range, widened when flat so a constant curve sits mid-panel.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    match (low.is_finite(), high > low) {
        (false, _) => (0.0, 1.0),
        (true, true) => (low, high),
        (true, false) => (low - 0.5, high + 0.5),
    }
}

fn draw(out: &mut String, panel: &Panel, top: f64) {
    let points = || panel.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = range(points().map(|p| p.0).chain(panel.markers.iter().copied()));
    let (y0, y1) = range(points().map(|p| p.1));
    let (left, right) = (MARGIN_LEFT, WIDTH - MARGIN_RIGHT);
    let (upper, lower) = (top + MARGIN_TOP, top + PANEL_HEIGHT - MARGIN_BOTTOM);
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * (right - left);
    let sy = |y: f64| lower - (y - y0) / (y1 - y0) * (lower - upper);
    let _ = writeln!(
        out,
        "<text x=\"{left}\" y=\"{}\" font-weight=\"bold\">{}</text>",
        top + 20.0,
        escape(&panel.title)
    );
    let _ = writeln!(
        out,
        "<rect x=\"{left}\" y=\"{upper}\" width=\"{}\" height=\"{}\" fill=\"none\" \
         stroke=\"#999\"/>",
        right - left,
        lower - upper
    );
    for marker in &panel.markers {
        let x = sx(*marker);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{upper}\" x2=\"{x:.1}\" y2=\"{lower}\" stroke=\"#bbb\" \
             stroke-dasharray=\"4 3\"/>"
        );
    }
    axis_labels(
        out,
        panel,
        (x0, x1),
        (y0, y1),
        (left, right),
        (upper, lower),
    );
    for series in &panel.series {
        let path: Vec<String> = series
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let dash = if series.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.6\"{dash} points=\"{}\"/>",
            series.colour,
            path.join(" ")
        );
    }
    legend(out, panel, right, upper);
}

fn axis_labels(
    out: &mut String,
    panel: &Panel,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    (left, right): (f64, f64),
    (upper, lower): (f64, f64),
) {
    for (value, y) in [
        (y1, upper),
        ((y0 + y1) / 2.0, (upper + lower) / 2.0),
        (y0, lower),
    ] {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + 4.0,
            tick(value)
        );
    }
    for (value, x) in [(x0, left), (x1, right)] {
        let _ = writeln!(
            out,
            "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            lower + 16.0,
            tick(value)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        (left + right) / 2.0,
        lower + 32.0,
        panel.x_label
    );
}

fn legend(out: &mut String, panel: &Panel, right: f64, upper: f64) {
    for (i, series) in panel.series.iter().enumerate() {
        let y = upper + 14.0 + 15.0 * i as f64;
        let dash = if series.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"2\"{dash}/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            right - 30.0,
            right - 8.0,
            series.colour,
            right - 36.0,
            y + 4.0,
            escape(&series.label)
        );
    }
}

fn tick(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 || v == v.round() => format!("{value:.0}"),
        v if v >= 1.0 => format!("{value:.2}"),
        _ => format!("{value:.3}"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::seams::seams;
    use crate::eval::{ChunkGeometry, Metric};
    use crate::video::FrameSize;

    fn report(videos: Vec<VideoReport>) -> EvalReport {
        EvalReport {
            tool: "test".into(),
            prompt: None,
            metrics: vec![Metric::Seams],
            geometry: ChunkGeometry::default(),
            anchor_frame: 0,
            model_set: None,
            videos,
        }
    }

    #[test]
    fn seams_panel_draws_one_curve_per_video_and_marks_boundaries() {
        let mut video = VideoReport::new("a<b>.mp4".as_ref(), 40, FrameSize::new(8, 8));
        video.seams = seams(ChunkGeometry::default(), &[1.0; 39], None);
        let svg = svg(&report(vec![video.clone(), video])).expect("a panel");
        assert_eq!(svg.matches("<polyline").count(), 2);
        // Boundaries at 16, 24 and 32.
        assert_eq!(svg.matches("stroke-dasharray=\"4 3\"").count(), 3);
        assert!(svg.contains("a&lt;b&gt;.mp4") && !svg.contains("a<b>"));
    }

    #[test]
    fn no_series_no_svg() {
        let video = VideoReport::new("v.mp4".as_ref(), 4, FrameSize::new(8, 8));
        assert!(svg(&report(vec![video])).is_none());
    }
}

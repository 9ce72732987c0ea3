//! A small SVG line chart for the status page: the source series, the
//! forecast at the time it is for, and the prediction band. Plain SVG, so
//! the page needs no JavaScript.

use std::fmt::Write as _;

use crate::duration::PromDuration;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 22.0;

/// Shortest span of time a chart covers: a few minutes of history must
/// not be stretched over the whole width, nor one sample over none.
const MIN_SPAN_MS: i64 = 15 * 60_000;
/// Most time ticks: at this many, their labels still do not overlap.
const MAX_TICKS: i64 = 8;
/// Spacings of the time ticks, shortest first; the chart takes the
/// shortest that gives at most `MAX_TICKS`.
const TICK_SPACINGS_MS: [i64; 13] = [
    60_000,
    5 * 60_000,
    10 * 60_000,
    15 * 60_000,
    30 * 60_000,
    3_600_000,
    2 * 3_600_000,
    3 * 3_600_000,
    6 * 3_600_000,
    12 * 3_600_000,
    24 * 3_600_000,
    2 * 24 * 3_600_000,
    7 * 24 * 3_600_000,
];
/// A line of fewer points also gets a dot at each, so that a forecast
/// of one or two points (short history) still shows.
const DOTS_BELOW: usize = 4;

/// What one chart shows; times in unix ms.
pub struct Chart<'a> {
    /// The source series.
    pub actual: &'a [(i64, f64)],
    /// Forecast values placed at the time they forecast.
    pub forecast: &'a [(i64, f64)],
    /// Lower and upper interval bounds, at the same times as `forecast`.
    pub band: &'a [(i64, f64, f64)],
    /// Where "now" is drawn.
    pub now_ms: i64,
}

impl Chart<'_> {
    /// The chart as an `<svg>` element, or `None` when there is nothing to
    /// draw.
    pub fn svg(&self) -> Option<String> {
        let times = self
            .actual
            .iter()
            .map(|p| p.0)
            .chain(self.forecast.iter().map(|p| p.0));
        let (t0, t1) = time_span(times, self.now_ms);
        let values = self
            .actual
            .iter()
            .map(|p| p.1)
            .chain(self.forecast.iter().map(|p| p.1))
            .chain(self.band.iter().flat_map(|b| [b.1, b.2]))
            .filter(|v| v.is_finite());
        let (v0, v1) = bounds(values)?;
        if self.actual.is_empty() && self.forecast.is_empty() {
            return None;
        }
        let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * (WIDTH - LEFT - RIGHT);
        let y = |v: f64| TOP + (v1 - v) / (v1 - v0) * (HEIGHT - TOP - BOTTOM);
        let mut out = format!(
            r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">"#
        );
        if !self.band.is_empty() {
            let upper = self.band.iter().map(|b| (x(b.0), y(b.2)));
            let lower = self.band.iter().rev().map(|b| (x(b.0), y(b.1)));
            let _ = write!(
                out,
                r##"<polygon class="band" fill="#9ecae1" fill-opacity="0.5" stroke="#9ecae1" stroke-width="1" points="{}"/>"##,
                points(upper.chain(lower))
            );
        }
        let line = |class: &str, colour: &str, dash: &str, data: &[(i64, f64)]| {
            let finite: Vec<(f64, f64)> = data
                .iter()
                .filter(|p| p.1.is_finite())
                .map(|p| (x(p.0), y(p.1)))
                .collect();
            let mut svg = format!(
                r#"<polyline class="{class}" fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{}"/>"#,
                points(finite.iter().copied())
            );
            if finite.len() < DOTS_BELOW {
                for (cx, cy) in finite {
                    let _ = write!(
                        svg,
                        r#"<circle class="{class}" cx="{cx:.1}" cy="{cy:.1}" r="2.5" fill="{colour}"/>"#
                    );
                }
            }
            svg
        };
        out.push_str(&line("actual", "#222", "", self.actual));
        out.push_str(&line(
            "forecast",
            "#08519c",
            r#" stroke-dasharray="4 2""#,
            self.forecast,
        ));
        let now = x(self.now_ms);
        let _ = write!(
            out,
            r##"<line class="now" x1="{now:.1}" x2="{now:.1}" y1="{TOP}" y2="{:.1}" stroke="#d62728" stroke-width="1"/>"##,
            HEIGHT - BOTTOM
        );
        let label = |x: f64, y: f64, anchor: &str, text: &str| {
            format!(
                r##"<text x="{x:.1}" y="{y:.1}" font-size="11" text-anchor="{anchor}" fill="#555">{text}</text>"##
            )
        };
        out.push_str(&label(LEFT - 4.0, TOP + 10.0, "end", &number(v1)));
        out.push_str(&label(LEFT - 4.0, HEIGHT - BOTTOM, "end", &number(v0)));
        for (t, text) in ticks(t0, t1, self.now_ms) {
            let at = x(t);
            // Labels at the edges stay inside the canvas.
            let anchor = if at - LEFT < 16.0 {
                "start"
            } else if WIDTH - RIGHT - at < 16.0 {
                "end"
            } else {
                "middle"
            };
            let _ = write!(
                out,
                r##"<line class="tick" x1="{at:.1}" x2="{at:.1}" y1="{:.1}" y2="{:.1}" stroke="#555" stroke-width="1"/>"##,
                HEIGHT - BOTTOM,
                HEIGHT - BOTTOM + 3.0
            );
            out.push_str(&label(at, HEIGHT - 6.0, anchor, &text));
        }
        out.push_str("</svg>");
        Some(out)
    }
}

/// The time axis: from the earliest of `times` and `now_ms` to the
/// latest, at least `MIN_SPAN_MS` long (widened into the past).
fn time_span(times: impl Iterator<Item = i64>, now_ms: i64) -> (i64, i64) {
    let (t0, t1) = times.fold((now_ms, now_ms), |(lo, hi), t| (lo.min(t), hi.max(t)));
    (t0.min(t1 - MIN_SPAN_MS), t1)
}

/// Time ticks within `[t0, t1]` and their labels: whole multiples of the
/// shortest spacing that leaves at most `MAX_TICKS`, counted from now, so
/// that "now" is one of them and each label is a round offset ("-30m",
/// "+1h").
fn ticks(t0: i64, t1: i64, now_ms: i64) -> Vec<(i64, String)> {
    let span = t1 - t0;
    let spacing = TICK_SPACINGS_MS
        .into_iter()
        .find(|s| span / s < MAX_TICKS)
        .unwrap_or(TICK_SPACINGS_MS[TICK_SPACINGS_MS.len() - 1]);
    let first = -(now_ms - t0).div_euclid(spacing);
    let last = (t1 - now_ms).div_euclid(spacing);
    (first..=last)
        .map(|k| (now_ms + k * spacing, offset_label(k * spacing)))
        .collect()
}

/// An offset from now as a tick label: "now", "-15m", "+1h30m".
fn offset_label(offset_ms: i64) -> String {
    let length = PromDuration::from_millis(offset_ms.unsigned_abs());
    match offset_ms.signum() {
        0 => "now".to_owned(),
        -1 => format!("-{length}"),
        _ => format!("+{length}"),
    }
}

/// Smallest and largest of `values`, widened when they are equal so that
/// scales never divide by zero.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return None;
    }
    if hi > lo {
        Some((lo, hi))
    } else {
        let pad = lo.abs().max(1.0) * 0.01;
        Some((lo - pad, hi + pad))
    }
}

fn points(iter: impl Iterator<Item = (f64, f64)>) -> String {
    let mut out = String::new();
    for (x, y) in iter {
        let _ = write!(out, "{x:.1},{y:.1} ");
    }
    out.trim_end().to_owned()
}

/// A compact axis label: two decimals at most, with an SI suffix.
fn number(v: f64) -> String {
    let (scaled, suffix) = match v.abs() {
        a if a >= 1e12 => (v / 1e12, "T"),
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let text = format!("{scaled:.2}");
    format!(
        "{}{suffix}",
        text.trim_end_matches('0').trim_end_matches('.')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_each_part_inside_the_canvas() {
        let actual: Vec<(i64, f64)> = (0..10).map(|i| (i * 60_000, i as f64)).collect();
        let forecast: Vec<(i64, f64)> = (5..15).map(|i| (i * 60_000, i as f64 + 0.5)).collect();
        let band: Vec<(i64, f64, f64)> = forecast
            .iter()
            .map(|&(t, v)| (t, v - 1.0, v + 1.0))
            .collect();
        let svg = Chart {
            actual: &actual,
            forecast: &forecast,
            band: &band,
            now_ms: 9 * 60_000,
        }
        .svg()
        .unwrap();
        for part in [
            "<polyline class=\"actual\"",
            "<polyline class=\"forecast\"",
            "<polygon class=\"band\"",
            "<line class=\"now\"",
        ] {
            assert!(svg.contains(part), "{part} missing: {svg}");
        }
        // Every coordinate lies on the canvas.
        for pair in svg
            .split("points=\"")
            .skip(1)
            .flat_map(|s| s.split('"').next().unwrap().split(' '))
        {
            let (x, y) = pair.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!(
                (0.0..=WIDTH).contains(&x) && (0.0..=HEIGHT).contains(&y),
                "{pair}"
            );
        }
        // The largest value (band top, 15.5) is at the top of the plot area.
        assert!(svg.contains(&format!(",{TOP:.1}")), "{svg}");
    }

    #[test]
    fn nothing_to_draw_and_flat_series() {
        let empty = Chart {
            actual: &[],
            forecast: &[],
            band: &[],
            now_ms: 0,
        };
        assert!(empty.svg().is_none());
        let flat = [(0, 5.0), (60_000, 5.0)];
        let svg = Chart {
            actual: &flat,
            forecast: &[],
            band: &[],
            now_ms: 60_000,
        }
        .svg()
        .unwrap();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    /// The time labels of a chart, left to right.
    fn tick_labels(actual: &[(i64, f64)], forecast: &[(i64, f64)], now_ms: i64) -> Vec<String> {
        let svg = Chart {
            actual,
            forecast,
            band: &[],
            now_ms,
        }
        .svg()
        .unwrap();
        svg.split(r#"text-anchor=""#)
            .skip(3)
            .filter_map(|s| s.split_once('>')?.1.split_once('<'))
            .map(|(text, _)| text.to_owned())
            .collect()
    }

    /// Ticks follow the span the chart shows: minutes for a few minutes of
    /// history, hours for hours, each label once, "now" among them.
    #[test]
    fn time_ticks_fit_the_span() {
        let now = 1_700_000_000_000;
        let minute = 60_000;
        let samples = |from: i64, to: i64, every: i64| -> Vec<(i64, f64)> {
            (0..=(to - from) / every)
                .map(|i| (from + i * every, 1.0))
                .collect()
        };
        // Three minutes of history, no forecast yet: the 15-minute minimum.
        let short = samples(now - 3 * minute, now, 15_000);
        assert_eq!(
            tick_labels(&short, &[], now),
            ["-15m", "-10m", "-5m", "now"]
        );
        // One sample: still a span, not a point.
        assert_eq!(
            tick_labels(&[(now, 1.0)], &[], now),
            ["-15m", "-10m", "-5m", "now"]
        );
        // Five minutes of history and its forecast an hour ahead.
        let ahead = samples(now + 55 * minute, now + 60 * minute, 5 * minute);
        assert_eq!(
            tick_labels(&samples(now - 5 * minute, now, 15_000), &ahead, now),
            ["now", "+10m", "+20m", "+30m", "+40m", "+50m", "+1h"]
        );
        // Six hours of history and a forecast an hour ahead.
        let day = samples(now - 6 * 60 * minute, now, 5 * minute);
        let hour = samples(now - 4 * 60 * minute, now + 60 * minute, 5 * minute);
        assert_eq!(
            tick_labels(&day, &hour, now),
            ["-6h", "-5h", "-4h", "-3h", "-2h", "-1h", "now", "+1h"]
        );
        // A forecast of 6 hours ahead: two-hour ticks.
        let far = samples(now, now + 6 * 60 * minute, 5 * minute);
        assert_eq!(
            tick_labels(&day, &far, now),
            ["-6h", "-4h", "-2h", "now", "+2h", "+4h", "+6h"]
        );
    }

    /// A forecast of one point shows as a dot, and its band as a bar.
    #[test]
    fn a_one_point_forecast_is_visible() {
        let svg = Chart {
            actual: &[(0, 1.0), (60_000, 2.0)],
            forecast: &[(3_600_000, 1.5)],
            band: &[(3_600_000, 1.0, 2.0)],
            now_ms: 60_000,
        }
        .svg()
        .unwrap();
        assert!(svg.contains(r#"<circle class="forecast""#), "{svg}");
        assert!(svg.contains(r##"stroke="#9ecae1""##), "{svg}");
    }

    #[test]
    fn axis_numbers_are_compact() {
        assert_eq!(number(1_234_567.0), "1.23M");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(42.0), "42");
        assert_eq!(number(2e9), "2G");
    }
}

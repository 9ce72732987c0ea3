//! A small SVG line chart for the status page: the source series, the
//! forecast at the time it is for, and the prediction band. Plain SVG, so
//! the page needs no JavaScript.

use std::fmt::Write as _;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 22.0;

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
            .chain(self.forecast.iter().map(|p| p.0))
            .chain([self.now_ms]);
        let (t0, t1) = bounds(times.map(|t| t as f64))?;
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
        let x = |t: i64| LEFT + (t as f64 - t0) / (t1 - t0) * (WIDTH - LEFT - RIGHT);
        let y = |v: f64| TOP + (v1 - v) / (v1 - v0) * (HEIGHT - TOP - BOTTOM);
        let mut out = format!(
            r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">"#
        );
        if !self.band.is_empty() {
            let upper = self.band.iter().map(|b| (x(b.0), y(b.2)));
            let lower = self.band.iter().rev().map(|b| (x(b.0), y(b.1)));
            let _ = write!(
                out,
                r##"<polygon class="band" fill="#9ecae1" fill-opacity="0.5" stroke="none" points="{}"/>"##,
                points(upper.chain(lower))
            );
        }
        let line = |class: &str, colour: &str, dash: &str, data: &[(i64, f64)]| {
            let finite = data.iter().filter(|p| p.1.is_finite());
            format!(
                r#"<polyline class="{class}" fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{}"/>"#,
                points(finite.map(|p| (x(p.0), y(p.1))))
            )
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
        out.push_str(&label(now, HEIGHT - 6.0, "middle", "now"));
        out.push_str(&label(
            LEFT,
            HEIGHT - 6.0,
            "start",
            &hours_from_now(t0, self.now_ms),
        ));
        out.push_str(&label(
            WIDTH - RIGHT,
            HEIGHT - 6.0,
            "end",
            &hours_from_now(t1, self.now_ms),
        ));
        out.push_str("</svg>");
        Some(out)
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

fn hours_from_now(t: f64, now_ms: i64) -> String {
    let hours = (t - now_ms as f64) / 3_600_000.0;
    if hours.abs() < 0.05 {
        "now".to_owned()
    } else {
        format!("{hours:+.1}h")
    }
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

    #[test]
    fn axis_numbers_are_compact() {
        assert_eq!(number(1_234_567.0), "1.23M");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(42.0), "42");
        assert_eq!(number(2e9), "2G");
    }
}

//! The embedded demo upstream: a few realistic SRE metrics generated as a
//! pure function of time, so promcast shows forecasts without any
//! Prometheus. Every value is reproducible: the same timestamp always gives
//! the same sample.

use crate::calendar::{DAY_MS, HOUR_MS};
use crate::labels::{Labels, METRIC_NAME, Matcher};

use super::SourceSeries;

/// Sample spacing of every demo series.
pub const STEP_MS: i64 = 60_000;

/// The embedded demo source.
pub struct Demo;

/// One demo family: its name, its series' labels, and its value function.
pub struct DemoFamily {
    /// Metric name.
    pub name: &'static str,
    series: &'static [&'static [(&'static str, &'static str)]],
    value: fn(series: usize, t_ms: i64) -> f64,
}

/// The demo metrics.
pub const FAMILIES: [DemoFamily; 4] = [
    DemoFamily {
        name: "demo_cpu_usage_percent",
        series: &[
            &[("instance", "web-1:9100"), ("job", "node")],
            &[("instance", "web-2:9100"), ("job", "node")],
            &[("instance", "web-3:9100"), ("job", "node")],
        ],
        value: cpu,
    },
    DemoFamily {
        name: "demo_filesystem_avail_bytes",
        series: &[&[
            ("instance", "db-1:9100"),
            ("job", "node"),
            ("mountpoint", "/var/lib/postgresql"),
        ]],
        value: disk,
    },
    DemoFamily {
        name: "demo_memory_used_bytes",
        series: &[&[("instance", "api-1:8080"), ("job", "api")]],
        value: memory,
    },
    DemoFamily {
        name: "demo_http_request_duration_seconds_p99",
        series: &[&[("job", "api"), ("route", "/checkout")]],
        value: latency,
    },
];

impl Demo {
    pub(super) fn fetch(
        &self,
        family: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SourceSeries> {
        let Some(f) = FAMILIES.iter().find(|f| f.name == family) else {
            return Vec::new();
        };
        let first = start_ms.div_euclid(STEP_MS) * STEP_MS
            + if start_ms.rem_euclid(STEP_MS) == 0 {
                0
            } else {
                STEP_MS
            };
        f.series
            .iter()
            .enumerate()
            .filter_map(|(i, pairs)| {
                let labels: Labels = pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                let mut with_name = labels.clone();
                with_name.insert(METRIC_NAME.to_owned(), family.to_owned());
                if !matchers.iter().all(|m| m.matches_labels(&with_name)) {
                    return None;
                }
                let samples = (first..=end_ms)
                    .step_by(STEP_MS as usize)
                    .map(|t| (t, (f.value)(i, t)))
                    .collect();
                Some(SourceSeries { labels, samples })
            })
            .collect()
    }
}

/// A reproducible standard-normal draw for `(series, t)`.
fn noise(series: usize, t_ms: i64) -> f64 {
    let mut x = (t_ms as u64) ^ ((series as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut next = || {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let (u1, u2) = (next().max(1e-12), next());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Position in the day, as an angle, with the daily peak at 14:00 UTC.
fn daily(t_ms: i64) -> f64 {
    (std::f64::consts::TAU * ((t_ms - 8 * HOUR_MS).rem_euclid(DAY_MS) as f64 / DAY_MS as f64)).sin()
}

/// Busy in the afternoon, quieter at weekends.
fn cpu(series: usize, t_ms: i64) -> f64 {
    let weekday = (t_ms.div_euclid(DAY_MS) + 3).rem_euclid(7);
    let weekend = if weekday >= 5 { 0.6 } else { 1.0 };
    let base = 30.0 + 5.0 * series as f64;
    (base + 25.0 * weekend * (0.5 + 0.5 * daily(t_ms)) + 2.5 * noise(series, t_ms))
        .clamp(0.0, 100.0)
}

/// A 100 GB volume filling at ~1 GB/h, cleaned up every three days.
fn disk(series: usize, t_ms: i64) -> f64 {
    let cycle = 3 * DAY_MS;
    let since_cleanup = t_ms.rem_euclid(cycle) as f64 / HOUR_MS as f64;
    let used = 15e9 + 1.05e9 * since_cleanup * (1.0 + 0.3 * daily(t_ms));
    (100e9 - used + 5e7 * noise(series, t_ms)).max(0.0)
}

/// A slow leak, reset by a restart every four days.
fn memory(series: usize, t_ms: i64) -> f64 {
    let cycle = 4 * DAY_MS;
    let hours = t_ms.rem_euclid(cycle) as f64 / HOUR_MS as f64;
    1.5e9 + 12e6 * hours + 80e6 * daily(t_ms) + 15e6 * noise(series, t_ms)
}

/// Daily latency pattern with an incident every third day, 15:00-15:40 UTC.
fn latency(series: usize, t_ms: i64) -> f64 {
    let day = t_ms.div_euclid(DAY_MS);
    let in_day = t_ms.rem_euclid(DAY_MS);
    let incident = day % 3 == 1 && (15 * HOUR_MS..15 * HOUR_MS + 40 * 60_000).contains(&in_day);
    let base = 0.22 + 0.06 * daily(t_ms) + 0.015 * noise(series, t_ms).abs();
    if incident { base * 4.0 } else { base }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_reproducible_and_filtered() {
        let all = Demo.fetch("demo_cpu_usage_percent", &[], 0, 600_000);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].samples.len(), 11);
        assert_eq!(all, Demo.fetch("demo_cpu_usage_percent", &[], 0, 600_000));
        let one = Demo.fetch(
            "demo_cpu_usage_percent",
            &[Matcher::new("instance", "=~", "web-2.*").unwrap()],
            30_000,
            600_000,
        );
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].samples[0].0, 60_000);
        assert!(Demo.fetch("up", &[], 0, 600_000).is_empty());
    }

    #[test]
    fn demo_series_look_like_their_story() {
        let day = |f: fn(usize, i64) -> f64, h: i64| f(0, 10 * DAY_MS + h * HOUR_MS);
        assert!(day(cpu, 14) > day(cpu, 2) + 10.0, "afternoon peak");
        assert!(
            disk(0, 3 * DAY_MS + 60 * HOUR_MS) < disk(0, 3 * DAY_MS + HOUR_MS) - 40e9,
            "disk fills"
        );
        let incident = DAY_MS + 15 * HOUR_MS + 600_000;
        assert!(
            latency(0, incident) > 2.0 * latency(0, incident + 2 * HOUR_MS),
            "incident"
        );
    }
}

//! The forecasting scenario of the e2e and security suites: a week of a
//! daily-cycle gauge back-filled into Prometheus, Prometheus reading
//! promcast's forecasts of it, and the checked instant queries and numeric
//! values through which the suites read those forecasts back.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use promcast::calendar::now_ms;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::family::{METRIC, PROMCAST_CONFIG};
use super::harness::Harness;
use super::prometheus::{Answer, Series, run_promtool_backfill};

/// Units of the history's timestamps, which are in seconds.
pub const MINUTE: i64 = 60;
pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;

/// The back-filled history: the 7-day training window plus some slack so the
/// window is full whatever promcast's exact cut-off is.
pub const HISTORY: i64 = 7 * DAY + 3 * HOUR;
/// Where the one injected spike sits, counted back from the end of the data.
pub const SPIKE_BEFORE_END: i64 = 36 * HOUR;
pub const SPIKE_HEIGHT: f64 = 60.0;
/// Source series: instance label and phase of the daily cycle.
pub const INSTANCES: [(&str, f64); 3] = [("a", 0.0), ("b", 2.1), ("c", 4.2)];

/// A week of one-minute samples for three instances: a daily sine with
/// Gaussian noise and one spike on instance "b". Timestamps are in seconds.
pub struct History {
    pub start: i64,
    pub end: i64,
    pub spike_ts: i64,
}

impl History {
    /// Ends two minutes before the current minute, so every sample is in the
    /// past and Prometheus's 5-minute lookback at `end` finds the last one.
    pub fn ending_now() -> Self {
        let end = now_ms() / 1000 / MINUTE * MINUTE - 2 * MINUTE;
        Self {
            start: end - HISTORY,
            end,
            spike_ts: end - SPIKE_BEFORE_END,
        }
    }

    /// Writes OpenMetrics text for `promtool tsdb create-blocks-from
    /// openmetrics`, one series after the other, each in time order.
    pub fn write_openmetrics(&self, path: &Path) {
        let file = fs::File::create(path).expect("create OpenMetrics file");
        let mut out = BufWriter::new(file);
        let mut rng = StdRng::seed_from_u64(0x5EED_E2E0);
        writeln!(out, "# TYPE {METRIC} gauge").expect("write OpenMetrics");
        for (instance, phase) in INSTANCES {
            let mut t = self.start;
            while t <= self.end {
                let day_angle =
                    2.0 * std::f64::consts::PI * (t.rem_euclid(DAY) as f64) / DAY as f64;
                let mut value = 50.0 + 20.0 * (day_angle + phase).sin() + 1.5 * gaussian(&mut rng);
                if instance == "b" && t == self.spike_ts {
                    value += SPIKE_HEIGHT;
                }
                writeln!(
                    out,
                    "{METRIC}{{instance=\"{instance}\",job=\"node\"}} {value:.4} {t}"
                )
                .expect("write OpenMetrics");
                t += MINUTE;
            }
        }
        writeln!(out, "# EOF").expect("write OpenMetrics");
        out.flush().expect("flush OpenMetrics file");
    }
}

/// A standard normal sample (Box–Muller), so no extra crate is needed.
pub fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Back-fills [`History::ending_now`] into a new TSDB under `dir`.
pub fn backfill_history(dir: &Path) -> (History, PathBuf) {
    let history = History::ending_now();
    let openmetrics = dir.join("history.om");
    history.write_openmetrics(&openmetrics);
    let tsdb = dir.join("tsdb");
    fs::create_dir_all(&tsdb).expect("create TSDB directory");
    run_promtool_backfill(&openmetrics, &tsdb, &dir.join("promtool.log"));
    (history, tsdb)
}

impl Harness {
    /// Starts Prometheus with its own config (not /etc/prometheus): no
    /// external labels, promcast as remote_read target with `read_recent`
    /// (forecasts are recent or future), and a scrape job for promcast.
    /// Secured, Prometheus serves HTTPS with basic auth and sends promcast a
    /// bearer token over TLS, as the README tells users to.
    pub fn start_prometheus(&mut self, tsdb: &Path) {
        let client_tls = match &self.secrets {
            Some(s) => format!(
                "    tls_config:\n      ca_file: {ca}\n    authorization:\n      credentials_file: {token}\n",
                ca = s.ca.display(),
                token = s.token_file.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n\
             remote_read:\n  - url: {promcast}/api/v1/read\n    read_recent: true\n    remote_timeout: 1m\n{client_tls}\
             scrape_configs:\n  - job_name: promcast\n    scheme: {scheme}\n{client_tls}    static_configs:\n      - targets: ['127.0.0.1:{pc}']\n",
            promcast = self.promcast_url(),
            scheme = self.scheme(),
            pc = self.promcast_port
        );
        self.start_prometheus_with(&config, tsdb);
    }

    /// Starts promcast with the scenario's configuration (and, secured, its
    /// TLS and credentials), reading from this harness's Prometheus.
    pub fn start_promcast(&mut self) {
        let config = match &self.secrets {
            Some(s) => format!("{PROMCAST_CONFIG}{}", s.promcast_config()),
            None => PROMCAST_CONFIG.to_owned(),
        };
        self.start_promcast_with(&config);
    }

    /// An instant query that must answer without warnings and with exactly
    /// `count` series.
    pub async fn instant_series(&mut self, query: &str, time: i64, count: usize) -> Answer {
        let answer = self.instant(query, time).await;
        self.assert_no_warnings(query, &answer);
        assert_eq!(
            answer.series.len(),
            count,
            "{query} at {time} must give {count} series: {:?}{}",
            answer.series,
            self.diag()
        );
        answer
    }
}

impl Series {
    /// Points as numbers; "NaN"/"+Inf" parse to non-finite values.
    pub fn values(&self) -> Vec<(i64, f64)> {
        self.points
            .iter()
            .map(|(ts, v)| (*ts, v.parse().unwrap_or(f64::NAN)))
            .collect()
    }

    /// The value of an instant-vector sample (NaN if there is none).
    pub fn single_value(&self) -> f64 {
        self.values().first().map_or(f64::NAN, |p| p.1)
    }
}

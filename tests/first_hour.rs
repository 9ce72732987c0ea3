//! A newcomer's first hour, end to end: a fresh Prometheus 2.42 scraping
//! itself and promcast every 15 s, with promcast's shipped alert rules,
//! and promcast with the default configuration pointed at it.
//!
//! From the first minute on, a metric Prometheus has only just started
//! scraping (`process_resident_memory_bytes`) is forecast by the seasonal
//! baseline with a wide band, and its model waits for history: in
//! `/api/v1/models`, on the status page and in `promcast_models{state}`,
//! with no failed training and no failure alert. A misspelt metric shows as
//! not found, in the log and on the status page. One metric of the same
//! Prometheus (`go_goroutines`) is back-filled with a little less history
//! than the defaults need, so that within minutes scraping completes it:
//! its model waits, then trains when the history suffices, and answers.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use promcast::calendar::now_ms;
use serde_json::Value;

mod common {
    pub mod exposition;
    pub mod harness;
    pub mod http;
    pub mod process;
    pub mod prometheus;
    #[allow(dead_code)] // the harness can be secured; this suite never secures it
    pub mod secrets;
}

use common::exposition::metric_sum;
use common::harness::{Harness, two_ports};
use common::http::get_text;
use common::process::require_binary;
use common::prometheus::{PROMETHEUS_BIN, PROMTOOL_BIN, run_promtool_backfill};

/// A metric Prometheus exports about itself, first scraped by this test.
const FRESH: &str = "process_resident_memory_bytes";
/// A metric of the same Prometheus, back-filled almost far enough.
const BACKFILLED: &str = "go_goroutines";
/// A metric nobody exports.
const MISSPELT: &str = "no_such_metric";
/// Prometheus's scrape interval here, as in its default configuration.
const SCRAPE_S: i64 = 15;
/// History the default configuration needs at 15-second scrapes (a 45s
/// model step): 739 steps, 9h14m15s (README, "The first hours").
const NEED_S: i64 = 739 * 45;
/// How much of that the back-fill leaves to scraping.
const SHORT_BY_S: i64 = 90;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `go_goroutines` of the Prometheus on `prom_port`, every 15 s from
/// `NEED_S − SHORT_BY_S` before `end_s` until just before it, where its
/// scrapes take over.
fn write_backfill(path: &Path, prom_port: u16, end_s: i64) {
    let mut out = BufWriter::new(fs::File::create(path).expect("create OpenMetrics file"));
    writeln!(out, "# TYPE {BACKFILLED} gauge").expect("write");
    let start = end_s - NEED_S + SHORT_BY_S;
    for t in (start..end_s).step_by(SCRAPE_S as usize) {
        let wave = (t as f64 / 1800.0 * std::f64::consts::TAU).sin();
        let value = 40.0 + 4.0 * wave + (t / SCRAPE_S % 3) as f64;
        writeln!(
            out,
            "{BACKFILLED}{{instance=\"127.0.0.1:{prom_port}\",job=\"prometheus\"}} {value} {t}"
        )
        .expect("write");
    }
    writeln!(out, "# EOF").expect("write");
    out.flush().expect("flush OpenMetrics file");
}

/// Prometheus scraping itself and promcast, promcast's shipped rules
/// evaluated every 5 s, promcast as its remote_read target.
fn prometheus_config(prom_port: u16, promcast_port: u16) -> String {
    format!(
        "global:\n  scrape_interval: {SCRAPE_S}s\n  evaluation_interval: 5s\n\
         rule_files:\n  - {rules}\n\
         remote_read:\n  - url: http://127.0.0.1:{promcast_port}/api/v1/read\n    read_recent: true\n    remote_timeout: 1m\n\
         scrape_configs:\n\
         \x20 - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{prom_port}']\n\
         \x20 - job_name: promcast\n    static_configs:\n      - targets: ['127.0.0.1:{promcast_port}']\n",
        rules = repo("deploy/prometheus/rules/promcast.yml").display()
    )
}

impl Harness {
    /// Body of a GET of `path` from promcast, which must answer 200.
    async fn promcast_page(&mut self, path: &str) -> String {
        self.ensure_promcast_alive();
        let url = format!("{}{path}", self.promcast_url());
        match get_text(&self.client, &url).await {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("GET {url}: HTTP {status}: {body}{}", self.diag()),
            Err(e) => panic!("GET {url} failed: {e}{}", self.diag()),
        }
    }

    /// The `/api/v1/models` entry of `family`, if listed.
    async fn model(&mut self, family: &str) -> Option<Value> {
        let body = self.promcast_page("/api/v1/models").await;
        let json: Value = serde_json::from_str(&body).expect("/api/v1/models is JSON");
        json["data"]
            .as_array()
            .and_then(|models| models.iter().find(|m| m["family"] == family))
            .cloned()
    }

    /// Polls `/api/v1/models` until `family` is in `state`, for at most
    /// `within`; returns its entry.
    async fn wait_model_state(&mut self, family: &str, state: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let entry = self.model(family).await;
            if let Some(e) = &entry {
                assert_ne!(e["state"], "failed", "{family} failed: {e}{}", self.diag());
                if e["state"] == state {
                    return e.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{family} not {state} within {within:?}: {entry:?}{}",
                self.diag()
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// The value of the only series an instant query at now answers, once
    /// it answers one (polling every 3 s for at most `within`); `None` if
    /// it never does. Never a warning (a failed remote read).
    async fn wait_value(&mut self, query: &str, within: Duration) -> Option<f64> {
        let deadline = Instant::now() + within;
        loop {
            let answer = self.instant(query, now_ms() / 1000).await;
            self.assert_no_warnings(query, &answer);
            assert!(answer.series.len() <= 1, "{query}: {:?}", answer.series);
            if let Some(series) = answer.series.first() {
                let value = series.points[0].1.parse().expect("a number");
                return Some(value);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }

    /// The value of the only series `query` answers now, which must be one.
    async fn value(&mut self, query: &str) -> f64 {
        let value = self.wait_value(query, Duration::ZERO).await;
        value.unwrap_or_else(|| panic!("{query} answered nothing{}", self.diag()))
    }
}

/// `"2m of ~9h15m"` and the like: the summary of a family waiting for history.
fn assert_waiting(entry: &Value, need: &str) {
    assert_eq!(entry["state"], "waiting_for_history", "{entry}");
    assert_eq!(entry["predictor"], "seasonal_baseline", "{entry}");
    assert!(entry["error"].is_null(), "{entry}");
    let history = &entry["history"];
    assert_eq!(history["needed"], need, "{entry}");
    let summary = history["summary"].as_str().unwrap_or_default();
    let available = history["available"].as_str().unwrap_or_default();
    assert_eq!(summary, format!("{available} of ~{need}"), "{entry}");
    assert_eq!(history["ready_at"], entry["retry_at"], "{entry}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_hour_waits_for_history_without_failing() {
    require_binary(PROMETHEUS_BIN);
    require_binary(PROMTOOL_BIN);
    let tmp = tempfile::tempdir().expect("create temporary directory");
    let dir = tmp.path().to_path_buf();
    let (prom_port, promcast_port) = two_ports();

    let openmetrics = dir.join("backfill.om");
    write_backfill(&openmetrics, prom_port, now_ms() / 1000);
    let tsdb = dir.join("tsdb");
    fs::create_dir_all(&tsdb).expect("create TSDB directory");
    run_promtool_backfill(&openmetrics, &tsdb, &dir.join("promtool.log"));

    let mut h = Harness::new(dir, prom_port, promcast_port);
    h.start_prometheus_with(&prometheus_config(prom_port, promcast_port), &tsdb);
    h.wait_prometheus_ready().await;
    let started = Instant::now();
    // The default configuration.
    h.start_promcast_with("");
    h.wait_promcast_up().await;

    // The back-filled family: the first query is answered by the baseline
    // and finds its history a little short.
    let query = format!("predicted_{BACKFILLED}{{horizon=\"1h\"}}");
    let baseline = h.wait_value(&query, Duration::from_secs(60)).await;
    assert!(
        baseline.is_some_and(f64::is_finite),
        "{query}: {baseline:?}"
    );
    let entry = h
        .wait_model_state(BACKFILLED, "waiting_for_history", Duration::from_secs(60))
        .await;
    assert_waiting(&entry, "9h15m");
    println!(
        "[{:>5.1?}] {BACKFILLED}: {}",
        started.elapsed(),
        entry["history"]
    );

    // The fresh metric: the baseline answers within two model steps of its
    // first scrape, with a band that is wide while the series is young.
    let query = format!("predicted_{FRESH}{{horizon=\"1h\"}}");
    let value = h.wait_value(&query, Duration::from_secs(180)).await;
    let value = value.unwrap_or_else(|| panic!("{query}: nothing within 3 minutes{}", h.diag()));
    println!("[{:>5.1?}] {query} = {value}", started.elapsed());
    let lower = h
        .value(&format!("predicted_lower_{FRESH}{{horizon=\"1h\"}}"))
        .await;
    let upper = h
        .value(&format!("predicted_upper_{FRESH}{{horizon=\"1h\"}}"))
        .await;
    assert!(
        lower < value && value < upper && upper - lower >= 0.01 * value,
        "band [{lower}, {upper}] around {value}"
    );
    let entry = h
        .wait_model_state(FRESH, "waiting_for_history", Duration::from_secs(60))
        .await;
    // Its first samples may have been too few to know the step (then 1m).
    let need = entry["history"]["needed"].as_str().unwrap_or_default();
    assert!(["9h15m", "9h24m"].contains(&need), "{entry}");
    assert_waiting(&entry, need);
    println!(
        "[{:>5.1?}] {FRESH}: {}",
        started.elapsed(),
        entry["history"]
    );

    // A misspelt name: empty without a warning, but said so in the log and
    // on the status page, apart from the families waiting for history.
    let query = format!("predicted_{MISSPELT}{{horizon=\"1h\"}}");
    assert_eq!(h.wait_value(&query, Duration::ZERO).await, None);
    let page = h.promcast_page("/").await;
    let (models, missing) = page
        .split_once("<h2>Not found upstream</h2>")
        .unwrap_or_else(|| panic!("no \"Not found upstream\" section:\n{page}"));
    assert!(
        missing.contains(&format!("<td>{MISSPELT}</td>")) && !models.contains(MISSPELT),
        "{page}"
    );
    assert!(
        models.contains("<td>waiting_for_history: ") && models.contains(" of ~9h"),
        "{page}"
    );
    let log_path = h.promcast.as_ref().expect("promcast started").log.clone();
    let log = fs::read_to_string(&log_path).expect("read promcast log");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("no source series") && l.contains(MISSPELT))
        .collect();
    assert!(
        lines.len() == 1 && lines[0].contains("level=info"),
        "{lines:?}\n{log}"
    );
    assert!(log.contains("waiting for history"), "{log}");

    // promcast's own metrics: waiting, nothing failed.
    let metrics = h.promcast_page("/metrics").await;
    let sum = |name: &str, label: &str| metric_sum(&metrics, name, &[label]);
    assert!(
        sum("promcast_models", "state=\"waiting_for_history\"") >= 1.0,
        "{metrics}"
    );
    assert_eq!(sum("promcast_models", "state=\"failed\""), 0.0, "{metrics}");
    assert_eq!(
        sum("promcast_training_runs_total", "result=\"failure\""),
        0.0
    );

    // Scraping has completed the back-filled history: the model trains
    // when it can, and answers.
    let entry = h
        .wait_model_state(BACKFILLED, "ready", Duration::from_secs(6 * 60))
        .await;
    assert_eq!(entry["predictor"], "lstm", "{entry}");
    assert!(
        entry["history"].is_null() && entry["error"].is_null(),
        "{entry}"
    );
    println!(
        "[{:>5.1?}] {BACKFILLED}: trained {entry}",
        started.elapsed()
    );
    let forecast = h
        .value(&format!("predicted_{BACKFILLED}{{horizon=\"1h\"}}"))
        .await;
    assert!(forecast.is_finite(), "{forecast}");

    // Prometheus saw all of it (once it has scraped promcast since the
    // training), and the shipped failure alerts never went pending or
    // firing.
    h.wait_promcast_scraped().await;
    let trained = "promcast_training_runs_total{result=\"success\"} >= 1";
    let seen = h.wait_value(trained, Duration::from_secs(60)).await;
    assert!(
        seen.is_some(),
        "{trained}: nothing within a minute{}",
        h.diag()
    );
    let seen = h
        .value("max_over_time(promcast_models{state=\"waiting_for_history\"}[15m])")
        .await;
    assert!(seen >= 1.0, "{seen}");
    for failure in [
        "max_over_time(promcast_models{state=\"failed\"}[15m])",
        "max_over_time(promcast_training_runs_total{result=\"failure\"}[15m])",
    ] {
        assert_eq!(h.value(failure).await, 0.0, "{failure}");
    }
    let alerts = "ALERTS{alertname=~\"PromcastTrainingFailures|PromcastModelsFailed\"}[15m]";
    let answer = h.instant(alerts, now_ms() / 1000).await;
    assert!(answer.series.is_empty(), "{:?}", answer.series);
    let rules = get_text(&h.client, &format!("{}/api/v1/rules", h.prom_url()))
        .await
        .expect("GET /api/v1/rules")
        .1;
    let rules: Value = serde_json::from_str(&rules).expect("rules are JSON");
    let evaluated: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter(|r| {
            ["PromcastTrainingFailures", "PromcastModelsFailed"]
                .contains(&r["name"].as_str().unwrap_or_default())
        })
        .collect();
    assert_eq!(evaluated.len(), 2, "{rules}");
    for rule in evaluated {
        assert!(
            rule["health"] == "ok" && rule["state"] == "inactive",
            "{rule}"
        );
    }
}

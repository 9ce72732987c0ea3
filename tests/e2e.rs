//! End-to-end test of forecasting through a real Prometheus.
//!
//! `forecasts_anomalies_and_restart_through_real_prometheus` back-fills a
//! week of a daily-cycle gauge into a real Prometheus 2.42 with `promtool`,
//! lists promcast as that Prometheus's `remote_read` target and then checks,
//! through Prometheus's own query API exactly as a user or Grafana would:
//! the synthetic `predicted_*` and `anomaly_score_*` series, that the LSTM
//! beats a flat forecast once trained, that plain queries are untouched, and
//! that a restarted promcast reloads its model instead of retraining.
//!
//! Two shorter scenarios on an empty Prometheus check the README's
//! `required_matchers` recipe for a stopped promcast, and that a configured
//! expression Prometheus refuses is reported when promcast starts.
//!
//! `quick_start_demo_queries_return_data` follows README.md's quick start:
//! promcast on its embedded demo, a fresh Prometheus with the README's
//! configuration (remote read, and a scrape of `/demo/metrics` for the
//! demo's own series), and every demo query of the README, which must
//! return data: the forecasts at once, what happened against what was
//! forecast from the first scrape on.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use promcast::calendar::now_ms;
use promcast::prompb;
use serde_json::Value;

mod common {
    pub mod exposition;
    pub mod family;
    pub mod harness;
    pub mod http;
    pub mod models;
    pub mod process;
    pub mod prometheus;
    pub mod readme;
    pub mod remote_read;
    pub mod restart;
    pub mod scenario;
    #[allow(dead_code)] // the harness can be secured; this suite never secures it
    pub mod secrets;
}

use common::family::{METRIC, PREDICTED};
use common::harness::{Harness, two_ports};
use common::http::{get_text, http_client};
use common::process::{require_binary, spawn_promcast};
use common::prometheus::{Answer, PROMETHEUS_BIN, PROMTOOL_BIN, Series};
use common::readme;
use common::remote_read::{
    MATCH_EQ, SAMPLES, STREAMED, decode_samples_answer, decode_streamed_answer, matcher,
    post_read_typed,
};
use common::restart::RELOAD_DEADLINE;
use common::scenario::{HOUR, History, MINUTE, backfill_history};

/// The anomaly scores of `METRIC`, as promcast serves them.
const ANOMALY: &str = "anomaly_score_e2e_cpu_usage_percent";
/// A family configured with a PromQL expression (read through query_range).
const EXPR_PREDICTED: &str = "predicted_e2e_cpu_smoothed";

// ---------------------------------------------------------------------------
// Scenario test
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn forecasts_anomalies_and_restart_through_real_prometheus() {
    require_binary(PROMETHEUS_BIN);
    require_binary(PROMTOOL_BIN);

    let tmp = tempfile::tempdir().expect("create temporary directory");
    let dir = tmp.path().to_path_buf();

    // 1. Back-fill a week of data with promtool.
    let (history, tsdb) = backfill_history(&dir);

    // 2. Start Prometheus with promcast as its remote_read target.
    let (prom_port, promcast_port) = two_ports();
    let mut h = Harness::new(dir, prom_port, promcast_port);
    h.start_prometheus(&tsdb);
    h.wait_prometheus_ready().await;

    // 3. Plain answers before promcast exists (its remote read fails, which
    //    Prometheus reports as warnings; only the data is kept).
    let end = history.end;
    let t0 = end - 3 * HOUR;
    let before_instant = h.instant(METRIC, t0).await.series;
    let before_range = h
        .range(METRIC, end - 2 * HOUR, end - HOUR, MINUTE)
        .await
        .series;
    assert_eq!(
        before_instant.len(),
        3,
        "back-filled data must be visible in Prometheus: {before_instant:?}{}",
        h.diag()
    );
    assert!(
        before_range.len() == 3 && before_range.iter().all(|s| s.points.len() == 61),
        "back-filled range query must have 3 series of 61 points: {before_range:?}{}",
        h.diag()
    );

    // 3b. Prometheus's own XOR chunks decode to its samples, and promcast's
    //     encoder reproduces them byte for byte.
    check_prometheus_chunks_match_our_codec(&h, end).await;

    // 4. Start promcast against that Prometheus.
    h.start_promcast();
    h.wait_promcast_up().await;

    // 5.–6. Forecasts are served at once (by the baseline while training).
    check_instant_forecasts(&mut h, end).await;
    check_range_forecast_has_every_step(&mut h, end).await;

    // 7. The LSTM gets trained in the background.
    let model = h.wait_model_ready().await;
    let version = model["version"].as_i64().unwrap_or(0);
    assert!(
        version >= 1,
        "a trained model has version >= 1: {model}{}",
        h.diag()
    );
    let validation_error = model["validation_error"].as_f64();
    assert!(
        validation_error.is_some_and(f64::is_finite),
        "a trained model reports a finite validation_error: {model}{}",
        h.diag()
    );
    let runs = h.training_runs().await;
    assert!(
        runs >= 1.0,
        "promcast_training_runs_total must count the training run, got {runs}{}",
        h.diag()
    );

    // 8. Accuracy against a flat (persistence) forecast.
    check_lstm_beats_flat_forecast(&mut h, end).await;

    // 9. Anomaly scores: the spike is anomalous, ordinary data is not.
    check_anomaly_scores(&mut h, &history).await;

    // 9b. A family defined by a PromQL expression is read through query_range.
    check_expression_family(&mut h, end).await;

    // 10. Plain queries are untouched by promcast; promcast is scraped.
    let after_instant = h.instant(METRIC, t0).await.series;
    let after_range = h
        .range(METRIC, end - 2 * HOUR, end - HOUR, MINUTE)
        .await
        .series;
    assert_eq!(
        before_instant,
        after_instant,
        "instant query of a plain metric must not change with promcast{}",
        h.diag()
    );
    assert_eq!(
        before_range,
        after_range,
        "range query of a plain metric must not change with promcast{}",
        h.diag()
    );
    h.wait_promcast_scraped().await;

    // 11. A restart reloads the persisted model instead of retraining.
    check_restart_reuses_model(&mut h, &model, end).await;
}

// ---------------------------------------------------------------------------
// Short scenarios on an empty Prometheus
// ---------------------------------------------------------------------------

/// The README's recipe for a stopped promcast: with `required_matchers:
/// {promcast: "true"}` Prometheus asks promcast only for selectors that
/// carry the label, so while promcast is down every other query (even
/// `up`) answers without a warning; once promcast is up it answers the
/// labelled selectors as if the label were not there.
#[tokio::test(flavor = "multi_thread")]
async fn required_matchers_spare_other_queries_a_stopped_promcast() {
    require_binary(PROMETHEUS_BIN);
    let tmp = tempfile::tempdir().expect("create temporary directory");
    let dir = tmp.path().to_path_buf();
    let (prom_port, promcast_port) = two_ports();
    let mut h = Harness::new(dir.clone(), prom_port, promcast_port);
    let config = format!(
        r#"global:
  scrape_interval: 1s
remote_read:
  - url: {url}/api/v1/read
    read_recent: true
    required_matchers:
      promcast: "true"
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:{prom_port}']
"#,
        url = h.promcast_url()
    );
    h.start_prometheus_with(&config, &dir.join("tsdb"));
    h.wait_prometheus_ready().await;
    let routed = "predicted_demo_cpu_usage_percent{promcast=\"true\", horizon=\"1h\"}";

    // promcast is down: only the selector with the label reaches it.
    let now = now_ms() / 1000;
    for query in ["up", "predicted_demo_cpu_usage_percent{horizon=\"1h\"}"] {
        let answer = h.instant(query, now).await;
        h.assert_no_warnings(query, &answer);
    }
    let answer = h.instant(routed, now).await;
    assert!(
        !answer.warnings.is_empty() && answer.series.is_empty(),
        "{routed} must reach the stopped promcast: {answer:?}{}",
        h.diag()
    );

    // promcast is up, on its demo: the labelled selector is answered.
    h.promcast = Some(spawn_promcast(
        &dir,
        promcast_port,
        None,
        "",
        &dir.join("promcast.log"),
    ));
    h.wait_promcast_up().await;
    let answer = h.instant_series(routed, now_ms() / 1000, 3).await;
    for series in &answer.series {
        assert!(
            series.labels.get("horizon").map(String::as_str) == Some("1h")
                && !series.labels.contains_key("promcast"),
            "{series:?}"
        );
    }
    let answer = h.instant("up", now_ms() / 1000).await;
    h.assert_no_warnings("up", &answer);
}

/// A configured expression that Prometheus refuses (`rate` of an instant
/// vector: a type error, beyond the check at load) is reported by field
/// when promcast starts, not at the family's first query.
#[tokio::test(flavor = "multi_thread")]
async fn an_expression_the_upstream_refuses_is_reported_at_start() {
    require_binary(PROMETHEUS_BIN);
    let tmp = tempfile::tempdir().expect("create temporary directory");
    let dir = tmp.path().to_path_buf();
    let (prom_port, promcast_port) = two_ports();
    let mut h = Harness::new(dir.clone(), prom_port, promcast_port);
    h.start_prometheus_with("global:\n  scrape_interval: 15s\n", &dir.join("tsdb"));
    h.wait_prometheus_ready().await;
    h.start_promcast_with(
        "series:\n  - name: fine\n    expr: up\n  - name: broken\n    expr: rate(up)\n",
    );
    h.wait_promcast_up().await;
    let log = h.promcast.as_ref().expect("promcast started").log.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("refuses this expression") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let line = text
        .lines()
        .find(|l| l.contains("refuses this expression"))
        .unwrap_or_else(|| panic!("no refusal logged at start{}", h.diag()));
    assert!(line.contains("series[1].expr"), "{line}");
    assert!(!text.contains("series[0].expr"), "{text}");
}

/// Step 3b: the reference check of the chunk codec against a real
/// Prometheus, whose `/api/v1/read` answers `STREAMED_XOR_CHUNKS` itself.
async fn check_prometheus_chunks_match_our_codec(h: &Harness, end: i64) {
    let query = |types: Vec<i32>| prompb::ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: (end - 6 * HOUR) * 1000,
            end_timestamp_ms: end * 1000,
            matchers: vec![matcher(MATCH_EQ, "__name__", METRIC)],
            ..Default::default()
        }],
        accepted_response_types: types,
    };
    let client = http_client();
    let prom = h.prom_url();
    let (status, _, body) = post_read_typed(&client, &prom, &query(vec![SAMPLES])).await;
    assert_eq!(status, 200, "SAMPLES read from Prometheus{}", h.diag());
    let samples = decode_samples_answer(&body);
    let (status, content_type, body) =
        post_read_typed(&client, &prom, &query(vec![STREAMED, SAMPLES])).await;
    assert_eq!(status, 200, "STREAMED read from Prometheus{}", h.diag());
    assert!(
        content_type.starts_with("application/x-streamed-protobuf"),
        "{content_type}"
    );
    let streamed = decode_streamed_answer(&body, true);
    assert_eq!(streamed.len(), 3, "three series streamed by Prometheus");
    assert_eq!(
        streamed, samples,
        "Prometheus's chunks must decode to the same samples as its SAMPLES answer"
    );
}

/// Step 5: instant queries of the forecast series through Prometheus.
async fn check_instant_forecasts(h: &mut Harness, end: i64) {
    let query = format!("{PREDICTED}{{horizon=\"1h\"}}");
    let answer = h.instant_series(&query, end, 3).await;
    let mut instances: Vec<&str> = Vec::new();
    for series in &answer.series {
        let instance = series.label("instance");
        assert_eq!(
            series.labels,
            labels(&[
                ("__name__", PREDICTED),
                ("instance", instance),
                ("job", "node"),
                ("horizon", "1h")
            ]),
            "labels of {query}{}",
            h.diag()
        );
        let value = series.single_value();
        assert!(
            value.is_finite(),
            "{query}: non-finite value in {series:?}{}",
            h.diag()
        );
        instances.push(instance);
    }
    instances.sort_unstable();
    assert_eq!(
        instances,
        ["a", "b", "c"],
        "instances of {query}{}",
        h.diag()
    );

    // Without a horizon matcher: one series per configured horizon.
    let query = format!("{PREDICTED}{{instance=\"a\"}}");
    let answer = h.instant(&query, end).await;
    h.assert_no_warnings(&query, &answer);
    let mut horizons: Vec<&str> = Vec::new();
    for series in &answer.series {
        let horizon = series.label("horizon");
        assert_eq!(
            series.labels,
            labels(&[
                ("__name__", PREDICTED),
                ("instance", "a"),
                ("job", "node"),
                ("horizon", horizon)
            ]),
            "labels of {query}{}",
            h.diag()
        );
        assert!(
            series.single_value().is_finite(),
            "{query}: non-finite value in {series:?}{}",
            h.diag()
        );
        horizons.push(horizon);
    }
    horizons.sort_unstable_by_key(|horizon| match *horizon {
        "15m" => 0,
        "1h" => 1,
        "6h" => 2,
        _ => 3,
    });
    assert_eq!(
        horizons,
        ["15m", "1h", "6h"],
        "{query} must give one series per configured horizon: {:?}{}",
        answer.series,
        h.diag()
    );
}

/// Step 6: a one-minute range query gets a forecast at every step.
async fn check_range_forecast_has_every_step(h: &mut Harness, end: i64) {
    let query = format!("{PREDICTED}{{horizon=\"1h\",instance=\"a\"}}");
    let start = end - 6 * HOUR;
    let answer = h.range_series(&query, start, end, MINUTE, 1).await;
    let expected: Vec<i64> = (0..=360).map(|k| (start + k * MINUTE) * 1000).collect();
    let got: Vec<i64> = answer.series[0].points.iter().map(|p| p.0).collect();
    assert_eq!(
        got,
        expected,
        "{query} over 6h at 60s steps must have a value at every one of the 361 steps{}",
        h.diag()
    );
    assert!(
        answer.series[0].values().iter().all(|v| v.1.is_finite()),
        "{query}: non-finite values{}",
        h.diag()
    );
}

/// Step 8: mean absolute error of the forecasts against the actual values one
/// horizon later, compared with the flat forecast "the value stays as it is".
async fn check_lstm_beats_flat_forecast(h: &mut Harness, end: i64) {
    let step = 5 * MINUTE;
    let actual = h.range(METRIC, end - 30 * HOUR, end, step).await;
    assert_eq!(
        actual.series.len(),
        3,
        "{METRIC}: {:?}{}",
        actual.series,
        h.diag()
    );
    let mut actual_at: HashMap<(String, i64), f64> = HashMap::new();
    for series in &actual.series {
        for (ts, value) in series.values() {
            actual_at.insert((series.label("instance").to_string(), ts), value);
        }
    }

    for (horizon, horizon_secs, from, to) in [
        ("1h", HOUR, end - 24 * HOUR, end - HOUR),
        ("6h", 6 * HOUR, end - 30 * HOUR, end - 6 * HOUR),
    ] {
        let query = format!("{PREDICTED}{{horizon=\"{horizon}\"}}");
        let predicted = h.range_series(&query, from, to, step, 3).await;

        let (mut lstm_sum, mut flat_sum, mut pairs) = (0.0, 0.0, 0usize);
        for series in &predicted.series {
            let instance = series.label("instance").to_string();
            for (ts, forecast) in series.values() {
                let now = actual_at.get(&(instance.clone(), ts));
                let later = actual_at.get(&(instance.clone(), ts + horizon_secs * 1000));
                if let (Some(now), Some(later)) = (now, later) {
                    lstm_sum += (forecast - later).abs();
                    flat_sum += (now - later).abs();
                    pairs += 1;
                }
            }
        }
        let steps = ((to - from) / step + 1) as usize;
        assert!(
            pairs * 10 >= 3 * steps * 9,
            "horizon {horizon}: only {pairs} forecast/actual pairs of {} expected{}",
            3 * steps,
            h.diag()
        );
        let lstm = lstm_sum / pairs as f64;
        let flat = flat_sum / pairs as f64;
        println!(
            "horizon {horizon}: mean abs error lstm {lstm:.3}, flat {flat:.3} ({pairs} points)"
        );
        assert!(
            lstm < flat,
            "horizon {horizon}: the LSTM (MAE {lstm:.3}) must beat a flat forecast (MAE {flat:.3}){}",
            h.diag()
        );
    }
}

/// Step 9: the injected spike scores > 1; ordinary data mostly scores < 1.
async fn check_anomaly_scores(h: &mut Harness, history: &History) {
    let query = format!("{ANOMALY}{{instance=\"b\"}}");
    let answer = h.instant_series(&query, history.spike_ts, 1).await;
    assert_eq!(
        answer.series[0].labels,
        labels(&[("__name__", ANOMALY), ("instance", "b"), ("job", "node")]),
        "labels of {query}{}",
        h.diag()
    );
    let score = answer.series[0].single_value();
    println!("anomaly score at the spike: {score:.3}");
    assert!(
        score > 1.0,
        "{query} at the spike must be > 1, got {score}{}",
        h.diag()
    );

    let query = format!("{ANOMALY}{{instance=\"a\"}}");
    let (start, end, step) = (history.end - 24 * HOUR, history.end, 5 * MINUTE);
    let answer = h.range_series(&query, start, end, step, 1).await;
    let values = answer.series[0].values();
    let steps = ((end - start) / step + 1) as usize;
    assert!(
        values.len() * 10 >= steps * 9,
        "{query}: only {} of {steps} steps have a score{}",
        values.len(),
        h.diag()
    );
    let normal = values.iter().filter(|v| v.1 < 1.0).count();
    let share = normal as f64 / values.len() as f64;
    println!(
        "anomaly score < 1 for {:.1} % of normal data",
        share * 100.0
    );
    assert!(
        share >= 0.9,
        "{query}: at least 90 % of normal data must score < 1, got {:.1} %{}",
        share * 100.0,
        h.diag()
    );
}

/// Step 9b: a configured expression family answers with the expression's
/// label sets (no `__name__` of its own) and values on its scale.
async fn check_expression_family(h: &mut Harness, end: i64) {
    let query = format!("{EXPR_PREDICTED}{{horizon=\"15m\"}}");
    let answer = h.instant_series(&query, end, 3).await;
    for series in &answer.series {
        let instance = series.label("instance").to_owned();
        assert_eq!(
            series.labels,
            labels(&[
                ("__name__", EXPR_PREDICTED),
                ("horizon", "15m"),
                ("instance", &instance),
                ("job", "node")
            ]),
            "labels of {query}{}",
            h.diag()
        );
        let value = series.single_value();
        assert!(
            (20.0..=80.0).contains(&value),
            "{query}: {value} is off the source's 30..70 range{}",
            h.diag()
        );
    }
}

/// Step 11: restart promcast with the same model directory.
async fn check_restart_reuses_model(h: &mut Harness, model: &Value, end: i64) {
    let (version, trained_at) = (model["version"].clone(), model["trained_at"].clone());
    h.restart_promcast().await;

    // Using the family makes promcast load it if it does not at start.
    let query = format!("{PREDICTED}{{horizon=\"1h\"}}");
    h.instant_series(&query, end, 3).await;

    let deadline = Instant::now() + RELOAD_DEADLINE;
    let reloaded = loop {
        let entry = h.model_entry(METRIC).await;
        if let Some(ready) = &entry
            && ready["state"] == "ready"
        {
            break ready.clone();
        }
        if Instant::now() >= deadline {
            panic!(
                "after a restart the persisted model must be ready within {RELOAD_DEADLINE:?}; \
                 last /api/v1/models entry: {entry:?}{}",
                h.diag()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        (&reloaded["version"], &reloaded["trained_at"]),
        (&version, &trained_at),
        "the reloaded model must be the one trained before the restart: {reloaded}{}",
        h.diag()
    );
    let runs = h.training_runs().await;
    assert!(
        runs == 0.0,
        "a restarted promcast with a persisted model must not retrain \
         (promcast_training_runs_total = {runs}){}",
        h.diag()
    );
}

// ---------------------------------------------------------------------------
// Quick start
// ---------------------------------------------------------------------------

/// The demo's families and their series counts.
const DEMO_SERIES: [(&str, usize); 4] = [
    ("demo_cpu_usage_percent", 3),
    ("demo_filesystem_avail_bytes", 1),
    ("demo_memory_used_bytes", 1),
    ("demo_http_request_duration_seconds_p99", 1),
];

#[tokio::test(flavor = "multi_thread")]
async fn quick_start_demo_queries_return_data() {
    require_binary(PROMETHEUS_BIN);
    let tmp = tempfile::tempdir().expect("create temporary directory");
    let dir = tmp.path().to_path_buf();
    let (prom_port, promcast_port) = two_ports();
    let mut h = Harness::new(dir.clone(), prom_port, promcast_port);

    // promcast without an upstream: the demo. A small training budget keeps
    // the demo's background training from crowding the other test.
    let config = "model:\n  max_epochs: 2\n  windows_per_epoch: 128\n  patience: 1\n";
    let log = dir.join("promcast-demo.log");
    h.promcast = Some(spawn_promcast(&dir, promcast_port, None, config, &log));
    h.wait_promcast_up().await;
    check_demo_metrics_endpoint(&h).await;

    // Prometheus as the README configures it, scraping every 2 s rather
    // than the default minute.
    let yaml = readme::blocks("## Quick start", "yaml");
    assert_eq!(
        yaml.len(),
        1,
        "the quick start's one configuration: {yaml:?}"
    );
    let config = format!("global:\n  scrape_interval: 2s\n{}", yaml[0])
        .replace("localhost:9201", &format!("127.0.0.1:{promcast_port}"));
    let tsdb = dir.join("tsdb");
    std::fs::create_dir_all(&tsdb).expect("create TSDB directory");
    h.start_prometheus_with(&config, &tsdb);
    h.wait_prometheus_ready().await;

    let queries: Vec<String> = readme::blocks("## Quick start", "promql")
        .iter()
        .flat_map(|block| readme::queries(block))
        .collect();
    assert!(
        queries.len() >= 4 && queries.iter().any(|q| q.contains("ignoring(horizon)")),
        "the quick start's queries, one of them against the actual series: {queries:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    for query in &queries {
        loop {
            let answer = h.instant(query, promcast::calendar::now_ms() / 1000).await;
            h.assert_no_warnings(query, &answer);
            if !answer.series.is_empty() {
                println!("ok ({} series): {query}", answer.series.len());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "README.md's quick start: `{query}` returned no data{}",
                h.diag()
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// `/demo/metrics` holds every demo series once, at the latest minute,
/// with its timestamp.
async fn check_demo_metrics_endpoint(h: &Harness) {
    let url = format!("{}/demo/metrics", h.promcast_url());
    let (status, body) = get_text(&h.client, &url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}{}", h.diag()));
    assert_eq!(status, 200, "GET {url}: {body}{}", h.diag());
    let now = promcast::calendar::now_ms();
    for (family, count) in DEMO_SERIES {
        let lines: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .collect();
        assert_eq!(lines.len(), count, "{family} in:\n{body}");
        for line in lines {
            let mut fields = line.rsplitn(3, ' ');
            let ts = fields.next().and_then(|t| t.parse::<i64>().ok());
            let value = fields.next().and_then(|v| v.parse::<f64>().ok());
            assert!(
                value.is_some_and(f64::is_finite)
                    && ts.is_some_and(|ts| ts % 60_000 == 0 && (0..=120_000).contains(&(now - ts))),
                "a value at the latest minute, with its timestamp: {line} (now {now})"
            );
        }
    }
    assert!(
        body.contains(r#"demo_cpu_usage_percent{instance="web-1:9100",job="node"} "#),
        "the demo's own labels:\n{body}"
    );
}

// ---------------------------------------------------------------------------
// Query helpers of this suite
// ---------------------------------------------------------------------------

impl Harness {
    /// A range query that must answer without warnings and with exactly
    /// `count` series.
    async fn range_series(
        &mut self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        count: usize,
    ) -> Answer {
        let answer = self.range(query, start, end, step).await;
        self.assert_no_warnings(query, &answer);
        assert_eq!(
            answer.series.len(),
            count,
            "{query} over {start}..{end} must give {count} series: {:?}{}",
            answer.series,
            self.diag()
        );
        answer
    }
}

impl Series {
    /// The value of label `name` ("" if the series has none).
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// A label set from (name, value) pairs.
fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

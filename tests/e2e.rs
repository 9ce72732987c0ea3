//! End-to-end tests of promcast with real components only.
//!
//! `forecasts_anomalies_and_restart_through_real_prometheus` back-fills a
//! week of a daily-cycle gauge into a real Prometheus 2.42 with `promtool`,
//! lists promcast as that Prometheus's `remote_read` target and then checks,
//! through Prometheus's own query API exactly as a user or Grafana would:
//! the synthetic `predicted_*` and `anomaly_score_*` series, that the LSTM
//! beats a flat forecast once trained, that plain queries are untouched, and
//! that a restarted promcast reloads its model instead of retraining.
//!
//! `remote_read_rejects_malformed_input_and_keeps_serving` talks the remote
//! read protocol to promcast directly with broken bodies and checks that
//! each is refused with a 4xx and a reason, and that promcast keeps serving.
//!
//! Prometheus and promtool are required: Debian's `prometheus` package puts
//! them in /usr/bin. A missing binary fails the test (it never skips), so CI
//! cannot go green without having exercised the real protocol.
//!
//! All traffic stays on 127.0.0.1, every wait has a deadline, and every child
//! process is owned by a guard that kills and reaps it on drop (also when an
//! assertion panics).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufWriter, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promcast::{chunks, prompb};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
const PROMTOOL_BIN: &str = "/usr/bin/promtool";

const METRIC: &str = "e2e_cpu_usage_percent";
const PREDICTED: &str = "predicted_e2e_cpu_usage_percent";
const ANOMALY: &str = "anomaly_score_e2e_cpu_usage_percent";
/// A family configured with a PromQL expression (read through query_range).
const EXPR_PREDICTED: &str = "predicted_e2e_cpu_smoothed";

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// The back-filled history: the 7-day training window plus some slack so the
/// window is full whatever promcast's exact cut-off is.
const HISTORY: i64 = 7 * DAY + 3 * HOUR;
/// Where the one injected spike sits, counted back from the end of the data.
const SPIKE_BEFORE_END: i64 = 36 * HOUR;
const SPIKE_HEIGHT: f64 = 60.0;
/// Source series: instance label and phase of the daily cycle.
const INSTANCES: [(&str, f64); 3] = [("a", 0.0), ("b", 2.1), ("c", 4.2)];

/// Training 3 series × 7 days takes 10–60 s here; CI machines can be slower.
const MODEL_READY_DEADLINE: Duration = Duration::from_secs(6 * 60);
/// A restarted promcast must serve its persisted model this fast.
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);
/// Per-request limit: above Prometheus's `remote_timeout` (1m) so that a slow
/// promcast shows up as a Prometheus warning rather than a client timeout.
const HTTP_TIMEOUT: Duration = Duration::from_secs(150);

/// `prometheus.LabelMatcher.Type` values from proto/remote.proto (the wire
/// contract), written as numbers so the test does not depend on how the
/// generated enum module is named.
const MATCH_EQ: i32 = 0;
const MATCH_RE: i32 = 2;
/// `ReadRequest.ResponseType` values.
const SAMPLES: i32 = 0;
const STREAMED: i32 = 1;

/// promcast's configuration for both tests: the three default horizons and a
/// small training budget so the test finishes in minutes.
const PROMCAST_CONFIG: &str = "\
defaults:
  horizons: [15m, 1h, 6h]
  train_window: 7d
series:
  - name: e2e_cpu_smoothed
    expr: avg_over_time(e2e_cpu_usage_percent[5m])
model:
  max_epochs: 20
  max_training_time: 3m
";

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
    let history = History::ending_now();
    let openmetrics = dir.join("history.om");
    history.write_openmetrics(&openmetrics);
    let tsdb = dir.join("tsdb");
    fs::create_dir_all(&tsdb).expect("create TSDB directory");
    run_promtool_backfill(&openmetrics, &tsdb, &dir.join("promtool.log"));

    // 2. Start Prometheus with promcast as its remote_read target.
    let promcast_port = free_port();
    let mut prom_port = free_port();
    while prom_port == promcast_port {
        prom_port = free_port();
    }
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
// Bad-input test
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn remote_read_rejects_malformed_input_and_keeps_serving() {
    // No upstream: nothing listens on this port once the listener is dropped.
    let upstream_port = free_port();
    let Standalone {
        _dir,
        promcast,
        client,
        base,
    } = Standalone::start(Some(upstream_port), PROMCAST_CONFIG).await;

    let valid = read_request(&[
        matcher(MATCH_EQ, "__name__", PREDICTED),
        matcher(MATCH_EQ, "horizon", "1h"),
        matcher(MATCH_RE, "instance", "a|b|c"),
        matcher(MATCH_EQ, "job", "node"),
    ]);
    let valid_snappy = snappy(&valid.encode_to_vec());
    let mut rng = StdRng::seed_from_u64(7);
    // 0x0F is field 1 with wire type 7, which does not exist: never protobuf.
    let mut not_protobuf = vec![0x0F_u8; 256];
    rng.fill(&mut not_protobuf[1..]);
    let bad_regex = read_request(&[matcher(MATCH_RE, "__name__", "predicted_(")]);

    let cases: [(&str, Vec<u8>, &[u16]); 5] = [
        (
            "garbage bytes",
            b"\xff\xfe this is neither snappy nor protobuf \x00\x01".to_vec(),
            &[400],
        ),
        (
            "truncated snappy ReadRequest",
            valid_snappy[..valid_snappy.len() / 2].to_vec(),
            &[400],
        ),
        (
            "snappy of non-protobuf bytes",
            snappy(&not_protobuf),
            &[400],
        ),
        (
            "snappy header declaring 2 GiB",
            vec![0x80, 0x80, 0x80, 0x80, 0x08, 0x00, 0x01, 0x02, 0x03],
            &[400, 413],
        ),
        (
            "invalid regex matcher",
            snappy(&bad_regex.encode_to_vec()),
            &[400],
        ),
    ];
    for (what, body, allowed) in cases {
        let (status, body) = post_read(&client, &base, body)
            .await
            .unwrap_or_else(|e| panic!("{what}: request failed: {e}{}", log_section(&promcast)));
        let text = String::from_utf8(body.clone()).unwrap_or_default();
        println!("{what}: HTTP {status}: {}", text.trim());
        assert!(
            allowed.contains(&status),
            "{what}: expected HTTP {allowed:?}, got {status} ({:?}){}",
            String::from_utf8_lossy(&body),
            log_section(&promcast)
        );
        assert!(
            !text.trim().is_empty(),
            "{what}: the error body must be a non-empty text reason, got {body:?}{}",
            log_section(&promcast)
        );
    }

    assert_eq!(
        get_status(&client, &format!("{base}/-/healthy")).await,
        Some(200),
        "promcast must stay healthy after bad input{}",
        log_section(&promcast)
    );

    // A valid request for a plain metric: one (empty) result, SAMPLES format.
    let up = read_request(&[matcher(MATCH_EQ, "__name__", "up")]);
    let (status, content_type, body) = post_read_typed(&client, &base, &up).await;
    assert_eq!(
        status,
        200,
        "read request for up: {:?}{}",
        String::from_utf8_lossy(&body),
        log_section(&promcast)
    );
    assert!(
        content_type.starts_with("application/x-protobuf"),
        "a SAMPLES answer is application/x-protobuf, got {content_type:?}"
    );
    let decoded = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("the answer must be snappy block format");
    let answer = prompb::ReadResponse::decode(decoded.as_slice())
        .expect("the answer must be a protobuf ReadResponse");
    assert_eq!(answer.results.len(), 1, "one result per query: {answer:?}");
    assert!(
        answer.results[0].timeseries.is_empty(),
        "a non-synthetic selector gets no series: {answer:?}"
    );

    // A synthetic selector needs the upstream, which is down: a 5xx with the
    // reason (Prometheus shows it as a query warning), and the server lives on.
    let (status, body) = post_read(&client, &base, valid_snappy.clone())
        .await
        .unwrap_or_else(|e| panic!("synthetic read failed: {e}{}", log_section(&promcast)));
    let reason = String::from_utf8_lossy(&body).to_string();
    assert!(
        (500..600).contains(&status) && reason.contains("upstream"),
        "a synthetic read with the upstream down must fail with a reason, got {status} {reason:?}{}",
        log_section(&promcast)
    );
    assert_eq!(
        get_status(&client, &format!("{base}/-/healthy")).await,
        Some(200),
        "promcast must stay healthy while its upstream is down{}",
        log_section(&promcast)
    );

    // The rejections and the upstream failure are visible in promcast's own metrics.
    let (status, metrics) = get_text(&client, &format!("{base}/metrics"))
        .await
        .unwrap_or_else(|e| panic!("GET /metrics failed: {e}{}", log_section(&promcast)));
    assert_eq!(status, 200, "GET /metrics{}", log_section(&promcast));
    let rejected = metric_sum(&metrics, "promcast_http_requests_total", &["code=\"400\""]);
    assert!(
        rejected >= 4.0,
        "promcast_http_requests_total{{code=\"400\"}} must count the rejected reads, got \
         {rejected}:\n{metrics}"
    );
    let upstream_errors = metric_sum(&metrics, "promcast_upstream_errors_total", &[]);
    assert!(
        upstream_errors >= 1.0,
        "promcast_upstream_errors_total must count the failed upstream read, got \
         {upstream_errors}:\n{metrics}"
    );
}

/// promcast's STREAMED_XOR_CHUNKS answer (chosen because the client lists it
/// first) carries exactly the samples of its SAMPLES answer, one series per
/// frame. Served from the embedded demo: no upstream needed.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_chunks_carry_the_samples_answer() {
    let Standalone {
        _dir,
        promcast,
        client,
        base,
    } = Standalone::start(None, PROMCAST_CONFIG).await;

    let end = now_ms() / 60_000 * 60_000;
    let query = |name: &str, types: Vec<i32>| prompb::ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: end - 6 * HOUR * 1000,
            end_timestamp_ms: end,
            matchers: vec![matcher(MATCH_EQ, "__name__", name)],
            hints: Some(prompb::ReadHints {
                step_ms: 60_000,
                ..Default::default()
            }),
        }],
        accepted_response_types: types,
    };
    let name = "predicted_demo_cpu_usage_percent";
    // The demo trains in the background: retry if its model switched from the
    // baseline to the LSTM between the reads being compared.
    let mut compared = false;
    for _ in 0..3 {
        let (_, _, first) = post_read_typed(&client, &base, &query(name, vec![SAMPLES])).await;
        let (status, content_type, streamed) =
            post_read_typed(&client, &base, &query(name, vec![STREAMED, SAMPLES])).await;
        let (_, _, last) = post_read_typed(&client, &base, &query(name, vec![SAMPLES])).await;
        assert_eq!(status, 200, "streamed read{}", log_section(&promcast));
        assert_eq!(
            content_type,
            "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
        );
        let (first, last) = (decode_samples_answer(&first), decode_samples_answer(&last));
        if first != last {
            continue;
        }
        let streamed = decode_streamed_answer(&streamed, false);
        assert_eq!(streamed.len(), 9, "3 instances × 3 horizons");
        assert!(
            streamed.values().all(|s| s.len() == 361),
            "a sample per minute for 6 h"
        );
        assert_eq!(streamed, first, "streamed and SAMPLES answers must agree");
        compared = true;
        break;
    }
    assert!(
        compared,
        "the demo's predictor kept changing{}",
        log_section(&promcast)
    );

    // A non-synthetic selector streams nothing at all: no empty frames.
    let (status, _, body) = post_read_typed(&client, &base, &query("up", vec![STREAMED])).await;
    assert_eq!((status, body.len()), (200, 0));
}

/// An upstream that accepts connections and never answers: promcast must
/// answer at its request deadline, well before Prometheus's remote_timeout,
/// and count it.
#[tokio::test(flavor = "multi_thread")]
async fn slow_upstream_is_cut_off_at_the_request_deadline() {
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind the silent upstream");
    let upstream_port = silent.local_addr().expect("silent upstream address").port();
    // Holds accepted connections open without a byte of answer; the thread
    // ends with the test process.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(64) {
            held.push(stream);
        }
    });
    let config = format!("{PROMCAST_CONFIG}limits:\n  request_timeout: 2s\n");
    let Standalone {
        _dir,
        promcast,
        client,
        base,
    } = Standalone::start(Some(upstream_port), &config).await;

    let request = read_request(&[matcher(MATCH_EQ, "__name__", PREDICTED)]);
    let started = Instant::now();
    let (status, _, body) = post_read_typed(&client, &base, &request).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{}", log_section(&promcast));
    assert!(
        elapsed < Duration::from_secs(10),
        "answered after {elapsed:?}, not at the 2 s deadline{}",
        log_section(&promcast)
    );
    assert!(
        decode_samples_answer(&body).is_empty(),
        "nothing was computed in time"
    );
    let (_, metrics) = get_text(&client, &format!("{base}/metrics"))
        .await
        .expect("GET /metrics");
    let cut = metric_sum(&metrics, "promcast_request_deadline_exceeded_total", &[]);
    assert!(cut >= 1.0, "the cut-off must be counted:\n{metrics}");
}

/// An upstream that fails (HTTP 500, then a body that is not a remote-read
/// answer) and then recovers: every failure is a 502 with its reason and a
/// counted error, and promcast serves again as soon as the upstream does,
/// without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn failing_upstream_is_reported_and_recovered_from() {
    let upstream = TcpListener::bind("127.0.0.1:0").expect("bind the faulty upstream");
    let upstream_port = upstream
        .local_addr()
        .expect("faulty upstream address")
        .port();
    let mode = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(FAULT_500));
    let serving = std::sync::Arc::clone(&mode);
    std::thread::spawn(move || {
        for stream in upstream.incoming().take(256).flatten() {
            serve_faulty(stream, serving.load(std::sync::atomic::Ordering::SeqCst));
        }
    });
    let Standalone {
        _dir,
        promcast,
        client,
        base,
    } = Standalone::start(Some(upstream_port), PROMCAST_CONFIG).await;
    let request = read_request(&[matcher(MATCH_EQ, "__name__", PREDICTED)]);

    for (fault, reason, kind) in [
        (FAULT_500, "HTTP 500", "status"),
        (FAULT_GARBAGE, "could not be decoded", "decode"),
    ] {
        mode.store(fault, std::sync::atomic::Ordering::SeqCst);
        let (status, _, body) = post_read_typed(&client, &base, &request).await;
        let text = String::from_utf8_lossy(&body);
        assert!(
            status == 502 && text.contains(reason),
            "upstream fault {kind}: expected 502 naming {reason:?}, got {status} {text:?}{}",
            log_section(&promcast)
        );
        let (_, metrics) = get_text(&client, &format!("{base}/metrics"))
            .await
            .expect("GET /metrics");
        let counted = metric_sum(
            &metrics,
            "promcast_upstream_errors_total",
            &[&format!("kind=\"{kind}\"")],
        );
        assert!(counted >= 1.0, "{kind} errors must be counted:\n{metrics}");
    }

    mode.store(FAULT_NONE, std::sync::atomic::Ordering::SeqCst);
    let (status, _, body) = post_read_typed(&client, &base, &request).await;
    assert_eq!(status, 200, "{}", log_section(&promcast));
    let answer = decode_samples_answer(&body);
    assert_eq!(
        answer.len(),
        3,
        "after recovery: one series per configured horizon: {answer:?}{}",
        log_section(&promcast)
    );
}

/// What the faulty upstream answers.
const FAULT_NONE: u8 = 0;
const FAULT_500: u8 = 1;
const FAULT_GARBAGE: u8 = 2;

/// Answers one HTTP request on `stream` as the faulty upstream: an error,
/// garbage, or a real remote-read answer with one series of the test
/// metric sampled every minute over the requested range.
fn serve_faulty(mut stream: std::net::TcpStream, mode: u8) {
    use std::io::Read;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 8192];
    let body_start = loop {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..body_start]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < body_start + length {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let (status, body) = match mode {
        FAULT_500 => ("500 Internal Server Error", b"boom".to_vec()),
        FAULT_GARBAGE => ("200 OK", b"<html>not a remote-read answer</html>".to_vec()),
        _ => (
            "200 OK",
            snappy(&faulty_answer(&request[body_start..]).encode_to_vec()),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// The healthy upstream's answer to a remote-read request body.
fn faulty_answer(body: &[u8]) -> prompb::ReadResponse {
    let request = snap::raw::Decoder::new()
        .decompress_vec(body)
        .ok()
        .and_then(|raw| prompb::ReadRequest::decode(raw.as_slice()).ok())
        .unwrap_or_default();
    let results = request
        .queries
        .iter()
        .map(|q| {
            let wanted = q
                .matchers
                .iter()
                .any(|m| m.name == "__name__" && m.value == METRIC);
            let first = (q.start_timestamp_ms / 60_000 + 1) * 60_000;
            let samples = (first..=q.end_timestamp_ms)
                .step_by(60_000)
                .map(|t| prompb::Sample {
                    value: 50.0 + (t as f64 / 3.6e6).sin(),
                    timestamp: t,
                })
                .collect();
            prompb::QueryResult {
                timeseries: if wanted {
                    vec![prompb::TimeSeries {
                        labels: vec![
                            prompb::Label {
                                name: "__name__".into(),
                                value: METRIC.into(),
                            },
                            prompb::Label {
                                name: "instance".into(),
                                value: "x".into(),
                            },
                        ],
                        samples,
                    }]
                } else {
                    Vec::new()
                },
            }
        })
        .collect();
    prompb::ReadResponse { results }
}

/// 200 concurrent clients send a mix of synthetic and plain remote reads
/// over several demo families for a bounded time: every answer must be a
/// decodable 200. Prints throughput and latency percentiles.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_remote_reads_all_succeed() {
    const CLIENTS: usize = 200;
    const PER_CLIENT: usize = 40;
    const DURATION: Duration = Duration::from_secs(8);
    let Standalone {
        _dir,
        mut promcast,
        client,
        base,
    } = Standalone::start(None, PROMCAST_CONFIG).await;

    let end = now_ms();
    let query = |name: &str, span_ms: i64, step_ms: i64| prompb::ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: end - span_ms,
            end_timestamp_ms: end,
            matchers: vec![matcher(MATCH_EQ, "__name__", name)],
            hints: Some(prompb::ReadHints {
                step_ms,
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    let bodies: Vec<Vec<u8>> = [
        query("predicted_demo_cpu_usage_percent", 300_000, 0),
        query(
            "anomaly_score_demo_http_request_duration_seconds_p99",
            3_600_000,
            60_000,
        ),
        query("predicted_upper_demo_filesystem_avail_bytes", 300_000, 0),
        query("predicted_demo_memory_used_bytes", 3_600_000, 60_000),
        query("up", 300_000, 0),
        query("node_cpu_seconds_total", 3_600_000, 15_000),
    ]
    .iter()
    .map(|r| snappy(&r.encode_to_vec()))
    .collect();
    let bodies = std::sync::Arc::new(bodies);
    let started = Instant::now();
    let deadline = started + DURATION;
    let mut tasks = Vec::with_capacity(CLIENTS);
    for c in 0..CLIENTS {
        let client = client.clone();
        let base = base.clone();
        let bodies = std::sync::Arc::clone(&bodies);
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for i in 0..PER_CLIENT {
                if Instant::now() >= deadline {
                    break;
                }
                let body = bodies[(c + i) % bodies.len()].clone();
                let sent = Instant::now();
                let outcome = match post_read(&client, &base, body).await {
                    Ok((200, answer)) => snap::raw::Decoder::new()
                        .decompress_vec(&answer)
                        .ok()
                        .and_then(|raw| prompb::ReadResponse::decode(raw.as_slice()).ok())
                        .map(|_| ())
                        .ok_or_else(|| "undecodable answer".to_owned()),
                    Ok((status, answer)) => Err(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&answer)
                    )),
                    Err(e) => Err(e.to_string()),
                };
                results.push((sent.elapsed(), outcome));
            }
            results
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        for (latency, outcome) in task.await.expect("client task") {
            latencies.push(latency);
            if let Err(e) = outcome {
                errors.push(e);
            }
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "{} requests from {CLIENTS} clients in {elapsed:.1?}: {:.0} req/s, p50 {:.1?}, p99 {:.1?}, {} errors",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        errors.len()
    );
    assert!(
        latencies.len() >= CLIENTS,
        "every client got at least one answer"
    );
    assert!(
        errors.is_empty(),
        "{} of {} requests failed, e.g. {:?}{}",
        errors.len(),
        latencies.len(),
        &errors[..errors.len().min(3)],
        log_section(&promcast)
    );
    assert_eq!(promcast.exited(), None, "promcast survived the load");
}

/// Samples (time, value bits) of each series, keyed by its sorted labels.
type SeriesSamples = BTreeMap<Vec<(String, String)>, Vec<(i64, u64)>>;

/// Samples of each series of a SAMPLES answer, keyed by labels.
fn decode_samples_answer(body: &[u8]) -> SeriesSamples {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .expect("SAMPLES answer is snappy");
    let answer = prompb::ReadResponse::decode(raw.as_slice()).expect("ReadResponse");
    answer
        .results
        .into_iter()
        .flat_map(|r| r.timeseries)
        .map(|ts| {
            (
                ts.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                ts.samples
                    .iter()
                    .map(|s| (s.timestamp, s.value.to_bits()))
                    .collect(),
            )
        })
        .collect()
}

/// Samples of each series of a STREAMED_XOR_CHUNKS answer, checking the
/// framing rules on the way: one non-empty series per frame, at most 120
/// samples per chunk, chunk bounds equal to its samples' times, sorted
/// labels, no label set twice. With `reencode`, promcast's encoder must
/// reproduce every chunk's bytes exactly.
fn decode_streamed_answer(body: &[u8], reencode: bool) -> SeriesSamples {
    let frames = chunks::read_frames(body, 50_000_000).expect("valid frames");
    let mut out = BTreeMap::new();
    for frame in frames {
        assert_eq!(frame.query_index, 0);
        assert_eq!(frame.chunked_series.len(), 1, "one series per frame");
        let series = &frame.chunked_series[0];
        let labels: Vec<(String, String)> = series
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        assert!(
            labels.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted labels: {labels:?}"
        );
        assert!(!series.chunks.is_empty(), "no empty series");
        let mut samples = Vec::new();
        for chunk in &series.chunks {
            let decoded = chunks::decode_xor(&chunk.data).expect("valid XOR chunk");
            assert!(!decoded.is_empty() && decoded.len() <= chunks::MAX_SAMPLES_PER_CHUNK);
            assert_eq!(chunk.min_time_ms, decoded[0].0);
            assert_eq!(chunk.max_time_ms, decoded[decoded.len() - 1].0);
            if reencode {
                assert_eq!(
                    chunks::encode_xor(&decoded).expect("encodable samples"),
                    chunk.data,
                    "promcast's XOR encoding differs from Prometheus's"
                );
            }
            samples.extend(decoded.iter().map(|(t, v)| (*t, v.to_bits())));
        }
        assert!(
            out.insert(labels.clone(), samples).is_none(),
            "label set {labels:?} sent twice"
        );
    }
    out
}

/// POSTs a remote-read request; returns status, content type and body.
async fn post_read_typed(
    client: &reqwest::Client,
    base: &str,
    request: &prompb::ReadRequest,
) -> (u16, String, Vec<u8>) {
    let response = send_read(client, base, snappy(&request.encode_to_vec()))
        .await
        .expect("remote read request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        status,
        content_type,
        response.bytes().await.expect("body").to_vec(),
    )
}

// ---------------------------------------------------------------------------
// Synthetic history
// ---------------------------------------------------------------------------

/// A week of one-minute samples for three instances: a daily sine with
/// Gaussian noise and one spike on instance "b". Timestamps are in seconds.
struct History {
    start: i64,
    end: i64,
    spike_ts: i64,
}

impl History {
    /// Ends two minutes before the current minute, so every sample is in the
    /// past and Prometheus's 5-minute lookback at `end` finds the last one.
    fn ending_now() -> Self {
        let end = now_ms() / 1000 / MINUTE * MINUTE - 2 * MINUTE;
        Self {
            start: end - HISTORY,
            end,
            spike_ts: end - SPIKE_BEFORE_END,
        }
    }

    /// Writes OpenMetrics text for `promtool tsdb create-blocks-from
    /// openmetrics`, one series after the other, each in time order.
    fn write_openmetrics(&self, path: &Path) {
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
fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Runs promtool's back-fill and fails with its output if it does not succeed.
fn run_promtool_backfill(openmetrics: &Path, tsdb: &Path, log: &Path) {
    let mut cmd = Command::new(PROMTOOL_BIN);
    cmd.args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(openmetrics)
        .arg(tsdb);
    let mut promtool = ChildGuard::spawn("promtool", cmd, log);
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = promtool.exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "promtool back-fill did not finish within 180 s{}",
            log_section(&promtool)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "`promtool tsdb create-blocks-from openmetrics` failed ({status}){}",
        log_section(&promtool)
    );
}

// ---------------------------------------------------------------------------
// Harness: Prometheus + promcast and their HTTP APIs
// ---------------------------------------------------------------------------

/// Owns the two servers of the scenario and knows how to query them; every
/// failure message ends with the tails of their logs (see `diag`).
struct Harness {
    client: reqwest::Client,
    dir: PathBuf,
    prom_port: u16,
    promcast_port: u16,
    prometheus: Option<ChildGuard>,
    promcast: Option<ChildGuard>,
    /// Logs of promcast processes that were stopped (restart test).
    old_promcast_logs: Vec<PathBuf>,
    promcast_starts: u32,
}

impl Harness {
    fn new(dir: PathBuf, prom_port: u16, promcast_port: u16) -> Self {
        Self {
            client: http_client(),
            dir,
            prom_port,
            promcast_port,
            prometheus: None,
            promcast: None,
            old_promcast_logs: Vec::new(),
            promcast_starts: 0,
        }
    }

    fn prom_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.prom_port)
    }

    fn promcast_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.promcast_port)
    }

    /// Log tails of every process of the scenario, for failure messages.
    fn diag(&self) -> String {
        let mut out = String::new();
        for log in &self.old_promcast_logs {
            out.push_str(&format!(
                "\n--- {} (stopped process) ---\n{}",
                log.display(),
                tail_of_file(log, 3000)
            ));
        }
        if let Some(promcast) = &self.promcast {
            out.push_str(&log_section(promcast));
        }
        if let Some(prometheus) = &self.prometheus {
            out.push_str(&format!(
                "\n--- {} (tail) ---\n{}",
                prometheus.log.display(),
                tail_of_file(&prometheus.log, 3000)
            ));
        }
        out
    }

    /// Starts Prometheus with its own config (not /etc/prometheus): no
    /// external labels, promcast as remote_read target with `read_recent`
    /// (forecasts are recent or future), and a scrape job for promcast.
    fn start_prometheus(&mut self, tsdb: &Path) {
        let config = format!(
            "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n\
             remote_read:\n  - url: http://127.0.0.1:{pc}/api/v1/read\n    read_recent: true\n    remote_timeout: 1m\n\
             scrape_configs:\n  - job_name: promcast\n    static_configs:\n      - targets: ['127.0.0.1:{pc}']\n",
            pc = self.promcast_port
        );
        let config_path = self.dir.join("prometheus.yml");
        fs::write(&config_path, config).expect("write Prometheus config");
        let mut cmd = Command::new(PROMETHEUS_BIN);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.prom_port))
            // The back-filled week must not fall out of retention.
            .arg("--storage.tsdb.retention.time=30d");
        self.prometheus = Some(ChildGuard::spawn(
            "prometheus",
            cmd,
            &self.dir.join("prometheus.log"),
        ));
    }

    async fn wait_prometheus_ready(&mut self) {
        let url = format!("{}/-/ready", self.prom_url());
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if get_status(&self.client, &url).await == Some(200) {
                return;
            }
            if let Some(status) = self.prometheus.as_mut().and_then(ChildGuard::exited) {
                panic!(
                    "Prometheus exited during start-up ({status}){}",
                    self.diag()
                );
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready within 90 s{}",
                self.diag()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn start_promcast(&mut self) {
        self.promcast_starts += 1;
        let log = self
            .dir
            .join(format!("promcast-{}.log", self.promcast_starts));
        self.promcast = Some(spawn_promcast(
            &self.dir,
            self.promcast_port,
            Some(self.prom_port),
            PROMCAST_CONFIG,
            &log,
        ));
    }

    /// Waits for `/-/healthy`, then `/-/ready` (config loaded, upstream
    /// answered), so the first forecast query does not race the start-up.
    async fn wait_promcast_up(&mut self) {
        let base = self.promcast_url();
        let promcast = self.promcast.as_mut().expect("promcast started");
        wait_healthy(&self.client, &base, promcast).await;
        let url = format!("{base}/-/ready");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = get_status(&self.client, &url).await;
            if status == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "promcast not ready within 60 s (last /-/ready: {status:?}){}",
                self.diag()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops promcast with SIGTERM (a clean shutdown) and starts it again on
    /// the same port with the same model directory.
    async fn restart_promcast(&mut self) {
        let mut old = self.promcast.take().expect("promcast running");
        old.terminate(Duration::from_secs(20));
        self.old_promcast_logs.push(old.log.clone());
        drop(old);
        self.start_promcast();
        self.wait_promcast_up().await;
    }

    /// Fails at once, with promcast's log, if promcast has died.
    fn ensure_promcast_alive(&mut self) {
        if let Some(status) = self.promcast.as_mut().and_then(ChildGuard::exited) {
            panic!("promcast exited unexpectedly ({status}){}", self.diag());
        }
    }

    /// Prometheus instant query at `time` (seconds).
    /// An instant query that must answer without warnings and with exactly
    /// `count` series.
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

    async fn instant_series(&mut self, query: &str, time: i64, count: usize) -> Answer {
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

    async fn instant(&mut self, query: &str, time: i64) -> Answer {
        let params = [("query", query.to_string()), ("time", time.to_string())];
        self.prom_api("/api/v1/query", &params).await
    }

    /// Prometheus range query over [start, end] (seconds).
    async fn range(&mut self, query: &str, start: i64, end: i64, step: i64) -> Answer {
        let params = [
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", step.to_string()),
        ];
        self.prom_api("/api/v1/query_range", &params).await
    }

    async fn prom_api(&mut self, path: &str, params: &[(&str, String)]) -> Answer {
        self.ensure_promcast_alive();
        let url = format!("{}{path}", self.prom_url());
        let response = self
            .client
            .get(&url)
            .query(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url} {params:?} failed: {e}{}", self.diag()));
        let status = response.status();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("GET {url} {params:?}: body: {e}{}", self.diag()));
        let json: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "GET {url} {params:?}: not JSON ({e}): {}{}",
                String::from_utf8_lossy(&body),
                self.diag()
            )
        });
        assert!(
            status.is_success() && json["status"] == "success",
            "GET {url} {params:?}: HTTP {status}: {json}{}",
            self.diag()
        );
        Answer::parse(&json)
            .unwrap_or_else(|e| panic!("GET {url} {params:?}: {e}: {json}{}", self.diag()))
    }

    /// Prometheus turns remote-read failures into warnings and no data, so a
    /// missing forecast would otherwise look like an empty answer.
    fn assert_no_warnings(&self, query: &str, answer: &Answer) {
        assert!(
            answer.warnings.is_empty(),
            "{query}: Prometheus reported warnings (promcast's remote read failed?): {:?}{}",
            answer.warnings,
            self.diag()
        );
    }

    async fn promcast_get(&mut self, path: &str) -> (u16, String) {
        self.ensure_promcast_alive();
        let url = format!("{}{path}", self.promcast_url());
        get_text(&self.client, &url)
            .await
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}{}", self.diag()))
    }

    /// The `/api/v1/models` entry of `family`, if listed.
    async fn model_entry(&mut self, family: &str) -> Option<Value> {
        let (status, body) = self.promcast_get("/api/v1/models").await;
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/api/v1/models: not JSON ({e}): {body}{}", self.diag()));
        assert!(
            status == 200 && json["status"] == "success",
            "/api/v1/models: HTTP {status}: {body}{}",
            self.diag()
        );
        let models = json["data"]
            .as_array()
            .unwrap_or_else(|| panic!("/api/v1/models: data is not a list: {body}{}", self.diag()));
        models.iter().find(|m| m["family"] == family).cloned()
    }

    /// Polls `/api/v1/models` until the family's model is trained.
    async fn wait_model_ready(&mut self) -> Value {
        let deadline = Instant::now() + MODEL_READY_DEADLINE;
        let started = Instant::now();
        let mut last_state = String::new();
        loop {
            let entry = self.model_entry(METRIC).await;
            let state = entry
                .as_ref()
                .map_or_else(|| "absent".to_string(), |e| e["state"].to_string());
            if state != last_state {
                println!("[{:>5.1?}] model {METRIC}: {state}", started.elapsed());
                last_state = state;
            }
            if let Some(entry) = entry {
                match entry["state"].as_str() {
                    Some("ready") => return entry,
                    Some("failed") => panic!("training of {METRIC} failed: {entry}{}", self.diag()),
                    _ => {}
                }
            }
            assert!(
                Instant::now() < deadline,
                "model {METRIC} not ready within {MODEL_READY_DEADLINE:?} (last state {last_state}){}",
                self.diag()
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Sum of `promcast_training_runs_total` over its label sets (0 if absent).
    async fn training_runs(&mut self) -> f64 {
        let (status, body) = self.promcast_get("/metrics").await;
        assert_eq!(status, 200, "GET /metrics: {body}{}", self.diag());
        metric_sum(&body, "promcast_training_runs_total", &[])
    }

    /// Prometheus scrapes promcast: `up{job="promcast"}` becomes 1.
    async fn wait_promcast_scraped(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self.instant("up{job=\"promcast\"}", now_ms() / 1000).await;
            if answer
                .series
                .iter()
                .any(|s| s.points.iter().any(|p| p.1 == "1"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "up{{job=\"promcast\"}} did not become 1 within 60 s: {:?}{}",
                answer.series,
                self.diag()
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// Starts the promcast binary built by cargo for this test, output to `log`.
/// A promcast of its own, in a temporary directory, already healthy.
struct Standalone {
    /// Keeps the temporary directory (config, models, log) alive.
    _dir: tempfile::TempDir,
    promcast: ChildGuard,
    client: reqwest::Client,
    base: String,
}

impl Standalone {
    /// Starts promcast with `config` on a free port (never the upstream's),
    /// reading from `upstream_port` or, when `None`, its embedded demo.
    async fn start(upstream_port: Option<u16>, config: &str) -> Self {
        let dir = tempfile::tempdir().expect("create temporary directory");
        let mut port = free_port();
        while Some(port) == upstream_port {
            port = free_port();
        }
        let log = dir.path().join("promcast.log");
        let mut promcast = spawn_promcast(dir.path(), port, upstream_port, config, &log);
        let client = http_client();
        let base = format!("http://127.0.0.1:{port}");
        wait_healthy(&client, &base, &mut promcast).await;
        Self {
            _dir: dir,
            promcast,
            client,
            base,
        }
    }
}

/// Starts promcast on `port`, reading from the upstream on `upstream_port`,
/// or from its embedded demo when that is `None`.
fn spawn_promcast(
    dir: &Path,
    port: u16,
    upstream_port: Option<u16>,
    config_text: &str,
    log: &Path,
) -> ChildGuard {
    let config = dir.join("promcast.yml");
    fs::write(&config, config_text).expect("write promcast config");
    let models = dir.join("models");
    fs::create_dir_all(&models).expect("create model directory");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promcast"));
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--model.dir={}", models.display()))
        .arg("--log.level=info");
    if let Some(upstream_port) = upstream_port {
        cmd.arg(format!("--upstream.url=http://127.0.0.1:{upstream_port}"));
    }
    ChildGuard::spawn("promcast", cmd, log)
}

/// Polls `/-/healthy` until 200; fails early if the process exits.
async fn wait_healthy(client: &reqwest::Client, base: &str, process: &mut ChildGuard) {
    let url = format!("{base}/-/healthy");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if get_status(client, &url).await == Some(200) {
            return;
        }
        if let Some(status) = process.exited() {
            panic!(
                "{} exited during start-up ({status}){}",
                process.name,
                log_section(process)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} not healthy within 60 s{}",
            process.name,
            log_section(process)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------
// Prometheus query API answers
// ---------------------------------------------------------------------------

/// One series of a Prometheus query answer: labels and (timestamp ms, value
/// as Prometheus printed it). Values stay strings so "identical" means
/// identical, with no float round trip.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    labels: BTreeMap<String, String>,
    points: Vec<(i64, String)>,
}

impl Series {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    /// Points as numbers; "NaN"/"+Inf" parse to non-finite values.
    fn values(&self) -> Vec<(i64, f64)> {
        self.points
            .iter()
            .map(|(ts, v)| (*ts, v.parse().unwrap_or(f64::NAN)))
            .collect()
    }

    /// The value of an instant-vector sample (NaN if there is none).
    fn single_value(&self) -> f64 {
        self.values().first().map_or(f64::NAN, |p| p.1)
    }
}

/// `data.result` (vector or matrix) and `warnings` of an API answer.
#[derive(Debug)]
struct Answer {
    series: Vec<Series>,
    warnings: Vec<String>,
}

impl Answer {
    fn parse(json: &Value) -> Result<Self, String> {
        let result_type = json["data"]["resultType"].as_str().unwrap_or_default();
        let results = json["data"]["result"]
            .as_array()
            .ok_or("no data.result list")?;
        let mut series = Vec::with_capacity(results.len());
        for result in results {
            let labels = result["metric"]
                .as_object()
                .ok_or("result without metric")?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let raw_points: Vec<&Value> = match result_type {
                "vector" => vec![&result["value"]],
                "matrix" => result["values"]
                    .as_array()
                    .ok_or("matrix without values")?
                    .iter()
                    .collect(),
                other => return Err(format!("unexpected resultType {other:?}")),
            };
            let points = raw_points
                .into_iter()
                .map(|p| {
                    let ts = p[0].as_f64().ok_or("point without timestamp")?;
                    let value = p[1].as_str().ok_or("point without value")?;
                    Ok(((ts * 1000.0).round() as i64, value.to_string()))
                })
                .collect::<Result<Vec<_>, &str>>()?;
            series.push(Series { labels, points });
        }
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let warnings = json["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self { series, warnings })
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Sums the samples of `name` in a text exposition whose label part contains
/// every string of `label_filters`; comment lines are skipped.
fn metric_sum(exposition: &str, name: &str, label_filters: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value_part) = if let Some(after) = rest.strip_prefix('{') {
                let close = after.find('}')?;
                (&after[..close], &after[close + 1..])
            } else if rest.starts_with(' ') {
                ("", rest)
            } else {
                return None; // a longer metric name with the same prefix
            };
            if !label_filters.iter().all(|f| labels.contains(f)) {
                return None;
            }
            value_part.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

// ---------------------------------------------------------------------------
// Remote read protocol
// ---------------------------------------------------------------------------

fn matcher(kind: i32, name: &str, value: &str) -> prompb::LabelMatcher {
    prompb::LabelMatcher {
        r#type: kind,
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// A one-query ReadRequest over the last five minutes, as Prometheus sends
/// for an instant query (empty accepted_response_types means SAMPLES).
fn read_request(matchers: &[prompb::LabelMatcher]) -> prompb::ReadRequest {
    let now_ms = now_ms();
    prompb::ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: now_ms - 5 * MINUTE * 1000,
            end_timestamp_ms: now_ms,
            matchers: matchers.to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Snappy block format (not framed), as remote read uses.
fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(bytes)
        .expect("snappy compression")
}

/// POSTs a body to promcast's remote read endpoint with Prometheus's headers.
async fn post_read(
    client: &reqwest::Client,
    base: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let response = send_read(client, base, body).await?;
    let status = response.status().as_u16();
    Ok((status, response.bytes().await?.to_vec()))
}

/// POSTs `body` to `/api/v1/read` with the headers Prometheus sends.
async fn send_read(
    client: &reqwest::Client,
    base: &str,
    body: Vec<u8>,
) -> Result<reqwest::Response, reqwest::Error> {
    client
        .post(format!("{base}/api/v1/read"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(body)
        .send()
        .await
}

// ---------------------------------------------------------------------------
// Processes, ports, HTTP
// ---------------------------------------------------------------------------

/// A child process that is killed and reaped when dropped, so a panicking
/// test never leaves Prometheus or promcast behind. Its stdout and stderr go
/// to `log`, whose tail goes into failure messages.
struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    fn spawn(name: &str, mut cmd: Command, log: &Path) -> Self {
        let stdout = fs::File::create(log)
            .unwrap_or_else(|e| panic!("create log file {}: {e}", log.display()));
        let stderr = stdout.try_clone().expect("clone log file handle");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
        Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// The exit status if the process has ended.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL.
    fn terminate(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return; // already reaped: its pid may belong to someone else now
        }
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if signalled {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if self.exited().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A "--- log (tail) ---" section for failure messages.
fn log_section(process: &ChildGuard) -> String {
    format!(
        "\n--- {} log {} (tail) ---\n{}",
        process.name,
        process.log.display(),
        tail_of_file(&process.log, 6000)
    )
}

/// The last `max_bytes` of a file, lossily decoded.
fn tail_of_file(path: &Path, max_bytes: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max_bytes);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Fails with an install hint: the real binaries are part of the test.
fn require_binary(path: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: the end-to-end test needs Debian's Prometheus 2.42 and promtool \
         (apt-get install -y --no-install-recommends prometheus)"
    );
}

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released).
/// The wall clock in Unix milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// No proxy (the environment may set one; everything here is loopback) and a
/// bounded time per request.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("build HTTP client")
}

/// The status of a GET, or None if the server cannot be reached.
async fn get_status(client: &reqwest::Client, url: &str) -> Option<u16> {
    let response = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

/// Status and body text of a GET.
async fn get_text(client: &reqwest::Client, url: &str) -> Result<(u16, String), reqwest::Error> {
    let response = client.get(url).send().await?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

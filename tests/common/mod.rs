//! Shared harness of the integration tests: a real Prometheus and promcast
//! as child processes, synthetic history back-filled with promtool, and the
//! protocol helpers to talk to both.
//!
//! Prometheus and promtool are required: Debian's `prometheus` package puts
//! them in /usr/bin. A missing binary fails the test (it never skips), so CI
//! cannot go green without having exercised the real protocol.
//!
//! All traffic stays on 127.0.0.1, every wait has a deadline, and every child
//! process is owned by a guard that kills and reaps it on drop (also when an
//! assertion panics).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use promcast::prompb;
use promcast::remote::frame::FrameReader;
use promcast::remote::xor;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
pub const PROMTOOL_BIN: &str = "/usr/bin/promtool";

pub const METRIC: &str = "e2e_cpu_usage_percent";
pub const PREDICTED: &str = "predicted_e2e_cpu_usage_percent";
pub const ANOMALY: &str = "anomaly_score_e2e_cpu_usage_percent";
/// A family configured with a PromQL expression (read through query_range).
pub const EXPR_PREDICTED: &str = "predicted_e2e_cpu_smoothed";

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

/// Training 3 series × 7 days takes 10–60 s here; CI machines can be slower.
pub const MODEL_READY_DEADLINE: Duration = Duration::from_secs(6 * 60);
/// A restarted promcast must serve its persisted model this fast.
pub const RELOAD_DEADLINE: Duration = Duration::from_secs(10);
/// Per-request limit: above Prometheus's `remote_timeout` (1m) so that a slow
/// promcast shows up as a Prometheus warning rather than a client timeout.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(150);

/// `prometheus.LabelMatcher.Type` values from proto/remote.proto (the wire
/// contract), written as numbers so the test does not depend on how the
/// generated enum module is named.
pub const MATCH_EQ: i32 = 0;
pub const MATCH_RE: i32 = 2;
/// `ReadRequest.ResponseType` values.
pub const SAMPLES: i32 = 0;
pub const STREAMED: i32 = 1;

/// promcast's configuration for both tests: the three default horizons and a
/// small training budget so the test finishes in minutes.
pub const PROMCAST_CONFIG: &str = "\
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

/// Samples (time, value bits) of each series, keyed by its sorted labels.
pub type SeriesSamples = BTreeMap<Vec<(String, String)>, Vec<(i64, u64)>>;

/// Samples of each series of a SAMPLES answer, keyed by labels.
pub fn decode_samples_answer(body: &[u8]) -> SeriesSamples {
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
pub fn decode_streamed_answer(body: &[u8], reencode: bool) -> SeriesSamples {
    let mut frames = FrameReader::new(50_000_000);
    frames.push(body);
    let mut out = BTreeMap::new();
    while let Some(frame) = frames.next_frame().expect("valid frames") {
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
            let decoded = xor::decode_xor(&chunk.data).expect("valid XOR chunk");
            assert!(!decoded.is_empty() && decoded.len() <= xor::MAX_SAMPLES_PER_CHUNK);
            assert_eq!(chunk.min_time_ms, decoded[0].0);
            assert_eq!(chunk.max_time_ms, decoded[decoded.len() - 1].0);
            if reencode {
                assert_eq!(
                    xor::encode_xor(&decoded).expect("encodable samples"),
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
    frames.finish().expect("no truncated frame");
    out
}

/// POSTs a remote-read request; returns status, content type and body.
pub async fn post_read_typed(
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

/// Two different free ports: Prometheus's and promcast's.
pub fn two_ports() -> (u16, u16) {
    let first = free_port();
    let mut second = free_port();
    while second == first {
        second = free_port();
    }
    (first, second)
}

/// Runs promtool's back-fill and fails with its output if it does not succeed.
pub fn run_promtool_backfill(openmetrics: &Path, tsdb: &Path, log: &Path) {
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
pub struct Harness {
    pub client: reqwest::Client,
    pub dir: PathBuf,
    pub prom_port: u16,
    pub promcast_port: u16,
    pub prometheus: Option<ChildGuard>,
    pub promcast: Option<ChildGuard>,
    /// Logs of promcast processes that were stopped (restart test).
    pub old_promcast_logs: Vec<PathBuf>,
    pub promcast_starts: u32,
    /// TLS and credentials on every hop, when the scenario is secured.
    pub secrets: Option<Secrets>,
}

impl Harness {
    pub fn new(dir: PathBuf, prom_port: u16, promcast_port: u16) -> Self {
        Self::with_secrets(dir, prom_port, promcast_port, None)
    }

    /// A harness whose Prometheus and promcast both serve HTTPS and require
    /// credentials of each other (and of this test's client).
    pub fn secured(dir: PathBuf, prom_port: u16, promcast_port: u16) -> Self {
        let secrets = Secrets::generate(&dir);
        Self::with_secrets(dir, prom_port, promcast_port, Some(secrets))
    }

    /// Back-fills [`History::ending_now`] under `dir`, then starts
    /// Prometheus and promcast on it (secured or not) and waits until both
    /// are ready.
    pub async fn running(dir: &Path, secured: bool) -> (Self, History) {
        require_binary(PROMETHEUS_BIN);
        require_binary(PROMTOOL_BIN);
        let (history, tsdb) = backfill_history(dir);
        let (prom_port, promcast_port) = two_ports();
        let dir = dir.to_path_buf();
        let mut h = if secured {
            Self::secured(dir, prom_port, promcast_port)
        } else {
            Self::new(dir, prom_port, promcast_port)
        };
        h.start_prometheus(&tsdb);
        h.wait_prometheus_ready().await;
        h.start_promcast();
        h.wait_promcast_up().await;
        (h, history)
    }

    fn with_secrets(
        dir: PathBuf,
        prom_port: u16,
        promcast_port: u16,
        secrets: Option<Secrets>,
    ) -> Self {
        Self {
            client: match &secrets {
                Some(s) => s.client(),
                None => http_client(),
            },
            secrets,
            dir,
            prom_port,
            promcast_port,
            prometheus: None,
            promcast: None,
            old_promcast_logs: Vec::new(),
            promcast_starts: 0,
        }
    }

    fn scheme(&self) -> &'static str {
        if self.secrets.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn prom_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.prom_port)
    }

    pub fn promcast_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.promcast_port)
    }

    /// Log tails of every process of the scenario, for failure messages.
    pub fn diag(&self) -> String {
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

    /// Starts Prometheus with the configuration `config`.
    pub fn start_prometheus_with(&mut self, config: &str, tsdb: &Path) {
        let config_path = self.dir.join("prometheus.yml");
        fs::write(&config_path, config).expect("write Prometheus config");
        let mut cmd = Command::new(PROMETHEUS_BIN);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.prom_port))
            // The back-filled week must not fall out of retention.
            .arg("--storage.tsdb.retention.time=30d");
        if let Some(s) = &self.secrets {
            let web = self.dir.join("prometheus-web.yml");
            let text = format!(
                "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n\
                 basic_auth_users:\n  {BASIC_USER}: {BASIC_PASSWORD_BCRYPT}\n",
                cert = s.cert.display(),
                key = s.key.display()
            );
            fs::write(&web, text).expect("write Prometheus web config");
            cmd.arg(format!("--web.config.file={}", web.display()));
        }
        self.prometheus = Some(ChildGuard::spawn(
            "prometheus",
            cmd,
            &self.dir.join("prometheus.log"),
        ));
    }

    pub async fn wait_prometheus_ready(&mut self) {
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

    pub fn start_promcast(&mut self) {
        let config = match &self.secrets {
            Some(s) => format!("{PROMCAST_CONFIG}{}", s.promcast_config()),
            None => PROMCAST_CONFIG.to_owned(),
        };
        self.start_promcast_with(&config);
    }

    /// Starts promcast with the configuration `config`, reading from this
    /// harness's Prometheus.
    pub fn start_promcast_with(&mut self, config: &str) {
        self.promcast_starts += 1;
        let log = self
            .dir
            .join(format!("promcast-{}.log", self.promcast_starts));
        self.promcast = Some(spawn_promcast(
            &self.dir,
            self.promcast_port,
            Some(&self.prom_url()),
            config,
            &log,
        ));
    }

    /// Waits for `/-/healthy`, then `/-/ready` (config loaded, upstream
    /// answered), so the first forecast query does not race the start-up.
    pub async fn wait_promcast_up(&mut self) {
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
    pub async fn restart_promcast(&mut self) {
        let mut old = self.promcast.take().expect("promcast running");
        old.terminate(Duration::from_secs(20));
        self.old_promcast_logs.push(old.log.clone());
        drop(old);
        self.start_promcast();
        self.wait_promcast_up().await;
    }

    /// Fails at once, with promcast's log, if promcast has died.
    pub fn ensure_promcast_alive(&mut self) {
        if let Some(status) = self.promcast.as_mut().and_then(ChildGuard::exited) {
            panic!("promcast exited unexpectedly ({status}){}", self.diag());
        }
    }

    /// Prometheus instant query at `time` (seconds).
    /// An instant query that must answer without warnings and with exactly
    /// `count` series.
    /// A range query that must answer without warnings and with exactly
    /// `count` series.
    pub async fn range_series(
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

    pub async fn instant(&mut self, query: &str, time: i64) -> Answer {
        let params = [("query", query.to_string()), ("time", time.to_string())];
        self.prom_api("/api/v1/query", &params).await
    }

    /// Prometheus range query over [start, end] (seconds).
    pub async fn range(&mut self, query: &str, start: i64, end: i64, step: i64) -> Answer {
        let params = [
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", step.to_string()),
        ];
        self.prom_api("/api/v1/query_range", &params).await
    }

    pub async fn prom_api(&mut self, path: &str, params: &[(&str, String)]) -> Answer {
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
    pub fn assert_no_warnings(&self, query: &str, answer: &Answer) {
        assert!(
            answer.warnings.is_empty(),
            "{query}: Prometheus reported warnings (promcast's remote read failed?): {:?}{}",
            answer.warnings,
            self.diag()
        );
    }

    pub async fn promcast_get(&mut self, path: &str) -> (u16, String) {
        self.ensure_promcast_alive();
        let url = format!("{}{path}", self.promcast_url());
        get_text(&self.client, &url)
            .await
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}{}", self.diag()))
    }

    /// The `/api/v1/models` entry of `family`, if listed.
    pub async fn model_entry(&mut self, family: &str) -> Option<Value> {
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
    pub async fn wait_model_ready(&mut self) -> Value {
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
    pub async fn training_runs(&mut self) -> f64 {
        let (status, body) = self.promcast_get("/metrics").await;
        assert_eq!(status, 200, "GET /metrics: {body}{}", self.diag());
        metric_sum(&body, "promcast_training_runs_total", &[])
    }

    /// Prometheus scrapes promcast: `up{job="promcast"}` becomes 1.
    pub async fn wait_promcast_scraped(&mut self) {
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
pub struct Standalone {
    /// Keeps the temporary directory (config, models, log) alive.
    pub _dir: tempfile::TempDir,
    pub promcast: ChildGuard,
    pub client: reqwest::Client,
    pub base: String,
}

impl Standalone {
    /// Starts promcast with `config` on a free port (never the upstream's),
    /// reading from `upstream_port` or, when `None`, its embedded demo.
    pub async fn start(upstream_port: Option<u16>, config: &str) -> Self {
        let dir = tempfile::tempdir().expect("create temporary directory");
        let mut port = free_port();
        while Some(port) == upstream_port {
            port = free_port();
        }
        let log = dir.path().join("promcast.log");
        let upstream = upstream_port.map(|p| format!("http://127.0.0.1:{p}"));
        let mut promcast = spawn_promcast(dir.path(), port, upstream.as_deref(), config, &log);
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

/// Starts promcast on `port`, reading from the upstream at `upstream_url`,
/// or from its embedded demo when that is `None`.
pub fn spawn_promcast(
    dir: &Path,
    port: u16,
    upstream_url: Option<&str>,
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
    if let Some(url) = upstream_url {
        cmd.arg(format!("--upstream.url={url}"));
    }
    ChildGuard::spawn("promcast", cmd, log)
}

/// Polls `/-/healthy` until 200; fails early if the process exits.
pub async fn wait_healthy(client: &reqwest::Client, base: &str, process: &mut ChildGuard) {
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
// TLS and credentials
// ---------------------------------------------------------------------------

/// The user Prometheus's web config admits (promcast reads with it too).
pub const BASIC_USER: &str = "prometheus";
pub const BASIC_PASSWORD: &str = "promcast-e2e-password";
/// bcrypt of `BASIC_PASSWORD`, as Prometheus's `basic_auth_users` wants it.
pub const BASIC_PASSWORD_BCRYPT: &str =
    "$2b$10$CdZz4dzEO/IuBhOWPcNuyu3W2PkqxlRmKYyV32m6mnIwJpY6pJpyO";

/// `BASIC_USER:BASIC_PASSWORD` in base64, as basic auth sends it.
pub fn basic_credentials() -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{BASIC_USER}:{BASIC_PASSWORD}"))
}

/// A fresh CA, a server certificate for 127.0.0.1 signed by it (used by
/// both Prometheus and promcast), and the secret files promcast reads.
pub struct Secrets {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The bearer token Prometheus sends promcast.
    pub token: String,
    pub token_file: PathBuf,
    pub password_file: PathBuf,
}

impl Secrets {
    pub fn generate(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "promcast test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params");
        let cert = params.signed_by(&key, &issuer).expect("sign server cert");
        let token = format!("token-{}", now_ms());
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            path
        };
        Self {
            ca: write("ca.pem", &ca_cert.pem()),
            cert: write("server.pem", &cert.pem()),
            key: write("server-key.pem", &key.serialize_pem()),
            token_file: write("token", &format!("{token}\n")),
            token,
            password_file: write("password", &format!("{BASIC_PASSWORD}\n")),
        }
    }

    /// promcast's `web:` and `upstream:` sections: HTTPS with the bearer
    /// token required, and basic auth over TLS towards Prometheus.
    pub fn promcast_config(&self) -> String {
        format!(
            "web:\n  tls_server_config:\n    cert_file: {cert}\n    key_file: {key}\n\
             \x20 authorization:\n    credentials_file: {token}\n\
             upstream:\n  basic_auth:\n    username: {BASIC_USER}\n    password_file: {password}\n\
             \x20 tls_config:\n    ca_file: {ca}\n",
            cert = self.cert.display(),
            key = self.key.display(),
            token = self.token_file.display(),
            password = self.password_file.display(),
            ca = self.ca.display()
        )
    }

    /// A client that trusts the test CA and logs in to Prometheus.
    pub fn client(&self) -> reqwest::Client {
        let ca = fs::read(&self.ca).expect("read CA");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Basic {}", basic_credentials())
                .parse()
                .expect("header value"),
        );
        reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
            .default_headers(headers)
            .build()
            .expect("build HTTPS client")
    }
}

// ---------------------------------------------------------------------------
// Prometheus query API answers
// ---------------------------------------------------------------------------

/// One series of a Prometheus query answer: labels and (timestamp ms, value
/// as Prometheus printed it). Values stay strings so "identical" means
/// identical, with no float round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(i64, String)>,
}

impl Series {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

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

/// `data.result` (vector or matrix) and `warnings` of an API answer.
#[derive(Debug)]
pub struct Answer {
    pub series: Vec<Series>,
    pub warnings: Vec<String>,
}

impl Answer {
    pub fn parse(json: &Value) -> Result<Self, String> {
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

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Sums the samples of `name` in a text exposition whose label part contains
/// every string of `label_filters`; comment lines are skipped.
pub fn metric_sum(exposition: &str, name: &str, label_filters: &[&str]) -> f64 {
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

pub fn matcher(kind: i32, name: &str, value: &str) -> prompb::LabelMatcher {
    prompb::LabelMatcher {
        r#type: kind,
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// A one-query ReadRequest over the last five minutes, as Prometheus sends
/// for an instant query (empty accepted_response_types means SAMPLES).
pub fn read_request(matchers: &[prompb::LabelMatcher]) -> prompb::ReadRequest {
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

/// A one-query read request over `span_ms` up to `end_ms` with Prometheus's
/// step hint (0: an instant query's read).
pub fn read_range(
    matchers: &[prompb::LabelMatcher],
    end_ms: i64,
    span_ms: i64,
    step_ms: i64,
) -> prompb::ReadRequest {
    prompb::ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: end_ms - span_ms,
            end_timestamp_ms: end_ms,
            matchers: matchers.to_vec(),
            hints: Some(prompb::ReadHints {
                step_ms,
                ..Default::default()
            }),
        }],
        ..Default::default()
    }
}

/// Snappy block format (not framed), as remote read uses.
pub fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(bytes)
        .expect("snappy compression")
}

/// POSTs a body to promcast's remote read endpoint with Prometheus's headers.
pub async fn post_read(
    client: &reqwest::Client,
    base: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let response = send_read(client, base, body).await?;
    let status = response.status().as_u16();
    Ok((status, response.bytes().await?.to_vec()))
}

/// POSTs `body` to `/api/v1/read` with the headers Prometheus sends.
pub async fn send_read(
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
// Load
// ---------------------------------------------------------------------------

/// What [`drive_load`] measured.
pub struct LoadReport {
    pub clients: usize,
    /// Every request's latency, sorted.
    pub latencies: Vec<Duration>,
    /// The reason of every failed request.
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> Duration {
        self.latencies
            .get(((self.latencies.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or_default()
    }

    pub fn summary(&self) -> String {
        format!(
            "{} requests from {} clients in {:.1?}: {:.0} req/s, p50 {:.1?}, p99 {:.1?}, {} errors",
            self.latencies.len(),
            self.clients,
            self.elapsed,
            self.per_second(),
            self.quantile(0.5),
            self.quantile(0.99),
            self.errors.len()
        )
    }
}

/// `clients` concurrent clients each POST up to `per_client` remote-read
/// `bodies` (taken in turn) to `base` until `duration` has passed; an
/// answer counts as a success only if it is a 200 with a decodable
/// `ReadResponse`.
pub async fn drive_load(
    client: &reqwest::Client,
    base: &str,
    bodies: Vec<Vec<u8>>,
    clients: usize,
    per_client: usize,
    duration: Duration,
) -> LoadReport {
    let bodies = std::sync::Arc::new(bodies);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let client = client.clone();
        let base = base.to_owned();
        let bodies = std::sync::Arc::clone(&bodies);
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for i in 0..per_client {
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
    LoadReport {
        clients,
        latencies,
        errors,
        elapsed,
    }
}

// ---------------------------------------------------------------------------
// Processes, ports, HTTP
// ---------------------------------------------------------------------------

/// A child process that is killed and reaped when dropped, so a panicking
/// test never leaves Prometheus or promcast behind. Its stdout and stderr go
/// to `log`, whose tail goes into failure messages.
pub struct ChildGuard {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl ChildGuard {
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Self {
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
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL.
    pub fn terminate(&mut self, grace: Duration) {
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
pub fn log_section(process: &ChildGuard) -> String {
    format!(
        "\n--- {} log {} (tail) ---\n{}",
        process.name,
        process.log.display(),
        tail_of_file(&process.log, 6000)
    )
}

/// The last `max_bytes` of a file, lossily decoded.
pub fn tail_of_file(path: &Path, max_bytes: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max_bytes);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Fails with an install hint: the real binaries are part of the test.
pub fn require_binary(path: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: the end-to-end test needs Debian's Prometheus 2.42 and promtool \
         (apt-get install -y --no-install-recommends prometheus)"
    );
}

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released).
/// The wall clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// No proxy (the environment may set one; everything here is loopback) and a
/// bounded time per request.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("build HTTP client")
}

/// The status of a GET, or None if the server cannot be reached.
pub async fn get_status(client: &reqwest::Client, url: &str) -> Option<u16> {
    let response = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

/// Status and body text of a GET.
pub async fn get_text(
    client: &reqwest::Client,
    url: &str,
) -> Result<(u16, String), reqwest::Error> {
    let response = client.get(url).send().await?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

//! The real Prometheus: Debian's `prometheus` and `promtool` in /usr/bin,
//! a TSDB back-filled by promtool, the server started on a loopback port,
//! and its HTTP query API with its answers.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::Harness;
use super::http::get_status;
use super::process::{ChildGuard, log_section};

pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
pub const PROMTOOL_BIN: &str = "/usr/bin/promtool";

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

impl Harness {
    /// Starts Prometheus with the configuration `config` on the TSDB at
    /// `tsdb`; secured, it serves HTTPS with basic auth (its web config).
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
            fs::write(&web, s.prometheus_web_config()).expect("write Prometheus web config");
            cmd.arg(format!("--web.config.file={}", web.display()));
        }
        self.prometheus = Some(ChildGuard::spawn(
            "prometheus",
            cmd,
            &self.dir.join("prometheus.log"),
        ));
    }

    /// Polls `/-/ready` until 200; fails early if Prometheus exits.
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

    /// Prometheus instant query at `time` (seconds).
    pub async fn instant(&mut self, query: &str, time: i64) -> Answer {
        let params = [("query", query.to_string()), ("time", time.to_string())];
        self.prom_api("/api/v1/query", &params).await
    }

    /// Prometheus range query over [start, end] (seconds).
    #[allow(dead_code)] // the security suite asks for instants only
    pub async fn range(&mut self, query: &str, start: i64, end: i64, step: i64) -> Answer {
        let params = [
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", step.to_string()),
        ];
        self.prom_api("/api/v1/query_range", &params).await
    }

    /// GETs `path` of Prometheus's API with `params`; fails unless it
    /// answers with success (and first if promcast has died).
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
}

/// One series of a Prometheus query answer: labels and (timestamp ms, value
/// as Prometheus printed it). Values stay strings so "identical" means
/// identical, with no float round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(i64, String)>,
}

/// `data.result` (vector or matrix) and `warnings` of an API answer.
#[derive(Debug)]
pub struct Answer {
    pub series: Vec<Series>,
    pub warnings: Vec<String>,
}

impl Answer {
    /// Reads the JSON of a successful API answer.
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

//! promcast's models as its API lists them: an entry, waiting until the
//! scenario's family is trained, and how often promcast trained.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::exposition::metric_sum;
use super::family::METRIC;
use super::harness::Harness;
use super::http::get_text;

/// Training 3 series × 7 days takes 10–60 s here; CI machines can be slower.
pub const MODEL_READY_DEADLINE: Duration = Duration::from_secs(6 * 60);

impl Harness {
    /// Status and body text of a GET of `path` from promcast; fails first if
    /// promcast has died.
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

    /// Polls `/api/v1/models` until the model of `METRIC` is trained.
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
}

//! Remote-read load: concurrent clients POSTing read requests to one
//! endpoint for a bounded time, and what they measured.

use std::time::{Duration, Instant};

use promcast::prompb;
use prost::Message;

use super::remote_read::send_read;

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

/// POSTs a raw body to a remote read endpoint with Prometheus's headers;
/// returns status and body of the answer.
pub async fn post_read(
    client: &reqwest::Client,
    base: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let response = send_read(client, base, body).await?;
    let status = response.status().as_u16();
    Ok((status, response.bytes().await?.to_vec()))
}

/// What [`drive_load`] measured.
pub struct LoadReport {
    /// How many clients sent requests.
    pub clients: usize,
    /// Every request's latency, sorted.
    pub latencies: Vec<Duration>,
    /// The reason of every failed request.
    pub errors: Vec<String>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Requests answered per second.
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

    /// One line: requests, clients, time, rate, p50, p99 and errors.
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

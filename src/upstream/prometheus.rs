//! Reading history from a Prometheus-compatible server: remote read for
//! plain metrics (exact samples, cheap), the HTTP query API for PromQL
//! expressions.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::{FamilySource, SourceSeries, UpstreamError};
use crate::codec;
use crate::labels::{Labels, METRIC_NAME, Matcher};
use crate::prompb;

/// Largest decompressed remote-read answer accepted from the upstream.
const MAX_ANSWER_BYTES: usize = 1 << 30;
/// Prometheus refuses range queries over 11,000 points per series.
const MAX_POINTS_PER_QUERY: i64 = 10_000;

/// A client for one upstream server.
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("upstream.headers: invalid header {name:?}: {reason}")]
    Header { name: String, reason: String },
    #[error("building the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

impl Client {
    /// A client for `base` (e.g. `http://prometheus:9090`) sending `headers`
    /// with every request.
    pub fn new(
        base: url::Url,
        timeout: Duration,
        headers: &BTreeMap<String, String>,
    ) -> Result<Self, ClientError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let header_error = |reason: String| ClientError::Header {
                name: name.clone(),
                reason,
            };
            let n =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| header_error(e.to_string()))?;
            let mut v = HeaderValue::from_str(value).map_err(|e| header_error(e.to_string()))?;
            v.set_sensitive(true);
            map.insert(n, v);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .default_headers(map)
            .user_agent(concat!("promcast/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, base })
    }

    fn endpoint(&self, path: &str) -> url::Url {
        let mut url = self.base.clone();
        let joined = format!("{}/{path}", self.base.path().trim_end_matches('/'));
        url.set_path(&joined);
        url
    }

    pub(super) async fn fetch(
        &self,
        family: FamilySource<'_>,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SourceSeries>, UpstreamError> {
        match family.expr {
            Some(expr) => {
                self.query_range(expr, start_ms, end_ms, family.step_ms)
                    .await
            }
            None => {
                let mut wire = vec![Matcher::equal(METRIC_NAME, family.name).to_proto()];
                wire.extend(matchers.iter().map(Matcher::to_proto));
                self.remote_read(wire, start_ms, end_ms).await
            }
        }
    }

    async fn remote_read(
        &self,
        matchers: Vec<prompb::LabelMatcher>,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SourceSeries>, UpstreamError> {
        let request = prompb::ReadRequest {
            queries: vec![prompb::Query {
                start_timestamp_ms: start_ms,
                end_timestamp_ms: end_ms,
                matchers,
                hints: None,
            }],
            accepted_response_types: vec![prompb::read_request::ResponseType::Samples as i32],
        };
        let response = self
            .http
            .post(self.endpoint("api/v1/read"))
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(CONTENT_ENCODING, "snappy")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(codec::encode(&request))
            .send()
            .await?;
        let body = checked(response).await?;
        let answer: prompb::ReadResponse = codec::decode(&body, MAX_ANSWER_BYTES)
            .map_err(|e| UpstreamError::Decode(e.to_string()))?;
        Ok(answer
            .results
            .into_iter()
            .flat_map(|r| r.timeseries)
            .map(|ts| SourceSeries {
                labels: ts
                    .labels
                    .into_iter()
                    .filter(|l| l.name != METRIC_NAME)
                    .map(|l| (l.name, l.value))
                    .collect(),
                samples: ts
                    .samples
                    .into_iter()
                    .map(|s| (s.timestamp, s.value))
                    .collect(),
            })
            .collect())
    }

    async fn query_range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<SourceSeries>, UpstreamError> {
        let step_ms = step_ms.max(1000);
        let mut by_labels: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        let mut from = start_ms;
        while from <= end_ms {
            let to = (from + step_ms * (MAX_POINTS_PER_QUERY - 1)).min(end_ms);
            let params = [
                ("query", expr.to_owned()),
                ("start", format!("{:.3}", from as f64 / 1000.0)),
                ("end", format!("{:.3}", to as f64 / 1000.0)),
                ("step", format!("{:.3}", step_ms as f64 / 1000.0)),
            ];
            let response = self
                .http
                .post(self.endpoint("api/v1/query_range"))
                .form(&params)
                .send()
                .await?;
            let body = checked(response).await?;
            let answer: QueryResponse =
                serde_json::from_slice(&body).map_err(|e| UpstreamError::Decode(e.to_string()))?;
            if answer.status != "success" {
                return Err(UpstreamError::Query(answer.error.unwrap_or(answer.status)));
            }
            for s in answer.data.map(|d| d.result).unwrap_or_default() {
                let mut labels = s.metric;
                labels.remove(METRIC_NAME);
                let samples = by_labels.entry(labels).or_default();
                for (ts, value) in s.values {
                    let value: f64 = value.parse().map_err(|_| {
                        UpstreamError::Decode(format!("bad sample value {value:?}"))
                    })?;
                    samples.push(((ts * 1000.0).round() as i64, value));
                }
            }
            from = to + step_ms;
        }
        Ok(by_labels
            .into_iter()
            .map(|(labels, samples)| SourceSeries { labels, samples })
            .collect())
    }

    pub(super) async fn probe(&self) -> Result<(), UpstreamError> {
        let now = crate::calendar::now_ms();
        let probe = Matcher::equal(METRIC_NAME, "promcast_readiness_probe").to_proto();
        self.remote_read(vec![probe], now - 60_000, now)
            .await
            .map(|_| ())
    }
}

/// The body of a successful response, or the error it stands for.
async fn checked(response: reqwest::Response) -> Result<bytes::Bytes, UpstreamError> {
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(UpstreamError::Status {
            status: status.as_u16(),
            body: body.chars().take(512).collect(),
        });
    }
    Ok(response.bytes().await?)
}

#[derive(Deserialize)]
struct QueryResponse {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct QueryData {
    result: Vec<MatrixSeries>,
}

#[derive(Deserialize)]
struct MatrixSeries {
    metric: Labels,
    values: Vec<(f64, String)>,
}

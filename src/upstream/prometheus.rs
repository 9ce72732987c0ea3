//! Reading history from a Prometheus-compatible server: remote read for
//! plain metrics (exact samples, cheap; streamed XOR chunks where the server
//! offers them, a fraction of the memory of plain samples for long
//! histories), the HTTP query API for PromQL expressions.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue,
};
use serde::Deserialize;

use super::{FamilySource, SourceSeries, UpstreamError};
use crate::config::{ConfigError, UpstreamConfig, read_secret};
use crate::labels::{Labels, METRIC_NAME, Matcher};
use crate::prompb::{self, read_request::ResponseType};
use crate::remote::codec;
use crate::remote::frame::{self, FrameReader};
use crate::remote::xor;

/// Largest decompressed remote-read answer accepted from the upstream.
const MAX_ANSWER_BYTES: usize = 1 << 30;
/// How much of an error answer's body is read: enough to say why.
const ERROR_BODY_BYTES: usize = 512;
/// Largest frame of a streamed answer (Prometheus's `chunked_read_limit`).
const MAX_FRAME_BYTES: usize = 50_000_000;
const STREAMED_CONTENT_TYPE: &str = "application/x-streamed-protobuf";
/// Prometheus refuses range queries over 11,000 points per series.
const MAX_POINTS_PER_QUERY: i64 = 10_000;

/// A client for one upstream server.
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    caps: AnswerCaps,
}

/// Bounds on one upstream answer (`upstream.max_answer_bytes`,
/// `upstream.max_answer_samples`): a huge or endless answer costs a
/// bounded read and a 502, not the process's memory.
#[derive(Debug, Clone, Copy)]
struct AnswerCaps {
    bytes: usize,
    samples: usize,
}

impl AnswerCaps {
    fn too_many_bytes(&self) -> UpstreamError {
        UpstreamError::TooLarge {
            field: "upstream.max_answer_bytes",
            limit: self.bytes,
            what: "bytes",
        }
    }

    fn check_samples(&self, samples: usize) -> Result<(), UpstreamError> {
        if samples > self.samples {
            return Err(UpstreamError::TooLarge {
                field: "upstream.max_answer_samples",
                limit: self.samples,
                what: "samples",
            });
        }
        Ok(())
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("upstream.headers: invalid header {name:?}: {reason}")]
    Header { name: String, reason: String },
    #[error(transparent)]
    Secret(#[from] ConfigError),
    #[error("upstream.tls_config.{field} ({path}): {reason}")]
    Tls {
        field: &'static str,
        path: String,
        reason: String,
    },
    #[error("building the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
    #[error("upstream.url carries credentials and upstream.{0} is set too: keep one")]
    Credentials(&'static str),
}

/// Takes the `user:password` out of `url`, percent-decoded, if it has any.
fn url_credentials(url: &mut url::Url) -> Option<String> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pair = format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or_default())
    );
    // Neither fails on an http(s) URL, which has a host.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some(pair)
}

impl Client {
    /// A client for the upstream at `base` (e.g. `http://prometheus:9090`)
    /// with `config`'s timeout, headers, credentials and TLS settings.
    ///
    /// Credentials in the URL (`https://user:password@host`) are sent as
    /// basic auth and removed from the URL, so that no log line, error or
    /// status page shows them. A `ca_file` replaces the built-in roots, as
    /// in Prometheus: only the CAs named there are trusted.
    pub fn new(mut base: url::Url, config: &UpstreamConfig) -> Result<Self, ClientError> {
        let in_url = url_credentials(&mut base);
        let mut map = HeaderMap::new();
        let mut insert = |name: &str, value: &str| {
            let header_error = |reason: String| ClientError::Header {
                name: name.to_owned(),
                reason,
            };
            let n =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| header_error(e.to_string()))?;
            let mut v = HeaderValue::from_str(value).map_err(|e| header_error(e.to_string()))?;
            v.set_sensitive(true);
            map.insert(n, v);
            Ok::<_, ClientError>(())
        };
        for (name, value) in &config.headers {
            insert(name, value)?;
        }
        if let Some(a) = &config.authorization {
            let credentials = read_secret(
                &a.credentials_file,
                "upstream.authorization.credentials_file",
            )?;
            insert(AUTHORIZATION.as_str(), &format!("{} {credentials}", a.kind))?;
        }
        if let Some(b) = &config.basic_auth {
            let password = read_secret(&b.password_file, "upstream.basic_auth.password_file")?;
            let pair = STANDARD.encode(format!("{}:{password}", b.username));
            insert(AUTHORIZATION.as_str(), &format!("Basic {pair}"))?;
        }
        if let Some(pair) = in_url {
            if config.authorization.is_some() {
                return Err(ClientError::Credentials("authorization"));
            }
            if config.basic_auth.is_some() {
                return Err(ClientError::Credentials("basic_auth"));
            }
            insert(
                AUTHORIZATION.as_str(),
                &format!("Basic {}", STANDARD.encode(pair)),
            )?;
        }
        let tls = &config.tls_config;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout.to_std())
            .default_headers(map)
            .user_agent(concat!("promcast/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(tls.insecure_skip_verify);
        if tls.insecure_skip_verify {
            tracing::warn!(
                upstream = %base,
                "upstream.tls_config.insecure_skip_verify is set: the upstream's certificate is not checked, and anyone on the path can read and answer promcast's queries"
            );
        }
        if let Some(ca) = &tls.ca_file {
            builder = builder.tls_built_in_root_certs(false);
            let pem = read_pem(ca, "ca_file")?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ClientError::Tls {
                    field: "ca_file",
                    path: ca.display().to_string(),
                    reason: e.to_string(),
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            let mut pem = read_pem(cert, "cert_file")?;
            pem.extend(read_pem(key, "key_file")?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| ClientError::Tls {
                field: "cert_file",
                path: cert.display().to_string(),
                reason: e.to_string(),
            })?;
            builder = builder.identity(identity);
        }
        Ok(Self {
            http: builder.build()?,
            base,
            caps: AnswerCaps {
                bytes: config.max_answer_bytes,
                samples: config.max_answer_samples,
            },
        })
    }

    /// The upstream's base URL, without credentials.
    pub fn base(&self) -> &url::Url {
        &self.base
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
                self.remote_read(&[query_matchers(family.name, matchers)], start_ms, end_ms)
                    .await
            }
        }
    }

    /// The series of metric `name` that each matcher list selects, read in
    /// one request of one query per list.
    pub(super) async fn fetch_each(
        &self,
        name: &str,
        selections: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SourceSeries>, UpstreamError> {
        let queries: Vec<Vec<prompb::LabelMatcher>> = selections
            .iter()
            .map(|matchers| query_matchers(name, matchers))
            .collect();
        self.remote_read(&queries, start_ms, end_ms).await
    }

    /// The label sets (names left out) of metric `name`'s series matching
    /// `matchers` with samples in `[start_ms, end_ms]`, from the series
    /// API: no samples are read. At most `limit` are asked for, where the
    /// upstream supports that.
    pub(super) async fn series(
        &self,
        name: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<Labels>, UpstreamError> {
        let params = [
            ("match[]", crate::labels::selector(name, matchers)),
            ("start", seconds(start_ms)),
            ("end", seconds(end_ms)),
            ("limit", limit.to_string()),
        ];
        decode_series_list(&self.post_form("api/v1/series", &params).await?)
    }

    /// POSTs a form to the upstream's HTTP API; the answer's body, within
    /// `upstream.max_answer_bytes`.
    async fn post_form(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Vec<u8>, UpstreamError> {
        let response = self
            .http
            .post(self.endpoint(path))
            .form(params)
            .send()
            .await?;
        self.body(checked(response).await?).await
    }

    async fn remote_read(
        &self,
        queries: &[Vec<prompb::LabelMatcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SourceSeries>, UpstreamError> {
        let request = prompb::ReadRequest {
            queries: queries
                .iter()
                .map(|matchers| prompb::Query {
                    start_timestamp_ms: start_ms,
                    end_timestamp_ms: end_ms,
                    matchers: matchers.clone(),
                    hints: None,
                })
                .collect(),
            accepted_response_types: vec![
                ResponseType::StreamedXorChunks as i32,
                ResponseType::Samples as i32,
            ],
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
        let streamed = response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(STREAMED_CONTENT_TYPE.as_bytes()));
        let response = checked(response).await?;
        if streamed {
            // Decoded frame by frame as the bytes arrive: what stays in
            // memory is the samples, never the whole answer.
            let mut answer = StreamedAnswer::new(start_ms, end_ms, self.caps);
            read_capped(response, self.caps, |bytes| answer.push(bytes)).await?;
            return answer.finish();
        }
        let body = self.body(response).await?;
        let answer: prompb::ReadResponse = codec::decode(&body, MAX_ANSWER_BYTES)
            .map_err(|e| UpstreamError::Decode(e.to_string()))?;
        let samples = answer.results.iter().flat_map(|r| &r.timeseries);
        self.caps
            .check_samples(samples.map(|ts| ts.samples.len()).sum())?;
        Ok(answer
            .results
            .into_iter()
            .flat_map(|r| r.timeseries)
            .map(|ts| SourceSeries {
                labels: source_labels(ts.labels),
                samples: ts
                    .samples
                    .into_iter()
                    .map(|s| (s.timestamp, s.value))
                    .collect(),
            })
            .collect())
    }

    /// A successful answer's whole body, within `upstream.max_answer_bytes`.
    async fn body(&self, response: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
        let mut body = Vec::new();
        read_capped(response, self.caps, |bytes| {
            body.extend_from_slice(bytes);
            Ok(())
        })
        .await?;
        Ok(body)
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
        let mut samples_read = 0;
        let mut from = start_ms;
        while from <= end_ms {
            let to = (from + step_ms * (MAX_POINTS_PER_QUERY - 1)).min(end_ms);
            let params = [
                ("query", expr.to_owned()),
                ("start", seconds(from)),
                ("end", seconds(to)),
                ("step", seconds(step_ms)),
            ];
            let body = self.post_form("api/v1/query_range", &params).await?;
            for series in decode_matrix(&body)? {
                samples_read += series.samples.len();
                self.caps.check_samples(samples_read)?;
                by_labels
                    .entry(series.labels)
                    .or_default()
                    .extend(series.samples);
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
        self.remote_read(&[vec![probe]], now - 60_000, now)
            .await
            .map(|_| ())
    }
}

/// A `STREAMED_XOR_CHUNKS` answer decoded into source series as its bytes
/// arrive. The server sends whole chunks, which may reach outside the
/// asked range, and may split a long series over consecutive frames.
struct StreamedAnswer {
    frames: FrameReader,
    range: std::ops::RangeInclusive<i64>,
    caps: AnswerCaps,
    samples: usize,
    out: Vec<SourceSeries>,
}

impl StreamedAnswer {
    fn new(start_ms: i64, end_ms: i64, caps: AnswerCaps) -> Self {
        Self {
            frames: FrameReader::new(MAX_FRAME_BYTES),
            range: start_ms..=end_ms,
            caps,
            samples: 0,
            out: Vec::new(),
        }
    }

    /// Takes the next bytes of the answer and decodes the frames they
    /// complete.
    fn push(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        self.frames.push(bytes);
        while let Some(frame) = self.frames.next_frame().map_err(frame_error)? {
            for series in frame.chunked_series {
                let labels = source_labels(series.labels);
                let mut samples = Vec::new();
                for chunk in series.chunks {
                    if chunk.r#type != prompb::chunk::Encoding::Xor as i32 {
                        return Err(UpstreamError::Decode(format!(
                            "series {labels:?} has chunks of encoding {}: only float (XOR) series can be forecast; \
                             configure an `expr` such as histogram_quantile(...) for native histograms",
                            chunk.r#type
                        )));
                    }
                    let decoded = xor::decode_xor(&chunk.data)
                        .map_err(|e| UpstreamError::Decode(e.to_string()))?;
                    samples.extend(decoded.into_iter().filter(|(t, _)| self.range.contains(t)));
                }
                self.samples += samples.len();
                self.caps.check_samples(self.samples)?;
                match self.out.last_mut() {
                    Some(last) if last.labels == labels => last.samples.extend(samples),
                    _ => self.out.push(SourceSeries { labels, samples }),
                }
            }
        }
        Ok(())
    }

    /// The series, once the answer has ended on a frame boundary.
    fn finish(mut self) -> Result<Vec<SourceSeries>, UpstreamError> {
        self.frames.finish().map_err(frame_error)?;
        self.out.retain(|s| !s.samples.is_empty());
        Ok(self.out)
    }
}

fn frame_error(e: frame::FrameError) -> UpstreamError {
    UpstreamError::Decode(e.to_string())
}

/// Milliseconds as the HTTP API's seconds.
fn seconds(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// A remote-read query's matchers: metric `name`, and `matchers`.
fn query_matchers(name: &str, matchers: &[Matcher]) -> Vec<prompb::LabelMatcher> {
    std::iter::once(Matcher::equal(METRIC_NAME, name))
        .chain(matchers.iter().cloned())
        .map(|m| m.to_proto())
        .collect()
}

/// A series' labels without the metric name, which the family implies.
fn source_labels(labels: Vec<prompb::Label>) -> Labels {
    labels
        .into_iter()
        .filter(|l| l.name != METRIC_NAME)
        .map(|l| (l.name, l.value))
        .collect()
}

fn read_pem(path: &Path, field: &'static str) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| ClientError::Tls {
        field,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A successful response, or the error it stands for, with the start of
/// its body: the reason, however long the body is.
async fn checked(mut response: reqwest::Response) -> Result<reqwest::Response, UpstreamError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(bytes)) => body.extend_from_slice(&bytes),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY_BYTES);
    Err(UpstreamError::Status {
        status: status.as_u16(),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Hands a body to `take` piece by piece as it arrives, failing as soon
/// as it is longer than the cap (at once, when its length says so).
async fn read_capped(
    mut response: reqwest::Response,
    caps: AnswerCaps,
    mut take: impl FnMut(&[u8]) -> Result<(), UpstreamError>,
) -> Result<(), UpstreamError> {
    if response
        .content_length()
        .is_some_and(|n| n > caps.bytes as u64)
    {
        return Err(caps.too_many_bytes());
    }
    let mut read = 0;
    while let Some(bytes) = response.chunk().await? {
        read += bytes.len();
        if read > caps.bytes {
            return Err(caps.too_many_bytes());
        }
        take(&bytes)?;
    }
    Ok(())
}

/// An answer of Prometheus's HTTP API: `data` on success, else an error.
#[derive(Deserialize)]
struct ApiResponse<T> {
    status: String,
    #[serde(default = "Option::default")]
    data: Option<T>,
    #[serde(default)]
    error: Option<String>,
}

impl<T: serde::de::DeserializeOwned> ApiResponse<T> {
    fn decode(body: &[u8]) -> Result<Option<T>, UpstreamError> {
        let answer: Self =
            serde_json::from_slice(body).map_err(|e| UpstreamError::Decode(e.to_string()))?;
        if answer.status != "success" {
            return Err(UpstreamError::Query(answer.error.unwrap_or(answer.status)));
        }
        Ok(answer.data)
    }
}

/// The series of a `/api/v1/query_range` answer (a matrix), without
/// their metric names.
pub fn decode_matrix(body: &[u8]) -> Result<Vec<SourceSeries>, UpstreamError> {
    let data: Option<QueryData> = ApiResponse::decode(body)?;
    data.map(|d| d.result)
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let mut labels = s.metric;
            labels.remove(METRIC_NAME);
            let samples = s
                .values
                .into_iter()
                .map(|(ts, value)| {
                    let value: f64 = value.parse().map_err(|_| {
                        UpstreamError::Decode(format!("bad sample value {value:?}"))
                    })?;
                    Ok(((ts * 1000.0).round() as i64, value))
                })
                .collect::<Result<_, UpstreamError>>()?;
            Ok(SourceSeries { labels, samples })
        })
        .collect()
}

/// The label sets of a `/api/v1/series` answer, without metric names.
pub fn decode_series_list(body: &[u8]) -> Result<Vec<Labels>, UpstreamError> {
    let data: Option<Vec<Labels>> = ApiResponse::decode(body)?;
    Ok(data
        .unwrap_or_default()
        .into_iter()
        .map(|mut labels| {
            labels.remove(METRIC_NAME);
            labels
        })
        .collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole streamed answer, without caps.
    fn decode_streamed(
        body: &[u8],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SourceSeries>, UpstreamError> {
        let caps = AnswerCaps {
            bytes: usize::MAX,
            samples: usize::MAX,
        };
        let mut answer = StreamedAnswer::new(start_ms, end_ms, caps);
        answer.push(body)?;
        answer.finish()
    }

    fn label(name: &str, value: &str) -> prompb::Label {
        prompb::Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn frame(out: &mut Vec<u8>, instance: &str, samples: &[(i64, f64)]) {
        let message = prompb::ChunkedReadResponse {
            chunked_series: vec![prompb::ChunkedSeries {
                labels: vec![label(METRIC_NAME, "m"), label("instance", instance)],
                chunks: xor::chunk_series(samples),
            }],
            query_index: 0,
        };
        frame::write_frame(out, &message);
    }

    /// A series split over two frames comes back whole, samples of whole
    /// chunks outside the asked range are dropped (and with them a series
    /// left empty), and the metric name goes.
    #[test]
    fn streamed_answers_merge_frames_and_trim_chunks() {
        let a: Vec<(i64, f64)> = (0..300).map(|i| (i * 1000, i as f64)).collect();
        let b = [(5_000, 1.5), (6_000, 2.5)];
        let mut body = Vec::new();
        frame(&mut body, "a", &a[..200]);
        frame(&mut body, "a", &a[200..]);
        frame(&mut body, "b", &b);
        let series = decode_streamed(&body, 10_000, 250_000).unwrap();
        assert_eq!(series.len(), 1, "b has no sample in range: {series:?}");
        assert_eq!(
            series[0].labels,
            Labels::from([("instance".into(), "a".into())])
        );
        assert_eq!(series[0].samples, a[10..=250]);
    }

    #[test]
    fn streamed_histograms_and_corrupt_frames_are_errors() {
        let mut body = Vec::new();
        let mut message = prompb::ChunkedReadResponse {
            chunked_series: vec![prompb::ChunkedSeries {
                labels: vec![label(METRIC_NAME, "h")],
                chunks: xor::chunk_series(&[(1, 1.0)]),
            }],
            query_index: 0,
        };
        message.chunked_series[0].chunks[0].r#type = prompb::chunk::Encoding::Histogram as i32;
        frame::write_frame(&mut body, &message);
        let err = decode_streamed(&body, 0, 10).unwrap_err().to_string();
        assert!(err.contains("histogram"), "{err}");

        let mut body = Vec::new();
        frame(&mut body, "a", &[(1, 1.0)]);
        let last = body.len() - 1;
        body[last] ^= 0xff;
        let err = decode_streamed(&body, 0, 10).unwrap_err();
        assert!(matches!(err, UpstreamError::Decode(_)), "{err}");
    }

    /// Credentials in the upstream URL travel as basic auth, percent-
    /// decoded, and appear in neither the client's URL nor its errors; with
    /// credentials configured besides, the client is refused.
    #[tokio::test]
    async fn credentials_in_the_url_become_basic_auth_and_leave_the_url() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nfail");
            String::from_utf8(head).unwrap().to_ascii_lowercase()
        });
        let url: url::Url = format!("http://reader:p%40ss%3Aw0rd@127.0.0.1:{port}/")
            .parse()
            .unwrap();
        let client = Client::new(url.clone(), &UpstreamConfig::default()).unwrap();
        assert_eq!(client.base().as_str(), format!("http://127.0.0.1:{port}/"));
        let err = client.probe().await.unwrap_err().to_string();
        let head = upstream.join().unwrap();
        let expected = STANDARD.encode("reader:p@ss:w0rd").to_ascii_lowercase();
        assert!(
            head.contains(&format!("authorization: basic {expected}")),
            "{head}"
        );
        assert!(!err.contains("p%40ss") && !err.contains("reader"), "{err}");

        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), "token").unwrap();
        let config: UpstreamConfig = serde_yaml::from_str(&format!(
            "authorization:\n  credentials_file: {}\n",
            secret.path().display()
        ))
        .unwrap();
        let refused = Client::new(url, &config).err().unwrap().to_string();
        assert!(refused.contains("upstream.authorization"), "{refused}");
    }
}

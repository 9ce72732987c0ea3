//! A remote-read client as Prometheus is one: snappy-compressed
//! `ReadRequest`s POSTed with Prometheus's headers, and both answer types
//! decoded, the streamed one checked against the framing rules on the way.

use std::collections::BTreeMap;

use promcast::prompb;
use promcast::remote::frame::FrameReader;
use promcast::remote::xor;
use prost::Message;

/// `prometheus.LabelMatcher.Type` values from proto/remote.proto (the wire
/// contract), written as numbers so the test does not depend on how the
/// generated enum module is named.
pub const MATCH_EQ: i32 = 0;
/// `ReadRequest.ResponseType` values.
pub const SAMPLES: i32 = 0;
pub const STREAMED: i32 = 1;

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

/// A SAMPLES request for `family`'s forecasts over `[start, end]` (ms),
/// one step a minute.
#[allow(dead_code)] // used by the replica suites only
pub fn forecast_request(family: &str, start: i64, end: i64) -> prompb::ReadRequest {
    prompb::ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![matcher(
                MATCH_EQ,
                "__name__",
                &format!("predicted_{family}"),
            )],
            hints: Some(prompb::ReadHints {
                step_ms: 60_000,
                ..Default::default()
            }),
        }],
        ..Default::default()
    }
}

/// A label matcher of type `kind` (`MATCH_EQ`, ...).
pub fn matcher(kind: i32, name: &str, value: &str) -> prompb::LabelMatcher {
    prompb::LabelMatcher {
        r#type: kind,
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// Snappy block format (not framed), as remote read uses.
pub fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(bytes)
        .expect("snappy compression")
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

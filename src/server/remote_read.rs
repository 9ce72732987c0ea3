//! `POST /api/v1/read`: Prometheus remote read. Decodes the request,
//! answers every query in order, and encodes the first response type the
//! client accepts: one `SAMPLES` message, or `STREAMED_XOR_CHUNKS` frames.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};

use tokio::time::Instant;

use crate::config::{Limit, Limits};
use crate::duration::PromDuration;
use crate::forecast::select::{self, Budget, MAX_POINTS};
use crate::forecast::{STALENESS_MS, SyntheticSeries, evaluation_times};
use crate::labels::Matcher;
use crate::prompb::{self, read_request::ResponseType};
use crate::remote::codec::{self, CodecError};
use crate::remote::{frame, xor};

use super::{
    AppState, Body, BodyError, HttpResponse, over_limit, query_failed, read_body, refuse, text,
};

/// Spacing of synthetic samples when the query gives no step (subqueries,
/// range functions): well inside Prometheus's 5-minute lookback.
const DEFAULT_STEP_MS: i64 = 60_000;

/// The last millisecond of year 9999: query times beyond it (or before
/// 1970) are refused, so that adding a horizon or a day of history to any
/// accepted time stays far from overflow.
const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// Handles one remote-read request.
pub async fn handle(state: &AppState, req: Request<Incoming>) -> HttpResponse {
    if let Some(encoding) = req.headers().get(CONTENT_ENCODING)
        && !encoding.as_bytes().eq_ignore_ascii_case(b"snappy")
    {
        return refuse(
            state,
            "request",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Encoding {encoding:?}: remote read bodies are snappy-compressed"
            ),
        );
    }
    let limits = &state.ctx.config.limits;
    let body = match read_body(req.into_body(), limits).await {
        Ok(b) => b,
        Err(e @ BodyError::TooLarge(_)) => {
            return over_limit(state, Limit::RequestBytes, StatusCode::PAYLOAD_TOO_LARGE, e);
        }
        Err(e @ BodyError::TimedOut(_)) => {
            return refuse(state, "limits.read_timeout", StatusCode::REQUEST_TIMEOUT, e);
        }
        Err(e) => return refuse(state, "request", StatusCode::BAD_REQUEST, e),
    };
    respond(state, &body).await
}

/// Answers a remote-read request body (snappy-compressed protobuf): what
/// [`handle`] does once the body has arrived.
pub async fn respond(state: &AppState, body: &[u8]) -> HttpResponse {
    let limits = &state.ctx.config.limits;
    let request: prompb::ReadRequest = match codec::decode(body, limits.max_decoded_bytes) {
        Ok(r) => r,
        Err(e @ CodecError::TooLarge { .. }) => {
            return over_limit(state, Limit::DecodedBytes, StatusCode::PAYLOAD_TOO_LARGE, e);
        }
        Err(e) => return refuse(state, "request", StatusCode::BAD_REQUEST, e),
    };
    if let Err((limit, reason)) = check_limits(limits, &request) {
        return over_limit(state, limit, StatusCode::BAD_REQUEST, reason);
    }
    let response_type = match negotiate(&request.accepted_response_types) {
        Ok(t) => t,
        Err(reason) => return refuse(state, "request", StatusCode::BAD_REQUEST, reason),
    };
    let deadline = Instant::now() + limits.request_timeout.to_std();
    let mut budget = Budget::new(limits);
    let mut answers = Vec::with_capacity(request.queries.len());
    for (i, q) in request.queries.iter().enumerate() {
        match answer(state, i, q, deadline, &mut budget).await {
            Ok(series) => answers.push(series),
            Err(refused) => return refused,
        }
    }
    let mut response = match response_type {
        // One message, so nothing can go before all is encoded: encoded
        // off the async threads, which serve the probes meanwhile.
        ResponseType::Samples => {
            match tokio::task::spawn_blocking(|| encode_samples(answers)).await {
                Ok(body) => {
                    let mut response = Response::new(Body::new(Full::new(Bytes::from(body))));
                    response
                        .headers_mut()
                        .insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
                    response
                }
                Err(e) => {
                    return text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("encoding the answer failed: {e}\n"),
                    );
                }
            }
        }
        ResponseType::StreamedXorChunks => Response::new(stream_frames(answers)),
    };
    let content_type = match response_type {
        ResponseType::Samples => SAMPLES_CONTENT_TYPE,
        ResponseType::StreamedXorChunks => STREAMED_CONTENT_TYPE,
    };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

const SAMPLES_CONTENT_TYPE: &str = "application/x-protobuf";
const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// One snappy-compressed `ReadResponse` with a result per query.
fn encode_samples(answers: Vec<Vec<SyntheticSeries>>) -> Vec<u8> {
    let results = answers
        .into_iter()
        .map(|series| prompb::QueryResult {
            timeseries: series.into_iter().map(to_proto).collect(),
        })
        .collect();
    codec::encode(&prompb::ReadResponse { results })
}

/// Frames written ahead of the client at most: a slow reader holds back
/// the encoder instead of the answer piling up in memory.
const FRAMES_AHEAD: usize = 16;

/// The answer as length- and CRC-framed `ChunkedReadResponse`s, encoded
/// off the async threads and sent one frame at a time as the client
/// reads, each series dropped once framed.
fn stream_frames(answers: Vec<Vec<SyntheticSeries>>) -> Body {
    let (frames, body) = tokio::sync::mpsc::channel(FRAMES_AHEAD);
    tokio::task::spawn_blocking(move || {
        for frame in streamed(answers) {
            if frames.blocking_send(Bytes::from(frame)).is_err() {
                // The client went away.
                return;
            }
        }
    });
    Body::new(FrameChannel(body))
}

/// A response body of the frames a channel delivers.
struct FrameChannel(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for FrameChannel {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|frame| frame.map(|bytes| Ok(hyper::body::Frame::data(bytes))))
    }
}

/// The frames of a `STREAMED_XOR_CHUNKS` answer: exactly one non-empty
/// series per frame, because Prometheus's client reads the first series of
/// every frame without checking that there is one.
fn streamed(answers: Vec<Vec<SyntheticSeries>>) -> impl Iterator<Item = Vec<u8>> {
    answers
        .into_iter()
        .enumerate()
        .flat_map(|(query_index, series)| {
            series
                .into_iter()
                .filter(|s| !s.samples.is_empty())
                .map(move |s| {
                    let chunks = xor::chunk_series(&s.samples);
                    let labels = to_proto(SyntheticSeries {
                        labels: s.labels,
                        samples: Vec::new(),
                    })
                    .labels;
                    let message = prompb::ChunkedReadResponse {
                        chunked_series: vec![prompb::ChunkedSeries { labels, chunks }],
                        query_index: query_index as i64,
                    };
                    let mut out = Vec::new();
                    frame::write_frame(&mut out, &message);
                    out
                })
        })
}

fn check_limits(limits: &Limits, request: &prompb::ReadRequest) -> Result<(), (Limit, String)> {
    if request.queries.len() > limits.max_queries_per_request {
        return Err((
            Limit::Queries,
            format!(
                "{} queries in one request; at most {} are allowed",
                request.queries.len(),
                limits.max_queries_per_request
            ),
        ));
    }
    let max_range = limits.max_query_range.as_millis_i64();
    for (i, q) in request.queries.iter().enumerate() {
        let range = q.end_timestamp_ms.saturating_sub(q.start_timestamp_ms);
        if range > max_range {
            return Err((
                Limit::QueryRange,
                format!(
                    "query {i}: time range {} is longer than {}",
                    PromDuration::from_millis(range.unsigned_abs()),
                    limits.max_query_range
                ),
            ));
        }
    }
    Ok(())
}

/// Picks the first response type in the client's list that promcast
/// supports; an empty list means `SAMPLES`.
fn negotiate(accepted: &[i32]) -> Result<ResponseType, String> {
    if accepted.is_empty() {
        return Ok(ResponseType::Samples);
    }
    accepted
        .iter()
        .find_map(|t| ResponseType::try_from(*t).ok())
        .ok_or_else(|| format!("none of the accepted response types {accepted:?} is supported (promcast answers SAMPLES and STREAMED_XOR_CHUNKS)"))
}

/// Answers query `i` of a request, or the response that refuses it.
async fn answer(
    state: &AppState,
    i: usize,
    q: &prompb::Query,
    deadline: Instant,
    budget: &mut Budget,
) -> Result<Vec<SyntheticSeries>, HttpResponse> {
    let matchers = q
        .matchers
        .iter()
        .map(Matcher::from_proto)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            refuse(
                state,
                "selector",
                StatusCode::BAD_REQUEST,
                format!("query {i}: {e}"),
            )
        })?;
    if let Some(t) = [q.start_timestamp_ms, q.end_timestamp_ms]
        .into_iter()
        .find(|t| !(0..=MAX_TIMESTAMP_MS).contains(t))
    {
        return Err(refuse(
            state,
            "request",
            StatusCode::BAD_REQUEST,
            format!(
                "query {i}: timestamp {t} ms is outside 1970-01-01..9999-12-31 (0..={MAX_TIMESTAMP_MS})"
            ),
        ));
    }
    if q.end_timestamp_ms < q.start_timestamp_ms {
        return Err(refuse(
            state,
            "request",
            StatusCode::BAD_REQUEST,
            format!(
                "query {i}: end {} is before start {}",
                q.end_timestamp_ms, q.start_timestamp_ms
            ),
        ));
    }
    let times = evaluation_times(
        q.start_timestamp_ms,
        q.end_timestamp_ms,
        step_of(q),
        MAX_POINTS,
    );
    select::select(&state.ctx, &matchers, &times, deadline, budget)
        .await
        .map_err(|e| query_failed(state, &e, format_args!("query {i}: ")))
}

/// The spacing of synthetic samples for a query: the range query's step
/// (at most the lookback, so every evaluation finds a sample), a default
/// for spans longer than the lookback, and 0 — only the end — for a plain
/// instant query.
fn step_of(q: &prompb::Query) -> i64 {
    let hinted = q.hints.as_ref().map_or(0, |h| h.step_ms);
    if hinted > 0 {
        hinted.min(STALENESS_MS)
    } else if q.end_timestamp_ms - q.start_timestamp_ms > STALENESS_MS {
        DEFAULT_STEP_MS
    } else {
        0
    }
}

fn to_proto(s: SyntheticSeries) -> prompb::TimeSeries {
    prompb::TimeSeries {
        labels: s
            .labels
            .into_iter()
            .map(|(name, value)| prompb::Label { name, value })
            .collect(),
        samples: s
            .samples
            .into_iter()
            .map(|(timestamp, value)| prompb::Sample { value, timestamp })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    /// A streamed answer leaves as one body frame per series, each a whole
    /// remote-read frame, not as one buffer of them all.
    #[tokio::test]
    async fn streamed_answers_leave_a_frame_at_a_time() {
        let series = |instance: &str| SyntheticSeries {
            labels: [("instance".to_owned(), instance.to_owned())].into(),
            samples: (0..200).map(|i| (i * 60_000, i as f64)).collect(),
        };
        let answers = vec![vec![series("a"), series("b")], vec![series("c")]];
        let mut body = stream_frames(answers);
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(frames.len(), 3);
        for (i, bytes) in frames.iter().enumerate() {
            let mut reader = frame::FrameReader::new(1 << 20);
            reader.push(bytes);
            let message = reader.next_frame().unwrap().expect("a whole frame");
            assert_eq!(message.query_index, i64::from(i == 2));
            assert!(reader.next_frame().unwrap().is_none());
        }
    }

    #[test]
    fn negotiation_takes_the_clients_first_supported_type() {
        let streamed = ResponseType::StreamedXorChunks as i32;
        let samples = ResponseType::Samples as i32;
        assert_eq!(negotiate(&[]).unwrap(), ResponseType::Samples);
        assert_eq!(
            negotiate(&[streamed, samples]).unwrap(),
            ResponseType::StreamedXorChunks
        );
        assert_eq!(
            negotiate(&[samples, streamed]).unwrap(),
            ResponseType::Samples
        );
        assert_eq!(negotiate(&[7, samples]).unwrap(), ResponseType::Samples);
        assert!(negotiate(&[7]).is_err());
    }

    #[test]
    fn instant_queries_evaluate_only_at_the_end() {
        let q = |start, end, step| prompb::Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![],
            hints: Some(prompb::ReadHints {
                step_ms: step,
                ..Default::default()
            }),
        };
        assert_eq!(step_of(&q(0, 300_000, 0)), 0);
        assert_eq!(step_of(&q(0, 3_600_000, 0)), DEFAULT_STEP_MS);
        assert_eq!(step_of(&q(0, 3_600_000, 15_000)), 15_000);
        assert_eq!(step_of(&q(0, 3_600_000, 3_600_000)), STALENESS_MS);
    }
}

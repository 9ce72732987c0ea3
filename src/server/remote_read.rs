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

use super::{AppState, BodyError, HttpResponse, over_limit, query_failed, read_body, refuse};

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
    let request: prompb::ReadRequest = match codec::decode(&body, limits.max_decoded_bytes) {
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
    let (body, content_type, encoding) = match response_type {
        ResponseType::Samples => (
            encode_samples(answers),
            SAMPLES_CONTENT_TYPE,
            Some("snappy"),
        ),
        ResponseType::StreamedXorChunks => (encode_streamed(answers), STREAMED_CONTENT_TYPE, None),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(encoding) = encoding {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
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

/// Length- and CRC-framed `ChunkedReadResponse`s: exactly one non-empty
/// series per frame, because Prometheus's client reads the first series of
/// every frame without checking that there is one.
fn encode_streamed(answers: Vec<Vec<SyntheticSeries>>) -> Vec<u8> {
    let mut out = Vec::new();
    for (query_index, series) in answers.into_iter().enumerate() {
        for s in series.into_iter().filter(|s| !s.samples.is_empty()) {
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
            frame::write_frame(&mut out, &message);
        }
    }
    out
}

/// The request-shape limits, checked before any work: how many queries,
/// and how long a time range each.
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

//! `POST /api/v1/read`: Prometheus remote read. Decodes the request,
//! answers every query in order, encodes a `SAMPLES` response.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::codec::{self, CodecError, MAX_DECODED_BYTES};
use crate::forecast::{LOOKBACK_MS, SyntheticSeries, evaluation_times};
use crate::labels::Matcher;
use crate::prompb::{self, read_request::ResponseType};

use super::query::{self, MAX_POINTS, QueryError};
use super::{AppState, HttpResponse, read_body, text};

/// Spacing of synthetic samples when the query gives no step (subqueries,
/// range functions): well inside Prometheus's 5-minute lookback.
const DEFAULT_STEP_MS: i64 = 60_000;

/// Handles one remote-read request.
pub async fn handle(state: &AppState, req: Request<Incoming>) -> HttpResponse {
    if let Some(encoding) = req.headers().get(CONTENT_ENCODING)
        && !encoding.as_bytes().eq_ignore_ascii_case(b"snappy")
    {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Encoding {encoding:?}: remote read bodies are snappy-compressed\n"
            ),
        );
    }
    let body = match read_body(req.into_body(), MAX_DECODED_BYTES).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let request: prompb::ReadRequest = match codec::decode(&body, MAX_DECODED_BYTES) {
        Ok(r) => r,
        Err(e @ CodecError::TooLarge { .. }) => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, format!("{e}\n"));
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    if let Err(reason) = negotiate(&request.accepted_response_types) {
        return text(StatusCode::BAD_REQUEST, reason);
    }
    let mut results = Vec::with_capacity(request.queries.len());
    for (i, q) in request.queries.iter().enumerate() {
        match answer(state, q).await {
            Ok(series) => results.push(prompb::QueryResult {
                timeseries: series.into_iter().map(to_proto).collect(),
            }),
            Err((status, reason)) => return text(status, format!("query {i}: {reason}\n")),
        }
    }
    let mut response = Response::new(Full::new(Bytes::from(codec::encode(
        &prompb::ReadResponse { results },
    ))));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
    response
}

/// Picks the first response type in the client's list that promcast
/// supports; an empty list means `SAMPLES`.
fn negotiate(accepted: &[i32]) -> Result<ResponseType, String> {
    if accepted.is_empty() {
        return Ok(ResponseType::Samples);
    }
    accepted
        .iter()
        .find_map(|t| match ResponseType::try_from(*t) {
            Ok(ResponseType::Samples) => Some(ResponseType::Samples),
            _ => None,
        })
        .ok_or_else(|| format!("none of the accepted response types {accepted:?} is supported (promcast answers SAMPLES)\n"))
}

async fn answer(
    state: &AppState,
    q: &prompb::Query,
) -> Result<Vec<SyntheticSeries>, (StatusCode, String)> {
    let matchers = q
        .matchers
        .iter()
        .map(Matcher::from_proto)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    if q.end_timestamp_ms < q.start_timestamp_ms {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "end {} is before start {}",
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
    query::select(state, &matchers, &times).await.map_err(|e| {
        let status = match e {
            QueryError::Select(_) => StatusCode::BAD_REQUEST,
            QueryError::Upstream(_) => StatusCode::BAD_GATEWAY,
            QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status != StatusCode::BAD_REQUEST {
            tracing::warn!(error = %e, "remote read query failed");
        }
        (status, e.to_string())
    })
}

/// The spacing of synthetic samples for a query: the range query's step
/// (at most the lookback, so every evaluation finds a sample), a default
/// for spans longer than the lookback, and 0 — only the end — for a plain
/// instant query.
fn step_of(q: &prompb::Query) -> i64 {
    let hinted = q.hints.as_ref().map_or(0, |h| h.step_ms);
    if hinted > 0 {
        hinted.min(LOOKBACK_MS)
    } else if q.end_timestamp_ms - q.start_timestamp_ms > LOOKBACK_MS {
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
    fn negotiation_prefers_the_clients_order_among_supported_types() {
        let streamed = ResponseType::StreamedXorChunks as i32;
        let samples = ResponseType::Samples as i32;
        assert_eq!(negotiate(&[]).unwrap(), ResponseType::Samples);
        assert_eq!(
            negotiate(&[streamed, samples]).unwrap(),
            ResponseType::Samples
        );
        assert!(negotiate(&[streamed]).is_err());
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
        assert_eq!(step_of(&q(0, 3_600_000, 3_600_000)), LOOKBACK_MS);
    }
}

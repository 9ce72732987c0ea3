//! Operational endpoints: liveness, readiness, own metrics, model status.

use std::sync::atomic::Ordering;

use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue};

use super::{AppState, HttpResponse, text};

/// `GET /-/healthy`: the process is serving.
pub fn healthy() -> HttpResponse {
    text(StatusCode::OK, "promcast is Healthy.\n")
}

/// `GET /-/ready`: the configuration is loaded, the upstream answered, and
/// no shutdown has begun.
pub fn ready(state: &AppState) -> HttpResponse {
    if state.draining.load(Ordering::Relaxed) {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "promcast is shutting down.\n",
        )
    } else if state.ready.load(Ordering::Relaxed) {
        text(StatusCode::OK, "promcast is Ready.\n")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "promcast is not ready: the upstream has not answered yet.\n",
        )
    }
}

/// `GET /metrics`: promcast's own metrics.
pub fn metrics(state: &AppState) -> HttpResponse {
    let mut r = text(StatusCode::OK, state.ctx.metrics.encode());
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// `GET /api/v1/models`: every family's model state.
pub fn models(state: &AppState) -> HttpResponse {
    let body = serde_json::json!({"status": "success", "data": state.ctx.registry.statuses()});
    let mut r = text(StatusCode::OK, body.to_string());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

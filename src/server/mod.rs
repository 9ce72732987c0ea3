//! The HTTP server: connections (a cap, read timeouts, the drain at
//! shutdown), routing, authentication, reads taking turns, body limits,
//! and per-request metrics; a handler that panics costs its request a 500.
//! `web` holds the TLS, credentials (`auth`) and headers in force, reloaded
//! as their files change. The routes live in `remote_read`, `federate`,
//! `admin` (probes, metrics, models API), `status` (the HTML page, with
//! `chart`) and `demo` (the demo's source series); all but `demo` reach
//! synthetic series through [`crate::forecast::select`]. `exposition`
//! writes what Prometheus scrapes. Refused requests are logged through
//! `refusals`.

mod admin;
pub mod auth;
mod chart;
mod connections;
mod demo;
mod exposition;
mod federate;
mod refusals;
pub mod remote_read;
mod status;
pub mod web;

pub use connections::serve;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};

use crate::config::Limit;
use crate::forecast::select::{Context, QueryError};
use crate::series::SelectError;

/// Everything a request handler may use.
pub struct AppState {
    /// Configuration, history, models: what answering a query needs.
    pub ctx: Arc<Context>,
    /// Set once the upstream has answered.
    pub ready: AtomicBool,
    /// Set at a shutdown signal: `/-/ready` turns 503, reads are refused.
    pub draining: AtomicBool,
    /// Reads being answered or waiting for their turn.
    reads_in_flight: AtomicUsize,
    /// TLS, who may call the endpoints, and response headers.
    pub web: Arc<web::Web>,
    /// Log lines of refused requests, rate-limited.
    refusals: refusals::Refusals,
    /// Turns to answer a read (`limits.max_concurrent_reads`).
    reads: tokio::sync::Semaphore,
}

impl AppState {
    /// The HTTP layer over `ctx`, protected as its `web:` settings and the
    /// web configuration file `web_config_file` say; not ready until the
    /// upstream answers.
    pub fn new(
        ctx: Arc<Context>,
        web_config_file: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            web: Arc::new(web::Web::load(ctx.config.web.clone(), web_config_file)?),
            reads: tokio::sync::Semaphore::new(ctx.config.limits.max_concurrent_reads),
            ctx,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            reads_in_flight: AtomicUsize::new(0),
            refusals: refusals::Refusals::new(refusals::INTERVAL),
        })
    }
}

/// The body of every response: whole, or streamed as it is produced.
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The response type of every handler.
pub type HttpResponse = Response<Body>;

/// A plain-text response: every error says why in its body.
pub fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    let mut r = Response::new(Body::new(Full::new(Bytes::from(body.into()))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Longer than the limit.
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    /// The connection failed mid-body.
    #[error("reading request body: {0}")]
    Read(String),
    /// The client did not send the whole body in time.
    #[error("the request body did not arrive within {0} (limits.read_timeout)")]
    TimedOut(crate::duration::PromDuration),
}

/// A request refused for the client's mistake: answered with `reason`,
/// and logged at info under `kind` (a limit's field, `horizon`,
/// `selector`, `request`), at most once a minute per kind.
pub fn refuse(
    state: &AppState,
    kind: &'static str,
    status: StatusCode,
    reason: impl std::fmt::Display,
) -> HttpResponse {
    let reason = reason.to_string();
    state.refusals.log(kind, &reason);
    text(status, format!("{reason}\n"))
}

/// The answer to a query that could not be answered, its reason after
/// `context`: a refusal where the query asked too much or the impossible,
/// a logged warning where promcast or its upstream failed.
pub fn query_failed(
    state: &AppState,
    error: &QueryError,
    context: impl std::fmt::Display,
) -> HttpResponse {
    let reason = format!("{context}{error}");
    let status = match error {
        QueryError::Select(
            SelectError::BadHorizon { .. }
            | SelectError::HorizonTooLong { .. }
            | SelectError::ZeroHorizon,
        ) => return refuse(state, "horizon", StatusCode::BAD_REQUEST, reason),
        QueryError::Limit { limit, .. } => {
            return refuse(state, limit.field(), StatusCode::BAD_REQUEST, reason);
        }
        QueryError::Refused(_) => return refuse(state, "families", StatusCode::FORBIDDEN, reason),
        QueryError::Upstream(_) => StatusCode::BAD_GATEWAY,
        QueryError::Deadline { .. } => StatusCode::SERVICE_UNAVAILABLE,
        QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    tracing::warn!(error = %reason, "query failed");
    text(status, format!("{reason}\n"))
}

/// Reads a request body of at most `limits.max_request_bytes`, sent
/// within `limits.read_timeout`.
pub async fn read_body(body: Incoming, limits: &crate::config::Limits) -> Result<Bytes, BodyError> {
    let limit = limits.max_request_bytes;
    let collected = Limited::new(body, limit).collect();
    match tokio::time::timeout(limits.read_timeout.to_std(), collected).await {
        Err(_) => Err(BodyError::TimedOut(limits.read_timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
    }
}

/// A request refused by one of the limits: counted, and answered with the
/// setting to change.
pub fn over_limit(
    state: &AppState,
    limit: Limit,
    status: StatusCode,
    reason: impl std::fmt::Display,
) -> HttpResponse {
    state.ctx.metrics.limit_rejected(limit);
    refuse(
        state,
        limit.field(),
        status,
        format!("{reason} ({})", limit.field()),
    )
}

/// Answers a read once one of `limits.max_concurrent_reads` turns is free,
/// or a 503 after `limits.max_read_wait`: a burst of reads queues instead
/// of sharing the cores and the memory among all of them, while probes and
/// `/metrics`, which take no turn, answer at once. While shutting down,
/// new reads get a 503 and those in flight are awaited (see [`serve`]).
async fn in_turn(state: &AppState, read: impl Future<Output = HttpResponse>) -> HttpResponse {
    let _in_flight = InFlight::enter(&state.reads_in_flight);
    if state.draining.load(Ordering::Relaxed) {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "promcast is shutting down; another replica or the next start will answer\n",
        );
    }
    let limits = &state.ctx.config.limits;
    match tokio::time::timeout(limits.max_read_wait.to_std(), state.reads.acquire()).await {
        Ok(Ok(_turn)) => read.await,
        _ => over_limit(
            state,
            Limit::ConcurrentReads,
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} reads are being answered and none finished within {}; retry later",
                limits.max_concurrent_reads, limits.max_read_wait
            ),
        ),
    }
}

/// One read counted in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Health probes stay open: orchestrators call them without credentials,
/// and they reveal nothing.
fn needs_auth(path: &str) -> bool {
    !matches!(path, "/-/healthy" | "/-/ready")
}

/// Answers one request: protection first, then the route, then the
/// configured headers.
async fn route(state: Arc<AppState>, req: Request<Incoming>) -> HttpResponse {
    let protection = state.web.current();
    let mut response = answer(&state, &protection, req).await;
    for (name, value) in &protection.headers {
        response.headers_mut().insert(name, value.clone());
    }
    response
}

/// Whether a request's credentials are accepted: checked on a blocking
/// thread where that may take a bcrypt run.
async fn authenticated(
    protection: &Arc<web::Protection>,
    headers: &hyper::HeaderMap,
) -> Result<(), auth::AuthError> {
    if !protection.auth.is_slow() {
        return protection.auth.check(headers);
    }
    let protection = Arc::clone(protection);
    let headers = headers.clone();
    tokio::task::spawn_blocking(move || protection.auth.check(&headers))
        .await
        .unwrap_or(Err(auth::AuthError::Invalid))
}

async fn answer(
    state: &Arc<AppState>,
    protection: &Arc<web::Protection>,
    req: Request<Incoming>,
) -> HttpResponse {
    let started = Instant::now();
    if needs_auth(req.uri().path())
        && let Err(e) = authenticated(protection, req.headers()).await
    {
        let mut response = text(StatusCode::UNAUTHORIZED, format!("{e}\n"));
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(protection.auth.challenge()),
        );
        state
            .ctx
            .metrics
            .http_request("unauthorized", 401, started.elapsed().as_secs_f64());
        return response;
    }
    let (path, response): (&'static str, HttpResponse) = match (req.method(), req.uri().path()) {
        (&Method::POST, "/api/v1/read") => (
            "/api/v1/read",
            in_turn(state, remote_read::handle(state, req)).await,
        ),
        (&Method::GET, "/federate") => (
            "/federate",
            in_turn(state, federate::handle(state, &req)).await,
        ),
        (&Method::GET | &Method::HEAD, "/-/healthy") => ("/-/healthy", admin::healthy()),
        (&Method::GET | &Method::HEAD, "/-/ready") => ("/-/ready", admin::ready(state)),
        (&Method::GET, "/metrics") => ("/metrics", admin::metrics(state)),
        (&Method::GET, "/api/v1/models") => ("/api/v1/models", admin::models(state)),
        (&Method::GET, "/demo/metrics") => ("/demo/metrics", demo::metrics(state).await),
        (&Method::GET, "/") => ("/", status::page(state).await),
        (
            _,
            "/api/v1/read" | "/federate" | "/-/healthy" | "/-/ready" | "/metrics"
            | "/api/v1/models" | "/demo/metrics" | "/",
        ) => (
            "other",
            text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {} not allowed here\n", req.method()),
            ),
        ),
        (_, p) => (
            "other",
            text(StatusCode::NOT_FOUND, format!("no such endpoint: {p}\n")),
        ),
    };
    state.ctx.metrics.http_request(
        path,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

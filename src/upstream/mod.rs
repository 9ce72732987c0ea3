//! Where source history comes from: a Prometheus-compatible server (remote
//! read for metrics, `/api/v1/query_range` for configured expressions) or
//! the embedded demo.

mod demo;
mod history;
pub mod prometheus;

use std::sync::{Arc, Mutex};

use crate::labels::{Labels, Matcher};
use crate::series::is_synthetic;
use crate::telemetry::Metrics;
use history::{HistoryCache, Plan};

/// One source series: its labels (without the metric name) and samples as
/// `(unix ms, value)` in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSeries {
    /// Labels, `__name__` excluded.
    pub labels: Labels,
    /// Samples in time order.
    pub samples: Vec<(i64, f64)>,
}

/// What to read for a family.
#[derive(Debug, Clone, Copy)]
pub struct FamilySource<'a> {
    /// Family name; the metric name unless `expr` is set.
    pub name: &'a str,
    /// PromQL expression to evaluate instead of reading the metric.
    pub expr: Option<&'a str>,
    /// Resolution for expressions (ms).
    pub step_ms: i64,
}

/// A failed upstream read.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream request failed: {}", with_causes(.0))]
    Http(reqwest::Error),
    #[error("upstream answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("upstream answer could not be decoded: {0}")]
    Decode(String),
    #[error("upstream query error: {0}")]
    Query(String),
    #[error("refusing to ask the upstream for synthetic series {0:?}")]
    Synthetic(String),
    /// An answer over `upstream.max_answer_bytes` or `_samples`.
    #[error(
        "the upstream answer holds more than {field} = {limit} {what}; narrow the selector, shorten defaults.train_window, or raise the setting"
    )]
    TooLarge {
        field: &'static str,
        limit: usize,
        what: &'static str,
    },
}

impl From<reqwest::Error> for UpstreamError {
    fn from(e: reqwest::Error) -> Self {
        UpstreamError::Http(e)
    }
}

/// An error's message followed by its causes: reqwest keeps the useful
/// part ("connection refused") in the source chain.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl UpstreamError {
    /// Every value [`UpstreamError::kind`] returns.
    pub const KINDS: [&'static str; 8] = [
        "timeout",
        "connect",
        "http",
        "status",
        "decode",
        "query",
        "synthetic",
        "too_large",
    ];

    /// Whether the upstream refused the query itself (a PromQL syntax or
    /// type error), rather than failing to answer it.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            UpstreamError::Status {
                status: 400 | 422,
                ..
            } | UpstreamError::Query(_)
        )
    }

    /// A short, bounded label for `/metrics`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Http(e) if e.is_timeout() => "timeout",
            UpstreamError::Http(e) if e.is_connect() => "connect",
            UpstreamError::Http(_) => "http",
            UpstreamError::Status { .. } => "status",
            UpstreamError::Decode(_) => "decode",
            UpstreamError::Query(_) => "query",
            UpstreamError::Synthetic(_) => "synthetic",
            UpstreamError::TooLarge { .. } => "too_large",
        }
    }
}

/// The configured source of history.
pub struct Upstream {
    backend: Backend,
    metrics: Arc<Metrics>,
    /// The most recent failure (unix ms, message), for the status page.
    last_error: Mutex<Option<(i64, String)>>,
    history: HistoryCache,
}

/// Samples of recent history kept between queries (16 bytes each).
const HISTORY_SAMPLES: usize = 8 << 20;

enum Backend {
    Prometheus(prometheus::Client),
    Demo(demo::Demo),
}

impl Upstream {
    /// A Prometheus-compatible upstream.
    pub fn prometheus(client: prometheus::Client, metrics: Arc<Metrics>) -> Self {
        metrics.init_upstream_errors(&UpstreamError::KINDS);
        Self {
            backend: Backend::Prometheus(client),
            metrics,
            last_error: Mutex::new(None),
            history: HistoryCache::new(HISTORY_SAMPLES),
        }
    }

    /// The embedded demo upstream.
    pub fn demo(metrics: Arc<Metrics>) -> Self {
        metrics.init_upstream_errors(&UpstreamError::KINDS);
        Self {
            backend: Backend::Demo(demo::Demo),
            metrics,
            last_error: Mutex::new(None),
            history: HistoryCache::new(HISTORY_SAMPLES),
        }
    }

    /// Families the upstream itself offers without configuration (the demo's).
    pub fn builtin_families(&self) -> Vec<String> {
        match &self.backend {
            Backend::Demo(_) => demo::FAMILIES.iter().map(|f| f.name.to_owned()).collect(),
            Backend::Prometheus(_) => Vec::new(),
        }
    }

    /// Source series of `family` matching `matchers` with samples in
    /// `[start_ms, end_ms]`.
    pub async fn fetch(
        &self,
        family: FamilySource<'_>,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SourceSeries>, UpstreamError> {
        let result = if family.expr.is_none() && is_synthetic(family.name) {
            Err(UpstreamError::Synthetic(family.name.to_owned()))
        } else {
            match &self.backend {
                Backend::Prometheus(c) => c.fetch(family, matchers, start_ms, end_ms).await,
                Backend::Demo(d) => Ok(d.fetch(family.name, matchers, start_ms, end_ms)),
            }
        };
        self.metrics.upstream_requests.inc();
        match result {
            Ok(mut series) => {
                series.retain(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)));
                Ok(series)
            }
            Err(e) => {
                self.metrics.upstream_error(e.kind());
                *crate::lock::lock(&self.last_error) =
                    Some((crate::calendar::now_ms(), e.to_string()));
                Err(e)
            }
        }
    }

    /// The most recent failed read: when (unix ms) and why.
    pub fn last_error(&self) -> Option<(i64, String)> {
        crate::lock::lock(&self.last_error).clone()
    }

    /// Where history comes from, for people: the URL or "embedded demo".
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Prometheus(c) => c.base().to_string(),
            Backend::Demo(_) => "embedded demo".to_owned(),
        }
    }

    /// Like [`Upstream::fetch`], for the recent history queries read again
    /// and again: served from the history cache where it can be, reading
    /// only the newest part from the upstream. Expression families are read
    /// whole, since `query_range` aligns its samples to the start.
    pub async fn fetch_recent(
        &self,
        family: FamilySource<'_>,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SourceSeries>, UpstreamError> {
        if family.expr.is_some() {
            return self.fetch(family, matchers, start_ms, end_ms).await;
        }
        let key = HistoryCache::key(family.name, matchers);
        match self.history.plan(&key, start_ms, end_ms) {
            Plan::Full => {
                let series = self.fetch(family, matchers, start_ms, end_ms).await?;
                Ok(self.history.store(key, start_ms, end_ms, series))
            }
            Plan::Tail(from_ms, cached) => {
                let tail = self.fetch(family, matchers, from_ms, end_ms).await?;
                Ok(self
                    .history
                    .merge(&key, cached, Some((from_ms, tail)), start_ms, end_ms))
            }
            Plan::Cached(cached) => Ok(self.history.merge(&key, cached, None, start_ms, end_ms)),
        }
    }

    /// Checks that the upstream answers at all (for readiness).
    pub async fn probe(&self) -> Result<(), UpstreamError> {
        match &self.backend {
            Backend::Prometheus(c) => c.probe().await,
            Backend::Demo(_) => Ok(()),
        }
    }
}

//! Where source history comes from: a Prometheus-compatible server (remote
//! read for metrics, `/api/v1/query_range` for configured expressions) or
//! the embedded demo.

mod demo;
mod history;
pub mod prometheus;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::labels::{Labels, Matcher, equal_to};
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

/// Runs `work` on a blocking thread; a panic there goes on here.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Bounds on what one training reads (`limits.max_training_series`,
/// `limits.max_training_samples`).
#[derive(Debug, Clone, Copy)]
pub struct TrainingCaps {
    /// Series at most.
    pub series: usize,
    /// Samples, about: whole series are kept until this many are reached.
    pub samples: usize,
}

/// What a training read returned.
#[derive(Debug)]
pub struct TrainingHistory {
    /// The series to train on.
    pub series: Vec<SourceSeries>,
    /// How many series the family has: more than `series.len()` when
    /// the caps left some out.
    pub available: usize,
}

/// Series read per remote-read request of a training read.
const SERIES_PER_READ: usize = 64;

/// A stable hash of a label set: the order a training samples series in.
fn label_hash(labels: &Labels) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for (k, v) in labels {
        hasher.update(k.as_bytes());
        hasher.update([0xff]);
        hasher.update(v.as_bytes());
        hasher.update([0xfe]);
    }
    hasher.finalize().into()
}

/// The first of `series` that fit `caps`: at most `caps.series`, and
/// whole series until `caps.samples` is reached.
fn within(series: Vec<SourceSeries>, caps: TrainingCaps) -> Vec<SourceSeries> {
    let mut samples = 0;
    series
        .into_iter()
        .take(caps.series)
        .take_while(|s| {
            let fits = samples < caps.samples;
            samples += s.samples.len();
            fits
        })
        .collect()
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
        let mut series = self.counted(result)?;
        series.retain(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)));
        Ok(series)
    }

    /// Counts an upstream request, and its failure, in `/metrics` and for
    /// the status page.
    fn counted<T>(&self, result: Result<T, UpstreamError>) -> Result<T, UpstreamError> {
        self.metrics.upstream_requests.inc();
        if let Err(e) = &result {
            self.metrics.upstream_error(e.kind());
            *crate::lock::lock(&self.last_error) = Some((crate::calendar::now_ms(), e.to_string()));
        }
        result
    }

    /// How many series of `family` match `matchers` with samples in
    /// `[start_ms, end_ms]`, counted up to `limit` + 1 without reading a
    /// sample; `None` for an expression family, whose series exist only
    /// once it is evaluated.
    pub async fn count_series(
        &self,
        family: FamilySource<'_>,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Option<usize>, UpstreamError> {
        if family.expr.is_some() {
            return Ok(None);
        }
        let listed = self
            .list_series(
                family.name,
                matchers,
                start_ms,
                end_ms,
                limit.saturating_add(1),
            )
            .await?;
        Ok(Some(listed.len()))
    }

    async fn list_series(
        &self,
        name: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<Labels>, UpstreamError> {
        let listed = match &self.backend {
            Backend::Prometheus(c) => c.series(name, matchers, start_ms, end_ms, limit).await,
            Backend::Demo(d) => Ok(d
                .fetch(name, matchers, start_ms, end_ms)
                .into_iter()
                .map(|s| s.labels)
                .collect()),
        };
        let mut listed = self.counted(listed)?;
        listed.truncate(limit);
        Ok(listed)
    }

    /// A family's history over `[start_ms, end_ms]` to train on, within
    /// `caps`: when the family has more series than `caps.series`, or
    /// more samples than `caps.samples`, a sample of its series, the same
    /// one at every training (ordered by a hash of their labels), so that
    /// one huge metric costs a bounded read. A metric's series are listed
    /// first, without samples, then read a batch at a time.
    pub async fn fetch_for_training(
        &self,
        family: FamilySource<'_>,
        start_ms: i64,
        end_ms: i64,
        caps: TrainingCaps,
    ) -> Result<TrainingHistory, UpstreamError> {
        if family.expr.is_some() {
            let mut series = self.fetch(family, &[], start_ms, end_ms).await?;
            let available = series.len();
            series.sort_by_cached_key(|s| label_hash(&s.labels));
            return Ok(TrainingHistory {
                series: within(series, caps),
                available,
            });
        }
        let mut listed = self
            .list_series(family.name, &[], start_ms, end_ms, usize::MAX)
            .await?;
        let available = listed.len();
        listed.sort_by_cached_key(label_hash);
        listed.truncate(caps.series);
        let mut series = Vec::new();
        let mut seen = BTreeSet::new();
        let mut samples = 0;
        for batch in listed.chunks(SERIES_PER_READ) {
            if samples >= caps.samples {
                break;
            }
            let selections: Vec<Vec<Matcher>> =
                batch.iter().map(|l| equal_to(l).collect()).collect();
            let read = match &self.backend {
                Backend::Prometheus(c) => {
                    c.fetch_each(family.name, &selections, start_ms, end_ms)
                        .await
                }
                Backend::Demo(d) => Ok(selections
                    .iter()
                    .flat_map(|m| d.fetch(family.name, m, start_ms, end_ms))
                    .collect()),
            };
            let mut read = self.counted(read)?;
            // A selection's equalities also select series with more
            // labels, and one series may come from several selections.
            let wanted: BTreeSet<&Labels> = batch.iter().collect();
            read.retain(|s| wanted.contains(&s.labels) && seen.insert(s.labels.clone()));
            samples += read.iter().map(|s| s.samples.len()).sum::<usize>();
            series.extend(read);
        }
        series.sort_by_cached_key(|s| label_hash(&s.labels));
        Ok(TrainingHistory {
            series: within(series, caps),
            available,
        })
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

    /// Whether the recent history of `family`'s series selected by
    /// `matchers` is cached, so that [`Upstream::fetch_recent`] reads
    /// little of the upstream.
    pub fn is_cached(&self, family: FamilySource<'_>, matchers: &[Matcher]) -> bool {
        family.expr.is_none()
            && self
                .history
                .contains(&HistoryCache::key(family.name, matchers))
    }

    /// Like [`Upstream::fetch`], for the recent history queries read again
    /// and again: served from the history cache where it can be, reading
    /// only the newest part from the upstream. Expression families are read
    /// whole, since `query_range` aligns its samples to the start.
    pub async fn fetch_recent(
        self: &Arc<Self>,
        family: FamilySource<'_>,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SourceSeries>, UpstreamError> {
        if family.expr.is_some() {
            return self.fetch(family, matchers, start_ms, end_ms).await;
        }
        let key = HistoryCache::key(family.name, matchers);
        // Copying and merging a large family's history takes a while: off
        // the async threads, which keep answering probes meanwhile.
        match self.history.plan(&key, start_ms, end_ms) {
            Plan::Full => {
                let series = self.fetch(family, matchers, start_ms, end_ms).await?;
                let me = Arc::clone(self);
                Ok(blocking(move || me.history.store(key, start_ms, end_ms, series)).await)
            }
            Plan::Tail(from_ms, cached) => {
                let tail = self.fetch(family, matchers, from_ms, end_ms).await?;
                let me = Arc::clone(self);
                Ok(blocking(move || {
                    me.history
                        .merge(&key, cached, Some((from_ms, tail)), start_ms, end_ms)
                })
                .await)
            }
            Plan::Cached(cached) => {
                let me = Arc::clone(self);
                Ok(blocking(move || me.history.merge(&key, cached, None, start_ms, end_ms)).await)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: FamilySource<'static> = FamilySource {
        name: "demo_cpu_usage_percent",
        expr: None,
        step_ms: 60_000,
    };

    /// A training read over the caps keeps the same sample of series
    /// every time, says how many there were, and stops adding series once
    /// the samples cap is reached.
    #[tokio::test]
    async fn training_reads_sample_series_within_the_caps() {
        let upstream = Upstream::demo(Arc::new(Metrics::new()));
        let (start, end) = (0, 6 * 3_600_000);
        let read = |series, samples| {
            upstream.fetch_for_training(CPU, start, end, TrainingCaps { series, samples })
        };
        let all = read(usize::MAX, usize::MAX).await.unwrap();
        assert_eq!((all.series.len(), all.available), (3, 3));
        let per_series = all.series[0].samples.len();

        let two = read(2, usize::MAX).await.unwrap();
        assert_eq!((two.series.len(), two.available), (2, 3));
        let again = read(2, usize::MAX).await.unwrap();
        let labels = |h: &TrainingHistory| {
            h.series
                .iter()
                .map(|s| s.labels.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(labels(&two), labels(&again), "the same sample every time");
        assert_eq!(
            labels(&two),
            labels(&all)[..2],
            "the first series in hash order"
        );

        // Whole series until the samples cap is reached: the second one
        // reaches it, the third is left out.
        let capped = read(usize::MAX, per_series + 1).await.unwrap();
        assert_eq!((capped.series.len(), capped.available), (2, 3));
    }
}

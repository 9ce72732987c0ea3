//! promcast's own observability: the metrics served on `/metrics` (so a
//! failing promcast is visible even though Prometheus only shows a remote
//! error as a warning) and log setup.

use std::fmt::Write as _;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Labels of HTTP request counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Route (a fixed set, never the raw request path).
    pub path: &'static str,
    /// HTTP status code.
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.5, 14))
}

/// Every metric promcast exports.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<PathLabel>,
    /// Reads sent to the upstream.
    pub upstream_requests: Counter,
    upstream_errors: Family<KindLabel, Counter>,
    models: Family<StateLabel, Gauge>,
    training_runs: Family<ResultLabel, Counter>,
    web_config_reloads: Family<ResultLabel, Counter>,
    training_duration: Histogram,
    /// Forecast windows served from the cache.
    pub cache_hits: Counter,
    /// Forecast windows computed.
    pub cache_misses: Counter,
    /// Synthetic series returned by queries.
    pub series_served: Counter,
    /// Queries whose deadline passed before every family was computed.
    pub deadline_exceeded: Counter,
    /// Of those, the ones answered with the families computed in time.
    pub partial_answers: Counter,
    limit_rejections: Family<LimitLabel, Counter>,
    /// Requests whose handler panicked (answered 500).
    pub handler_panics: Counter,
    model_store_conflicts: Counter,
    model_store_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("promcast");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status code",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<PathLabel> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by route",
            http_duration.clone(),
        );
        let upstream_requests = Counter::default();
        registry.register(
            "upstream_requests",
            "Reads sent to the upstream",
            upstream_requests.clone(),
        );
        let upstream_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed upstream reads by kind of failure",
            upstream_errors.clone(),
        );
        let models = Family::<StateLabel, Gauge>::default();
        registry.register(
            "models",
            "Model families by state (pending, training, waiting_for_history, ready, failed)",
            models.clone(),
        );
        let training_runs = Family::<ResultLabel, Counter>::default();
        registry.register(
            "training_runs",
            "Finished training runs by result",
            training_runs.clone(),
        );
        let web_config_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "web_config_reloads",
            "Reloads of the web configuration (TLS, users, headers) by result; a failed one keeps the previous",
            web_config_reloads.clone(),
        );
        let training_duration = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "training_duration_seconds",
            "Wall-clock time of training runs",
            training_duration.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "forecast_cache_hits",
            "Forecast windows served from the cache",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "forecast_cache_misses",
            "Forecast windows computed by a model",
            cache_misses.clone(),
        );
        let series_served = Counter::default();
        registry.register(
            "series_served",
            "Synthetic series returned by queries",
            series_served.clone(),
        );
        let deadline_exceeded = Counter::default();
        registry.register(
            "request_deadline_exceeded",
            "Queries cut by limits.request_timeout: answered with the families computed by then, or a 503 when none was",
            deadline_exceeded.clone(),
        );
        let partial_answers = Counter::default();
        registry.register(
            "partial_answers",
            "Queries answered without some families because limits.request_timeout passed",
            partial_answers.clone(),
        );
        let handler_panics = Counter::default();
        registry.register(
            "handler_panics",
            "Requests whose handler panicked, answered with a 500: a bug, please report it",
            handler_panics.clone(),
        );
        let model_store_conflicts = Counter::default();
        registry.register(
            "model_store_conflicts",
            "Trainings discarded because another replica saved the same model generation first",
            model_store_conflicts.clone(),
        );
        let model_store_errors = Counter::default();
        registry.register(
            "model_store_errors",
            "Failed reads of the model store (listing or loading), tried again at the next check",
            model_store_errors.clone(),
        );
        let limit_rejections = Family::<LimitLabel, Counter>::default();
        registry.register(
            "limit_rejections",
            "Requests refused by one of the limits: settings",
            limit_rejections.clone(),
        );
        // Every label value exists at 0 from the start, so that rate() and
        // alert rules see a counter before its first increment.
        for limit in crate::config::Limit::ALL {
            let _ = limit_rejections.get_or_create(&LimitLabel {
                limit: limit.label(),
            });
        }
        for result in ["success", "failure"] {
            let _ = training_runs.get_or_create(&ResultLabel { result });
            let _ = web_config_reloads.get_or_create(&ResultLabel { result });
        }
        Self {
            registry,
            deadline_exceeded,
            partial_answers,
            limit_rejections,
            handler_panics,
            model_store_conflicts,
            model_store_errors,
            http_requests,
            http_duration,
            upstream_requests,
            upstream_errors,
            models,
            training_runs,
            web_config_reloads,
            training_duration,
            cache_hits,
            cache_misses,
            series_served,
        }
    }

    /// Records a reload of the web configuration.
    pub fn web_config_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.web_config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Records one answered HTTP request.
    pub fn http_request(&self, path: &'static str, code: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&HttpLabels { path, code })
            .inc();
        self.http_duration
            .get_or_create(&PathLabel { path })
            .observe(seconds);
    }

    /// Makes the upstream error counters of `kinds` exist at 0.
    pub fn init_upstream_errors(&self, kinds: &[&'static str]) {
        for &kind in kinds {
            let _ = self.upstream_errors.get_or_create(&KindLabel { kind });
        }
    }

    /// Records a failed upstream read.
    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// Records a request refused by a limit.
    pub fn limit_rejected(&self, limit: crate::config::Limit) {
        self.limit_rejections
            .get_or_create(&LimitLabel {
                limit: limit.label(),
            })
            .inc();
    }

    /// Sets how many families are in each model state.
    pub fn set_models(&self, counts: &[(&'static str, i64)]) {
        for (state, n) in counts {
            self.models.get_or_create(&StateLabel { state }).set(*n);
        }
    }

    /// Counts a training discarded for another replica's model.
    pub fn model_store_conflict(&self) {
        self.model_store_conflicts.inc();
    }

    /// Counts a failed read of the model store.
    pub fn model_store_error(&self) {
        self.model_store_errors.inc();
    }

    /// Records a finished training run (a family found too short of
    /// history to train on ran none).
    pub fn training_run(&self, ok: bool, seconds: f64) {
        let result = if ok { "success" } else { "failure" };
        self.training_runs
            .get_or_create(&ResultLabel { result })
            .inc();
        self.training_duration.observe(seconds);
    }

    /// The exposition text for `/metrics` (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `ts=… level=… msg="…" key=value`, like Prometheus.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Installs the global log subscriber.
pub fn init_logging(level: tracing::Level, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Logfmt => builder.event_format(Logfmt).init(),
    }
}

/// A logfmt event formatter.
struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let now = crate::calendar::now_ms();
        let mut fields = LogfmtFields(String::new());
        event.record(&mut fields);
        writeln!(
            writer,
            "ts={}.{:03}Z level={} target={}{}",
            crate::calendar::rfc3339(now).trim_end_matches('Z'),
            now.rem_euclid(1000),
            meta.level().as_str().to_lowercase(),
            meta.target(),
            fields.0
        )
    }
}

struct LogfmtFields(String);

impl Visit for LogfmtFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={}", key(field), quote(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

fn key(field: &Field) -> &str {
    match field.name() {
        "message" => "msg",
        other => other,
    }
}

/// Quotes a logfmt value when it needs it.
fn quote(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=')
    {
        value.to_owned()
    } else {
        format!("{value:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_the_counters() {
        let m = Metrics::new();
        m.http_request("/api/v1/read", 400, 0.001);
        m.upstream_error("connect");
        m.training_run(true, 3.0);
        let text = m.encode();
        assert!(
            text.contains(r#"promcast_http_requests_total{path="/api/v1/read",code="400"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"promcast_upstream_errors_total{kind="connect"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"promcast_training_runs_total{result="success"} 1"#),
            "{text}"
        );
        // Counters that never moved still exist, at 0.
        assert!(
            text.contains(r#"promcast_training_runs_total{result="failure"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"promcast_limit_rejections_total{limit="samples"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn logfmt_quotes_only_when_needed() {
        assert_eq!(quote("ready"), "ready");
        assert_eq!(quote("two words"), "\"two words\"");
        assert_eq!(quote(""), "\"\"");
    }
}

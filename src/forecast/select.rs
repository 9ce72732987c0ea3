//! The shared middle of the data path, for the HTTP routes, the status
//! page and `promcast forecast` alike: resolve a selector's synthetic
//! names, fetch the source history, run the family's predictor.

use std::sync::Arc;

use tokio::time::Instant;

use super::missing::Missing;
use super::registry::Registry;
use super::{Cache, Cancel, FamilyQuery, SyntheticSeries};
use crate::calendar::now_ms;
use crate::config::{Config, Limit, Limits};
use crate::duration::PromDuration;
use crate::labels::Matcher;
use crate::series::{self, Catalog, SelectError};
use crate::telemetry::Metrics;
use crate::upstream::{Upstream, UpstreamError};

/// What answering a selector needs: the parts of the running process that
/// hold configuration, history, models and their outputs.
pub struct Context {
    /// Validated configuration (families, horizons, limits).
    pub config: Arc<Config>,
    /// Source of history.
    pub upstream: Arc<Upstream>,
    /// Models per family.
    pub registry: Arc<Registry>,
    /// Forecast cache.
    pub cache: Arc<Cache>,
    /// promcast's own metrics.
    pub metrics: Arc<Metrics>,
    /// Families asked for that the upstream has no series of.
    pub missing: Missing,
}

/// Most evaluation times per series in one answer (Prometheus's own
/// range-query limit).
pub const MAX_POINTS: usize = 11_000;

/// Why a selector could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("forecast task failed: {0}")]
    Internal(String),
    /// A family the configuration's `families:` rules refuse.
    #[error("{0}")]
    Refused(String),
    /// The deadline passed before any selected family was computed.
    #[error("limits.request_timeout passed before any family was computed (cut: {}); the upstream may be slow, or the query too large", .cut.join(", "))]
    Deadline { cut: Vec<String> },
    #[error("the answer would hold more than {} = {allowed} {what}; narrow the selector or the time range", .limit.field())]
    Limit {
        limit: Limit,
        allowed: usize,
        what: &'static str,
    },
}

/// What is left of one answer's allowance of series and samples
/// (`limits.max_series_per_answer`, `limits.max_samples_per_answer`),
/// spent before a family's model runs so that an oversized query costs
/// one upstream read, not a forecast.
pub struct Budget {
    series: usize,
    samples: usize,
    limits: (usize, usize),
}

impl Budget {
    /// The full allowance of one answer.
    pub fn new(limits: &Limits) -> Self {
        Self {
            series: limits.max_series_per_answer,
            samples: limits.max_samples_per_answer,
            limits: (limits.max_series_per_answer, limits.max_samples_per_answer),
        }
    }

    /// Spends the allowance of `series` and `samples`, or refuses them.
    fn spend(&mut self, series: usize, samples: usize) -> Result<(), QueryError> {
        self.check(series, samples)?;
        self.series -= series;
        self.samples -= samples;
        Ok(())
    }

    /// Whether `series` and `samples` are within what is left.
    fn check(&self, series: usize, samples: usize) -> Result<(), QueryError> {
        if series > self.series {
            return Err(QueryError::Limit {
                limit: Limit::Series,
                allowed: self.limits.0,
                what: "series",
            });
        }
        if samples > self.samples {
            return Err(QueryError::Limit {
                limit: Limit::Samples,
                allowed: self.limits.1,
                what: "samples",
            });
        }
        Ok(())
    }
}

impl Catalog for Context {
    fn families(&self) -> Vec<String> {
        let mut families = self.registry.families();
        families.retain(|f| self.config.allows(f).is_ok());
        families
    }

    fn horizons(&self, family: &str) -> Vec<PromDuration> {
        self.config.horizons(family)
    }
}

/// The synthetic series selected by `matchers`, evaluated at `times`.
/// Non-synthetic selectors return nothing without touching the upstream.
///
/// Families not answered by `deadline` are left out: Prometheus would
/// otherwise hold the whole query until its `remote_timeout` and then drop
/// everything, the families that were ready included.
pub async fn select(
    ctx: &Context,
    matchers: &[Matcher],
    times: &[i64],
    deadline: Instant,
    budget: &mut Budget,
) -> Result<Vec<SyntheticSeries>, QueryError> {
    let selections = series::resolve(matchers, ctx)?;
    for selection in &selections {
        ctx.config
            .allows(&selection.family)
            .map_err(QueryError::Refused)?;
    }
    let families: Vec<String> = selections.iter().map(|s| s.family.clone()).collect();
    let mut all = Vec::new();
    for (i, selection) in selections.into_iter().enumerate() {
        let answered =
            tokio::time::timeout_at(deadline, select_family(ctx, selection, times, budget)).await;
        match answered {
            Ok(Err(QueryError::Limit {
                limit,
                allowed,
                what,
            })) => {
                ctx.metrics.limit_rejected(limit);
                return Err(QueryError::Limit {
                    limit,
                    allowed,
                    what,
                });
            }
            Ok(series) => all.extend(series?),
            Err(_) => {
                let cut = families[i..].to_vec();
                ctx.metrics.deadline_exceeded.inc();
                tracing::warn!(
                    families = ?cut,
                    "request deadline reached: answering without these families"
                );
                if all.is_empty() {
                    return Err(QueryError::Deadline { cut });
                }
                ctx.metrics.partial_answers.inc();
                break;
            }
        }
    }
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    all.dedup_by(|a, b| a.labels == b.labels);
    Ok(all)
}

/// One family's part of [`select`].
async fn select_family(
    ctx: &Context,
    selection: series::Selection,
    times: &[i64],
    budget: &mut Budget,
) -> Result<Vec<SyntheticSeries>, QueryError> {
    let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
        return Ok(Vec::new());
    };
    let predictor = ctx.registry.predictor(&selection.family);
    let source = ctx.registry.source(&selection.family);
    let anomaly = selection
        .outputs
        .iter()
        .any(|o| o.kind == series::SeriesKind::AnomalyScore);
    let start = first - predictor.history_ms(anomaly);
    let per_series = selection.outputs.len().max(1);
    // A first read pulls a day or more of every series selected: count
    // them first (no samples read), so that a selector of 50,000 series
    // is refused for the price of a list. An upstream that cannot list
    // series is read as before, within its answer caps.
    if !ctx.upstream.is_cached(source, &selection.source_matchers) {
        let allowed = budget.series / per_series;
        match ctx
            .upstream
            .count_series(source, &selection.source_matchers, start, last, allowed)
            .await
        {
            Ok(Some(count)) => {
                let series = count.saturating_mul(per_series);
                budget.check(series, series.saturating_mul(times.len()))?;
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "listing series failed: reading them"),
        }
    }
    let history = ctx
        .upstream
        .fetch_recent(source, &selection.source_matchers, start, last)
        .await?;
    if history.is_empty() {
        ctx.missing.note(
            &selection.family,
            &crate::labels::selector(&selection.family, &selection.source_matchers),
            now_ms(),
        );
        return Ok(Vec::new());
    }
    ctx.missing.found(&selection.family);
    let series = history.len().saturating_mul(selection.outputs.len());
    budget.spend(series, series.saturating_mul(times.len()))?;
    ctx.registry.ensure_trained(&selection.family);
    let cache = Arc::clone(&ctx.cache);
    let metrics = Arc::clone(&ctx.metrics);
    let times = times.to_vec();
    // Dropped with this future when the deadline passes: the evaluation
    // then stops at its next check rather than run on for nobody.
    let cancel = CancelOnDrop(Cancel::default());
    let evaluation = cancel.0.clone();
    let series = tokio::task::spawn_blocking(move || {
        super::evaluate(
            &predictor,
            &FamilyQuery {
                family: &selection.family,
                outputs: &selection.outputs,
                times: &times,
            },
            &history,
            &cache,
            &metrics,
            &evaluation,
        )
    })
    .await
    .map_err(|e| QueryError::Internal(e.to_string()))?;
    Ok(series)
}

/// Cancels an evaluation when dropped.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

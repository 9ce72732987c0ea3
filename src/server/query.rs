//! The shared middle of the data path: resolve a selector's synthetic
//! names, fetch the source history, run the family's predictor.

use std::sync::Arc;

use hyper::StatusCode;
use tokio::time::Instant;

use crate::config::{Limit, Limits};
use crate::forecast::{self, SyntheticSeries};
use crate::labels::Matcher;
use crate::series::{self, Catalog, SelectError};
use crate::upstream::{FamilySource, UpstreamError};

use super::AppState;

/// Most evaluation times per series in one answer (Prometheus's own
/// range-query limit).
pub const MAX_POINTS: usize = 11_000;
/// Step used for expressions when no step is configured.
const EXPR_STEP_MS: i64 = 60_000;

/// Why a selector could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("forecast task failed: {0}")]
    Internal(String),
    #[error("the answer would hold more than {} = {allowed} {what}; narrow the selector or the time range", .limit.field())]
    Limit {
        limit: Limit,
        allowed: usize,
        what: &'static str,
    },
}

impl QueryError {
    /// The HTTP status that answers this error.
    pub fn status(&self) -> StatusCode {
        match self {
            QueryError::Select(_) | QueryError::Limit { .. } => StatusCode::BAD_REQUEST,
            QueryError::Upstream(_) => StatusCode::BAD_GATEWAY,
            QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
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

    fn spend(&mut self, series: usize, samples: usize) -> Result<(), QueryError> {
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
        self.series -= series;
        self.samples -= samples;
        Ok(())
    }
}

struct StateCatalog<'a>(&'a AppState);

impl Catalog for StateCatalog<'_> {
    fn families(&self) -> Vec<String> {
        self.0.registry.families()
    }

    fn horizons(&self, family: &str) -> Vec<crate::duration::PromDuration> {
        self.0.config.horizons(family)
    }
}

/// The synthetic series selected by `matchers`, evaluated at `times`.
/// Non-synthetic selectors return nothing without touching the upstream.
///
/// Families not answered by `deadline` are left out: Prometheus would
/// otherwise hold the whole query until its `remote_timeout` and then drop
/// everything, the families that were ready included.
pub async fn select(
    state: &AppState,
    matchers: &[Matcher],
    times: &[i64],
    deadline: Instant,
    budget: &mut Budget,
) -> Result<Vec<SyntheticSeries>, QueryError> {
    let selections = series::resolve(matchers, &StateCatalog(state))?;
    let mut all = Vec::new();
    for selection in selections {
        let family = selection.family.clone();
        let answered =
            tokio::time::timeout_at(deadline, select_family(state, selection, times, budget)).await;
        match answered {
            Ok(Err(QueryError::Limit {
                limit,
                allowed,
                what,
            })) => {
                state.metrics.limit_rejected(limit);
                return Err(QueryError::Limit {
                    limit,
                    allowed,
                    what,
                });
            }
            Ok(series) => all.extend(series?),
            Err(_) => {
                state.metrics.deadline_exceeded.inc();
                tracing::warn!(
                    family,
                    "request deadline reached: answering without this family"
                );
                break;
            }
        }
    }
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    all.dedup_by(|a, b| a.labels == b.labels);
    Ok(all)
}

/// What to read from the upstream for `family`.
pub fn family_source<'a>(state: &'a AppState, family: &'a str) -> FamilySource<'a> {
    FamilySource {
        name: family,
        expr: state.config.series(family).and_then(|s| s.expr.as_deref()),
        step_ms: state
            .config
            .step(family)
            .map_or(EXPR_STEP_MS, |s| s.as_millis_i64()),
    }
}

/// One family's part of [`select`].
async fn select_family(
    state: &AppState,
    selection: series::Selection,
    times: &[i64],
    budget: &mut Budget,
) -> Result<Vec<SyntheticSeries>, QueryError> {
    let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
        return Ok(Vec::new());
    };
    let predictor = state.registry.predictor(&selection.family);
    let history = state
        .upstream
        .fetch_recent(
            family_source(state, &selection.family),
            &selection.source_matchers,
            first - predictor.history_ms(),
            last,
        )
        .await?;
    if history.is_empty() {
        return Ok(Vec::new());
    }
    let series = history.len().saturating_mul(selection.outputs.len());
    budget.spend(series, series.saturating_mul(times.len()))?;
    state.registry.ensure_trained(&selection.family);
    let cache = Arc::clone(&state.cache);
    let metrics = Arc::clone(&state.metrics);
    let times = times.to_vec();
    let series = tokio::task::spawn_blocking(move || {
        forecast::evaluate(
            &predictor,
            &selection.family,
            &selection.outputs,
            &times,
            &history,
            &cache,
            &metrics,
        )
    })
    .await
    .map_err(|e| QueryError::Internal(e.to_string()))?;
    Ok(series)
}

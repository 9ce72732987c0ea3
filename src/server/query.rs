//! The shared middle of the data path: resolve a selector's synthetic
//! names, fetch the source history, run the family's predictor.

use std::sync::Arc;

use tokio::time::Instant;

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
) -> Result<Vec<SyntheticSeries>, QueryError> {
    let selections = series::resolve(matchers, &StateCatalog(state))?;
    let mut all = Vec::new();
    for selection in selections {
        let family = selection.family.clone();
        match tokio::time::timeout_at(deadline, select_family(state, selection, times)).await {
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

/// One family's part of [`select`].
async fn select_family(
    state: &AppState,
    selection: series::Selection,
    times: &[i64],
) -> Result<Vec<SyntheticSeries>, QueryError> {
    let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
        return Ok(Vec::new());
    };
    let predictor = state.registry.predictor(&selection.family);
    let configured = state.config.series(&selection.family);
    let source = FamilySource {
        name: &selection.family,
        expr: configured.and_then(|s| s.expr.as_deref()),
        step_ms: state
            .config
            .step(&selection.family)
            .map_or(EXPR_STEP_MS, |s| s.as_millis_i64()),
    };
    let history = state
        .upstream
        .fetch(
            source,
            &selection.source_matchers,
            first - predictor.history_ms(),
            last,
        )
        .await?;
    if history.is_empty() {
        return Ok(Vec::new());
    }
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

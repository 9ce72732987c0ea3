//! promcast's LSTM in a back-test: trained on the first part of a series
//! exactly as the server trains a family, then served at every recorded
//! point of the forecast part through the server's own evaluation path.

use std::collections::HashMap;
use std::sync::Arc;

use crate::duration::PromDuration;
use crate::forecast::training::{TrainingPlan, fit};
use crate::forecast::{self, Cache, Predictor, ServedModel, SyntheticSeries};
use crate::model::train::{Epoch, TrainError};
use crate::series::{Horizon, Output, SeriesKind};
use crate::telemetry::Metrics;
use crate::upstream::SourceSeries;

use super::plan::FilePlan;
use super::{Evaluator, Phase};

/// The family name the model is trained and served under.
const FAMILY: &str = "eval";
/// Model outputs cached while a series is evaluated.
const CACHE_VALUES: usize = 1 << 22;

/// A served series' key: what it holds and, for forecasts, the horizon in
/// ms.
pub type SeriesKey = (SeriesKind, Option<i64>);

/// The LSTM trained on one series.
pub struct Lstm {
    predictor: Predictor,
    /// Training epochs and seconds.
    pub training: (usize, f64),
}

impl Lstm {
    /// Trains on the points of `series` before the plan's forecast part.
    pub fn train(
        evaluator: &Evaluator,
        series: &SourceSeries,
        plan: &FilePlan,
        progress: &(dyn Fn(Phase) + Sync),
    ) -> Result<Self, TrainError> {
        let settings = &evaluator.settings;
        let cut = plan.cut_ms();
        let history = SourceSeries {
            labels: Default::default(),
            samples: series
                .samples
                .iter()
                .copied()
                .take_while(|(t, _)| *t < cut)
                .collect(),
        };
        let training = TrainingPlan {
            family: FAMILY.into(),
            version: 1,
            step_ms: None,
            lookback_ms: settings.lookback_ms,
            max_horizon_ms: plan.max_horizon_ms(),
            train: settings.train.clone(),
            warm_start: None,
        };
        let on_epoch = |e: Epoch| progress(Phase::Training(e));
        let span = (plan.grid.start_ms, cut - 1);
        let (meta, net) = fit(&training, &[history], span, &evaluator.device, &on_epoch)?;
        Ok(Self {
            training: (meta.report.epochs, meta.report.seconds),
            predictor: Predictor::Model(Arc::new(ServedModel {
                meta,
                net,
                device: evaluator.device.clone(),
            })),
        })
    }

    /// The anomaly score and every horizon's forecast and interval, at
    /// each of the plan's test times, from the points of `series` at or
    /// before each.
    pub fn serve(
        &self,
        horizons: &[PromDuration],
        plan: &FilePlan,
        series: &SourceSeries,
    ) -> LstmForecasts {
        forecast::evaluate(
            &self.predictor,
            &forecast::FamilyQuery {
                family: FAMILY,
                outputs: &outputs(horizons),
                times: &plan.test_times,
            },
            std::slice::from_ref(series),
            &Cache::new(CACHE_VALUES),
            &Metrics::new(),
            &forecast::Cancel::default(),
        )
        .into_iter()
        .filter_map(keyed)
        .collect()
    }
}

/// The anomaly score, then each horizon's forecast and interval bounds.
fn outputs(horizons: &[PromDuration]) -> Vec<Output> {
    let mut outputs = vec![Output {
        kind: SeriesKind::AnomalyScore,
        horizon: None,
    }];
    for h in horizons {
        for kind in [
            SeriesKind::Predicted,
            SeriesKind::PredictedLower,
            SeriesKind::PredictedUpper,
        ] {
            outputs.push(Output {
                kind,
                horizon: Some(Horizon::new(*h)),
            });
        }
    }
    outputs
}

/// A served series under what it is, read back from its labels: served
/// series come back without the empty ones, so their order says nothing.
fn keyed(series: SyntheticSeries) -> Option<(SeriesKey, HashMap<i64, f64>)> {
    let (kind, _) = crate::series::parse_name(&series.labels[crate::labels::METRIC_NAME])?;
    let horizon = series
        .labels
        .get(crate::series::HORIZON_LABEL)
        .and_then(|h| h.parse::<PromDuration>().ok())
        .map(|h| h.as_millis_i64());
    Some(((kind, horizon), series.samples.into_iter().collect()))
}

/// What the LSTM served on one series.
#[derive(Debug)]
pub struct LstmForecasts(HashMap<SeriesKey, HashMap<i64, f64>>);

impl LstmForecasts {
    /// The value of `kind` for horizon `horizon_ms` at time `t`.
    pub fn at(&self, kind: SeriesKind, horizon_ms: i64, t: i64) -> Option<f64> {
        self.value(&(kind, Some(horizon_ms)), t)
    }

    /// The anomaly score at time `t`.
    pub fn anomaly_score(&self, t: i64) -> Option<f64> {
        self.value(&(SeriesKind::AnomalyScore, None), t)
    }

    fn value(&self, key: &SeriesKey, t: i64) -> Option<f64> {
        self.0.get(key)?.get(&t).copied()
    }
}

impl FromIterator<(SeriesKey, HashMap<i64, f64>)> for LstmForecasts {
    fn from_iter<I: IntoIterator<Item = (SeriesKey, HashMap<i64, f64>)>>(series: I) -> Self {
        Self(series.into_iter().collect())
    }
}

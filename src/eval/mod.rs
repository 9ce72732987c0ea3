//! Back-testing (`promcast eval`): forecasts and anomaly scores on
//! recorded series, by rolling origin, for promcast's LSTM as served and
//! for the forecasts a Prometheus user already has.
//!
//! Each series is cut at 70 %. The LSTM trains on the first part only,
//! exactly as the server trains a family; then every method forecasts at
//! each origin of the last part from the points at or before it. An origin
//! counts for a horizon only where every method has a forecast and the
//! target was recorded, so all methods are scored on the same origins.
//!
//! A file is back-tested in three steps: planned (`plan`: the grid, the
//! cut, each horizon in steps, the origins), run (`lstm` trained and
//! served, `refits` of ETS and MSTL at every origin), and read
//! (`file_report`: the scores of every method's forecasts).
//!
//! Anomaly scores also have the Numenta Anomaly Benchmark's own protocol
//! (`promcast eval --nab-results`): [`detect`] scores every row of a file
//! as the server would have, retraining as it goes, and [`nab`] scores
//! the results as NAB's scorer does.

pub mod dataset;
pub mod detect;
mod file_report;
mod lstm;
pub mod methods;
pub mod nab;
mod plan;
mod refits;
pub mod score;

use std::collections::BTreeMap;

use burn::tensor::Device;
use serde::Serialize;

use crate::duration::PromDuration;
use crate::model::train::{Epoch, TrainConfig, TrainError};
use crate::upstream::SourceSeries;

use dataset::Recording;
pub use file_report::FileReport;
use file_report::Forecasts;
use lstm::Lstm;
use methods::Method;
use plan::FilePlan;
use refits::Refits;
use score::{AnomalyScore, Coverage};

/// Share of each series the LSTM trains on; the rest is forecast.
pub const TRAIN_SHARE: f64 = 0.7;
/// A forecast's anomaly score above this raises an alarm.
pub const ALARM_SCORE: f64 = 1.0;

/// How to back-test.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Horizons scored.
    pub horizons: Vec<PromDuration>,
    /// The model's input window (`defaults.lookback`).
    pub lookback_ms: i64,
    /// Network size, training budget and interval coverage (`model:`).
    pub train: TrainConfig,
    /// Every how many points of the forecast part an origin is taken (1:
    /// every point).
    pub stride: usize,
}

/// Where the evaluation of one file is.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// The LSTM finished an epoch.
    Training(Epoch),
    /// ETS and MSTL refitted at `done` of `total` origins.
    Refitting { done: usize, total: usize },
}

/// Back-tests recorded series, several at once if called from several
/// threads.
pub struct Evaluator {
    settings: Settings,
    device: Device,
}

impl Evaluator {
    /// An evaluator running models on `device`.
    pub fn new(settings: Settings, device: Device) -> Self {
        Self { settings, device }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Back-tests one recorded series; `windows` are its labelled anomaly
    /// windows, if any. Never fails: a file that cannot be evaluated says
    /// why in [`FileReport::error`].
    pub fn file(
        &self,
        recording: &Recording,
        windows: Option<&[(i64, i64)]>,
        progress: &(dyn Fn(Phase) + Sync),
    ) -> FileReport {
        let series = SourceSeries {
            labels: Default::default(),
            samples: recording.samples.clone(),
        };
        let grid = plan::grid(&series);
        let (step_s, points) = (grid.step_ms / 1000, grid.values.len());
        let plan = FilePlan::new(grid, &self.settings.horizons, self.settings.stride);
        plan.and_then(|plan| self.backtest(recording, &series, &plan, windows, progress))
            .unwrap_or_else(|e| FileReport::failed(recording, step_s, points, e.to_string()))
    }

    /// Runs every method on `series` as planned, then scores them.
    fn backtest(
        &self,
        recording: &Recording,
        series: &SourceSeries,
        plan: &FilePlan,
        windows: Option<&[(i64, i64)]>,
        progress: &(dyn Fn(Phase) + Sync),
    ) -> Result<FileReport, FileError> {
        let lstm = Lstm::train(self, series, plan, progress)?;
        let served = lstm.serve(&self.settings.horizons, plan, series);
        let refits = Refits::run(plan, progress);
        let forecasts = Forecasts {
            plan,
            lstm: &served,
            refits: &refits,
        };
        Ok(FileReport::scored(
            recording,
            &forecasts,
            lstm.training,
            windows,
        ))
    }
}

/// Why a file could not be back-tested.
#[derive(Debug, thiserror::Error)]
enum FileError {
    /// The seasonal methods and MASE's scale need whole days.
    #[error("the spacing does not divide a day")]
    Spacing,
    /// The LSTM could not be trained on the first part.
    #[error("training: {0}")]
    Training(#[from] TrainError),
}

/// Results over every file: per method and horizon, the median and
/// geometric mean of the files' MASE; pooled interval coverage; anomaly
/// tallies over every labelled file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Horizons scored.
    pub horizons: Vec<String>,
    /// Per method: `mase` (median across files) and `mase_geomean`, per
    /// horizon.
    pub methods: BTreeMap<String, MethodSummary>,
    /// Per horizon, the share of actual values inside the LSTM's interval,
    /// over every origin of every file.
    pub coverage: BTreeMap<String, Option<f64>>,
    /// Per horizon, the median across files of each file's coverage: one
    /// long file with a regime change weighs on the pooled figure as
    /// much as all the short ones together.
    pub coverage_median: BTreeMap<String, Option<f64>>,
    /// The interval's nominal coverage.
    pub interval: f64,
    /// Anomaly scoring over every labelled file.
    pub anomaly: AnomalySummary,
    /// How the numbers were computed.
    pub protocol: Protocol,
    /// Per file.
    pub files: Vec<FileReport>,
}

/// One method's errors across files.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary {
    /// Median MASE across files, per horizon.
    pub mase: BTreeMap<String, Option<f64>>,
    /// Geometric mean of MASE across files, per horizon.
    pub mase_geomean: BTreeMap<String, Option<f64>>,
}

/// Anomaly scoring totals.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalySummary {
    /// Tallies summed over labelled files.
    #[serde(flatten)]
    pub totals: AnomalyScore,
    /// Share of labelled windows with an alarm.
    pub detected_share: Option<f64>,
    /// Alarms outside windows per day.
    pub false_alarms_per_day: Option<f64>,
    /// NAB's normalised score over all files (0 never alarming, 100 perfect).
    pub nab_score: Option<f64>,
    /// Share of forecast-part points alarming, over all files.
    pub alarm_share: Option<f64>,
}

/// The protocol, stated in the output.
#[derive(Debug, Clone, Serialize)]
pub struct Protocol {
    /// Share of each series trained on.
    pub train_share: f64,
    /// Every how many points an origin is taken.
    pub stride: usize,
    /// The alarm threshold on `anomaly_score`.
    pub alarm_score: f64,
    /// How MASE and the NAB score are computed.
    pub notes: Vec<&'static str>,
}

/// How every figure is computed, printed with the results.
pub const NOTES: [&str; 6] = [
    "rolling origin: train on the first 70 % of each series, forecast at every origin (every `stride` points) of the rest from points at or before it; an origin counts for a horizon where every method has a forecast and the target was recorded",
    "MASE: mean absolute error over a file's origins divided by the in-sample (first 70 %) mean absolute error of a daily seasonal-naive forecast; summarised across files by median and geometric mean",
    "seasonal_naive: the value a whole number of seasons before the target; weekly where the training part holds two weeks and weekly beats daily on it, else daily. predict_linear: PromQL's formula over [t-1h, t] (over [t-6h, t] for horizons of 6h and more). ets: augurs AutoETS (non-seasonal). mstl: augurs MSTL, daily season, AutoETS trend. ets and mstl are refitted at every origin on the 4 days before it",
    "coverage: share of actual values within the LSTM's predicted_lower/upper, over all origins of all files (pooled), and the median of the files' shares",
    "anomaly: an alarm is a point of the forecast part with anomaly_score > 1; windows count when they lie wholly in the forecast part; detected = windows with an alarm; a false alarm is a run of consecutive alarming points outside windows",
    "NAB score, standard profile as NAB's scorer computes it: the first alarm in a window of n points earns 2/(1+e^(5y))-1 with y = -(window end index - i + 1)/n; a window without alarm costs 1; each alarming point outside windows costs 0.11 (scaled by the same sigmoid of the distance past the previous window); normalised as 100*(raw-null)/(perfect-null) over all files, null = never alarming, perfect = an alarm at each window start",
];

impl Report {
    /// Summarises per-file results.
    pub fn new(settings: &Settings, files: Vec<FileReport>) -> Self {
        let horizons: Vec<String> = settings.horizons.iter().map(ToString::to_string).collect();
        let mut methods = BTreeMap::new();
        for method in Method::ALL {
            let mut mase = BTreeMap::new();
            let mut mase_geomean = BTreeMap::new();
            for h in &horizons {
                let per_file: Vec<f64> = files
                    .iter()
                    .filter_map(|f| f.mase.get(method.name())?.get(h).copied().flatten())
                    .collect();
                mase.insert(h.clone(), score::median(&per_file));
                mase_geomean.insert(h.clone(), score::geometric_mean(&per_file));
            }
            methods.insert(
                method.name().to_owned(),
                MethodSummary { mase, mase_geomean },
            );
        }
        let mut coverage = BTreeMap::new();
        let mut coverage_median = BTreeMap::new();
        for h in &horizons {
            let mut pooled = Coverage::default();
            let mut shares = Vec::new();
            for c in files.iter().filter_map(|f| f.coverage.get(h)) {
                pooled.add(*c);
                shares.extend(c.share());
            }
            coverage.insert(h.clone(), pooled.share());
            coverage_median.insert(h.clone(), score::median(&shares));
        }
        let mut totals = AnomalyScore::default();
        for a in files.iter().filter_map(|f| f.anomaly.as_ref()) {
            totals.add(a);
        }
        let alarming: usize = files.iter().map(|f| f.alarm_points).sum();
        let points: usize = files.iter().map(|f| f.test_points).sum();
        Self {
            horizons,
            methods,
            coverage,
            coverage_median,
            interval: settings.train.interval_coverage,
            anomaly: AnomalySummary {
                detected_share: totals.detected_share(),
                false_alarms_per_day: totals.false_alarms_per_day(),
                nab_score: totals.nab_score(),
                alarm_share: (points > 0).then(|| alarming as f64 / points as f64),
                totals,
            },
            protocol: Protocol {
                train_share: TRAIN_SHARE,
                stride: settings.stride,
                alarm_score: ALARM_SCORE,
                notes: NOTES.to_vec(),
            },
            files,
        }
    }
}

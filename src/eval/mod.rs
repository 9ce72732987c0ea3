//! Back-testing (`promcast eval`): forecasts and anomaly scores on
//! recorded series, by rolling origin, for promcast's LSTM as served and
//! for the forecasts a Prometheus user already has.
//!
//! Each series is cut at 70 %. The LSTM trains on the first part only,
//! exactly as the server trains a family; then every method forecasts at
//! each origin of the last part from the points at or before it. An origin
//! counts for a horizon only where every method has a forecast and the
//! target was recorded, so all methods are scored on the same origins.

pub mod dataset;
pub mod methods;
pub mod score;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use burn::tensor::Device;
use serde::Serialize;

use crate::duration::PromDuration;
use crate::forecast::training::{TrainingPlan, fit};
use crate::forecast::{self, Cache, Predictor, ServedModel};
use crate::model::Grid;
use crate::model::train::{Epoch, TrainConfig};
use crate::series::{Horizon, Output, SeriesKind};
use crate::telemetry::Metrics;
use crate::upstream::SourceSeries;

use dataset::Recording;
use methods::{Method, Refit};
use score::{AnomalyScore, Coverage};

/// Share of each series the LSTM trains on; the rest is forecast.
pub const TRAIN_SHARE: f64 = 0.7;
/// A forecast's anomaly score above this raises an alarm.
pub const ALARM_SCORE: f64 = 1.0;
/// `predict_linear`'s range: an hour, and six for horizons that long.
const LINEAR_RANGE_MS: i64 = 3_600_000;
const LONG_LINEAR_RANGE_MS: i64 = 6 * 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// Model outputs cached while a series is evaluated.
const CACHE_VALUES: usize = 1 << 22;

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

/// Results on one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file.
    pub file: String,
    /// Spacing of its points, seconds.
    pub step_s: i64,
    /// Points on its grid.
    pub points: usize,
    /// Rows dropped for repeating or going back in time.
    pub dropped_rows: usize,
    /// Why the file could not be evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The in-sample daily seasonal-naive error MASE is scaled by.
    pub mase_scale: Option<f64>,
    /// Per horizon, origins scored (horizons that are not a whole number
    /// of steps are not scored).
    pub origins: BTreeMap<String, usize>,
    /// Per method and horizon, MASE.
    pub mase: BTreeMap<String, BTreeMap<String, Option<f64>>>,
    /// Per horizon, how often the LSTM's interval held the actual value.
    pub coverage: BTreeMap<String, Coverage>,
    /// LSTM anomaly alarms against labelled windows, where labelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<AnomalyScore>,
    /// Points of the forecast part with an anomaly score above 1.
    pub alarm_points: usize,
    /// Points of the forecast part.
    pub test_points: usize,
    /// LSTM training epochs and seconds.
    pub training: Option<(usize, f64)>,
}

impl FileReport {
    /// A report with nothing scored yet.
    fn new(recording: &Recording, step_s: i64, points: usize) -> Self {
        Self {
            file: recording.name.clone(),
            step_s,
            points,
            dropped_rows: recording.dropped,
            error: None,
            mase_scale: None,
            origins: BTreeMap::new(),
            mase: BTreeMap::new(),
            coverage: BTreeMap::new(),
            anomaly: None,
            alarm_points: 0,
            test_points: 0,
            training: None,
        }
    }

    fn failed(recording: &Recording, step_s: i64, points: usize, error: String) -> Self {
        Self {
            error: Some(error),
            ..Self::new(recording, step_s, points)
        }
    }
}

/// Back-tests recorded series, several at once if called from several
/// threads.
pub struct Evaluator {
    settings: Settings,
    device: Device,
    /// Held while a network is initialised and trained: burn seeds its
    /// initialisation per device, so one training at a time keeps every
    /// file's model the same whatever the number of threads.
    training: Mutex<()>,
}

impl Evaluator {
    /// An evaluator running models on `device`.
    pub fn new(settings: Settings, device: Device) -> Self {
        Self {
            settings,
            device,
            training: Mutex::new(()),
        }
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
        evaluate_file(self, recording, windows, progress)
    }
}

fn evaluate_file(
    evaluator: &Evaluator,
    recording: &Recording,
    windows: Option<&[(i64, i64)]>,
    progress: &(dyn Fn(Phase) + Sync),
) -> FileReport {
    let (settings, device) = (&evaluator.settings, &evaluator.device);
    let source = [SourceSeries {
        labels: Default::default(),
        samples: recording.samples.clone(),
    }];
    let step = forecast::source_spacing(&source).unwrap_or(DAY_MS);
    let (first, last) = (
        recording.samples[0].0,
        recording.samples[recording.samples.len() - 1].0,
    );
    // A grid from the first sample on (NAB's timestamps need not be
    // multiples of the step); a sample off it is a gap.
    let mut points = vec![f64::NAN; ((last - first) / step + 1) as usize];
    for &(t, v) in &recording.samples {
        if (t - first) % step == 0 {
            points[((t - first) / step) as usize] = v;
        }
    }
    let grid = Grid::from_values(first, step, points);
    let values = &grid.values;
    let n = values.len();
    let split = (n as f64 * TRAIN_SHARE) as usize;
    if DAY_MS % step != 0 {
        return FileReport::failed(
            recording,
            step / 1000,
            n,
            "the spacing does not divide a day".into(),
        );
    }
    let day = (DAY_MS / step) as usize;
    let steps: Vec<(String, i64, Option<usize>)> = settings
        .horizons
        .iter()
        .map(|h| {
            let ms = h.as_millis_i64();
            let k = (ms % step == 0).then_some((ms / step) as usize);
            (h.to_string(), ms, k)
        })
        .collect();
    let k_max = steps.iter().filter_map(|s| s.2).max().unwrap_or(0);

    // The LSTM, trained on the first part as the server would train it.
    let cut = grid.time(split);
    let history: Vec<(i64, f64)> = recording
        .samples
        .iter()
        .copied()
        .take_while(|(t, _)| *t < cut)
        .collect();
    let plan = TrainingPlan {
        family: "eval".into(),
        version: 1,
        step_ms: None,
        lookback_ms: settings.lookback_ms,
        max_horizon_ms: steps.iter().map(|s| s.1).max().unwrap_or(step),
        train: settings.train.clone(),
    };
    let train_source = [SourceSeries {
        labels: Default::default(),
        samples: history,
    }];
    let on_epoch = |e: Epoch| progress(Phase::Training(e));
    let guard = crate::lock::lock(&evaluator.training);
    let fitted = fit(&plan, &train_source, (first, cut - 1), device, &on_epoch);
    drop(guard);
    let (meta, net) = match fitted {
        Ok(m) => m,
        Err(e) => return FileReport::failed(recording, step / 1000, n, format!("training: {e}")),
    };
    let training = Some((meta.report.epochs, meta.report.seconds));
    let predictor = Predictor::Model(Arc::new(ServedModel {
        meta,
        net,
        device: device.clone(),
    }));
    let test_times: Vec<i64> = (split..n)
        .filter(|&i| values[i].is_finite())
        .map(|i| grid.time(i))
        .collect();
    let mut outputs = vec![Output {
        kind: SeriesKind::AnomalyScore,
        horizon: None,
    }];
    for h in &settings.horizons {
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
    let served = forecast::evaluate(
        &predictor,
        &plan.family,
        &outputs,
        &test_times,
        &source,
        &Cache::new(CACHE_VALUES),
        &Metrics::new(),
    );
    // Served series come back in output order, without empty ones; key
    // them by what they are.
    let mut lstm: HashMap<(SeriesKind, Option<i64>), HashMap<i64, f64>> = HashMap::new();
    for s in served {
        let name = &s.labels[crate::labels::METRIC_NAME];
        let Some((kind, _)) = crate::series::parse_name(name) else {
            continue;
        };
        let horizon = s
            .labels
            .get(crate::series::HORIZON_LABEL)
            .and_then(|h| h.parse::<PromDuration>().ok())
            .map(|h| h.as_millis_i64());
        lstm.insert((kind, horizon), s.samples.into_iter().collect());
    }
    let lstm_at = |kind, h: i64, i: usize| {
        lstm.get(&(kind, Some(h)))
            .and_then(|m| m.get(&grid.time(i)).copied())
    };

    // ETS and MSTL, refitted at every origin.
    let origins: Vec<usize> = (split..n)
        .step_by(settings.stride.max(1))
        .filter(|&i| values[i].is_finite() && i + 1 < n)
        .collect();
    let mut refits: HashMap<(Refit, usize), Vec<f64>> = HashMap::new();
    for (done, &i) in origins.iter().enumerate() {
        for model in Refit::ALL {
            if let Some(f) = methods::refit(model, values, i, k_max.max(1), day) {
                refits.insert((model, i), f);
            }
        }
        if done % 64 == 63 || done + 1 == origins.len() {
            progress(Phase::Refitting {
                done: done + 1,
                total: origins.len(),
            });
        }
    }

    let train = &values[..split];
    let scale = score::seasonal_naive_error(train, day);
    let mut report = FileReport::new(recording, step / 1000, n);
    report.mase_scale = scale;
    report.training = training;
    for (label, h_ms, k) in &steps {
        let Some(k) = *k else {
            continue;
        };
        let season = methods::choose_season(train, k, day);
        let range = if *h_ms >= LONG_LINEAR_RANGE_MS {
            LONG_LINEAR_RANGE_MS
        } else {
            LINEAR_RANGE_MS
        };
        let mut pairs: BTreeMap<Method, Vec<(f64, f64)>> = BTreeMap::new();
        let mut intervals = Vec::new();
        let mut count = 0;
        for &i in &origins {
            let Some(&actual) = values.get(i + k).filter(|v| v.is_finite()) else {
                continue;
            };
            let forecasts = [
                lstm_at(SeriesKind::Predicted, *h_ms, i),
                methods::seasonal_naive(values, i, k, season),
                methods::predict_linear(values, step, i, range, *h_ms),
                refits.get(&(Refit::Ets, i)).map(|f| f[k - 1]),
                refits.get(&(Refit::Mstl, i)).map(|f| f[k - 1]),
            ];
            if forecasts.iter().any(|f| !f.is_some_and(f64::is_finite)) {
                continue;
            }
            count += 1;
            for (method, f) in Method::ALL.iter().zip(forecasts) {
                pairs
                    .entry(*method)
                    .or_default()
                    .push((actual, f.unwrap_or(f64::NAN)));
            }
            if let (Some(lo), Some(hi)) = (
                lstm_at(SeriesKind::PredictedLower, *h_ms, i),
                lstm_at(SeriesKind::PredictedUpper, *h_ms, i),
            ) {
                intervals.push((actual, lo, hi));
            }
        }
        report.origins.insert(label.clone(), count);
        report
            .coverage
            .insert(label.clone(), Coverage::of(&intervals));
        for method in Method::ALL {
            let m = pairs
                .get(&method)
                .and_then(|p| score::mase(p, scale.unwrap_or(0.0)));
            report
                .mase
                .entry(method.name().to_owned())
                .or_default()
                .insert(label.clone(), m);
        }
    }

    // Anomaly alarms over the forecast part.
    let scores = lstm.get(&(SeriesKind::AnomalyScore, None));
    let alarms: Vec<bool> = test_times
        .iter()
        .map(|t| {
            scores
                .and_then(|s| s.get(t))
                .is_some_and(|s| *s > ALARM_SCORE)
        })
        .collect();
    report.alarm_points = alarms.iter().filter(|a| **a).count();
    report.test_points = alarms.len();
    report.anomaly = windows.map(|w| AnomalyScore::new(&test_times, &alarms, w));
    report
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

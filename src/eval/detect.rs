//! promcast's anomaly score on NAB's protocol: each file from scratch, its
//! rows in order, as a new metric on the server would live them. The
//! seasonal baseline answers first; the first model trains on the
//! probationary rows only; after that the model retrains on the rows seen
//! so far every `defaults.retrain_interval` of data time, from the previous
//! weights where the layout is unchanged, exactly as the server retrains.
//! Every row is scored through the server's own evaluation path by the
//! predictor current at that row, from the rows at or before it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::Device;

use crate::calendar::rfc3339;
use crate::forecast::training::{TrainingPlan, fit};
use crate::forecast::{self, Baseline, Cache, Predictor, ServedModel, anomaly};
use crate::model::train::{TrainConfig, TrainError};
use crate::series::{Output, SeriesKind};
use crate::telemetry::Metrics;
use crate::upstream::SourceSeries;

use super::dataset::Recording;

/// Model outputs cached while a file is scored.
const CACHE_VALUES: usize = 1 << 22;
/// NAB's probationary period: this share of a file's rows, at most
/// `PROBATION_SHARE · PROBATION_ROWS_BASE` rows.
const PROBATION_SHARE: f64 = 0.15;
const PROBATION_ROWS_BASE: f64 = 5000.0;

/// How the server would run: the model's layout, training budget and
/// retrain cadence.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The family name models are trained and served under: it seeds
    /// their initialisation, so another name is another seed.
    pub family: String,
    /// The model's input window (`defaults.lookback`).
    pub lookback_ms: i64,
    /// The longest horizon served (`defaults.horizons`).
    pub max_horizon_ms: i64,
    /// How much history a model trains on (`defaults.train_window`).
    pub train_window_ms: i64,
    /// How often a model retrains (`defaults.retrain_interval`).
    pub retrain_interval_ms: i64,
    /// Network size and training budget (`model:`).
    pub train: TrainConfig,
}

/// One file scored row by row.
#[derive(Debug, Clone)]
pub struct Detection {
    /// The file's name below the data folder (`<category>/<file>.csv`).
    pub name: String,
    /// `(unix ms, value)` per row.
    pub samples: Vec<(i64, f64)>,
    /// The served anomaly score per row; `None` where there was none.
    pub scores: Vec<Option<f64>>,
    /// Models trained, and how many of them started from the previous
    /// weights.
    pub trainings: usize,
    pub warm_trainings: usize,
    /// Training runs that could not produce a model, with the last reason.
    pub failed_trainings: usize,
    pub last_failure: Option<String>,
    /// Seconds spent training, and in all.
    pub training_seconds: f64,
    pub seconds: f64,
}

/// NAB's probationary length for a file of `rows`.
pub fn probation_rows(rows: usize) -> usize {
    ((PROBATION_SHARE * rows as f64).floor()).min(PROBATION_SHARE * PROBATION_ROWS_BASE) as usize
}

/// Scores every row of `recording` as the server would have, had the
/// series been scraped row by row, with the first model trained on the
/// first `probation` rows (NAB's: [`probation_rows`]).
pub fn detect(
    settings: &Settings,
    recording: &Recording,
    probation: usize,
    device: &Device,
) -> Detection {
    let started = std::time::Instant::now();
    let samples = &recording.samples;
    let n = samples.len();
    let mut detection = Detection {
        name: recording.name.clone(),
        samples: samples.clone(),
        scores: Vec::with_capacity(n),
        trainings: 0,
        warm_trainings: 0,
        failed_trainings: 0,
        last_failure: None,
        training_seconds: 0.0,
        seconds: 0.0,
    };
    let Some(&(first, _)) = samples.first() else {
        return detection;
    };
    let baseline = Baseline::new(
        None,
        settings.lookback_ms,
        settings.max_horizon_ms,
        settings.train.interval_coverage,
    );
    let mut predictor = Predictor::Baseline(baseline);
    let cache = Cache::new(CACHE_VALUES);
    let outputs = [Output {
        kind: SeriesKind::AnomalyScore,
        horizon: None,
    }];
    let interval = settings.retrain_interval_ms.max(1);
    // The first model trains on the probationary rows; each later one on
    // the rows up to one retrain interval after the one before.
    let mut boundary = samples[probation.max(1) - 1].0;
    let mut served = 0;
    let mut version = 0;
    while served < n {
        let end = samples[served..].partition_point(|(t, _)| *t <= boundary) + served;
        if end > served {
            let times: Vec<i64> = samples[served..end].iter().map(|(t, _)| *t).collect();
            let seen = [SourceSeries {
                labels: Default::default(),
                samples: samples[..end].to_vec(),
            }];
            let scored = forecast::evaluate(
                &predictor,
                &forecast::FamilyQuery {
                    family: &settings.family,
                    outputs: &outputs,
                    times: &times,
                },
                &seen,
                &cache,
                &Metrics::new(),
                &forecast::Cancel::default(),
            );
            let by_time: std::collections::HashMap<i64, f64> =
                scored.into_iter().flat_map(|s| s.samples).collect();
            detection
                .scores
                .extend(times.iter().map(|t| by_time.get(t).copied()));
            served = end;
        }
        if served >= n {
            break;
        }
        version += 1;
        let from = (boundary - settings.train_window_ms).max(first);
        let history = [SourceSeries {
            labels: Default::default(),
            samples: samples[..served]
                .iter()
                .copied()
                .filter(|(t, _)| *t >= from)
                .collect(),
        }];
        let warm_start = match &predictor {
            Predictor::Model(m) => Some((m.meta.shape, m.net.clone())),
            Predictor::Baseline(_) => None,
        };
        let plan = TrainingPlan {
            family: settings.family.clone(),
            version,
            step_ms: None,
            lookback_ms: settings.lookback_ms,
            max_horizon_ms: settings.max_horizon_ms,
            train: settings.train.clone(),
            warm_start,
        };
        let trained_at = std::time::Instant::now();
        match fit(&plan, &history, (from, boundary), device, &|_| {}) {
            Ok((meta, net)) => {
                detection.trainings += 1;
                detection.warm_trainings += usize::from(meta.report.warm_start);
                predictor = Predictor::Model(Arc::new(ServedModel {
                    meta,
                    net,
                    device: device.clone(),
                }));
            }
            // Too little history is what the server waits out with the
            // baseline; anything else it logs and keeps the old model.
            Err(TrainError::NotEnoughHistory(_)) => {}
            Err(e) => {
                detection.failed_trainings += 1;
                detection.last_failure = Some(e.to_string());
            }
        }
        detection.training_seconds += trained_at.elapsed().as_secs_f64();
        boundary += interval;
    }
    detection.seconds = started.elapsed().as_secs_f64();
    detection
}

impl Detection {
    /// The category (the folder below the data folder) and the file stem.
    fn category_and_stem(&self) -> (String, String) {
        let path = Path::new(&self.name);
        let stem = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let category = path
            .parent()
            .map_or_else(String::new, |p| p.display().to_string());
        (category, stem)
    }

    /// Writes the rows in NAB's results layout,
    /// `dir/promcast/<category>/promcast_<file>.csv`, as
    /// `timestamp,value,anomaly_score,label`: the score mapped into
    /// `[0, 1)` by [`anomaly::unit_interval`] (0 where none was served),
    /// the label 1 inside a labelled window. Returns the path written.
    pub fn write(&self, dir: &Path, windows: &[(i64, i64)]) -> std::io::Result<PathBuf> {
        let (category, stem) = self.category_and_stem();
        let folder = dir.join("promcast").join(category);
        std::fs::create_dir_all(&folder)?;
        let path = folder.join(format!("promcast_{stem}.csv"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(out, "timestamp,value,anomaly_score,label")?;
        for (&(t, v), score) in self.samples.iter().zip(&self.scores) {
            let label = windows.iter().any(|&(a, b)| a <= t && t <= b);
            writeln!(
                out,
                "{},{v},{},{}",
                nab_timestamp(t),
                anomaly::unit_interval(score.unwrap_or(0.0)),
                u8::from(label)
            )?;
        }
        out.flush()?;
        Ok(path)
    }
}

/// `YYYY-MM-DD HH:MM:SS`, as NAB's files write timestamps.
fn nab_timestamp(ms: i64) -> String {
    rfc3339(ms).replace('T', " ").replace('Z', "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::PromDuration;

    const STEP: i64 = 600_000;
    /// A third of the way into the third day: where the level shift of
    /// [`recording`] starts.
    const SHIFT_ROW: usize = 2 * 144 + 48;

    /// Three days of a noisy daily cycle every 10 minutes, with a
    /// two-hour gap on the second day and a lasting shift of 30 (ten
    /// times the noise) from [`SHIFT_ROW`].
    fn recording() -> Recording {
        let samples = (0..3 * 144)
            .filter(|i| !(200..212).contains(i))
            .map(|i: usize| {
                let day = i as f64 / 144.0 * std::f64::consts::TAU;
                let noise = ((i * 7919 % 13) as f64 - 6.0) * 0.5;
                let shift = if i >= SHIFT_ROW { 30.0 } else { 0.0 };
                (
                    1_700_006_400_000 + i as i64 * STEP,
                    50.0 + 20.0 * day.sin() + noise + shift,
                )
            })
            .collect();
        Recording {
            path: "test/cycle.csv".into(),
            name: "test/cycle.csv".into(),
            samples,
            dropped: 0,
        }
    }

    fn settings() -> Settings {
        Settings {
            family: "test".into(),
            lookback_ms: 3_600_000,
            max_horizon_ms: 1_800_000,
            train_window_ms: 7 * 86_400_000,
            retrain_interval_ms: 12 * 3_600_000,
            train: TrainConfig {
                hidden: 8,
                layers: 1,
                max_epochs: 6,
                warm_epochs: 2,
                patience: 6,
                batch_size: 32,
                windows_per_epoch: 256,
                learning_rate: 1e-2,
                max_training_time: PromDuration::from_secs(60),
                interval_coverage: 0.9,
            },
        }
    }

    /// The score at a row is what a server that had seen the rows up to
    /// it would serve: cutting the file there changes nothing.
    #[test]
    fn a_row_scores_the_same_whatever_follows_it() {
        let (settings, device, full) = (settings(), Device::flex(), recording());
        let probation = 160;
        let whole = detect(&settings, &full, probation, &device);
        assert!(
            whole.trainings >= 2 && whole.warm_trainings >= 1,
            "{whole:?}"
        );
        for row in [probation + 10, SHIFT_ROW - 40, SHIFT_ROW + 2] {
            let cut = Recording {
                samples: full.samples[..=row].to_vec(),
                ..full.clone()
            };
            let alone = detect(&settings, &cut, probation, &device);
            assert_eq!(alone.scores[row], whole.scores[row], "row {row}");
            assert!(whole.scores[row].is_some(), "row {row}");
        }
    }

    /// No alarm from the first row, across retrains and a two-hour gap,
    /// until the shift: then one, within a few rows.
    #[test]
    fn a_clean_cycle_does_not_page_and_a_shift_does_once() {
        let (settings, device, full) = (settings(), Device::flex(), recording());
        let d = detect(&settings, &full, 160, &device);
        let shift = full
            .samples
            .iter()
            .position(|(t, _)| *t == 1_700_006_400_000 + SHIFT_ROW as i64 * STEP)
            .unwrap();
        let alarms: Vec<usize> = (0..d.scores.len())
            .filter(|&i| d.scores[i].is_some_and(|s| s > 1.0))
            .collect();
        assert!(
            alarms.iter().all(|&i| (shift..shift + 4).contains(&i)),
            "alarms at rows {alarms:?}, the shift at {shift}"
        );
        assert!(!alarms.is_empty(), "the shift went unnoticed");
    }

    #[test]
    fn probation_is_fifteen_percent_up_to_750_rows() {
        assert_eq!(probation_rows(4032), 604);
        assert_eq!(probation_rows(1243), 186);
        assert_eq!(probation_rows(22695), 750);
        assert_eq!(probation_rows(0), 0);
    }

    #[test]
    fn timestamps_are_written_as_nab_writes_them() {
        let t = crate::calendar::parse_timestamp("2014-07-01 00:30:00").unwrap();
        assert_eq!(nab_timestamp(t), "2014-07-01 00:30:00");
    }
}

//! Where a back-test of one series cuts and scores it: its regular grid,
//! the part the LSTM trains on, each horizon in grid steps, and the
//! origins every method forecasts from.

use crate::calendar::DAY_MS;
use crate::duration::PromDuration;
use crate::forecast;
use crate::model::Grid;
use crate::upstream::SourceSeries;

use super::{FileError, TRAIN_SHARE};

/// The series on a regular grid from its first sample on, `NaN` where no
/// sample fell, spaced as its samples typically are (a day where there are
/// too few to tell).
pub fn grid(series: &SourceSeries) -> Grid {
    let step = forecast::source_spacing(std::slice::from_ref(series)).unwrap_or(DAY_MS);
    let samples = &series.samples;
    let (first, last) = (samples[0].0, samples[samples.len() - 1].0);
    // From the first sample rather than a multiple of the step: NAB's
    // timestamps need not be aligned. A sample off the grid is a gap.
    let mut points = vec![f64::NAN; ((last - first) / step + 1) as usize];
    for &(t, v) in samples {
        if (t - first) % step == 0 {
            points[((t - first) / step) as usize] = v;
        }
    }
    Grid::from_values(first, step, points)
}

/// One horizon to score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HorizonSteps {
    /// Its name in reports (`1h`).
    pub label: String,
    /// Its length, ms.
    pub ms: i64,
    /// Its length in grid steps; `None` where it is not a whole number of
    /// them, and it is not scored.
    pub steps: Option<usize>,
}

/// What a back-test of one series trains on and forecasts from.
#[derive(Debug, Clone)]
pub struct FilePlan {
    /// The series on its grid.
    pub grid: Grid,
    /// Index of the first point of the forecast part: the LSTM trains on
    /// the points before it.
    pub split: usize,
    /// Grid points per day, the season of the seasonal methods.
    pub day: usize,
    /// The horizons asked, in order.
    pub horizons: Vec<HorizonSteps>,
    /// Times of the forecast part's recorded points: where the LSTM is
    /// served and anomaly alarms are counted.
    pub test_times: Vec<i64>,
    /// Indices every method forecasts from: every `stride`-th point of the
    /// forecast part, where it was recorded and is not the last.
    pub origins: Vec<usize>,
}

impl FilePlan {
    /// The plan for `grid`, scoring `horizons` every `stride` points (0
    /// counts as 1). Fails where the spacing does not divide a day, as
    /// the seasonal methods and MASE's scale need whole days.
    pub(super) fn new(
        grid: Grid,
        horizons: &[PromDuration],
        stride: usize,
    ) -> Result<Self, FileError> {
        let step = grid.step_ms;
        if DAY_MS % step != 0 {
            return Err(FileError::Spacing);
        }
        let values = &grid.values;
        let n = values.len();
        let split = (n as f64 * TRAIN_SHARE) as usize;
        let horizons = horizons
            .iter()
            .map(|h| {
                let ms = h.as_millis_i64();
                HorizonSteps {
                    label: h.to_string(),
                    ms,
                    steps: (ms % step == 0).then_some((ms / step) as usize),
                }
            })
            .collect();
        let test_times = (split..n)
            .filter(|&i| values[i].is_finite())
            .map(|i| grid.time(i))
            .collect();
        let origins = (split..n)
            .step_by(stride.max(1))
            .filter(|&i| values[i].is_finite() && i + 1 < n)
            .collect();
        Ok(Self {
            day: (DAY_MS / step) as usize,
            grid,
            split,
            horizons,
            test_times,
            origins,
        })
    }

    /// The training part's values.
    pub fn train_part(&self) -> &[f64] {
        &self.grid.values[..self.split]
    }

    /// Time of the first point of the forecast part.
    pub fn cut_ms(&self) -> i64 {
        self.grid.time(self.split)
    }

    /// The longest horizon scored, in steps (0 where none is).
    pub fn max_steps(&self) -> usize {
        self.horizons
            .iter()
            .filter_map(|h| h.steps)
            .max()
            .unwrap_or(0)
    }

    /// The longest horizon asked, ms (one step where none is).
    pub fn max_horizon_ms(&self) -> i64 {
        self.horizons
            .iter()
            .map(|h| h.ms)
            .max()
            .unwrap_or(self.grid.step_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_123_000;
    const FIVE_MIN: i64 = 300_000;

    fn series(samples: Vec<(i64, f64)>) -> SourceSeries {
        SourceSeries {
            labels: Default::default(),
            samples,
        }
    }

    /// 20 points every 5 minutes; 7 and 16 missing, one sample off the grid.
    fn recorded() -> Grid {
        let mut samples: Vec<(i64, f64)> = (0..20)
            .filter(|i| ![7, 16].contains(i))
            .map(|i| (T0 + i * FIVE_MIN, i as f64))
            .collect();
        samples.insert(16, (T0 + 17 * FIVE_MIN + 60_000, -1.0));
        grid(&series(samples))
    }

    #[test]
    fn grid_marks_missing_and_off_grid_samples_as_gaps() {
        let g = recorded();
        assert_eq!((g.start_ms, g.step_ms, g.values.len()), (T0, FIVE_MIN, 20));
        let gaps: Vec<usize> = (0..20).filter(|&i| g.values[i].is_nan()).collect();
        assert_eq!(gaps, [7, 16]);
        assert_eq!(g.values[17], 17.0);
    }

    #[test]
    fn plan_splits_at_70_percent_and_takes_recorded_origins_by_stride() {
        let horizons: Vec<PromDuration> = ["5m", "1h", "7m"]
            .iter()
            .map(|h| h.parse().unwrap())
            .collect();
        let plan = FilePlan::new(recorded(), &horizons, 2).unwrap();
        assert_eq!(
            (plan.split, plan.day, plan.train_part().len()),
            (14, 288, 14)
        );
        assert_eq!(plan.cut_ms(), T0 + 14 * FIVE_MIN);
        let steps: Vec<(&str, Option<usize>)> = plan
            .horizons
            .iter()
            .map(|h| (h.label.as_str(), h.steps))
            .collect();
        assert_eq!(steps, [("5m", Some(1)), ("1h", Some(12)), ("7m", None)]);
        assert_eq!((plan.max_steps(), plan.max_horizon_ms()), (12, 3_600_000));
        // 14, 16 and 18 by stride; 16 was not recorded.
        assert_eq!(plan.origins, [14, 18]);
        let at = |i: &[i64]| -> Vec<i64> { i.iter().map(|i| T0 + i * FIVE_MIN).collect() };
        assert_eq!(plan.test_times, at(&[14, 15, 17, 18, 19]));

        // Every point, but never the last: nothing after it to score.
        let every = FilePlan::new(recorded(), &horizons, 0).unwrap();
        assert_eq!(every.origins, [14, 15, 17, 18]);
        let none = FilePlan::new(recorded(), &[], 1).unwrap();
        assert_eq!((none.max_steps(), none.max_horizon_ms()), (0, FIVE_MIN));
    }

    #[test]
    fn plan_refuses_a_spacing_that_does_not_divide_a_day() {
        let seven_min = series((0..20).map(|i| (T0 + i * 420_000, 1.0)).collect());
        let refused = FilePlan::new(grid(&seven_min), &[], 1);
        assert!(matches!(refused, Err(FileError::Spacing)), "{refused:?}");
    }
}

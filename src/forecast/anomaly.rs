//! The anomaly score: how unusual a series' latest sample is, as one
//! number an alert can page on (`anomaly_score_<m> > 1`).
//!
//! Why not the plain one-step residual over its typical size: judged point
//! by point against a fixed scale, a series whose model is worse than
//! average pages all day, every row of a long incident pages again, a spike
//! that comes back every day at about the same time pages every day, and a
//! series with almost no noise pages on rounding. Measured on NAB's
//! protocol (`promcast eval --nab-results`, figures and the ablation in
//! BENCHMARKS.md), each step below earns its place.
//!
//! The score at `t` reads *rows*: `t` and the model steps before it, each
//! with the residual of the forecast made one step earlier (in one-step
//! errors, [`sigma`]) and the sample there. Only samples at or before `t`.
//!
//! 1. **Rank**: a row's residual against the largest of the
//!    [`RANK_ROWS`] rows before it (at least [`RANK_FLOOR`]): it scores
//!    1 at twice that largest. What is unusual is what this series has not
//!    done lately, whatever its model's typical error.
//! 2. **Range guard**: a sample outside the range of the [`GUARD_ROWS`]
//!    samples before it by more than [`GUARD_MARGIN`] of that range scores
//!    by how far, 1 at [`GUARD_SCALE`]. A new level is unusual even where
//!    the forecast follows it at once.
//! 3. **Rest**: a row's level (the larger of the two) counts only where it
//!    exceeds the levels of the [`REST`] rows before it and of the rows
//!    within [`SEASON_SPREAD`] of the same time a day earlier; elsewhere
//!    the score is 0. An incident scores when it starts or gets worse, not
//!    on every row while it lasts, and a daily spike that came yesterday
//!    does not page today. So an alert on the score fires once per
//!    incident, as CAD OSE, KNN CAD and ARTime suppress after an alarm;
//!    `keep_firing_for` holds it open (see `deploy/prometheus/rules`).
//!
//! The memory is finite on purpose ([`memory`]): the score at `t` depends
//! on no row older than that, so every query, range or instant, remote
//! read or `/federate`, gets the same value at `t` as `promcast eval` does
//! from the whole file.

/// Rows a residual is ranked against.
pub const RANK_ROWS: usize = 600;
/// Fewest residuals among them for a rank.
pub const MIN_RANK_ROWS: usize = 100;
/// The largest residual a rank divides by is at least this (one-step
/// errors): a series quiet for days does not page on a one-σ wiggle.
pub const RANK_FLOOR: f64 = 1.0;
/// The rank part is `RANK_SHARE · |r| / largest`: 1 at twice the
/// largest recent residual.
pub const RANK_SHARE: f64 = 0.5;
/// Samples whose range the guard checks a sample against.
pub const GUARD_ROWS: usize = 288;
/// Fewest samples among them for a guard.
pub const MIN_GUARD_ROWS: usize = 50;
/// A sample this share of the range outside it is not yet unusual.
pub const GUARD_MARGIN: f64 = 0.1;
/// A sample this share of the range outside it scores 1.
pub const GUARD_SCALE: f64 = 0.272;
/// Rows before `t` whose levels `t`'s must exceed.
pub const REST: usize = 24;
/// Rows either side of `t − 1 day` whose levels `t`'s must exceed.
pub const SEASON_SPREAD: usize = 12;
/// Floor of the one-step error, in units of the series' daily spread
/// (the normalisation scale of its forecasts).
pub const MIN_SIGMA: f64 = 0.05;

/// One model step of a series, as the score reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Row {
    /// The sample less the forecast made one step earlier, in one-step
    /// errors; `None` without a sample or a forecast.
    pub residual: Option<f64>,
    /// The latest sample at the row's time, if fresh.
    pub value: Option<f64>,
}

/// The one-step error a residual is measured in: the predictor's, held at
/// [`MIN_SIGMA`] from below.
pub fn sigma(one_step_sigma: f64) -> f64 {
    one_step_sigma.max(MIN_SIGMA)
}

/// Rows the score at `t` reads (`t` included) on a grid of `rows_per_day`
/// steps a day.
pub fn memory(rows_per_day: usize) -> usize {
    REST.max(rows_per_day + SEASON_SPREAD) + RANK_ROWS.max(GUARD_ROWS) + 1
}

/// The score at every row of `rows` (consecutive model steps, oldest
/// first), each from the rows at or before it; `None` where a row has
/// neither a residual to rank nor a sample to guard. A row with at least
/// [`memory`] rows before it in `rows` scores as it would with any longer
/// history.
pub fn scores(rows: &[Row], rows_per_day: usize) -> Vec<Option<f64>> {
    let levels = levels(rows);
    (0..rows.len())
        .map(|i| {
            let level = levels[i]?;
            let recent = i.saturating_sub(REST)..i;
            let yesterday = i.checked_sub(rows_per_day).map_or(0..0, |d| {
                d.saturating_sub(SEASON_SPREAD)..(d + SEASON_SPREAD + 1).min(i)
            });
            let before = recent
                .chain(yesterday)
                .filter_map(|j| levels[j])
                .fold(0.0, f64::max);
            Some(if level > before { level } else { 0.0 })
        })
        .collect()
}

/// The served score as a probability-like value in `[0, 1)`, for NAB's
/// results files: `s / (1 + s)`, monotone, with the alarm threshold
/// `s = 1` at 0.5.
pub fn unit_interval(score: f64) -> f64 {
    let s = score.max(0.0);
    s / (1.0 + s)
}

/// Each row's level: the larger of its rank and its guard.
fn levels(rows: &[Row]) -> Vec<Option<f64>> {
    let residuals: Vec<Option<f64>> = rows.iter().map(|r| r.residual.map(f64::abs)).collect();
    let values: Vec<Option<f64>> = rows.iter().map(|r| r.value).collect();
    let largest = Trailing::new(&residuals, RANK_ROWS, f64::max);
    let highest = Trailing::new(&values, GUARD_ROWS, f64::max);
    let lowest = Trailing::new(&values, GUARD_ROWS, f64::min);
    (0..rows.len())
        .map(|i| {
            let rank = residuals[i]
                .zip(largest.before(i, MIN_RANK_ROWS))
                .map(|(r, m)| RANK_SHARE * r / m.max(RANK_FLOOR));
            let guard = values[i]
                .zip(highest.before(i, MIN_GUARD_ROWS))
                .zip(lowest.before(i, MIN_GUARD_ROWS))
                .map(|((x, hi), lo)| {
                    let outside = (x - hi).max(lo - x).max(0.0) / (hi - lo).max(f64::MIN_POSITIVE);
                    if outside > GUARD_MARGIN {
                        outside / GUARD_SCALE
                    } else {
                        0.0
                    }
                });
            match (rank, guard) {
                (Some(r), Some(g)) => Some(r.max(g)),
                (r, g) => r.or(g),
            }
        })
        .collect()
}

/// For each row, the extreme (by `pick`) of the values present among the
/// `span` rows before it, and how many there were: a monotonic queue, so
/// a whole series costs one pass whatever the span.
struct Trailing {
    extremes: Vec<Option<(f64, usize)>>,
}

impl Trailing {
    fn new(values: &[Option<f64>], span: usize, pick: fn(f64, f64) -> f64) -> Self {
        let mut queue: std::collections::VecDeque<(usize, f64)> = Default::default();
        let mut present = 0;
        let mut extremes = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            // The window of row i is [i − span, i − 1].
            if let Some(old) = i.checked_sub(span + 1)
                && values[old].is_some()
            {
                present -= 1;
            }
            while queue.front().is_some_and(|&(j, _)| j + span < i) {
                queue.pop_front();
            }
            extremes.push(queue.front().map(|&(_, x)| (x, present)));
            if let Some(x) = *v {
                // Drop what `x` beats for good: it is newer and at least as
                // extreme.
                while queue.back().is_some_and(|&(_, y)| pick(x, y) == x) {
                    queue.pop_back();
                }
                queue.push_back((i, x));
                present += 1;
            }
        }
        Self { extremes }
    }

    /// The extreme before row `i`, if at least `min` values were there.
    fn before(&self, i: usize, min: usize) -> Option<f64> {
        self.extremes[i].filter(|&(_, n)| n >= min).map(|(x, _)| x)
    }
}

#[cfg(test)]
mod tests;

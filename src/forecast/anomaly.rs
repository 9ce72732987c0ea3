//! The anomaly score: how unusual a series' latest samples are against the
//! forecasts made just before them, as one number an alert can page on
//! (`anomaly_score_<m> > 1`).
//!
//! Why not the plain one-step residual: judged point by point, noise that
//! is merely unusual for a few minutes pages, every row of a long incident
//! pages again, and a series with almost no noise pages on rounding. So the
//! score at `t` reads a short run of *rows* — `t` and the
//! [`MEMORY`]` − 1` model steps before it, each a residual in units of the
//! predictor's one-step error — and only samples at or before `t`:
//!
//! 1. **Level**: the mean absolute residual over the last [`SMOOTH`] rows,
//!    divided by [`SIGMAS`]. One wild sample moves it by a third; a shift
//!    that lasts moves it fully.
//! 2. **Rest**: a row whose level does not exceed every level of the
//!    [`REST`] rows before it is damped by [`DAMP`]. An incident scores high when it
//!    starts (or gets worse), not on every row while it lasts: one page per
//!    incident, as CAD OSE, KNN CAD and ARTime suppress after an alarm.
//! 3. **Floor**: the one-step error is taken as at least [`MIN_SIGMA`] of
//!    the series' daily spread, so a noiseless cycle does not page on a
//!    residual near zero over a σ near zero.
//!
//! The memory is finite on purpose: the score at `t` depends on nothing
//! older than `MEMORY` steps of residuals, so a query computes it from a
//! bounded number of forecasts, and every query, range or instant, remote
//! read or `/federate`, gets the same value at the same `t` as
//! `promcast eval` does.

/// A level this many one-step errors away scores 1.
pub const SIGMAS: f64 = 4.0;
/// Rows averaged into a row's level.
pub const SMOOTH: usize = 3;
/// Rows before `t` whose levels `t`'s must reach to count in full.
pub const REST: usize = 12;
/// Rows the score at `t` reads: `t` and the steps before it.
pub const MEMORY: usize = SMOOTH + REST;
/// A level below the highest of the rows before it counts this much.
pub const DAMP: f64 = 0.25;
/// Floor of the one-step error, in units of the series' daily spread
/// (the normalisation scale of its forecasts).
pub const MIN_SIGMA: f64 = 0.05;

/// The one-step error a residual is measured in: the predictor's, held at
/// [`MIN_SIGMA`] from below.
pub fn sigma(one_step_sigma: f64) -> f64 {
    one_step_sigma.max(MIN_SIGMA)
}

/// The score at the last of `residuals` (oldest first, [`MEMORY`] of
/// them; `None` where a row had no sample or no forecast), `None` when
/// the last [`SMOOTH`] rows hold no residual.
pub fn score(residuals: &[Option<f64>]) -> Option<f64> {
    let last = residuals.len().checked_sub(1)?;
    let level = |end: usize| {
        let from = (end + 1).saturating_sub(SMOOTH);
        let present: Vec<f64> = residuals[from..=end]
            .iter()
            .flatten()
            .map(|r| r.abs())
            .collect();
        (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64)
    };
    let now = level(last)?;
    let before = (last.saturating_sub(REST)..last)
        .filter_map(level)
        .fold(0.0, f64::max);
    let damp = if now > before { 1.0 } else { DAMP };
    Some(now * damp / SIGMAS)
}

/// The served score as a probability-like value in `[0, 1)`, for NAB's
/// results files: `s / (1 + s)`, monotone, with the alarm threshold
/// `s = 1` at 0.5.
pub fn unit_interval(score: f64) -> f64 {
    let s = score.max(0.0);
    s / (1.0 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(values: &[f64]) -> Vec<Option<f64>> {
        let mut r = vec![Some(0.0); MEMORY - values.len()];
        r.extend(values.iter().map(|v| Some(*v)));
        r
    }

    #[test]
    fn one_wild_sample_counts_a_third_and_a_lasting_shift_in_full() {
        let spike = score(&rows(&[12.0])).unwrap();
        assert!((spike - 1.0).abs() < 1e-12, "{spike}");
        let shift = score(&rows(&[8.0, 8.0, 8.0])).unwrap();
        assert!((shift - 2.0).abs() < 1e-12, "{shift}");
    }

    #[test]
    fn an_incident_scores_high_when_it_starts_not_while_it_lasts() {
        // Quiet rows, then a lasting shift of 8σ from row 15.
        let mut series = vec![Some(0.0); 15];
        series.extend(std::iter::repeat_n(Some(8.0), 20));
        let scores: Vec<f64> = (MEMORY..=series.len())
            .map(|end| score(&series[end - MEMORY..end]).unwrap())
            .collect();
        let alarms: Vec<usize> = (0..scores.len()).filter(|&i| scores[i] > 1.0).collect();
        // Rows 16 and 17 (levels 16/3 σ and 8σ) rise above 1; from row 18
        // on the level is flat, no longer a new high, and damped.
        assert_eq!(alarms.len(), 2, "{scores:?}");
        assert!(scores[scores.len() - 1] < 1.0);
    }

    #[test]
    fn missing_rows_are_skipped_and_no_recent_row_means_no_score() {
        let mut r = rows(&[4.0]);
        r[MEMORY - 2] = None;
        assert!((score(&r).unwrap() - 2.0 / SIGMAS).abs() < 1e-12);
        let mut empty = rows(&[]);
        for slot in &mut empty[MEMORY - SMOOTH..] {
            *slot = None;
        }
        assert_eq!(score(&empty), None);
    }

    #[test]
    fn the_unit_interval_map_is_monotone_with_the_threshold_at_a_half() {
        assert_eq!(unit_interval(1.0), 0.5);
        assert_eq!(unit_interval(0.0), 0.0);
        assert_eq!(unit_interval(-1.0), 0.0);
        assert!(unit_interval(3.0) > unit_interval(2.0));
        assert!(unit_interval(1e9) < 1.0);
    }

    #[test]
    fn a_noiseless_series_is_measured_against_the_floor() {
        assert_eq!(sigma(1e-6), MIN_SIGMA);
        assert_eq!(sigma(0.3), 0.3);
    }
}

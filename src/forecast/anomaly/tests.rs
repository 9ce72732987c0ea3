use super::*;

const DAY: usize = 288;

/// One model step as a test writes it: its sample, and its residual where
/// it is scored.
#[derive(Debug, Clone, Copy)]
struct Row {
    value: Option<f64>,
    residual: Option<Residual>,
}

/// The score at every row, each as an evaluation asking for it alone
/// would give it.
fn scores(rows: &[Row], rows_per_day: usize) -> Vec<Option<f64>> {
    scores_from(rows, rows_per_day, 0)
}

/// [`scores`] of rows whose first is `origin` steps after the epoch.
fn scores_from(rows: &[Row], rows_per_day: usize, origin: usize) -> Vec<Option<f64>> {
    let values: Vec<Option<f64>> = rows.iter().map(|r| r.value).collect();
    let asked: Vec<usize> = (0..rows.len()).collect();
    contexts(nan_for_none(&values), rows_per_day, origin as i64, &asked)
        .iter()
        .zip(rows)
        .map(|(c, r)| c.score(r.residual))
        .collect()
}

/// Samples at consecutive model steps as the score takes them: `NaN`
/// where none.
fn nan_for_none(values: &[Option<f64>]) -> Vec<f64> {
    values.iter().map(|v| v.unwrap_or(f64::NAN)).collect()
}

/// Samples alternating between 10 and 11, less than a day of them: each
/// change 1, each daily spread 0.5, so the largest change is 2 spreads.
fn quiet(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            value: Some(10.0 + (i % 2) as f64),
            residual: None,
        })
        .collect()
}

fn scored(value: f64, residual: f64, error: f64) -> Row {
    Row {
        value: Some(value),
        residual: Some(Residual {
            value: residual,
            error,
        }),
    }
}

fn last(rows: &[Row]) -> Option<f64> {
    *scores(rows, DAY).last().unwrap()
}

#[test]
fn a_residual_larger_than_the_recent_changes_scores_by_how_much() {
    // A "day" of 7 rows, odd: each step of ±1 is the opposite of the one
    // a day before, so every change is 2 in source units (whatever the
    // spread it is measured in).
    let day = 7;
    let last = |rows: &[Row]| *scores(rows, day).last().unwrap();
    let mut rows = quiet(1200);
    rows.push(scored(10.0, -3.0, 0.2));
    // 0.7 · 3 / 2
    assert!(
        (last(&rows).unwrap() - 1.05).abs() < 1e-9,
        "{:?}",
        last(&rows)
    );
    // A jump in the samples pages, and the rows after it rest: the jump
    // is what the series has now done.
    rows.push(scored(20.0, 10.0, 0.2));
    assert!(last(&rows).unwrap() > 1.0);
    rows.push(scored(20.5, 9.5, 0.2));
    assert_eq!(last(&rows), Some(0.0));
}

#[test]
fn a_quiet_series_is_ranked_against_the_one_step_error_not_its_own_quiet() {
    let mut rows: Vec<Row> = (0..200)
        .map(|i| Row {
            value: Some(10.0 + 0.001 * (i % 2) as f64),
            residual: None,
        })
        .collect();
    rows.push(scored(10.0, 1.5, 1.0));
    assert!((last(&rows).unwrap() - RANK_SHARE * 1.5).abs() < 1e-9);
}

#[test]
fn a_sample_far_outside_the_recent_range_scores_by_how_far() {
    // Values 10..=16 for a while, no forecasts at all (a baseline without
    // its spread yet): only the guard speaks.
    let mut rows: Vec<Row> = (0..100)
        .map(|i| Row {
            value: Some(10.0 + (i % 7) as f64),
            residual: None,
        })
        .collect();
    rows.push(Row {
        value: Some(16.0 + 0.3 * 6.0),
        residual: None,
    });
    assert!((last(&rows).unwrap() - 0.3 / GUARD_SCALE).abs() < 1e-9);
    // Within the margin: nothing.
    rows.pop();
    rows.push(Row {
        value: Some(16.0 + 0.05 * 6.0),
        residual: None,
    });
    assert_eq!(last(&rows), Some(0.0));
    // Too little history for either: no score at all.
    assert_eq!(scores(&rows[..20], DAY)[19], None);
}

#[test]
fn a_constant_series_that_moves_scores_high_and_finite() {
    // A day of exact zeros (an error rate, say), then a 5: the range is
    // zero wide and the daily spread at its floor, yet the score must be a
    // number a query can serve.
    let mut rows: Vec<Row> = (0..DAY)
        .map(|_| Row {
            value: Some(0.0),
            residual: None,
        })
        .collect();
    rows.push(Row {
        value: Some(5.0),
        residual: None,
    });
    let guarded = last(&rows).unwrap();
    assert!(guarded.is_finite() && guarded > 1.0, "{guarded}");
    rows.pop();
    rows.push(scored(5.0, 5.0, 1e-9));
    let ranked = last(&rows).unwrap();
    assert!(ranked.is_finite() && ranked > 1.0, "{ranked}");
}

#[test]
fn an_infinite_sample_does_not_blind_the_score() {
    // A p99 from histogram_quantile is +Inf for a scrape: that row counts
    // as missing, and a jump soon after it still pages.
    let mut rows = quiet(1200);
    rows[1150].value = Some(f64::INFINITY);
    rows.push(scored(20.0, 10.0, 0.2));
    let score = last(&rows).unwrap();
    assert!(score.is_finite() && score > 1.0, "{score}");
}

#[test]
fn a_spike_that_came_yesterday_at_about_this_time_does_not_page() {
    let mut rows = quiet(3 * DAY);
    rows[DAY].value = Some(30.0);
    // Five rows later the next day, a little smaller: far outside the
    // day's range, it would page were it not for yesterday's.
    rows[2 * DAY + 5] = scored(29.0, 18.0, 0.2);
    let s = scores(&rows, DAY);
    assert!(s[DAY].unwrap() > 1.0, "{:?}", s[DAY]);
    assert_eq!(s[2 * DAY + 5], Some(0.0));
    // Without yesterday's spike, it pages.
    rows[DAY].value = Some(10.0);
    let s = scores(&rows, DAY);
    assert!(s[2 * DAY + 5].unwrap() > 1.0, "{:?}", s[2 * DAY + 5]);
}

/// A noisy flat series at a 1-minute step with a half-hour job at 09:00
/// every day, `size` high on the last of `days` days; the rising edges of
/// `score > 1` after the first two days.
fn job_alarms_at_a_one_minute_step(days: usize, size: fn(usize) -> f64) -> Vec<usize> {
    const DAY_1M: usize = 1440;
    let mut noise = uniform(11);
    let rows: Vec<Row> = (0..days * DAY_1M)
        .map(|i| {
            let job = if (540..570).contains(&(i % DAY_1M)) {
                size(i / DAY_1M)
            } else {
                0.0
            };
            Row {
                value: Some(10.0 + 2.0 * noise() + job),
                residual: None,
            }
        })
        .collect();
    let alarm: Vec<bool> = scores(&rows, DAY_1M)
        .iter()
        .map(|s| s.is_some_and(|s| s > 1.0))
        .collect();
    (2 * DAY_1M..alarm.len())
        .filter(|&i| alarm[i] && !alarm[i - 1])
        .collect()
}

/// At a 1-minute step the guard's rows are 7.2 hours: a job that
/// runs every morning leaves its range every day, as yesterday's did.
/// Its level must clearly exceed yesterday's to page, or it pages about
/// every other day; a job twice its usual size still pages.
#[test]
fn a_daily_job_does_not_page_at_a_one_minute_step() {
    let usual = job_alarms_at_a_one_minute_step(7, |_| 30.0);
    assert!(usual.is_empty(), "{usual:?}");
    let doubled = job_alarms_at_a_one_minute_step(7, |day| if day == 6 { 60.0 } else { 30.0 });
    assert_eq!(doubled.len(), 1, "{doubled:?}");
    assert!(
        (6 * 1440 + 540..6 * 1440 + 570).contains(&doubled[0]),
        "{doubled:?}"
    );
}

#[test]
fn a_row_scores_the_same_from_its_memory_as_from_all_history() {
    assert!(memory(DAY) < 2500);
    scores_from_memory_alone(DAY, 4000);
}

/// Where a day is more than the rows the rank reads, the novelty part
/// reads a day and more instead (a 1-minute step's 1,440 rows; 1,100
/// here, to keep the test short).
#[test]
fn a_long_day_is_in_the_memory() {
    scores_from_memory_alone(1100, 5000);
}

/// Checks that every 5th row of `n` from a noisy daily cycle of
/// `rows_per_day` rows, with spikes, gaps and residuals here and there
/// (from a fixed generator), scores the same from its [`memory`] alone as
/// from all rows before it.
fn scores_from_memory_alone(rows_per_day: usize, n: usize) {
    let mut next = uniform(7);
    let (spike, again) = (n - 1500, n - 600);
    let rows: Vec<Row> = (0..n)
        .map(|i| {
            let phase = std::f64::consts::TAU * (i % rows_per_day) as f64 / rows_per_day as f64;
            let jump = if i == spike || i == again {
                500.0
            } else if next() > 0.98 {
                200.0 * next()
            } else {
                0.0
            };
            let value = (i % 89 != 0).then(|| 100.0 + 50.0 * phase.sin() + 10.0 * next() + jump);
            let residual = (i % 3 == 0).then(|| Residual {
                value: (next() - 0.5) * 20.0 + jump,
                error: 5.0,
            });
            Row { value, residual }
        })
        .collect();
    let all = scores(&rows, rows_per_day);
    let m = memory(rows_per_day);
    assert!(m + 500 < n, "{m}");
    // The same up to rounding: the daily spreads' running sums start
    // where the rows do.
    let same = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
        (a, b) => a == b,
    };
    for end in (m..n).step_by(5) {
        let alone = scores_from(&rows[end + 1 - m..=end], rows_per_day, end + 1 - m);
        assert!(
            same(alone[m - 1], all[end]),
            "row {end}: {:?} {:?}",
            alone[m - 1],
            all[end]
        );
    }
    assert!(all[again].is_some_and(|s| s > 1.0), "{:?}", all[again]);
}

#[test]
fn daily_spreads_match_a_plain_computation() {
    let values: Vec<Option<f64>> = (0..300)
        .map(|i| (i % 13 != 5).then(|| 1000.0 + ((i * 7919) % 101) as f64))
        .collect();
    let memory = Memory::new(nan_for_none(&values), 48, 0);
    for i in 0..values.len() {
        let day: Vec<f64> = values[i.saturating_sub(48)..i]
            .iter()
            .flatten()
            .copied()
            .collect();
        let expected = (day.len() >= 2).then(|| {
            let mean = day.iter().sum::<f64>() / day.len() as f64;
            let var = day.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / day.len() as f64;
            var.sqrt().max(1e-3 * mean.abs())
        });
        match (memory.spread(i), expected) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6 * b, "row {i}: {a} vs {b}"),
            (a, b) => assert_eq!(a, b, "row {i}"),
        }
    }
}

#[test]
fn the_largest_change_and_the_range_match_plain_scans() {
    let values: Vec<Option<f64>> = (0..3000)
        .map(|i| (i % 11 != 3).then(|| ((i * 7919) % 101) as f64 + (i / 500) as f64 * 40.0))
        .collect();
    let memory = Memory::new(nan_for_none(&values), DAY, 0);
    for i in (0..values.len()).step_by(7) {
        let changes: Vec<f64> = memory.changes[i.saturating_sub(RANK_ROWS)..i]
            .iter()
            .copied()
            .filter(|c| !c.is_nan())
            .collect();
        let largest = (changes.len() >= MIN_RANK_ROWS)
            .then(|| changes.iter().copied().fold(f64::MIN, f64::max));
        assert_eq!(memory.largest(i), largest, "largest before {i}");
        let recent: Vec<f64> = values[i.saturating_sub(GUARD_ROWS)..i]
            .iter()
            .flatten()
            .copied()
            .collect();
        let guard = values[i]
            .filter(|_| recent.len() >= MIN_GUARD_ROWS)
            .map(|x| {
                let hi = recent.iter().copied().fold(f64::MIN, f64::max);
                let lo = recent.iter().copied().fold(f64::MAX, f64::min);
                let outside = (x - hi).max(lo - x).max(0.0) / (hi - lo);
                if outside > GUARD_MARGIN {
                    outside / GUARD_SCALE
                } else {
                    0.0
                }
            });
        assert_eq!(memory.guard(i), guard, "guard at {i}");
    }
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

/// A fixed generator of numbers in `[0, 1)` from `seed`, for test series'
/// noise: the same every run.
pub(super) fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 33) as f64 / f64::from(1u32 << 31)
    }
}

use super::*;

const DAY: usize = 288;

fn quiet(n: usize, residual: f64) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            residual: Some(if i % 2 == 0 { residual } else { -residual }),
            value: Some(10.0 + (i % 7) as f64),
        })
        .collect()
}

fn last(rows: &[Row]) -> Option<f64> {
    *scores(rows, DAY).last().unwrap()
}

#[test]
fn a_residual_twice_the_largest_recent_one_scores_one() {
    let mut rows = quiet(200, 1.5);
    rows.push(Row {
        residual: Some(-4.5),
        value: Some(12.0),
    });
    // 0.5 · 4.5 / 1.5
    assert!((last(&rows).unwrap() - 1.5).abs() < 1e-12);
    // The same again right after is no longer new: it rests.
    rows.push(rows[rows.len() - 1]);
    assert_eq!(last(&rows), Some(0.0));
}

#[test]
fn a_quiet_series_is_ranked_against_the_floor_not_its_own_quiet() {
    let mut rows = quiet(200, 0.01);
    rows.push(Row {
        residual: Some(1.5),
        value: Some(12.0),
    });
    assert!((last(&rows).unwrap() - 0.5 * 1.5 / RANK_FLOOR).abs() < 1e-12);
}

#[test]
fn a_sample_far_outside_the_recent_range_scores_by_how_far() {
    // Values 10..=16 for a while, no forecasts at all (a baseline without
    // its spread yet): only the guard speaks.
    let mut rows: Vec<Row> = quiet(100, 0.0)
        .into_iter()
        .map(|r| Row {
            residual: None,
            ..r
        })
        .collect();
    rows.push(Row {
        residual: None,
        value: Some(16.0 + 0.3 * 6.0),
    });
    assert!((last(&rows).unwrap() - 0.3 / GUARD_SCALE).abs() < 1e-9);
    // Within the margin: nothing.
    rows.pop();
    rows.push(Row {
        residual: None,
        value: Some(16.0 + 0.05 * 6.0),
    });
    assert_eq!(last(&rows), Some(0.0));
    // Too little history for either: no score at all.
    assert_eq!(scores(&rows[..20], DAY)[19], None);
}

#[test]
fn a_spike_that_came_yesterday_at_about_this_time_does_not_page() {
    let mut rows = quiet(3 * DAY, 0.5);
    rows[DAY].residual = Some(3.0);
    // Five rows later the next day, larger than the day's largest: it
    // would page on its rank (0.5 · 7 / 3) were it not for yesterday's.
    rows[2 * DAY + 5].residual = Some(7.0);
    let s = scores(&rows, DAY);
    assert!((s[DAY].unwrap() - 1.5).abs() < 1e-12, "{:?}", s[DAY]);
    assert_eq!(s[2 * DAY + 5], Some(0.0));
    // Without yesterday's spike, it pages.
    rows[DAY].residual = Some(0.5);
    let s = scores(&rows, DAY);
    assert!(s[2 * DAY + 5].unwrap() > 1.0, "{:?}", s[2 * DAY + 5]);
}

#[test]
fn a_row_scores_the_same_from_its_memory_as_from_all_history() {
    // A noisy series with spikes and gaps, from a fixed generator.
    let mut state = 7u64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 33) as f64 / f64::from(1u32 << 31)
    };
    let rows: Vec<Row> = (0..3000)
        .map(|i| {
            let r = next();
            Row {
                residual: match i {
                    1000 | 2000 => Some(100.0),
                    _ => (i % 97 != 0).then_some((r - 0.5) * if r > 0.98 { 20.0 } else { 2.0 }),
                },
                value: (i % 89 != 0).then(|| 100.0 * next()),
            }
        })
        .collect();
    let all = scores(&rows, DAY);
    let m = memory(DAY);
    for end in [m, 1500, 2000, 2999] {
        let alone = scores(&rows[end + 1 - m..=end], DAY);
        assert_eq!(alone[m - 1], all[end], "row {end}");
    }
    assert!(all[2000].is_some_and(|s| s > 1.0), "{:?}", all[2000]);
}

#[test]
fn trailing_extremes_match_a_plain_scan() {
    let values: Vec<Option<f64>> = (0..500)
        .map(|i| (i % 11 != 3).then(|| ((i * 7919) % 101) as f64))
        .collect();
    let span = 37;
    let max = Trailing::new(&values, span, f64::max);
    let min = Trailing::new(&values, span, f64::min);
    for i in 0..values.len() {
        let window: Vec<f64> = values[i.saturating_sub(span)..i]
            .iter()
            .flatten()
            .copied()
            .collect();
        let hi = window.iter().copied().reduce(f64::max);
        let lo = window.iter().copied().reduce(f64::min);
        assert_eq!(max.before(i, 1), hi, "max before {i}");
        assert_eq!(min.before(i, 1), lo, "min before {i}");
        assert_eq!(max.before(i, window.len() + 1), None);
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

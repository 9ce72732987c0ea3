//! The error measures `promcast eval` reports: MASE, interval coverage,
//! and a NAB-style score of anomaly alarms against labelled windows.

use super::nab::scaled_sigmoid;
use crate::calendar::DAY_MS;

/// NAB's standard profile: reward of a detection at a window's start, cost
/// of a missed window, cost of one alarming point far from any window.
const TP_WEIGHT: f64 = 1.0;
const FN_WEIGHT: f64 = 1.0;
const FP_WEIGHT: f64 = 0.11;

/// Mean absolute error of `pairs` (actual, forecast) divided by `scale`,
/// the in-sample seasonal-naive error; `None` without pairs or scale.
pub fn mase(pairs: &[(f64, f64)], scale: f64) -> Option<f64> {
    if pairs.is_empty() || scale.is_nan() || scale <= 0.0 {
        return None;
    }
    let mae = pairs.iter().map(|(a, f)| (a - f).abs()).sum::<f64>() / pairs.len() as f64;
    Some(mae / scale)
}

/// Mean absolute difference between each value and the value `lag`
/// points earlier, over pairs where both are present: the in-sample error
/// of a seasonal-naive forecast with period `lag`.
pub fn seasonal_naive_error(values: &[f64], lag: usize) -> Option<f64> {
    let diffs: Vec<f64> = values
        .iter()
        .zip(values.iter().skip(lag))
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .map(|(a, b)| (b - a).abs())
        .collect();
    (lag > 0 && !diffs.is_empty()).then(|| diffs.iter().sum::<f64>() / diffs.len() as f64)
}

/// How often actual values fell inside their prediction interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Coverage {
    /// Actual values inside `[lower, upper]`.
    pub inside: usize,
    /// Intervals checked.
    pub total: usize,
}

impl Coverage {
    /// Counts the `(actual, lower, upper)` with the actual inside.
    pub fn of(triples: &[(f64, f64, f64)]) -> Self {
        Self {
            inside: triples
                .iter()
                .filter(|(a, lo, hi)| lo <= a && a <= hi)
                .count(),
            total: triples.len(),
        }
    }

    /// Adds another count to this one.
    pub fn add(&mut self, other: Self) {
        self.inside += other.inside;
        self.total += other.total;
    }

    /// The share inside; `None` without intervals.
    pub fn share(self) -> Option<f64> {
        (self.total > 0).then(|| self.inside as f64 / self.total as f64)
    }
}

/// Median of the finite values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// Geometric mean of the finite positive values.
pub fn geometric_mean(values: &[f64]) -> Option<f64> {
    let logs: Vec<f64> = values
        .iter()
        .filter(|x| x.is_finite() && **x > 0.0)
        .map(|x| x.ln())
        .collect();
    (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

/// How alarms fared against labelled anomaly windows on one series.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AnomalyScore {
    /// Labelled windows scored.
    pub windows: usize,
    /// Windows with at least one alarming point.
    pub detected: usize,
    /// Alarms outside every window: runs of consecutive alarming points,
    /// counted once each.
    pub false_alarms: usize,
    /// Alarming points outside every window.
    pub false_alarm_points: usize,
    /// Points scored.
    pub points: usize,
    /// Days scored.
    pub days: f64,
    /// NAB raw score (standard profile).
    pub nab_raw: f64,
    /// Raw score of a detector that never alarms (−1 per window).
    pub nab_null: f64,
    /// Raw score of a detector that alarms at the start of every window
    /// and nowhere else.
    pub nab_perfect: f64,
}

impl AnomalyScore {
    /// Scores `alarms` (one flag per point at `times`, ascending) against
    /// `windows` (inclusive `[start, end]` ms). Only windows that lie wholly
    /// within the scored times count; points inside any other window
    /// count neither way, since its start could not be detected.
    ///
    /// NAB's standard profile, as its scorer computes it: the first alarm
    /// in a window of `n` points earns `σ(−(end − i + 1)/n)`, where
    /// `σ(y) = 2/(1 + e^{5y}) − 1`, so about 0.987 at the start and near 0
    /// at the end; later alarms in the same window earn nothing; a window
    /// without alarm costs 1; an alarming point outside windows costs
    /// 0.11, scaled by `−σ((i − e)/(m − 1))` when it follows a window of
    /// `m` points ending at index `e` (alarms just after a window cost
    /// little), and by 1 before the first window.
    pub fn new(times: &[i64], alarms: &[bool], windows: &[(i64, i64)]) -> Self {
        let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
            return Self::default();
        };
        let index_range = |(start, end): (i64, i64)| {
            let a = times.partition_point(|t| *t < start);
            let b = times.partition_point(|t| *t <= end);
            (a < b).then(|| (a, b - 1))
        };
        let mut scored: Vec<(usize, usize)> = Vec::new();
        let mut ignored: Vec<(usize, usize)> = Vec::new();
        for &w in windows {
            if let Some(range) = index_range(w) {
                if w.0 >= first && w.1 <= last {
                    scored.push(range);
                } else {
                    ignored.push(range);
                }
            }
        }
        scored.sort_unstable();
        let inside = |ranges: &[(usize, usize)], i: usize| {
            ranges.iter().position(|&(a, b)| a <= i && i <= b)
        };
        let mut s = Self {
            windows: scored.len(),
            points: times.len(),
            days: (last - first) as f64 / DAY_MS as f64,
            nab_null: -FN_WEIGHT * scored.len() as f64,
            nab_perfect: TP_WEIGHT * scaled_sigmoid(-1.0) * scored.len() as f64,
            ..Self::default()
        };
        let mut hit = vec![false; scored.len()];
        let mut previous: Option<(usize, usize)> = None;
        let mut in_alarm = false;
        for (i, &alarm) in alarms.iter().enumerate().take(times.len()) {
            if let Some(w) = inside(&scored, i) {
                let (a, b) = scored[w];
                if alarm && !hit[w] {
                    hit[w] = true;
                    let n = (b - a + 1) as f64;
                    s.nab_raw += TP_WEIGHT * scaled_sigmoid(-((b - i + 1) as f64) / n);
                }
                previous = Some((a, b));
                in_alarm = false;
                continue;
            }
            if inside(&ignored, i).is_some() {
                in_alarm = false;
                continue;
            }
            if alarm {
                s.false_alarm_points += 1;
                if !in_alarm {
                    s.false_alarms += 1;
                }
                let weight = match previous {
                    Some((a, b)) => -scaled_sigmoid((i - b) as f64 / ((b - a) as f64).max(1.0)),
                    None => 1.0,
                };
                s.nab_raw -= FP_WEIGHT * weight;
            }
            in_alarm = alarm;
        }
        s.detected = hit.iter().filter(|h| **h).count();
        s.nab_raw -= FN_WEIGHT * (s.windows - s.detected) as f64;
        s
    }

    /// Adds another series' tallies to this one.
    pub fn add(&mut self, other: &Self) {
        self.windows += other.windows;
        self.detected += other.detected;
        self.false_alarms += other.false_alarms;
        self.false_alarm_points += other.false_alarm_points;
        self.points += other.points;
        self.days += other.days;
        self.nab_raw += other.nab_raw;
        self.nab_null += other.nab_null;
        self.nab_perfect += other.nab_perfect;
    }

    /// NAB's normalised score: 0 for never alarming, 100 for perfect.
    pub fn nab_score(&self) -> Option<f64> {
        let span = self.nab_perfect - self.nab_null;
        (span > 0.0).then(|| 100.0 * (self.nab_raw - self.nab_null) / span)
    }

    /// Share of windows detected.
    pub fn detected_share(&self) -> Option<f64> {
        (self.windows > 0).then(|| self.detected as f64 / self.windows as f64)
    }

    /// False alarms per day scored.
    pub fn false_alarms_per_day(&self) -> Option<f64> {
        (self.days > 0.0).then(|| self.false_alarms as f64 / self.days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn mase_by_hand() {
        // Errors 1, 2, 3: MAE 2; scale 4 → 0.5.
        let pairs = [(10.0, 9.0), (10.0, 12.0), (0.0, 3.0)];
        assert_eq!(mase(&pairs, 4.0), Some(0.5));
        assert_eq!(mase(&pairs, 0.0), None);
        assert_eq!(mase(&[], 1.0), None);
        // Lag 2 over 1, 2, 4, NaN, 10: |4 − 1| and |10 − 4| (|NaN − 2| skipped) → 4.5.
        assert_eq!(
            seasonal_naive_error(&[1.0, 2.0, 4.0, f64::NAN, 10.0], 2),
            Some(4.5)
        );
        assert_eq!(seasonal_naive_error(&[1.0], 2), None);
    }

    #[test]
    fn coverage_by_hand() {
        let t = [
            (1.0, 0.0, 2.0),
            (2.0, 2.0, 3.0),
            (5.0, 0.0, 4.9),
            (0.0, 1.0, 2.0),
        ];
        let mut c = Coverage::of(&t);
        assert_eq!((c.inside, c.total, c.share()), (2, 4, Some(0.5)));
        c.add(Coverage::of(&[(1.0, 1.0, 1.0)]));
        assert_eq!(c.share(), Some(0.6));
        assert_eq!(Coverage::of(&[]).share(), None);
    }

    #[test]
    fn medians_and_geometric_means() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, f64::NAN, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert!(close(geometric_mean(&[1.0, 4.0]).unwrap(), 2.0));
        assert!(close(geometric_mean(&[2.0, 8.0, f64::NAN]).unwrap(), 4.0));
    }

    /// Ten points, one window over points 4..=7 (4 points).
    fn ten() -> (Vec<i64>, Vec<(i64, i64)>) {
        ((0..10).collect(), vec![(4, 7)])
    }

    #[test]
    fn earliest_detection_scores_and_later_ones_do_not() {
        let (t, w) = ten();
        let mut alarms = [false; 10];
        alarms[5] = true;
        alarms[6] = true;
        let s = AnomalyScore::new(&t, &alarms, &w);
        // First alarm at index 5 of window 4..=7: y = −(7 − 5 + 1)/4 = −0.75.
        let tp = scaled_sigmoid(-0.75);
        assert!(close(s.nab_raw, tp), "{s:?}");
        assert_eq!((s.windows, s.detected, s.false_alarms), (1, 1, 0));
        assert!(close(s.nab_null, -1.0));
        assert!(close(
            s.nab_score().unwrap(),
            100.0 * (tp + 1.0) / (scaled_sigmoid(-1.0) + 1.0)
        ));
    }

    #[test]
    fn misses_and_false_alarms_cost() {
        let (t, w) = ten();
        let mut alarms = [false; 10];
        // Before any window: 0.11 each; two adjacent points are one alarm.
        alarms[1] = true;
        alarms[2] = true;
        // After the window (end index 7, 4 points): y = (9 − 7)/3.
        alarms[9] = true;
        let s = AnomalyScore::new(&t, &alarms, &w);
        let expected = -1.0 - 2.0 * 0.11 + 0.11 * scaled_sigmoid(2.0 / 3.0);
        assert!(close(s.nab_raw, expected), "{} vs {expected}", s.nab_raw);
        assert_eq!(
            (s.detected, s.false_alarms, s.false_alarm_points),
            (0, 2, 3)
        );
        assert!(close(
            s.nab_score().unwrap(),
            100.0 * (expected + 1.0) / (scaled_sigmoid(-1.0) + 1.0)
        ));
        assert!(close(
            s.false_alarms_per_day().unwrap(),
            2.0 / (9.0 / 86_400_000.0)
        ));
    }

    #[test]
    fn windows_cut_by_the_scored_span_neither_reward_nor_cost() {
        let t: Vec<i64> = (0..10).collect();
        let mut alarms = [false; 10];
        alarms[0] = true;
        let s = AnomalyScore::new(&t, &alarms, &[(-5, 2)]);
        assert_eq!(
            s,
            AnomalyScore {
                points: 10,
                days: s.days,
                ..AnomalyScore::default()
            }
        );
        assert_eq!(s.nab_score(), None);
    }
}
